//! The OpenSSL [`Provider`]: installed by the `-tls` binaries only, so
//! that the others never load libssl/libcrypto (see `tls`'s docs).
//!
//! TLS goes straight through the `openssl` crate, the library native-tls
//! wraps on Linux, because native-tls hides three things a monitor needs:
//! the verify result as a number (native-tls only has message text to
//! match, which changes between OpenSSL versions), the certificate of a
//! handshake that failed verification (it has none, so showing an expired
//! certificate took a second, unverified connection), and control over
//! the trust store (it parses the system bundle twice per connector,
//! 40–75 ms, even for `--insecure` or `--ca-file`, which need none of
//! it). The TLS context is built only when a target needs TLS, once per
//! process per configuration, so plain-text checks and stream mode never
//! pay for it: `--insecure` costs 6 ms instead of 53–85 ms, `--ca-file`
//! 10 ms instead of 97 ms.

use super::{Connected, Context, Error, Provider, Session, Socket};
use ::openssl::ssl::{
    HandshakeError, Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslStream,
    SslVerifyMode,
};
use ::openssl::x509::store::X509StoreBuilder;
use ::openssl::x509::verify::X509CheckFlags;
use ::openssl::x509::X509;
use std::any::Any;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The provider to [`install`](super::install).
pub struct OpenSsl;

/// Installs OpenSSL as this process's TLS library.
pub fn install() {
    super::install(&OpenSsl);
}

impl Provider for OpenSsl {
    fn has_certificate(&self, pem: &[u8]) -> bool {
        matches!(X509::stack_from_pem(pem), Ok(v) if !v.is_empty())
    }

    fn context(&self, insecure: bool, ca_pem: Option<&[u8]>) -> Result<Context, String> {
        context(insecure, ca_pem).map(|c| Context(Arc::new(c)))
    }

    fn connect(
        &self,
        ctx: &Context,
        stream: Box<dyn Socket>,
        host: &str,
        verify: bool,
        wait: &mut dyn FnMut(&dyn Any) -> bool,
    ) -> Result<Connected, Error<()>> {
        let Some(ctx) = ctx.0.downcast_ref::<SslContext>() else {
            return Err(Error::Setup("a TLS context from another provider".into()));
        };
        let s = connect(
            ctx,
            stream,
            host,
            verify,
            // `**s`: the caller's socket, not the box (a Box<dyn Socket>
            // is a Socket too, and would downcast to nothing).
            |s| match wait((**s).as_any()) {
                true => Ok(()),
                false => Err(()),
            },
        )?;
        let cert = s.ssl().peer_certificate().and_then(|c| c.to_der().ok());
        Ok((Box::new(s), cert))
    }
}

impl Session for SslStream<Box<dyn Socket>> {
    fn socket(&self) -> &dyn Any {
        // The caller's socket, not the box (see connect).
        (**self.get_ref()).as_any()
    }
}

pub fn context(insecure: bool, ca_pem: Option<&[u8]>) -> Result<SslContext, String> {
    type Key = (bool, Option<Vec<u8>>);
    static CACHE: Mutex<Vec<(Key, SslContext)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, c)) = cache
        .iter()
        .find(|((i, ca), _)| *i == insecure && ca.as_deref() == ca_pem)
    {
        return Ok(c.clone());
    }
    let err = |e: ::openssl::error::ErrorStack| e.to_string();
    let mut b = SslContextBuilder::new(SslMethod::tls_client()).map_err(err)?;
    // As rust-openssl's SslConnector: a write retried after a timeout may
    // come from a moved buffer, and the callers handle partial writes.
    b.set_mode(
        SslMode::AUTO_RETRY | SslMode::ACCEPT_MOVING_WRITE_BUFFER | SslMode::ENABLE_PARTIAL_WRITE,
    );
    match (insecure, ca_pem) {
        // Nothing is verified, so no trust store is loaded at all.
        (true, _) => b.set_verify(SslVerifyMode::NONE),
        // Only this CA file is trusted (as curl's --cacert and redis-cli's
        // --cacert), so a certificate from some public CA does not pass
        // for the private one.
        (false, Some(pem)) => {
            let mut store = X509StoreBuilder::new().map_err(err)?;
            for c in X509::stack_from_pem(pem).map_err(err)? {
                store.add_cert(c).map_err(err)?;
            }
            b.set_cert_store(store.build());
            b.set_verify(SslVerifyMode::PEER);
        }
        // The system store, where this OpenSSL was built to find it (or
        // SSL_CERT_FILE / SSL_CERT_DIR), loaded once.
        (false, None) => {
            b.set_default_verify_paths().map_err(err)?;
            b.set_verify(SslVerifyMode::PEER);
        }
    }
    let c = b.build();
    cache.push(((insecure, ca_pem.map(<[u8]>::to_vec)), c.clone()));
    Ok(c)
}
pub fn connect<S, E>(
    ctx: &SslContext,
    stream: S,
    host: &str,
    verify: bool,
    mut wait: impl FnMut(&S) -> Result<(), E>,
) -> Result<SslStream<S>, Error<E>>
where
    S: Read + Write,
{
    let setup = |e: ::openssl::error::ErrorStack| Error::Setup(format!("cannot set up TLS: {e}"));
    let mut ssl = Ssl::new(ctx).map_err(setup)?;
    match host.parse::<IpAddr>() {
        // No SNI for an address; the certificate must name the address.
        Ok(ip) if verify => ssl.param_mut().set_ip(ip).map_err(setup)?,
        Ok(_) => {}
        Err(_) => {
            ssl.set_hostname(host).map_err(setup)?;
            if verify {
                let p = ssl.param_mut();
                p.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
                p.set_host(host).map_err(setup)?;
            }
        }
    }
    wait(&stream).map_err(Error::Wait)?;
    let mut r = ssl.connect(stream);
    loop {
        match r {
            Ok(s) => return Ok(s),
            Err(HandshakeError::WouldBlock(mid)) => {
                wait(mid.get_ref()).map_err(Error::Wait)?;
                r = mid.handshake();
            }
            Err(HandshakeError::SetupFailure(e)) => return Err(setup(e)),
            Err(HandshakeError::Failure(mid)) => {
                // The chain is kept as received, before verification,
                // leaf first.
                let cert = mid
                    .ssl()
                    .peer_cert_chain()
                    .and_then(|c| c.iter().next().and_then(|x| x.to_der().ok()));
                let verify = mid.ssl().verify_result().as_raw();
                let (kind, reason) = classify(verify, &mid.error().to_string());
                return Err(Error::Failed { kind, reason, cert });
            }
        }
    }
}
/// The error kind and reason of a failed handshake. OpenSSL's verify
/// result (the X509_V_ERR codes of x509_vfy.h) gives the certificate
/// kinds; a handshake that broke with verification passed (0) is
/// `tls_handshake_failed`, with OpenSSL's message `msg`.
pub fn classify(verify: i32, msg: &str) -> (&'static str, String) {
    const CERT_NOT_YET_VALID: i32 = 9;
    const CERT_HAS_EXPIRED: i32 = 10;
    const HOSTNAME_MISMATCH: i32 = 62;
    const IP_ADDRESS_MISMATCH: i32 = 64;
    let (kind, what) = match verify {
        0 => {
            return (
                "tls_handshake_failed",
                format!("TLS handshake failed: {}", msg.trim()),
            )
        }
        CERT_HAS_EXPIRED => ("cert_expired", "the certificate has expired"),
        CERT_NOT_YET_VALID => ("cert_not_yet_valid", "the certificate is not valid yet"),
        HOSTNAME_MISMATCH | IP_ADDRESS_MISMATCH => (
            "cert_name_mismatch",
            "the certificate does not name the host",
        ),
        // Self-signed, unknown issuer, bad signature, unusable CA, ...
        _ => ("cert_untrusted", "the certificate is not trusted"),
    };
    // SAFETY: `from_raw` is unsafe only for codes OpenSSL does not know;
    // this one came from OpenSSL or is one of the constants above.
    let text = unsafe { ::openssl::x509::X509VerifyResult::from_raw(verify) }.error_string();
    (kind, format!("{what} ({text}, verify error {verify})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{digest, read_ca_file, Cert};
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::ssl::SslAcceptor;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Builder, X509NameBuilder};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;
    use std::time::SystemTime;

    /// A self-signed certificate for localhost and 127.0.0.1, valid from
    /// `from` to `to` days from now.
    fn cert(from: i64, to: i64) -> (X509, PKey<Private>) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "localhost").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        let serial = BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap();
        b.set_serial_number(&serial).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let at = |days: i64| Asn1Time::from_unix(now + days * 86_400).unwrap();
        b.set_not_before(&at(from)).unwrap();
        b.set_not_after(&at(to)).unwrap();
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (b.build(), key)
    }

    /// One handshake against a TLS server on 127.0.0.1 that presents
    /// `cert`, with `cert` itself as the only trusted CA.
    fn handshake_with(cert: &X509, key: &PKey<Private>, host: &str) -> Result<(), Error<()>> {
        let mut acc = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acc.set_certificate(cert).unwrap();
        acc.set_private_key(key).unwrap();
        let acc = acc.build();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = acc.accept(s);
        });
        let pem = cert.to_pem().unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        let ctx = context(false, Some(&pem)).unwrap();
        let r = connect(&ctx, tcp, host, true, |s: &TcpStream| {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Ok(())
        })
        .map(|s| {
            let der = s.ssl().peer_certificate().and_then(|c| c.to_der().ok());
            assert_eq!(der, cert.to_der().ok())
        });
        server.join().unwrap();
        r
    }

    #[test]
    fn handshakes_are_classified_and_keep_the_rejected_certificate() {
        let (good, key) = cert(-1, 30);
        handshake_with(&good, &key, "localhost").unwrap();
        handshake_with(&good, &key, "127.0.0.1").unwrap();
        let kind = |r: Result<(), Error<()>>| match r {
            Err(Error::Failed { kind, cert, .. }) => (kind, cert),
            other => panic!("{other:?}"),
        };
        let (k, der) = kind(handshake_with(&good, &key, "example.org"));
        assert_eq!(k, "cert_name_mismatch");
        assert_eq!(der, good.to_der().ok());
        let (old, key) = cert(-10, -1);
        let (k, der) = kind(handshake_with(&old, &key, "localhost"));
        assert_eq!(k, "cert_expired");
        let facts = Cert::from_der(&der.unwrap()).unwrap();
        assert_eq!(facts.subject, "CN=localhost");
        assert_eq!(facts.sans, ["localhost", "127.0.0.1"]);
        // Expired a day ago (less the test's own run time).
        assert!((-2..=-1).contains(&facts.days_left()), "{facts:?}");
        assert_eq!(facts.to_json()["days_left"], facts.days_left());
        let (young, key) = cert(2, 30);
        assert_eq!(
            kind(handshake_with(&young, &key, "localhost")).0,
            "cert_not_yet_valid"
        );
    }

    #[test]
    fn ca_files_must_hold_a_certificate() {
        install();
        let dir = std::env::temp_dir().join(format!("pup-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good, _) = cert(-1, 1);
        let (pem, junk) = (dir.join("ca.pem"), dir.join("junk.pem"));
        std::fs::write(&pem, good.to_pem().unwrap()).unwrap();
        std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
        assert_eq!(read_ca_file(&pem).unwrap(), good.to_pem().unwrap());
        let e = read_ca_file(&junk).unwrap_err();
        assert!(e.starts_with("no PEM certificate in "), "{e}");
        let e = read_ca_file(&dir.join("absent.pem")).unwrap_err();
        assert!(e.starts_with("cannot read "), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            digest(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn verify_results_map_to_kinds() {
        let k = |code| classify(code, "certificate verify failed").0;
        assert_eq!(k(10), "cert_expired");
        assert_eq!(k(9), "cert_not_yet_valid");
        assert_eq!(k(62), "cert_name_mismatch");
        assert_eq!(k(64), "cert_name_mismatch");
        // Self-signed leaf, self-signed in the chain, unknown local
        // issuer, no issuer, only a leaf to verify, bad signature.
        for untrusted in [18, 19, 20, 2, 21, 7] {
            assert_eq!(k(untrusted), "cert_untrusted", "verify error {untrusted}");
        }
        assert_eq!(k(0), "tls_handshake_failed");
        let (_, reason) = classify(10, "x");
        assert!(reason.contains("certificate has expired"), "{reason}");
        assert!(reason.contains("verify error 10"), "{reason}");
        let (_, reason) = classify(0, " unexpected eof while reading\n");
        assert_eq!(reason, "TLS handshake failed: unexpected eof while reading");
    }
}
