//! The probe contract and the driver that every `pup-probe-*` binary runs.
//!
//! A probe is a type implementing [`Probe`]: it names its own flags
//! (`Args`), turns one parsed argument list into checks (`prepare`), and
//! checks one target (`run`), returning an [`Outcome`]. Everything else is
//! the driver's, the same for every probe: the common flags, one-shot and
//! `--stdin` stream modes, concurrency, the whole-check deadline, timing,
//! `--degraded-over`, writing events, exit codes and a closed stdout. A
//! probe never touches stdout.
//!
//! Stream mode reads one check per line. A line is split like a shell
//! splits it and parsed by the same parser as the command line, after the
//! command line's own flags, so a line behaves exactly like the same words
//! given one-shot, and the command line's flags act as defaults for every
//! line (a line's own flag wins).

pub mod dns;
pub mod http;
pub mod redis;

use crate::cli;
use crate::event::{self, layer, Assertion, ErrorInfo, Event, Status};
use crate::ndjson::{Line, LineReader, LineWriter, MAX_LINE};
use clap::{ArgMatches, Args, Command, FromArgMatches};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How long the driver waits past a check's deadline before it reports
/// the check as overrun itself. Probes enforce the deadline on every
/// socket operation; this is the backstop for one that does not.
const GRACE: Duration = Duration::from_millis(250);

/// Address family to use when a name resolves to both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpFamily {
    #[default]
    Any,
    V4,
    V6,
}

impl IpFamily {
    /// Does `addr` belong to this family?
    pub fn admits(self, addr: &std::net::IpAddr) -> bool {
        match self {
            IpFamily::Any => true,
            IpFamily::V4 => addr.is_ipv4(),
            IpFamily::V6 => addr.is_ipv6(),
        }
    }
}

/// Why [`split_host_port`] could not split an authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPortError {
    /// `[` with no `]`.
    UnclosedBracket,
    /// Something other than `:PORT` after `]`.
    JunkAfterBracket,
}

/// Splits a URL's `host[:port]` or `[v6-address][:port]` into the host
/// (without brackets) and the port text, if any (`Some("")` for a bare
/// `:`). The probes judge the parts themselves, in their own words.
pub fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), HostPortError> {
    match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']').ok_or(HostPortError::UnclosedBracket)?;
            match after {
                "" => Ok((h, None)),
                p => p
                    .strip_prefix(':')
                    .map(|p| (h, Some(p)))
                    .ok_or(HostPortError::JunkAfterBracket),
            }
        }
        None => Ok(match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }),
    }
}

/// What a probe knows while it runs one check.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// When the check started.
    pub start: Instant,
    /// When the whole check must be over. Every wait must end by then.
    pub deadline: Instant,
    /// The whole-check timeout (`--timeout`), for messages.
    pub timeout: Duration,
    /// `-4` / `-6`.
    pub family: IpFamily,
}

impl Ctx {
    /// A context for a check starting now.
    pub fn new(timeout: Duration, family: IpFamily) -> Ctx {
        let start = Instant::now();
        Ctx {
            start,
            deadline: start + timeout,
            timeout,
            family,
        }
    }

    /// Time left until the deadline, or `None` when it has passed. Socket
    /// timeouts are set from this; `Some` is never zero, since a zero
    /// timeout means "forever" to the standard library.
    pub fn remaining(&self) -> Option<Duration> {
        let left = self.deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            None
        } else {
            Some(left)
        }
    }
}

/// What one check found. The driver adds the envelope (name, target, time,
/// tags) and writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub reason: String,
    pub error: Option<ErrorInfo>,
    pub phases: BTreeMap<String, f64>,
    pub assertions: Vec<Assertion>,
    pub fingerprint: Option<String>,
    pub details: Map<String, Value>,
}

impl Outcome {
    /// A check that passed.
    pub fn up(reason: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Up,
            reason: reason.into(),
            error: None,
            phases: BTreeMap::new(),
            assertions: Vec::new(),
            fingerprint: None,
            details: Map::new(),
        }
    }

    /// A check that did not pass, with where and how it broke.
    pub fn fail(status: Status, error: ErrorInfo, reason: impl Into<String>) -> Outcome {
        Outcome {
            status,
            error: Some(error),
            ..Outcome::up(reason)
        }
    }

    /// `down`, broken at `layer` with `kind`.
    pub fn down(layer: &str, kind: &str, reason: impl Into<String>) -> Outcome {
        Outcome::fail(Status::Down, ErrorInfo::new(layer, kind), reason)
    }

    /// Records the time a phase took, as `<name>_ms`.
    pub fn phase(&mut self, name: &str, d: Duration) {
        self.phases.insert(format!("{name}_ms"), event::ms(d));
    }

    /// Records a probe-specific fact in `details`.
    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_string(), value.into());
    }

    /// Turns this outcome into a failure, keeping what was recorded so far
    /// (phases, assertions, details). A worse status is never replaced by
    /// a milder one: the first `down` wins over a later `degraded`.
    pub fn set_failure(&mut self, status: Status, error: ErrorInfo, reason: impl Into<String>) {
        if self.status.worst(status) == self.status && self.status != Status::Up {
            return;
        }
        self.status = status;
        self.error = Some(error);
        self.reason = reason.into();
    }
}

/// The flags every probe has.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Common options")]
pub struct Common {
    /// Name of the check in events (default: the target)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Add a tag to every event (repeatable)
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = cli::parse_tag)]
    pub tags: Vec<(String, String)>,

    /// Deadline for the whole check, every phase included
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = cli::parse_duration)]
    pub timeout: Duration,

    /// Report `degraded` when an otherwise good check takes longer than this
    #[arg(long, value_name = "DUR", value_parser = cli::parse_duration)]
    pub degraded_over: Option<Duration>,

    /// Use IPv4 addresses only
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Use IPv6 addresses only
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,

    /// Read checks from stdin, one per line: a bare target or a full
    /// argument list (shell quoting); the command line's flags apply to
    /// every line, and a line's own flags win
    #[arg(long)]
    pub stdin: bool,

    /// Checks in flight at once
    #[arg(short = 'j', long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,

    /// Output: one JSON event per line, or one short human line per result
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "json")]
    pub format: Format,
}

impl Common {
    pub fn family(&self) -> IpFamily {
        if self.ipv4 {
            IpFamily::V4
        } else if self.ipv6 {
            IpFamily::V6
        } else {
            IpFamily::Any
        }
    }
}

/// `--format`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

/// The contract of one probe.
pub trait Probe: 'static {
    /// The probe's word in events (`http`), also in `pup-probe-<NAME>`.
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// Examples and notes shown after the options in `--help` and in the
    /// man page.
    const AFTER_HELP: &'static str = "";

    /// The probe's own flags and positional arguments. Positionals must be
    /// optional to clap (targets come from stdin in stream mode);
    /// [`Probe::prepare`] says when one is missing.
    type Args: Args + FromArgMatches + Send + 'static;

    /// One ready-to-run check: parsed, validated, secrets read.
    type Check: Send + Sync + 'static;

    /// Does this argument list name targets itself? (With `--stdin` the
    /// targets must come from stdin.)
    fn has_targets(args: &Self::Args) -> bool;

    /// Turns one parsed argument list into its checks, one per target.
    /// An error is a usage error: a one-line message.
    fn prepare(args: Self::Args, common: &Common) -> Result<Vec<Self::Check>, String>;

    /// The `target` field for a check.
    fn target(check: &Self::Check) -> String;

    /// Checks once. Must return by `ctx.deadline`: every wait on the
    /// network is bounded by [`Ctx::remaining`].
    fn run(check: &Self::Check, ctx: &Ctx) -> Outcome;
}

/// The full command line of probe `P`: its own flags, then the common ones.
/// The man page and shell completions are generated from this too.
pub fn command<P: Probe>() -> Command {
    let cmd = Command::new(format!("pup-probe-{}", P::NAME))
        .version(env!("CARGO_PKG_VERSION"))
        .about(P::ABOUT)
        .after_help(P::AFTER_HELP)
        // A flag given twice takes the last value: a stream line's flags
        // override the command line's.
        .args_override_self(true);
    // The derived `augment_args` sets `about` from the Args structs' doc
    // comments ("The flags every probe has"): set the probe's own last.
    Common::augment_args(P::Args::augment_args(cmd))
        .about(P::ABOUT)
        .long_about(None)
}

/// One check ready for a worker.
struct Job<P: Probe> {
    check: Arc<P::Check>,
    name: Option<String>,
    tags: BTreeMap<String, String>,
    timeout: Duration,
    degraded_over: Option<Duration>,
    family: IpFamily,
}

/// Where results go: the line writer, the output format, and the worst
/// status so far (the exit code).
struct Out {
    prog: String,
    writer: LineWriter,
    format: Format,
    worst: Mutex<Option<Status>>,
}

impl Out {
    fn emit(&self, ev: &Event) {
        let status = ev.status.unwrap_or(Status::Unknown);
        let code = {
            let mut w = self.worst.lock().unwrap_or_else(|p| p.into_inner());
            let now = w.map_or(status, |s| s.worst(status));
            *w = Some(now);
            now.exit_code()
        };
        if let Err(e) = self.writer.write_line(&self.render(ev)) {
            cli::exit_on_write_error(&self.prog, &e, code);
        }
    }

    /// An event as one output line, without the newline.
    fn render(&self, ev: &Event) -> String {
        match self.format {
            Format::Json => ev.to_line(),
            Format::Text => text_line(ev),
        }
    }

    fn exit_code(&self) -> i32 {
        let w = self.worst.lock().unwrap_or_else(|p| p.into_inner());
        w.map_or(Status::Up, |s| s).exit_code()
    }
}

/// `--format text`: `DOWN  web  3.1ms  connect_refused: …`.
pub fn text_line(ev: &Event) -> String {
    let status = ev.status.map_or("-", |s| s.as_str()).to_ascii_uppercase();
    let mut line = format!("{status:<8} {}", ev.check);
    if let Some(t) = &ev.target {
        if *t != ev.check {
            line.push_str(&format!(" ({t})"));
        }
    }
    if let Some(d) = ev.duration_ms {
        line.push_str(&format!(" {d:.1}ms"));
    }
    if let Some(e) = &ev.error {
        line.push_str(&format!(" {}:", e.kind));
    }
    if let Some(r) = &ev.reason {
        line.push(' ');
        line.push_str(r);
    }
    line
}

/// Runs probe `P` as a program: parses the command line, runs the checks,
/// prints the results, and exits with the Nagios code of the worst.
pub fn main<P: Probe>() -> ! {
    let prog = format!("pup-probe-{}", P::NAME);
    let argv: Vec<OsString> = std::env::args_os().collect();
    let matches = match command::<P>().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => usage_exit(&prog, e),
    };
    let (common, args) = match from_matches::<P>(&matches) {
        Ok(v) => v,
        Err(msg) => {
            cli::warn(&prog, msg);
            std::process::exit(Status::Unknown.exit_code());
        }
    };
    let out = Arc::new(Out {
        prog: prog.clone(),
        writer: LineWriter::new(),
        format: common.format,
        worst: Mutex::new(None),
    });
    let concurrency = common.concurrency as usize;
    if common.stdin {
        if P::has_targets(&args) {
            cli::warn(
                &prog,
                "with --stdin, targets come from stdin; remove them from the command line",
            );
            std::process::exit(Status::Unknown.exit_code());
        }
        run_stream::<P>(&argv, out.clone(), concurrency);
    } else {
        let jobs = match jobs_for::<P>(common, args) {
            Ok(j) => j,
            Err(msg) => {
                cli::warn(&prog, format!("{msg} (see --help)"));
                std::process::exit(Status::Unknown.exit_code());
            }
        };
        if jobs.len() == 1 {
            // The common case (a Nagios-style check, a cron job): no
            // worker pool and no thread to hand the result back; see
            // `run_alone`.
            let job = jobs.into_iter().next().expect("one job");
            let ev = run_alone::<P>(job, |ev| out.render(ev));
            out.emit(&ev);
        } else {
            let o = out.clone();
            let (pool, tx) =
                Pool::<P>::start(concurrency.min(jobs.len()), Box::new(move |ev| o.emit(ev)));
            for j in jobs {
                let _ = tx.send(j);
            }
            drop(tx);
            pool.wait();
        }
    }
    std::process::exit(out.exit_code());
}

/// A clap error: help and version go to stdout with exit 0; a real usage
/// error is one line on stderr and exit 3 (unknown), as a Nagios plugin
/// does, not clap's 2 (which would read as "down").
fn usage_exit(prog: &str, e: clap::Error) -> ! {
    use clap::error::ErrorKind::*;
    match e.kind() {
        DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            std::process::exit(0);
        }
        _ => {
            cli::warn(
                prog,
                format!("{} (see --help)", cli::first_line(&e.to_string())),
            );
            std::process::exit(Status::Unknown.exit_code());
        }
    }
}

fn from_matches<P: Probe>(m: &ArgMatches) -> Result<(Common, P::Args), String> {
    let common = Common::from_arg_matches(m).map_err(|e| cli::first_line(&e.to_string()))?;
    let args = P::Args::from_arg_matches(m).map_err(|e| cli::first_line(&e.to_string()))?;
    Ok((common, args))
}

fn jobs_for<P: Probe>(common: Common, args: P::Args) -> Result<Vec<Job<P>>, String> {
    let checks = P::prepare(args, &common)?;
    if checks.is_empty() {
        return Err("no target given".into());
    }
    let family = common.family();
    let tags: BTreeMap<String, String> = common.tags.into_iter().collect();
    Ok(checks
        .into_iter()
        .map(|c| Job {
            check: Arc::new(c),
            name: common.name.clone(),
            tags: tags.clone(),
            timeout: common.timeout,
            degraded_over: common.degraded_over,
            family,
        })
        .collect())
}

/// The worker pool of stream mode and of one-shot runs with several
/// targets: `n` workers, each running its checks on its own thread, and
/// one watchdog thread that keeps the deadlines of the checks in flight.
///
/// Why not a thread per check (as [`run_with_deadline`] does): in stream
/// mode that thread, and the wake-ups to hand its result back, cost more
/// CPU than a plain HTTP check. Instead, a worker registers its check in
/// its slot before running it. When a check is not back by its deadline
/// plus [`GRACE`], the watchdog takes it out of the slot, writes its
/// `timeout` result and starts a replacement worker for the slot, so that
/// `-j` checks stay in flight. Whoever takes the check out of the slot
/// (its worker when done, or the watchdog) writes its one result: a stuck
/// worker that finally returns finds its slot taken, drops its result and
/// ends.
struct Pool<P: Probe> {
    jobs: Mutex<mpsc::Receiver<Job<P>>>,
    emit: Box<dyn Fn(&Event) + Send + Sync>,
    state: Mutex<Watch<P>>,
    /// Wakes the watchdog for a deadline earlier than it sleeps until.
    wake: Condvar,
    /// Signalled when a worker ends (see [`Pool::wait`]).
    ended: Condvar,
}

struct Watch<P: Probe> {
    /// The check in flight on each worker slot.
    slots: Vec<Option<InFlight<P>>>,
    /// Workers still taking jobs (not counting abandoned ones).
    live: usize,
    next_id: u64,
    /// When the watchdog will look next; `None` while it is awake, when
    /// it looks at every slot anyway before it sleeps again.
    wake_at: Option<Instant>,
}

struct InFlight<P: Probe> {
    id: u64,
    until: Instant,
    job: Arc<Job<P>>,
    wall: SystemTime,
    ctx: Ctx,
}

/// How long the watchdog sleeps with nothing in flight. It is not woken
/// for a check whose deadline is later than that, so a worker's check
/// costs no wake-up in the common case.
const WATCH_IDLE: Duration = Duration::from_secs(1);

impl<P: Probe> Pool<P> {
    /// Starts `n` workers and the watchdog, and returns the pool and the
    /// queue to send jobs to. Dropping the sender ends the workers.
    fn start(
        n: usize,
        emit: Box<dyn Fn(&Event) + Send + Sync>,
    ) -> (Arc<Pool<P>>, mpsc::SyncSender<Job<P>>) {
        // A bounded queue: a fast stdin never piles up more than a queue's
        // worth of parsed checks in memory.
        let (tx, rx) = mpsc::sync_channel::<Job<P>>(n);
        let pool = Arc::new(Pool {
            jobs: Mutex::new(rx),
            emit,
            state: Mutex::new(Watch {
                slots: (0..n).map(|_| None).collect(),
                live: n,
                next_id: 0,
                wake_at: None,
            }),
            wake: Condvar::new(),
            ended: Condvar::new(),
        });
        for slot in 0..n {
            pool.spawn_worker(slot);
        }
        let p = pool.clone();
        if let Err(e) = thread::Builder::new().spawn(move || p.watch()) {
            cli::warn(&prog::<P>(), format!("cannot start a thread: {e}"));
            std::process::exit(Status::Unknown.exit_code());
        }
        (pool, tx)
    }

    /// Waits until every worker has ended (the sender is dropped and the
    /// queue is empty). Abandoned checks are not waited for.
    fn wait(&self) {
        let mut st = self.lock();
        while st.live > 0 {
            st = self.ended.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watch<P>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Without a thread for a worker, `-j` cannot be kept, and with none
    /// left the queue would never drain: a clear error beats a hang.
    fn spawn_worker(self: &Arc<Self>, slot: usize) {
        let p = self.clone();
        if let Err(e) = thread::Builder::new().spawn(move || p.work(slot)) {
            cli::warn(&prog::<P>(), format!("cannot start a thread: {e}"));
            std::process::exit(Status::Unknown.exit_code());
        }
    }

    fn work(&self, slot: usize) {
        loop {
            let job = {
                let rx = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
                rx.recv()
            };
            let Ok(job) = job else {
                let mut st = self.lock();
                st.live -= 1;
                self.ended.notify_all();
                return;
            };
            let job = Arc::new(job);
            let wall = SystemTime::now();
            let ctx = Ctx::new(job.timeout, job.family);
            let until = ctx.deadline + GRACE;
            let id = {
                let mut st = self.lock();
                let id = st.next_id;
                st.next_id += 1;
                st.slots[slot] = Some(InFlight {
                    id,
                    until,
                    job: job.clone(),
                    wall,
                    ctx: ctx.clone(),
                });
                if st.wake_at.is_some_and(|w| until < w) {
                    self.wake.notify_one();
                }
                id
            };
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| P::run(&job.check, &ctx)));
            let mine = {
                let mut st = self.lock();
                match &st.slots[slot] {
                    Some(f) if f.id == id => st.slots[slot].take(),
                    _ => None,
                }
            };
            if mine.is_none() {
                // The watchdog wrote this check's timeout and gave the
                // slot to a new worker.
                return;
            }
            let outcome = r.unwrap_or_else(|p| panicked(&*p));
            (self.emit)(&result_event(&job, wall, &ctx, outcome));
        }
    }

    /// The watchdog: writes the result of each check that overruns its
    /// deadline plus [`GRACE`] and replaces its worker.
    fn watch(self: Arc<Self>) {
        let mut st = self.lock();
        loop {
            let now = Instant::now();
            let mut late = Vec::new();
            let mut next = now + WATCH_IDLE;
            for (slot, f) in st.slots.iter_mut().enumerate() {
                match f {
                    Some(x) if x.until <= now => late.push((slot, f.take().expect("some"))),
                    Some(x) => next = next.min(x.until),
                    None => {}
                }
            }
            if late.is_empty() {
                st.wake_at = Some(next);
                st = self
                    .wake
                    .wait_timeout(st, next - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                st.wake_at = None;
                continue;
            }
            drop(st);
            for (slot, f) in late {
                (self.emit)(&result_event(
                    &f.job,
                    f.wall,
                    &f.ctx,
                    overrun_outcome(&f.ctx),
                ));
                self.spawn_worker(slot);
            }
            st = self.lock();
        }
    }
}

fn prog<P: Probe>() -> String {
    format!("pup-probe-{}", P::NAME)
}

/// Runs one check under its deadline, on a thread of its own, and wraps
/// the outcome in an event: [`run_alone`]'s way out when it cannot set its
/// timer. Workers of a [`Pool`] run checks on their own thread instead.
fn run_job<P: Probe>(job: Job<P>) -> Event {
    let wall = SystemTime::now();
    let ctx = Ctx::new(job.timeout, job.family);
    let outcome = run_with_deadline::<P>(&job.check, &ctx);
    result_event(&job, wall, &ctx, outcome)
}

/// The result event of `job`, started at `wall`, now that `outcome` is in.
fn result_event<P: Probe>(job: &Job<P>, wall: SystemTime, ctx: &Ctx, outcome: Outcome) -> Event {
    let elapsed = ctx.start.elapsed();
    let target = P::target(&job.check);
    let mut ev = Event::new("result", job.name.as_deref().unwrap_or(&target));
    ev.ts = event::format_ts(wall);
    ev.probe = Some(P::NAME.to_string());
    ev.target = Some(target);
    ev.duration_ms = Some(event::ms(elapsed));
    ev.tags = job.tags.clone();
    apply_outcome(&mut ev, outcome, elapsed, job.degraded_over);
    ev
}

/// One-shot with a single target: runs the check on the calling thread,
/// as [`run_job`] would on a worker, and returns its event, rendered by
/// `render` if it has to be written by the backstop.
///
/// Why not [`run_job`]: its check runs on a thread of its own, and every
/// extra thread costs a one-shot run dearly on a busy machine: the result
/// must wake the waiting thread, and the process cannot finish exiting
/// until each of its threads has been given a core to die on. Even a
/// watchdog thread that only slept cost one-shot `pup-probe-http` 5.8 ms
/// against 4.1 ms without it (check_http: 4.0) under a load of 6 on 2
/// cores.
///
/// The deadline backstop is the same, without a thread: a one-shot
/// `ITIMER_REAL` timer fires at the deadline plus [`GRACE`], and its
/// SIGALRM handler writes the overrun result, rendered beforehand, and
/// ends the process with `down`'s exit code, as the driver would. The
/// handler only calls `write` and `_exit`, which are async-signal-safe.
/// If the timer cannot be set up, the check runs as [`run_job`] does.
fn run_alone<P: Probe>(job: Job<P>, render: impl Fn(&Event) -> String) -> Event {
    let wall = SystemTime::now();
    let ctx = Ctx::new(job.timeout, job.family);
    // The overrun result as the backstop would write it: its duration is
    // when the timer fires.
    let mut late = result_event(&job, wall, &ctx, overrun_outcome(&ctx));
    let at = job.timeout + GRACE;
    late.duration_ms = Some(event::ms(at));
    let mut line = render(&late).into_bytes();
    line.push(b'\n');
    if !alarm::arm(line, at.saturating_sub(ctx.start.elapsed())) {
        return run_job(job);
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| P::run(&job.check, &ctx)));
    // Past this, the overrun result cannot be written: this one will be.
    // Unless the handler got there first (the signal may land on another
    // thread at the very moment the check returns): then it is writing the
    // overrun line and ends the process, and this result must not follow.
    if !alarm::disarm() {
        loop {
            std::thread::park();
        }
    }
    let outcome = r.unwrap_or_else(|p| panicked(&*p));
    result_event(&job, wall, &ctx, outcome)
}

/// The SIGALRM backstop of [`run_alone`].
mod alarm {
    use super::Status;
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
    use std::time::Duration;

    /// The line the handler writes (leaked: it lives until exit).
    static LINE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
    static LEN: AtomicUsize = AtomicUsize::new(0);
    /// Set by whichever writes the result first: the check's own thread
    /// (in [`disarm`]) or the handler. Exactly one result line, ever.
    static CLAIMED: AtomicBool = AtomicBool::new(false);

    /// Installs the handler and starts the timer; `false` if either fails.
    pub fn arm(line: Vec<u8>, after: Duration) -> bool {
        let line = Box::leak(line.into_boxed_slice());
        LEN.store(line.len(), Ordering::SeqCst);
        LINE.store(line.as_mut_ptr(), Ordering::SeqCst);
        CLAIMED.store(false, Ordering::SeqCst);
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
        // handler is an `extern "C" fn(c_int)`, as sa_handler requires.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_alarm as *const () as libc::sighandler_t;
            if libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()) != 0 {
                return false;
            }
        }
        // Never zero: a zero it_value disarms the timer instead.
        let after = after.max(Duration::from_micros(1));
        set_timer(libc::timeval {
            tv_sec: after.as_secs() as libc::time_t,
            tv_usec: after.subsec_micros() as libc::suseconds_t,
        })
    }

    /// Stops the timer and claims the result for the check's own line:
    /// `false` when the handler claimed it first (it is writing the
    /// overrun line and will end the process).
    pub fn disarm() -> bool {
        set_timer(libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        });
        !CLAIMED.swap(true, Ordering::SeqCst)
    }

    fn set_timer(value: libc::timeval) -> bool {
        let t = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: value,
        };
        // SAFETY: plain syscall on valid pointers.
        unsafe { libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut()) == 0 }
    }

    extern "C" fn on_alarm(_: libc::c_int) {
        // An atomic swap is async-signal-safe. Lost: the check returned
        // in time and its own result is being written.
        if CLAIMED.swap(true, Ordering::SeqCst) {
            return;
        }
        let (mut p, mut left) = (LINE.load(Ordering::SeqCst), LEN.load(Ordering::SeqCst));
        let mut code = Status::Down.exit_code();
        while left > 0 {
            // SAFETY: `p..p+left` lies in the leaked line; write(2) and
            // _exit(2) are async-signal-safe.
            let n = unsafe { libc::write(1, p as *const libc::c_void, left) };
            if n < 0 {
                let e = std::io::Error::last_os_error().raw_os_error();
                if e == Some(libc::EINTR) {
                    continue;
                }
                // A closed stdout ends the tool quietly, as in the driver.
                if e != Some(libc::EPIPE) {
                    code = 1;
                }
                break;
            }
            // SAFETY: n <= left.
            p = unsafe { p.add(n as usize) };
            left -= n as usize;
        }
        // SAFETY: ends the process without running anything else.
        unsafe { libc::_exit(code) }
    }
}

/// Fills a result event from an outcome, applying `--degraded-over`.
fn apply_outcome(ev: &mut Event, mut o: Outcome, elapsed: Duration, slow: Option<Duration>) {
    if let Some(limit) = slow {
        let ok = elapsed <= limit;
        o.assertions.push(Assertion::new(
            "duration",
            format!("<= {}", cli::format_duration(limit)),
            format!("{:.1}ms", event::ms(elapsed)),
            ok,
        ));
        if !ok && o.status == Status::Up {
            o.status = Status::Degraded;
            o.error = Some(ErrorInfo::new(layer::TIMING, "slow"));
            o.reason = format!(
                "slow: took {:.1}ms, over {} ({})",
                event::ms(elapsed),
                cli::format_duration(limit),
                o.reason
            );
        }
    }
    ev.status = Some(o.status);
    ev.reason = Some(o.reason);
    ev.error = o.error;
    ev.phases = o.phases;
    ev.assertions = o.assertions;
    ev.fingerprint = o.fingerprint;
    ev.details = o.details;
}

/// Runs `P::run` on its own thread and waits no longer than the deadline
/// plus [`GRACE`]. A probe that overruns is reported as a timeout and
/// left behind (its thread ends when its own socket timeouts fire); a
/// probe that panics is an `unknown` result, not a dead process.
fn run_with_deadline<P: Probe>(check: &Arc<P::Check>, ctx: &Ctx) -> Outcome {
    let (tx, rx) = mpsc::sync_channel(1);
    let (c, cx) = (check.clone(), ctx.clone());
    let spawned = thread::Builder::new().spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| P::run(&c, &cx)));
        let _ = tx.send(r);
    });
    if let Err(e) = spawned {
        return no_thread(e);
    }
    let wait = (ctx.deadline + GRACE).saturating_duration_since(Instant::now());
    match rx.recv_timeout(wait) {
        Ok(Ok(o)) => o,
        Ok(Err(panic)) => panicked(&*panic),
        Err(_) => overrun_outcome(ctx),
    }
}

/// The outcome of a check that could not be started on its own thread.
fn no_thread(e: std::io::Error) -> Outcome {
    Outcome::fail(
        Status::Unknown,
        ErrorInfo::new(layer::INTERNAL, "internal_error"),
        format!("cannot start a thread for the check: {e}"),
    )
}

/// The outcome of a probe that panicked.
fn panicked(panic: &(dyn std::any::Any + Send)) -> Outcome {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into());
    Outcome::fail(
        Status::Unknown,
        ErrorInfo::new(layer::INTERNAL, "internal_error"),
        format!("internal error in the probe: {msg}"),
    )
}

/// The outcome of a check not back by its deadline plus [`GRACE`].
fn overrun_outcome(ctx: &Ctx) -> Outcome {
    Outcome::fail(
        Status::Down,
        ErrorInfo::new(layer::TIMING, "timeout"),
        format!(
            "no result within the {} deadline",
            cli::format_duration(ctx.timeout)
        ),
    )
}

/// Stream mode: one check (or a bad-line result) per stdin line.
fn run_stream<P: Probe>(argv: &[OsString], out: Arc<Out>, concurrency: usize) {
    let o = out.clone();
    let (pool, tx) = Pool::<P>::start(concurrency, Box::new(move |ev| o.emit(ev)));
    let stdin = std::io::stdin();
    let mut reader = LineReader::new(stdin.lock(), MAX_LINE);
    let mut cmd = command::<P>();
    loop {
        let line_no = reader.line_no + 1;
        let line = match reader.next_line() {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                cli::warn(&out.prog, format!("cannot read stdin: {e}"));
                break;
            }
        };
        let result = match line {
            Line::Text(text) => {
                let t = text.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                parse_line::<P>(&mut cmd, argv, t).map_err(|m| (t.to_string(), m))
            }
            Line::TooLong { len } => Err((
                String::new(),
                format!("line is {len} bytes, over the {MAX_LINE}-byte cap"),
            )),
            Line::NotUtf8 => Err((String::new(), "line is not UTF-8".to_string())),
        };
        match result {
            Ok(jobs) => {
                for j in jobs {
                    if tx.send(j).is_err() {
                        break;
                    }
                }
            }
            Err((text, msg)) => out.emit(&bad_line_event(P::NAME, line_no, &text, &msg)),
        }
    }
    drop(tx);
    pool.wait();
}

/// Parses one stdin line as the command line's words followed by the
/// line's own, with `cmd`, the probe's [`command`] built once for the
/// whole stream: building it anew for each line cost about a tenth of
/// stream mode's CPU.
fn parse_line<P: Probe>(
    cmd: &mut Command,
    argv: &[OsString],
    line: &str,
) -> Result<Vec<Job<P>>, String> {
    let words = crate::shell::split(line).map_err(|e| e.to_string())?;
    let all = argv
        .iter()
        .cloned()
        .chain(words.into_iter().map(OsString::from));
    let m = cmd
        .try_get_matches_from_mut(all)
        .map_err(|e| cli::first_line(&e.to_string()))?;
    let (common, args) = from_matches::<P>(&m)?;
    jobs_for::<P>(common, args)
}

/// The `unknown` result for a stdin line that names no runnable check.
pub fn bad_line_event(probe: &str, line_no: u64, text: &str, msg: &str) -> Event {
    let mut ev = Event::new("result", &format!("stdin:{line_no}"));
    ev.probe = Some(probe.to_string());
    let mut shown: String = text.chars().take(200).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    ev.target = Some(shown);
    ev.status = Some(Status::Unknown);
    ev.duration_ms = Some(0.0);
    ev.reason = Some(format!("stdin line {line_no}: {msg}"));
    ev.error = Some(ErrorInfo::new(layer::INPUT, "bad_input"));
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe for testing the driver's own logic (deadline, panics,
    /// degraded-over); every real probe is tested against a real server.
    struct Sleepy;
    #[derive(Args, Debug)]
    struct SleepyArgs {
        /// Milliseconds to sleep, or "panic"
        targets: Vec<String>,
    }
    impl Probe for Sleepy {
        const NAME: &'static str = "sleepy";
        const ABOUT: &'static str = "test";
        type Args = SleepyArgs;
        type Check = String;
        fn has_targets(a: &SleepyArgs) -> bool {
            !a.targets.is_empty()
        }
        fn prepare(a: SleepyArgs, _: &Common) -> Result<Vec<String>, String> {
            Ok(a.targets)
        }
        fn target(c: &String) -> String {
            c.clone()
        }
        fn run(c: &String, _: &Ctx) -> Outcome {
            if c == "panic" {
                panic!("boom");
            }
            thread::sleep(Duration::from_millis(c.parse().unwrap()));
            Outcome::up("slept")
        }
    }

    fn job(target: &str, timeout_ms: u64, slow_ms: Option<u64>) -> Job<Sleepy> {
        Job {
            check: Arc::new(target.to_string()),
            name: None,
            tags: BTreeMap::new(),
            timeout: Duration::from_millis(timeout_ms),
            degraded_over: slow_ms.map(Duration::from_millis),
            family: IpFamily::Any,
        }
    }

    #[test]
    fn an_overrunning_probe_is_cut_off_at_the_deadline() {
        let t = Instant::now();
        let ev = run_job(job("5000", 100, None));
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(ev.status, Some(Status::Down));
        assert_eq!(ev.error.unwrap().kind, "timeout");
    }

    #[test]
    fn a_panicking_probe_is_unknown_not_a_crash() {
        let ev = run_job(job("panic", 1000, None));
        assert_eq!(ev.status, Some(Status::Unknown));
        assert!(ev.reason.unwrap().contains("boom"));
    }

    /// `run_alone` (one-shot, one target) keeps `run_job`'s guarantees:
    /// a panic is `unknown`, `--degraded-over` applies, and an overrun is
    /// cut off at the deadline (in a child process: the backstop ends the
    /// process it runs in).
    #[test]
    fn a_lone_check_has_the_same_deadline_and_panic_safety() {
        let ev = run_alone(job("panic", 1000, None), |e| e.to_line());
        assert_eq!(ev.status, Some(Status::Unknown));
        assert!(ev.reason.unwrap().contains("boom"));

        let ev = run_alone(job("30", 1000, Some(5)), |e| e.to_line());
        assert_eq!(ev.status, Some(Status::Degraded));
        assert_eq!(ev.check, "30");
        assert_eq!(ev.target.as_deref(), Some("30"));
        assert!(ev.duration_ms.unwrap() >= 30.0);

        let t = Instant::now();
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "probe::tests::lone_overrun_child", "--nocapture"])
            .env(LONE_CHILD, "1")
            .output()
            .unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(2500),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(child.status.code(), Some(2), "{child:?}");
        let stdout = String::from_utf8_lossy(&child.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no event in {stdout:?}"));
        let ev: Event = serde_json::from_str(line).unwrap();
        assert_eq!(ev.status, Some(Status::Down));
        assert_eq!(ev.error.unwrap().kind, "timeout");
        assert_eq!(ev.target.as_deref(), Some("5000"));
        assert_eq!(ev.duration_ms, Some(350.0), "100ms deadline + 250ms grace");
        assert!(!stdout.contains("no overrun"), "{stdout}");
    }

    const LONE_CHILD: &str = "PUP_TEST_LONE_OVERRUN_CHILD";

    /// The child process of the test above (does nothing on its own): a
    /// 5 s check with a 100 ms deadline, which the backstop must end.
    #[test]
    fn lone_overrun_child() {
        if std::env::var_os(LONE_CHILD).is_some() {
            run_alone(job("5000", 100, None), |e| e.to_line());
            println!("no overrun");
        }
    }

    #[test]
    fn host_and_port_split_with_and_without_brackets() {
        use HostPortError::*;
        type Split = Result<(&'static str, Option<&'static str>), HostPortError>;
        let cases: &[(&str, Split)] = &[
            ("h", Ok(("h", None))),
            ("h:80", Ok(("h", Some("80")))),
            ("h:", Ok(("h", Some("")))),
            ("[::1]", Ok(("::1", None))),
            ("[::1]:8080", Ok(("::1", Some("8080")))),
            ("[::1]:", Ok(("::1", Some("")))),
            ("[::1", Err(UnclosedBracket)),
            ("[::1]x", Err(JunkAfterBracket)),
        ];
        for (a, want) in cases {
            assert_eq!(split_host_port(a), *want, "{a}");
        }
    }

    #[test]
    fn degraded_over_marks_slow_checks_and_records_the_assertion() {
        let ev = run_job(job("30", 1000, Some(5)));
        assert_eq!(ev.status, Some(Status::Degraded));
        assert_eq!(ev.error.unwrap().kind, "slow");
        assert!(!ev.assertions[0].ok);
        let ev = run_job(job("0", 1000, Some(5000)));
        assert_eq!(ev.status, Some(Status::Up));
        assert!(ev.assertions[0].ok);
    }

    type Got = Vec<(Event, Duration)>;

    /// Runs `jobs` on a pool of `n` workers; returns the results as they
    /// came, each with when it came, and the list they go on arriving in
    /// (for results that come after the pool is done).
    fn pool_run(n: usize, jobs: Vec<Job<Sleepy>>) -> (Vec<(Event, Duration)>, Arc<Mutex<Got>>) {
        let t = Instant::now();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let (pool, tx) = Pool::<Sleepy>::start(
            n,
            Box::new(move |ev| g.lock().unwrap().push((ev.clone(), t.elapsed()))),
        );
        for j in jobs {
            tx.send(j).unwrap();
        }
        drop(tx);
        pool.wait();
        let now = got.lock().unwrap().clone();
        (now, got)
    }

    fn pool_one(j: Job<Sleepy>) -> (Event, Duration) {
        let (mut evs, _) = pool_run(1, vec![j]);
        assert_eq!(evs.len(), 1, "{evs:?}");
        evs.remove(0)
    }

    #[test]
    fn a_pool_cuts_an_overrun_off_at_the_deadline_and_survives_panics() {
        let (ev, at) = pool_one(job("5000", 100, None));
        assert!(at >= Duration::from_millis(350), "{at:?}");
        assert!(at < Duration::from_millis(1000), "{at:?}");
        assert_eq!(ev.status, Some(Status::Down));
        let e = ev.error.unwrap();
        assert_eq!(
            (e.layer.as_str(), e.kind.as_str()),
            (layer::TIMING, "timeout")
        );
        assert_eq!(
            ev.reason.as_deref(),
            Some("no result within the 100ms deadline")
        );
        assert_eq!(ev.target.as_deref(), Some("5000"));

        // A panic is `unknown`, and the worker carries on with the next.
        let (evs, _) = pool_run(1, vec![job("panic", 1000, None), job("0", 1000, None)]);
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert_eq!(evs[0].0.status, Some(Status::Unknown));
        assert!(evs[0].0.reason.as_ref().unwrap().contains("boom"));
        assert_eq!(evs[0].0.error.as_ref().unwrap().kind, "internal_error");
        assert_eq!(evs[1].0.status, Some(Status::Up));

        let (ev, _) = pool_one(job("30", 1000, Some(5)));
        assert_eq!(ev.status, Some(Status::Degraded));
        assert_eq!(ev.error.unwrap().kind, "slow");
        assert!(!ev.assertions[0].ok);
        let (ev, _) = pool_one(job("0", 1000, Some(5000)));
        assert_eq!(ev.status, Some(Status::Up));
        assert!(ev.assertions[0].ok);
    }

    /// With -j 2 and both workers stuck past their deadline, the
    /// replacements run the other checks: they are not held up for the
    /// stuck checks' 5 s.
    #[test]
    fn a_stuck_check_does_not_reduce_concurrency() {
        let mut jobs = vec![job("5000", 100, None), job("5000", 100, None)];
        jobs.extend((0..6).map(|_| job("20", 2000, None)));
        let t = Instant::now();
        let (evs, _) = pool_run(2, jobs);
        assert!(
            t.elapsed() < Duration::from_millis(2000),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(evs.len(), 8, "{evs:?}");
        let down = evs
            .iter()
            .filter(|(e, _)| e.status == Some(Status::Down))
            .count();
        let up = evs
            .iter()
            .filter(|(e, _)| e.status == Some(Status::Up))
            .count();
        assert_eq!((down, up), (2, 6), "{evs:?}");
    }

    /// A stuck check that finally returns writes nothing: its timeout was
    /// its one result.
    #[test]
    fn exactly_one_result_per_check_when_a_stuck_check_returns() {
        let (evs, got) = pool_run(2, vec![job("700", 100, None), job("0", 1000, None)]);
        assert_eq!(evs.len(), 2, "{evs:?}");
        thread::sleep(Duration::from_millis(1000)); // the stuck check is back
        let all = got.lock().unwrap().clone();
        assert_eq!(all.len(), 2, "{all:?}");
        let stuck: Vec<_> = all.iter().filter(|(e, _)| e.check == "700").collect();
        assert_eq!(stuck.len(), 1, "{all:?}");
        assert_eq!(stuck[0].0.error.as_ref().unwrap().kind, "timeout");
    }

    #[test]
    fn a_stream_line_overrides_the_command_line_flags() {
        let argv: Vec<OsString> = [
            "pup-probe-sleepy",
            "--stdin",
            "--timeout",
            "3s",
            "--tag",
            "a=1",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let mut cmd = command::<Sleepy>();
        let jobs =
            parse_line::<Sleepy>(&mut cmd, &argv, "5 --timeout 1s --tag 'b=two words'").unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].timeout, Duration::from_secs(1));
        assert_eq!(jobs[0].tags["a"], "1");
        assert_eq!(jobs[0].tags["b"], "two words");
        let err = parse_line::<Sleepy>(&mut cmd, &argv, "5 --bogus")
            .err()
            .unwrap();
        assert!(err.contains("--bogus"), "{err}");
        let err = parse_line::<Sleepy>(&mut cmd, &argv, "5 'open")
            .err()
            .unwrap();
        assert_eq!(err, "column 3: unterminated single quote");
    }
}
