//! A real redis-server (Debian's) on 127.0.0.1 on a free port, killed when
//! dropped, for every test that needs Redis (the probe's own tests,
//! pup-sched and end-to-end tests).
//!
//! ```ignore
//! let r = RedisServer::start(&["--requirepass", "s3cret"]);
//! run(bin!("pup-probe-redis"), &[&r.url()]);
//! ```

use super::{free_port, need, Guard, TempDir};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One redis-server process with its own directory (log, no dump files:
/// saving is off unless a test turns it on).
pub struct RedisServer {
    /// The port it listens on (the TLS port for [`RedisServer::start_tls`]).
    pub port: u16,
    /// Whether `port` speaks TLS.
    pub tls: bool,
    guard: Option<Guard>,
    dir: TempDir,
}

impl RedisServer {
    /// A plain-text server with `extra` arguments appended
    /// (`--requirepass x`, `--replicaof 127.0.0.1 N`, `--user …`).
    pub fn start(extra: &[&str]) -> RedisServer {
        Self::launch(false, extra)
    }

    /// A TLS-only server (`--port 0 --tls-port N`) presenting `cert`/`key`
    /// (PEM), not asking clients for certificates.
    pub fn start_tls(cert: &Path, key: &Path, extra: &[&str]) -> RedisServer {
        let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let mut args = vec![
            "--tls-cert-file",
            c,
            "--tls-key-file",
            k,
            "--tls-auth-clients",
            "no",
        ];
        args.extend_from_slice(extra);
        Self::launch(true, &args)
    }

    fn launch(tls: bool, extra: &[&str]) -> RedisServer {
        let exe = need("redis-server");
        let dir = TempDir::new("redis");
        let log = dir.join("redis.log");
        // A free port can be taken between the check and the bind: retry
        // with another one when the server dies at start.
        for _ in 0..5 {
            let port = free_port();
            let p = port.to_string();
            let mut cmd = Command::new(&exe);
            if tls {
                cmd.args(["--port", "0", "--tls-port", &p]);
            } else {
                cmd.args(["--port", &p]);
            }
            cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log)
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut guard = Guard::spawn(cmd, "redis-server");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = guard.child.try_wait() {
                    break;
                }
                // Its own log line, not just a listening port: another
                // test's server may have taken the port first.
                let ready = std::fs::read_to_string(&log)
                    .is_ok_and(|l| l.contains("Ready to accept connections"));
                if ready && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return RedisServer {
                        port,
                        tls,
                        guard: Some(guard),
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(guard);
        }
        panic!(
            "redis-server {extra:?} did not start; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// `redis://127.0.0.1:PORT` (or `rediss://`).
    pub fn url(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            if self.tls { "rediss" } else { "redis" },
            self.port
        )
    }

    /// Runs `redis-cli -p PORT ARGS` against a plain-text server and
    /// returns its trimmed stdout (pass `--user`/`--pass` in `args` when
    /// the server wants them).
    pub fn cli(&self, args: &[&str]) -> String {
        assert!(!self.tls, "cli() speaks plain text only");
        let out = Command::new(need("redis-cli"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "--no-auth-warning",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// One field of `INFO` (`role`, `master_link_status`…), via redis-cli.
    pub fn info(&self, field: &str) -> Option<String> {
        self.cli(&["INFO"]).lines().find_map(|l| {
            l.strip_prefix(field)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        })
    }

    /// Waits until `INFO` shows `field:value`; panics after `limit`.
    pub fn wait_info(&self, field: &str, value: &str, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.info(field).as_deref() == Some(value) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "redis on {} never showed {field}:{value} within {limit:?} (now {:?})",
            self.port,
            self.info(field)
        );
    }

    /// Kills the server now (the replica on the other end sees its link
    /// drop at once).
    pub fn stop(&mut self) {
        self.guard.take();
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}
