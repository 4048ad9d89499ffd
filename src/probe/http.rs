//! `pup-probe-http`: an HTTP(S) check that says which layer failed.
//!
//! One check is: resolve the name (DNS), connect (TCP), handshake (TLS,
//! for https), send one HTTP/1.1 request, read the response head and at
//! most `--max-body` bytes of the body, then judge the status, headers,
//! body and certificate against the user's assertions. Each step has its
//! own error kinds (`dns_failure`, `connect_refused`, `cert_expired`,
//! `status_mismatch`, …), its own time in `phases`, and is bounded by the
//! whole-check deadline.
//!
//! Why this speaks HTTP/1.1 itself over std sockets and TLS, with
//! `httparse` for the response head, instead of using an HTTP client
//! crate such as ureq: a monitor needs (1) exact per-phase timings (dns,
//! connect, tls, ttfb, transfer), (2) the peer address and the peer
//! certificate from the *same* handshake that carried the request, and
//! (3) one deadline enforced on every phase, every read and every write.
//! ureq 3 exposes none of these except through its `unversioned`
//! transport/resolver API, which may change in any minor release. What a
//! probe needs from HTTP is small (one request, `Connection: close`, three
//! ways to frame a body), and doing it here keeps the whole exchange in
//! view and the binary small.
//!
//! TLS (context, handshake, error kinds, certificate facts) is
//! [`crate::tls`], shared with `pup-probe-redis`; its module docs say why
//! it is OpenSSL directly rather than native-tls.

use crate::cli;
use crate::event::{self, layer, Assertion, ErrorInfo, Status};
use crate::probe::{split_host_port, Common, Ctx, HostPortError, Outcome, Probe};
use crate::tls;
use clap::Args;
use serde_json::{json, Value};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The probe.
pub struct Http;

/// Largest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 100;
/// Largest `--data @FILE` accepted.
const MAX_DATA: u64 = 16 << 20;
/// Socket read buffer.
const READ_BUF: usize = 16 * 1024;

#[derive(Args, Debug)]
#[command(next_help_heading = "HTTP options")]
pub struct HttpArgs {
    /// URLs to check (http:// or https://), one result each
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,

    /// Request method [default: GET, or POST with --data]
    #[arg(short = 'X', long, value_name = "METHOD")]
    pub method: Option<String>,

    /// Add a request header (repeatable); replaces a default header of the
    /// same name (Host, User-Agent, Accept)
    #[arg(short = 'H', long = "header", value_name = "'K: V'")]
    pub headers: Vec<String>,

    /// Request body, or @FILE to send a file's contents (at most 16 MiB)
    #[arg(long, value_name = "STRING|@FILE")]
    pub data: Option<String>,

    /// Basic auth user; the password comes from the PUP_PASSWORD
    /// environment variable or --password-file, never the command line
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Read the --user password from the first line of FILE
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<String>,

    /// Follow up to N redirects; with 0 a 3xx is judged as it is, and a
    /// redirect still left after N hops is `too_many_redirects`
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub follow: u32,

    /// Connect to ADDR (or a comma list) for HOST:PORT instead of
    /// resolving it, as curl does; Host header and TLS name stay HOST
    /// (repeatable)
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<String>,

    /// Status codes that count as up: codes, ranges and classes, like
    /// 200,204,300-399 or 2xx
    #[arg(long, value_name = "LIST", default_value = "200-399")]
    pub expect_status: String,

    /// The body must contain TEXT (repeatable)
    #[arg(long, value_name = "TEXT")]
    pub contains: Vec<String>,

    /// The body must not contain TEXT (repeatable)
    #[arg(long, value_name = "TEXT")]
    pub not_contains: Vec<String>,

    /// The body must match the regular expression RE (repeatable)
    #[arg(long, value_name = "RE")]
    pub regex: Vec<String>,

    /// The JSON body's field at POINTER (RFC 6901) must equal VALUE, read
    /// as JSON when it parses (true, 3, "x", null) and as a string
    /// otherwise (repeatable)
    #[arg(long, value_name = "POINTER=VALUE")]
    pub json_pointer: Vec<String>,

    /// A response header K must be present with a value containing V
    /// (name case-insensitive; repeatable)
    #[arg(long, value_name = "'K: V'")]
    pub header_contains: Vec<String>,

    /// Read at most SIZE bytes of body; an assertion that needs more is
    /// `body_too_large`
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = cli::parse_size)]
    pub max_body: u64,

    /// Do not verify the certificate chain or name (the certificate is
    /// still read and its expiry still judged)
    #[arg(long)]
    pub insecure: bool,

    /// Trust only the CA certificates in this PEM file, instead of the
    /// system store (as curl's --cacert)
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<String>,

    /// A certificate expiring within DUR makes the check degraded
    #[arg(long, value_name = "DUR", default_value = "14d", value_parser = cli::parse_duration)]
    pub cert_warn: Duration,

    /// A certificate expiring within DUR makes the check down
    #[arg(long, value_name = "DUR", default_value = "3d", value_parser = cli::parse_duration)]
    pub cert_crit: Duration,
}

/// What every URL of one argument list shares.
#[derive(Debug)]
struct Config {
    method: String,
    headers: Vec<(String, String)>,
    data: Option<Vec<u8>>,
    /// The whole `Authorization` header value.
    auth: Option<String>,
    follow: u32,
    resolve: Vec<(String, u16, Vec<IpAddr>)>,
    expect: StatusList,
    contains: Vec<String>,
    not_contains: Vec<String>,
    regexes: Vec<(String, regex_lite::Regex)>,
    json: Vec<(String, String, Value)>,
    header_contains: Vec<(String, String)>,
    max_body: u64,
    insecure: bool,
    ca_pem: Option<Vec<u8>>,
    cert_warn: Duration,
    cert_crit: Duration,
}

impl Config {
    fn needs_body(&self) -> bool {
        !(self.contains.is_empty()
            && self.not_contains.is_empty()
            && self.regexes.is_empty()
            && self.json.is_empty())
    }
}

/// One URL to check.
#[derive(Debug)]
pub struct Check {
    url: Url,
    target: String,
    cfg: Arc<Config>,
}

const AFTER_HELP: &str = "\
Examples:
  pup-probe-http https://example.org/ --contains 'Welcome'
  pup-probe-http http://10.0.0.5/health --expect-status 200 \\
      --json-pointer /status=ok --header-contains 'Content-Type: json'
  pup-probe-http https://example.org/ --resolve example.org:443:192.0.2.7
  PUP_PASSWORD=s3cret pup-probe-http --user admin https://intranet/ --follow 3
  pup-probe-http https://internal/ --ca-file ca.pem --cert-warn 30d
  cat urls.txt | pup-probe-http --stdin -j 64 --format text

Each result says which layer failed in error.layer / error.kind:
  dns       dns_failure, timeout
  tcp       connect_refused, connect_timeout, connect_failed
  tls       tls_handshake_failed, cert_expired, cert_not_yet_valid,
            cert_name_mismatch, cert_untrusted, cert_expiring, timeout
  protocol  protocol_error, status_mismatch, header_mismatch,
            too_many_redirects, timeout (error.phase: ttfb or transfer)
  content   content_mismatch, body_too_large
phases: dns_ms, connect_ms, tls_ms, ttfb_ms (from sending the request to
the first response byte), transfer_ms (rest of head and body). details: peer, url,
http_status, http_version, body_bytes, body_truncated, redirects, cert
{subject, issuer, sans, not_before, not_after, days_left}.

The default --expect-status is 200-399: with --follow 0 a redirect shows a
live server and counts as up; ask for --expect-status 200 to insist on the
page itself, or --follow N to judge where the redirects lead.
Exit status: 0 up, 1 degraded, 2 down, 3 unknown (bad usage included).
See pup-events(7) for the event format.";

impl Probe for Http {
    const NAME: &'static str = "http";
    const ABOUT: &'static str =
        "Check HTTP(S) URLs layer by layer (DNS, TCP, TLS, HTTP, content) and print one JSON result each";
    const AFTER_HELP: &'static str = AFTER_HELP;
    type Args = HttpArgs;
    type Check = Check;

    fn has_targets(args: &HttpArgs) -> bool {
        !args.urls.is_empty()
    }

    fn prepare(args: HttpArgs, _common: &Common) -> Result<Vec<Check>, String> {
        if args.urls.is_empty() {
            return Err("no URL given".into());
        }
        let cfg = Arc::new(config(&args)?);
        args.urls
            .iter()
            .map(|u| {
                Ok(Check {
                    url: Url::parse(u)?,
                    target: u.clone(),
                    cfg: cfg.clone(),
                })
            })
            .collect()
    }

    fn target(check: &Check) -> String {
        check.target.clone()
    }

    fn run(check: &Check, ctx: &Ctx) -> Outcome {
        run_check(check, ctx)
    }
}

/// Validates the flags of one argument list and reads what they name
/// (data file, password, CA file), so that a bad flag is a usage error
/// before anything is sent.
fn config(a: &HttpArgs) -> Result<Config, String> {
    let data = match &a.data {
        None => None,
        Some(d) => match d.strip_prefix('@') {
            Some(path) => {
                let f = std::fs::File::open(path)
                    .map_err(|e| format!("--data: cannot read {path}: {e}"))?;
                let mut v = Vec::new();
                f.take(MAX_DATA + 1)
                    .read_to_end(&mut v)
                    .map_err(|e| format!("--data: cannot read {path}: {e}"))?;
                if v.len() as u64 > MAX_DATA {
                    return Err(format!("--data: {path} is over 16 MiB"));
                }
                Some(v)
            }
            None => Some(d.as_bytes().to_vec()),
        },
    };
    let method = match &a.method {
        Some(m) => {
            if m.is_empty() || !m.bytes().all(is_token_byte) {
                return Err(format!("bad method {m:?}"));
            }
            m.clone()
        }
        None if data.is_some() => "POST".into(),
        None => "GET".into(),
    };
    let headers = a
        .headers
        .iter()
        .map(|h| parse_header_arg("--header", h))
        .collect::<Result<Vec<_>, _>>()?;
    let auth = match (&a.user, &a.password_file) {
        (None, None) => None,
        (None, Some(_)) => return Err("--password-file needs --user".into()),
        (Some(user), file) => {
            if user.contains(':') {
                return Err("--user NAME must not contain ':'".into());
            }
            let pass = match file {
                Some(f) => cli::read_secret_file(f).map_err(|e| format!("--password-file: {e}"))?,
                None => std::env::var("PUP_PASSWORD").map_err(|_| {
                    "--user needs a password: set PUP_PASSWORD or give --password-file".to_string()
                })?,
            };
            Some(format!(
                "Basic {}",
                base64(format!("{user}:{pass}").as_bytes())
            ))
        }
    };
    let resolve = a
        .resolve
        .iter()
        .map(|r| parse_resolve(r))
        .collect::<Result<Vec<_>, _>>()?;
    let regexes = a
        .regex
        .iter()
        .map(|r| {
            regex_lite::Regex::new(r)
                .map(|re| (r.clone(), re))
                .map_err(|e| format!("--regex {r:?}: {}", cli::first_line(&e.to_string())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let json = a
        .json_pointer
        .iter()
        .map(|j| {
            let (ptr, val) = j
                .split_once('=')
                .ok_or_else(|| format!("--json-pointer {j:?} is not /POINTER=VALUE"))?;
            if !(ptr.is_empty() || ptr.starts_with('/')) {
                return Err(format!(
                    "--json-pointer {j:?}: the pointer must start with '/'"
                ));
            }
            let want = serde_json::from_str(val).unwrap_or_else(|_| Value::String(val.into()));
            Ok((ptr.to_string(), val.to_string(), want))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let header_contains = a
        .header_contains
        .iter()
        .map(|h| parse_header_arg("--header-contains", h))
        .collect::<Result<Vec<_>, _>>()?;
    let ca_pem = match &a.ca_file {
        None => None,
        Some(path) => {
            Some(tls::read_ca_file(path.as_ref()).map_err(|e| format!("--ca-file: {e}"))?)
        }
    };
    if a.cert_crit > a.cert_warn {
        return Err("--cert-crit must not be longer than --cert-warn".into());
    }
    Ok(Config {
        method,
        headers,
        data,
        auth,
        follow: a.follow,
        resolve,
        expect: StatusList::parse(&a.expect_status)?,
        contains: a.contains.clone(),
        not_contains: a.not_contains.clone(),
        regexes,
        json,
        header_contains,
        max_body: a.max_body,
        insecure: a.insecure,
        ca_pem,
        cert_warn: a.cert_warn,
        cert_crit: a.cert_crit,
    })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `'Name: value'` for `-H` and `--header-contains`.
fn parse_header_arg(flag: &str, h: &str) -> Result<(String, String), String> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| format!("{flag} {h:?} is not 'Name: value'"))?;
    let k = k.trim();
    if k.is_empty() || !k.bytes().all(is_token_byte) {
        return Err(format!("{flag} {h:?}: bad header name {k:?}"));
    }
    if v.contains(['\r', '\n']) {
        return Err(format!("{flag} {h:?}: line breaks are not allowed"));
    }
    Ok((k.to_string(), v.trim().to_string()))
}

/// `HOST:PORT:ADDR[,ADDR…]`, IPv6 addresses optionally in brackets.
fn parse_resolve(r: &str) -> Result<(String, u16, Vec<IpAddr>), String> {
    let bad = || format!("--resolve {r:?} is not HOST:PORT:ADDR");
    let (host, rest) = r.split_once(':').ok_or_else(bad)?;
    let (port, addrs) = rest.split_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let addrs = addrs
        .split(',')
        .map(|a| {
            let a = a.trim().trim_start_matches('[').trim_end_matches(']');
            a.parse::<IpAddr>()
                .map_err(|_| format!("--resolve {r:?}: {a:?} is not an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), port, addrs))
}

/// `--expect-status`: codes, ranges and classes.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusList {
    ranges: Vec<(u16, u16)>,
    text: String,
}

impl StatusList {
    pub fn parse(s: &str) -> Result<StatusList, String> {
        let bad = |p: &str| {
            format!("--expect-status: {p:?} is not a status, range or class (like 200,300-399,2xx)")
        };
        let code = |p: &str| -> Result<u16, String> {
            match p.trim().parse::<u16>() {
                Ok(c) if (100..=599).contains(&c) => Ok(c),
                _ => Err(bad(p)),
            }
        };
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim) {
            let r = if let Some((a, b)) = part.split_once('-') {
                (code(a)?, code(b)?)
            } else if part.len() == 3 && part[1..].eq_ignore_ascii_case("xx") {
                let c = code(&format!("{}00", &part[..1]))?;
                (c, c + 99)
            } else {
                let c = code(part)?;
                (c, c)
            };
            if r.0 > r.1 {
                return Err(bad(part));
            }
            ranges.push(r);
        }
        Ok(StatusList {
            ranges,
            text: s.split(',').map(str::trim).collect::<Vec<_>>().join(","),
        })
    }

    pub fn admits(&self, code: u16) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&code))
    }
}

// ---------------------------------------------------------------- URLs

/// An http(s) URL, reduced to what a request needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    pub tls: bool,
    /// Lowercase name or IP address, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`, percent-encoded; no fragment.
    pub path: String,
}

impl Url {
    /// Parses an absolute http:// or https:// URL.
    pub fn parse(s: &str) -> Result<Url, String> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("{s:?} is not a URL: it must start with http:// or https://"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(format!(
                    "{s:?}: only http:// and https:// URLs can be checked"
                ))
            }
        };
        let rest = rest.split('#').next().unwrap_or("");
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(format!(
                "{s:?}: no user or password in the URL; use --user with PUP_PASSWORD or --password-file"
            ));
        }
        let (host, port) = split_host_port(authority).map_err(|e| match e {
            HostPortError::UnclosedBracket => format!("{s:?}: unclosed '[' in the host"),
            HostPortError::JunkAfterBracket => format!("{s:?}: bad port"),
        })?;
        if authority.starts_with('[') {
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{s:?}: {host:?} is not an IPv6 address"))?;
        }
        if host.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        if !host.contains(':')
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(format!(
                "{s:?}: bad host {host:?} (write international names in their xn-- form)"
            ));
        }
        let default_port = if tls { 443 } else { 80 };
        let port = match port {
            None | Some("") => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("{s:?}: bad port {p:?}")),
            },
        };
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Ok(Url {
            tls,
            host: host.to_ascii_lowercase(),
            port,
            path: encode_path(&path),
        })
    }

    /// `host[:port]` as the Host header writes it (port only when not the
    /// scheme's default).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Resolves a `Location` value against this URL (RFC 3986 §5.2):
    /// absolute, scheme-relative (`//host/p`), absolute-path, query-only
    /// and relative references, with `.` and `..` segments removed.
    pub fn join(&self, reference: &str) -> Result<Url, String> {
        let r = reference.trim().split('#').next().unwrap_or("");
        let has_scheme = r
            .find(':')
            .map(|i| {
                let sch = &r[..i];
                !sch.is_empty()
                    && sch.as_bytes()[0].is_ascii_alphabetic()
                    && sch
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            })
            .unwrap_or(false);
        if has_scheme {
            return Url::parse(r);
        }
        if r.starts_with("//") {
            let scheme = if self.tls { "https:" } else { "http:" };
            return Url::parse(&format!("{scheme}{r}"));
        }
        let (base_path, _base_query) = split_query(&self.path);
        let path = if r.is_empty() {
            self.path.clone()
        } else if r.starts_with('?') {
            format!("{base_path}{r}")
        } else {
            let (rp, rq) = split_query(r);
            let merged = if rp.starts_with('/') {
                rp.to_string()
            } else if rp.is_empty() {
                base_path.to_string()
            } else {
                let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
                format!("{dir}{rp}")
            };
            format!("{}{}", remove_dot_segments(&merged), rq)
        };
        Ok(Url {
            path: encode_path(&path),
            ..self.clone()
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            write!(f, "{scheme}://{host}{}", self.path)
        } else {
            write!(f, "{scheme}://{host}:{}{}", self.port, self.path)
        }
    }
}

/// `("/a/b", "?q")` from `"/a/b?q"`.
fn split_query(p: &str) -> (&str, &str) {
    match p.find('?') {
        Some(i) => p.split_at(i),
        None => (p, ""),
    }
}

/// RFC 3986 §5.2.4, on a path that starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, seg) in segs.iter().enumerate().skip(1) {
        let last = i == segs.len() - 1;
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// Percent-encodes what may not appear raw in a request target (spaces,
/// controls, non-ASCII, and a few delimiters); `%` is kept so that
/// already-encoded paths pass unchanged.
fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding, for Basic auth.
fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ------------------------------------------------------------ failures

/// Where and how an exchange broke.
#[derive(Debug)]
struct Fail {
    layer: &'static str,
    kind: &'static str,
    phase: Option<&'static str>,
    reason: String,
}

fn fail(layer: &'static str, kind: &'static str, reason: impl Into<String>) -> Fail {
    Fail {
        layer,
        kind,
        phase: None,
        reason: reason.into(),
    }
}

fn protocol_error(reason: impl Into<String>) -> Fail {
    fail(layer::PROTOCOL, "protocol_error", reason)
}

/// A timeout in `phase`; the layer is the phase's own, so that a hook
/// switching on `error.layer` sees where time ran out.
fn timeout(phase: &'static str, ctx: &Ctx) -> Fail {
    let (lay, what) = match phase {
        "dns" => (layer::DNS, "resolving the name"),
        "connect" => (layer::TCP, "connecting"),
        "tls" => (layer::TLS, "in the TLS handshake"),
        "ttfb" => (layer::PROTOCOL, "waiting for the response"),
        _ => (layer::PROTOCOL, "reading the response"),
    };
    Fail {
        layer: lay,
        kind: "timeout",
        phase: Some(phase),
        reason: format!(
            "timed out {what} after {:.0}ms (--timeout {})",
            event::ms(ctx.start.elapsed()),
            cli::format_duration(ctx.timeout)
        ),
    }
}

/// How long one socket wait may last: what is left of the deadline, but
/// at most half a second. Linux runs SO_RCVTIMEO/SO_SNDTIMEO on the
/// coarse timer wheel, where a multi-second timeout fires up to ~12% late
/// (256 ms for 10 s at HZ=250), enough to miss the deadline; short
/// slices fire within a few ms, and the loops around them re-check the
/// deadline.
fn wait_slice(ctx: &Ctx) -> Option<Duration> {
    ctx.remaining().map(|d| d.min(Duration::from_millis(500)))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

// ------------------------------------------------------------ the check

/// What one exchange observed, kept also when it fails.
#[derive(Default)]
struct Trace {
    phases: Vec<(&'static str, Duration)>,
    addrs: Vec<IpAddr>,
    peer: Option<SocketAddr>,
    cert: Option<Vec<u8>>,
}

impl Trace {
    fn add(&mut self, phase: &'static str, d: Duration) {
        match self.phases.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, t)) => *t += d,
            None => self.phases.push((phase, d)),
        }
    }
}

/// A response head.
struct Head {
    code: u16,
    reason: String,
    version: u8,
    headers: Vec<(String, String)>,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response, with as much body as was read.
struct Response {
    head: Head,
    body: Sink,
}

fn run_check(check: &Check, ctx: &Ctx) -> Outcome {
    let cfg = &check.cfg;
    let mut url = check.url.clone();
    let mut method = cfg.method.clone();
    let mut data = cfg.data.as_deref();
    let mut same_host = true;
    let mut trace = Trace::default();
    let mut hops: Vec<Value> = Vec::new();
    loop {
        let following = (hops.len() as u32) < cfg.follow;
        let result = exchange(
            &url, &method, data, same_host, cfg, ctx, &mut trace, following,
        );
        let resp = match result {
            Ok(r) => r,
            Err(f) => {
                return finish(
                    Outcome::fail(
                        // A fault of the probe itself cannot judge the service.
                        if f.layer == layer::INTERNAL {
                            Status::Unknown
                        } else {
                            Status::Down
                        },
                        ErrorInfo {
                            layer: f.layer.into(),
                            kind: f.kind.into(),
                            phase: f.phase.map(Into::into),
                        },
                        f.reason,
                    ),
                    &url,
                    &hops,
                    &trace,
                    None,
                    cfg,
                );
            }
        };
        let code = resp.head.code;
        let location = resp.head.values("location").next().map(str::to_string);
        let redirect = matches!(code, 301 | 302 | 303 | 307 | 308);
        if let (true, Some(loc)) = (redirect && cfg.follow > 0, location) {
            if !following {
                let mut o = Outcome::down(
                    layer::PROTOCOL,
                    "too_many_redirects",
                    format!(
                        "still redirected after {} hops (--follow {}): {code} to {loc}",
                        hops.len(),
                        cfg.follow
                    ),
                );
                o.assertions.push(Assertion::new(
                    "redirects",
                    format!("<= {}", cfg.follow),
                    format!("> {}", cfg.follow),
                    false,
                ));
                return finish(o, &url, &hops, &trace, Some(&resp), cfg);
            }
            let next = match url.join(&loc) {
                Ok(n) => n,
                Err(e) => {
                    let o = Outcome::down(
                        layer::PROTOCOL,
                        "protocol_error",
                        format!("HTTP {code} with a bad Location {loc:?}: {e}"),
                    );
                    return finish(o, &url, &hops, &trace, Some(&resp), cfg);
                }
            };
            hops.push(json!({"url": url.to_string(), "status": code, "location": loc}));
            // What browsers and curl do: 303 (and 301/302 after a POST)
            // turn into a GET without a body; 307/308 repeat the request.
            if code == 303 && method != "HEAD" || (matches!(code, 301 | 302) && method == "POST") {
                method = "GET".into();
                data = None;
            }
            // Credentials go only to the host they were given for.
            if next.host != url.host || next.port != url.port || next.tls != url.tls {
                same_host = false;
            }
            url = next;
            continue;
        }
        let o = judge(&resp, cfg);
        return finish(o, &url, &hops, &trace, Some(&resp), cfg);
    }
}

/// Adds what was observed (phases, details, fingerprint, certificate
/// facts) to an outcome.
fn finish(
    mut o: Outcome,
    url: &Url,
    hops: &[Value],
    trace: &Trace,
    resp: Option<&Response>,
    cfg: &Config,
) -> Outcome {
    for (p, d) in &trace.phases {
        o.phase(p, *d);
    }
    if let Some(peer) = trace.peer {
        o.detail("peer", peer.to_string());
    }
    if !hops.is_empty() {
        o.detail("url", url.to_string());
        o.detail("redirects", Value::Array(hops.to_vec()));
    }
    if let Some(r) = resp {
        o.detail("http_status", r.head.code);
        o.detail("http_version", format!("1.{}", r.head.version));
        o.detail("body_bytes", r.body.total);
        if r.body.cut {
            o.detail("body_truncated", true);
        }
    }
    if let Some(der) = &trace.cert {
        if let Some(c) = tls::Cert::from_der(der) {
            judge_cert(&mut o, &c, cfg);
            o.detail("cert", c.to_json());
        }
    }
    let mut parts: Vec<String> = Vec::new();
    if let Some(der) = &trace.cert {
        parts.push(format!("cert:{}", tls::digest(der)));
    }
    let mut addrs: Vec<String> = trace.addrs.iter().map(|a| format!("addr:{a}")).collect();
    addrs.sort();
    addrs.dedup();
    parts.extend(addrs);
    if !parts.is_empty() {
        o.fingerprint = Some(event::fingerprint(&parts));
    }
    o
}

/// One request and its response: DNS, TCP, TLS, request, head, body.
#[allow(clippy::too_many_arguments)]
fn exchange(
    url: &Url,
    method: &str,
    data: Option<&[u8]>,
    same_host: bool,
    cfg: &Config,
    ctx: &Ctx,
    trace: &mut Trace,
    may_redirect: bool,
) -> Result<Response, Fail> {
    // Peer and certificate describe the last connection made (the final
    // hop after redirects); phases and addresses add up over all hops.
    trace.peer = None;
    trace.cert = None;
    // The TLS connector first, outside every phase's clock: loading the
    // trust store is local work, not the server's time, and a connection
    // should not sit idle while it happens.
    let tls = match url.tls {
        false => None,
        true => Some(
            tls::context(cfg.insecure, cfg.ca_pem.as_deref()).map_err(|e| {
                fail(
                    layer::INTERNAL,
                    "internal_error",
                    format!("cannot set up TLS: {e}"),
                )
            })?,
        ),
    };
    // DNS, unless the host is an address or --resolve names it.
    let addrs = if let Ok(ip) = url.host.parse::<IpAddr>() {
        vec![ip]
    } else if let Some((_, _, a)) = cfg
        .resolve
        .iter()
        .find(|(h, p, _)| *h == url.host && *p == url.port)
    {
        a.clone()
    } else {
        let t = Instant::now();
        let r = lookup(&url.host, url.port, ctx);
        trace.add("dns", t.elapsed());
        r?
    };
    let addrs: Vec<IpAddr> = {
        let mut seen = Vec::new();
        for a in addrs {
            if ctx.family.admits(&a) && !seen.contains(&a) {
                seen.push(a);
            }
        }
        seen
    };
    if addrs.is_empty() {
        let fam = match ctx.family {
            crate::probe::IpFamily::V4 => "IPv4 ",
            crate::probe::IpFamily::V6 => "IPv6 ",
            crate::probe::IpFamily::Any => "",
        };
        return Err(fail(
            layer::DNS,
            "dns_failure",
            format!("{} has no {fam}address", url.host),
        ));
    }
    trace.addrs.extend(addrs.iter().copied());

    // TCP: each address in turn, sharing what is left of the deadline.
    let t = Instant::now();
    let mut last_err = None;
    let mut tcp = None;
    for (i, ip) in addrs.iter().enumerate() {
        let left = match ctx.remaining() {
            Some(l) => l,
            None => break,
        };
        let share = left / (addrs.len() - i) as u32;
        let sa = SocketAddr::new(*ip, url.port);
        match TcpStream::connect_timeout(&sa, share.max(Duration::from_millis(1))) {
            Ok(s) => {
                tcp = Some((s, sa));
                break;
            }
            Err(e) => last_err = Some((sa, e)),
        }
    }
    trace.add("connect", t.elapsed());
    let (tcp, peer) = match tcp {
        Some(v) => v,
        None => {
            return Err(match last_err {
                None => fail(
                    layer::TCP,
                    "connect_timeout",
                    format!(
                        "no TCP connection to {}:{} within --timeout {}",
                        url.host,
                        url.port,
                        cli::format_duration(ctx.timeout)
                    ),
                ),
                Some((sa, e)) => match e.kind() {
                    io::ErrorKind::ConnectionRefused => fail(
                        layer::TCP,
                        "connect_refused",
                        format!("TCP connection to {sa} refused"),
                    ),
                    _ if is_timeout(&e) => fail(
                        layer::TCP,
                        "connect_timeout",
                        format!("no TCP connection to {sa} within the deadline"),
                    ),
                    _ => fail(
                        layer::TCP,
                        "connect_failed",
                        format!("cannot connect to {sa}: {e}"),
                    ),
                },
            })
        }
    };
    trace.peer = Some(peer);
    let _ = tcp.set_nodelay(true);

    // TLS. Socket timeouts make OpenSSL report "would block"; the
    // handshake resumes in short slices until the deadline.
    let mut conn = if let Some(tls_ctx) = tls {
        let t = Instant::now();
        let r = tls::connect(&tls_ctx, tcp, &url.host, !cfg.insecure, |s| {
            let left = wait_slice(ctx).ok_or_else(|| timeout("tls", ctx))?;
            let _ = s.set_read_timeout(Some(left));
            let _ = s.set_write_timeout(Some(left));
            Ok(())
        });
        trace.add("tls", t.elapsed());
        match r {
            Ok(s) => {
                trace.cert = tls::peer_cert(&s);
                Conn::Tls(Box::new(s))
            }
            Err(tls::Error::Wait(f)) => return Err(f),
            Err(tls::Error::Setup(e)) => return Err(fail(layer::INTERNAL, "internal_error", e)),
            Err(tls::Error::Failed { kind, reason, cert }) => {
                // A rejected certificate is reported too, from the same
                // handshake.
                trace.cert = cert;
                return Err(fail(layer::TLS, kind, reason));
            }
        }
    } else {
        Conn::Plain(tcp)
    };

    // The request.
    let t = Instant::now();
    let req = request(url, method, data, same_host, cfg);
    send(&mut conn, &req, ctx)?;
    let mut wire = Wire {
        conn,
        buf: vec![0; READ_BUF],
        pos: 0,
        end: 0,
        ctx,
    };
    if !wire.fill("ttfb")? {
        trace.add("ttfb", t.elapsed());
        return Err(protocol_error(
            "the server closed the connection without a response",
        ));
    }
    trace.add("ttfb", t.elapsed());

    // The head and the body.
    let t = Instant::now();
    let r = read_response(&mut wire, method, cfg, may_redirect);
    trace.add("transfer", t.elapsed());
    r
}

/// The request bytes: head and body.
fn request(url: &Url, method: &str, data: Option<&[u8]>, same_host: bool, cfg: &Config) -> Vec<u8> {
    let has = |name: &str| {
        cfg.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    let mut h = format!("{method} {} HTTP/1.1\r\n", url.path);
    if !has("host") {
        h.push_str(&format!("Host: {}\r\n", url.authority()));
    }
    if !has("user-agent") {
        h.push_str(concat!(
            "User-Agent: pup-probe-http/",
            env!("CARGO_PKG_VERSION"),
            "\r\n"
        ));
    }
    if !has("accept") {
        h.push_str("Accept: */*\r\n");
    }
    h.push_str("Connection: close\r\n");
    for (k, v) in &cfg.headers {
        let secret = k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("cookie");
        if k.eq_ignore_ascii_case("connection")
            || k.eq_ignore_ascii_case("content-length")
            || (secret && !same_host)
        {
            continue;
        }
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if let (Some(auth), true) = (&cfg.auth, same_host) {
        h.push_str(&format!("Authorization: {auth}\r\n"));
    }
    if let Some(d) = data {
        if !has("content-type") {
            h.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        h.push_str(&format!("Content-Length: {}\r\n", d.len()));
    }
    h.push_str("\r\n");
    let mut out = h.into_bytes();
    if let Some(d) = data {
        out.extend_from_slice(d);
    }
    out
}

/// getaddrinfo has no timeout of its own: it runs on a thread and is
/// waited for no longer than the deadline (a late answer is dropped).
fn lookup(host: &str, port: u16, ctx: &Ctx) -> Result<Vec<IpAddr>, Fail> {
    let left = ctx.remaining().ok_or_else(|| timeout("dns", ctx))?;
    let (tx, rx) = mpsc::channel();
    let h = host.to_string();
    std::thread::Builder::new()
        .spawn(move || {
            let r = (h.as_str(), port)
                .to_socket_addrs()
                .map(|it| it.map(|sa| sa.ip()).collect::<Vec<_>>());
            let _ = tx.send(r);
        })
        .map_err(|e| {
            fail(
                layer::INTERNAL,
                "internal_error",
                format!("cannot start a DNS thread: {e}"),
            )
        })?;
    match rx.recv_timeout(left) {
        Ok(Ok(v)) if !v.is_empty() => Ok(v),
        Ok(Ok(_)) => Err(fail(
            layer::DNS,
            "dns_failure",
            format!("{host} has no address"),
        )),
        Ok(Err(e)) => Err(fail(
            layer::DNS,
            "dns_failure",
            format!(
                "DNS lookup of {host} failed: {}",
                e.to_string()
                    .trim_start_matches("failed to lookup address information: ")
            ),
        )),
        Err(_) => Err(timeout("dns", ctx)),
    }
}

// ----------------------------------------------------------- certificate

/// `--cert-warn` / `--cert-crit`.
fn judge_cert(o: &mut Outcome, c: &tls::Cert, cfg: &Config) {
    let left = c.secs_left();
    let days = c.days_left();
    let crit = cfg.cert_crit.as_secs() as i64;
    let warn = cfg.cert_warn.as_secs() as i64;
    let ok = left > warn;
    o.assertions.push(Assertion::new(
        "cert_expiry",
        format!("> {}", cli::format_duration(cfg.cert_warn)),
        format!("{days}d"),
        ok,
    ));
    if ok {
        if o.status == Status::Up {
            o.reason
                .push_str(&format!("; certificate valid for {days} more days"));
        }
        return;
    }
    let when = if left < 0 {
        format!("expired {} days ago", -days)
    } else {
        format!("expires in {days} days")
    };
    let (status, limit, flag) = if left <= crit {
        (Status::Down, cfg.cert_crit, "--cert-crit")
    } else {
        (Status::Degraded, cfg.cert_warn, "--cert-warn")
    };
    o.set_failure(
        status,
        ErrorInfo::new(layer::TLS, "cert_expiring"),
        format!(
            "certificate {when} ({}), within {flag} {}",
            humantime::format_rfc3339_seconds(c.not_after),
            cli::format_duration(limit)
        ),
    );
}

// ------------------------------------------------------------- the wire

type Conn = tls::Stream<TcpStream>;

/// Writes the request, every write bounded by the deadline.
fn send(conn: &mut Conn, mut bytes: &[u8], ctx: &Ctx) -> Result<(), Fail> {
    while !bytes.is_empty() {
        let left = wait_slice(ctx).ok_or_else(|| timeout("ttfb", ctx))?;
        let _ = conn.get_ref().set_write_timeout(Some(left));
        match conn.write(bytes) {
            Ok(0) => {
                return Err(protocol_error(
                    "the connection closed while sending the request",
                ))
            }
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => continue,
            Err(e) => return Err(protocol_error(format!("cannot send the request: {e}"))),
        }
    }
    conn.flush()
        .map_err(|e| protocol_error(format!("cannot send the request: {e}")))
}

/// The connection with a read buffer; every read bounded by the deadline.
struct Wire<'c> {
    conn: Conn,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    ctx: &'c Ctx,
}

impl Wire<'_> {
    /// Makes buffered bytes available; `false` at end of stream.
    fn fill(&mut self, phase: &'static str) -> Result<bool, Fail> {
        if self.pos < self.end {
            return Ok(true);
        }
        loop {
            let left = wait_slice(self.ctx).ok_or_else(|| timeout(phase, self.ctx))?;
            let _ = self.conn.get_ref().set_read_timeout(Some(left));
            match self.conn.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.pos = 0;
                    self.end = n;
                    return Ok(true);
                }
                // A socket timeout: the loop re-checks the deadline.
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => continue,
                // Many servers close TLS without close_notify; OpenSSL 3
                // calls that an error, HTTP framing decides if it matters.
                Err(e)
                    if e.to_string()
                        .to_ascii_lowercase()
                        .contains("unexpected eof") =>
                {
                    return Ok(false)
                }
                Err(e) => {
                    return Err(protocol_error(format!(
                        "connection broken while {}: {e}",
                        if phase == "ttfb" {
                            "waiting for the response"
                        } else {
                            "reading the response"
                        }
                    )))
                }
            }
        }
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// One line (for chunk sizes), without its CRLF, at most `cap` bytes.
    fn line(&mut self, cap: usize) -> Result<Vec<u8>, Fail> {
        let mut out = Vec::new();
        loop {
            if !self.fill("transfer")? {
                return Err(protocol_error(
                    "the connection closed inside the chunked body",
                ));
            }
            let a = self.avail();
            match a.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&a[..i]);
                    self.pos += i + 1;
                    if out.last() == Some(&b'\r') {
                        out.pop();
                    }
                    return Ok(out);
                }
                None => {
                    out.extend_from_slice(a);
                    self.pos = self.end;
                }
            }
            if out.len() > cap {
                return Err(protocol_error("a chunk-size line is too long"));
            }
        }
    }
}

/// The body as far as it was read: kept in memory (up to `cap`) only when
/// an assertion needs it, counted either way.
struct Sink {
    keep: bool,
    cap: u64,
    data: Vec<u8>,
    total: u64,
    cut: bool,
}

impl Sink {
    /// Takes bytes up to the cap; `false` once the cap is passed.
    fn push(&mut self, b: &[u8]) -> bool {
        let room = self.cap - self.total;
        let take = (b.len() as u64).min(room) as usize;
        if self.keep {
            self.data.extend_from_slice(&b[..take]);
        }
        self.total += take as u64;
        if take < b.len() {
            self.cut = true;
        }
        !self.cut
    }
}

/// Reads the response head (skipping 1xx) and as much body as allowed.
fn read_response(
    wire: &mut Wire,
    method: &str,
    cfg: &Config,
    may_redirect: bool,
) -> Result<Response, Fail> {
    let head = read_head(wire)?;
    let mut body = Sink {
        keep: cfg.needs_body(),
        cap: cfg.max_body,
        data: Vec::new(),
        total: 0,
        cut: false,
    };
    let redirect_followed = may_redirect
        && matches!(head.code, 301 | 302 | 303 | 307 | 308)
        && head.values("location").next().is_some();
    if method == "HEAD" || matches!(head.code, 101 | 204 | 304) || redirect_followed {
        return Ok(Response { head, body });
    }
    let chunked = head.values("transfer-encoding").last().map(|v| {
        v.rsplit(',')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("chunked")
    });
    let length = if head.values("transfer-encoding").next().is_some() {
        None
    } else {
        let mut lens = head.values("content-length").flat_map(|v| v.split(','));
        match lens.next() {
            None => None,
            Some(first) => {
                let n: u64 = first
                    .trim()
                    .parse()
                    .map_err(|_| protocol_error(format!("bad Content-Length {first:?}")))?;
                if lens.any(|o| o.trim().parse::<u64>().ok() != Some(n)) {
                    return Err(protocol_error("conflicting Content-Length headers"));
                }
                Some(n)
            }
        }
    };
    if chunked == Some(true) {
        read_chunked(wire, &mut body)?;
    } else if let Some(n) = length {
        let mut left = n;
        while left > 0 {
            if !wire.fill("transfer")? {
                return Err(protocol_error(format!(
                    "the connection closed after {} of {n} body bytes",
                    n - left
                )));
            }
            let a = wire.avail();
            let take = (a.len() as u64).min(left) as usize;
            let more = body.push(&a[..take]);
            wire.pos += take;
            left -= take as u64;
            if !more {
                break;
            }
        }
        if left > 0 {
            body.cut = true;
        }
    } else {
        // No framing: the body ends when the server closes.
        while wire.fill("transfer")? {
            let a = wire.avail();
            let n = a.len();
            let more = body.push(a);
            wire.pos += n;
            if !more {
                break;
            }
        }
    }
    Ok(Response { head, body })
}

fn read_chunked(wire: &mut Wire, body: &mut Sink) -> Result<(), Fail> {
    loop {
        let line = wire.line(4096)?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16)
            .ok()
            .filter(|_| !size_text.is_empty() && size_text.len() <= 15)
            .ok_or_else(|| protocol_error(format!("bad chunk size {:?}", preview(&line))))?;
        if size == 0 {
            // Trailers are not read: the connection closes after this.
            return Ok(());
        }
        let mut left = size;
        while left > 0 {
            if !wire.fill("transfer")? {
                return Err(protocol_error("the connection closed inside a chunk"));
            }
            let a = wire.avail();
            let take = (a.len() as u64).min(left) as usize;
            let more = body.push(&a[..take]);
            wire.pos += take;
            left -= take as u64;
            if !more {
                return Ok(());
            }
        }
        if !wire.line(2)?.is_empty() {
            return Err(protocol_error("a chunk is longer than its size"));
        }
    }
}

/// Reads and parses the head, skipping interim (1xx) responses.
fn read_head(wire: &mut Wire) -> Result<Head, Fail> {
    let mut acc: Vec<u8> = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let parsed = if acc.is_empty() {
            Ok(httparse::Status::Partial)
        } else {
            resp.parse(&acc)
        };
        match parsed {
            Ok(httparse::Status::Complete(n)) => {
                let head = Head {
                    code: resp.code.unwrap_or(0),
                    reason: resp.reason.unwrap_or("").to_string(),
                    version: resp.version.unwrap_or(1),
                    headers: resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).trim().to_string(),
                            )
                        })
                        .collect(),
                };
                // The bytes after the head are still in the wire's
                // buffer (they came in the last read): step back to them.
                wire.pos = wire.end - (acc.len() - n);
                if (100..200).contains(&head.code) && head.code != 101 {
                    acc.clear();
                    continue;
                }
                if !(100..=599).contains(&head.code) {
                    return Err(protocol_error(format!("invalid HTTP status {}", head.code)));
                }
                return Ok(head);
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(protocol_error(format!(
                    "the response has over {MAX_HEADERS} headers"
                )))
            }
            Err(e) => {
                return Err(protocol_error(format!(
                    "not an HTTP response ({e}): {:?}",
                    preview(&acc)
                )))
            }
        }
        if acc.len() > MAX_HEAD {
            return Err(protocol_error(format!(
                "the response head is over {} KiB",
                MAX_HEAD / 1024
            )));
        }
        if !wire.fill("transfer")? {
            return Err(protocol_error(if acc.is_empty() {
                "the server closed the connection without a response".to_string()
            } else {
                format!(
                    "the connection closed inside the response head: {:?}",
                    preview(&acc)
                )
            }));
        }
        acc.extend_from_slice(wire.avail());
        wire.pos = wire.end;
    }
}

/// The first bytes of something, for a message.
fn preview(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(40)]).to_string();
    if b.len() > 40 {
        format!("{s}…")
    } else {
        s
    }
}

// ------------------------------------------------------------ judging

/// Evaluates every assertion on the final response, in layer order: the
/// first failure (status, then headers, then body) names the outcome.
fn judge(r: &Response, cfg: &Config) -> Outcome {
    let h = &r.head;
    let mut o = Outcome::up(format!(
        "HTTP {} {}, {} body bytes",
        h.code, h.reason, r.body.total
    ));
    let ok = cfg.expect.admits(h.code);
    o.assertions.push(Assertion::new(
        "status",
        cfg.expect.text.clone(),
        h.code.to_string(),
        ok,
    ));
    if !ok {
        o.set_failure(
            Status::Down,
            ErrorInfo::new(layer::PROTOCOL, "status_mismatch"),
            format!(
                "HTTP status {} {}, expected {}",
                h.code, h.reason, cfg.expect.text
            ),
        );
    }
    for (name, want) in &cfg.header_contains {
        let vals: Vec<&str> = h.values(name).collect();
        let ok = vals.iter().any(|v| v.contains(want.as_str()));
        let actual = if vals.is_empty() {
            "(absent)".to_string()
        } else {
            format!("{name}: {}", vals.join(", "))
        };
        o.assertions.push(Assertion::new(
            "header",
            format!("{name}: {want}"),
            actual.clone(),
            ok,
        ));
        if !ok {
            o.set_failure(
                Status::Down,
                ErrorInfo::new(layer::PROTOCOL, "header_mismatch"),
                format!("response header {name} does not contain {want:?} (got {actual})"),
            );
        }
    }
    if !cfg.needs_body() {
        return o;
    }
    let text = String::from_utf8_lossy(&r.body.data);
    let cut = r.body.cut;
    let cut_note = format!("undecided: body over --max-body {} bytes", cfg.max_body);
    let too_large = |o: &mut Outcome, what: &str| {
        o.set_failure(
            Status::Down,
            ErrorInfo::new(layer::CONTENT, "body_too_large"),
            format!(
                "{what} needs the whole body, which is over --max-body {} bytes",
                cfg.max_body
            ),
        );
    };
    for want in &cfg.contains {
        let found = text.contains(want.as_str());
        let actual = match (found, cut) {
            (true, _) => "found".to_string(),
            (false, false) => "not found".to_string(),
            (false, true) => cut_note.clone(),
        };
        o.assertions
            .push(Assertion::new("contains", want.clone(), actual, found));
        if !found && cut {
            too_large(&mut o, &format!("--contains {want:?}"));
        } else if !found {
            o.set_failure(
                Status::Down,
                ErrorInfo::new(layer::CONTENT, "content_mismatch"),
                format!("the body does not contain {want:?}"),
            );
        }
    }
    for bad in &cfg.not_contains {
        let found = text.contains(bad.as_str());
        let ok = !found && !cut;
        let actual = match (found, cut) {
            (true, _) => "found".to_string(),
            (false, false) => "not found".to_string(),
            (false, true) => cut_note.clone(),
        };
        o.assertions
            .push(Assertion::new("not_contains", bad.clone(), actual, ok));
        if found {
            o.set_failure(
                Status::Down,
                ErrorInfo::new(layer::CONTENT, "content_mismatch"),
                format!("the body contains {bad:?}"),
            );
        } else if cut {
            too_large(&mut o, &format!("--not-contains {bad:?}"));
        }
    }
    for (src, re) in &cfg.regexes {
        if cut {
            o.assertions.push(Assertion::new(
                "regex",
                src.clone(),
                cut_note.clone(),
                false,
            ));
            too_large(&mut o, &format!("--regex {src:?}"));
            continue;
        }
        let m = re.find(&text);
        let actual = match &m {
            Some(m) => format!(
                "matched {:?}",
                m.as_str().chars().take(80).collect::<String>()
            ),
            None => "no match".to_string(),
        };
        o.assertions
            .push(Assertion::new("regex", src.clone(), actual, m.is_some()));
        if m.is_none() {
            o.set_failure(
                Status::Down,
                ErrorInfo::new(layer::CONTENT, "content_mismatch"),
                format!("the body does not match /{src}/"),
            );
        }
    }
    if !cfg.json.is_empty() {
        let doc: Result<Value, String> = if cut {
            Err(cut_note.clone())
        } else {
            serde_json::from_slice(&r.body.data).map_err(|e| format!("body is not JSON: {e}"))
        };
        for (ptr, raw, want) in &cfg.json {
            let expected = format!("{ptr}={raw}");
            let (ok, actual) = match &doc {
                Err(e) => (false, e.clone()),
                Ok(d) => match d.pointer(ptr) {
                    None => (false, "(absent)".to_string()),
                    Some(v) => {
                        let ok = v == want || v.as_str() == Some(raw.as_str());
                        let mut s = v.to_string();
                        if s.len() > 200 {
                            s = format!("{}…", s.chars().take(200).collect::<String>());
                        }
                        (ok, s)
                    }
                },
            };
            o.assertions
                .push(Assertion::new("json_pointer", expected, actual.clone(), ok));
            if ok {
                continue;
            }
            if cut {
                too_large(&mut o, &format!("--json-pointer {ptr}"));
            } else {
                o.set_failure(
                    Status::Down,
                    ErrorInfo::new(layer::CONTENT, "content_mismatch"),
                    format!("JSON {ptr} is {actual}, expected {raw}"),
                );
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_refuse_what_they_cannot_check() {
        let u = Url::parse("https://Example.ORG").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "example.org", 443, "/")
        );
        let u = Url::parse("http://[::1]:8080/a b?q=1#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "/a%20b?q=1")
        );
        assert_eq!(u.to_string(), "http://[::1]:8080/a%20b?q=1");
        assert_eq!(Url::parse("http://h?x").unwrap().path, "/?x");
        assert!(Url::parse("ftp://h/").unwrap_err().contains("only http"));
        assert!(Url::parse("example.org")
            .unwrap_err()
            .contains("must start with"));
        assert!(Url::parse("http://u:p@h/").unwrap_err().contains("--user"));
        assert!(Url::parse("http://h:99999/")
            .unwrap_err()
            .contains("bad port"));
        assert!(Url::parse("http:///x").unwrap_err().contains("no host"));
    }

    #[test]
    fn locations_resolve_like_rfc_3986() {
        let base = Url::parse("http://a/b/c/d;p?q").unwrap();
        let cases = [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("https://other:8443/x", "https://other:8443/x"),
            ("HTTP://A/up", "http://a/up"),
        ];
        for (r, want) in cases {
            assert_eq!(base.join(r).unwrap().to_string(), want, "reference {r:?}");
        }
        assert!(base.join("mailto:x@y").is_err());
        let tls = Url::parse("https://s:444/p").unwrap();
        assert_eq!(tls.join("//t/x").unwrap().to_string(), "https://t/x");
        assert_eq!(tls.join("q").unwrap().to_string(), "https://s:444/q");
    }

    #[test]
    fn status_lists() {
        let l = StatusList::parse("200, 204,300-399,5xx").unwrap();
        for c in [200, 204, 300, 399, 500, 599] {
            assert!(l.admits(c), "{c}");
        }
        for c in [201, 299, 400, 499] {
            assert!(!l.admits(c), "{c}");
        }
        assert_eq!(l.text, "200,204,300-399,5xx");
        assert!(StatusList::parse("399-300").is_err());
        assert!(StatusList::parse("abc").is_err());
        assert!(StatusList::parse("700").is_err());
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass word"), "dXNlcjpwYXNzIHdvcmQ=");
    }

    #[test]
    fn resolve_flags() {
        let (h, p, a) = parse_resolve("Example.org:443:127.0.0.1,[::1]").unwrap();
        assert_eq!((h.as_str(), p), ("example.org", 443));
        assert_eq!(a.len(), 2);
        assert!(parse_resolve("x:80").is_err());
        assert!(parse_resolve("x:80:nope").is_err());
    }
}
