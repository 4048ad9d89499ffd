//! pup-sched against real commands: monitoring-plugins (check_dummy,
//! check_tcp), shell commands that misbehave on purpose, and real probes
//! in stream mode. Every event is validated against the schema.

mod common;

use common::{Guard, TempDir};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const SCHED: &str = bin!("pup-sched");

fn plugin(name: &str) -> String {
    common::need(name).display().to_string()
}

/// pup-sched running in the background, its events arriving on a channel.
struct Running {
    guard: Guard,
    events: Receiver<Value>,
    stderr: std::thread::JoinHandle<String>,
}

impl Running {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(SCHED);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut guard = Guard::spawn(cmd, "pup-sched");
        let out = guard.child.stdout.take().unwrap();
        let mut err = guard.child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v = common::events(&line).remove(0);
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Running {
            guard,
            events: rx,
            stderr,
        }
    }

    /// Events until `n` match `pred` (all events seen are returned).
    fn until(&self, n: usize, limit: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let end = Instant::now() + limit;
        let mut seen = Vec::new();
        let mut hits = 0;
        while hits < n {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    if pred(&v) {
                        hits += 1;
                    }
                    seen.push(v);
                }
                Err(_) => panic!("only {hits} of {n} wanted events after {limit:?}: {seen:#?}"),
            }
        }
        seen
    }

    /// Results of check `name`, `n` of them.
    fn results(&self, name: &str, n: usize, limit: Duration) -> Vec<Value> {
        self.until(n, limit, |v| v["type"] == "result" && v["check"] == name)
            .into_iter()
            .filter(|v| v["type"] == "result" && v["check"] == name)
            .collect()
    }

    /// Sends SIGTERM and waits for the exit; returns (code, remaining
    /// events, stderr).
    fn stop(mut self, limit: Duration) -> (i32, Vec<Value>, String) {
        self.guard.signal("TERM");
        let end = Instant::now() + limit;
        let code = loop {
            if let Some(st) = self.guard.child.try_wait().unwrap() {
                break st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < end,
                "pup-sched still running {limit:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let rest: Vec<Value> = self.events.iter().collect();
        let stderr = self.stderr.join().unwrap();
        (code, rest, stderr)
    }
}

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn unix_ms(ts: &str) -> u128 {
    let t = pup::event::parse_ts(ts).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

// ---------------------------------------------------------------- config

#[test]
fn config_errors_name_file_line_and_column_exactly() {
    let d = TempDir::new("sched-cfg");
    let known = "timeout, retry, jitter, tag.KEY, fail-after, recover-after, remind";
    let cases: &[(&str, String)] = &[
        (
            "# c\n\nweb 30s retyr=10s cmd\n",
            format!("bad.conf:3:9: unknown option \"retyr\" (known: {known})"),
        ),
        (
            "a 1s cmd\nb 1s cmd\n  a 2s other\n",
            "bad.conf:3:3: duplicate check name \"a\" (first defined at bad.conf:1)".into(),
        ),
        (
            "web fast cmd\n",
            "bad.conf:1:5: bad interval \"fast\" (write it like 500ms, 30s, 5m, 1h)".into(),
        ),
        (
            "web 30 cmd\n",
            "bad.conf:1:5: bad interval \"30\" (write it like 500ms, 30s, 5m, 1h)".into(),
        ),
        (
            "web 10ms cmd\n",
            "bad.conf:1:5: interval \"10ms\" is shorter than the minimum, 100ms".into(),
        ),
        (
            "web 30s cmd --x 'open\n",
            "bad.conf:1:17: unterminated single quote".into(),
        ),
        (
            "web 30s \\\n  cmd \"open\n",
            "bad.conf:2:7: unterminated double quote".into(),
        ),
        (
            "web 30s cmd --password ${PUP_TEST_NOPE}\n",
            "bad.conf:1:24: environment variable \"PUP_TEST_NOPE\" is not set".into(),
        ),
        (
            "web 30s timeout=5s\n",
            "bad.conf:1:19: check \"web\" has no command".into(),
        ),
        (
            "web\n",
            "bad.conf:1:4: check \"web\" needs an interval and a command: NAME EVERY [KEY=VALUE...] COMMAND [ARGS...]".into(),
        ),
        (
            "web 10s timeout=20s cmd\n",
            "bad.conf:1:9: timeout 20s is longer than the interval 10s: runs would overlap".into(),
        ),
        (
            "web 10s fail-after=0 cmd\n",
            "bad.conf:1:9: bad fail-after= value \"0\" (write a whole number, 1 or more)".into(),
        ),
        (
            "web 10s retry=soon cmd\n",
            "bad.conf:1:9: bad retry= value \"soon\" (write a duration like 500ms, 30s, 5m)".into(),
        ),
        (
            "web 10s jitter=10s cmd\n",
            "bad.conf:1:9: jitter 10s must be shorter than the interval 10s".into(),
        ),
        (
            "web 10s tag.=x cmd\n",
            "bad.conf:1:9: tag key \"\" must be letters, digits, '_', '-' or '.'".into(),
        ),
        (
            "include nowhere.conf\n",
            format!(
                "bad.conf:1:9: cannot read include {}: No such file or directory",
                d.join("nowhere.conf").display()
            ),
        ),
        (
            "include a b\n",
            "bad.conf:1:1: include takes one path: include PATH".into(),
        ),
    ];
    for (text, want) in cases {
        let path = write(&d, "bad.conf", text);
        let r = common::run_with(
            SCHED,
            &["--check", &path],
            None,
            &[],
            Duration::from_secs(10),
        );
        assert_eq!(r.code, 2, "config {text:?}: {}", r.stderr);
        let want = format!("pup-sched: {}\n", want.replace("bad.conf", &path));
        assert_eq!(r.stderr, want, "config {text:?}");
        assert_eq!(r.stdout, "", "nothing on stdout for a bad config");
    }
    // Running (not --check) a bad config is the same error and exit 2.
    let path = write(&d, "bad.conf", "web 30s retyr=1s cmd\n");
    let r = common::run(SCHED, &[&path]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(":1:9: unknown option \"retyr\""),
        "{}",
        r.stderr
    );
    let r = common::run(SCHED, &[&d.join("missing.conf").display().to_string()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .ends_with("missing.conf:0:0: cannot read: No such file or directory\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn includes_variables_continuations_and_the_listing() {
    let d = TempDir::new("sched-inc");
    std::fs::create_dir(d.join("conf.d")).unwrap();
    write(&d, "conf.d/b.conf", "b 1m  cmd-b\n");
    write(&d, "conf.d/a.conf", "a 30s cmd-a ${PUP_TEST_SECRET}\n");
    write(&d, "conf.d/skip.txt", "not a config\n");
    write(&d, "conf.d/dup.conf", "# nothing but a comment \\\n");
    let main = write(
        &d,
        "main.conf",
        "include conf.d\n\
         web 10s timeout=2s retry=5s jitter=1s tag.team=web \\\n\
         \x20   fail-after=3 recover-after=2 remind=1h \\\n\
         \x20   pup-probe-http 'http://x/ y' --contains \"A ${PUP_TEST_SECRET}\" # comment\n",
    );
    let r = common::run_with(
        SCHED,
        &["--check", &main],
        None,
        &[("PUP_TEST_SECRET", "s3cret 'q")],
        Duration::from_secs(10),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert!(lines[0].starts_with("a\t30s\toffset="), "{}", lines[0]);
    assert!(
        lines[0].ends_with("\ttimeout=10s\tcmd-a 's3cret '\\''q'"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("b\t1m\toffset="), "{}", lines[1]);
    assert!(
        lines[2].ends_with(
            "\ttimeout=2s retry=5s jitter=1s tag.team=web fail-after=3 recover-after=2 remind=1h\t\
             pup-probe-http 'http://x/ y' --contains 'A s3cret '\\''q'"
        ),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "3 checks OK");
}

// --------------------------------------------------------------- running

#[test]
fn offsets_spread_checks_and_do_not_move_across_restarts() {
    let d = TempDir::new("sched-spread");
    let dummy = plugin("check_dummy");
    let mut conf = String::new();
    for n in ["alpha", "beta", "gamma", "delta"] {
        conf.push_str(&format!("{n} 1s {dummy} 0 {n}\n"));
    }
    let path = write(&d, "p.conf", &conf);
    let list = |_: ()| -> Vec<(String, u128)> {
        let r = common::run(SCHED, &["--check", &path]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
            .lines()
            .filter(|l| l.contains("\toffset="))
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                let s = f[2].trim_start_matches("offset=").trim_end_matches('s');
                (
                    f[0].to_string(),
                    (s.parse::<f64>().unwrap() * 1000.0).round() as u128,
                )
            })
            .collect()
    };
    let offsets = list(());
    assert_eq!(offsets, list(()), "offsets are stable across runs");
    let mut distinct: Vec<u128> = offsets.iter().map(|o| o.1).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        4,
        "every name gets its own offset: {offsets:?}"
    );
    // Two separate runs of the scheduler put every check on the same
    // phase: scheduled_at modulo the interval is the listed offset.
    for _restart in 0..2 {
        let s = Running::start(&["--heartbeat", "1h", &path], &[]);
        for (name, off) in &offsets {
            let r = &s.results(name, 1, Duration::from_secs(5))[0];
            let at = unix_ms(r["scheduled_at"].as_str().unwrap());
            let phase = at % 1000;
            assert!(
                phase.abs_diff(*off) <= 1 || phase.abs_diff(*off) >= 999,
                "{name}: scheduled at phase {phase} ms, offset {off} ms"
            );
            assert_eq!(r["interval_ms"], 1000.0);
            assert!(r["lag_ms"].as_f64().unwrap() < 100.0, "{r}");
        }
        let (code, _, stderr) = s.stop(Duration::from_secs(5));
        assert_eq!(code, 0, "{stderr}");
    }
}

#[test]
fn a_check_that_ignores_sigterm_and_forks_is_killed_with_its_child_and_never_overlaps() {
    let d = TempDir::new("sched-kill");
    let pidfile = d.join("child.pid").display().to_string();
    let path = write(
        &d,
        "p.conf",
        &format!(
            "stubborn 300ms timeout=300ms tag.k=v sh -c 'trap \"\" TERM; sleep 30 & echo $! > {pidfile}; wait'\n"
        ),
    );
    let s = Running::start(&["--heartbeat", "1h", &path], &[]);
    let rs = s.results("stubborn", 2, Duration::from_secs(10));
    let r = &rs[0];
    assert_eq!(r["status"], "down");
    assert_eq!(r["probe"], "sched");
    assert_eq!(r["error"]["kind"], "timeout");
    assert_eq!(r["error"]["layer"], "timing");
    assert_eq!(
        r["reason"],
        "timed out after 300ms: killed its process group"
    );
    assert_eq!(r["tags"]["k"], "v");
    // SIGTERM was ignored: the run lasted the timeout plus the 500 ms
    // before SIGKILL, so the next two slots found it still running.
    let took = r["duration_ms"].as_f64().unwrap();
    assert!((750.0..2000.0).contains(&took), "took {took} ms");
    assert!(rs[1]["skipped"].as_u64().unwrap() >= 1, "{}", rs[1]);
    // The forked child of the latest run is gone too (or a zombie about
    // to be reaped by init).
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let (code, rest, _) = s.stop(Duration::from_secs(5));
    assert_eq!(code, 0);
    assert!(rest
        .iter()
        .all(|v| v["type"] != "result" || v["status"] == "down"));
    let gone = |pid: &str| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(st) => st.split(") ").nth(1).is_some_and(|f| f.starts_with('Z')),
    };
    let end = Instant::now() + Duration::from_secs(2);
    while !gone(&pid) {
        assert!(Instant::now() < end, "the forked child {pid} survived");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nagios_plugins_give_status_reason_and_perfdata() {
    let d = TempDir::new("sched-nagios");
    let dummy = plugin("check_dummy");
    let tcp = plugin("check_tcp");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = common::free_port();
    let path = write(
        &d,
        "p.conf",
        &format!(
            "ok    500ms {dummy} 0 'all fine'\n\
             warn  500ms {dummy} 1 'getting full'\n\
             crit  500ms {dummy} 2 broken\n\
             unk   500ms {dummy} 3 'no idea'\n\
             tcp   500ms {tcp} -H 127.0.0.1 -p {open}\n\
             tcpno 500ms {tcp} -H 127.0.0.1 -p {closed}\n\
             missing 500ms /nonexistent/check_x\n"
        ),
    );
    let s = Running::start(&["--heartbeat", "1h", &path], &[]);
    let want: &[(&str, &str, Option<&str>, &str)] = &[
        ("ok", "up", None, "OK: all fine"),
        (
            "warn",
            "degraded",
            Some("nagios_warning"),
            "WARNING: getting full",
        ),
        ("crit", "down", Some("nagios_critical"), "CRITICAL: broken"),
        ("unk", "unknown", Some("nagios_unknown"), "UNKNOWN: no idea"),
    ];
    for (name, status, kind, reason) in want {
        let r = &s.results(name, 1, Duration::from_secs(5))[0];
        assert_eq!(r["probe"], "nagios", "{r}");
        assert_eq!(r["status"], *status, "{r}");
        assert_eq!(r["reason"], *reason, "{r}");
        assert_eq!(r["error"]["kind"].as_str(), *kind, "{r}");
        assert_eq!(
            r["details"]["exit_code"],
            ["ok", "warn", "crit", "unk"]
                .iter()
                .position(|n| n == name)
                .unwrap() as u64
        );
        assert!(r["target"].as_str().unwrap().starts_with(&dummy));
    }
    let r = &s.results("tcp", 1, Duration::from_secs(5))[0];
    assert_eq!(r["status"], "up", "{r}");
    assert!(r["reason"].as_str().unwrap().starts_with("TCP OK"), "{r}");
    let perf = &r["details"]["perfdata"][0];
    assert_eq!(perf["label"], "time", "{r}");
    assert_eq!(perf["uom"], "s", "{r}");
    assert!(perf["value"].as_f64().unwrap() >= 0.0, "{r}");
    assert_eq!(perf["min"], 0.0, "{r}");
    let r = &s.results("tcpno", 1, Duration::from_secs(5))[0];
    assert_eq!(r["status"], "down", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("Connection refused"),
        "{r}"
    );
    let r = &s.results("missing", 1, Duration::from_secs(5))[0];
    assert_eq!(r["status"], "unknown");
    assert_eq!(r["probe"], "sched");
    assert_eq!(r["error"]["kind"], "exec_failed");
    assert_eq!(
        r["reason"],
        "cannot run /nonexistent/check_x: No such file or directory (os error 2)"
    );
    drop(listener);
    let (code, _, _) = s.stop(Duration::from_secs(5));
    assert_eq!(code, 0);
}

#[test]
fn a_command_printing_result_events_is_used_as_it_is_with_sched_fields_added() {
    let d = TempDir::new("sched-json");
    let ev = r#"{"v":1,"type":"result","check":"whatever","probe":"custom","target":"t","status":"down","ts":"2026-11-23T20:10:53.123Z","duration_ms":1.5,"reason":"nope","error":{"layer":"tcp","kind":"connect_refused"},"tags":{"from":"cmd","team":"cmd"},"extra_field":42}"#;
    let path = write(
        &d,
        "p.conf",
        &format!(
            "custom 400ms fail-after=3 recover-after=2 remind=1h tag.team=ops printf '%s\\n' 'not json' '{ev}'\n"
        ),
    );
    let s = Running::start(&["--heartbeat", "1h", &path], &[]);
    let r = &s.results("custom", 1, Duration::from_secs(5))[0];
    assert_eq!(r["check"], "custom");
    assert_eq!(r["probe"], "custom");
    assert_eq!(r["status"], "down");
    assert_eq!(r["reason"], "nope");
    assert_eq!(r["ts"], "2026-11-23T20:10:53.123Z");
    assert_eq!(r["extra_field"], 42, "unknown fields are kept");
    assert_eq!(r["tags"]["from"], "cmd");
    assert_eq!(r["tags"]["team"], "ops", "the config's tags win");
    assert_eq!(r["fail_after"], 3);
    assert_eq!(r["recover_after"], 2);
    assert_eq!(r["remind_ms"], 3_600_000.0);
    assert_eq!(r["interval_ms"], 400.0);
    assert!(r["lag_ms"].is_number() && r["scheduled_at"].is_string());
    s.stop(Duration::from_secs(5));
}

#[test]
fn retry_runs_a_failing_check_more_often() {
    let d = TempDir::new("sched-retry");
    let dummy = plugin("check_dummy");
    let path = write(&d, "p.conf", &format!("f 2s retry=200ms {dummy} 2 down\n"));
    let s = Running::start(&["--heartbeat", "1h", &path], &[]);
    let rs = s.results("f", 4, Duration::from_secs(5));
    let at: Vec<u128> = rs
        .iter()
        .map(|r| unix_ms(r["scheduled_at"].as_str().unwrap()))
        .collect();
    for w in at.windows(2) {
        assert!(w[1] - w[0] <= 250, "retry spacing {at:?}");
    }
    s.stop(Duration::from_secs(5));
}

#[test]
fn heartbeats_come_at_start_and_on_time() {
    let d = TempDir::new("sched-hb");
    let dummy = plugin("check_dummy");
    let path = write(
        &d,
        "p.conf",
        &format!("a 1s {dummy} 0 x\nb 1s {dummy} 0 y\n"),
    );
    let t = Instant::now();
    let s = Running::start(&["--heartbeat", "300ms", &path], &[]);
    let hb: Vec<Value> = s
        .until(4, Duration::from_secs(5), |v| v["type"] == "heartbeat")
        .into_iter()
        .filter(|v| v["type"] == "heartbeat")
        .collect();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(850),
        "4 heartbeats 300ms apart took {took:?}"
    );
    assert_eq!(hb[0]["check"], "pup-sched");
    assert_eq!(hb[0]["checks"], 2);
    assert_eq!(hb[0]["interval_ms"], 300.0);
    assert_eq!(hb[0]["pid"], s.guard.pid());
    for k in [
        "in_flight",
        "started",
        "skipped",
        "lag_max_ms",
        "dropped",
        "late",
        "probes",
    ] {
        assert!(hb[1][k].is_number(), "heartbeat lacks {k}: {}", hb[1]);
    }
    s.stop(Duration::from_secs(5));
}

#[test]
fn sigterm_lets_running_checks_finish_then_exits_0() {
    let d = TempDir::new("sched-drain");
    let started = d.join("started").display().to_string();
    let path = write(
        &d,
        "p.conf",
        &format!("slow 1s timeout=900ms sh -c 'touch {started}; sleep 0.5; echo \"OK drained\"'\n"),
    );
    let s = Running::start(&["--heartbeat", "1h", "--grace", "5s", &path], &[]);
    let end = Instant::now() + Duration::from_secs(5);
    while !std::path::Path::new(&started).exists() {
        assert!(Instant::now() < end, "the check never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = Instant::now();
    let (code, rest, stderr) = s.stop(Duration::from_secs(5));
    assert_eq!(code, 0, "{stderr}");
    let r: Vec<&Value> = rest.iter().filter(|v| v["type"] == "result").collect();
    assert_eq!(r.len(), 1, "{rest:?}");
    assert_eq!(r[0]["reason"], "OK drained");
    assert_eq!(r[0]["status"], "up");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn sighup_reloads_keeping_phases_and_a_bad_config_keeps_the_old() {
    let d = TempDir::new("sched-reload");
    let dummy = plugin("check_dummy");
    let path = write(
        &d,
        "p.conf",
        &format!("keep 500ms {dummy} 0 keep\ngone 500ms {dummy} 0 gone\n"),
    );
    let s = Running::start(&["--heartbeat", "1h", &path], &[]);
    let before = s.results("keep", 2, Duration::from_secs(5));
    s.results("gone", 1, Duration::from_secs(5));
    write(
        &d,
        "p.conf",
        &format!("# reordered\nnew 500ms {dummy} 1 new\nkeep 500ms {dummy} 0 keep\n"),
    );
    s.guard.signal("HUP");
    let after = s.until(3, Duration::from_secs(5), |v| v["check"] == "new");
    // A `gone` result may still come from a run started before the
    // reload; none may start after the first result of `new`.
    let first_new = after.iter().position(|v| v["check"] == "new").unwrap();
    assert!(
        after[first_new..].iter().all(|v| v["check"] != "gone"),
        "a removed check still runs: {after:#?}"
    );
    let phase = |v: &Value| unix_ms(v["scheduled_at"].as_str().unwrap()) % 500;
    let keep_after: Vec<&Value> = after.iter().filter(|v| v["check"] == "keep").collect();
    assert!(keep_after.len() >= 2, "{after:#?}");
    for k in &keep_after {
        assert!(
            phase(k).abs_diff(phase(&before[0])) <= 1,
            "keep moved: {} then {}",
            before[0]["scheduled_at"],
            k["scheduled_at"]
        );
    }
    // A bad config: reported, and the old one keeps running.
    write(&d, "p.conf", "keep 500ms retyr=1s x\n");
    s.guard.signal("HUP");
    let more = s.until(2, Duration::from_secs(5), |v| v["check"] == "new");
    assert!(more.iter().any(|v| v["check"] == "keep"));
    let (code, _, stderr) = s.stop(Duration::from_secs(5));
    assert_eq!(code, 0);
    assert!(stderr.contains("reloaded"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pup-sched: reload failed, keeping the running config: {path}:1:12: unknown option \"retyr\""
        )),
        "{stderr}"
    );
}

#[test]
fn a_closed_stdout_ends_pup_sched_quietly() {
    let d = TempDir::new("sched-pipe");
    let dummy = plugin("check_dummy");
    let path = write(&d, "p.conf", &format!("a 200ms {dummy} 0 x\n"));
    let mut cmd = Command::new(SCHED);
    cmd.args(["--heartbeat", "100ms", &path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut g = Guard::spawn(cmd, "pup-sched");
    let mut out = BufReader::new(g.child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    common::events(&line);
    drop(out);
    let end = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(st) = g.child.try_wait().unwrap() {
            break st.code();
        }
        assert!(
            Instant::now() < end,
            "pup-sched kept running with stdout closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    g.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(err, "");
}

#[test]
fn a_long_lived_probe_that_dies_gives_unknown_results_and_is_restarted() {
    let d = TempDir::new("sched-died");
    // A real program named like a probe: reads one line, then exits.
    let probe = d.join("pup-probe-dies");
    std::fs::write(&probe, "#!/bin/sh\nread line\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = write(
        &d,
        "p.conf",
        &format!("x 600ms {} target\n", probe.display()),
    );
    let s = Running::start(&["--heartbeat", "1h", &path], &[]);
    let rs = s.results("x", 2, Duration::from_secs(6));
    for r in &rs {
        assert_eq!(r["status"], "unknown", "{r}");
        assert_eq!(r["probe"], "sched");
        assert!(
            ["probe_died", "exec_failed"].contains(&r["error"]["kind"].as_str().unwrap()),
            "{r}"
        );
    }
    assert_eq!(rs[0]["error"]["kind"], "probe_died");
    assert!(
        rs[0]["reason"].as_str().unwrap().contains("exited"),
        "{}",
        rs[0]
    );
    s.stop(Duration::from_secs(5));
}

#[test]
fn help_is_complete() {
    let r = common::run(SCHED, &["--help"]);
    assert_eq!(r.code, 0);
    for flag in [
        "--check",
        "--heartbeat",
        "--grace",
        "--probe-jobs",
        "--max-output",
        "--no-stream",
        "[default: 30s]",
        "SIGHUP",
        "fail-after=",
    ] {
        assert!(r.stdout.contains(flag), "--help lacks {flag}");
    }
    let r = common::run(SCHED, &["--bogus", "x"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

// ------------------------------------------------- stream-fed probes

/// The fields that say what a probe saw. Timings and times differ from
/// run to run, and so does `details` (dnsmasq rotates the order of the
/// answers it gives; the compared answer set is in `assertions`).
fn verdict(v: &Value) -> Value {
    let mut o = serde_json::Map::new();
    for k in [
        "probe",
        "target",
        "status",
        "reason",
        "error",
        "assertions",
        "fingerprint",
        "tags",
    ] {
        o.insert(k.into(), v[k].clone());
    }
    Value::Object(o)
}

/// Runs `checks` (name, probe args) through pup-sched, fed to one
/// long-lived probe, and through `--no-stream` (one process per check),
/// and each line by hand; all three must give the same verdicts.
fn stream_matches_by_hand(probe: &str, checks: &[(&str, Vec<String>)]) {
    let d = TempDir::new("sched-stream");
    let mut conf = String::new();
    for (name, args) in checks {
        let words: Vec<String> = std::iter::once(probe.to_string())
            .chain(args.iter().cloned())
            .map(|w| pup::shell::quote(&w))
            .collect();
        conf.push_str(&format!("{name} 1s timeout=900ms {}\n", words.join(" ")));
    }
    let path = write(&d, "p.conf", &conf);
    let mut by_mode = Vec::new();
    for mode in [
        &["--heartbeat", "300ms"][..],
        &["--heartbeat", "300ms", "--no-stream"][..],
    ] {
        let mut args = mode.to_vec();
        args.push(&path);
        let s = Running::start(&args, &[]);
        let mut got = std::collections::BTreeMap::new();
        let mut probes_seen = 0;
        for v in s.until(checks.len(), Duration::from_secs(10), |v| {
            v["type"] == "result"
        }) {
            if v["type"] == "heartbeat" {
                probes_seen = probes_seen.max(v["probes"].as_u64().unwrap());
            } else {
                got.entry(v["check"].as_str().unwrap().to_string())
                    .or_insert(v);
            }
        }
        // One more heartbeat, to see the long-lived probe process.
        for v in s.until(1, Duration::from_secs(5), |v| v["type"] == "heartbeat") {
            if v["type"] == "heartbeat" {
                probes_seen = probes_seen.max(v["probes"].as_u64().unwrap());
            }
        }
        let streamed = !mode.contains(&"--no-stream");
        assert_eq!(
            probes_seen,
            u64::from(streamed),
            "long-lived probes in {mode:?}"
        );
        let (code, _, stderr) = s.stop(Duration::from_secs(5));
        assert_eq!(code, 0, "{stderr}");
        by_mode.push(got);
    }
    for (name, args) in checks {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["--timeout", "900ms"]);
        let by_hand = common::run(probe, &a).event();
        let want = verdict(&by_hand);
        for got in &by_mode {
            let ev = got
                .get(*name)
                .unwrap_or_else(|| panic!("no result for {name}: {got:?}"));
            assert_eq!(verdict(ev), want, "check {name}: scheduled vs by hand");
            assert_eq!(ev["check"], *name);
        }
    }
}

#[test]
fn stream_fed_dns_probe_gives_the_same_results_as_by_hand() {
    use common::dnsmasq::Dnsmasq;
    let dns = Dnsmasq::start(&[
        "--host-record=www.pup.test,192.0.2.1",
        "--host-record=two.pup.test,192.0.2.2",
        "--host-record=two.pup.test,192.0.2.3",
    ]);
    let server = dns.server();
    let a = |v: &[&str]| -> Vec<String> {
        let mut w: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        w.extend(["--server".to_string(), server.clone()]);
        w
    };
    stream_matches_by_hand(
        bin!("pup-probe-dns"),
        &[
            ("ok", a(&["www.pup.test", "A", "--expect", "192.0.2.1"])),
            (
                "set",
                a(&[
                    "two.pup.test",
                    "--expect",
                    "192.0.2.3",
                    "--expect",
                    "192.0.2.2",
                    "--authoritative",
                ]),
            ),
            ("wrong", a(&["www.pup.test", "--expect", "192.0.2.99"])),
            ("nx", a(&["gone.pup.test"])),
            (
                "quoted",
                a(&[
                    "www.pup.test",
                    "--expect-any",
                    "192.0.2.1",
                    "--tag",
                    "note=two words",
                ]),
            ),
        ],
    );
}

#[test]
fn output_is_capped_and_jitter_delays_within_its_bound() {
    let d = TempDir::new("sched-cap");
    let dummy = plugin("check_dummy");
    let path = write(
        &d,
        "p.conf",
        &format!(
            "big 1s sh -c 'head -c 300000 /dev/zero | tr \"\\\\0\" x; echo; echo second'\n\
             jit 400ms jitter=300ms {dummy} 0 j\n\
             noprobe 1s /nonexistent/pup-probe-nothing x\n"
        ),
    );
    let off = |name: &str| pup::sched::offset(name, Duration::from_millis(400)).as_millis();
    let s = Running::start(&["--heartbeat", "1h", "--max-output", "1KiB", &path], &[]);
    let r = &s.results("big", 1, Duration::from_secs(5))[0];
    assert_eq!(r["details"]["truncated"], true, "{r}");
    assert_eq!(r["reason"].as_str().unwrap().len(), 1024);
    assert!(r["details"].get("long_output").is_none());
    let rs = s.results("jit", 4, Duration::from_secs(5));
    let delays: Vec<u128> = rs
        .iter()
        .map(|r| (unix_ms(r["scheduled_at"].as_str().unwrap()) + 400 - off("jit")) % 400)
        .collect();
    assert!(delays.iter().all(|&d| d <= 301), "{delays:?}");
    assert!(
        delays.iter().any(|&d| d > 2),
        "no jitter at all: {delays:?}"
    );
    let rs = s.results("noprobe", 2, Duration::from_secs(5));
    for r in rs {
        assert_eq!(r["error"]["kind"], "exec_failed");
        assert_eq!(
            r["reason"],
            "cannot run /nonexistent/pup-probe-nothing: No such file or directory (os error 2)"
        );
    }
    s.stop(Duration::from_secs(5));
}

#[test]
fn stream_fed_redis_probe_gives_the_same_results_as_by_hand() {
    use common::redis_server::RedisServer;
    let r = RedisServer::start(&[]);
    let url = r.url();
    let closed = format!("redis://127.0.0.1:{}", common::free_port());
    stream_matches_by_hand(
        bin!("pup-probe-redis"),
        &[
            (
                "master",
                vec![url.clone(), "--role".into(), "master".into()],
            ),
            (
                "wrong-role",
                vec![url.clone(), "--role".into(), "replica".into()],
            ),
            ("refused", vec![closed]),
        ],
    );
}

#[test]
fn stream_fed_http_probe_gives_the_same_results_as_by_hand() {
    use common::http_server::{Response, Server};
    let srv = Server::http(|req| match req.path.as_str() {
        "/ok" => Response::ok("Welcome home"),
        "/moved" => Response::redirect(301, "/ok"),
        "/gone" => Response::new(404, "not here"),
        _ => Response::ok("something else"),
    });
    let closed = format!("http://127.0.0.1:{}/", common::free_port());
    let w = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    stream_matches_by_hand(
        bin!("pup-probe-http"),
        &[
            ("ok", w(&[&srv.url("/ok"), "--contains", "Welcome"])),
            (
                "words",
                w(&[
                    &srv.url("/ok"),
                    "--contains",
                    "Welcome home",
                    "--tag",
                    "k=a b",
                ]),
            ),
            (
                "wrong-body",
                w(&[&srv.url("/other"), "--contains", "Welcome"]),
            ),
            ("gone", w(&[&srv.url("/gone")])),
            ("moved", w(&[&srv.url("/moved")])),
            ("refused", w(&[&closed])),
        ],
    );
}

#[test]
fn check_http_perfdata_against_the_test_server() {
    use common::http_server::{Response, Server};
    let srv = Server::http(|req| match req.path.as_str() {
        "/ok" => Response::ok("Welcome home"),
        _ => Response::new(500, "broken"),
    });
    let d = TempDir::new("sched-check-http");
    let http = plugin("check_http");
    let port = srv.port().to_string();
    let path = write(
        &d,
        "p.conf",
        &format!(
            "web 500ms {http} -H 127.0.0.1 -p {port} -u /ok -s Welcome\n\
             err 500ms {http} -H 127.0.0.1 -p {port} -u /bad\n"
        ),
    );
    let s = Running::start(&["--heartbeat", "1h", &path], &[]);
    let r = &s.results("web", 1, Duration::from_secs(5))[0];
    assert_eq!(r["status"], "up", "{r}");
    assert!(r["reason"].as_str().unwrap().starts_with("HTTP OK"), "{r}");
    let perf = r["details"]["perfdata"].as_array().unwrap();
    let labels: Vec<&str> = perf.iter().map(|p| p["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["time", "size"], "{r}");
    assert_eq!(perf[0]["uom"], "s");
    assert_eq!(perf[1]["uom"], "B");
    assert!(perf[1]["value"].as_f64().unwrap() > 0.0);
    let r = &s.results("err", 1, Duration::from_secs(5))[0];
    assert_eq!(r["status"], "down", "{r}");
    assert_eq!(r["error"]["kind"], "nagios_critical");
    assert!(r["reason"].as_str().unwrap().contains("500"), "{r}");
    s.stop(Duration::from_secs(5));
}
