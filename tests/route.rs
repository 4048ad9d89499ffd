//! pup-route end to end: real hook scripts written into a temporary
//! directory, real processes, every event printed validated against the
//! schema.

mod common;

use common::{validate, Guard, Run, TempDir};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROUTE: &str = bin!("pup-route");

/// A result line at second `s` after a fixed start.
fn res(check: &str, status: &str, s: u64) -> Value {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000 + s);
    let mut v = json!({"v":1,"type":"result","check":check,"probe":"http",
        "target":format!("http://{check}.test/"),"status":status,
        "ts":pup::event::format_ts(t),"duration_ms":1.5,
        "reason":format!("{check} is {status}")});
    if status != "up" {
        v["error"] = json!({"layer":"tcp","kind":"connect_refused"});
    }
    v
}

fn lines(evs: &[Value]) -> String {
    evs.iter().map(|e| format!("{e}\n")).collect()
}

/// Writes an executable hook script (mode 0755).
fn hook(root: &Path, dir: &str, name: &str, body: &str) -> PathBuf {
    let d = root.join(dir);
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A hook that records what it got: argv[1] path, the file's content and
/// mode, stdin and the PUP_ environment, into $LOGDIR/<dir>.<n>/.
const RECORDER: &str = r#"d=$(mktemp -d "$LOGDIR/$DIRNAME.XXXXXX")
printf '%s' "$1" > "$d/arg"
cp "$1" "$d/file"
stat -c %a "$1" > "$d/mode"
cat > "$d/stdin"
for v in PUP_EVENT PUP_CHECK PUP_STATUS PUP_PREVIOUS_STATUS PUP_TARGET PUP_REASON PUP_HOOK; do
  eval "printf '%s=%s\n' $v \"\$$v\"" >> "$d/env"
done"#;

fn recorder(root: &Path, dir: &str) {
    hook(
        root,
        dir,
        "50-record",
        &RECORDER.replace("$DIRNAME", &dir.replace('-', "_")),
    );
}

/// One recorded hook run.
#[derive(Debug)]
struct Rec {
    arg: String,
    file: String,
    mode: String,
    stdin: String,
    env: BTreeMap<String, String>,
}

fn records(logdir: &Path, dir: &str) -> Vec<Rec> {
    let prefix = format!("{}.", dir.replace('-', "_"));
    let mut out = Vec::new();
    for e in std::fs::read_dir(logdir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if !name.starts_with(&prefix) {
            continue;
        }
        let p = e.path();
        let rd = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        let env = rd("env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.push(Rec {
            arg: rd("arg"),
            file: rd("file"),
            mode: rd("mode").trim().to_string(),
            stdin: rd("stdin"),
            env,
        });
    }
    out
}

fn route(args: &[&str], input: &str, envs: &[(&str, &str)]) -> Run {
    common::run_with(ROUTE, args, Some(input), envs, Duration::from_secs(60))
}

fn of_type<'a>(evs: &'a [Value], t: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["type"] == t).collect()
}

#[test]
fn every_event_type_fires_its_hooks_with_file_stdin_and_environment() {
    let tmp = TempDir::new("route-all");
    let root = tmp.join("hooks");
    let logdir = tmp.join("log");
    std::fs::create_dir_all(&logdir).unwrap();
    let dirs = [
        "result", "down", "up", "degraded", "reminder", "flapping", "changed", "stale", "all",
    ];
    for d in dirs {
        recorder(&root, d);
    }
    // Skipped by name or mode: must never run.
    for bad in [".hidden", "backup~", "x.disabled"] {
        hook(&root, "down", bad, "touch \"$LOGDIR/SKIPPED\"");
    }
    let noexec = root.join("down/noexec");
    std::fs::write(&noexec, "#!/bin/sh\ntouch \"$LOGDIR/SKIPPED\"\n").unwrap();
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).unwrap();

    let fa = "sha256:0000000000000000000000000000000a";
    let fb = "sha256:0000000000000000000000000000000b";
    let mut input = vec![json!({"v":1,"type":"heartbeat","check":"pup-sched",
        "ts":res("a","up",0)["ts"],"interval_ms":1000})];
    let a = |st: &str, s: u64| {
        let mut r = res("a", st, s);
        r["interval_ms"] = json!(1000);
        r
    };
    let mut r0 = a("up", 0);
    r0["fingerprint"] = json!(fa);
    let mut r1 = a("up", 1);
    r1["fingerprint"] = json!(fb);
    input.extend([r0, r1, a("down", 2), a("down", 3)]);
    // Silence until 15 s: stale (3 intervals) and a reminder (10 s).
    input.extend([a("down", 15), a("up", 16)]);
    let mut d = a("degraded", 17);
    d["error"] = json!({"layer":"timing","kind":"slow"});
    let mut d2 = d.clone();
    d2["ts"] = a("up", 18)["ts"].clone();
    input.extend([d, d2]);
    // Flapping: another check alternating.
    for k in 0..22 {
        input.push(res("f", if k % 2 == 0 { "up" } else { "down" }, 20 + k));
    }
    let out = route(
        &[
            root.to_str().unwrap(),
            "--replay",
            "--fail-after",
            "2",
            "--recover-after",
            "1",
            "--remind",
            "10s",
        ],
        &lines(&input),
        &[("LOGDIR", logdir.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let evs = out.events();
    let derived: Vec<&Value> = evs
        .iter()
        .filter(|e| !["result", "heartbeat", "hook"].contains(&e["type"].as_str().unwrap()))
        .collect();
    let types: Vec<&str> = derived
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "changed", "down", "stale", "reminder", "up", "degraded", "flapping",
    ] {
        assert!(types.contains(&t), "no {t} event in {types:?}");
    }
    // Stale: the heartbeat source (3 s after its only heartbeat), then
    // check a in its silence (at 3 + 3 s, stamped when it fell due), then
    // a again while check f flaps.
    let stale = of_type(&evs, "stale");
    assert_eq!(stale.len(), 3, "{stale:?}");
    assert_eq!(stale[0]["check"], "pup-sched");
    assert_eq!(stale[0]["heartbeat"], true);
    assert_eq!(stale[1]["check"], "a");
    assert_eq!(stale[1]["silent_ms"], 3000);
    assert_eq!(stale[1]["ts"], res("a", "up", 6)["ts"]);
    // The reminder fell due 10 s after the down (at 3 s).
    let rem = of_type(&evs, "reminder");
    assert_eq!(rem.len(), 1);
    assert_eq!(rem[0]["ts"], res("a", "up", 13)["ts"]);
    assert!(!logdir.join("SKIPPED").exists(), "a skipped hook ran");

    // result/ ran once per result, all/ once per derived event, never for
    // results; hook events report each run.
    let results = input.iter().filter(|e| e["type"] == "result").count();
    assert_eq!(records(&logdir, "result").len(), results);
    assert_eq!(records(&logdir, "all").len(), derived.len());
    let hook_evs = of_type(&evs, "hook");
    assert_eq!(hook_evs.len(), results + 2 * derived.len());
    assert!(hook_evs
        .iter()
        .all(|h| h["ok"] == true && h["exit_code"] == 0));

    for t in [
        "down", "up", "degraded", "reminder", "flapping", "changed", "stale",
    ] {
        let recs = records(&logdir, t);
        let want: Vec<&&Value> = derived.iter().filter(|e| e["type"] == t).collect();
        assert_eq!(recs.len(), want.len(), "{t} hooks ran {} times", recs.len());
        for rec in &recs {
            let ev: Value = serde_json::from_str(&rec.file).unwrap();
            validate(&ev);
            assert_eq!(rec.file, rec.stdin, "{t}: file and stdin differ");
            assert!(
                want.iter().any(|w| ***w == ev),
                "{t}: hook got an event not on stdout: {ev}"
            );
            assert_eq!(rec.mode, "600", "{t}: temp file mode");
            assert!(!Path::new(&rec.arg).exists(), "{t}: temp file left behind");
            assert_eq!(rec.env["PUP_EVENT"], t);
            assert_eq!(rec.env["PUP_CHECK"], ev["check"].as_str().unwrap());
            assert_eq!(rec.env["PUP_STATUS"], ev["status"].as_str().unwrap_or(""));
            assert_eq!(
                rec.env["PUP_PREVIOUS_STATUS"],
                ev["previous_status"].as_str().unwrap_or("")
            );
            assert_eq!(rec.env["PUP_TARGET"], ev["target"].as_str().unwrap_or(""));
            assert_eq!(rec.env["PUP_REASON"], ev["reason"].as_str().unwrap());
            assert_eq!(rec.env["PUP_HOOK"], format!("{t}/50-record"));
        }
    }
    let down = records(&logdir, "down");
    let ev: Value = serde_json::from_str(&down[0].file).unwrap();
    assert_eq!(ev["previous_status"], "up");
    assert_eq!(ev["result"]["status"], "down");
    assert_eq!(down[0].env["PUP_TARGET"], "http://a.test/");
    let up = of_type(&evs, "up");
    // Down at 3 s (fail-after 2), up at 16 s.
    assert_eq!(up[0]["down_for_ms"], 13_000, "{}", up[0]);
}

#[test]
fn a_hanging_hook_and_its_child_are_killed_at_the_timeout() {
    let tmp = TempDir::new("route-hang");
    let root = tmp.join("hooks");
    let log = tmp.join("log");
    std::fs::create_dir_all(&log).unwrap();
    hook(
        &root,
        "result",
        "hang",
        "sleep 300 &\necho $! > \"$LOGDIR/child.pid\"\necho about to hang >&2\nsleep 300",
    );
    let start = Instant::now();
    let out = route(
        &[root.to_str().unwrap(), "--hook-timeout", "1s"],
        &lines(&[res("w", "up", 0)]),
        &[("LOGDIR", log.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let evs = out.events();
    let h = of_type(&evs, "hook");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["timed_out"], true, "{}", h[0]);
    assert_eq!(h[0]["ok"], false);
    assert_eq!(h[0]["exit_code"], Value::Null);
    assert_eq!(h[0]["stderr"], "about to hang");
    assert!(h[0]["duration_ms"].as_f64().unwrap() >= 1000.0);
    let pid = std::fs::read_to_string(log.join("child.pid")).unwrap();
    let pid = pid.trim();
    // Gone, or a zombie waiting for a reaper that is not ours.
    std::thread::sleep(Duration::from_millis(200));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().unwrap_or("").trim().chars().next();
    assert!(
        stat.is_empty() || state == Some('Z'),
        "the hook's child {pid} survived: {stat}"
    );
}

#[test]
fn a_flooding_hook_is_cut_off_and_the_stream_stays_valid() {
    let tmp = TempDir::new("route-flood");
    let root = tmp.join("hooks");
    hook(&root, "result", "10-err", "exec yes flooding-stderr >&2");
    hook(
        &root,
        "result",
        "20-out",
        "yes flooding-stdout | head -c 5000000",
    );
    let start = Instant::now();
    let out = route(
        &[root.to_str().unwrap(), "--hook-timeout", "20s", "-q"],
        &lines(&[res("w", "up", 0)]),
        &[],
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    let evs = out.events(); // every line is a valid event
    let h = of_type(&evs, "hook");
    assert_eq!(h.len(), 2, "{}", out.stdout);
    let err = h.iter().find(|e| e["hook"] == "result/10-err").unwrap();
    assert_eq!(err["timed_out"], false);
    let s = err["stderr"].as_str().unwrap();
    assert!(s.len() <= 2048 && s.lines().count() <= 10, "{}", s.len());
    assert!(s.ends_with("[pup-route: stderr cut after 1 MiB]"), "{s}");
    let outh = h.iter().find(|e| e["hook"] == "result/20-out").unwrap();
    assert_eq!(outh["exit_code"], 0);
}

#[test]
fn a_failing_hook_triggers_hook_failed_once() {
    let tmp = TempDir::new("route-fail");
    let root = tmp.join("hooks");
    let log = tmp.join("log");
    std::fs::create_dir_all(&log).unwrap();
    hook(
        &root,
        "down",
        "10-fail",
        "echo cannot reach pager >&2\nexit 3",
    );
    recorder(&root, "hook-failed");
    // A failing hook-failed hook must not loop.
    hook(&root, "hook-failed", "90-fail-too", "exit 1");
    let input: Vec<Value> = (0..3).map(|k| res("w", "down", k)).collect();
    let out = route(
        &[root.to_str().unwrap(), "--replay", "-q"],
        &lines(&input),
        &[("LOGDIR", log.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let evs = out.events();
    let h = of_type(&evs, "hook");
    assert_eq!(h.len(), 3, "{}", out.stdout);
    assert_eq!(h[0]["hook"], "down/10-fail");
    assert_eq!(h[0]["exit_code"], 3);
    assert_eq!(h[0]["ok"], false);
    assert_eq!(h[0]["stderr"], "cannot reach pager");
    let recs = records(&log, "hook_failed");
    assert_eq!(recs.len(), 1);
    let got: Value = serde_json::from_str(&recs[0].file).unwrap();
    validate(&got);
    assert_eq!(got["type"], "hook");
    assert_eq!(got["hook"], "down/10-fail");
    assert_eq!(got["trigger"]["type"], "down");
    assert_eq!(recs[0].env["PUP_EVENT"], "hook");
    assert_eq!(recs[0].env["PUP_CHECK"], "w");
}

#[test]
fn hooks_run_in_event_order_per_check_and_a_slow_check_delays_no_other() {
    let tmp = TempDir::new("route-order");
    let root = tmp.join("hooks");
    let log = tmp.join("log");
    std::fs::create_dir_all(&log).unwrap();
    // Random small sleeps shuffle completion order across checks.
    let body = "sleep 0.0$(( $(od -An -N1 -tu1 /dev/urandom) % 5 ))\n\
                if [ \"$PUP_CHECK\" = slow ] && mkdir \"$LOGDIR/slept\" 2>/dev/null; then\n\
                  for i in $(seq 300); do\n\
                    [ \"$(cat \"$LOGDIR\"/[abcd] 2>/dev/null | wc -l)\" -ge 48 ] && break\n\
                    sleep 0.1\n\
                  done\n\
                fi\n\
                echo \"$PUP_EVENT $(jq -r .ts \"$1\")\" >> \"$LOGDIR/$PUP_CHECK\"";
    hook(&root, "down", "10-log", body);
    hook(&root, "up", "10-log", body);
    let mut input = Vec::new();
    for k in 0..12u64 {
        for c in ["slow", "a", "b", "c", "d"] {
            input.push(res(c, if k % 2 == 0 { "down" } else { "up" }, k));
        }
    }
    let out = route(
        &[
            root.to_str().unwrap(),
            "--replay",
            "-q",
            "-j",
            "4",
            "--fail-after",
            "1",
            "--recover-after",
            "1",
            "--flap-high",
            "101",
        ],
        &lines(&input),
        &[("LOGDIR", log.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let evs = out.events();
    for c in ["a", "b", "c", "d"] {
        let want: Vec<String> = evs
            .iter()
            .filter(|e| e["check"] == c && (e["type"] == "down" || e["type"] == "up"))
            .map(|e| {
                format!(
                    "{} {}",
                    e["type"].as_str().unwrap(),
                    e["ts"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(want.len(), 12);
        let got: Vec<String> = std::fs::read_to_string(log.join(c))
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(got, want, "check {c}: hooks ran out of order");
    }
    // The slow check's first hook waits (up to 30 s) until the other
    // checks' 48 runs are logged: they finish only if it holds up no one.
    let hooks = of_type(&evs, "hook");
    let first_slow_done = hooks.iter().position(|h| h["check"] == "slow").unwrap();
    let others_done = hooks.iter().filter(|h| h["check"] != "slow").count();
    assert_eq!(others_done, 48);
    let others_before = hooks[..first_slow_done]
        .iter()
        .filter(|h| h["check"] != "slow")
        .count();
    assert_eq!(
        others_before, others_done,
        "other checks waited for the slow one"
    );
    assert_eq!(hooks.iter().filter(|h| h["check"] == "slow").count(), 12);
}

#[test]
fn insecure_hooks_are_refused_with_a_clear_error() {
    type Spoil = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Spoil, &str)> = vec![
        (
            "group-writable",
            Box::new(|p| {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o775)).unwrap()
            }),
            "writable by its group (mode 0775)",
        ),
        (
            "world-writable",
            Box::new(|p| {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o757)).unwrap()
            }),
            "writable by anyone (mode 0757)",
        ),
        (
            "owned by nobody",
            Box::new(|p| std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap()),
            "owned by uid 65534, not by the running user (uid 0) or root",
        ),
        (
            "writable directory",
            Box::new(|p| {
                std::fs::set_permissions(
                    p.parent().unwrap(),
                    std::fs::Permissions::from_mode(0o777),
                )
                .unwrap()
            }),
            "writable by anyone (mode 0777)",
        ),
    ];
    for (what, spoil, msg) in cases {
        let tmp = TempDir::new("route-perm");
        let root = tmp.join("hooks");
        let p = hook(&root, "down", "page", "touch \"$LOGDIR/RAN\"");
        spoil(&p);
        let out = route(&[root.to_str().unwrap()], &lines(&[res("w", "up", 0)]), &[]);
        assert_eq!(out.code, 2, "{what}: {}", out.stderr);
        assert!(out.stderr.contains("refusing"), "{what}: {}", out.stderr);
        assert!(out.stderr.contains(msg), "{what}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{what}");
    }
}

#[test]
fn hostile_field_values_change_nothing_outside_their_own_values() {
    let tmp = TempDir::new("route-hostile");
    let root = tmp.join("hooks");
    let log = tmp.join("log");
    let trap = tmp.join("trap");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::create_dir_all(&trap).unwrap();
    recorder(&root, "down");
    let t = trap.display();
    let evil = format!("x; touch {t}/semi $(touch {t}/subst) `touch {t}/tick` | touch {t}/pipe");
    let check = format!("../../{evil}\n\u{0}../etc/passwd");
    let mut input = Vec::new();
    for k in 0..3 {
        let mut r = res("w", "down", k);
        r["check"] = json!(check);
        r["target"] = json!(format!("http://{evil}/\u{0}"));
        r["reason"] = json!(format!("line one\nline two\r\u{0}{evil}"));
        input.push(r);
    }
    // A type naming a directory outside must not choose one.
    input.push(json!({"v":1,"type":"../../down","check":"w","ts":res("w","up",5)["ts"]}));
    let text = lines(&input);
    assert!(text.contains("\\u0000"), "NULs are escaped in the JSON");
    let out = route(
        &[root.to_str().unwrap(), "--replay", "-q"],
        &text,
        &[("LOGDIR", log.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown event type \"../../down\""),
        "{}",
        out.stderr
    );
    let entries: Vec<_> = std::fs::read_dir(&trap).unwrap().collect();
    assert!(entries.is_empty(), "something ran: {entries:?}");
    let evs = out.events();
    let down = of_type(&evs, "down");
    assert_eq!(down.len(), 1);
    assert_eq!(down[0]["check"], check);
    assert_eq!(down[0]["result"]["reason"], input[0]["reason"]);
    let recs = records(&log, "down");
    assert_eq!(recs.len(), 1);
    let got: Value = serde_json::from_str(&recs[0].file).unwrap();
    assert_eq!(got["check"], check, "the value arrives intact in the file");
    // Environment values: one line each, NUL and newlines made spaces.
    let reason = &recs[0].env["PUP_REASON"];
    assert!(reason.starts_with("3 failing results in a row: line one line two  x; touch"));
    assert_eq!(recs[0].env["PUP_CHECK"], check.replace(['\n', '\0'], " "));
    // Only the recorder's own files were written.
    let logged: Vec<String> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    // The hooks tree is as it was.
    let mut names: Vec<String> = walk(&root);
    names.sort();
    assert_eq!(names, ["down", "down/50-record"]);
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        if p.is_dir() {
            out.extend(walk(&p).into_iter().map(|s| format!("{rel}/{s}")));
        }
        out.push(rel);
    }
    out
}

/// A pup-route running live, fed line by line.
struct Live {
    g: Guard,
    stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Live {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Live {
        let mut cmd = Command::new(ROUTE);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut g = Guard::spawn(cmd, "pup-route");
        let stdin = g.child.stdin.take();
        let out = g.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Live {
            g,
            stdin,
            rx,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, ev: &Value) {
        let w = self.stdin.as_mut().unwrap();
        writeln!(w, "{ev}").unwrap();
        w.flush().unwrap();
    }

    /// Waits for an event matching `pred`, up to `limit`.
    fn wait_for(&mut self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    let v: Value = serde_json::from_str(&l).unwrap();
                    validate(&v);
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!("no matching event within {limit:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Closes stdin and collects the rest of the output and the exit code.
    fn finish(mut self) -> (i32, Vec<Value>, String) {
        drop(self.stdin.take());
        while let Ok(l) = self.rx.recv_timeout(Duration::from_secs(30)) {
            let v: Value = serde_json::from_str(&l).unwrap();
            validate(&v);
            self.seen.push(v);
        }
        let st = self.g.child.wait().unwrap();
        let mut err = String::new();
        use std::io::Read;
        let _ = self.g.child.stderr.take().unwrap().read_to_string(&mut err);
        (st.code().unwrap_or(-1), std::mem::take(&mut self.seen), err)
    }
}

fn wait_file_lines(p: &Path, n: usize, limit: Duration) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let c = std::fs::read_to_string(p).unwrap_or_default();
        if c.lines().count() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} did not reach {n} lines", p.display());
}

#[test]
fn kill_9_during_hook_runs_then_restart_redoes_them_without_a_second_down() {
    let tmp = TempDir::new("route-crash");
    let root = tmp.join("hooks");
    let log = tmp.join("log");
    std::fs::create_dir_all(&log).unwrap();
    hook(
        &root,
        "down",
        "10-page",
        "echo $$ >> \"$LOGDIR/starts\"\nsleep 5\necho done >> \"$LOGDIR/dones\"",
    );
    let state = tmp.join("route.state");
    let args = [root.to_str().unwrap(), "--state", state.to_str().unwrap()];
    let envs = [("LOGDIR", log.to_str().unwrap())];
    let mut live = Live::start(&args, &envs);
    for k in 0..3 {
        live.send(&res("w", "down", k));
    }
    live.wait_for(Duration::from_secs(10), |e| e["type"] == "down");
    wait_file_lines(&log.join("starts"), 1, Duration::from_secs(10));
    live.g.signal("KILL");
    let _ = live.g.child.wait();
    // Kill the orphaned hook too: its run must count as unfinished.
    let pid = std::fs::read_to_string(log.join("starts")).unwrap();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", pid.trim())])
        .status();
    drop(live);
    // The down is on disk before its hook ran: in the journal, synced,
    // ahead of the next (once a second) rewrite of the state file.
    let journal = std::fs::read_to_string(tmp.join("route.state.journal")).unwrap();
    let rec = journal
        .lines()
        .find(|l| l.contains("\"state\":"))
        .expect("a check state in the journal");
    let rec: Value = serde_json::from_str(rec).unwrap();
    assert_eq!(rec["state"]["name"], "w");
    assert_eq!(rec["state"]["announced"], "down");

    let mut live = Live::start(&args, &envs);
    for k in 3..8 {
        live.send(&res("w", "down", k));
    }
    let h = live.wait_for(Duration::from_secs(20), |e| e["type"] == "hook");
    assert_eq!(h["hook"], "down/10-page");
    assert_eq!(h["exit_code"], 0);
    assert_eq!(h["trigger"]["type"], "down");
    let (code, evs, err) = live.finish();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("running 1 hook run(s) left unfinished"),
        "{err}"
    );
    assert!(of_type(&evs, "down").is_empty(), "a second down: {evs:?}");
    let starts = std::fs::read_to_string(log.join("starts")).unwrap();
    assert_eq!(starts.lines().count(), 2, "the run was redone once");
    // And a third start has nothing left to redo.
    let out = route(&args, "", &envs);
    assert_eq!(out.code, 0);
    assert!(!out.stderr.contains("unfinished"), "{}", out.stderr);
}

#[test]
fn replay_is_deterministic() {
    let tmp = TempDir::new("route-replay");
    let root = tmp.join("hooks");
    hook(&root, "down", "10-ok", "exit 0");
    hook(&root, "all", "10-ok", "exit 0");
    let mut input = Vec::new();
    for k in 0..60u64 {
        for c in ["a", "b", "c"] {
            let st = match (k / 7 + c.len() as u64 * k / 11) % 3 {
                0 => "up",
                1 => "down",
                _ => "degraded",
            };
            let mut r = res(c, st, k * 10);
            if st == "degraded" {
                r["error"] = json!({"layer":"timing","kind":"slow"});
            }
            r["interval_ms"] = json!(10_000);
            r["fingerprint"] = json!(format!("sha256:{:032x}", k / 20));
            input.push(r);
        }
    }
    let text = lines(&input);
    let args = [root.to_str().unwrap(), "--replay", "--remind", "30s"];
    let a = route(&args, &text, &[]);
    let b = route(&args, &text, &[]);
    assert_eq!(a.code, 0, "{}", a.stderr);
    let norm = |r: &Run| -> (String, Vec<String>) {
        let mut main = String::new();
        let mut hooks = Vec::new();
        for e in r.events() {
            if e["type"] == "hook" {
                let mut h = e.clone();
                h["ts"] = json!("2000-01-01T00:00:00.000Z");
                h["duration_ms"] = json!(0);
                hooks.push(h.to_string());
            } else {
                main.push_str(&format!("{e}\n"));
            }
        }
        hooks.sort();
        (main, hooks)
    };
    let (ma, ha) = norm(&a);
    let (mb, hb) = norm(&b);
    assert!(ma.lines().count() > input.len(), "some events were derived");
    assert_eq!(ma, mb);
    assert_eq!(ha, hb);
    // The raw outputs without hook lines are byte-identical too.
    let strip = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains("\"type\":\"hook\""))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(strip(&a.stdout), strip(&b.stdout));
}

#[test]
fn bad_lines_are_reported_and_skipped_and_unknown_types_pass() {
    let mut text = String::new();
    text.push_str(&format!("{}\n", res("w", "down", 0)));
    text.push_str("not json\n");
    text.push_str(&format!("{}\n", "x".repeat(100_000)));
    text.push_str("\u{1}\n");
    text.push_str(&format!("{}\n", res("w", "down", 1)));
    text.push_str(
        "{\"v\":1,\"type\":\"novel\",\"check\":\"w\",\"ts\":\"2026-11-23T20:10:53.123Z\"}\n",
    );
    text.push_str(
        "{\"v\":2,\"type\":\"result\",\"check\":\"w\",\"ts\":\"2026-11-23T20:10:53.123Z\"}\n",
    );
    text.push_str(&format!("{}", res("w", "down", 2))); // no final newline
    let mut raw = text.into_bytes();
    raw.splice(0..0, b"\xff\xfe\n".iter().copied());
    let out = common::run_with(
        ROUTE,
        &["--replay"],
        Some(&String::from_utf8_lossy(&raw)),
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let err = &out.stderr;
    assert!(err.contains("line 3: not an event"), "{err}");
    assert!(
        err.contains("line 4: longer than 65536 bytes (100000), skipped"),
        "{err}"
    );
    assert!(err.contains("line 5: not an event"), "{err}");
    assert!(
        err.contains("unknown event type \"novel\": passed through"),
        "{err}"
    );
    assert!(err.contains("schema version 2 is newer than 1"), "{err}");
    // The v2 line is not valid v1, so it cannot go through the validator:
    // check it passed through verbatim and validate the rest.
    let (v2, rest): (Vec<&str>, Vec<&str>) =
        out.stdout.lines().partition(|l| l.contains("\"v\":2"));
    assert_eq!(v2.len(), 1);
    let evs = common::events(&rest.join("\n"));
    assert_eq!(of_type(&evs, "novel").len(), 1);
    assert_eq!(of_type(&evs, "result").len(), 3);
    assert_eq!(
        of_type(&evs, "down").len(),
        1,
        "lines around bad ones count"
    );
}

#[test]
fn invalid_utf8_is_reported_with_its_line_number() {
    let mut cmd = Command::new(ROUTE);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut g = Guard::spawn(cmd, "pup-route");
    let mut w = g.child.stdin.take().unwrap();
    w.write_all(b"\n\xff\xfe\n").unwrap();
    drop(w);
    let mut err = String::new();
    use std::io::Read;
    g.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(g.child.wait().unwrap().success());
    assert!(err.contains("line 2: not UTF-8, skipped"), "{err}");
}

#[test]
fn live_mode_notices_a_check_going_silent_without_any_input() {
    let mut live = Live::start(&["-q"], &[]);
    let mut r = res("w", "up", 0);
    // pup-sched writes durations as fractional milliseconds.
    r["interval_ms"] = json!(200.0);
    live.send(&r);
    let start = Instant::now();
    let s = live.wait_for(Duration::from_secs(5), |e| e["type"] == "stale");
    assert_eq!(s["check"], "w");
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert!(s["silent_ms"].as_i64().unwrap() >= 600);
    let (code, _, _) = live.finish();
    assert_eq!(code, 0);
}

#[test]
fn hooks_run_as_the_hook_user() {
    let tmp = TempDir::new("route-user");
    let root = tmp.join("hooks");
    let log = tmp.join("log");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    hook(
        &root,
        "result",
        "10-who",
        "id -u > \"$LOGDIR/uid\"\ncp \"$1\" \"$LOGDIR/file\"\necho \"$HOME $USER\" > \"$LOGDIR/env\"",
    );
    let out = route(
        &[root.to_str().unwrap(), "--hook-user", "nobody"],
        &lines(&[res("w", "up", 0)]),
        &[("LOGDIR", log.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("running as root"), "{}", out.stderr);
    let h = of_type(&out.events(), "hook")[0].clone();
    assert_eq!(h["exit_code"], 0, "{h}");
    assert_eq!(
        std::fs::read_to_string(log.join("uid")).unwrap().trim(),
        "65534"
    );
    let got: Value =
        serde_json::from_str(&std::fs::read_to_string(log.join("file")).unwrap()).unwrap();
    assert_eq!(got["check"], "w", "the hook user can read its event file");
    assert!(std::fs::read_to_string(log.join("env"))
        .unwrap()
        .contains("nobody"));

    // Without --hook-user, root gets a warning.
    let out = route(
        &[root.to_str().unwrap()],
        &lines(&[res("w", "up", 0)]),
        &[("LOGDIR", log.to_str().unwrap())],
    );
    assert!(
        out.stderr.contains("warning: running as root"),
        "{}",
        out.stderr
    );
    // An unknown user is a usage error.
    let out = route(
        &[root.to_str().unwrap(), "--hook-user", "no-such-user-x"],
        "",
        &[],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no user named \"no-such-user-x\""),
        "{}",
        out.stderr
    );
}

#[test]
fn dry_run_prints_what_would_run() {
    let tmp = TempDir::new("route-dry");
    let root = tmp.join("hooks");
    let log = tmp.join("log");
    std::fs::create_dir_all(&log).unwrap();
    hook(&root, "down", "10-page", "touch \"$LOGDIR/RAN\"");
    let input: Vec<Value> = (0..3).map(|k| res("w", "down", k)).collect();
    let out = route(
        &[root.to_str().unwrap(), "--replay", "--dry-run", "-q"],
        &lines(&input),
        &[("LOGDIR", log.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let evs = out.events();
    let h = of_type(&evs, "hook");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["dry_run"], true);
    assert_eq!(h[0]["hook"], "down/10-page");
    assert!(!log.join("RAN").exists());
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let mut input = String::new();
    for k in 0..20_000 {
        input.push_str(&format!("{}\n", res(&format!("c{}", k % 50), "up", k)));
    }
    let mut cmd = Command::new(ROUTE);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut g = Guard::spawn(cmd, "pup-route");
    let mut w = g.child.stdin.take().unwrap();
    let mut out = BufReader::new(g.child.stdout.take().unwrap());
    let feeder = std::thread::spawn(move || {
        let _ = w.write_all(input.as_bytes());
    });
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    validate(&serde_json::from_str(&first).unwrap());
    drop(out);
    let _ = feeder.join();
    let st = g.child.wait().unwrap();
    let mut err = String::new();
    use std::io::Read;
    g.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(st.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn usage_errors_exit_2_and_help_documents_every_flag() {
    let out = common::run(ROUTE, &["--fail-after", "0"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.starts_with("pup-route: "), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let out = common::run(ROUTE, &["/nonexistent/hooks"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("not a directory"), "{}", out.stderr);
    let out = common::run(ROUTE, &["--remind", "5"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("needs a unit"), "{}", out.stderr);
    let out = common::run(ROUTE, &["--flap-low", "60"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("--flap-low must not be above --flap-high"),
        "{}",
        out.stderr
    );
    let help = common::run(ROUTE, &["--help"]);
    assert_eq!(help.code, 0);
    for a in pup::route::command().get_arguments() {
        if let Some(l) = a.get_long() {
            assert!(
                help.stdout.contains(&format!("--{l}")),
                "--{l} missing from --help"
            );
        }
        assert!(a.get_help().is_some(), "{:?} has no help", a.get_id());
    }
    for word in [
        "PUP_PREVIOUS_STATUS",
        "hook-failed",
        "Exit status",
        "Examples",
    ] {
        assert!(help.stdout.contains(word), "--help lacks {word}");
    }
}

#[test]
fn policy_in_events_overrides_the_command_line() {
    let mut input = Vec::new();
    for k in 0..8u64 {
        let mut r = res("strict", if k < 6 { "down" } else { "up" }, k * 60);
        // As pup-sched writes them: counts as integers, durations in ms.
        r["fail_after"] = json!(1);
        r["recover_after"] = json!(2);
        r["remind_ms"] = json!(120000.0);
        input.push(r);
        input.push(res("lax", "down", k * 60));
    }
    let out = route(
        &["--replay", "-q", "--fail-after", "10", "--remind", "1h"],
        &lines(&input),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let evs = out.events();
    let kinds: Vec<String> = evs
        .iter()
        .map(|e| {
            format!(
                "{}:{}@{}",
                e["check"].as_str().unwrap(),
                e["type"].as_str().unwrap(),
                e["ts"].as_str().unwrap()
            )
        })
        .collect();
    let at = |s: u64| res("x", "up", s)["ts"].as_str().unwrap().to_string();
    assert_eq!(
        kinds,
        [
            format!("strict:down@{}", at(0)),
            format!("strict:reminder@{}", at(120)),
            format!("strict:reminder@{}", at(240)),
            // Still down at 360 s: the first good result is not enough.
            format!("strict:reminder@{}", at(360)),
            format!("strict:up@{}", at(420)),
        ],
        "lax never reaches --fail-after 10"
    );
}

#[test]
fn the_schema_holds_router_events_to_their_fields() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("schema/event.schema.json")).unwrap(),
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let down = json!({"v":1,"type":"down","check":"w","status":"down",
        "ts":"2026-11-23T20:10:53.123Z","reason":"3 failing results in a row: x",
        "previous_status":"up","previous_for_ms":1000,"result":res("w","down",0)});
    validate(&down);
    let hook_ev = json!({"v":1,"type":"hook","check":"w","ts":"2026-11-23T20:10:53.123Z",
        "reason":"r","hook":"result/x","event":"result","exit_code":0,"timed_out":false,
        "ok":true,"stderr":"","duration_ms":1.0,"trigger":res("w","down",0)});
    validate(&hook_ev);
    type Breaker = Box<dyn Fn(&mut Value)>;
    let breakers: Vec<(&str, Breaker)> = vec![
        (
            "no result",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("result");
            }),
        ),
        (
            "result not a result",
            Box::new(|e| {
                e["result"] = json!({"v":1});
            }),
        ),
        (
            "down with status up",
            Box::new(|e| e["status"] = json!("up")),
        ),
        (
            "up without down_for_ms",
            Box::new(|e| {
                e["type"] = json!("up");
                e["status"] = json!("up");
            }),
        ),
        (
            "bad previous status",
            Box::new(|e| e["previous_status"] = json!("sideways")),
        ),
        (
            "reminder without count",
            Box::new(|e| {
                e["type"] = json!("reminder");
                e["down_for_ms"] = json!(5);
            }),
        ),
        (
            "hook outside the known dirs",
            Box::new(|e| {
                *e = json!({"v":1,"type":"hook","check":"w","ts":"2026-11-23T20:10:53.123Z",
                "reason":"r","hook":"../etc/x","event":"down","exit_code":0,"timed_out":false,
                "ok":true,"stderr":"","duration_ms":1.0,"trigger":res("w","down",0)});
            }),
        ),
        (
            "hook run without exit code",
            Box::new(|e| {
                *e = json!({"v":1,"type":"hook","check":"w","ts":"2026-11-23T20:10:53.123Z",
                "reason":"r","hook":"down/x","event":"down","timed_out":false,
                "ok":true,"stderr":"","duration_ms":1.0,"trigger":res("w","down",0)});
            }),
        ),
    ];
    for (what, f) in breakers {
        let mut ev = down.clone();
        f(&mut ev);
        assert!(
            !v.is_valid(&ev),
            "schema accepted a router event with {what}: {ev}"
        );
    }
}

#[test]
fn sigterm_finishes_running_hooks_and_saves_the_state() {
    let tmp = TempDir::new("route-term");
    let root = tmp.join("hooks");
    let log = tmp.join("log");
    std::fs::create_dir_all(&log).unwrap();
    hook(
        &root,
        "result",
        "10-slow",
        "echo start >> \"$LOGDIR/starts\"\nsleep 1\necho done >> \"$LOGDIR/dones\"",
    );
    let state = tmp.join("st");
    let mut live = Live::start(
        &[root.to_str().unwrap(), "--state", state.to_str().unwrap()],
        &[("LOGDIR", log.to_str().unwrap())],
    );
    live.send(&res("w", "up", 0));
    wait_file_lines(&log.join("starts"), 1, Duration::from_secs(10));
    live.g.signal("TERM");
    let h = live.wait_for(Duration::from_secs(10), |e| e["type"] == "hook");
    assert_eq!(h["exit_code"], 0, "the running hook was not cut off: {h}");
    let st = live.g.child.wait().unwrap();
    assert_eq!(st.code(), Some(0));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["checks"][0]["name"], "w");
    let journal = std::fs::read_to_string(tmp.join("st.journal")).unwrap();
    assert!(journal.contains("{\"done\":1}"), "{journal}");
}

#[test]
fn a_hook_made_writable_after_start_is_refused_at_its_turn() {
    let tmp = TempDir::new("route-late");
    let root = tmp.join("hooks");
    let log = tmp.join("log");
    std::fs::create_dir_all(&log).unwrap();
    let p = hook(&root, "result", "10-x", "touch \"$LOGDIR/RAN\"");
    recorder(&root, "hook-failed");
    let mut live = Live::start(
        &[root.to_str().unwrap()],
        &[("LOGDIR", log.to_str().unwrap())],
    );
    // Started cleanly and ran it once; now someone loosens the file.
    live.send(&res("w", "up", 0));
    let h = live.wait_for(Duration::from_secs(10), |e| e["type"] == "hook");
    assert_eq!(h["ok"], true, "{h}");
    std::fs::remove_file(log.join("RAN")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    live.send(&res("w", "up", 1));
    let h = live.wait_for(Duration::from_secs(10), |e| e["type"] == "hook");
    assert_eq!(h["ok"], false);
    assert_eq!(h["exit_code"], Value::Null);
    let reason = h["reason"].as_str().unwrap();
    assert!(
        reason.contains("refusing") && reason.contains("writable by anyone"),
        "{reason}"
    );
    let (code, _, err) = live.finish();
    assert_eq!(code, 0);
    assert!(err.contains("refusing"), "{err}");
    assert!(!log.join("RAN").exists(), "the loosened hook ran");
    assert_eq!(
        records(&log, "hook_failed").len(),
        1,
        "hook-failed ran for it"
    );
}
