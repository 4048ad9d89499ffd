//! Running the user's hooks: finding them (`HOOKS_DIR/T/` and
//! `HOOKS_DIR/all/`), refusing unsafe ones, running each one with its event
//! (temp file, stdin, `PUP_*` environment) under a timeout that kills its
//! whole process group, and the pool that runs them: `-j N` at once, in
//! event order per check, never blocking the reader of the input.

use crate::event::Event;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The hook directories pup-route knows. A directory name is only ever
/// taken from this list, never from text in the input.
pub const DIRS: &[&str] = &[
    "result",
    "down",
    "up",
    "degraded",
    "reminder",
    "flapping",
    "changed",
    "stale",
    "hook-failed",
    "all",
];

/// The directory for an event type, if the type has one. `hook` events
/// have none (a hook per hook run would run forever); failed runs go to
/// `hook-failed/`, which the pool asks for itself.
pub fn dir_for(kind: &str) -> Option<&'static str> {
    DIRS.iter()
        .copied()
        .find(|d| *d == kind && *d != "all" && *d != "hook-failed")
}

/// Does `all/` run for this directory? For every router event, not for
/// each `result` (that is what `result/` is for: a Slack notifier in
/// `all/` must not post every result) and not for `hook-failed`.
pub fn all_applies(dir: &str) -> bool {
    dir != "result" && dir != "hook-failed"
}

/// Cap on each `PUP_*` variable, in bytes.
pub const ENV_CAP: usize = 1024;
/// Cap on what is read from a hook's stderr; past it the pipe is closed.
pub const STDERR_READ_CAP: usize = 1 << 20;
/// How much of the end of stderr is kept for the `hook` event.
pub const STDERR_TAIL: usize = 2048;
/// Lines of stderr kept for the `hook` event.
pub const STDERR_LINES: usize = 10;
/// After SIGTERM at the timeout, how long before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_millis(1000);

/// Why a hook file may not be run.
pub fn insecure(path: &Path, my_uid: u32) -> Option<String> {
    let md = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot stat {}: {e}", path.display())),
    };
    let mode = md.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "refusing {}: writable by {} (mode {:04o}); run chmod go-w on it",
            path.display(),
            if mode & 0o002 != 0 {
                "anyone"
            } else {
                "its group"
            },
            mode
        ));
    }
    if md.uid() != my_uid && md.uid() != 0 {
        return Some(format!(
            "refusing {}: owned by uid {}, not by the running user (uid {my_uid}) or root",
            path.display(),
            md.uid()
        ));
    }
    None
}

/// Is this directory entry a hook to run (by its name and mode)?
fn runnable_name(name: &str) -> bool {
    !(name.starts_with('.') || name.ends_with('~') || name.ends_with(".disabled"))
}

/// The hooks in one directory, in name order (bytewise, like `ls` in the
/// C locale). Non-executables are skipped; insecure files are listed (they
/// are refused, loudly, when their turn comes).
pub fn list(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !runnable_name(&name) {
                return None;
            }
            let md = fs::metadata(e.path()).ok()?;
            (md.is_file() && md.permissions().mode() & 0o111 != 0).then_some(name)
        })
        .collect();
    names.sort();
    names
}

/// Every insecure hook (and hook directory) under `root`, for the check
/// at start-up.
pub fn audit(root: &Path, my_uid: u32) -> Vec<String> {
    let mut bad = Vec::new();
    if let Some(e) = insecure(root, my_uid) {
        bad.push(e);
    }
    for d in DIRS {
        let p = root.join(d);
        if !p.is_dir() {
            continue;
        }
        if let Some(e) = insecure(&p, my_uid) {
            bad.push(e);
        }
        for name in list(&p) {
            if let Some(e) = insecure(&p.join(&name), my_uid) {
                bad.push(e);
            }
        }
    }
    bad
}

/// A user to run hooks as (`--hook-user`).
#[derive(Debug, Clone)]
pub struct HookUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Looks `name` up in the password database.
pub fn lookup_user(name: &str) -> Result<HookUser, String> {
    let c = CString::new(name).map_err(|_| format!("bad user name {name:?}"))?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut res: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r fills `pw` with pointers into `buf`, which
    // outlives every use below.
    let rc =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut res) };
    if rc != 0 || res.is_null() {
        return Err(format!("--hook-user: no user named {name:?}"));
    }
    let home = unsafe { std::ffi::CStr::from_ptr(pw.pw_dir) }
        .to_string_lossy()
        .into_owned();
    Ok(HookUser {
        name: name.to_string(),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        home,
    })
}

/// A value made safe for a `PUP_*` variable: one line (control characters,
/// NULs included, become spaces) and at most [`ENV_CAP`] bytes.
pub fn env_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(ENV_CAP));
    for ch in s.chars() {
        let ch = if ch.is_control() { ' ' } else { ch };
        if out.len() + ch.len_utf8() > ENV_CAP {
            break;
        }
        out.push(ch);
    }
    out
}

/// One hook to run for one event.
#[derive(Debug, Clone)]
pub struct Run {
    /// Journal id (0 when there is no journal).
    pub id: u64,
    /// `down`, `all`, … (always one of [`DIRS`]).
    pub dir: &'static str,
    pub name: String,
    /// The event the hook gets, as one JSON line.
    pub event: String,
}

/// The journal, as the pool sees it: runs are recorded before they start
/// and marked done after.
pub trait Sink: Send + Sync {
    fn record(&self, batch: &mut [(String, Vec<Run>)]) -> Result<(), String>;
    fn done(&self, id: u64);
}

/// Settings of the pool.
pub struct Config {
    pub root: PathBuf,
    pub timeout: Duration,
    pub jobs: usize,
    pub user: Option<HookUser>,
    pub my_uid: u32,
    pub dry_run: bool,
    /// Where the events' temporary files go (a private directory).
    pub tmp: PathBuf,
}

/// Writes events from the hook workers to stdout (the router's shared
/// writer).
pub type Emit = Arc<dyn Fn(&Event) + Send + Sync>;

struct Queues {
    per_check: HashMap<String, VecDeque<Run>>,
    busy: HashSet<String>,
    ready: VecDeque<String>,
    pending: usize,
    closing: bool,
}

/// The hook pool: per-check FIFO queues served by `jobs` workers. A check
/// is served by one worker at a time, so its hooks run in event order; a
/// slow hook holds only its own check's queue.
pub struct Pool {
    cfg: Config,
    q: Mutex<Queues>,
    cv: Condvar,
    idle: Condvar,
    emit: Emit,
    journal: Option<Arc<dyn Sink>>,
    next_file: std::sync::atomic::AtomicU64,
}

impl Pool {
    pub fn start(cfg: Config, emit: Emit, journal: Option<Arc<dyn Sink>>) -> Arc<Pool> {
        let jobs = cfg.jobs.max(1);
        let pool = Arc::new(Pool {
            cfg,
            q: Mutex::new(Queues {
                per_check: HashMap::new(),
                busy: HashSet::new(),
                ready: VecDeque::new(),
                pending: 0,
                closing: false,
            }),
            cv: Condvar::new(),
            idle: Condvar::new(),
            emit,
            journal,
            next_file: std::sync::atomic::AtomicU64::new(0),
        });
        for _ in 0..jobs {
            let p = pool.clone();
            std::thread::spawn(move || p.work());
        }
        pool
    }

    pub fn root(&self) -> &Path {
        &self.cfg.root
    }

    /// Queues runs for `check`, after everything already queued for it.
    pub fn submit(&self, check: &str, runs: Vec<Run>) {
        if runs.is_empty() {
            return;
        }
        let mut q = self.q.lock().unwrap_or_else(|p| p.into_inner());
        q.pending += runs.len();
        let queue = q.per_check.entry(check.to_string()).or_default();
        let was_empty = queue.is_empty();
        queue.extend(runs);
        if was_empty && !q.busy.contains(check) {
            q.ready.push_back(check.to_string());
        }
        drop(q);
        self.cv.notify_one();
    }

    /// Runs queued or running.
    pub fn pending(&self) -> usize {
        self.q.lock().unwrap_or_else(|p| p.into_inner()).pending
    }

    /// Waits until nothing is queued or running, or `limit` passes.
    /// Returns whether the pool is idle.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut q = self.q.lock().unwrap_or_else(|p| p.into_inner());
        while q.pending > 0 {
            let now = Instant::now();
            if now >= end {
                return false;
            }
            q = self
                .idle
                .wait_timeout(q, end - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    pub fn close(&self) {
        self.q.lock().unwrap_or_else(|p| p.into_inner()).closing = true;
        self.cv.notify_all();
    }

    fn work(self: Arc<Self>) {
        loop {
            let (check, run) = {
                let mut q = self.q.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some(check) = q.ready.pop_front() {
                        let run = q
                            .per_check
                            .get_mut(&check)
                            .and_then(|r| r.pop_front())
                            .expect("a ready check has a run");
                        q.busy.insert(check.clone());
                        break (check, run);
                    }
                    if q.closing {
                        return;
                    }
                    q = self.cv.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let failed = self.run_one(&check, &run);
            // A failed run triggers hook-failed/, queued for the same check
            // before this run is marked done (so a crash in between cannot
            // lose both). hook-failed hooks that fail trigger nothing more.
            if let (Some(ev), false) = (failed, run.dir == "hook-failed") {
                let runs: Vec<Run> = list(&self.cfg.root.join("hook-failed"))
                    .into_iter()
                    .map(|name| Run {
                        id: 0,
                        dir: "hook-failed",
                        name,
                        event: ev.clone(),
                    })
                    .collect();
                if !runs.is_empty() {
                    let mut batch = vec![(check.clone(), runs)];
                    if let Some(j) = &self.journal {
                        if let Err(e) = j.record(&mut batch) {
                            crate::cli::warn("pup-route", e);
                        }
                    }
                    let (c, runs) = batch.pop().expect("one batch");
                    self.submit(&c, runs);
                }
            }
            if let (Some(j), true) = (&self.journal, run.id != 0) {
                j.done(run.id);
            }
            let mut q = self.q.lock().unwrap_or_else(|p| p.into_inner());
            q.busy.remove(&check);
            q.pending -= 1;
            let more = q.per_check.get(&check).is_some_and(|r| !r.is_empty());
            if more {
                q.ready.push_back(check);
                self.cv.notify_one();
            } else {
                q.per_check.remove(&check);
            }
            if q.pending == 0 {
                self.idle.notify_all();
            }
        }
    }

    /// Runs one hook and emits its `hook` event. Returns the event line
    /// when the run failed (for `hook-failed/`).
    fn run_one(&self, check: &str, run: &Run) -> Option<String> {
        let path = self.cfg.root.join(run.dir).join(&run.name);
        let trigger: Value = serde_json::from_str(&run.event).unwrap_or(Value::Null);
        let trig_type = trigger
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("result")
            .to_string();
        let mut ev = Event::new("hook", check);
        if let Some(s) = trigger.get("status").and_then(|s| s.as_str()) {
            ev.status = serde_json::from_value(json!(s)).ok();
        }
        if let Some(t) = trigger.get("target").and_then(|s| s.as_str()) {
            ev.target = Some(t.to_string());
        }
        ev.extra
            .insert("hook".into(), json!(format!("{}/{}", run.dir, run.name)));
        ev.extra.insert("event".into(), json!(trig_type));
        if self.cfg.dry_run {
            ev.extra.insert("dry_run".into(), json!(true));
            ev.reason = Some(format!("would run {}", path.display()));
            ev.extra.insert("trigger".into(), trigger);
            (self.emit)(&ev);
            return None;
        }
        let start = Instant::now();
        let dir = self.cfg.root.join(run.dir);
        let unsafe_why =
            insecure(&dir, self.cfg.my_uid).or_else(|| insecure(&path, self.cfg.my_uid));
        let outcome = match unsafe_why {
            Some(why) => {
                crate::cli::warn("pup-route", &why);
                Outcome::Refused(why)
            }
            None => self.exec(&path, run, &trigger),
        };
        ev.duration_ms = Some(crate::event::ms(start.elapsed()));
        let ok = match &outcome {
            Outcome::Exited {
                code,
                signal,
                timed_out,
                stderr,
            } => {
                ev.extra.insert("exit_code".into(), json!(code));
                if let Some(s) = signal {
                    ev.extra.insert("signal".into(), json!(s));
                }
                ev.extra.insert("timed_out".into(), json!(timed_out));
                ev.extra.insert("stderr".into(), json!(stderr));
                ev.reason = Some(if *timed_out {
                    format!(
                        "{}/{} timed out after {} and was killed with its process group",
                        run.dir,
                        run.name,
                        crate::cli::format_duration(self.cfg.timeout)
                    )
                } else if let Some(c) = code {
                    format!("{}/{} exited with {c}", run.dir, run.name)
                } else {
                    format!(
                        "{}/{} was killed by signal {}",
                        run.dir,
                        run.name,
                        signal.unwrap_or(0)
                    )
                });
                !timed_out && *code == Some(0)
            }
            Outcome::Refused(why) | Outcome::Failed(why) => {
                ev.extra.insert("exit_code".into(), Value::Null);
                ev.extra.insert("timed_out".into(), json!(false));
                ev.extra.insert("stderr".into(), json!(""));
                ev.reason = Some(why.clone());
                false
            }
        };
        ev.extra.insert("ok".into(), json!(ok));
        ev.extra.insert("trigger".into(), trigger);
        (self.emit)(&ev);
        (!ok).then(|| ev.to_line())
    }

    fn exec(&self, path: &Path, run: &Run, trigger: &Value) -> Outcome {
        let n = self
            .next_file
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = self.cfg.tmp.join(format!("event-{n}.json"));
        let _ = fs::remove_file(&file);
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| {
                f.write_all(run.event.as_bytes())?;
                f.write_all(b"\n")
            });
        if let Err(e) = written {
            return Outcome::Failed(format!("cannot write {}: {e}", file.display()));
        }
        struct Remove<'a>(&'a Path);
        impl Drop for Remove<'_> {
            fn drop(&mut self) {
                let _ = fs::remove_file(self.0);
            }
        }
        let _rm = Remove(&file);
        let s = |k: &str| trigger.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let mut cmd = Command::new(path);
        cmd.arg(&file)
            .current_dir(&self.cfg.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .env("PUP_EVENT", env_value(s("type")))
            .env("PUP_CHECK", env_value(s("check")))
            .env("PUP_STATUS", env_value(s("status")))
            .env("PUP_PREVIOUS_STATUS", env_value(s("previous_status")))
            .env("PUP_TARGET", env_value(s("target")))
            .env("PUP_REASON", env_value(s("reason")))
            .env("PUP_HOOK", format!("{}/{}", run.dir, run.name));
        if let Some(u) = &self.cfg.user {
            // The file must be readable by the user the hook runs as.
            if let Ok(c) = CString::new(file.as_os_str().as_encoded_bytes()) {
                unsafe { libc::chown(c.as_ptr(), u.uid, u.gid) };
            }
            cmd.uid(u.uid)
                .gid(u.gid)
                .env("USER", &u.name)
                .env("LOGNAME", &u.name)
                .env("HOME", &u.home);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(format!("cannot run {}: {e}", path.display())),
        };
        let pid = child.id() as i32;
        // The event on stdin; a hook need not read it.
        if let Some(mut stdin) = child.stdin.take() {
            let data = format!("{}\n", run.event);
            if data.len() < 32 * 1024 {
                // Fits in the pipe: the write cannot block.
                let _ = stdin.write_all(data.as_bytes());
            } else {
                std::thread::spawn(move || {
                    let _ = stdin.write_all(data.as_bytes());
                });
            }
        }
        let stderr = child.stderr.take();
        // The reaper waits for the hook to exit without reaping it, kills
        // what it left in its group, then reaps: the pid (and so the group
        // id) cannot be reused while we might still signal it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            loop {
                // SAFETY: plain syscall on our own child.
                let rc = unsafe {
                    libc::waitid(
                        libc::P_PID,
                        pid as libc::id_t,
                        &mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    )
                };
                if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    break;
                }
            }
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let st = child.wait();
            let _ = tx.send(st);
        });
        let deadline = Instant::now() + self.cfg.timeout;
        let mut tail = Tail::default();
        let mut timed_out = false;
        if let Some(mut err) = stderr {
            let fd = err.as_raw_fd();
            let mut buf = [0u8; 8192];
            let mut read = 0usize;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    timed_out = true;
                    break;
                }
                let ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let rc = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
                if rc == 0 {
                    continue;
                }
                if rc < 0 {
                    if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                        continue;
                    }
                    break;
                }
                match err.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        tail.push(&buf[..n]);
                        read += n;
                        if read >= STDERR_READ_CAP {
                            // Enough: close our end; a flooding hook gets
                            // EPIPE and we wait for its exit below.
                            tail.push(b"\n[pup-route: stderr cut after 1 MiB]");
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        let status = if timed_out {
            None
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(st) => Some(st),
                Err(_) => {
                    timed_out = true;
                    None
                }
            }
        };
        let status = match status {
            Some(st) => st,
            None => {
                // Timeout: SIGTERM the group, SIGKILL after a grace.
                unsafe { libc::kill(-pid, libc::SIGTERM) };
                match rx.recv_timeout(KILL_GRACE) {
                    Ok(st) => st,
                    Err(_) => {
                        unsafe { libc::kill(-pid, libc::SIGKILL) };
                        rx.recv_timeout(Duration::from_secs(10))
                            .unwrap_or_else(|_| Err(std::io::Error::other("hook did not die")))
                    }
                }
            }
        };
        match status {
            Ok(st) => Outcome::Exited {
                code: st.code(),
                signal: st.signal(),
                timed_out,
                stderr: tail.text(),
            },
            Err(e) => Outcome::Failed(format!("waiting for {}: {e}", path.display())),
        }
    }
}

enum Outcome {
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        timed_out: bool,
        stderr: String,
    },
    Refused(String),
    Failed(String),
}

/// The last [`STDERR_TAIL`] bytes of a stream.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
        if self.0.len() > 2 * STDERR_TAIL {
            let cut = self.0.len() - STDERR_TAIL;
            self.0.drain(..cut);
        }
    }

    /// The last lines, lossily decoded.
    fn text(&self) -> String {
        let start = self.0.len().saturating_sub(STDERR_TAIL);
        let s = String::from_utf8_lossy(&self.0[start..]);
        let s = s.trim_end_matches('\n');
        let lines: Vec<&str> = s.lines().collect();
        let from = lines.len().saturating_sub(STDERR_LINES);
        lines[from..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_one_capped_line() {
        assert_eq!(env_value("a\nb\0c\r\td"), "a b c  d");
        let long = "é".repeat(1000);
        let v = env_value(&long);
        assert!(v.len() <= ENV_CAP && v.chars().all(|c| c == 'é'));
    }

    #[test]
    fn names_skipped() {
        for n in [".hidden", "x~", "page.disabled"] {
            assert!(!runnable_name(n), "{n}");
        }
        assert!(runnable_name("10-page"));
    }

    #[test]
    fn directories_come_only_from_the_known_list() {
        assert_eq!(dir_for("down"), Some("down"));
        assert_eq!(dir_for("../etc"), None);
        assert_eq!(dir_for("all"), None);
        assert_eq!(dir_for("hook"), None);
        assert_eq!(dir_for("hook-failed"), None);
        assert!(!all_applies("result"));
    }

    #[test]
    fn tail_keeps_last_lines() {
        let mut t = Tail::default();
        for k in 0..1000 {
            t.push(format!("line {k}\n").as_bytes());
        }
        let s = t.text();
        assert_eq!(s.lines().count(), STDERR_LINES);
        assert!(s.ends_with("line 999"), "{s}");
    }
}
