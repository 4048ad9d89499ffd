//! Runs one command in a process group of its own under a deadline, and
//! turns what it printed into result events: its own result events if it
//! printed any, else a Nagios plugin's verdict.
//!
//! At the deadline the whole group gets SIGTERM, then SIGKILL
//! [`KILL_GRACE`] later, so a command that ignores SIGTERM or left a child
//! behind is gone too. After a normal exit, whatever the command left in
//! its group is killed as well: nothing a check starts outlives it.

use super::config::CheckDef;
use super::nagios;
use crate::event::{self, layer, ErrorInfo, Event, Status};
use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Between SIGTERM and SIGKILL at a deadline.
pub const KILL_GRACE: Duration = Duration::from_millis(500);

/// A running command's process group, shared with the scheduler so that
/// it can kill it on shutdown. `None` once the leader has been reaped:
/// after that the id may belong to someone else, and the lock makes
/// "check, then kill" safe against the reaping.
pub type Group = Arc<Mutex<Option<i32>>>;

/// Kills the group if it still exists.
pub fn kill_group(g: &Group, sig: i32) {
    let pg = g.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(pgid) = *pg {
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // has no memory effects.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Runs `def`'s command once; `group` receives its process group id.
pub fn run_once(def: &CheckDef, max_output: usize, group: &Group) -> Vec<Event> {
    let wall = SystemTime::now();
    let start = Instant::now();
    let deadline = start + def.timeout;
    let mut cmd = Command::new(&def.command[0]);
    cmd.args(&def.command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    let mut child = {
        // Held while spawning so the scheduler never sees a half-set group.
        let mut g = group.lock().unwrap_or_else(|p| p.into_inner());
        match cmd.spawn() {
            Ok(c) => {
                *g = Some(c.id() as i32);
                c
            }
            Err(e) => {
                return vec![synthetic(
                    def,
                    wall,
                    start.elapsed(),
                    Status::Unknown,
                    ErrorInfo::new(layer::INTERNAL, "exec_failed"),
                    format!("cannot run {}: {e}", def.command[0]),
                )]
            }
        }
    };
    let pid = child.id() as i32;
    let mut stdout = child.stdout.take().expect("piped");
    let fd = stdout.as_raw_fd();
    let mut buf: Vec<u8> = Vec::new();
    let mut truncated = false;
    let mut chunk = [0u8; 8192];
    // Deadline stages: 0 running, 1 SIGTERM sent, 2 SIGKILL sent.
    let mut stage = 0;
    let mut stage_end = deadline;
    let mut eof = false;
    loop {
        let now = Instant::now();
        if now >= stage_end {
            match stage {
                0 => {
                    kill_group(group, libc::SIGTERM);
                    stage = 1;
                    stage_end = now + KILL_GRACE;
                }
                1 => {
                    kill_group(group, libc::SIGKILL);
                    stage = 2;
                    stage_end = now + Duration::from_secs(1);
                }
                // Something outside the group still holds the pipe: give
                // up on it rather than wait forever.
                _ => break,
            }
            continue;
        }
        if !eof {
            let wait = stage_end
                .saturating_duration_since(now)
                .as_millis()
                .clamp(1, 100) as i32;
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for an fd we own.
            let n = unsafe { libc::poll(&mut pfd, 1, wait) };
            if n > 0 {
                match stdout.read(&mut chunk) {
                    Ok(0) | Err(_) => eof = true,
                    Ok(k) => {
                        let room = max_output.saturating_sub(buf.len());
                        if k > room {
                            truncated = true;
                        }
                        buf.extend_from_slice(&chunk[..k.min(room)]);
                    }
                }
            }
            continue;
        }
        // Output is closed: has the leader exited? (Not reaped yet, so its
        // group id cannot be reused while we kill stragglers.)
        if exited_unreaped(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let timed_out = stage > 0;
    // Stragglers left in the group, and a leader still running when the
    // stages ran out.
    kill_group(group, libc::SIGKILL);
    let status = {
        let mut g = group.lock().unwrap_or_else(|p| p.into_inner());
        let st = child.wait();
        *g = None;
        st
    };
    let elapsed = start.elapsed();
    if timed_out {
        return vec![synthetic(
            def,
            wall,
            elapsed,
            Status::Down,
            ErrorInfo::new(layer::TIMING, "timeout"),
            format!(
                "timed out after {}: killed its process group",
                crate::cli::format_duration(def.timeout)
            ),
        )];
    }
    let text = String::from_utf8_lossy(&buf);
    let results = result_events(&text);
    if !results.is_empty() {
        return results;
    }
    let code = status.ok().and_then(|s| s.code());
    let v = nagios::read(&text, code);
    let mut ev = base(def, "nagios", wall, elapsed);
    ev.status = Some(v.status);
    ev.reason = Some(v.reason);
    ev.error = v.error;
    ev.details = v.details;
    if truncated {
        ev.details.insert("truncated".into(), true.into());
    }
    vec![ev]
}

/// Has `pid` exited? Leaves it unreaped (WNOWAIT).
fn exited_unreaped(pid: i32) -> bool {
    // SAFETY: waitid writes only into the siginfo we pass.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // With WNOHANG and nothing to report, si_pid stays 0; an error
        // (no such child) counts as exited so the caller never spins.
        r != 0 || info.si_pid() != 0
    }
}

/// The lines of `text` that are result events (schema v1).
pub fn result_events(text: &str) -> Vec<Event> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        .filter(|e| {
            e.v == event::VERSION
                && e.kind == "result"
                && e.status.is_some()
                && e.probe.is_some()
                && e.target.is_some()
        })
        .collect()
}

fn base(def: &CheckDef, probe: &str, wall: SystemTime, elapsed: Duration) -> Event {
    let mut ev = Event::new("result", &def.name);
    ev.ts = event::format_ts(wall);
    ev.probe = Some(probe.into());
    ev.target = Some(def.command_line());
    ev.duration_ms = Some(event::ms(elapsed));
    ev
}

/// A result pup-sched makes itself (probe `sched`): the command could not
/// run, overran, or its probe process died.
pub fn synthetic(
    def: &CheckDef,
    wall: SystemTime,
    elapsed: Duration,
    status: Status,
    error: ErrorInfo,
    reason: String,
) -> Event {
    let mut ev = base(def, "sched", wall, elapsed);
    ev.status = Some(status);
    ev.error = Some(error);
    ev.reason = Some(reason);
    ev
}
