//! The scheduler loop. One thread owns all state (checks, the queue of
//! due times, runs in flight, probe pools) and never blocks on anything
//! but its message queue with a timeout; commands run on threads of their
//! own, long-lived probes are fed by writer threads, and one writer
//! thread owns stdout, so a slow reader, a slow probe or a slow command
//! cannot stall the schedule.
//!
//! Timing: a check's runs fall on `offset + k × interval` in Unix time
//! (offset from [`super::offset`]), so they are spread over the interval
//! and do not move across restarts. While a check fails and has `retry=`,
//! runs follow `retry` from the failing run; when it is up again it
//! returns to its own slots.

use super::config::{self, CheckDef};
use super::exec::{self, Group};
use super::pool::Pool;
use super::{offset, Opts, PROG};
use crate::cli::{self, Exit};
use crate::event::{self, layer, ErrorInfo, Event, Status};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the loop sleeps at most, so that signal flags are seen soon.
const TICK: Duration = Duration::from_millis(50);

/// The loop wakes at most once per this long: under load, every wake-up
/// starts all checks due by then and handles all results that came in, in
/// one batch, instead of one thread wake-up per check and per result
/// (which cost more CPU than the rest of the scheduling). It bounds the
/// lag this adds; an idle scheduler still wakes exactly at the due time.
const QUANTUM: Duration = Duration::from_millis(10);

/// A stream probe gets this long past a check's timeout before pup-sched
/// gives up on the result (the driver's own backstop is 250 ms).
const STREAM_GRACE: Duration = Duration::from_secs(1);

/// Bytes of events queued for stdout before new ones are dropped (and
/// counted in heartbeats) rather than stalling the schedule on a stuck
/// reader.
const OUT_QUEUE_BYTES: usize = 16 << 20;

/// Bytes handed to the stdout writer and not yet written.
static OUT_QUEUED: AtomicUsize = AtomicUsize::new(0);

static HUP: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomic stores: async-signal-safe.
    if sig == libc::SIGHUP {
        HUP.store(true, Ordering::SeqCst);
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
}

fn install_signals() {
    for sig in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a plain sigaction with a handler that only stores
        // atomics; SA_RESTART keeps reads and writes going.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// What the other threads tell the scheduler.
pub enum Msg {
    /// A one-process run finished.
    Done { run: u64, events: Vec<Event> },
    /// A long-lived probe printed an event.
    PoolEvent {
        pool: usize,
        gen: u64,
        ev: Box<Event>,
    },
    /// A long-lived probe's output ended.
    PoolDied { pool: usize, gen: u64, why: String },
}

/// One check's scheduling state.
struct State {
    def: Arc<CheckDef>,
    /// The slot (unjittered due time) of the next run, and its planned
    /// start (slot + jitter).
    next_slot: Instant,
    next_start: Instant,
    /// Bumped when the next run is re-planned; older queue entries are
    /// stale.
    gen: u64,
    running: Option<u64>,
    /// Runs skipped since the last result, because the check was still
    /// running.
    skipped: u64,
    failing: bool,
}

struct InFlight {
    def: Arc<CheckDef>,
    slot: Instant,
    scheduled_at: SystemTime,
    lag: Duration,
    skipped: u64,
    started: SystemTime,
    /// For stream runs: the pool and the line it was sent as.
    pool: Option<(usize, u64)>,
    /// For one-process runs: its process group.
    group: Option<Group>,
}

/// Maps monotonic instants to Unix time, fixed at start, so slots are
/// computed on the wall clock but kept on the monotonic one.
struct Clock {
    base: Instant,
    base_unix_us: u128,
}

impl Clock {
    fn new() -> Clock {
        let now = SystemTime::now();
        Clock {
            base: Instant::now(),
            base_unix_us: now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros(),
        }
    }
    fn unix_us(&self, t: Instant) -> u128 {
        self.base_unix_us + t.saturating_duration_since(self.base).as_micros()
    }
    fn instant(&self, unix_us: u128) -> Instant {
        self.base + Duration::from_micros((unix_us.saturating_sub(self.base_unix_us)) as u64)
    }
    fn wall(&self, t: Instant) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.unix_us(t) as u64)
    }
    /// The first slot of `def` at or after `t`.
    fn slot_at_or_after(&self, def: &CheckDef, t: Instant) -> Instant {
        let iv = def.interval.as_micros().max(1);
        let off = offset(&def.name, def.interval).as_micros();
        let now = self.unix_us(t);
        let k = (now.saturating_sub(off)).div_ceil(iv);
        let mut s = k * iv + off;
        if s < now {
            s += iv;
        }
        self.instant(s)
    }
}

/// A small xorshift generator for jitter: no crate needed for spreading
/// start times.
struct Rng(u64);
impl Rng {
    fn below(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let us = d.as_micros().max(1) as u64;
        Duration::from_micros(self.0 % us)
    }
}

struct Sched {
    opts: Opts,
    path: PathBuf,
    clock: Clock,
    rng: Rng,
    checks: Vec<State>,
    index: HashMap<String, usize>,
    queue: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    inflight: HashMap<u64, InFlight>,
    /// When to stop waiting for a stream run's result.
    give_up: BinaryHeap<Reverse<(Instant, u64)>>,
    next_run: u64,
    pools: Vec<Pool>,
    pool_index: HashMap<String, usize>,
    tx: Sender<Msg>,
    out: Sender<String>,
    /// Event lines of this pass, handed to the writer in one go.
    out_batch: String,
    out_batch_n: u64,
    // Counters for heartbeats.
    started: u64,
    skipped: u64,
    lag_max: Duration,
    dropped: u64,
    late: u64,
}

/// Runs the scheduler until SIGTERM/SIGINT or a closed stdout.
pub fn run(path: PathBuf, checks: Vec<CheckDef>, opts: Opts) -> i32 {
    install_signals();
    let (tx, rx) = mpsc::channel();
    let (out, out_rx) = mpsc::channel::<String>();
    let writer = std::thread::spawn(move || write_stdout(out_rx));
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
        ^ u64::from(std::process::id());
    let mut s = Sched {
        opts,
        path,
        clock: Clock::new(),
        rng: Rng(seed | 1),
        checks: Vec::new(),
        index: HashMap::new(),
        queue: BinaryHeap::new(),
        inflight: HashMap::new(),
        give_up: BinaryHeap::new(),
        next_run: 0,
        pools: Vec::new(),
        pool_index: HashMap::new(),
        tx,
        out,
        out_batch: String::new(),
        out_batch_n: 0,
        started: 0,
        skipped: 0,
        lag_max: Duration::ZERO,
        dropped: 0,
        late: 0,
    };
    s.install(checks);
    let code = s.main_loop(&rx);
    drop(s);
    let _ = writer.join();
    code
}

/// The only writer of stdout: whole lines, flushed when the queue is
/// empty (one write per burst).
fn write_stdout(rx: Receiver<String>) {
    let so = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, so.lock());
    while let Ok(first) = rx.recv() {
        let mut r = w.write_all(first.as_bytes());
        OUT_QUEUED.fetch_sub(first.len(), Ordering::SeqCst);
        while r.is_ok() {
            match rx.try_recv() {
                Ok(more) => {
                    r = w.write_all(more.as_bytes());
                    OUT_QUEUED.fetch_sub(more.len(), Ordering::SeqCst);
                }
                Err(_) => break,
            }
        }
        if let Err(e) = r.and_then(|_| w.flush()) {
            if !cli::is_broken_pipe(&e) {
                cli::warn(PROG, format!("cannot write to stdout: {e}"));
            }
            STDOUT_GONE.store(true, Ordering::SeqCst);
            return;
        }
    }
}

impl Sched {
    fn emit(&mut self, ev: &Event) {
        self.out_batch.push_str(&ev.to_line());
        self.out_batch.push('\n');
        self.out_batch_n += 1;
    }

    /// Hands this pass's events to the writer and its lines to each probe:
    /// one wake-up of each thread per pass.
    fn flush(&mut self) {
        for p in &mut self.pools {
            p.flush();
        }
        if self.out_batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.out_batch);
        let n = std::mem::take(&mut self.out_batch_n);
        if OUT_QUEUED.load(Ordering::SeqCst) + batch.len() > OUT_QUEUE_BYTES {
            self.dropped += n;
            return;
        }
        OUT_QUEUED.fetch_add(batch.len(), Ordering::SeqCst);
        if self.out.send(batch).is_err() {
            STDOUT_GONE.store(true, Ordering::SeqCst);
        }
    }

    /// Replaces the set of checks; unchanged ones keep their state.
    fn install(&mut self, defs: Vec<CheckDef>) {
        let now = Instant::now();
        let mut old: HashMap<String, State> = self
            .checks
            .drain(..)
            .map(|s| (s.def.name.clone(), s))
            .collect();
        self.index.clear();
        self.queue.clear();
        for def in defs {
            let state = match old.remove(&def.name) {
                Some(s) if s.def.same_as(&def) => s,
                prev => {
                    let def = Arc::new(def);
                    let slot = self.clock.slot_at_or_after(&def, now);
                    let start = slot + def.jitter.map_or(Duration::ZERO, |j| self.rng.below(j));
                    State {
                        def,
                        next_slot: slot,
                        next_start: start,
                        gen: 0,
                        // A changed check's run in flight still ends as
                        // the old definition; it must not overlap.
                        running: prev.as_ref().and_then(|p| p.running),
                        skipped: 0,
                        failing: prev.is_some_and(|p| p.failing),
                    }
                }
            };
            let i = self.checks.len();
            self.index.insert(state.def.name.clone(), i);
            self.queue.push(Reverse((state.next_start, i, state.gen)));
            self.checks.push(state);
        }
    }

    fn main_loop(&mut self, rx: &Receiver<Msg>) -> i32 {
        let mut next_hb = Instant::now();
        loop {
            if STDOUT_GONE.load(Ordering::SeqCst) {
                self.kill_all();
                return Exit::Ok.code();
            }
            if STOP.load(Ordering::SeqCst) {
                return self.drain(rx);
            }
            if HUP.swap(false, Ordering::SeqCst) {
                self.reload();
            }
            let now = Instant::now();
            while let Some(&Reverse((at, i, gen))) = self.queue.peek() {
                if at > now {
                    break;
                }
                self.queue.pop();
                if self.checks.get(i).is_some_and(|s| s.gen == gen) {
                    self.fire(i, now);
                }
            }
            if now >= next_hb {
                self.heartbeat();
                next_hb += self.opts.heartbeat;
                if next_hb <= now {
                    next_hb = now + self.opts.heartbeat;
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(m) => self.handle(m),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Exit::Runtime.code(),
                }
            }
            self.give_up_late(now);
            let mut until = (now + TICK).min(next_hb);
            if let Some(Reverse((at, _, _))) = self.queue.peek() {
                until = until.min(*at);
            }
            if let Some(Reverse((at, _))) = self.give_up.peek() {
                until = until.min(*at);
            }
            self.flush();
            let until = until.max(now + QUANTUM);
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
    }

    /// Starts check `i` if it is not running, and plans its next run.
    fn fire(&mut self, i: usize, now: Instant) {
        let st = &mut self.checks[i];
        let def = st.def.clone();
        let slot = st.next_slot;
        let planned = st.next_start;
        let mut next = match (st.failing, def.retry) {
            (true, Some(r)) => slot + r,
            _ => self
                .clock
                .slot_at_or_after(&def, slot + Duration::from_micros(1)),
        };
        if next <= now {
            // Fell behind by more than an interval (a stopped process):
            // resume at the next slot rather than run a burst.
            next = self
                .clock
                .slot_at_or_after(&def, now + Duration::from_micros(1));
        }
        st.next_slot = next;
        st.next_start = next + def.jitter.map_or(Duration::ZERO, |j| self.rng.below(j));
        self.queue.push(Reverse((st.next_start, i, st.gen)));
        if st.running.is_some() {
            st.skipped += 1;
            self.skipped += 1;
            return;
        }
        let run = self.next_run;
        self.next_run += 1;
        st.running = Some(run);
        let skipped = std::mem::take(&mut st.skipped);
        // Measured now, not at the start of the pass: this is when the
        // command is handed over.
        let lag = Instant::now().saturating_duration_since(planned);
        self.lag_max = self.lag_max.max(lag);
        self.started += 1;
        let mut fl = InFlight {
            def: def.clone(),
            slot,
            scheduled_at: self.clock.wall(planned),
            lag,
            skipped,
            started: SystemTime::now(),
            pool: None,
            group: None,
        };
        if self.opts.stream && def.is_stream_probe() {
            let p = self.pool_for(&def.command[0]);
            let pool = &mut self.pools[p];
            let sent = pool
                .ensure(self.opts.probe_jobs, &self.tx)
                .and_then(|_| pool.send(&def, run));
            match sent {
                Ok(line) => {
                    fl.pool = Some((p, line));
                    self.give_up
                        .push(Reverse((now + def.timeout + STREAM_GRACE, run)));
                    self.inflight.insert(run, fl);
                }
                Err(why) => {
                    let ev = exec::synthetic(
                        &def,
                        fl.started,
                        Duration::ZERO,
                        Status::Unknown,
                        ErrorInfo::new(layer::INTERNAL, "exec_failed"),
                        why,
                    );
                    self.inflight.insert(run, fl);
                    self.finish(run, vec![ev]);
                }
            }
            return;
        }
        let group: Group = Arc::new(Mutex::new(None));
        fl.group = Some(group.clone());
        self.inflight.insert(run, fl);
        let tx = self.tx.clone();
        let max = self.opts.max_output;
        let spawned = std::thread::Builder::new().spawn(move || {
            let events = exec::run_once(&def, max, &group);
            let _ = tx.send(Msg::Done { run, events });
        });
        if let Err(e) = spawned {
            let def = self.inflight[&run].def.clone();
            let ev = exec::synthetic(
                &def,
                SystemTime::now(),
                Duration::ZERO,
                Status::Unknown,
                ErrorInfo::new(layer::INTERNAL, "exec_failed"),
                format!("cannot start a thread for the check: {e}"),
            );
            self.finish(run, vec![ev]);
        }
    }

    fn pool_for(&mut self, program: &str) -> usize {
        if let Some(&p) = self.pool_index.get(program) {
            return p;
        }
        let p = self.pools.len();
        self.pools.push(Pool::new(p, program));
        self.pool_index.insert(program.to_string(), p);
        p
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Done { run, events } => self.finish(run, events),
            Msg::PoolEvent { pool, gen, ev } => {
                let Some(p) = self.pools.get_mut(pool) else {
                    return;
                };
                if p.gen != gen {
                    return;
                }
                let run = if let Some(&r) = p.by_name.get(&ev.check) {
                    Some(r)
                } else {
                    // The driver names a bad line's result `stdin:N`.
                    ev.check
                        .strip_prefix("stdin:")
                        .and_then(|n| n.parse::<u64>().ok())
                        .and_then(|n| p.by_line.get(&n).copied())
                };
                match run {
                    Some(run) => {
                        let mut ev = *ev;
                        if let Some(fl) = self.inflight.get(&run) {
                            let name = fl.def.name.clone();
                            let line = fl.pool.map_or(0, |p| p.1);
                            self.pools[pool].forget(&name, run, line);
                            if ev.check.starts_with("stdin:") {
                                // The driver shows the stream line; the
                                // user wrote the command.
                                ev.target = Some(fl.def.command_line());
                            }
                        }
                        self.finish(run, vec![ev]);
                    }
                    // A result after pup-sched gave up on it, or a second
                    // result for one line (several targets): counted.
                    None => self.late += 1,
                }
            }
            Msg::PoolDied { pool, gen, why } => {
                let Some(p) = self.pools.get_mut(pool) else {
                    return;
                };
                if p.gen != gen {
                    return;
                }
                let program = p.program.clone();
                let code = p
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                let lost = p.died();
                if !lost.is_empty() && !STOP.load(Ordering::SeqCst) {
                    cli::warn(
                        PROG,
                        format!("{program} {why}{code} with {} checks in flight; it is restarted on the next check", lost.len()),
                    );
                }
                for (_, run) in lost {
                    let Some(fl) = self.inflight.get(&run) else {
                        continue;
                    };
                    let ev = exec::synthetic(
                        &fl.def,
                        fl.started,
                        fl.started.elapsed().unwrap_or_default(),
                        Status::Unknown,
                        ErrorInfo::new(layer::INTERNAL, "probe_died"),
                        format!("{program} {why}{code} before giving this check's result"),
                    );
                    self.finish(run, vec![ev]);
                }
            }
        }
    }

    /// Stream runs whose result is overdue: reported as timed out.
    fn give_up_late(&mut self, now: Instant) {
        while let Some(&Reverse((at, run))) = self.give_up.peek() {
            if at > now {
                break;
            }
            self.give_up.pop();
            let Some(fl) = self.inflight.get(&run) else {
                continue;
            };
            let def = fl.def.clone();
            if let Some((p, line)) = fl.pool {
                self.pools[p].forget(&def.name, run, line);
            }
            let ev = exec::synthetic(
                &def,
                fl.started,
                fl.started.elapsed().unwrap_or_default(),
                Status::Down,
                ErrorInfo::new(layer::TIMING, "timeout"),
                format!(
                    "timed out: {} gave no result within {} (+{} grace)",
                    def.command[0],
                    cli::format_duration(def.timeout),
                    cli::format_duration(STREAM_GRACE)
                ),
            );
            self.finish(run, vec![ev]);
        }
    }

    /// A run ended: add the scheduling facts, print, and update the
    /// check's state (retry).
    fn finish(&mut self, run: u64, events: Vec<Event>) {
        let Some(fl) = self.inflight.remove(&run) else {
            return;
        };
        let mut worst: Option<Status> = None;
        for mut ev in events {
            worst = Some(worst.map_or(ev.status.unwrap_or(Status::Unknown), |w| {
                w.worst(ev.status.unwrap_or(Status::Unknown))
            }));
            enrich(&mut ev, &fl);
            self.emit(&ev);
        }
        let failing = matches!(worst, Some(Status::Down | Status::Unknown) | None);
        let Some(&i) = self.index.get(&fl.def.name) else {
            return;
        };
        let now = Instant::now();
        let st = &mut self.checks[i];
        if st.running != Some(run) {
            return;
        }
        st.running = None;
        let was = st.failing;
        st.failing = failing;
        let Some(retry) = st.def.retry else {
            return;
        };
        let want = if failing {
            (fl.slot + retry).max(now)
        } else if was {
            self.clock.slot_at_or_after(&st.def, now)
        } else {
            return;
        };
        if want != st.next_slot && (!failing || want < st.next_slot) {
            st.next_slot = want;
            st.next_start = want;
            st.gen += 1;
            self.queue.push(Reverse((want, i, st.gen)));
        }
    }

    fn heartbeat(&mut self) {
        let mut ev = Event::new("heartbeat", PROG);
        let x = &mut ev.extra;
        x.insert("interval_ms".into(), event::ms(self.opts.heartbeat).into());
        x.insert("checks".into(), self.checks.len().into());
        x.insert("in_flight".into(), self.inflight.len().into());
        x.insert("started".into(), self.started.into());
        x.insert("skipped".into(), self.skipped.into());
        x.insert("lag_max_ms".into(), event::ms(self.lag_max).into());
        x.insert("late".into(), self.late.into());
        x.insert(
            "probes".into(),
            self.pools
                .iter()
                .filter(|p| p.child.is_some())
                .count()
                .into(),
        );
        x.insert("dropped".into(), self.dropped.into());
        x.insert("pid".into(), std::process::id().into());
        self.started = 0;
        self.skipped = 0;
        self.lag_max = Duration::ZERO;
        self.emit(&ev);
    }

    fn reload(&mut self) {
        let env = |n: &str| std::env::var(n).ok();
        match config::load(&self.path, &env) {
            Ok(defs) => {
                let n = defs.len();
                self.install(defs);
                cli::warn(
                    PROG,
                    format!("reloaded {}: {n} checks", self.path.display()),
                );
            }
            Err(e) => cli::warn(
                PROG,
                format!("reload failed, keeping the running config: {e}"),
            ),
        }
    }

    /// SIGTERM/SIGINT: no new runs; wait for those in flight up to the
    /// grace period, then kill what is left.
    fn drain(&mut self, rx: &Receiver<Msg>) -> i32 {
        let end = Instant::now() + self.opts.grace;
        for p in &mut self.pools {
            p.close();
        }
        while !self.inflight.is_empty() && !STDOUT_GONE.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            self.give_up_late(now);
            self.flush();
            match rx.recv_timeout((end - now).min(TICK)) {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.flush();
        self.kill_all();
        Exit::Ok.code()
    }

    fn kill_all(&mut self) {
        for fl in self.inflight.values() {
            if let Some(g) = &fl.group {
                exec::kill_group(g, libc::SIGKILL);
            }
        }
        for p in &mut self.pools {
            p.close();
            if !p.by_name.is_empty() || STDOUT_GONE.load(Ordering::SeqCst) {
                p.kill();
            }
            // Reap: a closed stdin ends an idle probe at once.
            if let Some(c) = p.child.as_mut() {
                let end = Instant::now() + Duration::from_secs(2);
                while Instant::now() < end {
                    if c.try_wait().ok().flatten().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            p.kill();
        }
    }
}

/// Adds what pup-sched knows to a result: the check's name, tags and
/// policy, and the scheduling facts.
fn enrich(ev: &mut Event, fl: &InFlight) {
    let def = &fl.def;
    ev.check = def.name.clone();
    for (k, v) in &def.tags {
        ev.tags.insert(k.clone(), v.clone());
    }
    let x = &mut ev.extra;
    x.insert("interval_ms".into(), event::ms(def.interval).into());
    x.insert(
        "scheduled_at".into(),
        event::format_ts(fl.scheduled_at).into(),
    );
    x.insert("lag_ms".into(), event::ms(fl.lag).into());
    if fl.skipped > 0 {
        x.insert("skipped".into(), fl.skipped.into());
    }
    if let Some(n) = def.fail_after {
        x.insert("fail_after".into(), n.into());
    }
    if let Some(n) = def.recover_after {
        x.insert("recover_after".into(), n.into());
    }
    if let Some(d) = def.remind {
        x.insert("remind_ms".into(), Value::from(event::ms(d)));
    }
}
