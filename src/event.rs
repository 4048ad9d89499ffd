//! Event schema v1: the wire types every `pup-*` tool reads and writes.
//!
//! One JSON object per line. The layout is flat so that `jq -r .check`
//! works, and it is the project's public contract: consumers ignore fields
//! they do not know, adding a field is compatible, removing or changing the
//! meaning of one is version 2. The published form of this contract is
//! `schema/event.schema.json` and the man page `pup-events(7)`; the test
//! suite validates every event it sees against the schema file, so this
//! module, the schema and the man page cannot drift apart.
//!
//! These are wire types, kept apart from the tools' internal state: the
//! router's per-check state, say, lives in its own types and is turned into
//! an [`Event`] only when written.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// The schema version this code writes (`"v":1`).
pub const VERSION: u32 = 1;

/// The outcome of a check, and the state of a check in the router.
///
/// `Ord` ranks by badness (`up` < `degraded` < `unknown` < `down`), which
/// is how several results fold into one exit code: a `down` among
/// `unknown`s is the news that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The service works and every assertion held.
    Up,
    /// The service works but a warning threshold was crossed (slow, a
    /// certificate expiring soon, a failed background save).
    Degraded,
    /// The service does not work as asserted.
    Down,
    /// The probe could not judge: bad arguments, bad input, internal error.
    Unknown,
}

impl Status {
    /// The Nagios plugin exit code: 0 up, 1 degraded, 2 down, 3 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Up => 0,
            Status::Degraded => 1,
            Status::Down => 2,
            Status::Unknown => 3,
        }
    }

    /// The status a Nagios plugin's exit code stands for (anything outside
    /// 0..=3 is `unknown`, as the plugin guidelines say).
    pub fn from_exit_code(code: i32) -> Status {
        match code {
            0 => Status::Up,
            1 => Status::Degraded,
            2 => Status::Down,
            _ => Status::Unknown,
        }
    }

    fn badness(self) -> u8 {
        match self {
            Status::Up => 0,
            Status::Degraded => 1,
            Status::Unknown => 2,
            Status::Down => 3,
        }
    }

    /// The worse of two statuses.
    pub fn worst(self, other: Status) -> Status {
        if other.badness() > self.badness() {
            other
        } else {
            self
        }
    }

    /// The lowercase word used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Degraded => "degraded",
            Status::Down => "down",
            Status::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a check broke and how, in words a hook can switch on.
///
/// `layer` is one of the [`layer`] constants; `kind` is a stable
/// snake_case word listed per probe in the schema and in `pup-events(7)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub layer: String,
    pub kind: String,
    /// For `timeout`: the phase that was running when time ran out
    /// (`dns`, `connect`, `tls`, `ttfb`, `transfer`, `query`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

impl ErrorInfo {
    pub fn new(layer: &str, kind: &str) -> ErrorInfo {
        ErrorInfo {
            layer: layer.to_string(),
            kind: kind.to_string(),
            phase: None,
        }
    }

    /// The same error, naming the phase that was running.
    pub fn in_phase(mut self, phase: &str) -> ErrorInfo {
        self.phase = Some(phase.to_string());
        self
    }
}

/// The values of `error.layer`, from the bottom of the stack up.
pub mod layer {
    /// Name resolution of the target.
    pub const DNS: &str = "dns";
    /// Reaching the port: refused, unreachable, connect timeout.
    pub const TCP: &str = "tcp";
    /// The TLS handshake and the peer certificate.
    pub const TLS: &str = "tls";
    /// The application protocol: HTTP status, a DNS rcode, a Redis reply.
    pub const PROTOCOL: &str = "protocol";
    /// What the service said: body text, DNS answers, Redis role.
    pub const CONTENT: &str = "content";
    /// Time limits: the whole check overran, or was slower than allowed.
    pub const TIMING: &str = "timing";
    /// The check could not be run as asked: bad arguments or input line.
    pub const INPUT: &str = "input";
    /// A fault in the tool itself.
    pub const INTERNAL: &str = "internal";
}

/// One assertion the probe evaluated, with what it expected and saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    pub what: String,
    pub expected: String,
    pub actual: String,
    pub ok: bool,
}

impl Assertion {
    pub fn new(
        what: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
        ok: bool,
    ) -> Assertion {
        Assertion {
            what: what.into(),
            expected: expected.into(),
            actual: actual.into(),
            ok,
        }
    }
}

/// One event: a probe's result, or a scheduler or router event in the same
/// envelope.
///
/// Fields that a tool adds and this type does not name (pup-sched's
/// `interval_ms`, pup-route's `result`, a future probe's fields) are kept
/// in `extra` and written back in place, so a tool in the middle of a pipe
/// never drops what it does not understand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version, [`VERSION`].
    pub v: u32,
    /// `result` for a probe's result; other tools' event types otherwise.
    #[serde(rename = "type")]
    pub kind: String,
    /// The check's name (`--name`, or the target when none is given).
    pub check: String,
    /// Which probe produced the result (`http`, `dns`, `redis`, `nagios`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// What was checked, as the user named it (a URL, `name TYPE`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// When the check started (RFC 3339, UTC, milliseconds).
    pub ts: String,
    /// How long the whole check took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// One human line saying what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Set when the status is not `up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// Time spent in each phase, in ms (`dns_ms`, `connect_ms`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phases: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assertions: Vec<Assertion>,
    /// A stable digest of what should not change silently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Probe-specific facts (HTTP status, certificate, Redis role…).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
    /// Every other field, kept as it came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Event {
    /// An event of type `kind` for `check`, stamped now.
    pub fn new(kind: &str, check: &str) -> Event {
        Event {
            v: VERSION,
            kind: kind.to_string(),
            check: check.to_string(),
            probe: None,
            target: None,
            status: None,
            ts: now_ts(),
            duration_ms: None,
            reason: None,
            error: None,
            phases: BTreeMap::new(),
            assertions: Vec::new(),
            fingerprint: None,
            tags: BTreeMap::new(),
            details: Map::new(),
            extra: Map::new(),
        }
    }

    /// The event as one JSON line, without the newline.
    pub fn to_line(&self) -> String {
        // Serialising a struct of strings, numbers and maps cannot fail.
        serde_json::to_string(self).expect("event serialises")
    }
}

/// Now, as an event timestamp.
pub fn now_ts() -> String {
    format_ts(SystemTime::now())
}

/// A time as an event timestamp: RFC 3339, UTC, milliseconds
/// (`2026-11-23T20:10:53.123Z`).
pub fn format_ts(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses an event timestamp (any RFC 3339 UTC time with a `Z`).
pub fn parse_ts(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .map_err(|e| format!("bad timestamp {s:?}: {e}"))
}

/// A duration as fractional milliseconds, rounded to 0.001 ms so event
/// lines stay short.
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// A stable digest of some observed facts, for `fingerprint`: the first
/// 128 bits of SHA-256 over the parts, each terminated by a newline, as
/// `sha256:<32 hex digits>`. Callers sort the parts when order does not
/// matter (a DNS answer set), so the same facts give the same fingerprint
/// on every run and every machine.
pub fn fingerprint<I, S>(parts: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
{
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_ref());
        h.update(b"\n");
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(7 + 32);
    out.push_str("sha256:");
    for b in &digest[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_round_trips_with_unknown_fields_kept() {
        let line = r#"{"v":1,"type":"result","check":"web","probe":"http","target":"http://x/","status":"down","ts":"2026-11-23T20:10:53.123Z","duration_ms":1.5,"reason":"r","error":{"layer":"tcp","kind":"connect_refused"},"interval_ms":30000}"#;
        let ev: Event = serde_json::from_str(line).unwrap();
        assert_eq!(ev.status, Some(Status::Down));
        assert_eq!(ev.extra["interval_ms"], 30000);
        assert_eq!(ev.to_line(), line);
    }

    #[test]
    fn worst_ranks_down_over_unknown() {
        use Status::*;
        assert_eq!(Up.worst(Degraded), Degraded);
        assert_eq!(Unknown.worst(Down), Down);
        assert_eq!(Down.worst(Unknown), Down);
        assert_eq!(Degraded.worst(Unknown), Unknown);
        assert_eq!(Down.exit_code(), 2);
        assert_eq!(Status::from_exit_code(7), Unknown);
    }

    #[test]
    fn timestamps_are_utc_millis_and_parse_back() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        let s = format_ts(t);
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with(".123Z"), "{s}");
        assert_eq!(parse_ts(&s).unwrap(), t);
    }

    #[test]
    fn fingerprint_is_stable_and_order_sensitive() {
        let a = fingerprint(["1.2.3.4", "5.6.7.8"]);
        assert_eq!(
            a,
            fingerprint(vec!["1.2.3.4".to_string(), "5.6.7.8".into()])
        );
        assert_ne!(a, fingerprint(["5.6.7.8", "1.2.3.4"]));
        assert!(a.starts_with("sha256:") && a.len() == 39, "{a}");
    }
}
