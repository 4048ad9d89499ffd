//! Client TLS for the probes (`pup-probe-http`, `pup-probe-redis`): the
//! TLS context per configuration, the handshake over an already connected
//! socket under the caller's deadline, the error kind of a failed
//! handshake, the plain-or-TLS stream, and what a peer certificate says.
//!
//! The TLS library itself is behind a [`Provider`] that a binary installs
//! at start-up; the OpenSSL one is [`openssl::OpenSsl`]. Only the `-tls`
//! binaries (`pup-probe-http-tls`, `pup-probe-redis-tls`) install it, so
//! only they link the shared libssl/libcrypto: rustc links with
//! --as-needed and --gc-sections, and code no binary reaches is dropped
//! with its library. Relocating libcrypto was 81–88% of the instructions
//! of a one-shot plain `http://` or `redis://` check, which therefore runs
//! in the binary without TLS; `pup-probe-http` and `pup-probe-redis` exec
//! their `-tls` sibling when a run may need TLS ([`exec_tls_sibling`]).
//! What is pure Rust (certificate facts, digests) works everywhere.

use serde_json::{json, Value};
use std::any::Any;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

pub mod openssl;

/// Largest `--ca-file` read (a full public bundle is about 200 KiB).
const MAX_CA_FILE: u64 = 4 << 20;

/// What this binary says when asked for TLS it was not built with; the
/// probes' front binaries exec their `-tls` sibling before that can
/// happen, so this is an internal error, not a user's.
const NO_PROVIDER: &str =
    "TLS is not available in this binary (internal error: it should have run its -tls sibling)";

/// A TLS library, installed once per process with [`install`].
pub trait Provider: Sync {
    /// Whether `pem` holds at least one PEM certificate.
    fn has_certificate(&self, pem: &[u8]) -> bool;
    /// A client context for this configuration (see [`context`]).
    fn context(&self, insecure: bool, ca_pem: Option<&[u8]>) -> Result<Context, String>;
    /// The handshake over `stream` (see [`connect`]); `wait` returns
    /// false when the caller's deadline has passed. On success, the TLS
    /// stream and the peer certificate (DER).
    fn connect(
        &self,
        ctx: &Context,
        stream: Box<dyn Socket>,
        host: &str,
        verify: bool,
        wait: &mut dyn FnMut(&dyn Any) -> bool,
    ) -> Result<Connected, Error<()>>;
}

/// An established session and the peer certificate (DER).
pub type Connected = (Box<dyn Session>, Option<Vec<u8>>);

/// A connected socket handed to a [`Provider`]; `as_any` gives the
/// caller's own type back.
pub trait Socket: Read + Write {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Read + Write + 'static> Socket for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// An established TLS session over a [`Socket`].
pub trait Session: Read + Write {
    /// The socket underneath.
    fn socket(&self) -> &dyn Any;
}

/// A provider's TLS context, opaque to the probes and cheap to clone.
#[derive(Clone)]
pub struct Context(pub Arc<dyn Any + Send + Sync>);

static PROVIDER: OnceLock<&'static dyn Provider> = OnceLock::new();

/// Makes `p` the TLS library of this process (the first call wins).
pub fn install(p: &'static dyn Provider) {
    let _ = PROVIDER.set(p);
}

fn provider() -> Result<&'static dyn Provider, String> {
    PROVIDER
        .get()
        .copied()
        .ok_or_else(|| NO_PROVIDER.to_string())
}

/// Replaces this process with the TLS-capable sibling binary `name`
/// (same directory as this executable, same arguments) when `needed`;
/// returns only when it is not. A missing sibling is one line on stderr
/// and exit 3 (unknown).
pub fn exec_tls_sibling(needed: bool, name: &str) {
    use std::os::unix::process::CommandExt;
    if !needed {
        return;
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| name.into());
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let path = dir.map(|d| d.join(name)).unwrap_or_else(|| name.into());
    let prog = Path::new(&argv0)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    // exec returns only on failure. argv[0] stays what the user typed,
    // so messages and --help name the command they know.
    let e = std::process::Command::new(&path)
        .arg0(&argv0)
        .args(args)
        .exec();
    eprintln!(
        "{prog}: cannot run {} ({e}), which this run needs for TLS; \
         install it beside {prog} (cargo install --path . installs both)",
        path.display()
    );
    std::process::exit(3);
}

/// Whether any argument mentions `scheme` (e.g. "https://"), in any
/// case: a cheap, conservative test of whether a run may need TLS (a
/// false yes only costs the exec).
pub fn mentions(scheme: &str) -> bool {
    std::env::args_os()
        .skip(1)
        .any(|a| a.to_string_lossy().to_ascii_lowercase().contains(scheme))
}

/// Whether a flag `--name` (or `--name=...`) is among the arguments.
pub fn has_flag(name: &str) -> bool {
    let eq = format!("{name}=");
    std::env::args_os()
        .skip(1)
        .any(|a| a.to_str().is_some_and(|a| a == name || a.starts_with(&eq)))
}

/// Reads a `--ca-file` and checks that it holds at least one PEM
/// certificate, so that a wrong file is a usage error before anything is
/// sent. The message names the path, not the flag.
pub fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE + 1).read_to_end(&mut pem))
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(format!("{shown} is over {} MiB", MAX_CA_FILE >> 20));
    }
    match provider()?.has_certificate(&pem) {
        true => Ok(pem),
        false => Err(format!("no PEM certificate in {shown}")),
    }
}

/// A TLS client context per configuration (`--insecure`, `--ca-file`),
/// built on first use and shared by every check of the process (the
/// provider caches it). `ca_pem` is what [`read_ca_file`] returned.
pub fn context(insecure: bool, ca_pem: Option<&[u8]>) -> Result<Context, String> {
    provider()?.context(insecure, ca_pem)
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum Error<E> {
    /// The session could not be set up: a fault on this side, not the
    /// peer's (`internal_error`).
    Setup(String),
    /// The caller's `wait` gave up (its deadline passed).
    Wait(E),
    /// The handshake failed: the error kind ([`openssl::classify`]), the reason,
    /// and the leaf certificate (DER) when the server sent one, so that a
    /// rejected certificate is reported from the same handshake.
    Failed {
        kind: &'static str,
        reason: String,
        cert: Option<Vec<u8>>,
    },
}

/// The TLS handshake over a connected `stream`, verifying the chain and
/// the name `host` unless `verify` is off (the context decides what is
/// trusted). `wait` runs before the first step and whenever a read or
/// write would block (a socket timeout fired): it sets the next socket
/// timeout, or says the deadline has passed; the handshake then resumes.
pub fn connect<S, E>(
    ctx: &Context,
    stream: S,
    host: &str,
    verify: bool,
    mut wait: impl FnMut(&S) -> Result<(), E>,
) -> Result<TlsStream<S>, Error<E>>
where
    S: Read + Write + 'static,
{
    let p = provider().map_err(Error::Setup)?;
    let mut gave_up = None;
    let mut w = |s: &dyn Any| {
        let s = s.downcast_ref::<S>().expect("the socket given to connect");
        match wait(s) {
            Ok(()) => true,
            Err(e) => {
                gave_up = Some(e);
                false
            }
        }
    };
    let r = p.connect(ctx, Box::new(stream), host, verify, &mut w);
    match r {
        Ok((inner, cert)) => Ok(TlsStream {
            inner,
            cert,
            socket: PhantomData,
        }),
        Err(Error::Wait(())) => Err(Error::Wait(gave_up.expect("wait gave up"))),
        Err(Error::Setup(e)) => Err(Error::Setup(e)),
        Err(Error::Failed { kind, reason, cert }) => Err(Error::Failed { kind, reason, cert }),
    }
}

/// An established TLS session over a socket of type `S`.
pub struct TlsStream<S> {
    inner: Box<dyn Session>,
    cert: Option<Vec<u8>>,
    socket: PhantomData<S>,
}

impl<S: 'static> TlsStream<S> {
    /// The socket underneath.
    pub fn get_ref(&self) -> &S {
        self.inner
            .socket()
            .downcast_ref::<S>()
            .expect("the socket given to connect")
    }
}

/// The peer certificate (DER) of an established session.
pub fn peer_cert<S>(s: &TlsStream<S>) -> Option<Vec<u8>> {
    s.cert.clone()
}

/// A connection in plain text or TLS, over the caller's socket type.
pub enum Stream<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
}

impl<S: 'static> Stream<S> {
    /// The socket underneath (to set its timeouts).
    pub fn get_ref(&self) -> &S {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl<S: Read + Write> Read for Stream<S> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(b),
            Stream::Tls(s) => s.inner.read(b),
        }
    }
}

impl<S: Read + Write> Write for Stream<S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(b),
            Stream::Tls(s) => s.inner.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.inner.flush(),
        }
    }
}

/// What a report says about a certificate.
#[derive(Debug, Clone)]
pub struct Cert {
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses.
    pub sans: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Cert {
    /// Parses a DER certificate (x509-cert: few extra crates, where
    /// x509-parser pulls in many more); `None` if it does not parse.
    pub fn from_der(der: &[u8]) -> Option<Cert> {
        use x509_cert::der::Decode;
        use x509_cert::ext::pkix::{name::GeneralName, SubjectAltName};
        let c = x509_cert::Certificate::from_der(der).ok()?;
        let tbs = c.tbs_certificate();
        let mut sans = Vec::new();
        if let Ok(Some((_, san))) = tbs.get_extension::<SubjectAltName>() {
            for n in san.0 {
                match n {
                    GeneralName::DnsName(d) => sans.push(d.to_string()),
                    GeneralName::IpAddress(o) => {
                        let b = o.as_bytes();
                        if let Ok(a) = <[u8; 4]>::try_from(b) {
                            sans.push(IpAddr::from(a).to_string());
                        } else if let Ok(a) = <[u8; 16]>::try_from(b) {
                            sans.push(IpAddr::from(a).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(Cert {
            subject: tbs.subject().to_string(),
            issuer: tbs.issuer().to_string(),
            sans,
            not_before: tbs.validity().not_before.to_system_time(),
            not_after: tbs.validity().not_after.to_system_time(),
        })
    }

    /// Seconds until `not_after`, negative once expired.
    pub fn secs_left(&self) -> i64 {
        match self.not_after.duration_since(SystemTime::now()) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        }
    }

    /// Whole days until `not_after`, negative once expired.
    pub fn days_left(&self) -> i64 {
        self.secs_left().div_euclid(86_400)
    }

    /// The `details.cert` object: subject, issuer, sans, not_before,
    /// not_after (RFC 3339, seconds), days_left.
    pub fn to_json(&self) -> Value {
        json!({
            "subject": self.subject,
            "issuer": self.issuer,
            "sans": self.sans,
            "not_before": humantime::format_rfc3339_seconds(self.not_before).to_string(),
            "not_after": humantime::format_rfc3339_seconds(self.not_after).to_string(),
            "days_left": self.days_left(),
        })
    }
}

/// The SHA-256 of a DER certificate in hex: the certificate's part of a
/// fingerprint, so that a renewed or swapped certificate shows as a change.
pub fn digest(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(der)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}
