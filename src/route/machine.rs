//! The router's state machine: per-check state from a stream of results,
//! and the events derived from it (`down`, `up`, `degraded`, `reminder`,
//! `flapping`, `changed`, `stale`).
//!
//! Pure: it never reads the clock or touches a file. Every call is given
//! the time ("now", in milliseconds since the epoch), which comes from the
//! events' own timestamps in `--replay` and from the clock when live, so
//! the same input always gives the same output in a replay and the unit
//! tests are tables of (results, times) → events.

use crate::event::{format_ts, Event, Status};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, UNIX_EPOCH};

/// Results kept for flapping detection (Nagios keeps 21: 20 changes).
pub const FLAP_WINDOW: u32 = 21;

/// Defaults that apply to every check unless its events carry their own
/// (`fail_after`, `recover_after`, `remind_ms` from pup-sched's config).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Consecutive failing results before `down` (or `degraded`).
    pub fail_after: u32,
    /// Consecutive better results before `up` (or back to `degraded`).
    pub recover_after: u32,
    /// Reminder period while down, in ms; 0 = no reminders.
    pub remind_ms: u64,
    /// A check is stale after this many of its intervals without a result.
    pub stale_after: u32,
    /// Heartbeat interval assumed when a heartbeat does not carry one.
    pub heartbeat_ms: u64,
    /// Flapping starts when the weighted share of changes reaches this (%).
    pub flap_high: f64,
    /// Flapping stops when the share falls under this (%).
    pub flap_low: f64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            fail_after: 3,
            recover_after: 2,
            remind_ms: 0,
            stale_after: 3,
            heartbeat_ms: 30_000,
            flap_high: 50.0,
            flap_low: 25.0,
        }
    }
}

/// A check's level as the machine counts it. `unknown` results count as
/// failing: a check that cannot be judged is not monitoring anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Up = 0,
    Degraded = 1,
    Down = 2,
}

impl Level {
    pub fn of(s: Status) -> Level {
        match s {
            Status::Up => Level::Up,
            Status::Degraded => Level::Degraded,
            Status::Down | Status::Unknown => Level::Down,
        }
    }
    pub fn status(self) -> Status {
        match self {
            Level::Up => Status::Up,
            Level::Degraded => Status::Degraded,
            Level::Down => Status::Down,
        }
    }
    fn from_bits(b: u64) -> Level {
        match b & 3 {
            0 => Level::Up,
            1 => Level::Degraded,
            _ => Level::Down,
        }
    }
}

/// One input result, as much of it as the machine needs.
#[derive(Debug, Clone)]
pub struct ResultIn<'a> {
    pub check: &'a str,
    pub status: Status,
    pub fingerprint: Option<&'a str>,
    pub interval_ms: Option<u64>,
    pub fail_after: Option<u32>,
    pub recover_after: Option<u32>,
    pub remind_ms: Option<u64>,
    /// The whole result line, carried in the derived events as `result`.
    pub raw: &'a str,
}

/// Per-check state. Serialised as is into the `--state` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckState {
    pub name: String,
    /// The confirmed state (after the thresholds).
    pub state: Level,
    /// The state last announced (differs from `state` while flapping).
    pub announced: Level,
    pub announced_since_ms: i64,
    /// When the announced state last left `up`: the outage's start.
    pub outage_start_ms: i64,
    #[serde(default)]
    pub worse_n: u32,
    #[serde(default = "lvl_up")]
    pub worse_lvl: Level,
    #[serde(default)]
    pub better_n: u32,
    #[serde(default = "lvl_up")]
    pub better_lvl: Level,
    /// The last `FLAP_WINDOW` levels, 2 bits each, newest lowest.
    #[serde(default)]
    pub history: u64,
    #[serde(default)]
    pub history_len: u32,
    #[serde(default)]
    pub flapping: bool,
    #[serde(default)]
    pub fingerprint: Option<String>,
    pub last_seen_ms: i64,
    #[serde(default)]
    pub stale: bool,
    #[serde(default)]
    pub interval_ms: Option<u64>,
    #[serde(default)]
    pub fail_after: Option<u32>,
    #[serde(default)]
    pub recover_after: Option<u32>,
    #[serde(default)]
    pub remind_ms: Option<u64>,
    #[serde(default)]
    pub last_remind_ms: i64,
    #[serde(default)]
    pub reminders: u32,
    /// The last result line, for reminders and stale events.
    #[serde(default)]
    pub last: String,
    /// Earliest time queued for this check in the timer heap.
    #[serde(skip)]
    queued: Option<i64>,
}

fn lvl_up() -> Level {
    Level::Up
}

/// pup-sched's (or another source's) heartbeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    pub last_ms: i64,
    pub interval_ms: u64,
    pub stale: bool,
}

/// All checks' state and the timer for stale checks and reminders.
#[derive(Debug, Default)]
pub struct Machine {
    pub policy: Policy,
    index: HashMap<Box<str>, usize>,
    checks: Vec<CheckState>,
    beats: BTreeMap<String, Beat>,
    timer: BinaryHeap<Reverse<(i64, usize)>>,
    /// Set when anything worth saving changed since `take_dirty`.
    dirty: bool,
    /// Replay: timer events are stamped with the time they fell due (as
    /// they would have fired live), not the time of the next input.
    pub exact: bool,
    /// See [`Snapshot::journal_seq`]; kept up to date by the caller.
    pub journal_seq: u64,
}

/// What the `--state` file holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub v: u32,
    pub checks: Vec<CheckState>,
    #[serde(default)]
    pub heartbeats: BTreeMap<String, Beat>,
    /// The last journal record this snapshot includes: check states
    /// journaled after it are applied on top at the next start.
    #[serde(default)]
    pub journal_seq: u64,
}

impl Machine {
    pub fn new(policy: Policy) -> Machine {
        Machine {
            policy,
            ..Machine::default()
        }
    }

    /// A machine continuing from a saved snapshot.
    pub fn restore(policy: Policy, snap: Snapshot) -> Machine {
        let mut m = Machine::new(policy);
        m.beats = snap.heartbeats;
        m.journal_seq = snap.journal_seq;
        for c in snap.checks {
            let i = m.checks.len();
            m.index.insert(c.name.clone().into_boxed_str(), i);
            m.checks.push(c);
            m.schedule(i);
        }
        m
    }

    /// After a restart in live mode: silence while the router itself was
    /// stopped is not the checks' fault, so staleness counts from `now`
    /// (otherwise every check would go stale at once on start).
    pub fn restart_clock(&mut self, now: i64) {
        for i in 0..self.checks.len() {
            self.checks[i].last_seen_ms = self.checks[i].last_seen_ms.max(now);
            self.checks[i].queued = None;
        }
        for b in self.beats.values_mut() {
            b.last_ms = b.last_ms.max(now);
        }
        self.timer.clear();
        for i in 0..self.checks.len() {
            self.schedule(i);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            v: 1,
            checks: self.checks.clone(),
            heartbeats: self.beats.clone(),
            journal_seq: self.journal_seq,
        }
    }

    /// Writes the snapshot as JSON without cloning the checks.
    pub fn write_snapshot<W: std::io::Write>(&self, w: W) -> serde_json::Result<()> {
        #[derive(Serialize)]
        struct SnapRef<'a> {
            v: u32,
            checks: &'a [CheckState],
            heartbeats: &'a BTreeMap<String, Beat>,
            journal_seq: u64,
        }
        serde_json::to_writer(
            w,
            &SnapRef {
                v: 1,
                checks: &self.checks,
                heartbeats: &self.beats,
                journal_seq: self.journal_seq,
            },
        )
    }

    /// Puts back a check's state journaled after the last snapshot.
    pub fn put(&mut self, mut c: CheckState) {
        c.queued = None;
        let i = match self.index.get(c.name.as_str()) {
            Some(&i) => {
                self.checks[i] = c;
                i
            }
            None => {
                let i = self.checks.len();
                self.index.insert(c.name.clone().into_boxed_str(), i);
                self.checks.push(c);
                i
            }
        };
        self.dirty = true;
        self.schedule(i);
    }

    pub fn check(&self, name: &str) -> Option<&CheckState> {
        self.index.get(name).map(|&i| &self.checks[i])
    }

    pub fn len(&self) -> usize {
        self.checks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Did anything change since the last call?
    pub fn take_dirty(&mut self) -> bool {
        std::mem::replace(&mut self.dirty, false)
    }

    /// Feeds one result at time `now`; derived events are appended to `out`.
    pub fn on_result(&mut self, r: &ResultIn, now: i64, out: &mut Vec<Event>) {
        let i = match self.index.get(r.check) {
            Some(&i) => i,
            None => {
                let i = self.checks.len();
                self.checks.push(CheckState {
                    name: r.check.to_string(),
                    state: Level::Up,
                    announced: Level::Up,
                    announced_since_ms: now,
                    outage_start_ms: now,
                    worse_n: 0,
                    worse_lvl: Level::Up,
                    better_n: 0,
                    better_lvl: Level::Up,
                    history: 0,
                    history_len: 0,
                    flapping: false,
                    fingerprint: None,
                    last_seen_ms: now,
                    stale: false,
                    interval_ms: None,
                    fail_after: None,
                    recover_after: None,
                    remind_ms: None,
                    last_remind_ms: now,
                    reminders: 0,
                    last: String::new(),
                    queued: None,
                });
                self.index.insert(r.check.into(), i);
                self.dirty = true;
                i
            }
        };
        let p = &self.policy;
        let c = &mut self.checks[i];
        c.last_seen_ms = now;
        c.stale = false;
        c.last.clear();
        c.last.push_str(r.raw);
        if r.interval_ms.is_some() {
            c.interval_ms = r.interval_ms;
        }
        if r.fail_after.is_some() {
            c.fail_after = r.fail_after.map(|n| n.max(1));
        }
        if r.recover_after.is_some() {
            c.recover_after = r.recover_after.map(|n| n.max(1));
        }
        if r.remind_ms.is_some() {
            c.remind_ms = r.remind_ms;
        }
        let fail_after = c.fail_after.unwrap_or(p.fail_after).max(1);
        let recover_after = c.recover_after.unwrap_or(p.recover_after).max(1);

        // changed: the observed facts differ from the last ones seen.
        if let Some(fp) = r.fingerprint {
            match &c.fingerprint {
                Some(old) if old != fp => {
                    let mut ev = derived("changed", c, now, r.raw);
                    ev.reason = Some(format!("fingerprint changed from {old} to {fp}"));
                    ev.extra
                        .insert("previous_fingerprint".into(), Value::String(old.clone()));
                    ev.fingerprint = Some(fp.to_string());
                    ev.status = Some(c.announced.status());
                    out.push(ev);
                    c.fingerprint = Some(fp.to_string());
                    self.dirty = true;
                }
                Some(_) => {}
                None => {
                    c.fingerprint = Some(fp.to_string());
                    self.dirty = true;
                }
            }
        }

        // Flapping: Nagios-style weighted share of changes over the window.
        let lvl = Level::of(r.status);
        c.history = ((c.history << 2) | lvl as u64) & ((1u64 << (2 * FLAP_WINDOW)) - 1);
        c.history_len = (c.history_len + 1).min(FLAP_WINDOW);
        let mut flap_stopped = false;
        if c.history_len == FLAP_WINDOW {
            let pct = flap_percent(c.history);
            if !c.flapping && pct >= p.flap_high {
                c.flapping = true;
                self.dirty = true;
                let mut ev = derived("flapping", c, now, r.raw);
                ev.status = Some(c.announced.status());
                ev.reason = Some(format!(
                    "flapping: {pct:.1}% of the last {FLAP_WINDOW} results changed state (start at {}%)",
                    p.flap_high
                ));
                ev.extra.insert("flapping".into(), Value::Bool(true));
                ev.extra.insert("flap_percent".into(), json!(round1(pct)));
                out.push(ev);
            } else if c.flapping && pct < p.flap_low {
                c.flapping = false;
                flap_stopped = true;
                self.dirty = true;
                let mut ev = derived("flapping", c, now, r.raw);
                ev.status = Some(c.announced.status());
                ev.reason = Some(format!(
                    "stopped flapping: {pct:.1}% of the last {FLAP_WINDOW} results changed state (stop under {}%)",
                    p.flap_low
                ));
                ev.extra.insert("flapping".into(), Value::Bool(false));
                ev.extra.insert("flap_percent".into(), json!(round1(pct)));
                out.push(ev);
            }
        }

        // Thresholds: N consecutive results all worse (better) than the
        // confirmed state move it to the least bad (least good) of them.
        let mut moved = false;
        if lvl > c.state {
            c.better_n = 0;
            c.worse_lvl = if c.worse_n == 0 {
                lvl
            } else {
                c.worse_lvl.min(lvl)
            };
            c.worse_n += 1;
            if c.worse_n >= fail_after {
                c.state = c.worse_lvl;
                c.worse_n = 0;
                moved = true;
            }
        } else if lvl < c.state {
            c.worse_n = 0;
            c.better_lvl = if c.better_n == 0 {
                lvl
            } else {
                c.better_lvl.max(lvl)
            };
            c.better_n += 1;
            if c.better_n >= recover_after {
                c.state = c.better_lvl;
                c.better_n = 0;
                moved = true;
            }
        } else {
            c.worse_n = 0;
            c.better_n = 0;
        }
        if moved || flap_stopped {
            self.dirty = true;
        }
        if (moved || flap_stopped) && !c.flapping && c.state != c.announced {
            let (n, why) = if c.state > c.announced {
                (fail_after, "failing")
            } else if c.state == Level::Up {
                (recover_after, "good")
            } else {
                (recover_after, "better")
            };
            let mut ev = derived(lvl_name(c.state), c, now, r.raw);
            ev.status = Some(c.state.status());
            let cause = result_reason(r.raw);
            ev.reason = Some(if flap_stopped {
                format!(
                    "{} after flapping: {cause}",
                    lvl_name(c.state).to_uppercase()
                )
            } else {
                if n == 1 {
                    format!("a {why} result: {cause}")
                } else {
                    format!("{n} {why} results in a row: {cause}")
                }
            });
            ev.extra.insert(
                "previous_for_ms".into(),
                json!((now - c.announced_since_ms).max(0)),
            );
            if c.state == Level::Up {
                ev.extra.insert(
                    "down_for_ms".into(),
                    json!((now - c.outage_start_ms).max(0)),
                );
            }
            if c.announced == Level::Up {
                c.outage_start_ms = now;
            }
            c.announced = c.state;
            c.announced_since_ms = now;
            c.last_remind_ms = now;
            c.reminders = 0;
            out.push(ev);
        }
        self.schedule(i);
    }

    /// Notes a heartbeat from `source` (pup-sched).
    pub fn on_heartbeat(&mut self, source: &str, interval_ms: Option<u64>, now: i64) {
        let iv = interval_ms.unwrap_or(self.policy.heartbeat_ms).max(1);
        let b = self.beats.entry(source.to_string()).or_insert(Beat {
            last_ms: now,
            interval_ms: iv,
            stale: false,
        });
        b.last_ms = now;
        b.interval_ms = iv;
        b.stale = false;
    }

    /// Fires the stale events and reminders due at `now`.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Event>) {
        let factor = self.policy.stale_after.max(1) as i64;
        for (name, b) in self.beats.iter_mut() {
            let limit = factor * b.interval_ms as i64;
            if !b.stale && now - b.last_ms >= limit {
                let now = if self.exact { b.last_ms + limit } else { now };
                b.stale = true;
                self.dirty = true;
                let mut ev = Event::new("stale", name);
                ev.ts = ts(now);
                ev.reason = Some(format!(
                    "no heartbeat from {name} for {}: monitoring has stopped",
                    crate::cli::format_duration(Duration::from_millis((now - b.last_ms) as u64))
                ));
                ev.extra
                    .insert("silent_ms".into(), json!((now - b.last_ms).max(0)));
                ev.extra.insert("heartbeat".into(), Value::Bool(true));
                out.push(ev);
            }
        }
        while let Some(&Reverse((due, i))) = self.timer.peek() {
            if due > now {
                break;
            }
            self.timer.pop();
            if self.checks[i].queued == Some(due) {
                self.checks[i].queued = None;
            }
            let at = if self.exact { due } else { now };
            self.fire(i, at, out);
            self.schedule(i);
        }
    }

    /// The earliest time `tick` has something to do (live mode sleeps
    /// until then).
    pub fn next_due(&self) -> Option<i64> {
        let t = self.timer.peek().map(|r| r.0 .0);
        let b = self
            .beats
            .values()
            .filter(|b| !b.stale)
            .map(|b| b.last_ms + self.policy.stale_after.max(1) as i64 * b.interval_ms as i64)
            .min();
        match (t, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn due(&self, i: usize) -> Option<i64> {
        let c = &self.checks[i];
        let stale = match (c.stale, c.interval_ms) {
            (false, Some(iv)) if iv > 0 => {
                Some(c.last_seen_ms + self.policy.stale_after.max(1) as i64 * iv as i64)
            }
            _ => None,
        };
        let remind = c.remind_ms.unwrap_or(self.policy.remind_ms);
        let reminder = (c.announced == Level::Down && !c.flapping && remind > 0)
            .then(|| c.last_remind_ms + remind as i64);
        match (stale, reminder) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Keeps one timer entry no later than the check's next due time.
    /// Entries are lazy: one that fires early finds nothing due and
    /// requeues the real time.
    fn schedule(&mut self, i: usize) {
        if let Some(d) = self.due(i) {
            let c = &mut self.checks[i];
            if c.queued.is_none_or(|q| d < q) {
                c.queued = Some(d);
                self.timer.push(Reverse((d, i)));
            }
        }
    }

    fn fire(&mut self, i: usize, now: i64, out: &mut Vec<Event>) {
        let stale_after = self.policy.stale_after.max(1) as i64;
        let default_remind = self.policy.remind_ms;
        let c = &mut self.checks[i];
        if let (false, Some(iv)) = (c.stale, c.interval_ms) {
            if iv > 0 && now - c.last_seen_ms >= stale_after * iv as i64 {
                c.stale = true;
                self.dirty = true;
                let mut ev = derived("stale", c, now, &c.last);
                ev.status = Some(c.announced.status());
                ev.reason = Some(format!(
                    "no result for {} (interval {}): the check has stopped reporting",
                    crate::cli::format_duration(Duration::from_millis(
                        (now - c.last_seen_ms) as u64
                    )),
                    crate::cli::format_duration(Duration::from_millis(iv))
                ));
                ev.extra
                    .insert("silent_ms".into(), json!((now - c.last_seen_ms).max(0)));
                out.push(ev);
            }
        }
        let remind = c.remind_ms.unwrap_or(default_remind);
        if c.announced == Level::Down
            && !c.flapping
            && remind > 0
            && now - c.last_remind_ms >= remind as i64
        {
            c.reminders += 1;
            c.last_remind_ms = now;
            self.dirty = true;
            let mut ev = derived("reminder", c, now, &c.last);
            ev.status = Some(Status::Down);
            ev.reason = Some(format!(
                "still down after {}: {}",
                crate::cli::format_duration(Duration::from_millis(
                    (now - c.outage_start_ms).max(0) as u64
                )),
                result_reason(&c.last)
            ));
            ev.extra.insert(
                "down_for_ms".into(),
                json!((now - c.outage_start_ms).max(0)),
            );
            ev.extra.insert("reminder".into(), json!(c.reminders));
            out.push(ev);
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn lvl_name(l: Level) -> &'static str {
    l.status().as_str()
}

/// The weighted share (%) of state changes over a full history: the newest
/// change weighs 1.2, the oldest 0.8, as Nagios weighs them, so a check
/// that has just started or stopped flapping is noticed sooner.
pub fn flap_percent(history: u64) -> f64 {
    let n = FLAP_WINDOW - 1;
    let (mut changed, mut total) = (0.0, 0.0);
    for k in 0..n {
        // k = 0 is the newest change.
        let a = Level::from_bits(history >> (2 * k));
        let b = Level::from_bits(history >> (2 * (k + 1)));
        let w = 1.2 - 0.4 * k as f64 / (n - 1) as f64;
        total += w;
        if a != b {
            changed += w;
        }
    }
    100.0 * changed / total
}

pub fn ts(ms: i64) -> String {
    format_ts(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

fn result_reason(raw: &str) -> String {
    serde_json::from_str::<Value>(raw)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(String::from))
        .unwrap_or_else(|| "no reason given".into())
}

/// A derived event for check `c` carrying the result line `raw` as
/// `result`, with the target, probe and tags copied to the top level so
/// hooks and `jq` find them without digging.
fn derived(kind: &str, c: &CheckState, now: i64, raw: &str) -> Event {
    let mut ev = Event::new(kind, &c.name);
    ev.ts = ts(now);
    ev.extra.insert(
        "previous_status".into(),
        Value::String(c.announced.status().as_str().into()),
    );
    if let Ok(Value::Object(res)) = serde_json::from_str::<Value>(raw) {
        ev.target = res.get("target").and_then(|t| t.as_str()).map(String::from);
        ev.probe = res.get("probe").and_then(|t| t.as_str()).map(String::from);
        if let Some(Value::Object(tags)) = res.get("tags") {
            for (k, v) in tags {
                if let Some(s) = v.as_str() {
                    ev.tags.insert(k.clone(), s.to_string());
                }
            }
        }
        ev.extra.insert("result".into(), Value::Object(res));
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_000_000_000;

    fn line(check: &str, status: &str) -> String {
        format!(
            r#"{{"v":1,"type":"result","check":"{check}","probe":"http","target":"http://x/","status":"{status}","ts":"2026-11-23T20:10:53.123Z","duration_ms":1,"reason":"r-{status}"}}"#
        )
    }

    /// Feeds results (status letter per step, one step per second) and
    /// returns the derived event types in order, as "type@step".
    fn run(policy: Policy, steps: &str) -> Vec<String> {
        let mut m = Machine::new(policy);
        let mut names = Vec::new();
        for (k, ch) in steps.chars().enumerate() {
            let st = match ch {
                'u' => "up",
                'd' => "down",
                'g' => "degraded",
                '?' => "unknown",
                _ => continue,
            };
            let raw = line("web", st);
            let r = ResultIn {
                check: "web",
                status: serde_json::from_value(json!(st)).unwrap(),
                fingerprint: None,
                interval_ms: None,
                fail_after: None,
                recover_after: None,
                remind_ms: None,
                raw: &raw,
            };
            let mut out = Vec::new();
            m.on_result(&r, T0 + 1000 * k as i64, &mut out);
            for e in out {
                let extra = match e.extra.get("flapping") {
                    Some(Value::Bool(true)) => "+",
                    Some(Value::Bool(false)) => "-",
                    _ => "",
                };
                names.push(format!("{}{extra}@{k}", e.kind));
            }
        }
        names
    }

    #[test]
    fn thresholds_table() {
        let p = Policy::default;
        let table: Vec<(&str, Policy, &str, Vec<&str>)> = vec![
            ("all up: silence", p(), "uuuuu", vec![]),
            ("one lost packet pages no one", p(), "uuduu", vec![]),
            ("two failures do not either", p(), "udduuddu", vec![]),
            ("three failures: down", p(), "uddd", vec!["down@3"]),
            (
                "down then recovery after two",
                p(),
                "ddduu",
                vec!["down@2", "up@4"],
            ),
            (
                "one good result is not a recovery",
                p(),
                "ddduduu",
                vec!["down@2", "up@6"],
            ),
            ("unknown counts as failing", p(), "?d?", vec!["down@2"]),
            (
                "degraded likewise",
                p(),
                "gggu u",
                vec!["degraded@2", "up@5"],
            ),
            (
                "mixed failures settle on the least bad",
                p(),
                "dgd",
                vec!["degraded@2"],
            ),
            (
                "down to degraded is a recovery step",
                p(),
                "dddgg",
                vec!["down@2", "degraded@4"],
            ),
            (
                "fail-after 1 pages at once",
                Policy {
                    fail_after: 1,
                    recover_after: 1,
                    ..p()
                },
                "dud",
                vec!["down@0", "up@1", "down@2"],
            ),
        ];
        for (what, pol, steps, want) in table {
            assert_eq!(run(pol, steps), want, "{what}: {steps}");
        }
    }

    #[test]
    fn flapping_holds_transitions_and_announces_once_when_it_settles() {
        let pol = Policy {
            fail_after: 1,
            recover_after: 1,
            ..Policy::default()
        };
        // 21 stable results, then alternation: each alternation is a
        // transition until the window's weighted share reaches 50%.
        let mut steps = "u".repeat(21);
        steps.push_str(&"du".repeat(10));
        steps.push_str(&"d".repeat(25));
        let got = run(pol, &steps);
        let flap_start = got.iter().position(|e| e.starts_with("flapping+")).unwrap();
        let flap_stop = got.iter().position(|e| e.starts_with("flapping-")).unwrap();
        assert!(flap_start < flap_stop, "{got:?}");
        // Nothing but flapping events between start and stop.
        assert!(
            got[flap_start + 1..flap_stop].is_empty(),
            "transitions leaked while flapping: {got:?}"
        );
        // The settled state is announced once, right after the stop...
        assert!(got[flap_stop + 1].starts_with("down@"), "{got:?}");
        // ...and nothing after it.
        assert_eq!(got.len(), flap_stop + 2, "{got:?}");
    }

    #[test]
    fn flap_percent_weights_newer_changes_more() {
        // Alternating over the whole window: 100%.
        let mut alt = 0u64;
        for k in 0..FLAP_WINDOW {
            alt = (alt << 2) | ((k as u64 % 2) * 2);
        }
        assert!((flap_percent(alt) - 100.0).abs() < 1e-9);
        assert_eq!(flap_percent(0), 0.0);
        // One change: newest weighs more than oldest.
        let newest = 2u64; // only the newest result differs
        let oldest = 2u64 << (2 * (FLAP_WINDOW - 1));
        assert!(flap_percent(newest) > flap_percent(oldest));
    }

    fn feed(
        m: &mut Machine,
        check: &str,
        st: Status,
        fp: Option<&str>,
        iv: Option<u64>,
        now: i64,
    ) -> Vec<Event> {
        let raw = line(check, st.as_str());
        let mut out = Vec::new();
        m.on_result(
            &ResultIn {
                check,
                status: st,
                fingerprint: fp,
                interval_ms: iv,
                fail_after: None,
                recover_after: None,
                remind_ms: None,
                raw: &raw,
            },
            now,
            &mut out,
        );
        out
    }

    #[test]
    fn changed_only_when_the_fingerprint_differs_from_the_last() {
        let mut m = Machine::new(Policy::default());
        let a = "sha256:0000000000000000000000000000000a";
        let b = "sha256:0000000000000000000000000000000b";
        assert!(feed(&mut m, "dns", Status::Up, Some(a), None, T0).is_empty());
        assert!(feed(&mut m, "dns", Status::Up, Some(a), None, T0 + 1).is_empty());
        assert!(feed(&mut m, "dns", Status::Up, None, None, T0 + 2).is_empty());
        let ev = feed(&mut m, "dns", Status::Up, Some(b), None, T0 + 3);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, "changed");
        assert_eq!(ev[0].extra["previous_fingerprint"], a);
        assert_eq!(ev[0].fingerprint.as_deref(), Some(b));
    }

    #[test]
    fn down_carries_previous_status_and_result_and_up_carries_down_for() {
        let mut m = Machine::new(Policy::default());
        for k in 0..2 {
            assert!(feed(&mut m, "w", Status::Down, None, None, T0 + k).is_empty());
        }
        let d = feed(&mut m, "w", Status::Down, None, None, T0 + 2);
        assert_eq!(d[0].kind, "down");
        assert_eq!(d[0].extra["previous_status"], "up");
        assert_eq!(d[0].extra["result"]["reason"], "r-down");
        assert_eq!(d[0].target.as_deref(), Some("http://x/"));
        feed(&mut m, "w", Status::Up, None, None, T0 + 60_000);
        let u = feed(&mut m, "w", Status::Up, None, None, T0 + 90_002);
        assert_eq!(u[0].kind, "up");
        assert_eq!(u[0].extra["down_for_ms"], 90_000);
        assert_eq!(u[0].extra["previous_status"], "down");
    }

    #[test]
    fn reminders_while_down_and_stale_checks_by_their_interval() {
        let mut m = Machine::new(Policy {
            remind_ms: 60_000,
            fail_after: 1,
            ..Policy::default()
        });
        feed(&mut m, "w", Status::Down, None, Some(10_000), T0);
        let mut out = Vec::new();
        m.tick(T0 + 29_999, &mut out);
        assert!(out.is_empty(), "{out:?}");
        m.tick(T0 + 30_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, "stale");
        assert_eq!(out[0].extra["silent_ms"], 30_000);
        out.clear();
        m.tick(T0 + 45_000, &mut out);
        assert!(out.is_empty(), "stale fires once: {out:?}");
        m.tick(T0 + 60_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, "reminder");
        assert_eq!(out[0].extra["reminder"], 1);
        out.clear();
        m.tick(T0 + 119_999, &mut out);
        assert!(out.is_empty());
        m.tick(T0 + 120_000, &mut out);
        assert_eq!(out[0].extra["reminder"], 2);
        assert_eq!(m.next_due(), Some(T0 + 180_000));
    }

    #[test]
    fn heartbeats_that_stop_make_a_stale_event_once() {
        let mut m = Machine::new(Policy::default());
        m.on_heartbeat("pup-sched", Some(1000), T0);
        let mut out = Vec::new();
        m.tick(T0 + 2999, &mut out);
        assert!(out.is_empty());
        m.tick(T0 + 3000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].check, "pup-sched");
        assert_eq!(out[0].extra["heartbeat"], true);
        m.tick(T0 + 9000, &mut out);
        assert_eq!(out.len(), 1);
        m.on_heartbeat("pup-sched", Some(1000), T0 + 9500);
        m.tick(T0 + 12_500, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn a_restart_does_not_make_every_check_stale_at_once() {
        let mut m = Machine::new(Policy::default());
        feed(&mut m, "w", Status::Up, None, Some(1000), T0);
        m.on_heartbeat("pup-sched", Some(1000), T0);
        let mut buf = Vec::new();
        m.write_snapshot(&mut buf).unwrap();
        let mut m2 = Machine::restore(Policy::default(), serde_json::from_slice(&buf).unwrap());
        // Restarted an hour later.
        let now = T0 + 3_600_000;
        m2.restart_clock(now);
        let mut out = Vec::new();
        m2.tick(now + 2999, &mut out);
        assert!(out.is_empty(), "{out:?}");
        m2.tick(now + 3000, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
    }

    #[test]
    fn policy_from_events_overrides_defaults() {
        let mut m = Machine::new(Policy::default());
        let raw = line("w", "down");
        let mut out = Vec::new();
        m.on_result(
            &ResultIn {
                check: "w",
                status: Status::Down,
                fingerprint: None,
                interval_ms: None,
                fail_after: Some(1),
                recover_after: None,
                remind_ms: None,
                raw: &raw,
            },
            T0,
            &mut out,
        );
        assert_eq!(out[0].kind, "down");
    }

    #[test]
    fn snapshot_round_trips_and_does_not_repeat_a_down() {
        let mut m = Machine::new(Policy::default());
        for k in 0..3 {
            feed(&mut m, "w", Status::Down, None, None, T0 + k);
        }
        let mut buf = Vec::new();
        m.write_snapshot(&mut buf).unwrap();
        let snap: Snapshot = serde_json::from_slice(&buf).unwrap();
        let mut m2 = Machine::restore(Policy::default(), snap);
        for k in 3..10 {
            assert!(feed(&mut m2, "w", Status::Down, None, None, T0 + k).is_empty());
        }
        feed(&mut m2, "w", Status::Up, None, None, T0 + 20);
        assert_eq!(
            feed(&mut m2, "w", Status::Up, None, None, T0 + 21)[0].kind,
            "up"
        );
    }
}
