//! The harness every integration test uses: run a real binary with a
//! deadline, validate every event it prints against the published schema,
//! and make sure every process a test starts is killed when the test ends,
//! also when it fails.
#![allow(dead_code)]

pub mod dnsmasq;
pub mod http_server;
pub mod redis_server;
pub mod smtp;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The path of one of the package's binaries, built by cargo for the tests.
#[macro_export]
macro_rules! bin {
    ($name:literal) => {
        env!(concat!("CARGO_BIN_EXE_", $name))
    };
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let text = std::fs::read_to_string(root().join("schema/event.schema.json"))
            .expect("read schema/event.schema.json");
        let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema compiles")
    })
}

/// Panics, naming every violation, unless `ev` validates against
/// `schema/event.schema.json`.
pub fn validate(ev: &Value) {
    let errors: Vec<String> = validator()
        .iter_errors(ev)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "event does not match schema/event.schema.json:\n  {}\nevent: {ev}",
        errors.join("\n  ")
    );
}

/// Parses NDJSON, validating each line against the schema.
pub fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"));
            validate(&v);
            v
        })
        .collect()
}

/// A child process killed (with its process group) when dropped.
pub struct Guard {
    pub child: Child,
    pub name: String,
}

impl Guard {
    /// Starts `cmd` in a process group of its own, so that dropping the
    /// guard also kills anything it started.
    pub fn spawn(mut cmd: Command, name: &str) -> Guard {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {name}: {e} (scripts/test installs what the tests need)")
        });
        Guard {
            child,
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the process (not its group).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// stdout as events, each validated against the schema.
    pub fn events(&self) -> Vec<Value> {
        events(&self.stdout)
    }

    /// The single event printed; panics if there is not exactly one.
    pub fn event(&self) -> Value {
        let evs = self.events();
        assert_eq!(
            evs.len(),
            1,
            "want one event, got {}: {}\nstderr: {}",
            evs.len(),
            self.stdout,
            self.stderr
        );
        evs.into_iter().next().unwrap()
    }
}

/// Runs `bin` with `args`, feeding `stdin`, killing it after `limit`.
/// Panics if it has to be killed: nothing a test runs may hang.
pub fn run_with(
    bin: &str,
    args: &[&str],
    stdin: Option<&str>,
    envs: &[(&str, &str)],
    limit: Duration,
) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut g = Guard::spawn(cmd, bin);
    if let Some(input) = stdin {
        let mut w = g.child.stdin.take().unwrap();
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = w.write_all(input.as_bytes());
        });
    }
    let mut out = g.child.stdout.take().unwrap();
    let mut err = g.child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let code = loop {
        if let Some(st) = g.child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            drop(g);
            panic!("{bin} {args:?} still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    Run {
        code,
        stdout: to.join().unwrap(),
        stderr: te.join().unwrap(),
        elapsed,
    }
}

/// Runs `bin` with `args` and no stdin, with a 30 s limit.
pub fn run(bin: &str, args: &[&str]) -> Run {
    run_with(bin, args, None, &[], Duration::from_secs(30))
}

/// Runs `bin` in stream mode with `input` on stdin, with a 60 s limit.
pub fn run_stdin(bin: &str, args: &[&str], input: &str) -> Run {
    run_with(bin, args, Some(input), &[], Duration::from_secs(60))
}

/// A port on 127.0.0.1 that was free a moment ago (for servers that must
/// be told a port, like redis-server; servers written in the tests bind
/// port 0 themselves instead).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_port(port: u16, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {limit:?}");
}

/// The path of a program the tests need, or a panic saying how to get it.
/// Tests never skip themselves when a program is missing.
pub fn need(prog: &str) -> PathBuf {
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/lib/nagios/plugins"].map(PathBuf::from))
        .collect::<Vec<_>>();
    for dir in candidates {
        let p = dir.join(prog);
        if p.is_file() {
            return p;
        }
    }
    panic!("{prog} is not installed: scripts/test installs what the tests need");
}

/// A fresh temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "pup-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
