//! What survives a restart: the `--state` file (every check's state,
//! written atomically: temp file, fsync, rename, fsync of the directory)
//! and its journal (`STATE.journal`), a write-ahead log of two things:
//!
//! * hook runs, recorded before they start and marked done after, so that
//!   runs cut off by a crash are run again on the next start (at least
//!   once);
//! * the state of each check that just changed (a `down`, say), so that
//!   a transition is on disk, synced, before its hooks run, without
//!   rewriting the whole state file (every check) for each one. The next
//!   start applies those newer than the state file's `journal_seq`.

use super::hooks::{Run, DIRS};
use super::machine::{CheckState, Machine, Snapshot};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Reads a state file; a missing file is a fresh start.
pub fn load(path: &Path) -> Result<Option<Snapshot>, String> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("state file {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read state file {}: {e}", path.display())),
    }
}

fn sync_dir(path: &Path) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `m`'s state to `path` atomically: a reader (or the next start)
/// sees the old file or the new one, never half of one.
pub fn save(path: &Path, m: &Machine) -> Result<(), String> {
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode_0600()
            .open(&tmp)?;
        let mut w = BufWriter::with_capacity(256 * 1024, f);
        m.write_snapshot(&mut w).map_err(std::io::Error::other)?;
        w.write_all(b"\n")?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(path);
        Ok(())
    };
    write().map_err(|e| format!("cannot write state file {}: {e}", path.display()))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}
impl Mode0600 for OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// One journal line.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Entry {
    Start {
        start: u64,
        check: String,
        dir: String,
        hook: String,
        event: String,
    },
    Done {
        done: u64,
    },
    State {
        seq: u64,
        state: Box<CheckState>,
    },
}

#[derive(Serialize)]
struct StateRef<'a> {
    seq: u64,
    state: &'a CheckState,
}

/// What a journal held when it was opened.
#[derive(Default)]
pub struct Opened {
    /// Runs started and never marked done, in start order.
    pub runs: Vec<(String, Run)>,
    /// Check states, in the order written, with their sequence numbers.
    pub states: Vec<(u64, CheckState)>,
}

/// The journal of hook runs.
pub struct Journal {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    next_id: u64,
    open: usize,
    size: u64,
    /// The newest record the saved state file includes.
    saved_seq: u64,
    /// The newest check-state record (run records need no state file).
    last_state_seq: u64,
}

/// Journals grow until every run in them is done and they pass this size;
/// then they are truncated.
const COMPACT_AT: u64 = 4 << 20;

impl Journal {
    /// Opens the journal next to the state file and reads what it holds.
    /// Call [`Journal::compact`] once the state is saved.
    pub fn open(state: &Path) -> Result<(Journal, Opened), String> {
        let mut p = state.as_os_str().to_owned();
        p.push(".journal");
        let path = PathBuf::from(p);
        let mut starts: Vec<(u64, String, Run)> = Vec::new();
        let mut states = Vec::new();
        let mut done = std::collections::HashSet::new();
        let mut max_id = 0;
        match fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    // A line cut by a crash is not valid JSON: skipped.
                    match serde_json::from_str::<Entry>(line) {
                        Ok(Entry::Start {
                            start,
                            check,
                            dir,
                            hook,
                            event,
                        }) => {
                            max_id = max_id.max(start);
                            if let Some(d) = DIRS.iter().copied().find(|d| *d == dir) {
                                starts.push((
                                    start,
                                    check,
                                    Run {
                                        id: start,
                                        dir: d,
                                        name: hook,
                                        event,
                                    },
                                ));
                            }
                        }
                        Ok(Entry::Done { done: id }) => {
                            done.insert(id);
                        }
                        Ok(Entry::State { seq, state }) => {
                            max_id = max_id.max(seq);
                            states.push((seq, *state));
                        }
                        Err(_) => {}
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read journal {}: {e}", path.display())),
        }
        starts.retain(|s| !done.contains(&s.0));
        starts.sort_by_key(|s| s.0);
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode_0600()
            .open(&path)
            .map_err(|e| format!("cannot open journal {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let j = Journal {
            path,
            inner: Mutex::new(Inner {
                file,
                next_id: max_id + 1,
                open: 0,
                size,
                saved_seq: 0,
                last_state_seq: max_id,
            }),
        };
        let runs = starts.into_iter().map(|(_, c, r)| (c, r)).collect();
        Ok((j, Opened { runs, states }))
    }

    /// Rewrites the journal to hold only `runs` (the unfinished runs from
    /// [`Journal::open`], about to be run again), atomically. Only once
    /// the state file includes every state record.
    pub fn compact(&self, runs: &[(String, Run)]) -> Result<(), String> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let tmp = tmp_path(&self.path);
        let mut text = String::new();
        for (check, run) in runs {
            text.push_str(&line(run.id, check, run));
        }
        let werr = |e: std::io::Error| format!("cannot write journal {}: {e}", self.path.display());
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode_0600()
                .open(&tmp)
                .map_err(werr)?;
            f.write_all(text.as_bytes()).map_err(werr)?;
            f.sync_all().map_err(werr)?;
        }
        fs::rename(&tmp, &self.path).map_err(werr)?;
        sync_dir(&self.path);
        g.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(werr)?;
        g.open = runs.len();
        g.size = text.len() as u64;
        Ok(())
    }

    /// The newest record's sequence number.
    pub fn last_seq(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).next_id - 1
    }

    /// The state file now includes every record up to `seq`.
    pub fn saved(&self, seq: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.saved_seq = g.saved_seq.max(seq);
    }

    /// Records the states of checks that just changed and gives each run
    /// an id and records it, all synced to disk before any run starts.
    /// Returns the newest sequence number.
    pub fn record(
        &self,
        batch: &mut [(String, Vec<Run>)],
        states: &[&CheckState],
    ) -> Result<u64, String> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::new();
        for st in states {
            let seq = g.next_id;
            g.next_id += 1;
            g.last_state_seq = seq;
            text.push_str(
                &serde_json::to_string(&StateRef { seq, state: st })
                    .expect("check state serialises"),
            );
            text.push('\n');
        }
        for (check, runs) in batch.iter_mut() {
            for r in runs.iter_mut() {
                r.id = g.next_id;
                g.next_id += 1;
                g.open += 1;
                text.push_str(&line(r.id, check, r));
            }
        }
        let last = g.next_id - 1;
        if text.is_empty() {
            return Ok(last);
        }
        g.size += text.len() as u64;
        g.file
            .write_all(text.as_bytes())
            .and_then(|_| g.file.sync_data())
            .map_err(|e| format!("cannot write journal {}: {e}", self.path.display()))?;
        Ok(last)
    }

    /// Marks a run done. Not synced: losing a done mark only means the run
    /// is repeated after a crash, which at-least-once allows.
    pub fn done(&self, id: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let l = format!("{{\"done\":{id}}}\n");
        g.size += l.len() as u64;
        let _ = g.file.write_all(l.as_bytes());
        g.open = g.open.saturating_sub(1);
        if g.open == 0
            && g.size > COMPACT_AT
            && g.saved_seq >= g.last_state_seq
            && g.file.set_len(0).is_ok()
        {
            g.size = 0;
        }
    }
}

fn line(id: u64, check: &str, r: &Run) -> String {
    let mut s = serde_json::to_string(&Entry::Start {
        start: id,
        check: check.to_string(),
        dir: r.dir.to_string(),
        hook: r.name.clone(),
        event: r.event.clone(),
    })
    .expect("journal entry serialises");
    s.push('\n');
    s
}

impl super::hooks::Sink for Journal {
    fn record(&self, batch: &mut [(String, Vec<Run>)]) -> Result<(), String> {
        Journal::record(self, batch, &[]).map(|_| ())
    }
    fn done(&self, id: u64) {
        Journal::done(self, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_runs_come_back_once_and_states_after_the_snapshot() {
        let dir = std::env::temp_dir().join(format!("pup-journal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let state = dir.join("state.json");
        let (j, o) = Journal::open(&state).unwrap();
        assert!(o.runs.is_empty() && o.states.is_empty());
        j.compact(&o.runs).unwrap();
        let mk = |n: &str| Run {
            id: 0,
            dir: "down",
            name: n.into(),
            event: "{\"type\":\"down\"}".into(),
        };
        let snap: Snapshot = serde_json::from_str(
            r#"{"v":1,"checks":[{"name":"web","state":"down","announced":"down","announced_since_ms":1,"outage_start_ms":1,"last_seen_ms":1}]}"#,
        )
        .unwrap();
        let st = &snap.checks[0];
        let mut batch = vec![("web".to_string(), vec![mk("a"), mk("b")])];
        let seq = j.record(&mut batch, &[st]).unwrap();
        assert_eq!(seq, 3);
        j.done(batch[0].1[0].id);
        drop(j);
        let (j, o) = Journal::open(&state).unwrap();
        assert_eq!(o.runs.len(), 1);
        assert_eq!(o.runs[0].1.name, "b");
        assert_eq!(o.states.len(), 1);
        assert_eq!(o.states[0].0, 1);
        assert_eq!(o.states[0].1.name, "web");
        j.compact(&o.runs).unwrap();
        j.done(o.runs[0].1.id);
        drop(j);
        let (_, o) = Journal::open(&state).unwrap();
        assert!(o.runs.is_empty());
        assert!(o.states.is_empty(), "compacted away");
        let _ = fs::remove_dir_all(&dir);
    }
}
