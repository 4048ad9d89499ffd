//! End to end: the real binaries in a real pipe, `pup-sched CONF |
//! pup-route HOOKS`, against real servers, with real hook scripts.
//! Each test asserts what a person on call would see: exactly one page
//! when a service goes down, exactly one when it comes back.

mod common;

use common::dnsmasq::Dnsmasq;
use common::http_server::{Response, Server};
use common::{Guard, TempDir};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `pup-sched CONF | pup-route ARGS`, with pup-route's stdout collected.
struct Pipeline {
    // Field order is drop order: the router is killed first, then the
    // scheduler.
    route: Guard,
    sched: Guard,
    lines: Arc<Mutex<Vec<Value>>>,
}

/// PATH with the test build's binaries first, so that a config names
/// `pup-probe-http` as a user would.
fn path_with_bins() -> String {
    let dir = Path::new(bin!("pup-probe-http")).parent().unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

impl Pipeline {
    fn start(conf: &Path, route_args: &[&str]) -> Pipeline {
        let mut sched = Command::new(bin!("pup-sched"));
        sched
            .arg(conf)
            .env("PATH", path_with_bins())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut sched = Guard::spawn(sched, "pup-sched");
        let pipe = sched.child.stdout.take().unwrap();
        let mut route = Command::new(bin!("pup-route"));
        route
            .args(route_args)
            .stdin(Stdio::from(pipe))
            .stdout(Stdio::piped());
        let mut route = Guard::spawn(route, "pup-route");
        let out = route.child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("pup-route printed a non-JSON line ({e}): {line}"));
                common::validate(&v);
                l.lock().unwrap().push(v);
            }
        });
        Pipeline {
            route,
            sched,
            lines,
        }
    }

    /// Events of `kind` for `check` seen so far on pup-route's stdout.
    fn events(&self, kind: &str, check: &str) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == kind && e["check"] == check)
            .cloned()
            .collect()
    }

    /// Stops the scheduler with SIGTERM (it drains and exits; the router
    /// reads the end of its input, waits for its hooks and exits) and
    /// waits for both.
    fn stop(mut self) {
        self.sched.signal("TERM");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self.route.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the pipeline did not end within 20s of SIGTERM to pup-sched");
    }
}

/// Polls `f` until it is true, or panics after `limit` naming `what`.
fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// A hooks directory whose hooks for each of `types` append the event they
/// get (the file in $1) to `<dir>/<type>.log`, one line per run.
fn recording_hooks(dir: &TempDir, types: &[&str]) -> PathBuf {
    let hooks = dir.join("hooks.d");
    for t in types {
        let d = hooks.join(t);
        std::fs::create_dir_all(&d).unwrap();
        let log = dir.join(&format!("{t}.log"));
        let script = format!(
            "#!/bin/sh\n{{ cat \"$1\"; echo; }} >> '{}'\n",
            log.display()
        );
        let f = d.join("10-record");
        std::fs::write(&f, script).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    hooks
}

/// The events a recording hook got, each validated against the schema.
fn recorded(dir: &TempDir, t: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(&format!("{t}.log"))).unwrap_or_default();
    common::events(&text)
}

fn hello_server(port: u16) -> Server {
    let handler = |_: &common::http_server::Request| Response::ok("hello from e2e");
    if port == 0 {
        Server::http(handler)
    } else {
        Server::http_at(port, handler)
    }
}

#[test]
fn an_http_outage_pages_once_and_its_recovery_once_with_the_outage_length() {
    let dir = TempDir::new("e2e-http");
    let server = hello_server(0);
    let port = server.port();
    let conf = dir.join("puptime.conf");
    std::fs::write(
        &conf,
        format!(
            "web 300ms fail-after=2 recover-after=2 pup-probe-http http://127.0.0.1:{port}/ --contains hello\n"
        ),
    )
    .unwrap();
    let hooks = recording_hooks(&dir, &["down", "up"]);
    let p = Pipeline::start(&conf, &["-q", hooks.to_str().unwrap()]);

    // Up and checked a few times: no page.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        recorded(&dir, "down").is_empty(),
        "a down hook ran while the server was up"
    );

    let stopped = Instant::now();
    drop(server);
    wait_for("the down hook", Duration::from_secs(10), || {
        recorded(&dir, "down").len() == 1
    });
    // Stays down for several more checks: still one page.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        recorded(&dir, "down").len(),
        1,
        "the outage paged more than once"
    );
    let down = &recorded(&dir, "down")[0];
    assert_eq!(down["type"], "down");
    assert_eq!(down["check"], "web");
    assert_eq!(down["result"]["error"]["kind"], "connect_refused", "{down}");

    let _server = hello_server(port);
    let restarted = Instant::now();
    wait_for("the up hook", Duration::from_secs(10), || {
        recorded(&dir, "up").len() == 1
    });
    std::thread::sleep(Duration::from_millis(1000));
    p.stop();

    assert_eq!(recorded(&dir, "down").len(), 1);
    let ups = recorded(&dir, "up");
    assert_eq!(ups.len(), 1, "the recovery paged more than once: {ups:?}");
    let outage_ms = ups[0]["down_for_ms"]
        .as_f64()
        .expect("up carries down_for_ms");
    // The outage as the router saw it (first failing result to first good
    // one after the threshold) lies within what the test itself saw.
    let seen = restarted.duration_since(stopped).as_millis() as f64;
    assert!(
        outage_ms > 0.0 && outage_ms < seen + 2000.0,
        "down_for_ms {outage_ms} vs {seen} ms seen"
    );
}

#[test]
fn a_changed_dns_record_fires_one_changed_hook() {
    let dir = TempDir::new("e2e-dns");
    let dns = Dnsmasq::start(&[]);
    let name = format!("www.{}", common::dnsmasq::ZONE);
    dns.set_hosts(&format!("127.0.0.10 {name}\n"));
    dns.wait_for_a(&name, "127.0.0.10");
    let conf = dir.join("puptime.conf");
    std::fs::write(
        &conf,
        format!(
            "ns 300ms pup-probe-dns --server {} {name} A\n",
            dns.server()
        ),
    )
    .unwrap();
    let hooks = recording_hooks(&dir, &["changed", "down"]);
    let p = Pipeline::start(&conf, &[hooks.to_str().unwrap()]);
    wait_for("two results", Duration::from_secs(10), || {
        p.events("result", "ns").len() >= 2
    });
    assert!(
        recorded(&dir, "changed").is_empty(),
        "changed fired with nothing changed"
    );

    dns.set_hosts(&format!("127.0.0.11 {name}\n"));
    dns.wait_for_a(&name, "127.0.0.11");
    wait_for("the changed hook", Duration::from_secs(10), || {
        recorded(&dir, "changed").len() == 1
    });
    let n = p.events("result", "ns").len();
    wait_for("three more results", Duration::from_secs(10), || {
        p.events("result", "ns").len() >= n + 3
    });
    p.stop();

    let changed = recorded(&dir, "changed");
    assert_eq!(
        changed.len(),
        1,
        "one record change, one hook run: {changed:?}"
    );
    assert_ne!(
        changed[0]["fingerprint"],
        changed[0]["previous_fingerprint"]
    );
    assert!(
        recorded(&dir, "down").is_empty(),
        "a record change is not an outage"
    );
}

#[test]
fn a_router_killed_during_an_outage_neither_pages_twice_nor_loses_the_recovery() {
    let dir = TempDir::new("e2e-kill");
    let server = hello_server(0);
    let port = server.port();
    let conf = dir.join("puptime.conf");
    std::fs::write(
        &conf,
        format!("web 300ms fail-after=2 recover-after=2 pup-probe-http http://127.0.0.1:{port}/\n"),
    )
    .unwrap();
    let hooks = recording_hooks(&dir, &["down", "up"]);
    let state = dir.join("route.state");
    let args = ["--state", state.to_str().unwrap(), hooks.to_str().unwrap()];

    let first = Pipeline::start(&conf, &args);
    std::thread::sleep(Duration::from_millis(900));
    drop(server);
    wait_for("the down hook", Duration::from_secs(10), || {
        recorded(&dir, "down").len() == 1
    });
    // kill -9 the router mid-outage; the scheduler goes with its pipe.
    first.route.signal("KILL");
    drop(first);

    let second = Pipeline::start(&conf, &args);
    wait_for(
        "three failing results after the restart",
        Duration::from_secs(10),
        || second.events("result", "web").len() >= 3,
    );
    assert_eq!(
        recorded(&dir, "down").len(),
        1,
        "the restart paged the outage again"
    );

    let _server = hello_server(port);
    wait_for(
        "the up hook after the restart",
        Duration::from_secs(10),
        || recorded(&dir, "up").len() == 1,
    );
    second.stop();
    assert_eq!(recorded(&dir, "down").len(), 1);
    assert_eq!(recorded(&dir, "up").len(), 1);
}

#[test]
fn the_demo_runs_to_completion() {
    let dir = Path::new(bin!("pup-sched")).parent().unwrap();
    let r = common::run_with(
        common::root().join("scripts/demo").to_str().unwrap(),
        &[],
        None,
        &[("PUP_BIN_DIR", dir.to_str().unwrap())],
        Duration::from_secs(90),
    );
    assert_eq!(
        r.code, 0,
        "scripts/demo failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    assert!(r.stdout.contains("down hook: web is DOWN"), "{}", r.stdout);
    assert!(
        r.stdout.contains("up hook: web is back after"),
        "{}",
        r.stdout
    );
}
