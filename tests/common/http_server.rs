//! A small HTTP(S) server for tests, on 127.0.0.1 and a port of its own.
//!
//! Two ways to use it:
//! - [`Server::http`] calls a closure with each parsed request and writes
//!   the [`Response`] it returns (with `Content-Length` unless the
//!   response sets its own framing), then closes the connection. Every
//!   request is also kept for the test to inspect ([`Server::requests`]).
//! - [`Server::raw`] hands each accepted connection to a closure, for
//!   servers that misbehave on purpose: silent, slow, garbage, huge.
//!
//! [`Server::https`] and [`Server::raw_tls`] do the same behind TLS with
//! an [`Identity`]; [`TestCa`] makes certificates (valid, expired, not yet
//! valid, for another name) and [`Identity::self_signed`] makes one
//! nobody vouches for. The server stops when dropped; each connection runs
//! on its own thread and ends with its handler (sockets have a 30 s read
//! timeout, so none outlives a test by long).
#![allow(dead_code)]

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A connection as a handler sees it (plain TCP or TLS).
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics with the body if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// What [`Server::http`]'s handler answers.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn ok(body: impl Into<Vec<u8>>) -> Response {
        Response::new(200, body)
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Response {
        Response::new(status, "").header("Location", location)
    }

    pub fn header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// A running server; stops accepting when dropped.
pub struct Server {
    addr: SocketAddr,
    tls: bool,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    log: Arc<Mutex<Vec<Request>>>,
}

type Handler = Arc<dyn Fn(Box<dyn Stream>) + Send + Sync>;

impl Server {
    /// Calls `f` with every accepted plain-TCP connection.
    pub fn raw<F>(f: F) -> Server
    where
        F: Fn(&mut dyn Stream) + Send + Sync + 'static,
    {
        Server::start(
            None,
            0,
            Arc::new(move |mut s: Box<dyn Stream>| f(&mut *s)),
            None,
        )
    }

    /// Calls `f` with every connection after a TLS handshake as `id`.
    pub fn raw_tls<F>(id: &Identity, f: F) -> Server
    where
        F: Fn(&mut dyn Stream) + Send + Sync + 'static,
    {
        let h: Handler = Arc::new(move |mut s: Box<dyn Stream>| f(&mut *s));
        Server::start(Some(id.acceptor()), 0, h, None)
    }

    /// An HTTP server answering each request with `f`.
    pub fn http<F>(f: F) -> Server
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        Server::http_on(None, 0, f)
    }

    /// An HTTP server answering each request with `f`, on a given port of
    /// 127.0.0.1: for starting a server again where an earlier one was.
    pub fn http_at<F>(port: u16, f: F) -> Server
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        Server::http_on(None, port, f)
    }

    /// An HTTPS server presenting `id`, answering each request with `f`.
    pub fn https<F>(id: &Identity, f: F) -> Server
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        Server::http_on(Some(id.acceptor()), 0, f)
    }

    fn http_on<F>(tls: Option<SslAcceptor>, port: u16, f: F) -> Server
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let h: Handler = Arc::new(move |mut s: Box<dyn Stream>| {
            if let Some(req) = read_request(&mut *s) {
                l.lock().unwrap().push(req.clone());
                let resp = f(&req);
                let _ = write_response(&mut *s, &resp, req.method == "HEAD");
            }
        });
        Server::start(tls, port, h, Some(log))
    }

    fn start(
        tls: Option<SslAcceptor>,
        port: u16,
        handler: Handler,
        log: Option<Arc<Mutex<Vec<Request>>>>,
    ) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let is_tls = tls.is_some();
        let tls = tls.map(Arc::new);
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(tcp) = conn else { continue };
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
                let _ = tcp.set_write_timeout(Some(Duration::from_secs(30)));
                let h = handler.clone();
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => h(Box::new(tcp)),
                    Some(acc) => {
                        // A client that rejects the certificate ends the
                        // handshake: nothing to serve.
                        if let Ok(s) = acc.accept(tcp) {
                            h(Box::new(s))
                        }
                    }
                });
            }
        });
        Server {
            addr,
            tls: is_tls,
            stop,
            accept: Some(accept),
            log: log.unwrap_or_default(),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}` (https for TLS servers).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port())
    }

    /// The requests received so far (HTTP servers only).
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (head and `Content-Length` body).
pub fn read_request(s: &mut dyn Stream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req.parse(&buf);
        if parsed.is_err() {
            // Not HTTP (a TLS hello, garbage): hang up.
            return None;
        }
        if let Ok(httparse::Status::Complete(n)) = parsed {
            let mut r = Request {
                method: req.method?.to_string(),
                path: req.path?.to_string(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).to_string(),
                        )
                    })
                    .collect(),
                body: buf[n..].to_vec(),
            };
            let len: usize = r
                .header("content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            // A test server needs a cap too.
            if len > 16 << 20 {
                return None;
            }
            // curl asks before sending a large body (webhook payloads).
            let expects = r
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
            if expects && r.body.len() < len {
                s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
            }
            while r.body.len() < len {
                let k = s.read(&mut chunk).ok()?;
                if k == 0 {
                    return None;
                }
                r.body.extend_from_slice(&chunk[..k]);
            }
            return Some(r);
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        let k = s.read(&mut chunk).ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..k]);
    }
}

/// Writes `r` as HTTP/1.1, adding `Content-Length` unless the response
/// has its own framing header, and `Connection: close`.
pub fn write_response(s: &mut dyn Stream, r: &Response, head_only: bool) -> std::io::Result<()> {
    let mut h = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    let framed = r.headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    for (k, v) in &r.headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if !framed {
        h.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    h.push_str("Connection: close\r\n\r\n");
    s.write_all(h.as_bytes())?;
    if !head_only {
        s.write_all(&r.body)?;
    }
    s.flush()
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

// ------------------------------------------------------------ certificates

/// A certificate with its private key, as a TLS server presents it.
pub struct Identity {
    pub cert: X509,
    pub key: PKey<Private>,
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn serial() -> Asn1Integer {
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::SeqCst) ^ (std::process::id() << 12);
    BigNum::from_u32(n).unwrap().to_asn1_integer().unwrap()
}

fn days_from_now(days: i64) -> Asn1Time {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Asn1Time::from_unix(now + days * 86_400).unwrap()
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_text("O", "Puptime tests").unwrap();
    n.append_entry_by_text("CN", cn).unwrap();
    n.build()
}

impl Identity {
    /// A certificate for `names` signed by its own key: trusted by nobody.
    pub fn self_signed(names: &[&str]) -> Identity {
        let key = new_key();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        let n = name(names[0]);
        b.set_subject_name(&n).unwrap();
        b.set_issuer_name(&n).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&days_from_now(-1)).unwrap();
        b.set_not_after(&days_from_now(90)).unwrap();
        let mut san = SubjectAlternativeName::new();
        for d in names {
            if d.parse::<std::net::IpAddr>().is_ok() {
                san.ip(d);
            } else {
                san.dns(d);
            }
        }
        let ext = san.build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(ext).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        Identity {
            cert: b.build(),
            key,
        }
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        String::from_utf8(self.cert.to_pem().unwrap()).unwrap()
    }

    /// Writes `cert.pem` and `key.pem` into `dir` (for servers that read
    /// files: redis-server, the SMTP test server) and returns their paths.
    pub fn write_pem(&self, dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, self.cert.to_pem().unwrap()).unwrap();
        std::fs::write(&key, self.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (cert, key)
    }

    fn acceptor(&self) -> SslAcceptor {
        let mut a = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        a.set_private_key(&self.key).unwrap();
        a.set_certificate(&self.cert).unwrap();
        a.check_private_key().unwrap();
        a.build()
    }
}

/// A certificate authority for tests; pass [`TestCa::write_pem`]'s file
/// to the probe with `--ca-file`.
pub struct TestCa {
    id: Identity,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = new_key();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        let n = name("Puptime test CA");
        b.set_subject_name(&n).unwrap();
        b.set_issuer_name(&n).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&days_from_now(-365)).unwrap();
        b.set_not_after(&days_from_now(3650)).unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        TestCa {
            id: Identity {
                cert: b.build(),
                key,
            },
        }
    }

    /// A server certificate for `names`, valid from `from_days` to
    /// `to_days` relative to now (negative is the past).
    pub fn issue(&self, names: &[&str], from_days: i64, to_days: i64) -> Identity {
        let key = new_key();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&name(names[0])).unwrap();
        b.set_issuer_name(self.id.cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&days_from_now(from_days)).unwrap();
        b.set_not_after(&days_from_now(to_days)).unwrap();
        let mut san = SubjectAlternativeName::new();
        for d in names {
            san.dns(d);
        }
        let ext = san
            .build(&b.x509v3_context(Some(&self.id.cert), None))
            .unwrap();
        b.append_extension(ext).unwrap();
        b.sign(&self.id.key, MessageDigest::sha256()).unwrap();
        Identity {
            cert: b.build(),
            key,
        }
    }

    /// Writes the CA certificate as PEM to `path`.
    pub fn write_pem(&self, path: &std::path::Path) {
        std::fs::write(path, self.id.cert_pem()).unwrap();
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}
