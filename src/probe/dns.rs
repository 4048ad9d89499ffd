//! `pup-probe-dns`: ask one chosen name server for a name and type, and
//! judge the whole answer: rcode, the AA bit, the exact answer set, TTLs,
//! and with `--consistent`, agreement between several servers.
//!
//! Library choice: hickory-proto's `Message` builds the query and parses the
//! reply; the bytes travel over std `UdpSocket` / `TcpStream` here. We do
//! not use hickory-resolver: it is async-only (tokio), it retries and
//! fails over on its own, it answers some names (`.invalid`, `localhost`)
//! without sending anything, and it turns NXDOMAIN and REFUSED into errors.
//! A monitor needs the opposite: exactly one question to exactly the server
//! named, the raw rcode and flags, no cache, no retry beyond the deadline.
//!
//! Decisions a reader might question:
//! - Replies that are not for our query (wrong ID, not a response, another
//!   question) are ignored and we keep waiting; replies from another address
//!   never reach us because the UDP socket is connected. If only such
//!   replies came before the deadline, the result is `protocol_error` (not
//!   `timeout`): something is answering, wrongly, and that is the news.
//! - A reply with our ID that cannot be parsed is `protocol_error` at once.
//! - The compared answer set is the records of the asked type in the answer
//!   section (a CNAME chain before them is reported in `details.chain`, not
//!   compared); this is what `dig +short` users expect to compare.
//! - Queries carry EDNS(0) with a 1232-byte UDP size (the DNS flag day
//!   value, what dig sends), so fewer answers need TCP; `--no-edns` sends a
//!   plain RFC 1035 query (512 bytes). A truncated UDP answer is asked again
//!   over TCP within the same deadline.
//! - With several `--server` and no `--consistent`, each server is its own
//!   check with its own result. Without `--server`, the first name server
//!   in /etc/resolv.conf is asked (as a stub resolver asks first).
//! - With rcode NOERROR asserted and no answer assertion, an empty answer
//!   (NODATA) is a failure: `pup-probe-dns www.example.org` means "does it
//!   resolve". `--expect-empty` asserts NODATA instead.
//! - `connect_refused` and `connect_failed` sit on the `tcp` layer (reaching
//!   the port) for UDP too: ICMP port unreachable surfaces as ECONNREFUSED
//!   on a connected UDP socket.

use crate::cli;
use crate::event::{self, layer, Assertion, ErrorInfo, Status};
use crate::probe::{Common, Ctx, IpFamily, Outcome, Probe};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The record types the probe asks for and formats like `dig +short`.
const TYPES: [RecordType; 10] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::NS,
    RecordType::TXT,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::CAA,
];

/// EDNS(0) UDP payload size we announce (DNS flag day 2020).
const EDNS_PAYLOAD: u16 = 1232;

/// How many values a one-line reason lists before "…".
const REASON_VALUES: usize = 4;

pub struct Dns;

/// pup-probe-dns's own flags.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "DNS options")]
pub struct DnsArgs {
    /// The name to look up (always absolute: no search domains); for PTR an
    /// IP address is turned into its reverse name
    // Not `name`: the common `--name` flag has that id.
    #[arg(id = "qname", value_name = "NAME")]
    pub qname: Option<String>,

    /// Record type: A, AAAA, CNAME, MX, NS, TXT, SOA, SRV, PTR, CAA
    /// (any case) [default: A]
    #[arg(value_name = "TYPE")]
    pub rtype: Option<String>,

    /// Name server to ask, as an IP address with an optional port
    /// (192.0.2.1, 192.0.2.1:5353, ::1, [::1]:5353; default port 53);
    /// repeatable: each server is checked on its own, or together with
    /// --consistent [default: the first nameserver in /etc/resolv.conf]
    #[arg(long = "server", value_name = "ADDR[:PORT]")]
    pub servers: Vec<String>,

    /// Ask over TCP instead of UDP (UDP answers that come back truncated
    /// are asked again over TCP anyway)
    #[arg(long)]
    pub tcp: bool,

    /// Send a plain query without EDNS(0) (UDP answers are then limited to
    /// 512 bytes)
    #[arg(long)]
    pub no_edns: bool,

    /// Clear the RD (recursion desired) bit: ask the server about its own
    /// data only
    #[arg(long)]
    pub no_recurse: bool,

    /// The answer set must be exactly these values, in any order
    /// (repeatable; written as `dig +short` writes them: `192.0.2.1`,
    /// `10 mail.example.org.`, `"v=spf1 -all"`, `0 issue "ca.example"`)
    #[arg(long = "expect", value_name = "VALUE")]
    pub expect: Vec<String>,

    /// At least one of these values must be in the answer set (repeatable)
    #[arg(long = "expect-any", value_name = "VALUE")]
    pub expect_any: Vec<String>,

    /// The answer set must be empty (NODATA)
    #[arg(long, conflicts_with_all = ["expect", "expect_any"])]
    pub expect_empty: bool,

    /// The rcode the reply must have: NOERROR, NXDOMAIN, SERVFAIL,
    /// REFUSED, … or a number
    #[arg(long, value_name = "CODE", default_value = "NOERROR")]
    pub rcode: String,

    /// The reply must have the AA (authoritative answer) bit set
    #[arg(long)]
    pub authoritative: bool,

    /// Every record in the answer set must have at least this TTL
    #[arg(long, value_name = "DUR", value_parser = cli::parse_duration)]
    pub min_ttl: Option<Duration>,

    /// Ask every --server at once (same deadline); all must give the same
    /// answer set (for SOA: the same serial); the result names the server
    /// that disagrees
    #[arg(long)]
    pub consistent: bool,
}

/// One expected value, parsed for its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Compared with a record's canonical key.
    Key(String),
    /// An unquoted TXT value: compared with the record's strings joined
    /// without a separator (how SPF and DKIM read split strings).
    TxtJoined(Vec<u8>),
}

/// An expected value as the user wrote it and as parsed.
#[derive(Debug, Clone)]
pub struct Expected {
    pub text: String,
    pub want: Want,
}

impl Expected {
    fn matches(&self, a: &Answer) -> bool {
        match &self.want {
            Want::Key(k) => *k == a.key,
            Want::TxtJoined(j) => a.txt.as_ref().is_some_and(|t| t.concat() == *j),
        }
    }
}

/// A ready check.
#[derive(Debug, Clone)]
pub struct DnsCheck {
    pub qname: Name,
    pub rtype: RecordType,
    /// The servers asked: one, or several with `consistent`.
    pub servers: Vec<SocketAddr>,
    /// Were the servers named on the command line (then they are part of
    /// the target)?
    pub explicit: bool,
    pub consistent: bool,
    pub tcp: bool,
    pub edns: bool,
    pub recurse: bool,
    pub expect: Option<Vec<Expected>>,
    pub expect_any: Vec<Expected>,
    pub expect_empty: bool,
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub min_ttl: Option<Duration>,
}

impl Probe for Dns {
    const NAME: &'static str = "dns";
    const ABOUT: &'static str =
        "Ask a chosen name server for a name and type, and judge the whole answer";
    const AFTER_HELP: &'static str = "\
Values are written as `dig +short` writes them: A 192.0.2.1, AAAA 2001:db8::1,
MX `10 mail.example.org.`, SRV `PRIO WEIGHT PORT TARGET.`, SOA `MNAME RNAME
SERIAL REFRESH RETRY EXPIRE MINIMUM`, CAA `0 issue \"ca.example\"`, TXT as quoted
strings (`\"a\" \"b\"`; an unquoted value is compared with the strings joined).
Names compare without regard to case or a final dot. The compared set is the
records of the asked type; a CNAME chain before them is reported, not compared.
With NOERROR expected and no --expect/--expect-any/--expect-empty, an empty
answer fails.

Exit status: 0 up, 1 degraded, 2 down, 3 unknown (bad usage included).

Examples:
  pup-probe-dns example.org --server 192.0.2.53
  pup-probe-dns example.org MX --server 192.0.2.53 --expect '10 mail.example.org'
  pup-probe-dns www.example.org --server 192.0.2.53 --expect 192.0.2.1 --authoritative
  pup-probe-dns gone.example.org --server 192.0.2.53 --rcode NXDOMAIN
  pup-probe-dns example.org SOA --server 192.0.2.53 --server [2001:db8::53]:53 --consistent
  pup-probe-dns example.org TXT --server 192.0.2.53 --expect-any '\"v=spf1 -all\"' --min-ttl 1h
  printf 'a.example.org\\nb.example.org AAAA\\n' | pup-probe-dns --stdin --server 192.0.2.53
";

    type Args = DnsArgs;
    type Check = DnsCheck;

    fn has_targets(args: &DnsArgs) -> bool {
        args.qname.is_some()
    }

    fn prepare(args: DnsArgs, common: &Common) -> Result<Vec<DnsCheck>, String> {
        let name = args
            .qname
            .as_deref()
            .ok_or("missing NAME (the name to look up)")?;
        let rtype = match &args.rtype {
            None => RecordType::A,
            Some(t) => parse_type(t)?,
        };
        let qname = query_name(name, rtype)?;
        let rcode = parse_rcode(&args.rcode)?;
        let family = common.family();
        let explicit = !args.servers.is_empty();
        let servers = if explicit {
            let mut v = Vec::new();
            for s in &args.servers {
                let a = parse_server(s)?;
                if !family.admits(&a.ip()) {
                    return Err(format!(
                        "--server {s} is not an {} address",
                        if family == IpFamily::V4 {
                            "IPv4"
                        } else {
                            "IPv6"
                        }
                    ));
                }
                v.push(a);
            }
            v
        } else {
            let all = resolv_conf_servers();
            let first = all
                .iter()
                .find(|a| family.admits(&a.ip()))
                .ok_or("no --server given and /etc/resolv.conf names no usable nameserver")?;
            vec![*first]
        };
        if args.consistent && servers.len() < 2 {
            return Err("--consistent needs at least two --server".into());
        }
        let parse_all = |vals: &[String]| -> Result<Vec<Expected>, String> {
            vals.iter().map(|v| parse_expected(rtype, v)).collect()
        };
        let base = DnsCheck {
            qname,
            rtype,
            servers: Vec::new(),
            explicit,
            consistent: args.consistent,
            tcp: args.tcp,
            edns: !args.no_edns,
            recurse: !args.no_recurse,
            expect: if args.expect.is_empty() {
                None
            } else {
                Some(parse_all(&args.expect)?)
            },
            expect_any: parse_all(&args.expect_any)?,
            expect_empty: args.expect_empty,
            rcode,
            authoritative: args.authoritative,
            min_ttl: args.min_ttl,
        };
        if args.consistent {
            Ok(vec![DnsCheck { servers, ..base }])
        } else {
            Ok(servers
                .into_iter()
                .map(|s| DnsCheck {
                    servers: vec![s],
                    ..base.clone()
                })
                .collect())
        }
    }

    fn target(c: &DnsCheck) -> String {
        let mut t = format!("{} {}", c.qname.to_ascii(), c.rtype);
        if c.explicit {
            for s in &c.servers {
                t.push_str(&format!(" @{s}"));
            }
        }
        t
    }

    fn run(c: &DnsCheck, ctx: &Ctx) -> Outcome {
        if c.servers.len() == 1 {
            check_one(c, c.servers[0], ctx).outcome
        } else {
            check_consistent(c, ctx)
        }
    }
}

// ---------------------------------------------------------------------------
// Parsing the command line

fn parse_type(t: &str) -> Result<RecordType, String> {
    let up = t.to_ascii_uppercase();
    TYPES
        .iter()
        .find(|rt| rt.to_string() == up)
        .copied()
        .ok_or_else(|| {
            format!(
                "unknown record type {t:?} (use A, AAAA, CNAME, MX, NS, TXT, SOA, SRV, PTR or CAA)"
            )
        })
}

/// The name asked, absolute. For PTR an IP address becomes its reverse name.
fn query_name(name: &str, rtype: RecordType) -> Result<Name, String> {
    if rtype == RecordType::PTR {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return parse_name(&reverse_name(ip));
        }
    }
    parse_name(name)
}

fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::new();
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s + "ip6.arpa."
        }
    }
}

/// A domain name, made absolute (a missing final dot means the same name).
fn parse_name(s: &str) -> Result<Name, String> {
    if s.is_empty() {
        return Err("empty name".into());
    }
    if !s.is_ascii() {
        return Err(format!(
            "name {s:?} is not ASCII (write internationalized names in their xn-- form)"
        ));
    }
    let mut n = Name::from_ascii(s).map_err(|e| format!("bad name {s:?}: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// A name as compared: lowercase, absolute, escaped like dig.
fn name_key(n: &Name) -> String {
    let mut n = n.to_lowercase();
    n.set_fqdn(true);
    n.to_ascii()
}

fn parse_name_key(s: &str) -> Result<String, String> {
    Ok(name_key(&parse_name(s)?))
}

/// `--rcode`: dig's names (any case) or a number.
pub fn parse_rcode(s: &str) -> Result<ResponseCode, String> {
    if let Ok(n) = s.parse::<u16>() {
        if n > 4095 {
            return Err(format!("rcode {n} is out of range (0-4095)"));
        }
        return Ok(<ResponseCode as From<u16>>::from(n));
    }
    let up = s.to_ascii_uppercase();
    (0u16..=23)
        .map(<ResponseCode as From<u16>>::from)
        .find(|rc| rcode_name(*rc) == up)
        .ok_or_else(|| {
            format!("unknown rcode {s:?} (use NOERROR, NXDOMAIN, SERVFAIL, REFUSED, … or a number)")
        })
}

/// An rcode as dig writes it.
pub fn rcode_name(rc: ResponseCode) -> String {
    let s = match rc {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        ResponseCode::BADVERS | ResponseCode::BADSIG => "BADVERS",
        ResponseCode::BADKEY => "BADKEY",
        ResponseCode::BADTIME => "BADTIME",
        ResponseCode::BADMODE => "BADMODE",
        ResponseCode::BADNAME => "BADNAME",
        ResponseCode::BADALG => "BADALG",
        ResponseCode::BADTRUNC => "BADTRUNC",
        ResponseCode::BADCOOKIE => "BADCOOKIE",
        ResponseCode::Unknown(n) => return format!("RCODE{n}"),
    };
    s.to_string()
}

/// `--server`: an IP address with an optional port. Host names are refused:
/// resolving them would put another name server in front of the one asked.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "--server {s:?} is not an IP address with an optional port (192.0.2.1, 192.0.2.1:5353, ::1, [::1]:5353)"
    ))
}

/// The nameservers in /etc/resolv.conf, read once per process.
fn resolv_conf_servers() -> Vec<SocketAddr> {
    static SERVERS: OnceLock<Vec<SocketAddr>> = OnceLock::new();
    SERVERS
        .get_or_init(|| {
            std::fs::read_to_string("/etc/resolv.conf")
                .map(|t| parse_resolv_conf(&t))
                .unwrap_or_default()
        })
        .clone()
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            if w.next()? != "nameserver" {
                return None;
            }
            let addr = w.next()?;
            let (ip, scope) = match addr.split_once('%') {
                Some((ip, scope)) => (ip, Some(scope)),
                None => (addr, None),
            };
            match ip.parse::<IpAddr>().ok()? {
                IpAddr::V4(a) => Some(SocketAddr::new(IpAddr::V4(a), 53)),
                IpAddr::V6(a) => {
                    let scope_id = scope.map_or(0, scope_index);
                    Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                        a, 53, 0, scope_id,
                    )))
                }
            }
        })
        .collect()
}

/// An IPv6 zone (`%eth0` or `%2`) as an interface index.
fn scope_index(scope: &str) -> u32 {
    if let Ok(n) = scope.parse() {
        return n;
    }
    match std::ffi::CString::new(scope) {
        // SAFETY: a valid NUL-terminated string; the call only reads it.
        Ok(c) => unsafe { libc::if_nametoindex(c.as_ptr()) },
        Err(_) => 0,
    }
}

/// Parses one `--expect` / `--expect-any` value for type `rtype`.
pub fn parse_expected(rtype: RecordType, v: &str) -> Result<Expected, String> {
    let bad = |what: &str| format!("--expect value {v:?} is not {what}");
    let t = v.trim();
    let fields: Vec<&str> = t.split_whitespace().collect();
    let num = |s: &str, what: &str| -> Result<u64, String> {
        s.parse::<u64>()
            .map_err(|_| bad(&format!("{} ({what} {s:?} is not a number)", shape(rtype))))
    };
    let want = match rtype {
        RecordType::A => Want::Key(
            t.parse::<Ipv4Addr>()
                .map_err(|_| bad("an IPv4 address"))?
                .to_string(),
        ),
        RecordType::AAAA => Want::Key(
            t.parse::<Ipv6Addr>()
                .map_err(|_| bad("an IPv6 address"))?
                .to_string(),
        ),
        RecordType::CNAME | RecordType::NS | RecordType::PTR => {
            if fields.len() != 1 {
                return Err(bad("one name"));
            }
            Want::Key(parse_name_key(t)?)
        }
        RecordType::MX => {
            if fields.len() != 2 {
                return Err(bad(shape(rtype)));
            }
            let pref = num(fields[0], "preference")?;
            if pref > 65535 {
                return Err(bad(shape(rtype)));
            }
            Want::Key(format!("{pref} {}", parse_name_key(fields[1])?))
        }
        RecordType::SRV => {
            if fields.len() != 4 {
                return Err(bad(shape(rtype)));
            }
            let mut n = Vec::new();
            for (f, what) in fields[..3].iter().zip(["priority", "weight", "port"]) {
                let x = num(f, what)?;
                if x > 65535 {
                    return Err(bad(shape(rtype)));
                }
                n.push(x);
            }
            Want::Key(format!(
                "{} {} {} {}",
                n[0],
                n[1],
                n[2],
                parse_name_key(fields[3])?
            ))
        }
        RecordType::SOA => {
            if fields.len() != 7 {
                return Err(bad(shape(rtype)));
            }
            let mut s = format!(
                "{} {}",
                parse_name_key(fields[0])?,
                parse_name_key(fields[1])?
            );
            for (f, what) in fields[2..]
                .iter()
                .zip(["serial", "refresh", "retry", "expire", "minimum"])
            {
                let x = num(f, what)?;
                if x > u64::from(u32::MAX) {
                    return Err(bad(shape(rtype)));
                }
                s.push_str(&format!(" {x}"));
            }
            Want::Key(s)
        }
        RecordType::TXT => {
            if t.starts_with('"') {
                let strings = parse_quoted(t).map_err(|e| bad(&format!("quoted strings ({e})")))?;
                Want::Key(format_txt(&strings))
            } else {
                Want::TxtJoined(v.as_bytes().to_vec())
            }
        }
        RecordType::CAA => {
            let mut it = t.splitn(3, char::is_whitespace);
            let (flags, tag, value) = match (it.next(), it.next(), it.next()) {
                (Some(f), Some(tag), Some(val)) => (f, tag, val.trim()),
                _ => return Err(bad(shape(rtype))),
            };
            let flags = num(flags, "flags")?;
            if flags > 255 || tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad(shape(rtype)));
            }
            let value = if value.starts_with('"') {
                let mut s = parse_quoted(value).map_err(|e| bad(&format!("a CAA value ({e})")))?;
                if s.len() != 1 {
                    return Err(bad(shape(rtype)));
                }
                s.remove(0)
            } else {
                value.as_bytes().to_vec()
            };
            Want::Key(format!(
                "{flags} {} {}",
                tag.to_ascii_lowercase(),
                quote(&value)
            ))
        }
        _ => return Err(format!("record type {rtype} is not supported")),
    };
    Ok(Expected {
        text: v.to_string(),
        want,
    })
}

/// How a value of each type is written, for error messages.
fn shape(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::MX => "PREFERENCE NAME (10 mail.example.org.)",
        RecordType::SRV => "PRIORITY WEIGHT PORT TARGET (10 5 5060 sip.example.org.)",
        RecordType::SOA => "MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM",
        RecordType::CAA => "FLAGS TAG VALUE (0 issue \"ca.example\")",
        _ => "a value of this type",
    }
}

/// Writes bytes as one quoted DNS string, as dig does: `"` and `\` escaped
/// with a backslash, bytes outside printable ASCII as `\DDD`.
pub fn quote(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    for &c in b {
        match c {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(c as char);
            }
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\{c:03}")),
        }
    }
    s.push('"');
    s
}

/// TXT strings as dig writes them: each quoted, joined by a space.
pub fn format_txt(strings: &[Vec<u8>]) -> String {
    strings
        .iter()
        .map(|s| quote(s))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads a sequence of quoted strings (`"a" "b\"c" "\255"`), the inverse of
/// [`format_txt`].
pub fn parse_quoted(s: &str) -> Result<Vec<Vec<u8>>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        if b[i] != b'"' {
            return Err(format!("expected '\"' at column {}", i + 1));
        }
        i += 1;
        let mut cur = Vec::new();
        loop {
            match b.get(i) {
                None => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(b'\\') => {
                    let d = &b[i + 1..];
                    if d.len() >= 3 && d[..3].iter().all(u8::is_ascii_digit) {
                        let n: u16 = std::str::from_utf8(&d[..3])
                            .unwrap_or("")
                            .parse()
                            .unwrap_or(256);
                        if n > 255 {
                            return Err(format!("bad escape \\{}", &s[i + 1..i + 4]));
                        }
                        cur.push(n as u8);
                        i += 4;
                    } else if let Some(&c) = d.first() {
                        cur.push(c);
                        i += 2;
                    } else {
                        return Err("unterminated quoted string".into());
                    }
                }
                Some(&c) => {
                    cur.push(c);
                    i += 1;
                }
            }
        }
        out.push(cur);
    }
    if out.is_empty() {
        return Err("no quoted string".into());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Records as values

/// One record of a reply, formatted.
#[derive(Debug, Clone)]
pub struct Answer {
    pub name: String,
    pub rtype: RecordType,
    pub ttl: u32,
    /// As `dig +short` writes it (names keep the server's case).
    pub value: String,
    /// As compared and fingerprinted (names lowercased).
    pub key: String,
    /// A TXT record's strings.
    pub txt: Option<Vec<Vec<u8>>>,
    /// An SOA record's serial.
    pub serial: Option<u32>,
}

impl Answer {
    fn from_record(r: &Record) -> Answer {
        let (value, key, txt, serial) = format_rdata(&r.data);
        Answer {
            name: r.name.to_ascii(),
            rtype: r.record_type(),
            ttl: r.ttl,
            value,
            key,
            txt,
            serial,
        }
    }

    fn to_json(&self) -> Value {
        json!({"name": self.name, "type": self.rtype.to_string(), "ttl": self.ttl, "value": self.value})
    }
}

type Formatted = (String, String, Option<Vec<Vec<u8>>>, Option<u32>);

/// Writes a name one way or another (as sent, or as compared).
type NameFmt<'a> = &'a dyn Fn(&Name) -> String;

/// A record's data as dig +short writes it, and its comparison key.
fn format_rdata(d: &RData) -> Formatted {
    let both = |f: &dyn Fn(NameFmt) -> String| -> (String, String) {
        (f(&|n: &Name| n.to_ascii()), f(&|n: &Name| name_key(n)))
    };
    let (v, k) = match d {
        RData::A(a) => (a.0.to_string(), a.0.to_string()),
        RData::AAAA(a) => (a.0.to_string(), a.0.to_string()),
        RData::CNAME(n) => both(&|f| f(&n.0)),
        RData::NS(n) => both(&|f| f(&n.0)),
        RData::PTR(n) => both(&|f| f(&n.0)),
        RData::MX(mx) => both(&|f| format!("{} {}", mx.preference, f(&mx.exchange))),
        RData::SRV(s) => {
            both(&|f| format!("{} {} {} {}", s.priority, s.weight, s.port, f(&s.target)))
        }
        RData::SOA(s) => {
            let (v, k) = both(&|f| {
                format!(
                    "{} {} {} {} {} {} {}",
                    f(&s.mname),
                    f(&s.rname),
                    s.serial,
                    s.refresh,
                    s.retry,
                    s.expire,
                    s.minimum
                )
            });
            return (v, k, None, Some(s.serial));
        }
        RData::TXT(t) => {
            let strings: Vec<Vec<u8>> = t.txt_data.iter().map(|s| s.to_vec()).collect();
            let v = format_txt(&strings);
            return (v.clone(), v, Some(strings), None);
        }
        RData::CAA(c) => {
            let flags = c.flags();
            (
                format!("{flags} {} {}", c.tag, quote(&c.value)),
                format!("{flags} {} {}", c.tag.to_ascii_lowercase(), quote(&c.value)),
            )
        }
        other => {
            let s = other.to_string();
            (s.clone(), s)
        }
    };
    (v, k, None, None)
}

/// `{a, b}` for assertions and reasons, at most `max` values.
fn set_text<S: AsRef<str>>(vals: &[S], max: usize) -> String {
    let mut shown: Vec<&str> = vals.iter().map(|s| s.as_ref()).take(max).collect();
    let more = vals.len().saturating_sub(max);
    let tail = format!("… {more} more");
    if more > 0 {
        shown.push(&tail);
    }
    format!("{{{}}}", shown.join(", "))
}

// ---------------------------------------------------------------------------
// Asking

/// A reply that was for our query.
struct Reply {
    msg: Message,
    transport: &'static str,
    /// The UDP answer was truncated and this reply came over TCP.
    retried_tcp: bool,
    size: usize,
    query: Duration,
    connect: Option<Duration>,
    ignored: Vec<String>,
}

/// Why no usable reply came.
struct Failure {
    layer: &'static str,
    kind: &'static str,
    phase: Option<&'static str>,
    reason: String,
}

impl Failure {
    fn new(layer: &'static str, kind: &'static str, reason: String) -> Failure {
        Failure {
            layer,
            kind,
            phase: None,
            reason,
        }
    }

    fn timeout(phase: &'static str, reason: String) -> Failure {
        Failure {
            layer: layer::TIMING,
            kind: "timeout",
            phase: Some(phase),
            reason,
        }
    }
}

fn build_query(c: &DnsCheck) -> (u16, Vec<u8>) {
    let mut m = Message::query();
    m.metadata.recursion_desired = c.recurse;
    let mut q = Query::query(c.qname.clone(), c.rtype);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    if c.edns {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        m.set_edns(e);
    }
    let bytes = m
        .to_vec()
        .expect("a query of one valid name always encodes");
    (m.metadata.id, bytes)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Looks at one message from the server: `Ok(Some)` is our reply,
/// `Ok(None)` is one to ignore (the note says why), `Err` is a malformed
/// reply to our query.
fn judge_packet(
    c: &DnsCheck,
    id: u16,
    buf: &[u8],
    ignored: &mut Vec<String>,
) -> Result<Option<Message>, String> {
    if buf.len() < 2 {
        ignored.push(format!("a {}-byte datagram", buf.len()));
        return Ok(None);
    }
    let got = u16::from_be_bytes([buf[0], buf[1]]);
    if got != id {
        ignored.push(format!("reply with ID {got}, not our {id}"));
        return Ok(None);
    }
    let msg = Message::from_vec(buf)
        .map_err(|e| format!("malformed reply ({} bytes): {e}", buf.len()))?;
    if msg.metadata.message_type != MessageType::Response {
        ignored.push("a query, not a reply".into());
        return Ok(None);
    }
    if msg.metadata.op_code != OpCode::Query {
        ignored.push(format!("a reply with opcode {:?}", msg.metadata.op_code));
        return Ok(None);
    }
    match msg.queries.as_slice() {
        // Some servers send FORMERR/NOTIMP/REFUSED without the question.
        [] if msg.metadata.response_code != ResponseCode::NoError => {}
        [q] if q.name == c.qname && q.query_type == c.rtype && q.query_class == DNSClass::IN => {}
        qs => {
            let shown: Vec<String> = qs
                .iter()
                .map(|q| format!("{} {}", q.name.to_ascii(), q.query_type))
                .collect();
            ignored.push(format!(
                "a reply to another question ({})",
                shown.join(", ")
            ));
            return Ok(None);
        }
    }
    Ok(Some(msg))
}

fn no_reply(ctx: &Ctx, server: SocketAddr, transport: &str, ignored: &[String]) -> Failure {
    let t = cli::format_duration(ctx.timeout);
    if ignored.is_empty() {
        Failure::timeout(
            "query",
            format!("no reply from {server} over {transport} within {t}"),
        )
    } else {
        Failure::new(
            layer::PROTOCOL,
            "protocol_error",
            format!(
                "no reply for our query from {server} within {t}; ignored {} not for it: {}",
                ignored.len(),
                ignored[0]
            ),
        )
    }
}

fn io_failure(server: SocketAddr, transport: &str, e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        Failure::new(
            layer::TCP,
            "connect_refused",
            format!("{server} refused the {transport} query (port closed)"),
        )
    } else {
        Failure::new(
            layer::TCP,
            "connect_failed",
            format!("cannot reach {server} over {transport}: {e}"),
        )
    }
}

fn ask_udp(c: &DnsCheck, server: SocketAddr, ctx: &Ctx) -> Result<Reply, Failure> {
    let (id, query) = build_query(c);
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local)
        .and_then(|s| s.connect(server).map(|_| s))
        .map_err(|e| io_failure(server, "UDP", &e))?;
    let start = Instant::now();
    sock.send(&query)
        .map_err(|e| io_failure(server, "UDP", &e))?;
    let mut buf = vec![0u8; 65536];
    let mut ignored = Vec::new();
    loop {
        let left = ctx
            .remaining()
            .ok_or_else(|| no_reply(ctx, server, "UDP", &ignored))?;
        sock.set_read_timeout(Some(left))
            .map_err(|e| io_failure(server, "UDP", &e))?;
        match sock.recv(&mut buf) {
            Ok(n) => match judge_packet(c, id, &buf[..n], &mut ignored) {
                Ok(Some(msg)) => {
                    return Ok(Reply {
                        msg,
                        transport: "udp",
                        retried_tcp: false,
                        size: n,
                        query: start.elapsed(),
                        connect: None,
                        ignored,
                    })
                }
                Ok(None) => continue,
                Err(m) => {
                    return Err(Failure::new(
                        layer::PROTOCOL,
                        "protocol_error",
                        format!("{server}: {m}"),
                    ))
                }
            },
            Err(e) if is_timeout(&e) => return Err(no_reply(ctx, server, "UDP", &ignored)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_failure(server, "UDP", &e)),
        }
    }
}

/// Fills `buf` from `s`, every read bounded by the deadline. `Ok(false)`
/// when the stream ended before the first byte.
fn read_full(s: &mut TcpStream, buf: &mut [u8], ctx: &Ctx) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        let left = ctx
            .remaining()
            .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))?;
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn ask_tcp(c: &DnsCheck, server: SocketAddr, ctx: &Ctx) -> Result<Reply, Failure> {
    let (id, query) = build_query(c);
    let t = cli::format_duration(ctx.timeout);
    let left = ctx.remaining().ok_or_else(|| {
        Failure::timeout(
            "connect",
            format!("no time left to connect to {server} over TCP"),
        )
    })?;
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&server, left).map_err(|e| {
        if is_timeout(&e) {
            Failure::timeout(
                "connect",
                format!("no TCP connection to {server} within {t}"),
            )
        } else {
            io_failure(server, "TCP", &e)
        }
    })?;
    let connect = start.elapsed();
    let _ = s.set_nodelay(true);
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(&query);
    let sent = ctx
        .remaining()
        .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))
        .and_then(|left| s.set_write_timeout(Some(left)))
        .and_then(|_| s.write_all(&framed));
    let qstart = Instant::now();
    let mut ignored = Vec::new();
    let fail = |e: io::Error, ignored: &[String]| {
        if is_timeout(&e) {
            no_reply(ctx, server, "TCP", ignored)
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            Failure::new(
                layer::PROTOCOL,
                "protocol_error",
                format!("{server} closed the TCP connection in the middle of a reply"),
            )
        } else {
            io_failure(server, "TCP", &e)
        }
    };
    sent.map_err(|e| fail(e, &ignored))?;
    loop {
        let mut len = [0u8; 2];
        match read_full(&mut s, &mut len, ctx) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Failure::new(
                    layer::PROTOCOL,
                    "protocol_error",
                    format!("{server} closed the TCP connection without a reply"),
                ))
            }
            Err(e) => return Err(fail(e, &ignored)),
        }
        let n = u16::from_be_bytes(len) as usize;
        let mut buf = vec![0u8; n];
        match read_full(&mut s, &mut buf, ctx) {
            Ok(true) => {}
            Ok(false) if n == 0 => {}
            Ok(false) => return Err(fail(io::ErrorKind::UnexpectedEof.into(), &ignored)),
            Err(e) => return Err(fail(e, &ignored)),
        }
        match judge_packet(c, id, &buf, &mut ignored) {
            Ok(Some(msg)) => {
                return Ok(Reply {
                    msg,
                    transport: "tcp",
                    retried_tcp: false,
                    size: n,
                    query: qstart.elapsed(),
                    connect: Some(connect),
                    ignored,
                })
            }
            Ok(None) => continue,
            Err(m) => {
                return Err(Failure::new(
                    layer::PROTOCOL,
                    "protocol_error",
                    format!("{server}: {m}"),
                ))
            }
        }
    }
}

/// Asks `server` once over UDP (and again over TCP if the answer was
/// truncated), or over TCP with `--tcp`.
fn ask(c: &DnsCheck, server: SocketAddr, ctx: &Ctx) -> Result<Reply, Failure> {
    if c.tcp {
        return ask_tcp(c, server, ctx);
    }
    let udp = ask_udp(c, server, ctx)?;
    if !udp.msg.metadata.truncation {
        return Ok(udp);
    }
    match ask_tcp(c, server, ctx) {
        Ok(mut r) => {
            r.retried_tcp = true;
            r.query += udp.query;
            r.ignored.extend(udp.ignored);
            Ok(r)
        }
        Err(f) if f.kind == "timeout" => Err(f),
        Err(f) => Err(Failure::new(
            layer::PROTOCOL,
            "truncated",
            format!(
                "the UDP answer from {server} was truncated and TCP failed: {}",
                f.reason
            ),
        )),
    }
}

// ---------------------------------------------------------------------------
// Judging

/// One server's result: the outcome, and what the servers are compared on
/// with `--consistent` (None when no reply came).
struct One {
    outcome: Outcome,
    compare: Option<String>,
}

fn check_one(c: &DnsCheck, server: SocketAddr, ctx: &Ctx) -> One {
    let reply = match ask(c, server, ctx) {
        Ok(r) => r,
        Err(f) => {
            let mut err = ErrorInfo::new(f.layer, f.kind);
            if let Some(p) = f.phase {
                err = err.in_phase(p);
            }
            let mut o = Outcome::fail(Status::Down, err, f.reason);
            o.detail("server", server.to_string());
            return One {
                outcome: o,
                compare: None,
            };
        }
    };
    judge(c, server, reply)
}

fn judge(c: &DnsCheck, server: SocketAddr, r: Reply) -> One {
    let md = &r.msg.metadata;
    let rcode = md.response_code;
    let all: Vec<Answer> = r.msg.answers.iter().map(Answer::from_record).collect();
    let (answers, chain): (Vec<Answer>, Vec<Answer>) =
        all.into_iter().partition(|a| a.rtype == c.rtype);
    let mut keys: Vec<String> = answers.iter().map(|a| a.key.clone()).collect();
    keys.sort();
    keys.dedup();
    let mut values: Vec<String> = answers.iter().map(|a| a.value.clone()).collect();
    values.sort();

    let mut o = Outcome::up("");
    o.phase("query", r.query);
    if let Some(cn) = r.connect {
        o.phase("connect", cn);
    }
    o.detail("server", server.to_string());
    o.detail("transport", r.transport);
    if r.retried_tcp {
        o.detail("truncated_udp", true);
    }
    o.detail("rcode", rcode_name(rcode));
    o.detail(
        "flags",
        json!({"aa": md.authoritative, "tc": md.truncation, "rd": md.recursion_desired,
               "ra": md.recursion_available, "ad": md.authentic_data}),
    );
    o.detail(
        "answers",
        Value::Array(answers.iter().map(Answer::to_json).collect()),
    );
    if !chain.is_empty() {
        o.detail(
            "chain",
            Value::Array(chain.iter().map(Answer::to_json).collect()),
        );
    }
    o.detail("size", r.size);
    if !r.ignored.is_empty() {
        o.detail("ignored_replies", r.ignored.clone());
    }
    o.fingerprint = Some(event::fingerprint(&keys));

    let fail = |o: &mut Outcome, layer: &str, kind: &str, reason: String| {
        o.set_failure(Status::Down, ErrorInfo::new(layer, kind), reason);
    };

    // rcode
    let rc_ok = rcode == c.rcode;
    o.assertions.push(Assertion::new(
        "rcode",
        rcode_name(c.rcode),
        rcode_name(rcode),
        rc_ok,
    ));
    if !rc_ok {
        fail(
            &mut o,
            layer::PROTOCOL,
            "rcode_mismatch",
            format!(
                "expected rcode {}, got {} from {server}",
                rcode_name(c.rcode),
                rcode_name(rcode)
            ),
        );
    }
    if md.truncation {
        // Only when TCP itself gave a truncated answer.
        fail(
            &mut o,
            layer::PROTOCOL,
            "truncated",
            format!("the answer from {server} is truncated even over TCP"),
        );
    }

    // AA
    if c.authoritative {
        let ok = md.authoritative;
        o.assertions.push(Assertion::new(
            "authoritative",
            "aa",
            if ok { "aa" } else { "not aa" },
            ok,
        ));
        if !ok {
            fail(
                &mut o,
                layer::PROTOCOL,
                "not_authoritative",
                format!("the answer from {server} is not authoritative (AA bit clear)"),
            );
        }
    }

    // The answer set.
    let actual = set_text(&keys, usize::MAX);
    let texts = |e: &[Expected]| -> Vec<String> {
        let mut v: Vec<String> = e.iter().map(|x| x.text.clone()).collect();
        v.sort();
        v
    };
    if let Some(exp) = &c.expect {
        let missing: Vec<&str> = exp
            .iter()
            .filter(|e| !answers.iter().any(|a| e.matches(a)))
            .map(|e| e.text.as_str())
            .collect();
        let extra: Vec<&str> = answers
            .iter()
            .filter(|a| !exp.iter().any(|e| e.matches(a)))
            .map(|a| a.value.as_str())
            .collect();
        let ok = missing.is_empty() && extra.is_empty();
        o.assertions.push(Assertion::new(
            "answer",
            format!("= {}", set_text(&texts(exp), usize::MAX)),
            actual.clone(),
            ok,
        ));
        if !ok {
            let mut why = Vec::new();
            if !missing.is_empty() {
                why.push(format!("missing {}", set_text(&missing, REASON_VALUES)));
            }
            if !extra.is_empty() {
                why.push(format!("unexpected {}", set_text(&extra, REASON_VALUES)));
            }
            fail(
                &mut o,
                layer::CONTENT,
                "answer_mismatch",
                format!(
                    "{} answer from {server} is not the expected set: {}",
                    c.rtype,
                    why.join(", ")
                ),
            );
        }
    }
    if !c.expect_any.is_empty() {
        let ok = c
            .expect_any
            .iter()
            .any(|e| answers.iter().any(|a| e.matches(a)));
        o.assertions.push(Assertion::new(
            "answer_any",
            format!("any of {}", set_text(&texts(&c.expect_any), usize::MAX)),
            actual.clone(),
            ok,
        ));
        if !ok {
            fail(
                &mut o,
                layer::CONTENT,
                "answer_mismatch",
                format!(
                    "none of {} in the {} answer from {server}: {}",
                    set_text(&texts(&c.expect_any), REASON_VALUES),
                    c.rtype,
                    set_text(&values, REASON_VALUES)
                ),
            );
        }
    }
    if c.expect_empty {
        let ok = answers.is_empty();
        o.assertions
            .push(Assertion::new("answer", "{}", actual.clone(), ok));
        if !ok {
            fail(
                &mut o,
                layer::CONTENT,
                "answer_mismatch",
                format!(
                    "expected no {} records from {server}, got {}",
                    c.rtype,
                    set_text(&values, REASON_VALUES)
                ),
            );
        }
    }
    if c.expect.is_none()
        && c.expect_any.is_empty()
        && !c.expect_empty
        && c.rcode == ResponseCode::NoError
    {
        let ok = !answers.is_empty();
        o.assertions.push(Assertion::new(
            "answer",
            format!("at least one {} record", c.rtype),
            actual.clone(),
            ok,
        ));
        if !ok && rc_ok {
            fail(
                &mut o,
                layer::CONTENT,
                "answer_mismatch",
                format!("no {} records for {} from {server}", c.rtype, c.qname),
            );
        }
    }

    // TTL
    if let Some(min) = c.min_ttl {
        let lowest = answers.iter().map(|a| a.ttl).min();
        let ok = lowest.is_none_or(|t| u64::from(t) >= min.as_secs());
        o.assertions.push(Assertion::new(
            "min_ttl",
            format!(">= {}", cli::format_duration(min)),
            lowest.map_or("no records".to_string(), |t| format!("{t}s")),
            ok,
        ));
        if !ok {
            fail(
                &mut o,
                layer::CONTENT,
                "ttl_too_low",
                format!(
                    "lowest TTL in the {} answer from {server} is {}s, under {}",
                    c.rtype,
                    lowest.unwrap_or(0),
                    cli::format_duration(min)
                ),
            );
        }
    }

    if o.status == Status::Up {
        o.reason = if answers.is_empty() {
            format!(
                "{} from {server}, no {} records{}",
                rcode_name(rcode),
                c.rtype,
                if md.authoritative { " (aa)" } else { "" }
            )
        } else {
            format!(
                "{} from {server}: {} {} {}{}",
                rcode_name(rcode),
                answers.len(),
                c.rtype,
                set_text(&values, REASON_VALUES),
                if md.authoritative { " (aa)" } else { "" }
            )
        };
    }
    let compare = if c.rtype == RecordType::SOA {
        let mut serials: Vec<String> = answers
            .iter()
            .filter_map(|a| a.serial.map(|s| s.to_string()))
            .collect();
        serials.sort();
        serials.dedup();
        format!("{} serial {}", rcode_name(rcode), set_text(&serials, 8))
    } else {
        format!("{} {}", rcode_name(rcode), set_text(&keys, 8))
    };
    One {
        outcome: o,
        compare: Some(compare),
    }
}

/// `--consistent`: every server at once; each is judged on its own, then
/// they must agree.
fn check_consistent(c: &DnsCheck, ctx: &Ctx) -> Outcome {
    let ones: Vec<One> = std::thread::scope(|s| {
        let handles: Vec<_> = c
            .servers
            .iter()
            .map(|&srv| s.spawn(move || check_one(c, srv, ctx)))
            .collect();
        handles
            .into_iter()
            .zip(&c.servers)
            .map(|(h, srv)| {
                h.join().unwrap_or_else(|_| One {
                    outcome: Outcome::fail(
                        Status::Unknown,
                        ErrorInfo::new(layer::INTERNAL, "internal_error"),
                        format!("internal error asking {srv}"),
                    ),
                    compare: None,
                })
            })
            .collect()
    });

    let mut o = Outcome::up("");
    let mut per_server = Vec::new();
    let mut slowest = 0.0f64;
    for (srv, one) in c.servers.iter().zip(&ones) {
        let so = &one.outcome;
        let mut d = so.details.clone();
        d.insert("status".into(), json!(so.status));
        d.insert("reason".into(), json!(so.reason));
        if let Some(e) = &so.error {
            d.insert("error".into(), json!(e));
        }
        if let Some(f) = &so.fingerprint {
            d.insert("fingerprint".into(), json!(f));
        }
        if let Some(q) = so.phases.get("query_ms") {
            d.insert("query_ms".into(), json!(q));
            slowest = slowest.max(*q);
        }
        per_server.push(Value::Object(d));
        for a in &so.assertions {
            let mut a = a.clone();
            a.what = format!("{} @{srv}", a.what);
            o.assertions.push(a);
        }
    }
    o.phases.insert("query_ms".into(), slowest);

    // Agreement: the largest group of servers giving the same answer is the
    // reference (ties go to the group of the first server); the others
    // disagree.
    let mut groups: Vec<(String, Vec<SocketAddr>)> = Vec::new();
    for (srv, one) in c.servers.iter().zip(&ones) {
        if let Some(k) = &one.compare {
            match groups.iter_mut().find(|(g, _)| g == k) {
                Some((_, v)) => v.push(*srv),
                None => groups.push((k.clone(), vec![*srv])),
            }
        }
    }
    let reference = groups
        .iter()
        .enumerate()
        .max_by_key(|(i, (_, v))| (v.len(), std::cmp::Reverse(*i)))
        .map(|(_, g)| g.clone());
    let mut disagree: Vec<(SocketAddr, String)> = Vec::new();
    if let Some((rk, _)) = &reference {
        for (srv, one) in c.servers.iter().zip(&ones) {
            if let Some(k) = &one.compare {
                if k != rk {
                    disagree.push((*srv, k.clone()));
                }
            }
        }
    }
    let replied = groups.iter().map(|(_, v)| v.len()).sum::<usize>();
    let consistent_ok = disagree.is_empty();
    o.assertions.push(Assertion::new(
        "consistent",
        format!("the same answer from {} servers", c.servers.len()),
        match (&reference, disagree.first()) {
            (_, Some((srv, k))) => format!("{srv} gave {k}"),
            (Some((rk, _)), None) => format!("{replied} replied: {rk}"),
            (None, None) => "no server replied".to_string(),
        },
        consistent_ok,
    ));
    o.detail("servers", Value::Array(per_server));
    if !disagree.is_empty() {
        o.detail(
            "disagreeing",
            disagree
                .iter()
                .map(|(s, _)| s.to_string())
                .collect::<Vec<_>>(),
        );
    }

    // A server that failed on its own is reported first (the first in the
    // order given); then disagreement.
    if let Some((srv, one)) = c
        .servers
        .iter()
        .zip(&ones)
        .find(|(_, one)| one.outcome.status != Status::Up)
    {
        let so = &one.outcome;
        o.status = so.status;
        o.error = so.error.clone();
        o.reason = format!("server {srv}: {}", so.reason);
        return o;
    }
    if let (Some((rk, rs)), Some((srv, k))) = (&reference, disagree.first()) {
        o.set_failure(
            Status::Down,
            ErrorInfo::new(layer::CONTENT, "inconsistent"),
            format!(
                "{srv} disagrees: {k}, but {} gave {rk}{}",
                rs.iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if disagree.len() > 1 {
                    format!(" ({} servers disagree)", disagree.len())
                } else {
                    String::new()
                }
            ),
        );
        return o;
    }
    let first = &ones[0].outcome;
    o.fingerprint = first.fingerprint.clone();
    for k in ["rcode", "flags", "answers", "chain"] {
        if let Some(v) = first.details.get(k) {
            o.details.insert(k.to_string(), v.clone());
        }
    }
    o.reason = format!(
        "{} servers agree: {}",
        c.servers.len(),
        reference.map(|(k, _)| k).unwrap_or_default()
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        let cmd = crate::probe::command::<Dns>();
        cmd.clone().debug_assert();
        assert_eq!(cmd.get_about().unwrap().to_string(), Dns::ABOUT);
    }

    #[test]
    fn txt_values_quote_and_parse_like_dig() {
        let s = vec![
            b"a \"b\"".to_vec(),
            b"back\\slash".to_vec(),
            vec![0xff, b'x'],
        ];
        let t = format_txt(&s);
        assert_eq!(t, r#""a \"b\"" "back\\slash" "\255x""#);
        assert_eq!(parse_quoted(&t).unwrap(), s);
        assert!(parse_quoted("\"open").is_err());
        assert!(parse_quoted("bare").is_err());
        assert!(parse_quoted(r#""\999""#).is_err());
    }

    #[test]
    fn expected_values_normalize_names_and_numbers() {
        let k = |t, v| match parse_expected(t, v).unwrap().want {
            Want::Key(k) => k,
            Want::TxtJoined(_) => panic!("joined"),
        };
        assert_eq!(
            k(RecordType::MX, "10  Mail.Example.ORG"),
            "10 mail.example.org."
        );
        assert_eq!(k(RecordType::AAAA, "2001:0db8::0001"), "2001:db8::1");
        assert_eq!(k(RecordType::CNAME, "WWW.example.org."), "www.example.org.");
        assert_eq!(
            k(RecordType::CAA, "0 ISSUE ca.example"),
            "0 issue \"ca.example\""
        );
        assert_eq!(
            k(RecordType::SOA, "ns1.x hostmaster.x 7 3600 900 600000 3600"),
            "ns1.x. hostmaster.x. 7 3600 900 600000 3600"
        );
        assert!(parse_expected(RecordType::A, "300.1.1.1").is_err());
        assert!(parse_expected(RecordType::MX, "mail.example.org").is_err());
        assert!(parse_expected(RecordType::SRV, "1 2 70000 x.").is_err());
        assert_eq!(
            parse_expected(RecordType::TXT, "v=spf1 -all").unwrap().want,
            Want::TxtJoined(b"v=spf1 -all".to_vec())
        );
    }

    #[test]
    fn servers_rcodes_types_and_reverse_names() {
        assert_eq!(parse_server("::1").unwrap(), "[::1]:53".parse().unwrap());
        assert_eq!(parse_server("[::1]").unwrap(), "[::1]:53".parse().unwrap());
        assert_eq!(
            parse_server("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert!(parse_server("ns.example.org").is_err());
        assert_eq!(parse_rcode("nxdomain").unwrap(), ResponseCode::NXDomain);
        assert_eq!(parse_rcode("5").unwrap(), ResponseCode::Refused);
        assert!(parse_rcode("nope").is_err());
        assert_eq!(parse_type("aaaa").unwrap(), RecordType::AAAA);
        assert!(parse_type("HINFO").is_err());
        assert_eq!(
            reverse_name("192.0.2.1".parse().unwrap()),
            "1.2.0.192.in-addr.arpa."
        );
        assert!(reverse_name("2001:db8::1".parse().unwrap())
            .starts_with("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6"));
        assert_eq!(
            parse_resolv_conf("# x\nnameserver 10.0.0.1\nsearch a\nnameserver fe80::1%1\n"),
            vec![
                "10.0.0.1:53".parse().unwrap(),
                SocketAddr::V6(std::net::SocketAddrV6::new(
                    "fe80::1".parse().unwrap(),
                    53,
                    0,
                    1
                ))
            ]
        );
    }
}
