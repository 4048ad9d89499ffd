//! Long-lived probes in stream mode: one `pup-probe-X --stdin -j N`
//! process per probe program, fed one check per line.
//!
//! Starting a process per check costs more CPU than most checks (and a
//! TLS probe must load the trust store each time); a probe in stream mode
//! pays that once. A line is the check's own arguments, so the result is
//! the one the same command gives run by hand; pup-sched only puts
//! `--timeout` first (so the command's own `--timeout` wins) and `--name`
//! last (so results can be matched back to the check by name).
//!
//! The pool itself is plain data owned by the scheduler thread; a writer
//! thread per process feeds its stdin (a probe that reads slowly never
//! blocks the scheduler) and a reader thread turns its stdout into
//! [`super::run::Msg`]s.

use super::config::CheckDef;
use super::run::Msg;
use crate::cli;
use crate::event::Event;
use crate::ndjson::{Line, LineReader, MAX_LINE};
use crate::shell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

/// At most one restart of a dead probe per this long, so a probe that
/// cannot start does not become a fork loop.
pub const RESTART_EVERY: Duration = Duration::from_secs(1);

/// One probe program's process, if running, and its checks in flight.
pub struct Pool {
    pub id: usize,
    pub program: String,
    /// Bumped at every start, so messages from a dead process are told
    /// apart from the current one's.
    pub gen: u64,
    pub child: Option<Child>,
    lines: Option<Sender<String>>,
    /// Lines written to the current process (stream line numbers).
    pub line_no: u64,
    /// Check name → run id, for results.
    pub by_name: HashMap<String, u64>,
    /// Line number → run id, for the driver's bad-line results (named
    /// `stdin:N`).
    pub by_line: HashMap<u64, u64>,
    last_start: Option<Instant>,
    /// Why the last start failed, repeated until the next attempt.
    last_error: Option<String>,
    /// Lines of this scheduler pass, not yet handed to the writer.
    pending: String,
}

impl Pool {
    pub fn new(id: usize, program: &str) -> Pool {
        Pool {
            id,
            program: program.to_string(),
            gen: 0,
            child: None,
            lines: None,
            line_no: 0,
            by_name: HashMap::new(),
            by_line: HashMap::new(),
            last_start: None,
            last_error: None,
            pending: String::new(),
        }
    }

    /// Starts the process unless it runs; `Err` when it cannot start (or
    /// may not yet restart).
    pub fn ensure(&mut self, jobs: u32, tx: &Sender<Msg>) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        if let Some(t) = self.last_start {
            if t.elapsed() < RESTART_EVERY {
                return Err(self.last_error.clone().unwrap_or_else(|| {
                    format!(
                        "{} exited and is restarted at most once per {}",
                        self.program,
                        cli::format_duration(RESTART_EVERY)
                    )
                }));
            }
        }
        self.last_start = Some(Instant::now());
        let spawned = Command::new(&self.program)
            .args(["--stdin", "-j", &jobs.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own group: a terminal's ^C reaches pup-sched only, which
            // then lets the probe finish what it has in flight.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program));
        self.last_error = spawned.as_ref().err().cloned();
        let mut child = spawned?;
        self.gen += 1;
        self.line_no = 0;
        let (id, gen) = (self.id, self.gen);
        let stdout = child.stdout.take().expect("piped");
        let mut stdin = child.stdin.take().expect("piped");
        let (ltx, lrx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            // Write whatever is queued, then flush once: one write per
            // burst rather than per line.
            let mut w = std::io::BufWriter::with_capacity(64 * 1024, &mut stdin);
            while let Ok(first) = lrx.recv() {
                let mut ok = w.write_all(first.as_bytes()).is_ok();
                while let (true, Ok(more)) = (ok, lrx.try_recv()) {
                    ok = w.write_all(more.as_bytes()).is_ok();
                }
                if !ok || w.flush().is_err() {
                    return;
                }
            }
        });
        let tx = tx.clone();
        let program = self.program.clone();
        std::thread::spawn(move || {
            let paced = Paced {
                out: stdout,
                last: None,
            };
            let mut r = LineReader::new(
                std::io::BufReader::with_capacity(256 * 1024, paced),
                MAX_LINE,
            );
            let why = loop {
                match r.next_line() {
                    Ok(Some(Line::Text(t))) => {
                        if t.trim().is_empty() {
                            continue;
                        }
                        match serde_json::from_str::<Event>(t) {
                            Ok(ev) => {
                                if tx
                                    .send(Msg::PoolEvent {
                                        pool: id,
                                        gen,
                                        ev: Box::new(ev),
                                    })
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            Err(e) => cli::warn(
                                "pup-sched",
                                format!("{program} printed a line that is not an event: {e}"),
                            ),
                        }
                    }
                    Ok(Some(_)) => cli::warn(
                        "pup-sched",
                        format!("{program} printed an over-long or non-UTF-8 line; skipped"),
                    ),
                    Ok(None) => break "exited".to_string(),
                    Err(e) => break format!("output could not be read: {e}"),
                }
            };
            let _ = tx.send(Msg::PoolDied { pool: id, gen, why });
        });
        self.child = Some(child);
        self.lines = Some(ltx);
        Ok(())
    }

    /// Queues `def` as a line for run `run`; returns its line number.
    pub fn send(&mut self, def: &CheckDef, run: u64) -> Result<u64, String> {
        if self.lines.is_none() {
            return Err("probe not running".into());
        }
        self.pending.push_str(&stream_line(def));
        self.line_no += 1;
        self.by_name.insert(def.name.clone(), run);
        self.by_line.insert(self.line_no, run);
        Ok(self.line_no)
    }

    /// Forgets run `run`, sent as line `line` (finished or given up on).
    pub fn forget(&mut self, name: &str, run: u64, line: u64) {
        if self.by_name.get(name) == Some(&run) {
            self.by_name.remove(name);
        }
        if self.by_line.get(&line) == Some(&run) {
            self.by_line.remove(&line);
        }
    }

    /// Hands the lines queued in this pass to the writer thread. A
    /// writer that has gone means the probe is dying; its reader reports
    /// that.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        if let Some(l) = &self.lines {
            let _ = l.send(batch);
        }
    }

    /// Closes the probe's stdin: it finishes what it has and exits.
    pub fn close(&mut self) {
        self.flush();
        self.lines = None;
    }

    /// After the process's output ended: kill what is left of its group,
    /// reap it, and forget its checks (returned: name, run).
    pub fn died(&mut self) -> Vec<(String, u64)> {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signals the probe's own group, which still exists
            // (the leader is not reaped until the wait below).
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.wait();
        }
        self.lines = None;
        self.pending.clear();
        self.by_line.clear();
        self.by_name.drain().collect()
    }

    /// Kills the process group now (shutdown after the grace period).
    pub fn kill(&mut self) {
        if let Some(c) = &self.child {
            // SAFETY: as in `died`; the child is not reaped yet.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
        }
    }
}

/// A probe's stdout, read at most once per [`READ_PACE`]: under load each
/// read then takes every result printed meanwhile, instead of one wake-up
/// and one read per result; when idle, a read just waits for the next
/// line. Results are delayed by at most that much; their own times come
/// from the probe.
struct Paced {
    out: std::process::ChildStdout,
    last: Option<Instant>,
}

/// See [`Paced`].
const READ_PACE: Duration = Duration::from_millis(10);

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(t) = self.last {
            let since = t.elapsed();
            if since < READ_PACE {
                std::thread::sleep(READ_PACE - since);
            }
        }
        let n = self.out.read(buf);
        self.last = Some(Instant::now());
        n
    }
}

/// The stream line for a check: `--timeout T`, the command's own
/// arguments (which win over that), the config's tags as `--tag`, then
/// `--name NAME` (which wins over any `--name` in the command, as results
/// are matched by it).
pub fn stream_line(def: &CheckDef) -> String {
    let mut words = vec!["--timeout".to_string(), cli::format_duration(def.timeout)];
    words.extend(def.command[1..].iter().map(|w| shell::quote(w)));
    // The config's tags also reach the probe (pup-sched adds them to the
    // result again anyway, so a probe that drops them loses nothing).
    for (k, v) in &def.tags {
        words.push("--tag".into());
        words.push(shell::quote(&format!("{k}={v}")));
    }
    words.push("--name".into());
    words.push(shell::quote(&def.name));
    let mut line = words.join(" ");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_line_reads_back_as_the_command_with_timeout_tags_and_name() {
        let mut def = crate::sched::config::parse_str(
            "t",
            "my\\ check 10s timeout=3s tag.team='a b' pup-probe-http 'http://x/?a b' --name other\n",
            &|_| None,
        )
        .unwrap()
        .remove(0);
        let line = stream_line(&def);
        assert!(line.ends_with('\n'));
        assert_eq!(
            shell::split(&line).unwrap(),
            [
                "--timeout",
                "3s",
                "http://x/?a b",
                "--name",
                "other",
                "--tag",
                "team=a b",
                "--name",
                "my check"
            ]
        );
        def.tags.clear();
        assert!(!stream_line(&def).contains("--tag"));
    }
}
