//! pup-probe-redis against real redis-server processes on 127.0.0.1 (plain,
//! passwords, ACL users, replication, maxmemory, TLS with a certificate
//! made here), plus servers written in this file for what a real Redis
//! will not do on demand: never answer, answer slowly, answer HTTP, or
//! reply LOADING/BUSY/MISCONF. Every event goes through the schema check
//! of the harness.

mod common;

use common::redis_server::RedisServer;
use common::{run, run_stdin, run_with, Run, TempDir};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const PROBE: &str = bin!("pup-probe-redis");

fn probe(args: &[&str]) -> Run {
    run(PROBE, args)
}

fn probe_env(args: &[&str], envs: &[(&str, &str)]) -> Run {
    run_with(PROBE, args, None, envs, Duration::from_secs(30))
}

/// The single event, and that the exit code matches its status.
fn result(r: &Run) -> Value {
    let ev = r.event();
    let want = match ev["status"].as_str().unwrap() {
        "up" => 0,
        "degraded" => 1,
        "down" => 2,
        _ => 3,
    };
    assert_eq!(r.code, want, "exit code for {ev}\nstderr: {}", r.stderr);
    ev
}

fn kind(ev: &Value) -> &str {
    ev["error"]["kind"].as_str().unwrap_or("")
}

#[track_caller]
fn assert_down(r: &Run, k: &str) -> Value {
    let ev = result(r);
    assert_eq!(ev["status"], "down", "{ev}");
    assert_eq!(kind(&ev), k, "{ev}");
    ev
}

#[test]
fn a_plain_server_is_up_with_its_facts_and_is_not_written_to() {
    let r = RedisServer::start(&[]);
    let ev = result(&probe(&[&r.url()]));
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["target"], r.url());
    let d = &ev["details"];
    assert_eq!(d["role"], "master");
    assert_eq!(d["loading"], false);
    assert_eq!(d["connected_replicas"], 0);
    assert!(d["version"].as_str().unwrap().starts_with('7'), "{d}");
    assert!(d["used_memory"].as_u64().unwrap() > 0);
    assert_eq!(d["rdb_last_bgsave_status"], "ok");
    for p in ["connect_ms", "ping_ms", "info_ms"] {
        assert!(ev["phases"][p].is_number(), "{p} missing: {ev}");
    }
    assert!(ev["phases"].get("write_ms").is_none());
    assert!(ev["phases"].get("auth_ms").is_none());
    assert!(ev["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    // A check without --write-check never writes.
    let stats = r.cli(&["INFO", "commandstats"]);
    assert!(!stats.contains("cmdstat_set"), "{stats}");
    assert_eq!(r.cli(&["DBSIZE"]), "0");
    // A password given to a server without one: served, and said so.
    let ev = result(&probe_env(&[&r.url()], &[("REDISCLI_AUTH", "unneeded")]));
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["auth"], "not_required");
}

#[test]
fn write_check_writes_a_canary_and_removes_it() {
    let r = RedisServer::start(&[]);
    let ev = result(&probe(&[&r.url(), "--write-check", "--role", "master"]));
    assert_eq!(ev["status"], "up", "{ev}");
    assert!(ev["phases"]["write_ms"].is_number());
    let asserts = ev["assertions"].as_array().unwrap();
    assert!(asserts
        .iter()
        .any(|a| a["what"] == "write" && a["ok"] == true));
    assert!(asserts
        .iter()
        .any(|a| a["what"] == "role" && a["ok"] == true));
    let stats = r.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_set:calls=1"), "{stats}");
    assert!(stats.contains("cmdstat_del:calls=1"), "{stats}");
    assert_eq!(r.cli(&["DBSIZE"]), "0", "the canary was left behind");
}

#[test]
fn passwords_right_wrong_missing_and_from_each_source() {
    let r = RedisServer::start(&["--requirepass", "s3cret"]);
    let with = |pw: &str| format!("redis://:{pw}@127.0.0.1:{}", r.port);

    let ev = result(&probe(&[&with("s3cret")]));
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["password_from"], "url");
    assert!(ev["phases"]["auth_ms"].is_number());
    // The password never shows in the event.
    assert_eq!(ev["target"], r.url());
    assert!(!ev.to_string().contains("s3cret"));

    let ev = assert_down(&probe(&[&with("wrong")]), "auth_failed");
    assert_eq!(ev["error"]["layer"], "protocol");
    assert_down(&probe(&[&r.url()]), "noauth");

    let ev = result(&probe_env(&[&r.url()], &[("REDISCLI_AUTH", "s3cret")]));
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["password_from"], "env");

    let dir = TempDir::new("redis-pw");
    let file = dir.join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    let f = file.to_str().unwrap();
    // The file wins over the environment; the URL wins over both.
    let ev = result(&probe_env(
        &[&r.url(), "--password-file", f],
        &[("REDISCLI_AUTH", "wrong")],
    ));
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["password_from"], "file");
    let ev = result(&probe_env(
        &[&with("s3cret"), "--password-file", f],
        &[("REDISCLI_AUTH", "wrong")],
    ));
    assert_eq!(ev["details"]["password_from"], "url");
}

#[test]
fn acl_users_without_permission_for_info_or_set_are_noperm() {
    let r = RedisServer::start(&[
        "--user", "pinger", "on", ">pw1", "~*", "+ping", "--user", "reader", "on", ">pw2", "~*",
        "+ping", "+info", "+get",
    ]);
    let url = |u: &str, p: &str| format!("redis://{u}:{p}@127.0.0.1:{}", r.port);

    let ev = assert_down(&probe(&[&url("pinger", "pw1")]), "noperm");
    assert!(ev["reason"].as_str().unwrap().contains("INFO"), "{ev}");
    assert_eq!(ev["target"], format!("redis://pinger@127.0.0.1:{}", r.port));

    let ev = result(&probe(&[&url("reader", "pw2")]));
    assert_eq!(ev["status"], "up", "{ev}");
    let ev = assert_down(&probe(&[&url("reader", "pw2"), "--write-check"]), "noperm");
    assert!(ev["reason"].as_str().unwrap().contains("SET"), "{ev}");

    assert_down(&probe(&[&url("reader", "nope")]), "auth_failed");
    // A user with no password anywhere is a usage error, not a guess.
    let u = format!("redis://reader@127.0.0.1:{}", r.port);
    let run = probe(&[&u]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stdout.is_empty());
}

#[test]
fn replicas_roles_lag_and_a_lost_master() {
    let mut m = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    let mp = m.port.to_string();
    let r = RedisServer::start(&["--replicaof", "127.0.0.1", &mp]);
    let strict = RedisServer::start(&[
        "--replicaof",
        "127.0.0.1",
        &mp,
        "--replica-serve-stale-data",
        "no",
    ]);
    r.wait_info("master_link_status", "up", Duration::from_secs(15));
    strict.wait_info("master_link_status", "up", Duration::from_secs(15));

    let ev = result(&probe(&[&r.url(), "--role", "replica", "--max-lag", "1h"]));
    assert_eq!(ev["status"], "up", "{ev}");
    let d = &ev["details"];
    assert_eq!(d["role"], "replica");
    assert_eq!(d["master_port"], m.port);
    assert_eq!(d["master_link_status"], "up");
    assert!(d["lag_s"].is_u64(), "{d}");
    let replica_fp = ev["fingerprint"].clone();

    let ev = result(&probe(&[&m.url(), "--role", "master", "--max-lag", "1h"]));
    assert_eq!(ev["status"], "up", "{ev}");
    assert_eq!(ev["details"]["connected_replicas"], 2);
    assert_ne!(ev["fingerprint"], replica_fp);
    let lag = ev["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["what"] == "lag")
        .unwrap()
        .clone();
    assert_eq!(lag["ok"], true, "{lag}");
    assert_ne!(lag["actual"], "no replicas");

    // A replica asserted as master.
    let ev = assert_down(&probe(&[&r.url(), "--role", "master"]), "role_mismatch");
    assert_eq!(ev["error"]["layer"], "content");
    // A write to a read-only replica.
    assert_down(&probe(&[&r.url(), "--write-check"]), "readonly");

    m.stop();
    r.wait_info("master_link_status", "down", Duration::from_secs(15));
    let ev = assert_down(&probe(&[&r.url()]), "replication_broken");
    assert!(
        ev["reason"].as_str().unwrap().contains(&mp),
        "reason names the master: {ev}"
    );
    // Same role and master: the fingerprint does not change with the link.
    assert_eq!(ev["fingerprint"], replica_fp);
    let ev = assert_down(&probe(&[&strict.url()]), "masterdown");
    assert_eq!(ev["details"]["master_link_status"], "down", "{ev}");
}

#[test]
fn maxmemory_one_with_noeviction_refuses_the_canary_and_is_over_any_pct() {
    let r = RedisServer::start(&["--maxmemory", "1", "--maxmemory-policy", "noeviction"]);
    // Reading is fine.
    assert_eq!(result(&probe(&[&r.url()]))["status"], "up");
    assert_down(&probe(&[&r.url(), "--write-check"]), "oom");
    let ev = result(&probe(&[&r.url(), "--max-memory-pct", "90"]));
    assert_eq!(ev["status"], "degraded", "{ev}");
    assert_eq!(kind(&ev), "memory_high");
    assert_eq!(ev["details"]["maxmemory"], 1);
}

/// A certificate for `localhost` only (no IP), self-signed.
fn make_cert(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    common::http_server::Identity::self_signed(&["localhost"]).write_pem(dir.path())
}

#[test]
fn tls_trusted_untrusted_insecure_and_wrong_name() {
    let dir = TempDir::new("redis-tls");
    let (cert, key) = make_cert(&dir);
    let ca = cert.to_str().unwrap();
    let r = RedisServer::start_tls(&cert, &key, &[]);
    let by_name = format!("rediss://localhost:{}", r.port);

    let ev = result(&probe(&[&by_name, "--ca-file", ca, "-4"]));
    assert_eq!(ev["status"], "up", "{ev}");
    assert!(ev["phases"]["tls_ms"].is_number());
    assert!(ev["details"]["cert_not_after"].is_string(), "{ev}");

    let ev = assert_down(&probe(&[&by_name, "-4"]), "cert_untrusted");
    assert_eq!(ev["error"]["layer"], "tls");
    // The certificate names localhost, not 127.0.0.1.
    assert_down(&probe(&[&r.url(), "--ca-file", ca]), "cert_name_mismatch");
    let ev = result(&probe(&[&r.url(), "--insecure"]));
    assert_eq!(ev["status"], "up", "{ev}");

    // Plain text to the TLS port: Redis hangs up.
    let plain = format!("redis://127.0.0.1:{}", r.port);
    let ev = assert_down(&probe(&[&plain]), "connection_closed");
    assert!(ev["reason"].as_str().unwrap().contains("rediss://"), "{ev}");
    // TLS to a plain-text port: Redis takes the ClientHello for the start
    // of an inline command and waits for its end, so the handshake can
    // only time out.
    let p = RedisServer::start(&[]);
    let tls_to_plain = format!("rediss://127.0.0.1:{}", p.port);
    let ev = assert_down(
        &probe(&[&tls_to_plain, "--insecure", "--timeout", "500ms"]),
        "timeout",
    );
    assert_eq!(ev["error"]["phase"], "tls");
    // A bad --ca-file is a usage error.
    let run = probe(&[&by_name, "--ca-file", key.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("no PEM certificate"), "{}", run.stderr);
}

/// A test CA and a certificate for localhost and 127.0.0.1 it signed,
/// valid only from `start` to `end` (`YYYYMMDDhhmmssZ`): `openssl ca` is
/// the one openssl 3.0 command that takes explicit dates.
fn ca_signed(dir: &TempDir, start: &str, end: &str) -> [std::path::PathBuf; 3] {
    let openssl = common::need("openssl");
    let sh = |args: &[&str]| {
        let out = Command::new(&openssl)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=pup test CA"];
    a.extend(ec);
    a.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    sh(&a);
    let mut a = vec!["req", "-new", "-subj", "/CN=localhost"];
    a.extend(ec);
    a.extend(["-keyout", "srv.key", "-out", "srv.csr"]);
    sh(&a);
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
         default_md = sha256\npolicy = p\nx509_extensions = ext\n[p]\ncommonName = supplied\n\
         [ext]\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    sh(&[
        "ca",
        "-batch",
        "-config",
        "ca.cnf",
        "-cert",
        "ca.pem",
        "-keyfile",
        "ca.key",
        "-in",
        "srv.csr",
        "-out",
        "srv.pem",
        "-startdate",
        start,
        "-enddate",
        end,
    ]);
    [dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key")]
}

#[test]
fn tls_certificates_out_of_their_dates() {
    for (start, end, want) in [
        ("20200101000000Z", "20200102000000Z", "cert_expired"),
        ("20990101000000Z", "20990102000000Z", "cert_not_yet_valid"),
    ] {
        let dir = TempDir::new("redis-ca");
        let [ca, cert, key] = ca_signed(&dir, start, end);
        let r = RedisServer::start_tls(&cert, &key, &[]);
        let ev = assert_down(&probe(&[&r.url(), "--ca-file", ca.to_str().unwrap()]), want);
        assert_eq!(ev["error"]["layer"], "tls");
        // --insecure looks past it, and the details say when it expires.
        let ev = result(&probe(&[&r.url(), "--insecure"]));
        assert_eq!(ev["status"], "up", "{ev}");
        assert!(
            ev["details"]["cert_not_after"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}-01-02", &end[..4])),
            "{ev}"
        );
    }
}

/// A server written here: for each RESP command it gets, `answer` says
/// what to send back (None: say nothing, ever), after `delay`.
type Answer = dyn Fn(&[String]) -> Option<Vec<u8>> + Send + Sync;

fn scripted(delay: Duration, answer: Arc<Answer>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || serve(s, delay, &*answer));
        }
    });
    port
}

fn serve(s: TcpStream, delay: Duration, answer: &Answer) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut read_line = |r: &mut BufReader<TcpStream>| -> Option<String> {
        line.clear();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.trim_end().to_string()),
            _ => None,
        }
    };
    loop {
        let Some(head) = read_line(&mut r) else {
            return;
        };
        let n: usize = head.trim_start_matches('*').parse().unwrap_or(0);
        let mut args = Vec::new();
        for _ in 0..n {
            let Some(_len) = read_line(&mut r) else {
                return;
            };
            let Some(arg) = read_line(&mut r) else { return };
            args.push(arg);
        }
        if args.is_empty() {
            return;
        }
        args[0] = args[0].to_ascii_uppercase();
        std::thread::sleep(delay);
        match answer(&args) {
            Some(bytes) => {
                if w.write_all(&bytes).is_err() {
                    return;
                }
            }
            None => std::thread::sleep(Duration::from_secs(60)),
        }
    }
}

fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

const INFO_MASTER: &str = "# Server\r\nredis_version:7.0.99\r\nredis_mode:standalone\r\nuptime_in_seconds:5\r\n# Persistence\r\nloading:0\r\nrdb_last_bgsave_status:ok\r\naof_enabled:0\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\n";

/// A scripted server answering PONG and `info` to INFO, `other` to the
/// rest (None: the default of each).
fn fake(info: &'static str, ping: Option<&'static str>, other: Option<&'static str>) -> u16 {
    scripted(
        Duration::ZERO,
        Arc::new(move |a: &[String]| {
            Some(match a[0].as_str() {
                "PING" => ping.unwrap_or("+PONG\r\n").as_bytes().to_vec(),
                "INFO" => bulk(info),
                "SET" | "AUTH" | "SELECT" => other.unwrap_or("+OK\r\n").as_bytes().to_vec(),
                "GET" => other.unwrap_or("$-1\r\n").as_bytes().to_vec(),
                _ => b":1\r\n".to_vec(),
            })
        }),
    )
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

#[test]
fn replies_a_real_server_gives_only_rarely_come_from_a_scripted_one() {
    let loading_info =
        "loading:1\r\nloading_loaded_perc:42.5\r\nloading_eta_seconds:7\r\nrole:master\r\n";
    let lagging = "role:slave\r\nmaster_host:10.9.9.9\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:30\r\nmaster_sync_in_progress:0\r\n";
    let bgsave_err = "role:master\r\nrdb_last_bgsave_status:err\r\n";
    let aof_err = "role:master\r\naof_enabled:1\r\naof_last_write_status:err\r\n";
    let syncing = "role:slave\r\nmaster_host:10.9.9.9\r\nmaster_port:6379\r\nmaster_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\nmaster_sync_in_progress:1\r\n";
    // (server, extra args, status, kind, words in the reason)
    let cases: Vec<(u16, Vec<&str>, &str, &str, &str)> = vec![
        (
            fake(loading_info, Some("-LOADING Redis is loading the dataset in memory\r\n"), None),
            vec![],
            "down",
            "loading",
            "loading",
        ),
        (
            fake(INFO_MASTER, Some("-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n"), None),
            vec![],
            "down",
            "masterdown",
            "MASTERDOWN",
        ),
        (
            fake(INFO_MASTER, Some("-BUSY Redis is busy running a script.\r\n"), None),
            vec![],
            "down",
            "busy",
            "BUSY",
        ),
        (fake(lagging, None, None), vec!["--max-lag", "10s"], "degraded", "replication_lag", "30s"),
        (fake(lagging, None, None), vec!["--max-lag", "1m"], "up", "", "of 10.9.9.9:6379"),
        (fake(syncing, None, None), vec![], "down", "replication_broken", "initial sync"),
        (fake(bgsave_err, None, None), vec![], "degraded", "persistence_failed", "RDB"),
        (fake(aof_err, None, None), vec![], "degraded", "persistence_failed", "AOF"),
        // Worse wins: a role mismatch is down even with a failed save.
        (fake(bgsave_err, None, None), vec!["--role", "replica"], "down", "role_mismatch", "expected replica"),
        (
            fake(INFO_MASTER, None, Some("-MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.\r\n")),
            vec!["--write-check"],
            "down",
            "persistence_failed",
            "MISCONF",
        ),
        // SET says OK but GET finds nothing: the write did not stick.
        (fake(INFO_MASTER, None, None), vec!["--write-check"], "down", "canary_mismatch", "nil"),
        (fake(INFO_MASTER, Some(":1\r\n"), None), vec![], "down", "protocol_error", "PING"),
        (fake(INFO_MASTER, Some("-ERR unknown command 'PING'\r\n"), None), vec![], "down", "error_reply", "unknown command"),
        (fake(INFO_MASTER, None, Some("-ERR DB index is out of range\r\n")), vec!["/99"], "down", "error_reply", "out of range"),
        (fake(INFO_MASTER, Some("$99999999\r\n"), None), vec![], "down", "protocol_error", "cap"),
    ];
    for (port, extra, status, k, words) in cases {
        let mut args = vec![url(port)];
        let mut extra = extra.clone();
        if extra.first() == Some(&"/99") {
            args[0].push_str("/99");
            extra.remove(0);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let ev = result(&probe(&argv));
        assert_eq!(ev["status"], status, "{argv:?}: {ev}");
        assert_eq!(kind(&ev), k, "{argv:?}: {ev}");
        assert!(
            ev["reason"].as_str().unwrap().contains(words),
            "{argv:?}: reason lacks {words:?}: {ev}"
        );
    }
    // Loading: the details say how far.
    let p = fake(
        loading_info,
        Some("-LOADING Redis is loading the dataset in memory\r\n"),
        None,
    );
    let ev = result(&probe(&[&url(p)]));
    assert_eq!(ev["details"]["loading"], true);
    assert_eq!(ev["details"]["loading_pct"], 42.5);
    assert_eq!(ev["details"]["loading_eta_s"], 7);
}

#[test]
fn what_is_not_redis_is_named() {
    // An HTTP server: answers anything with 400.
    let http = scripted(
        Duration::ZERO,
        Arc::new(|_: &[String]| {
            Some(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            )
        }),
    );
    let ev = assert_down(&probe(&[&url(http)]), "protocol_error");
    assert!(
        ev["reason"].as_str().unwrap().contains("HTTP server"),
        "{ev}"
    );
    assert_eq!(ev["error"]["layer"], "protocol");

    // A server that hangs up at once (a proxy with no backend).
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            drop(s);
        }
    });
    assert_down(&probe(&[&url(port)]), "connection_closed");

    // Nothing listening.
    let closed = common::free_port();
    let ev = assert_down(&probe(&[&url(closed)]), "connect_refused");
    assert_eq!(ev["error"]["layer"], "tcp");
}

/// Accepts connections and never reads or writes a byte.
fn silent() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = l.incoming().flatten().collect();
        drop(held);
    });
    port
}

#[track_caller]
fn assert_timeout(r: &Run, phase: &str) {
    let ev = assert_down(r, "timeout");
    // The probe's own deadline, not the driver's backstop (which names no
    // phase and comes 250 ms later).
    assert_eq!(ev["error"]["phase"], phase, "{ev}");
    // duration_ms is the check itself; the wall time adds the process's
    // start and exit, which a loaded machine can slow down.
    let took = ev["duration_ms"].as_f64().unwrap();
    assert!((1000.0..1150.0).contains(&took), "{ev}");
    assert!(r.elapsed < Duration::from_millis(1600), "{:?}", r.elapsed);
}

#[test]
fn one_deadline_covers_every_round_trip() {
    // Accepts and never answers.
    let s = silent();
    assert_timeout(&probe(&[&url(s), "--timeout", "1s"]), "ping");
    let with_pw = format!("redis://:pw@127.0.0.1:{s}");
    assert_timeout(&probe(&[&with_pw, "--timeout", "1s"]), "auth");
    let tls = format!("rediss://127.0.0.1:{s}");
    assert_timeout(&probe(&[&tls, "--timeout", "1s", "--insecure"]), "tls");

    // Answers every command, each after 350 ms: AUTH, PING, then INFO
    // would end at 1050 ms. Each round trip alone is within the 1s
    // deadline; together they are not.
    let slow = scripted(
        Duration::from_millis(350),
        Arc::new(|a: &[String]| {
            Some(match a[0].as_str() {
                "PING" => b"+PONG\r\n".to_vec(),
                "INFO" => bulk(INFO_MASTER),
                _ => b"+OK\r\n".to_vec(),
            })
        }),
    );
    let u = format!("redis://:pw@127.0.0.1:{slow}");
    assert_timeout(&probe(&[&u, "--timeout", "1s"]), "info");
    // Given time, the same server is up.
    assert_eq!(result(&probe(&[&u, "--timeout", "3s"]))["status"], "up");
}

#[test]
fn stream_mode_runs_one_check_per_line() {
    let a = RedisServer::start(&[]);
    let b = RedisServer::start(&["--requirepass", "pw"]);
    let dir = TempDir::new("redis-stream");
    let pw = dir.join("pw");
    std::fs::write(&pw, "pw\n").unwrap();
    let input = format!(
        "# a comment\n{a}\n{b} --password-file {pw}\n\n{a} --role replica --name 'a as replica'\n{a} --bogus\n",
        a = a.url(),
        b = b.url(),
        pw = pw.display()
    );
    let r = run_stdin(PROBE, &["--stdin", "--tag", "env=test", "-j", "2"], &input);
    assert_eq!(r.code, 2, "{r:?}");
    let evs = r.events();
    assert_eq!(evs.len(), 4, "{}", r.stdout);
    let by = |check: &str| {
        evs.iter()
            .find(|e| e["check"] == check)
            .unwrap_or_else(|| panic!("no event for {check}: {}", r.stdout))
    };
    assert_eq!(by(&a.url())["status"], "up");
    assert_eq!(by(&a.url())["tags"]["env"], "test");
    assert_eq!(by(&b.url())["status"], "up");
    assert_eq!(kind(by("a as replica")), "role_mismatch");
    assert_eq!(kind(by("stdin:6")), "bad_input");
}

#[test]
fn usage_errors_exit_3_with_one_line() {
    for args in [
        vec!["ftp://127.0.0.1"],
        vec!["redis://127.0.0.1:0"],
        vec!["--role", "boss"],
        vec!["--max-memory-pct", "150"],
        vec!["--max-lag", "5"],
        vec!["--password-file", "/nonexistent/pw"],
        vec!["redis://a", "redis://b"],
        vec!["-6", "redis://127.0.0.1"],
    ] {
        let r = probe(&args);
        assert_eq!(r.code, 3, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("pup-probe-redis: "), "{}", r.stderr);
    }
    let help = probe(&["--help"]);
    assert_eq!(help.code, 0);
    for flag in [
        "--password-file",
        "--ca-file",
        "--insecure",
        "--role",
        "--max-lag",
        "--max-memory-pct",
        "--write-check",
        "REDISCLI_AUTH",
        "Examples:",
    ] {
        assert!(help.stdout.contains(flag), "--help lacks {flag}");
    }
}
