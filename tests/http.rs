//! pup-probe-http against real servers on 127.0.0.1: the test server in
//! tests/common/http_server.rs (plain and TLS, with certificates made
//! here), misbehaving on purpose where a layer must fail. Every event goes
//! through the schema validation of the harness.

mod common;

use common::http_server::{Identity, Response, Server, TestCa};
use common::{run, run_stdin, run_with, TempDir};
use serde_json::Value;
use std::time::Duration;

const BIN: &str = bin!("pup-probe-http");

fn probe(args: &[&str]) -> common::Run {
    run(BIN, args)
}

fn kind(ev: &Value) -> &str {
    ev["error"]["kind"].as_str().unwrap_or("")
}

const API_BODY: &str = r#"{"status":"ok","build":{"n":7,"tags":["a","b"]},"up":true}"#;

/// The JSON test page every assertion kind is run against.
fn api() -> Server {
    Server::http(|req| match req.path.as_str() {
        "/api" => Response::ok(API_BODY)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Served-By", "test"),
        "/missing" => Response::new(404, "no such page"),
        _ => Response::new(503, "busy"),
    })
}

#[test]
fn up_with_every_assertion_kind_passing() {
    let s = api();
    let url = s.url("/api");
    let r = probe(&[
        &url,
        "--expect-status",
        "200",
        "--contains",
        "\"ok\"",
        "--not-contains",
        "error",
        "--regex",
        r#""n":\s*[0-9]+"#,
        "--json-pointer",
        "/status=ok",
        "--json-pointer",
        "/build/n=7",
        "--json-pointer",
        "/up=true",
        "--header-contains",
        "content-type: application/json",
    ]);
    let ev = r.event();
    assert_eq!(r.code, 0, "{ev}");
    assert_eq!(ev["status"], "up");
    assert_eq!(ev["probe"], "http");
    assert_eq!(ev["target"], url.as_str());
    let a = ev["assertions"].as_array().unwrap();
    assert_eq!(a.len(), 8, "{ev}");
    assert!(a.iter().all(|x| x["ok"] == true), "{ev}");
    let whats: Vec<&str> = a.iter().map(|x| x["what"].as_str().unwrap()).collect();
    for w in [
        "status",
        "contains",
        "not_contains",
        "regex",
        "json_pointer",
        "header",
    ] {
        assert!(whats.contains(&w), "{w} missing: {ev}");
    }
    for p in ["connect_ms", "ttfb_ms", "transfer_ms"] {
        assert!(ev["phases"][p].as_f64().unwrap() >= 0.0, "{p}: {ev}");
    }
    assert!(ev["phases"].get("dns_ms").is_none(), "an IP needs no DNS");
    assert_eq!(ev["details"]["http_status"], 200);
    assert_eq!(ev["details"]["peer"], format!("127.0.0.1:{}", s.port()));
    assert_eq!(ev["details"]["body_bytes"], API_BODY.len());
    assert!(ev["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    let req = &s.requests()[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.header("connection"), Some("close"));
    assert_eq!(
        req.header("host"),
        Some(&*format!("127.0.0.1:{}", s.port()))
    );
}

#[test]
fn each_assertion_kind_failing_names_its_layer() {
    let s = api();
    let url = s.url("/api");
    // (flags, kind, layer, words the reason must hold)
    let cases: &[(&[&str], &str, &str, &str)] = &[
        (
            &["--expect-status", "201,300-399"],
            "status_mismatch",
            "protocol",
            "200",
        ),
        (
            &["--contains", "Welcome"],
            "content_mismatch",
            "content",
            "Welcome",
        ),
        (
            &["--not-contains", "ok"],
            "content_mismatch",
            "content",
            "contains \"ok\"",
        ),
        (
            &["--regex", "^<html"],
            "content_mismatch",
            "content",
            "^<html",
        ),
        (
            &["--json-pointer", "/status=down"],
            "content_mismatch",
            "content",
            "/status",
        ),
        (
            &["--json-pointer", "/build/n=8"],
            "content_mismatch",
            "content",
            "/build/n",
        ),
        (
            &["--json-pointer", "/nope=1"],
            "content_mismatch",
            "content",
            "(absent)",
        ),
        (
            &["--header-contains", "X-Served-By: prod"],
            "header_mismatch",
            "protocol",
            "X-Served-By",
        ),
        (
            &["--header-contains", "X-Absent: x"],
            "header_mismatch",
            "protocol",
            "(absent)",
        ),
    ];
    for (flags, k, lay, words) in cases {
        let mut args = vec![url.as_str()];
        args.extend_from_slice(flags);
        let r = probe(&args);
        let ev = r.event();
        assert_eq!(r.code, 2, "{flags:?}: {ev}");
        assert_eq!(ev["status"], "down", "{flags:?}");
        assert_eq!(kind(&ev), *k, "{flags:?}: {ev}");
        assert_eq!(ev["error"]["layer"], *lay, "{flags:?}");
        assert!(
            ev["reason"].as_str().unwrap().contains(words),
            "{flags:?}: {ev}"
        );
        let failed: Vec<&Value> = ev["assertions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["ok"] == false)
            .collect();
        assert_eq!(failed.len(), 1, "{flags:?}: {ev}");
        assert!(!failed[0]["actual"].as_str().unwrap().is_empty());
    }
    // A JSON assertion on a body that is not JSON says so.
    let r = probe(&[
        &s.url("/missing"),
        "--expect-status",
        "404",
        "--json-pointer",
        "/a=1",
    ]);
    let ev = r.event();
    assert_eq!(kind(&ev), "content_mismatch");
    assert!(
        ev["assertions"][1]["actual"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{ev}"
    );
    // The default accepts 200-399 only.
    let ev = probe(&[&s.url("/other")]).event();
    assert_eq!(kind(&ev), "status_mismatch");
    assert_eq!(ev["assertions"][0]["expected"], "200-399");
    assert_eq!(ev["assertions"][0]["actual"], "503");
}

#[test]
fn the_request_is_sent_as_asked() {
    let s = Server::http(|_| Response::ok("fine"));
    let dir = TempDir::new("http-req");
    let data = dir.join("body.json");
    std::fs::write(&data, b"{\"a\":1}").unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, "file secret\nignored\n").unwrap();
    let at = format!("@{}", data.display());
    let r = run_with(
        BIN,
        &[
            &s.url("/p/a%20b?x=1"),
            "-X",
            "PUT",
            "-H",
            "X-Test: one two",
            "-H",
            "User-Agent: mine",
            "--data",
            &at,
            "-H",
            "Content-Type: application/json",
            "--user",
            "alice",
        ],
        None,
        &[("PUP_PASSWORD", "env secret")],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    let q = &s.requests()[0];
    assert_eq!(q.method, "PUT");
    assert_eq!(q.path, "/p/a%20b?x=1");
    assert_eq!(q.header("x-test"), Some("one two"));
    assert_eq!(q.header("user-agent"), Some("mine"));
    assert_eq!(q.header("content-type"), Some("application/json"));
    assert_eq!(q.body, b"{\"a\":1}");
    // base64("alice:env secret")
    assert_eq!(
        q.header("authorization"),
        Some("Basic YWxpY2U6ZW52IHNlY3JldA==")
    );

    // --data STRING means POST; --password-file wins over nothing else.
    let pwf = pw.display().to_string();
    let r = probe(&[
        &s.url("/"),
        "--data",
        "a=b",
        "--user",
        "bob",
        "--password-file",
        &pwf,
    ]);
    assert_eq!(r.code, 0);
    let q = &s.requests()[1];
    assert_eq!(q.method, "POST");
    assert_eq!(q.body, b"a=b");
    assert_eq!(
        q.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // base64("bob:file secret")
    assert_eq!(
        q.header("authorization"),
        Some("Basic Ym9iOmZpbGUgc2VjcmV0")
    );
}

#[test]
fn usage_errors_are_one_line_and_exit_3() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "no URL given"),
        (&["example.org"], "must start with http://"),
        (&["ftp://example.org/"], "only http:// and https://"),
        (&["http://u:pw@127.0.0.1/"], "--user"),
        (&["http://127.0.0.1/", "--user", "bob"], "PUP_PASSWORD"),
        (
            &["http://127.0.0.1/", "--password-file", "/nonexistent"],
            "needs --user",
        ),
        (
            &["http://127.0.0.1/", "--expect-status", "2oo"],
            "--expect-status",
        ),
        (&["http://127.0.0.1/", "--regex", "(unclosed"], "--regex"),
        (
            &["http://127.0.0.1/", "--json-pointer", "status=ok"],
            "must start with '/'",
        ),
        (&["http://127.0.0.1/", "-H", "NoColon"], "'Name: value'"),
        (
            &["http://127.0.0.1/", "--ca-file", "/nonexistent.pem"],
            "--ca-file",
        ),
        (&["http://127.0.0.1/", "--max-body", "lots"], "bad size"),
        (&["http://127.0.0.1/", "--cert-warn", "14"], "needs a unit"),
        (&["http://127.0.0.1/", "--bogus"], "--bogus"),
        (&["http://127.0.0.1/", "--data", "@/nonexistent"], "--data"),
    ];
    for (args, words) in cases {
        let r = probe(args);
        assert_eq!(r.code, 3, "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, "", "{args:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("pup-probe-http: "), "{}", r.stderr);
        assert!(r.stderr.contains(words), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn help_is_complete() {
    let r = probe(&["--help"]);
    assert_eq!(r.code, 0);
    // Regression: Common's doc comment used to replace the probe's about.
    assert!(r.stdout.starts_with("Check HTTP(S) URLs"), "{}", r.stdout);
    for flag in [
        "--method",
        "--header",
        "--data",
        "--user",
        "--password-file",
        "--follow",
        "--resolve",
        "--expect-status",
        "--contains",
        "--not-contains",
        "--regex",
        "--json-pointer",
        "--header-contains",
        "--max-body",
        "--insecure",
        "--ca-file",
        "--cert-warn",
        "--cert-crit",
        "--timeout",
        "--stdin",
        "Examples:",
        "[default: 200-399]",
        "[default: 1MiB]",
    ] {
        assert!(r.stdout.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn a_refused_port_is_down_at_the_tcp_layer() {
    let port = common::free_port();
    let r = probe(&[&format!("http://127.0.0.1:{port}/")]);
    let ev = r.event();
    assert_eq!(r.code, 2);
    assert_eq!(kind(&ev), "connect_refused");
    assert_eq!(ev["error"]["layer"], "tcp");
    assert!(ev["phases"]["connect_ms"].is_number());
}

#[test]
fn no_address_in_the_family_is_a_dns_failure() {
    let r = probe(&["-6", "http://127.0.0.1:9/"]);
    let ev = r.event();
    assert_eq!(kind(&ev), "dns_failure");
    assert_eq!(ev["error"]["layer"], "dns");
    assert!(ev["reason"].as_str().unwrap().contains("IPv6"), "{ev}");
}

#[test]
fn a_name_resolves_through_getaddrinfo_or_resolve() {
    let s = Server::http(|_| Response::ok("hi"));
    // localhost: a real lookup, answered from /etc/hosts.
    let ev = probe(&["-4", &format!("http://localhost:{}/", s.port())]).event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert!(ev["phases"]["dns_ms"].is_number(), "{ev}");
    // --resolve: the name is never looked up, the Host header keeps it.
    let r = probe(&[
        &format!("http://www.pup.test:{}/", s.port()),
        "--resolve",
        &format!("www.pup.test:{}:127.0.0.1", s.port()),
    ]);
    let ev = r.event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert!(ev["phases"].get("dns_ms").is_none());
    let q = s.requests().pop().unwrap();
    assert_eq!(
        q.header("host"),
        Some(&*format!("www.pup.test:{}", s.port()))
    );
}

#[test]
fn a_silent_server_times_out_in_ttfb_within_the_deadline() {
    let s = Server::raw(|c| {
        // Accept, read the request, never answer (until the probe leaves).
        let mut b = [0u8; 1024];
        while matches!(c.read(&mut b), Ok(n) if n > 0) {}
    });
    let r = probe(&[&s.url("/"), "--timeout", "1s"]);
    let ev = r.event();
    assert_eq!(r.code, 2);
    assert_eq!(kind(&ev), "timeout");
    assert_eq!(ev["error"]["phase"], "ttfb");
    assert!(r.elapsed < Duration::from_millis(1700), "{:?}", r.elapsed);
    assert!(r.elapsed >= Duration::from_millis(1000), "{:?}", r.elapsed);
}

/// Sends a 20-byte body one byte every `gap`.
fn dribbler(gap: Duration) -> Server {
    Server::raw(move |c| {
        let _ = common::http_server::read_request(c);
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n");
        for b in b"slow-body-0123456789" {
            std::thread::sleep(gap);
            if c.write_all(&[*b]).and_then(|_| c.flush()).is_err() {
                return;
            }
        }
    })
}

#[test]
fn a_dribbled_body_is_read_whole_or_times_out_in_transfer() {
    let s = dribbler(Duration::from_millis(25));
    let ev = probe(&[&s.url("/"), "--contains", "0123456789"]).event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["body_bytes"], 20);
    assert!(
        ev["phases"]["transfer_ms"].as_f64().unwrap() >= 400.0,
        "{ev}"
    );

    let s = dribbler(Duration::from_millis(200));
    let r = probe(&[&s.url("/"), "--timeout", "1s"]);
    let ev = r.event();
    assert_eq!(kind(&ev), "timeout", "{ev}");
    assert_eq!(ev["error"]["phase"], "transfer");
    assert!(r.elapsed < Duration::from_millis(1700), "{:?}", r.elapsed);
}

/// A server sending a 200 MB body made on the fly (never held in memory).
fn huge() -> Server {
    Server::raw(|c| {
        let _ = common::http_server::read_request(c);
        let size: u64 = 200 << 20;
        let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
        let block = vec![b'x'; 64 << 10];
        let mut sent = 0;
        while sent < size {
            if c.write_all(&block).is_err() {
                return;
            }
            sent += block.len() as u64;
        }
    })
}

/// The largest peak RSS of any child this test process has waited for,
/// in KiB: an upper bound for the probe's own.
fn children_max_rss_kib() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) },
        0
    );
    ru.ru_maxrss
}

#[test]
fn a_200_mb_body_keeps_memory_bounded() {
    let s = huge();
    // An assertion that needs the body: at most --max-body is read.
    let r = probe(&[&s.url("/"), "--contains", "needle"]);
    let ev = r.event();
    assert_eq!(kind(&ev), "body_too_large", "{ev}");
    assert_eq!(ev["error"]["layer"], "content");
    assert_eq!(ev["details"]["body_bytes"], 1 << 20);
    assert_eq!(ev["details"]["body_truncated"], true);
    // A found text is found, even in a cut body.
    let ev = probe(&[&s.url("/"), "--contains", "xxxx"]).event();
    assert_eq!(ev["status"], "up", "{ev}");
    // Without body assertions the whole body streams through, counted.
    let r = probe(&[&s.url("/"), "--max-body", "1GiB"]);
    let ev = r.event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["body_bytes"], 200u64 << 20);
    let rss = children_max_rss_kib();
    assert!(rss < 40 * 1024, "a probe peaked at {rss} KiB");
}

#[test]
fn garbage_or_nothing_instead_of_http_is_a_protocol_error() {
    let s = Server::raw(|c| {
        let _ = c.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
    });
    let ev = probe(&[&s.url("/")]).event();
    assert_eq!(kind(&ev), "protocol_error", "{ev}");
    assert_eq!(ev["error"]["layer"], "protocol");
    assert!(ev["reason"].as_str().unwrap().contains("SSH-2.0"), "{ev}");

    let s = Server::raw(|c| {
        let _ = common::http_server::read_request(c);
    });
    let ev = probe(&[&s.url("/")]).event();
    assert_eq!(kind(&ev), "protocol_error", "{ev}");
    assert!(ev["reason"]
        .as_str()
        .unwrap()
        .contains("without a response"));

    let s = Server::raw(|c| {
        let _ = common::http_server::read_request(c);
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
    });
    let ev = probe(&[&s.url("/")]).event();
    assert_eq!(kind(&ev), "protocol_error", "{ev}");
    assert!(ev["reason"].as_str().unwrap().contains("5 of 100"), "{ev}");
}

#[test]
fn chunked_close_delimited_head_and_no_content_bodies() {
    let s = Server::raw(|c| {
        let Some(req) = common::http_server::read_request(c) else {
            return;
        };
        let out: &[u8] = match req.path.as_str() {
            "/chunked" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
            "/close" => b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
            "/empty" => b"HTTP/1.1 204 No Content\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
        };
        let _ = c.write_all(out);
    });
    let ev = probe(&[&s.url("/chunked"), "--contains", "hello, world"]).event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["body_bytes"], 12);
    let ev = probe(&[&s.url("/close"), "--regex", "the end$"]).event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["http_version"], "1.0");
    let ev = probe(&[&s.url("/empty"), "--expect-status", "204"]).event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["body_bytes"], 0);
    let ev = probe(&[&s.url("/head"), "-X", "HEAD"]).event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["body_bytes"], 0);
}

fn redirector() -> Server {
    Server::http(|req| match req.path.as_str() {
        "/a/start" => Response::redirect(302, "next?x=1"),
        "/a/next?x=1" => Response::redirect(301, "../b/./final"),
        "/b/final" => Response::ok("arrived"),
        "/loop" => Response::redirect(307, "/loop"),
        "/post" => Response::redirect(303, "/b/final"),
        p => Response::new(404, p.to_string()),
    })
}

#[test]
fn redirects_are_judged_as_they_are_or_followed() {
    let s = redirector();
    // --follow 0: the 302 itself is judged; the default list admits it.
    let ev = probe(&[&s.url("/a/start")]).event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["http_status"], 302);
    let ev = probe(&[&s.url("/a/start"), "--expect-status", "200"]).event();
    assert_eq!(kind(&ev), "status_mismatch");
    // Followed: relative Locations resolved against the current URL.
    let ev = probe(&[&s.url("/a/start"), "--follow", "5", "--contains", "arrived"]).event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["url"], s.url("/b/final"));
    let hops = ev["details"]["redirects"].as_array().unwrap();
    assert_eq!(hops.len(), 2);
    assert_eq!(hops[0]["status"], 302);
    assert_eq!(hops[1]["location"], "../b/./final");
    // Too few hops allowed, and a loop.
    let ev = probe(&[&s.url("/a/start"), "--follow", "1"]).event();
    assert_eq!(kind(&ev), "too_many_redirects", "{ev}");
    let ev = probe(&[&s.url("/loop"), "--follow", "3"]).event();
    assert_eq!(kind(&ev), "too_many_redirects", "{ev}");
    // 303 after a POST: GET, without the body.
    let ev = probe(&[&s.url("/post"), "--data", "x=1", "--follow", "1"]).event();
    assert_eq!(ev["status"], "up", "{ev}");
    let reqs = s.requests();
    let last = reqs.last().unwrap();
    assert_eq!((last.method.as_str(), last.body.len()), ("GET", 0));
}

// ------------------------------------------------------------------ TLS

/// An HTTPS server presenting `id`, and the flags that make the probe
/// reach it as https://pup.test:PORT/ trusting `ca`.
struct Tls {
    server: Server,
    _dir: TempDir,
    ca_file: String,
}

impl Tls {
    fn new(ca: &TestCa, id: &Identity) -> Tls {
        let dir = TempDir::new("http-tls");
        let ca_file = dir.join("ca.pem");
        ca.write_pem(&ca_file);
        Tls {
            server: Server::https(id, |_| Response::ok("secure hello")),
            ca_file: ca_file.display().to_string(),
            _dir: dir,
        }
    }

    fn probe(&self, extra: &[&str]) -> common::Run {
        let port = self.server.port();
        let url = format!("https://pup.test:{port}/");
        let resolve = format!("pup.test:{port}:127.0.0.1");
        let mut args = vec![
            url.as_str(),
            "--resolve",
            &resolve,
            "--ca-file",
            &self.ca_file,
        ];
        args.extend_from_slice(extra);
        probe(&args)
    }
}

#[test]
fn a_valid_certificate_is_up_with_its_facts() {
    let ca = TestCa::new();
    let t = Tls::new(&ca, &ca.issue(&["pup.test", "www.pup.test"], -1, 90));
    let r = t.probe(&["--contains", "secure hello"]);
    let ev = r.event();
    assert_eq!(r.code, 0, "{ev}");
    assert!(ev["phases"]["tls_ms"].is_number(), "{ev}");
    let c = &ev["details"]["cert"];
    assert!(
        c["subject"].as_str().unwrap().contains("CN=pup.test"),
        "{c}"
    );
    assert!(
        c["issuer"].as_str().unwrap().contains("Puptime test CA"),
        "{c}"
    );
    assert_eq!(c["sans"], serde_json::json!(["pup.test", "www.pup.test"]));
    let days = c["days_left"].as_i64().unwrap();
    assert!((88..=90).contains(&days), "{c}");
    assert!(c["not_after"].as_str().unwrap().ends_with('Z'));
    assert!(ev["reason"]
        .as_str()
        .unwrap()
        .contains("certificate valid for"));
    // The fingerprint covers the certificate: a new one changes it.
    let t2 = Tls::new(&ca, &ca.issue(&["pup.test"], -1, 90));
    let ev2 = t2.probe(&[]).event();
    assert_eq!(ev2["status"], "up");
    assert_ne!(ev["fingerprint"], ev2["fingerprint"]);
    // Without --ca-file the system store does not know the test CA.
    let port = t.server.port();
    let ev = probe(&[
        &format!("https://pup.test:{port}/"),
        "--resolve",
        &format!("pup.test:{port}:127.0.0.1"),
    ])
    .event();
    assert_eq!(kind(&ev), "cert_untrusted", "{ev}");
}

#[test]
fn each_certificate_failure_has_its_kind() {
    let ca = TestCa::new();
    let cases: Vec<(&str, Identity)> = vec![
        ("cert_expired", ca.issue(&["pup.test"], -60, -2)),
        ("cert_not_yet_valid", ca.issue(&["pup.test"], 2, 60)),
        ("cert_name_mismatch", ca.issue(&["other.test"], -1, 60)),
        ("cert_untrusted", Identity::self_signed(&["pup.test"])),
    ];
    for (want, id) in cases {
        let t = Tls::new(&ca, &id);
        let r = t.probe(&[]);
        let ev = r.event();
        assert_eq!(r.code, 2, "{want}: {ev}");
        assert_eq!(kind(&ev), want, "{ev}");
        assert_eq!(ev["error"]["layer"], "tls");
        // The certificate is still reported, from a second look.
        assert!(
            ev["details"]["cert"]["not_after"].is_string(),
            "{want}: {ev}"
        );
        assert!(ev["fingerprint"].is_string());
        // --insecure skips verification (expiry is still judged).
        let ev = t.probe(&["--insecure"]).event();
        if want == "cert_expired" {
            assert_eq!(kind(&ev), "cert_expiring", "{ev}");
        } else {
            assert_eq!(ev["status"], "up", "{want} --insecure: {ev}");
        }
    }
}

#[test]
fn an_expiring_certificate_is_degraded_then_down() {
    let ca = TestCa::new();
    let t = Tls::new(&ca, &ca.issue(&["pup.test"], -80, 10));
    let r = t.probe(&[]);
    let ev = r.event();
    assert_eq!(r.code, 1, "{ev}");
    assert_eq!(ev["status"], "degraded");
    assert_eq!(kind(&ev), "cert_expiring");
    assert!(
        ev["reason"]
            .as_str()
            .unwrap()
            .contains("--cert-warn 14days"),
        "{ev}"
    );
    let r = t.probe(&["--cert-crit", "11d", "--cert-warn", "30d"]);
    assert_eq!(r.code, 2);
    assert_eq!(kind(&r.event()), "cert_expiring");
    let r = t.probe(&["--cert-warn", "5d", "--cert-crit", "1d"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    // A content failure outranks the warning.
    let r = t.probe(&["--contains", "absent"]);
    assert_eq!(kind(&r.event()), "content_mismatch");
}

#[test]
fn a_plain_server_behind_https_fails_the_handshake() {
    let s = Server::http(|_| Response::ok("plain"));
    let ev = probe(&[&format!("https://127.0.0.1:{}/", s.port())]).event();
    assert_eq!(kind(&ev), "tls_handshake_failed", "{ev}");
    assert_eq!(ev["error"]["layer"], "tls");
}

#[test]
fn a_silent_tls_server_times_out_in_the_handshake() {
    let s = Server::raw(|c| {
        let mut b = [0u8; 1024];
        while matches!(c.read(&mut b), Ok(n) if n > 0) {}
    });
    let r = probe(&[
        &format!("https://127.0.0.1:{}/", s.port()),
        "--timeout",
        "700ms",
    ]);
    let ev = r.event();
    assert_eq!(kind(&ev), "timeout", "{ev}");
    assert_eq!(ev["error"]["phase"], "tls");
    assert!(r.elapsed < Duration::from_millis(1400), "{:?}", r.elapsed);
}

// ---------------------------------------------------------- stream mode

#[test]
fn stream_mode_mixes_good_and_bad_lines() {
    let s = api();
    let refused = common::free_port();
    let input = format!(
        "# a comment, then a blank line\n\n{ok}\n{ok} --contains nowhere --name named\nhttp://127.0.0.1:{refused}/\n{ok} --bogus\n'unterminated\n{missing} --expect-status 404 --tag team=web\n",
        ok = s.url("/api"),
        missing = s.url("/missing"),
    );
    let r = run_stdin(BIN, &["--stdin", "-j", "4", "--timeout", "5s"], &input);
    let evs = r.events();
    assert_eq!(evs.len(), 6, "{}", r.stdout);
    assert_eq!(r.code, 2, "the worst is down");
    let find = |check: &str| {
        evs.iter()
            .find(|e| e["check"] == check)
            .unwrap_or_else(|| panic!("no {check}: {}", r.stdout))
    };
    assert_eq!(find(&s.url("/api"))["status"], "up");
    assert_eq!(kind(find("named")), "content_mismatch");
    assert_eq!(
        kind(find(&format!("http://127.0.0.1:{refused}/"))),
        "connect_refused"
    );
    let bad = find("stdin:6");
    assert_eq!(bad["status"], "unknown");
    assert!(bad["reason"].as_str().unwrap().contains("--bogus"));
    assert_eq!(find("stdin:7")["status"], "unknown");
    let m = find(&s.url("/missing"));
    assert_eq!(m["status"], "up");
    assert_eq!(m["tags"]["team"], "web");
}

#[test]
fn a_closed_stdout_ends_the_probe_quietly() {
    let s = Server::http(|_| Response::ok("hi"));
    let lines: String = (0..500).map(|_| format!("{}\n", s.url("/"))).collect();
    let script = format!("{BIN} --stdin -j 8 | head -1");
    let r = run_with(
        "sh",
        &["-c", &script],
        Some(&lines),
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert_eq!(r.stderr, "", "no panic, no message");
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
}

#[test]
fn format_text_is_one_short_line() {
    let s = api();
    let r = probe(&["--format", "text", &s.url("/api"), &s.url("/missing")]);
    assert_eq!(r.code, 2);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    let up = lines
        .iter()
        .find(|l| l.starts_with("UP "))
        .expect("an UP line");
    assert!(up.contains("HTTP 200"), "{up}");
    let down = lines
        .iter()
        .find(|l| l.starts_with("DOWN "))
        .expect("a DOWN line");
    assert!(down.contains("status_mismatch: HTTP status 404"), "{down}");
}

/// Regression: socket timeouts of several seconds fired up to ~250 ms late
/// (the kernel's coarse timer wheel), so the driver's backstop reported a
/// bare `timeout` without the phase.
#[test]
fn a_multi_second_deadline_is_met_by_the_probe_itself() {
    let s = Server::raw(|c| {
        let mut b = [0u8; 1024];
        while matches!(c.read(&mut b), Ok(n) if n > 0) {}
    });
    let r = probe(&[&s.url("/"), "--timeout", "3s"]);
    let ev = r.event();
    assert_eq!(ev["error"]["phase"], "ttfb", "{ev}");
    assert!(r.elapsed < Duration::from_millis(3600), "{:?}", r.elapsed);
}

#[test]
fn credentials_do_not_follow_a_redirect_to_another_host() {
    let other = Server::http(|_| Response::ok("elsewhere"));
    let to = other.url("/landing");
    let first = Server::http(move |_| Response::redirect(302, &to));
    let r = run_with(
        BIN,
        &[
            &first.url("/"),
            "--follow",
            "1",
            "--user",
            "alice",
            "-H",
            "Cookie: session=1",
            "-H",
            "X-Kept: yes",
        ],
        None,
        &[("PUP_PASSWORD", "pw")],
        Duration::from_secs(30),
    );
    let ev = r.event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["url"], other.url("/landing"));
    let q1 = &first.requests()[0];
    assert!(q1.header("authorization").is_some());
    assert_eq!(q1.header("cookie"), Some("session=1"));
    let q2 = &other.requests()[0];
    assert_eq!(q2.header("authorization"), None, "{q2:?}");
    assert_eq!(q2.header("cookie"), None, "{q2:?}");
    assert_eq!(q2.header("x-kept"), Some("yes"));
}

#[test]
fn stream_mode_checks_many_https_targets_with_one_tls_setup() {
    let ca = TestCa::new();
    let t = Tls::new(&ca, &ca.issue(&["pup.test"], -1, 90));
    let port = t.server.port();
    let line = format!("https://pup.test:{port}/ --contains secure\n");
    let input = line.repeat(30);
    let resolve = format!("pup.test:{port}:127.0.0.1");
    let r = run_stdin(
        BIN,
        &[
            "--stdin",
            "-j",
            "8",
            "--resolve",
            &resolve,
            "--ca-file",
            &t.ca_file,
        ],
        &input,
    );
    let evs = r.events();
    assert_eq!(evs.len(), 30, "{}", r.stderr);
    assert!(evs.iter().all(|e| e["status"] == "up"), "{}", r.stdout);
    assert_eq!(r.code, 0);
}

/// Many servers end a close-delimited body over TLS without close_notify;
/// OpenSSL 3 calls that an error, HTTP framing says the body is complete.
#[test]
fn a_tls_body_ended_by_a_bare_close_is_complete() {
    let ca = TestCa::new();
    let id = ca.issue(&["pup.test"], -1, 90);
    let s = Server::raw_tls(&id, |c| {
        let _ = common::http_server::read_request(c);
        let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\nall of the body");
        let _ = c.flush();
        // Dropped without a TLS shutdown.
    });
    let dir = TempDir::new("http-tls-close");
    let ca_file = dir.join("ca.pem");
    ca.write_pem(&ca_file);
    let port = s.port();
    let ev = probe(&[
        &format!("https://pup.test:{port}/"),
        "--resolve",
        &format!("pup.test:{port}:127.0.0.1"),
        "--ca-file",
        ca_file.to_str().unwrap(),
        "--regex",
        "of the body$",
    ])
    .event();
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["body_bytes"], 15);
}
