//! `pup-route`: turns a stream of result events into the events people act
//! on, and runs the user's hooks for them.
//!
//! * [`machine`]: the pure per-check state machine (thresholds, recovery,
//!   reminders, flapping, changes, staleness); time is passed in.
//! * [`hooks`]: finding, vetting and running hooks; the pool that runs
//!   them in order per check.
//! * [`store`]: the `--state` file and the journal of hook runs.
//!
//! This file is the program around them: the command line, the input
//! reader (capped lines, read on a thread of its own so that a quiet input
//! never stops the timer), the clock (event timestamps with `--replay`,
//! the system clock otherwise) and the output.

pub mod hooks;
pub mod machine;
pub mod store;

use crate::cli::{self, Exit};
use crate::event::{parse_ts, Event, Status};
use crate::ndjson::MAX_LINE;
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use hooks::{HookUser, Pool, Run};
use machine::{Machine, Policy, ResultIn};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROG: &str = "pup-route";

/// Event types pup-route understands on its input. Anything else passes
/// through with a warning.
const KNOWN_TYPES: &[&str] = &[
    "result",
    "heartbeat",
    "down",
    "up",
    "degraded",
    "reminder",
    "flapping",
    "changed",
    "stale",
    "hook",
];

const AFTER_HELP: &str = "\
Input: result events (NDJSON) on stdin, from pup-sched, a probe in --stdin
mode, or a file. Every input line is passed through to stdout, followed by
the events it caused:

  down       fail-after failing results in a row (unknown counts as failing)
  up         recover-after good results in a row; carries down_for_ms
  degraded   likewise, for degraded results (also down -> degraded)
  reminder   every --remind while a check stays down
  flapping   start (flapping:true) / stop (flapping:false): the weighted
             share of status changes over the last 21 results reached
             --flap-high / fell under --flap-low. While flapping, down/up/
             degraded are held back; when it settles the real state is
             announced once.
  changed    the result's fingerprint differs from the last one
  stale      no result for --stale-after x the check's interval_ms, or no
             heartbeat from pup-sched for --stale-after x its interval
  hook       one per hook run: hook, event, exit_code, duration_ms, stderr

Every derived event carries previous_status and the causing result (as
\"result\"). Per-check policy in the events (fail_after, recover_after,
remind_ms, interval_ms; pup-sched adds them from its config) overrides the
command-line defaults.

Hooks: for an event of type T, every executable in HOOKS_DIR/T/ then
HOOKS_DIR/all/, in name order (dotfiles, *~, *.disabled and non-executables
skipped; all/ is not run for result or hook-failed). Directories: result,
down, up, degraded, reminder, flapping, changed, stale, hook-failed, all.
A hook gets the event as a temporary file (mode 0600, removed after) named
by its first argument, the same JSON on stdin, and PUP_EVENT, PUP_CHECK,
PUP_STATUS, PUP_PREVIOUS_STATUS, PUP_TARGET, PUP_REASON, PUP_HOOK in its
environment (one line each, at most 1024 bytes). No shell is involved. Its
stdout is discarded; the last lines of its stderr go into the hook event. A
hook that fails (non-zero exit, timeout, refused) triggers
HOOKS_DIR/hook-failed/ with the hook event. Hooks that are group- or
world-writable, or owned by someone other than the running user or root,
are refused.

Exit status: 0 at the end of the input or on SIGTERM/SIGINT (after running
hooks finish and the state is saved), 1 on a runtime failure (unreadable
input, unwritable state), 2 on bad usage.

Examples:
  pup-sched puptime.conf | pup-route hooks.d/ --state /var/lib/pup/route.state
  pup-route --replay --dry-run hooks.d/ < last-week.ndjson
  pup-probe-http --stdin < urls.txt | pup-route --fail-after 1 -q";

/// The full command line (the man page is generated from it).
pub fn command() -> Command {
    Command::new(PROG)
        .version(env!("CARGO_PKG_VERSION"))
        .about("Keep state per check from a stream of results, emit down/up/flapping/changed/stale events, run hooks")
        .after_help(AFTER_HELP)
        .args_override_self(true)
        .arg(
            Arg::new("hooks_dir")
                .value_name("HOOKS_DIR")
                .value_parser(value_parser!(PathBuf))
                .help("Directory of hook directories (down/, up/, all/, ...); without it no hooks run"),
        )
        .arg(
            Arg::new("fail_after")
                .long("fail-after")
                .value_name("N")
                .default_value("3")
                .value_parser(value_parser!(u32).range(1..))
                .help("Failing results in a row before down (or degraded): one lost packet pages no one"),
        )
        .arg(
            Arg::new("recover_after")
                .long("recover-after")
                .value_name("N")
                .default_value("2")
                .value_parser(value_parser!(u32).range(1..))
                .help("Good results in a row before up"),
        )
        .arg(
            Arg::new("remind")
                .long("remind")
                .value_name("DUR")
                .default_value("0s")
                .value_parser(cli::parse_duration)
                .help("Emit a reminder every DUR while a check stays down (0s: never)"),
        )
        .arg(
            Arg::new("stale_after")
                .long("stale-after")
                .value_name("N")
                .default_value("3")
                .value_parser(value_parser!(u32).range(1..))
                .help("A check is stale after N of its intervals (interval_ms) without a result; pup-sched after N heartbeat intervals"),
        )
        .arg(
            Arg::new("heartbeat")
                .long("heartbeat")
                .value_name("DUR")
                .default_value("30s")
                .value_parser(cli::parse_duration)
                .help("Heartbeat interval assumed when a heartbeat event carries no interval_ms"),
        )
        .arg(
            Arg::new("flap_high")
                .long("flap-high")
                .value_name("PCT")
                .default_value("50")
                .value_parser(value_parser!(f64))
                .help("Flapping starts when the weighted share of status changes over the last 21 results reaches PCT (above 100: never)"),
        )
        .arg(
            Arg::new("flap_low")
                .long("flap-low")
                .value_name("PCT")
                .default_value("25")
                .value_parser(value_parser!(f64))
                .help("Flapping stops when that share falls under PCT"),
        )
        .arg(
            Arg::new("replay")
                .long("replay")
                .action(ArgAction::SetTrue)
                .help("Take the time from the events' ts instead of the clock: the same input gives the same output"),
        )
        .arg(
            Arg::new("state")
                .long("state")
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf))
                .help("Keep per-check state in FILE across restarts (rewritten atomically at most once a second), with a synced write-ahead journal in FILE.journal of check changes and hook runs: a restart repeats no down, and hook runs cut off by a crash are redone"),
        )
        .arg(
            Arg::new("hook_timeout")
                .long("hook-timeout")
                .value_name("DUR")
                .default_value("30s")
                .value_parser(cli::parse_duration)
                .help("Kill a hook's whole process group after DUR (SIGTERM, SIGKILL 1s later)"),
        )
        .arg(
            Arg::new("jobs")
                .short('j')
                .long("jobs")
                .value_name("N")
                .default_value("8")
                .value_parser(value_parser!(u32).range(1..=1024))
                .help("Hooks run at once (hooks of one check always run one at a time, in event order)"),
        )
        .arg(
            Arg::new("hook_user")
                .long("hook-user")
                .value_name("NAME")
                .help("Run hooks as this user and its group (pup-route must be root)"),
        )
        .arg(
            Arg::new("dry_run")
                .long("dry-run")
                .action(ArgAction::SetTrue)
                .help("Do not run hooks: print a hook event with dry_run:true for each one that would run"),
        )
        .arg(
            Arg::new("quiet")
                .short('q')
                .long("derived-only")
                .action(ArgAction::SetTrue)
                .help("Print only pup-route's own events, not the input passed through"),
        )
}

/// Options after parsing.
struct Opts {
    hooks_dir: Option<PathBuf>,
    policy: Policy,
    replay: bool,
    state: Option<PathBuf>,
    hook_timeout: Duration,
    jobs: usize,
    hook_user: Option<String>,
    dry_run: bool,
    quiet: bool,
}

fn opts(m: &ArgMatches) -> Opts {
    let dur = |k: &str| *m.get_one::<Duration>(k).expect("default");
    Opts {
        hooks_dir: m.get_one::<PathBuf>("hooks_dir").cloned(),
        policy: Policy {
            fail_after: *m.get_one("fail_after").expect("default"),
            recover_after: *m.get_one("recover_after").expect("default"),
            remind_ms: dur("remind").as_millis() as u64,
            stale_after: *m.get_one("stale_after").expect("default"),
            heartbeat_ms: dur("heartbeat").as_millis().max(1) as u64,
            flap_high: *m.get_one("flap_high").expect("default"),
            flap_low: *m.get_one("flap_low").expect("default"),
        },
        replay: m.get_flag("replay"),
        state: m.get_one::<PathBuf>("state").cloned(),
        hook_timeout: dur("hook_timeout"),
        jobs: *m.get_one::<u32>("jobs").expect("default") as usize,
        hook_user: m.get_one::<String>("hook_user").cloned(),
        dry_run: m.get_flag("dry_run"),
        quiet: m.get_flag("quiet"),
    }
}

/// stdout, buffered: the main loop flushes whenever it would wait for
/// input, hook events are flushed at once. A closed stdout ends quietly.
struct Out(Mutex<BufWriter<io::Stdout>>);

impl Out {
    fn line(&self, b: &[u8], flush: bool) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let r = w
            .write_all(b)
            .and_then(|_| w.write_all(b"\n"))
            .and_then(|_| if flush { w.flush() } else { Ok(()) });
        if let Err(e) = r {
            cli::exit_on_write_error(PROG, &e, 0);
        }
    }
    fn flush(&self) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = w.flush() {
            cli::exit_on_write_error(PROG, &e, 0);
        }
    }
}

/// What the reader thread sends: complete lines, in order.
enum Msg {
    /// One or more whole lines, and where each ends (its `\n`), so the
    /// main thread does not scan for newlines again.
    Lines(Vec<u8>, Vec<u32>),
    /// A line over the cap (its length in bytes); its bytes were dropped.
    TooLong(usize),
    Eof,
    Err(io::Error),
}

/// The first `\n` in `h`, eight bytes at a time (std's memchr is not
/// public, and a byte loop was a tenth of the run time).
fn find_nl(h: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut i = 0;
    while i + 8 <= h.len() {
        let w = u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes")) ^ NL;
        // The lowest byte that is zero in w is the first newline.
        let z = w.wrapping_sub(LO) & !w & HI;
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    h[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
}

/// Reads stdin in chunks, cutting complete lines and dropping overlong
/// ones without ever holding more than `cap` bytes of one.
fn reader(tx: mpsc::SyncSender<Msg>, cap: usize) {
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let mut skipping: Option<usize> = None;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Msg::Err(e));
                return;
            }
        };
        if n == 0 {
            if let Some(l) = skipping {
                let _ = tx.send(Msg::TooLong(l));
            } else if !partial.is_empty() {
                let end = partial.len() as u32;
                partial.push(b'\n');
                let _ = tx.send(Msg::Lines(std::mem::take(&mut partial), vec![end]));
            }
            let _ = tx.send(Msg::Eof);
            return;
        }
        let data = &buf[..n];
        let mut out = Vec::with_capacity(n + partial.len());
        let mut ends = Vec::new();
        let mut start = 0;
        while let Some(off) = find_nl(&data[start..]) {
            let seg = &data[start..start + off];
            start += off + 1;
            let long = match skipping.take() {
                Some(l) => Some(l + seg.len()),
                None if partial.len() + seg.len() > cap => Some(partial.len() + seg.len()),
                None => None,
            };
            match long {
                Some(len) => {
                    partial.clear();
                    if !out.is_empty()
                        && tx
                            .send(Msg::Lines(
                                std::mem::take(&mut out),
                                std::mem::take(&mut ends),
                            ))
                            .is_err()
                    {
                        return;
                    }
                    if tx.send(Msg::TooLong(len)).is_err() {
                        return;
                    }
                }
                None => {
                    out.append(&mut partial);
                    out.extend_from_slice(seg);
                    ends.push(out.len() as u32);
                    out.push(b'\n');
                }
            }
        }
        let rest = &data[start..];
        match skipping.as_mut() {
            Some(l) => *l += rest.len(),
            None if partial.len() + rest.len() > cap => {
                skipping = Some(partial.len() + rest.len());
                partial.clear();
            }
            None => partial.extend_from_slice(rest),
        }
        if !out.is_empty() && tx.send(Msg::Lines(out, ends)).is_err() {
            return;
        }
    }
}

/// The fields of an input event pup-route reads; the rest is skipped
/// unparsed (the line is passed through as it came).
#[derive(Deserialize)]
struct In<'a> {
    v: u64,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    check: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default, borrow)]
    fingerprint: Option<Cow<'a, str>>,
    // Numbers are read as f64: pup-sched writes durations as fractional
    // ms (30000.0), and a policy field of the wrong type must not cost
    // the whole result (it is ignored instead).
    #[serde(default, deserialize_with = "lenient")]
    interval_ms: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    fail_after: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    recover_after: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    remind_ms: Option<f64>,
}

/// A non-negative finite number, or nothing for anything else.
fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    struct Num;
    impl<'v> serde::de::Visitor<'v> for Num {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number")
        }
        fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(n as f64))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
            Ok((n >= 0).then_some(n as f64))
        }
        fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
            Ok((n.is_finite() && n >= 0.0).then_some(n))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'v>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'v>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            while a
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    }
    d.deserialize_any(Num)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How often state changes other than transitions are saved.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// How often the hook directory listings are read again.
const RESCAN: Duration = Duration::from_secs(1);

struct Router {
    opts: Opts,
    machine: Machine,
    out: Arc<Out>,
    pool: Option<Arc<Pool>>,
    journal: Option<Arc<store::Journal>>,
    /// The current time in ms (replay: the latest event ts seen).
    now: i64,
    line_no: u64,
    warned: HashSet<String>,
    listings: HashMap<&'static str, (Instant, Vec<String>)>,
    /// Hook runs of the current chunk, submitted after journal and state.
    batch: Vec<(String, Vec<Run>)>,
    derived: Vec<Event>,
    /// Checks with derived events in the current chunk.
    touched: Vec<String>,
    /// A transition happened since the state was last saved.
    urgent: bool,
    pending_dirty: bool,
    last_save: Instant,
    failed: bool,
}

impl Router {
    fn warn_once(&mut self, key: String, msg: String) {
        if self.warned.insert(key) {
            cli::warn(PROG, msg);
        }
    }

    fn hooks_in(&mut self, dir: &'static str) -> Vec<String> {
        let Some(root) = &self.opts.hooks_dir else {
            return Vec::new();
        };
        let fresh = self
            .listings
            .get(dir)
            .is_some_and(|(t, _)| t.elapsed() < RESCAN);
        if !fresh {
            let l = hooks::list(&root.join(dir));
            self.listings.insert(dir, (Instant::now(), l));
        }
        self.listings[dir].1.clone()
    }

    /// Queues the hooks for an event of type `kind` (into the batch).
    fn queue_hooks(&mut self, kind: &str, check: &str, line: &str) {
        if self.pool.is_none() {
            return;
        }
        let Some(dir) = hooks::dir_for(kind) else {
            return;
        };
        let mut runs: Vec<Run> = self
            .hooks_in(dir)
            .into_iter()
            .map(|name| Run {
                id: 0,
                dir,
                name,
                event: line.to_string(),
            })
            .collect();
        if hooks::all_applies(dir) {
            runs.extend(self.hooks_in("all").into_iter().map(|name| Run {
                id: 0,
                dir: "all",
                name,
                event: line.to_string(),
            }));
        }
        if !runs.is_empty() {
            self.batch.push((check.to_string(), runs));
        }
    }

    fn line(&mut self, raw: &[u8]) {
        self.line_no += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            cli::warn(PROG, format!("line {}: not UTF-8, skipped", self.line_no));
            return;
        };
        let ev: In = match serde_json::from_str(text) {
            Ok(ev) => ev,
            Err(e) => {
                cli::warn(
                    PROG,
                    format!("line {}: not an event ({e}), skipped", self.line_no),
                );
                return;
            }
        };
        if ev.v > crate::event::VERSION as u64 {
            self.warn_once(
                format!("v{}", ev.v),
                format!(
                    "line {}: schema version {} is newer than {}: passed through unread",
                    self.line_no,
                    ev.v,
                    crate::event::VERSION
                ),
            );
            self.pass(text);
            return;
        }
        if !KNOWN_TYPES.contains(&&*ev.kind) {
            self.warn_once(
                format!("t:{}", ev.kind),
                format!(
                    "line {}: unknown event type {:?}: passed through",
                    self.line_no, ev.kind
                ),
            );
            self.pass(text);
            return;
        }
        if ev.kind != "result" && ev.kind != "heartbeat" {
            // Another router's events: not ours to judge again.
            self.pass(text);
            return;
        }
        let t = if self.opts.replay {
            match parse_ts(&ev.ts) {
                Ok(t) => t
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0),
                Err(e) => {
                    cli::warn(PROG, format!("line {}: {e}, skipped", self.line_no));
                    return;
                }
            }
        } else {
            now_ms()
        };
        // Time never runs backwards (results finish out of order).
        self.now = self.now.max(t);
        self.pass(text);
        let now = self.now;
        let mut derived = std::mem::take(&mut self.derived);
        self.machine.tick(now, &mut derived);
        if ev.kind == "heartbeat" {
            self.machine
                .on_heartbeat(&ev.check, ev.interval_ms.map(|x| x.round() as u64), now);
        } else {
            let Some(status) = ev.status else {
                cli::warn(
                    PROG,
                    format!("line {}: result without status, skipped", self.line_no),
                );
                self.derived = derived;
                self.emit_derived();
                return;
            };
            self.queue_hooks("result", &ev.check, text);
            self.machine.on_result(
                &ResultIn {
                    check: &ev.check,
                    status,
                    fingerprint: ev.fingerprint.as_deref(),
                    interval_ms: ev.interval_ms.map(|x| x.round() as u64),
                    fail_after: ev.fail_after.map(|x| x.min(1e6) as u32),
                    recover_after: ev.recover_after.map(|x| x.min(1e6) as u32),
                    remind_ms: ev.remind_ms.map(|x| x.round() as u64),
                    raw: text,
                },
                now,
                &mut derived,
            );
        }
        self.derived = derived;
        self.emit_derived();
    }

    fn pass(&self, text: &str) {
        if !self.opts.quiet {
            self.out.line(text.as_bytes(), false);
        }
    }

    fn emit_derived(&mut self) {
        let derived = std::mem::take(&mut self.derived);
        for ev in &derived {
            let line = ev.to_line();
            self.out.line(line.as_bytes(), false);
            self.queue_hooks(&ev.kind, &ev.check, &line);
            self.touched.push(ev.check.clone());
            self.urgent = true;
        }
        self.derived = derived;
        self.derived.clear();
    }

    fn tick(&mut self) {
        if self.opts.replay {
            return;
        }
        self.now = self.now.max(now_ms());
        let mut derived = std::mem::take(&mut self.derived);
        self.machine.tick(self.now, &mut derived);
        self.derived = derived;
        self.emit_derived();
    }

    /// End of a chunk: journal the states of the checks that changed and
    /// the hook runs (synced), save the state file when due, start the
    /// runs.
    fn commit(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort();
        touched.dedup();
        if let Some(j) = &self.journal {
            let states: Vec<&machine::CheckState> = touched
                .iter()
                .filter_map(|c| self.machine.check(c))
                .collect();
            match j.record(&mut batch, &states) {
                Ok(seq) => self.machine.journal_seq = seq,
                Err(e) => {
                    cli::warn(PROG, e);
                    self.failed = true;
                }
            }
        }
        // With a journal, a transition is on disk once journaled, and the
        // state file (every check) is rewritten at most once a second.
        // Without one (--dry-run), transitions are saved at once: a
        // restart must not repeat a down.
        self.pending_dirty |= self.machine.take_dirty();
        let now = self.journal.is_none() && self.urgent;
        if now || (self.pending_dirty && self.last_save.elapsed() >= SAVE_EVERY) {
            self.save();
        }
        if let Some(pool) = &self.pool {
            for (check, runs) in batch {
                pool.submit(&check, runs);
            }
        }
    }

    fn save(&mut self) {
        self.urgent = false;
        self.pending_dirty = false;
        self.last_save = Instant::now();
        if let Some(p) = &self.opts.state {
            match store::save(p, &self.machine) {
                Ok(()) => {
                    if let Some(j) = &self.journal {
                        j.saved(self.machine.journal_seq);
                    }
                }
                Err(e) => {
                    cli::warn(PROG, e);
                    self.failed = true;
                }
            }
        }
    }
}

/// Runs pup-route as a program and exits.
pub fn main() -> ! {
    let m = match command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                std::process::exit(0);
            }
            usage(format!("{} (see --help)", cli::first_line(&e.to_string())));
        }
    };
    let o = opts(&m);
    std::process::exit(run(o));
}

fn usage(msg: impl std::fmt::Display) -> ! {
    cli::warn(PROG, msg);
    std::process::exit(Exit::Usage.code());
}

/// Set by SIGTERM / SIGINT: end as at the end of the input (finish the
/// hooks that run, save the state) instead of dying mid-run.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn catch_stop_signals() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_stop as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}

/// A private directory for the events' temporary files.
fn private_tmp(user: Option<&HookUser>) -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let p = std::env::temp_dir().join(format!("pup-route.{}.{nanos:x}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&p)?;
    if user.is_some() {
        // The hook user may enter (to open its own 0600 file) but not list.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(p)
}

fn run(mut o: Opts) -> i32 {
    let my_uid = unsafe { libc::geteuid() };
    let (lo, hi) = (o.policy.flap_low, o.policy.flap_high);
    if !(lo >= 0.0 && hi >= 0.0 && lo.is_finite() && hi.is_finite()) {
        usage("--flap-low and --flap-high are percentages, 0 or more (see --help)");
    }
    if lo > hi {
        usage("--flap-low must not be above --flap-high (see --help)");
    }
    let user = match &o.hook_user {
        Some(name) => {
            if my_uid != 0 {
                usage("--hook-user needs pup-route to run as root");
            }
            match hooks::lookup_user(name) {
                Ok(u) => Some(u),
                Err(e) => usage(e),
            }
        }
        None => None,
    };
    if let Some(dir) = o.hooks_dir.clone() {
        if !dir.is_dir() {
            usage(format!(
                "hooks directory {}: not a directory",
                dir.display()
            ));
        }
        // Hooks run with the hooks directory as their working directory,
        // so their paths must not depend on ours.
        let dir = match dir.canonicalize() {
            Ok(d) => d,
            Err(e) => usage(format!("hooks directory {}: {e}", dir.display())),
        };
        o.hooks_dir = Some(dir.clone());
        let bad = hooks::audit(&dir, my_uid);
        if !bad.is_empty() {
            for b in &bad {
                cli::warn(PROG, b);
            }
            std::process::exit(Exit::Usage.code());
        }
        if my_uid == 0 && user.is_none() && !o.dry_run {
            cli::warn(
                PROG,
                "warning: running as root, so hooks run as root too; use --hook-user NAME to run them as another user",
            );
        }
    }
    let mut machine = match &o.state {
        Some(p) => match store::load(p) {
            Ok(Some(snap)) => Machine::restore(o.policy.clone(), snap),
            Ok(None) => Machine::new(o.policy.clone()),
            Err(e) => usage(e),
        },
        None => Machine::new(o.policy.clone()),
    };
    let mut journal = None;
    let mut redo = Vec::new();
    if let (Some(p), false) = (&o.state, o.dry_run) {
        let (j, opened) = match store::Journal::open(p) {
            Ok(v) => v,
            Err(e) => usage(e),
        };
        // Check states journaled after the state file was last written.
        for (seq, st) in opened.states {
            if seq > machine.journal_seq {
                machine.put(st);
            }
        }
        machine.journal_seq = j.last_seq();
        if !o.replay {
            machine.restart_clock(now_ms());
        }
        // The state file takes in the journal before it is compacted.
        if let Err(e) = store::save(p, &machine).and_then(|_| {
            j.saved(machine.journal_seq);
            j.compact(&opened.runs)
        }) {
            cli::warn(PROG, e);
            return Exit::Runtime.code();
        }
        journal = Some(Arc::new(j));
        redo = opened.runs;
    }
    machine.exact = o.replay;
    if !o.replay && journal.is_none() {
        machine.restart_clock(now_ms());
    }
    let out = Arc::new(Out(Mutex::new(BufWriter::with_capacity(
        64 * 1024,
        io::stdout(),
    ))));
    let mut tmp = None;
    let pool = match &o.hooks_dir {
        Some(root) => {
            let dir = match private_tmp(user.as_ref()) {
                Ok(d) => d,
                Err(e) => {
                    cli::warn(PROG, format!("cannot make a temporary directory: {e}"));
                    return Exit::Runtime.code();
                }
            };
            tmp = Some(dir.clone());
            let emit_out = out.clone();
            let emit: hooks::Emit = Arc::new(move |ev: &Event| {
                emit_out.line(ev.to_line().as_bytes(), true);
            });
            let sink = journal.clone().map(|j| j as Arc<dyn hooks::Sink>);
            Some(Pool::start(
                hooks::Config {
                    root: root.clone(),
                    timeout: o.hook_timeout,
                    jobs: o.jobs,
                    user,
                    my_uid,
                    dry_run: o.dry_run,
                    tmp: dir,
                },
                emit,
                sink,
            ))
        }
        None => None,
    };
    if let Some(pool) = &pool {
        if !redo.is_empty() {
            cli::warn(
                PROG,
                format!(
                    "running {} hook run(s) left unfinished by the last run",
                    redo.len()
                ),
            );
        }
        for (check, run) in redo {
            pool.submit(&check, vec![run]);
        }
    }
    let mut r = Router {
        opts: o,
        machine,
        out: out.clone(),
        pool,
        journal,
        now: 0,
        line_no: 0,
        warned: HashSet::new(),
        listings: HashMap::new(),
        batch: Vec::new(),
        derived: Vec::new(),
        touched: Vec::new(),
        urgent: false,
        pending_dirty: false,
        last_save: Instant::now(),
        failed: false,
    };
    catch_stop_signals();
    let (tx, rx) = mpsc::sync_channel(64);
    std::thread::spawn(move || reader(tx, MAX_LINE));
    let mut flushed = true;
    loop {
        let msg = if !flushed {
            match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    r.commit();
                    out.flush();
                    flushed = true;
                    continue;
                }
                Err(TryRecvError::Disconnected) => Msg::Eof,
            }
        } else if STOP.load(Ordering::Relaxed) {
            cli::warn(PROG, "stopping on a signal: waiting for running hooks");
            break;
        } else if r.opts.replay {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => Msg::Eof,
            }
        } else {
            // Live: wake up for the next stale check or reminder even when
            // no input comes.
            let wait = match r.machine.next_due() {
                Some(d) => Duration::from_millis((d - now_ms()).clamp(1, 1000) as u64),
                None => Duration::from_secs(1),
            };
            match rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    r.tick();
                    r.commit();
                    out.flush();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => Msg::Eof,
            }
        };
        flushed = false;
        match msg {
            Msg::Lines(buf, ends) => {
                let mut start = 0;
                for end in ends {
                    r.line(&buf[start..end as usize]);
                    start = end as usize + 1;
                }
            }
            Msg::TooLong(len) => {
                r.line_no += 1;
                cli::warn(
                    PROG,
                    format!(
                        "line {}: longer than {} bytes ({len}), skipped",
                        r.line_no, MAX_LINE
                    ),
                );
            }
            Msg::Eof => break,
            Msg::Err(e) => {
                cli::warn(PROG, format!("cannot read stdin: {e}"));
                r.failed = true;
                break;
            }
        }
    }
    r.commit();
    out.flush();
    if let Some(pool) = &r.pool {
        // Hooks have timeouts, so this ends.
        while !pool.wait_idle(Duration::from_secs(3600)) {}
        pool.close();
    }
    r.machine.take_dirty();
    r.save();
    out.flush();
    if let Some(t) = tmp {
        let _ = std::fs::remove_dir_all(t);
    }
    if r.failed {
        Exit::Runtime.code()
    } else {
        Exit::Ok.code()
    }
}

#[cfg(test)]
mod tests {
    use super::find_nl;

    #[test]
    fn find_nl_finds_the_first_newline_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                let mut v = vec![b'x'; len];
                // Bytes that trip naive zero-byte tricks around the target.
                for (k, b) in v.iter_mut().enumerate() {
                    *b = [b'x', 0x0b, 0x8a, 0x09, 0xff][k % 5];
                }
                let want = (at < len).then(|| {
                    v[at] = b'\n';
                    at
                });
                if at < len {
                    v[at + 1..].iter_mut().for_each(|b| *b = b'\n');
                }
                assert_eq!(find_nl(&v), want, "len {len} at {at}");
            }
        }
    }
}
