//! The example hooks in scripts/hooks/, run the way pup-route runs them
//! (the event in a 0600 temporary file as argv[1], the same JSON on stdin,
//! the PUP_* variables, no shell), against real local counterparts: an HTTP
//! server that records requests (slack, teams, webhook), an SMTP server with
//! STARTTLS and login (email), the sqlite3 command (sqlite), a file (log).

mod common;

use common::http_server::{Response, Server};
use common::smtp::{self, SmtpServer};
use common::{need, root, run_with, validate, Run, TempDir};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// A webhook receiver (Slack, Teams, any URL): answers every request with
/// `status` and `body`, and keeps the requests for the test to read.
fn recorder(status: u16, body: &str) -> Server {
    let body = body.to_string();
    Server::http(move |_| Response::new(status, body.clone()))
}

const HOOKS: [&str; 6] = ["log", "slack", "teams", "webhook", "email", "sqlite"];

fn hook_path(name: &str) -> String {
    root()
        .join("scripts/hooks")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Writes `event` into `dir` as pup-route does (mode 0600) and runs the
/// hook with only PATH, the PUP_* variables and `settings` in its
/// environment: `env -i` makes sure a developer's own SLACK_WEBHOOK_URL or
/// proxy settings never leak into a test.
fn run_hook_in(dir: &Path, name: &str, event: &Value, settings: &[(&str, &str)]) -> Run {
    validate(event);
    let text = serde_json::to_string(event).unwrap();
    let file = dir.join("event.json");
    let _ = std::fs::remove_file(&file);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
    // pup-route's variables are single lines of at most 1024 bytes.
    let field = |k: &str| -> String {
        let mut v = event
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .replace(['\r', '\n', '\0'], " ");
        while v.len() > 1024 {
            v.pop();
        }
        v
    };
    let mut args: Vec<String> = vec![
        "-i".into(),
        format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
        format!("PUP_EVENT={}", field("type")),
        format!("PUP_CHECK={}", field("check")),
        format!("PUP_STATUS={}", field("status")),
        format!("PUP_PREVIOUS_STATUS={}", field("previous_status")),
        format!("PUP_TARGET={}", field("target")),
        format!("PUP_REASON={}", field("reason")),
    ];
    args.extend(settings.iter().map(|(k, v)| format!("{k}={v}")));
    args.push(hook_path(name));
    args.push(file.to_string_lossy().into_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_with("env", &args, Some(&text), &[], Duration::from_secs(30))
}

/// Writes an executable script through a child process. Writing it from
/// this process would leave a moment where a child that another test thread
/// forks inherits the open file, and executing the script then fails with
/// "Text file busy" (ETXTBSY).
fn write_script(path: &Path, text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "cannot write {path:?}");
}

fn run_hook(name: &str, event: &Value, settings: &[(&str, &str)]) -> Run {
    let dir = TempDir::new(&format!("hook-{name}"));
    run_hook_in(dir.path(), name, event, settings)
}

#[track_caller]
fn assert_ok(r: &Run) {
    assert_eq!(r.code, 0, "hook failed: {r:?}");
    assert_eq!(r.stderr, "", "hook printed on stderr: {r:?}");
}

/// A failing run: non-zero exit, and exactly one stderr line that names
/// the hook and contains `what`.
#[track_caller]
fn assert_fails(r: &Run, hook: &str, what: &str) {
    assert_ne!(r.code, 0, "hook should have failed: {r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one stderr line: {r:?}");
    assert!(
        lines[0].starts_with(&format!("{hook}: ")) && lines[0].contains(what),
        "stderr should name {hook} and say {what:?}: {r:?}"
    );
}

fn result(check: &str, status: &str, reason: &str) -> Value {
    let mut r = json!({
        "v": 1, "type": "result", "check": check, "probe": "http",
        "target": "http://127.0.0.1:8080/health", "status": status,
        "ts": "2026-11-23T20:10:53.123Z", "duration_ms": 12.5, "reason": reason,
    });
    if status != "up" {
        r["error"] = json!({"layer": "tcp", "kind": "connect_refused"});
    }
    r
}

/// A router event the way pup-route describes it: the causing result
/// nested, the previous status, and on `up` how long the check was down.
fn routed(kind: &str, status: &str, previous: &str, reason: &str) -> Value {
    let res = result("web", status, reason);
    let mut ev = json!({
        "v": 1, "type": kind, "check": "web", "target": res["target"],
        "status": status, "previous_status": previous,
        "ts": "2026-11-23T20:15:58.123Z", "reason": reason, "result": res,
    });
    match kind {
        "down" => ev["previous_for_ms"] = json!(86_400_000),
        "up" => {
            ev["previous_for_ms"] = json!(305_000);
            ev["down_for_ms"] = json!(305_000);
        }
        "reminder" => {
            ev["down_for_ms"] = json!(305_000);
            ev["reminder"] = json!(1);
        }
        _ => {}
    }
    ev
}

fn down() -> Value {
    routed("down", "down", "up", "connect: connection refused")
}

fn up() -> Value {
    routed("up", "up", "down", "HTTP 200 in 3ms")
}

fn reminder() -> Value {
    routed("reminder", "down", "down", "connect: connection refused")
}

/// The event hook-failed/ hooks get: pup-route's report of a failed run.
fn hook_failed() -> Value {
    json!({"v": 1, "type": "hook", "check": "web", "hook": "down/pager",
        "event": "down", "exit_code": 1, "timed_out": false, "ok": false,
        "stderr": "pager: trying\npager: refused\n", "duration_ms": 20.0,
        "reason": "down/pager exited with 1", "ts": "2026-11-23T20:15:58.200Z",
        "trigger": down()})
}

// ---------------------------------------------------------------- all hooks

#[test]
fn every_hook_is_executable_documented_and_clean_under_shellcheck() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("## Example hooks")
        .nth(1)
        .expect("README has an \"Example hooks\" section");
    let shellcheck = need("shellcheck");
    for name in HOOKS {
        let path = hook_path(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{path} is not executable");
        let text = std::fs::read_to_string(&path).unwrap();
        for part in ["# For:", "# Settings:", "# Needs:", "# Usage:"] {
            assert!(text.contains(part), "{path}: usage header lacks {part}");
        }
        assert!(
            section.contains(&format!("`{name}`")),
            "README's Example hooks section does not list {name}"
        );
        let out = std::process::Command::new(&shellcheck)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shellcheck {name}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // And the executable bits are what git holds, not just this checkout.
    let out = std::process::Command::new("git")
        .args(["ls-files", "-s", "scripts/hooks"])
        .current_dir(root())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    for name in HOOKS {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!("scripts/hooks/{name}")))
            .unwrap_or_else(|| panic!("scripts/hooks/{name} is not in git: {listing}"));
        assert!(line.starts_with("100755 "), "git mode of {name}: {line}");
    }
}

#[test]
fn every_hook_refuses_to_run_without_its_settings() {
    for (hook, setting) in [
        ("log", "PUP_LOG_FILE"),
        ("slack", "SLACK_WEBHOOK_URL"),
        ("teams", "TEAMS_WEBHOOK_URL"),
        ("webhook", "PUP_WEBHOOK_URL"),
        ("email", "PUP_MAIL_TO"),
        ("sqlite", "PUP_SQLITE_DB"),
    ] {
        let r = run_hook(hook, &down(), &[]);
        assert_fails(&r, hook, setting);
    }
}

#[test]
fn every_hook_names_a_missing_command() {
    // A PATH holding only bash (and what a case adds): the hook must say
    // which command it lacks in its one line, not die on "command not found".
    let dir = TempDir::new("bare-path");
    let link = |prog: &str| std::os::unix::fs::symlink(need(prog), dir.join(prog)).unwrap();
    link("bash");
    let path = dir.path().to_str().unwrap();
    for (hook, setting, missing) in [
        ("log", "PUP_LOG_FILE", "jq"),
        ("slack", "SLACK_WEBHOOK_URL", "curl"),
        ("teams", "TEAMS_WEBHOOK_URL", "curl"),
        ("webhook", "PUP_WEBHOOK_URL", "curl"),
        ("email", "PUP_MAIL_TO", "jq"),
        ("sqlite", "PUP_SQLITE_DB", "sqlite3"),
    ] {
        let r = run_hook(hook, &down(), &[("PATH", path), (setting, "/dev/null")]);
        assert_fails(&r, hook, &format!("needs {missing}"));
    }
    // Signing needs openssl; without a secret the webhook does not.
    link("curl");
    link("jq");
    let server = recorder(200, "");
    let url = server.url("/in");
    let settings = [("PATH", path), ("PUP_WEBHOOK_URL", url.as_str())];
    assert_ok(&run_hook("webhook", &down(), &settings));
    let mut signed = settings.to_vec();
    signed.push(("PUP_WEBHOOK_SECRET", "k"));
    assert_fails(
        &run_hook("webhook", &down(), &signed),
        "webhook",
        "needs openssl",
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn every_hook_refuses_to_run_without_an_event_file() {
    for hook in HOOKS {
        let r = run_with(
            "env",
            &["-i", "PUP_LOG_FILE=/dev/null", &hook_path(hook)],
            None,
            &[],
            Duration::from_secs(30),
        );
        assert_fails(&r, hook, "no event file");
    }
}

// ---------------------------------------------------------------------- log

#[test]
fn log_appends_each_event_as_one_json_line() {
    let dir = TempDir::new("log-json");
    let file = dir.join("events.ndjson");
    std::fs::write(&file, "{\"kept\":true}\n").unwrap();
    let file_s = file.to_str().unwrap();
    // A number jq 1.6 would round if it reprinted the event.
    let mut res = result("web", "down", "line one\nline \"two\"");
    res["details"] = json!({"bytes": 12_345_678_901_234_567_890u64});
    let events = [res, down(), up()];
    for ev in &events {
        assert_ok(&run_hook("log", ev, &[("PUP_LOG_FILE", file_s)]));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], json!({"kept": true}), "earlier content is kept");
    assert_eq!(&lines[1..], &events[..]);
    // Byte for byte what pup-route wrote.
    let raw: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    assert_eq!(text.lines().skip(1).collect::<Vec<_>>(), raw);
}

#[test]
fn log_text_writes_one_readable_line_per_event() {
    let dir = TempDir::new("log-text");
    let file = dir.join("events.log");
    let settings = [
        ("PUP_LOG_FILE", file.to_str().unwrap()),
        ("PUP_LOG_FORMAT", "text"),
    ];
    // Newlines and a terminal escape must not reach the log as such.
    let mut res = result("web", "down", "refused\n\u{1b}[2Jby peer");
    res["duration_ms"] = json!(1.5);
    for ev in [&res, &down(), &up(), &hook_failed()] {
        assert_ok(&run_hook("log", ev, &settings));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "2026-11-23T20:10:53.123Z web result down 1.5ms http://127.0.0.1:8080/health: refused [2Jby peer",
            "2026-11-23T20:15:58.123Z web down (was up) http://127.0.0.1:8080/health: connect: connection refused",
            "2026-11-23T20:15:58.123Z web up (was down) after 5m5s http://127.0.0.1:8080/health: HTTP 200 in 3ms",
            "2026-11-23T20:15:58.200Z web hook down/pager FAILED: pager: refused",
        ],
        "{text}"
    );
}

#[test]
fn log_fails_loudly_on_a_bad_format_or_an_unwritable_file() {
    let dir = TempDir::new("log-bad");
    let file = dir.join("x.log");
    let r = run_hook(
        "log",
        &down(),
        &[
            ("PUP_LOG_FILE", file.to_str().unwrap()),
            ("PUP_LOG_FORMAT", "yaml"),
        ],
    );
    assert_fails(&r, "log", "PUP_LOG_FORMAT");
    let missing = dir.join("no/such/dir/x.log");
    let r = run_hook(
        "log",
        &down(),
        &[("PUP_LOG_FILE", missing.to_str().unwrap())],
    );
    assert_fails(&r, "log", "cannot open");
}

// ------------------------------------------------------------ slack & teams

#[test]
fn slack_posts_down_up_and_reminder_messages() {
    let server = recorder(200, "ok");
    let url = server.url("/services/T000/B000/XXXX");
    let settings = [("SLACK_WEBHOOK_URL", url.as_str())];
    let mut d = down();
    d["result"]["reason"] = json!("refused <by> peer & \"friends\"");
    for ev in [&d, &up(), &reminder()] {
        assert_ok(&run_hook("slack", ev, &settings));
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/services/T000/B000/XXXX");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let texts: Vec<String> = reqs
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_string())
        .collect();
    // Slack's markup characters escaped; check, status, kind, link present.
    assert_eq!(
        texts[0],
        "🔴 *web* is DOWN\n> refused &lt;by&gt; peer &amp; \"friends\" (`connect_refused`)\n\
         <http://127.0.0.1:8080/health> · 2026-11-23T20:15:58.123Z"
    );
    assert!(
        texts[1].starts_with("✅ *web* is UP again after 5m 5s\n"),
        "{}",
        texts[1]
    );
    assert!(texts[1].contains("> HTTP 200 in 3ms"), "{}", texts[1]);
    assert!(texts[1].contains("<http://127.0.0.1:8080/health>"));
    assert!(
        texts[2].starts_with("🔴 *web* is still DOWN (for 5m 5s)\n"),
        "{}",
        texts[2]
    );
}

#[test]
fn slack_names_every_router_event_type() {
    let server = recorder(200, "ok");
    let url = server.url("/hook");
    let fp = "sha256:0123456789abcdef0123456789abcdef";
    let mut res = result("ns", "up", "A 192.0.2.7");
    res["target"] = json!("www.example.org A");
    res["fingerprint"] = json!(fp);
    let base = json!({"v": 1, "check": "ns", "target": "www.example.org A",
        "ts": "2026-11-23T21:00:00.000Z", "result": res});
    let with = |extra: Value| {
        let mut ev = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            ev[k] = v.clone();
        }
        ev
    };
    let cases = [
        (
            with(
                json!({"type": "flapping", "status": "up", "previous_status": "down",
                "flapping": true, "flap_percent": 62.5}),
            ),
            "🔀 *ns* is FLAPPING",
        ),
        (
            with(
                json!({"type": "flapping", "status": "up", "previous_status": "up",
                "flapping": false, "flap_percent": 10.0}),
            ),
            "🔀 *ns* stopped flapping",
        ),
        (
            with(
                json!({"type": "changed", "status": "up", "previous_status": "up",
                "fingerprint": fp,
                "previous_fingerprint": "sha256:ffffffffffffffffffffffffffffffff"}),
            ),
            "🔄 *ns* CHANGED (new fingerprint)",
        ),
        (
            with(
                json!({"type": "stale", "status": "up", "previous_status": "up",
                "silent_ms": 180_000, "reason": "nothing for 3 intervals"}),
            ),
            "⏸️ *ns* went SILENT for 3m 0s",
        ),
        (
            json!({"v": 1, "type": "stale", "check": "pup-sched", "heartbeat": true,
                "ts": "2026-11-23T21:00:00.000Z", "silent_ms": 3_600_000,
                "reason": "no heartbeat"}),
            "⏸️ monitoring STOPPED: no heartbeat from *pup-sched* for 1h 0m",
        ),
        (
            json!({"v": 1, "type": "hook", "check": "ns", "hook": "down/<pager>",
                "event": "down", "exit_code": 1, "timed_out": false, "ok": false,
                "stderr": "pager: refused", "duration_ms": 20.0,
                "reason": "exit status 1", "ts": "2026-11-23T21:00:00.000Z",
                "trigger": with(json!({"type": "down", "status": "down",
                    "previous_status": "up", "previous_for_ms": 1000}))}),
            "⚠️ hook down/&lt;pager&gt; FAILED for *ns*",
        ),
        (hook_failed(), "⚠️ hook down/pager FAILED for *web*"),
    ];
    for (ev, _) in &cases {
        assert_ok(&run_hook("slack", ev, &[("SLACK_WEBHOOK_URL", &url)]));
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), cases.len());
    for (r, (ev, want)) in reqs.iter().zip(&cases) {
        let text = r.json()["text"].as_str().unwrap().to_string();
        assert_eq!(text.lines().next(), Some(*want), "{text}");
        if ev["type"] == "hook" {
            // The failed hook's own last words, not just "exited with 1".
            assert_eq!(text.lines().nth(1), Some("> pager: refused"), "{text}");
        }
        if ev["check"] == "ns" {
            // Not a URL: the target is shown as code, not as a link.
            assert!(text.contains("`www.example.org A`"), "{text}");
        }
    }
}

#[test]
fn slack_exits_nonzero_when_slack_refuses() {
    let server = recorder(500, "invalid_payload");
    let url = server.url("/hook");
    let r = run_hook("slack", &down(), &[("SLACK_WEBHOOK_URL", &url)]);
    assert_fails(&r, "slack", "500");
    assert!(
        r.stderr.contains("invalid_payload"),
        "Slack's answer shown: {r:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn teams_posts_an_adaptive_card() {
    let server = recorder(202, "");
    let url = server.url("/workflows/abc");
    let settings = [("TEAMS_WEBHOOK_URL", url.as_str())];
    for ev in [&down(), &up(), &reminder()] {
        assert_ok(&run_hook("teams", ev, &settings));
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let cards: Vec<Value> = reqs
        .iter()
        .map(|r| {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/workflows/abc");
            assert_eq!(r.header("content-type"), Some("application/json"));
            let body = r.json();
            assert_eq!(body["type"], "message");
            let att = &body["attachments"][0];
            assert_eq!(
                att["contentType"],
                "application/vnd.microsoft.card.adaptive"
            );
            assert_eq!(att["content"]["type"], "AdaptiveCard");
            att["content"].clone()
        })
        .collect();
    let facts = |card: &Value| -> Vec<(String, String)> {
        card["body"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "FactSet")
            .unwrap()["facts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["title"].as_str().unwrap().to_string(),
                    f["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let fact = |card: &Value, name: &str| -> Option<String> {
        facts(card)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    };
    assert_eq!(cards[0]["body"][0]["text"], "🔴 web is DOWN");
    assert_eq!(cards[0]["body"][0]["color"], "Attention");
    assert_eq!(cards[0]["body"][1]["text"], "connect: connection refused");
    assert_eq!(fact(&cards[0], "Status").as_deref(), Some("down (was up)"));
    assert_eq!(fact(&cards[0], "Error").as_deref(), Some("connect_refused"));
    assert_eq!(
        fact(&cards[0], "Target").as_deref(),
        Some("http://127.0.0.1:8080/health")
    );
    assert_eq!(fact(&cards[0], "Down for"), None);
    assert_eq!(
        cards[0]["actions"][0],
        json!({"type": "Action.OpenUrl", "title": "Open target", "url": "http://127.0.0.1:8080/health"})
    );
    assert_eq!(
        cards[1]["body"][0]["text"],
        "✅ web is UP again after 5m 5s"
    );
    assert_eq!(cards[1]["body"][0]["color"], "Good");
    assert_eq!(fact(&cards[1], "Down for").as_deref(), Some("5m 5s"));
    assert_eq!(
        cards[2]["body"][0]["text"],
        "🔴 web is still DOWN (for 5m 5s)"
    );
}

#[test]
fn teams_exits_nonzero_when_teams_refuses() {
    let server = recorder(400, "Bad payload received by generic incoming webhook.");
    let url = server.url("/x");
    let r = run_hook("teams", &down(), &[("TEAMS_WEBHOOK_URL", &url)]);
    assert_fails(&r, "teams", "400");
    assert!(r.stderr.contains("Bad payload"), "{r:?}");
}

/// A port on 127.0.0.1 that refuses connections for as long as the
/// returned socket lives: bound, so no other test's server can take it
/// (as could happen with a port found free and released), but not listening.
fn refusing_port() -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a fresh descriptor that the OwnedFd
    // then owns; the sockaddr_in lives across the calls that read it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let held = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let p = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
        assert_eq!(
            libc::bind(fd, p, len),
            0,
            "bind: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::getsockname(fd, p, &mut len), 0);
        (held, u16::from_be(addr.sin_port))
    }
}

#[test]
fn a_webhook_nobody_listens_on_fails_loudly() {
    let (_held, port) = refusing_port();
    let url = format!("http://127.0.0.1:{port}/x");
    for (hook, var) in [
        ("slack", "SLACK_WEBHOOK_URL"),
        ("teams", "TEAMS_WEBHOOK_URL"),
        ("webhook", "PUP_WEBHOOK_URL"),
    ] {
        let r = run_hook(hook, &down(), &[(var, &url)]);
        assert_fails(&r, hook, "failed");
    }
}

#[test]
fn secrets_never_appear_on_a_command_line() {
    // curl and openssl are replaced on PATH by wrappers that note their
    // arguments and run the real program: what ps would show.
    let dir = TempDir::new("argv-spy");
    for prog in ["curl", "openssl"] {
        let real = need(prog);
        let spy = dir.join(prog);
        write_script(
            &spy,
            &format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\nexec '{}' \"$@\"\n",
                dir.join("argv").display(),
                real.display()
            ),
        );
    }
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let http = recorder(200, "ok");
    let url = http.url("/services/SECRET-IN-URL");
    for (hook, var) in [
        ("slack", "SLACK_WEBHOOK_URL"),
        ("teams", "TEAMS_WEBHOOK_URL"),
        ("webhook", "PUP_WEBHOOK_URL"),
    ] {
        let settings = [
            ("PATH", path.as_str()),
            (var, url.as_str()),
            ("PUP_WEBHOOK_SECRET", "SECRET-HMAC-KEY"),
        ];
        assert_ok(&run_hook(hook, &down(), &settings));
    }
    assert_eq!(http.requests().len(), 3);
    let certs = TempDir::new("argv-spy-cert");
    let (cert, key) = smtp::make_cert(certs.path());
    let smtp = SmtpServer::start(smtp::Options {
        tls: Some((cert.clone(), key)),
        login: Some(("pup".into(), "SECRET-PASSWORD".into())),
        ..Default::default()
    });
    let smtp_url = smtp_url(&smtp);
    let settings = [
        ("PATH", path.as_str()),
        ("PUP_MAIL_TO", "ops@example.org"),
        ("PUP_SMTP_URL", &smtp_url),
        ("PUP_SMTP_STARTTLS", "1"),
        ("PUP_SMTP_USER", "pup"),
        ("PUP_SMTP_PASSWORD", "SECRET-PASSWORD"),
        ("PUP_SMTP_CACERT", cert.to_str().unwrap()),
    ];
    assert_ok(&run_hook("email", &down(), &settings));
    assert_eq!(smtp.mails().len(), 1);
    let argv = std::fs::read_to_string(dir.join("argv")).unwrap();
    assert!(argv.contains("--mail-from"), "the spy saw curl run: {argv}");
    assert!(argv.contains("dgst"), "the spy saw openssl run: {argv}");
    assert!(
        !argv.contains("SECRET"),
        "a secret on a command line:\n{argv}"
    );
}

// ------------------------------------------------------------------ webhook

/// HMAC-SHA256 (RFC 2104), to check the hook's signature independently.
fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    let mut k = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::digest([ipad.as_slice(), msg].concat());
    let outer = Sha256::digest([opad.as_slice(), inner.as_slice()].concat());
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn hmac_helper_matches_rfc_4231() {
    // Test case 2 of RFC 4231, so the check below checks something real.
    assert_eq!(
        hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn webhook_posts_the_event_exactly_and_signs_it() {
    let server = recorder(204, "");
    let url = server.url("/pup/events?src=test");
    // Short, long (hashed first: over the 64-byte block) and awkward keys.
    let long = "k".repeat(100);
    let keys = ["s3cret", long.as_str(), "q\"uo'te \\ %s $(x) ü"];
    let mut ev = down();
    ev["result"]["reason"] = json!("quotes \" ' and\nnewlines, ü");
    for key in keys {
        let settings = [
            ("PUP_WEBHOOK_URL", url.as_str()),
            ("PUP_WEBHOOK_SECRET", key),
        ];
        assert_ok(&run_hook("webhook", &ev, &settings));
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), keys.len());
    let sent = serde_json::to_string(&ev).unwrap();
    for (r, key) in reqs.iter().zip(keys) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/pup/events?src=test");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-pup-event"), Some("down"));
        assert_eq!(
            r.body,
            sent.as_bytes(),
            "the body is the event file's bytes"
        );
        let want = format!("sha256={}", hmac_sha256_hex(key.as_bytes(), &r.body));
        assert_eq!(
            r.header("x-pup-signature"),
            Some(want.as_str()),
            "key {key:?}"
        );
    }
}

#[test]
fn webhook_without_a_secret_sends_no_signature() {
    let server = recorder(200, "");
    let url = server.url("/in");
    let ev = result("db", "up", "PONG");
    assert_ok(&run_hook("webhook", &ev, &[("PUP_WEBHOOK_URL", &url)]));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("x-pup-signature"), None);
    assert_eq!(reqs[0].header("x-pup-event"), Some("result"));
    assert_eq!(reqs[0].json(), ev);
}

#[test]
fn webhook_exits_nonzero_when_the_receiver_refuses() {
    let server = recorder(500, "boom");
    let url = server.url("/in?token=hush");
    let r = run_hook(
        "webhook",
        &down(),
        &[("PUP_WEBHOOK_URL", &url), ("PUP_WEBHOOK_SECRET", "k")],
    );
    assert_fails(&r, "webhook", "500");
    assert!(
        !r.stderr.contains("hush"),
        "the URL's query is not shown: {r:?}"
    );
}

// -------------------------------------------------------------------- email

fn smtp_url(s: &SmtpServer) -> String {
    format!("smtp://127.0.0.1:{}", s.port)
}

#[test]
fn email_goes_over_starttls_with_login_and_parses() {
    let dir = TempDir::new("email-tls");
    let (cert, key) = smtp::make_cert(dir.path());
    let password = "pa\"ss\\word: with spaces";
    let server = SmtpServer::start(smtp::Options {
        tls: Some((cert.clone(), key)),
        login: Some(("pup".into(), password.into())),
        ..Default::default()
    });
    let pwfile = dir.join("smtp-password");
    std::fs::write(&pwfile, format!("{password}\n")).unwrap();
    let url = smtp_url(&server);
    let mut ev = down();
    // A reason trying to inject a header must stay inside the subject.
    ev["result"]["reason"] = json!("refused\r\nBcc: victim@example.org");
    let r = run_hook(
        "email",
        &ev,
        &[
            ("PUP_MAIL_TO", "ops@example.org, oncall@example.org"),
            ("PUP_MAIL_FROM", "pup@example.org"),
            ("PUP_SMTP_URL", &url),
            ("PUP_SMTP_STARTTLS", "1"),
            ("PUP_SMTP_USER", "pup"),
            ("PUP_SMTP_PASSWORD_FILE", pwfile.to_str().unwrap()),
            ("PUP_SMTP_CACERT", cert.to_str().unwrap()),
        ],
    );
    assert_ok(&r);
    let mails = server.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert!(m.tls, "the mail went over TLS");
    assert_eq!(m.user.as_deref(), Some("pup"));
    assert_eq!(m.from, "pup@example.org");
    assert_eq!(m.rcpts, ["ops@example.org", "oncall@example.org"]);
    assert_eq!(m.header("From"), "pup@example.org");
    assert_eq!(m.header("To"), "ops@example.org, oncall@example.org");
    assert_eq!(
        m.header("Subject"),
        "[pup] web is DOWN: refused Bcc: victim@example.org"
    );
    assert_eq!(m.header("Content-Type"), "text/plain; charset=utf-8");
    assert_eq!(m.header("X-Pup-Event"), "down");
    assert!(!m.header("Date").is_empty());
    let (headers, body) = m.parts();
    assert!(
        !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("bcc")),
        "{headers:?}"
    );
    for line in [
        "Check:     web",
        "Status:    down (was up)",
        "Reason:    refused Bcc: victim@example.org",
        "Error:     connect_refused",
        "Target:    http://127.0.0.1:8080/health",
        "When:      2026-11-23T20:15:58.123Z",
    ] {
        assert!(
            body.contains(&format!("{line}\r\n")),
            "body lacks {line:?}:\n{body}"
        );
    }
    // The whole event closes the body, as JSON.
    let json_start = body.find("\r\n{").expect("event JSON in the body");
    let tail: Value = serde_json::from_str(&body[json_start..].replace("\r\n", "\n")).unwrap();
    assert_eq!(tail, ev);
}

#[test]
fn email_over_smtps_from_the_first_byte() {
    let dir = TempDir::new("email-smtps");
    let (cert, key) = smtp::make_cert(dir.path());
    let server = SmtpServer::start(smtp::Options {
        tls: Some((cert.clone(), key)),
        implicit_tls: true,
        login: Some(("pup".into(), "pw".into())),
        ..Default::default()
    });
    let url = format!("smtps://127.0.0.1:{}", server.port);
    let r = run_hook(
        "email",
        &up(),
        &[
            ("PUP_MAIL_TO", "ops@example.org"),
            ("PUP_SMTP_URL", &url),
            ("PUP_SMTP_USER", "pup"),
            ("PUP_SMTP_PASSWORD", "pw"),
            ("PUP_SMTP_CACERT", cert.to_str().unwrap()),
        ],
    );
    assert_ok(&r);
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls);
    assert_eq!(mails[0].user.as_deref(), Some("pup"));
    assert_eq!(
        mails[0].header("Subject"),
        "[pup] web is UP again after 5m 5s"
    );
}

#[test]
fn email_up_over_plain_smtp_with_a_non_ascii_check_name() {
    let server = SmtpServer::start(smtp::Options::default());
    let url = smtp_url(&server);
    let mut ev = up();
    ev["check"] = json!("café-api");
    let r = run_hook(
        "email",
        &ev,
        &[("PUP_MAIL_TO", "ops@example.org"), ("PUP_SMTP_URL", &url)],
    );
    assert_ok(&r);
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert!(!m.tls);
    assert!(m.from.starts_with("pup@"), "default sender: {}", m.from);
    // The subject is RFC 2047 encoded words; decoded it reads as written.
    let subject = m.header("Subject");
    let decoded: String = subject
        .split(' ')
        .map(|w| {
            let b64 = w
                .strip_prefix("=?UTF-8?B?")
                .and_then(|w| w.strip_suffix("?="))
                .unwrap_or_else(|| panic!("not an encoded word: {w:?} in {subject:?}"));
            String::from_utf8(smtp::base64_decode(b64).unwrap()).unwrap()
        })
        .collect();
    assert_eq!(decoded, "[pup] café-api is UP again after 5m 5s");
    let (_, body) = m.parts();
    assert!(body.contains("Down for:  5m 5s\r\n"), "{body}");
    assert!(body.contains("Status:    up (was down)\r\n"), "{body}");
}

#[test]
fn email_exits_nonzero_when_the_server_refuses() {
    let server = SmtpServer::start(smtp::Options {
        refuse_recipients: true,
        ..Default::default()
    });
    let url = smtp_url(&server);
    let r = run_hook(
        "email",
        &down(),
        &[
            ("PUP_MAIL_TO", "nobody@example.org"),
            ("PUP_SMTP_URL", &url),
        ],
    );
    assert_fails(&r, "email", "did not take the mail");
    assert!(r.stderr.contains("550"), "the server's answer shown: {r:?}");
    assert!(server.mails().is_empty());
}

#[test]
fn email_never_falls_back_to_clear_text() {
    // STARTTLS demanded from a server that does not offer it: no mail.
    let server = SmtpServer::start(smtp::Options::default());
    let url = smtp_url(&server);
    let to = ("PUP_MAIL_TO", "ops@example.org");
    let r = run_hook(
        "email",
        &down(),
        &[to, ("PUP_SMTP_URL", &url), ("PUP_SMTP_STARTTLS", "1")],
    );
    assert_fails(&r, "email", "did not take the mail");
    assert!(server.mails().is_empty());
    // A password without TLS is refused before anything is sent.
    let r = run_hook(
        "email",
        &down(),
        &[
            to,
            ("PUP_SMTP_URL", &url),
            ("PUP_SMTP_USER", "pup"),
            ("PUP_SMTP_PASSWORD", "x"),
        ],
    );
    assert_fails(&r, "email", "in clear");
    // A user without any password, or an unreadable password file.
    let r = run_hook(
        "email",
        &down(),
        &[
            to,
            ("PUP_SMTP_URL", &url),
            ("PUP_SMTP_STARTTLS", "1"),
            ("PUP_SMTP_USER", "pup"),
        ],
    );
    assert_fails(&r, "email", "PUP_SMTP_PASSWORD");
    let r = run_hook(
        "email",
        &down(),
        &[
            to,
            ("PUP_SMTP_URL", &url),
            ("PUP_SMTP_STARTTLS", "1"),
            ("PUP_SMTP_USER", "pup"),
            ("PUP_SMTP_PASSWORD_FILE", "/nonexistent/pw"),
        ],
    );
    assert_fails(&r, "email", "PUP_SMTP_PASSWORD_FILE");
    assert!(server.mails().is_empty());
}

#[test]
fn email_refuses_a_certificate_it_cannot_verify() {
    let dir = TempDir::new("email-cert");
    let (cert, key) = smtp::make_cert(dir.path());
    let server = SmtpServer::start(smtp::Options {
        tls: Some((cert, key)),
        ..Default::default()
    });
    let url = smtp_url(&server);
    let base = [
        ("PUP_MAIL_TO", "ops@example.org"),
        ("PUP_SMTP_URL", url.as_str()),
        ("PUP_SMTP_STARTTLS", "1"),
    ];
    // Self-signed and not trusted: refused.
    let r = run_hook("email", &down(), &base);
    assert_fails(&r, "email", "did not take the mail");
    assert!(server.mails().is_empty());
    // PUP_SMTP_INSECURE=1 is the explicit way round it (test servers).
    let mut insecure = base.to_vec();
    insecure.push(("PUP_SMTP_INSECURE", "1"));
    assert_ok(&run_hook("email", &down(), &insecure));
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls);
}

#[test]
fn email_through_sendmail() {
    // The sendmail interface is a program reading the message on stdin; this
    // one records its arguments and the message, as postfix or exim would
    // queue them.
    let dir = TempDir::new("email-sendmail");
    let prog = dir.join("sendmail");
    write_script(
        &prog,
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\ncat > \"$0.msg\"\n",
    );
    let r = run_hook(
        "email",
        &reminder(),
        &[
            ("PUP_MAIL_TO", "ops@example.org,oncall@example.org"),
            ("PUP_MAIL_FROM", "pup@example.org"),
            ("PUP_SENDMAIL", prog.to_str().unwrap()),
        ],
    );
    assert_ok(&r);
    let args = std::fs::read_to_string(dir.join("sendmail.args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "-i",
            "-f",
            "pup@example.org",
            "--",
            "ops@example.org",
            "oncall@example.org"
        ]
    );
    let msg = std::fs::read_to_string(dir.join("sendmail.msg")).unwrap();
    assert!(
        msg.contains(
            "\nSubject: [pup] web is still DOWN (for 5m 5s): connect: connection refused\n"
        ),
        "{msg}"
    );
    // A sendmail that fails makes the hook fail.
    std::fs::remove_file(&prog).unwrap();
    write_script(&prog, "#!/bin/sh\necho 'queue full' >&2\nexit 75\n");
    let r = run_hook(
        "email",
        &down(),
        &[
            ("PUP_MAIL_TO", "ops@example.org"),
            ("PUP_SENDMAIL", prog.to_str().unwrap()),
        ],
    );
    assert_fails(&r, "email", "queue full");
}

// ------------------------------------------------------------------- sqlite

fn query(db: &Path, sql: &str) -> Vec<Value> {
    let out = std::process::Command::new(need("sqlite3"))
        .arg("-json")
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    if text.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&text).unwrap()
}

#[test]
fn sqlite_inserts_one_row_per_result_whatever_the_text_holds() {
    // A quote in the event file's own path too: it is the one value quoted
    // into the SQL.
    let dir = TempDir::new("sqlite-it's; odd");
    let db = dir.join("pup.db");
    let db_s = db.to_str().unwrap();
    let nasty = "it's \"bad\"; DROP TABLE results; --\nsecond line ü');";
    let events = [
        result("web", "down", nasty),
        result("web", "up", "HTTP 200"),
        result("db'; --", "degraded", "slow: 900ms"),
        result("nul", "up", "before\u{0}after"),
    ];
    for ev in &events {
        assert_ok(&run_hook_in(
            dir.path(),
            "sqlite",
            ev,
            &[("PUP_SQLITE_DB", db_s)],
        ));
    }
    // Router events are not results: no row.
    assert_ok(&run_hook_in(
        dir.path(),
        "sqlite",
        &down(),
        &[("PUP_SQLITE_DB", db_s)],
    ));
    let rows = query(
        &db,
        "SELECT check_name, status, ts, duration_ms, reason, error_kind, error_layer, \
         target, probe, event FROM results ORDER BY id",
    );
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (row, ev) in rows.iter().zip(&events) {
        let event: Value = serde_json::from_str(row["event"].as_str().unwrap()).unwrap();
        assert_eq!(&event, ev, "the whole event is kept, NULs included");
        if ev["check"] == "nul" {
            // SQLite text stops at a NUL: documented in the hook's header.
            assert_eq!(row["reason"], "before");
            continue;
        }
        assert_eq!(row["check_name"], ev["check"]);
        assert_eq!(row["status"], ev["status"]);
        assert_eq!(row["ts"], ev["ts"]);
        assert_eq!(row["duration_ms"], json!(12.5));
        assert_eq!(row["reason"], ev["reason"]);
        assert_eq!(row["target"], ev["target"]);
        assert_eq!(row["probe"], "http");
    }
    assert_eq!(rows[0]["reason"], nasty);
    assert_eq!(rows[0]["error_kind"], "connect_refused");
    assert_eq!(rows[0]["error_layer"], "tcp");
    assert_eq!(rows[1]["error_kind"], Value::Null);
    // What the table is for: uptime per check.
    let uptime = query(
        &db,
        "SELECT check_name, 100.0 * avg(status = 'up') AS pct FROM results \
         GROUP BY check_name ORDER BY check_name",
    );
    assert_eq!(
        uptime,
        [
            json!({"check_name": "db'; --", "pct": 0.0}),
            json!({"check_name": "nul", "pct": 100.0}),
            json!({"check_name": "web", "pct": 50.0})
        ]
    );
}

#[test]
fn sqlite_fails_loudly_on_bad_json_or_an_unwritable_database() {
    let dir = TempDir::new("sqlite-bad");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let db = dir.join("pup.db");
    let r = run_with(
        "env",
        &[
            "-i",
            &format!("PUP_SQLITE_DB={}", db.display()),
            &format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
            &hook_path("sqlite"),
            bad.to_str().unwrap(),
        ],
        None,
        &[],
        Duration::from_secs(30),
    );
    assert_fails(&r, "sqlite", "malformed JSON");
    let unwritable = dir.join("no/such/dir/pup.db");
    let r = run_hook(
        "sqlite",
        &result("web", "up", "ok"),
        &[("PUP_SQLITE_DB", unwritable.to_str().unwrap())],
    );
    assert_fails(&r, "sqlite", "cannot write");
}

#[test]
fn log_and_sqlite_take_hooks_running_at_once() {
    // pup-route -j runs hooks in parallel. sqlite writers must wait for each
    // other instead of failing with "database is locked" (this fails without
    // the hook's .timeout). Log lines must stay whole: bash writes a line
    // over ~28 kB in more than one write(), which the hook's flock keeps
    // together (a race this test can only catch now and then).
    let dir = TempDir::new("concurrent");
    let log = dir.join("events.ndjson");
    let db = dir.join("pup.db");
    let (log_s, db_s) = (log.to_str().unwrap(), db.to_str().unwrap());
    let n = 12;
    std::thread::scope(|s| {
        for i in 0..n {
            s.spawn(move || {
                let ev = result(&format!("c{i}"), "up", &format!("{i}").repeat(100_000));
                assert_ok(&run_hook("log", &ev, &[("PUP_LOG_FILE", log_s)]));
                assert_ok(&run_hook("sqlite", &ev, &[("PUP_SQLITE_DB", db_s)]));
            });
        }
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let mut checks: Vec<String> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a whole JSON line");
            let c = v["check"].as_str().unwrap().to_string();
            assert_eq!(v["reason"].as_str().unwrap().len(), 100_000 * c[1..].len());
            c
        })
        .collect();
    checks.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    want.sort();
    assert_eq!(checks, want);
    let rows = query(&db, "SELECT count(DISTINCT check_name) AS n FROM results");
    assert_eq!(rows, [json!({"n": n})]);
}
