//! pup-probe-dns against real dnsmasq instances started on loopback, and
//! against small UDP servers written here for the replies dnsmasq never
//! sends (silence, garbage, a wrong ID, a truncated answer with no TCP).
//! Every event goes through the schema validation of the harness.

mod common;

use common::dnsmasq::Dnsmasq;
use common::{need, run, run_stdin, run_with};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PROBE: &str = bin!("pup-probe-dns");

/// A name as dnsmasq's `--dns-rr` hex wants it (uncompressed labels).
fn wire_name(n: &str) -> String {
    let mut s = String::new();
    for label in n.trim_end_matches('.').split('.') {
        s.push_str(&format!("{:02x}", label.len()));
        for b in label.bytes() {
            s.push_str(&format!("{b:02x}"));
        }
    }
    s + "00"
}

/// `--dns-rr` for an SOA record with this serial.
fn soa_rr(zone: &str, serial: u32) -> String {
    let mut hex = wire_name(&format!("ns1.{zone}")) + &wire_name(&format!("hostmaster.{zone}"));
    for n in [serial, 3600, 900, 600000, 3600] {
        hex.push_str(&format!("{n:08x}"));
    }
    format!("--dns-rr={zone},6,{hex}")
}

/// One dnsmasq serving a record of every supported type.
fn zone() -> Dnsmasq {
    let ns = format!("--dns-rr=pup.test,2,{}", wire_name("ns1.pup.test"));
    let soa = soa_rr("pup.test", 2026112401);
    Dnsmasq::start(&[
        "--host-record=www.pup.test,192.0.2.1",
        "--host-record=www.pup.test,192.0.2.2",
        "--host-record=www.pup.test,2001:db8::1",
        "--host-record=ttl.pup.test,192.0.2.5,300",
        "--mx-host=pup.test,mail.pup.test,10",
        "--mx-host=pup.test,Backup.pup.test,20",
        "--txt-record=txt.pup.test,hello world,second",
        "--txt-record=spf.pup.test,v=spf1 ,-all",
        "--srv-host=_sip._tcp.pup.test,sip.pup.test,5060,1,2",
        "--cname=alias.pup.test,www.pup.test",
        "--ptr-record=1.2.0.192.in-addr.arpa,www.pup.test",
        "--caa-record=pup.test,0,issue,ca.example",
        &ns,
        &soa,
    ])
}

fn probe(dns: &Dnsmasq, args: &[&str]) -> (i32, Value) {
    let server = dns.server();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--server", &server]);
    let r = run(PROBE, &all);
    (r.code, r.event())
}

fn kind(ev: &Value) -> &str {
    ev["error"]["kind"].as_str().unwrap_or("")
}

fn values(ev: &Value) -> Vec<String> {
    let mut v: Vec<String> = ev["details"]["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["value"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn assertion<'a>(ev: &'a Value, what: &str) -> &'a Value {
    ev["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["what"] == what)
        .unwrap_or_else(|| panic!("no {what} assertion in {ev}"))
}

#[test]
fn every_supported_type_is_read_and_written_as_dig_short_writes_it() {
    let dig = need("dig");
    let dns = zone();
    // name, type, the values as a user writes them for --expect
    let table: &[(&str, &str, &[&str])] = &[
        ("www.pup.test", "A", &["192.0.2.2", "192.0.2.1"]),
        ("www.pup.test", "aaaa", &["2001:0db8:0::1"]),
        ("alias.pup.test", "CNAME", &["WWW.pup.test"]),
        (
            "pup.test",
            "MX",
            &["10 mail.pup.test", "20 backup.pup.test."],
        ),
        ("pup.test", "NS", &["ns1.pup.test"]),
        ("txt.pup.test", "TXT", &[r#""hello world" "second""#]),
        ("spf.pup.test", "TXT", &["v=spf1 -all"]),
        (
            "pup.test",
            "SOA",
            &["ns1.pup.test. hostmaster.pup.test. 2026112401 3600 900 600000 3600"],
        ),
        ("_sip._tcp.pup.test", "SRV", &["1 2 5060 sip.pup.test"]),
        ("1.2.0.192.in-addr.arpa", "PTR", &["www.pup.test."]),
        ("192.0.2.1", "ptr", &["www.pup.test"]),
        ("pup.test", "CAA", &["0 issue \"ca.example\""]),
    ];
    for (name, ty, want) in table {
        let mut args = vec![*name, *ty];
        for w in *want {
            args.extend(["--expect", w]);
        }
        let (code, ev) = probe(&dns, &args);
        assert_eq!(code, 0, "{name} {ty}: {ev}");
        assert_eq!(ev["status"], "up");
        assert!(assertion(&ev, "answer")["ok"].as_bool().unwrap());
        // The values in the result are exactly dig +short's lines.
        let qname = if *name == "192.0.2.1" {
            "1.2.0.192.in-addr.arpa"
        } else {
            name
        };
        let out = Command::new(&dig)
            .args([
                "+short",
                "-p",
                &dns.port().to_string(),
                "@127.0.0.1",
                qname,
                ty,
            ])
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        assert_eq!(values(&ev), lines, "{name} {ty}");
        assert_eq!(ev["details"]["rcode"], "NOERROR");
        assert_eq!(ev["details"]["flags"]["aa"], true);
        assert!(ev["phases"]["query_ms"].as_f64().unwrap() >= 0.0);
        assert!(ev["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    }
}

#[test]
fn the_answer_set_must_equal_the_expected_set_exactly() {
    let dns = zone();
    let (code, ev) = probe(&dns, &["www.pup.test", "--expect", "192.0.2.1"]);
    assert_eq!(code, 2);
    assert_eq!(kind(&ev), "answer_mismatch");
    assert_eq!(ev["error"]["layer"], "content");
    assert!(ev["reason"]
        .as_str()
        .unwrap()
        .contains("unexpected {192.0.2.2}"));
    let a = assertion(&ev, "answer");
    assert_eq!(a["ok"], false);
    assert_eq!(a["expected"], "= {192.0.2.1}");
    assert_eq!(a["actual"], "{192.0.2.1, 192.0.2.2}");

    let (code, ev) = probe(
        &dns,
        &[
            "www.pup.test",
            "--expect",
            "192.0.2.1",
            "--expect",
            "192.0.2.2",
            "--expect",
            "192.0.2.3",
        ],
    );
    assert_eq!(code, 2);
    assert!(ev["reason"]
        .as_str()
        .unwrap()
        .contains("missing {192.0.2.3}"));

    // --expect-any: one present is enough; none present fails.
    let (code, _) = probe(
        &dns,
        &[
            "www.pup.test",
            "--expect-any",
            "192.0.2.9",
            "--expect-any",
            "192.0.2.2",
        ],
    );
    assert_eq!(code, 0);
    let (code, ev) = probe(&dns, &["www.pup.test", "--expect-any", "192.0.2.9"]);
    assert_eq!(code, 2);
    assert_eq!(kind(&ev), "answer_mismatch");
    assert_eq!(assertion(&ev, "answer_any")["ok"], false);

    // A CNAME chain is reported, the compared set is the asked type's.
    let (code, ev) = probe(
        &dns,
        &[
            "alias.pup.test",
            "--expect",
            "192.0.2.1",
            "--expect",
            "192.0.2.2",
        ],
    );
    assert_eq!(code, 0, "{ev}");
    assert_eq!(ev["details"]["chain"][0]["type"], "CNAME");
    assert_eq!(ev["details"]["chain"][0]["value"], "www.pup.test.");

    // RD is set unless --no-recurse; dnsmasq echoes it.
    let (_, ev) = probe(&dns, &["www.pup.test"]);
    assert_eq!(ev["details"]["flags"]["rd"], true);
    let (_, ev) = probe(&dns, &["www.pup.test", "--no-recurse"]);
    assert_eq!(ev["details"]["flags"]["rd"], false);

    // The fingerprint follows the set, not the order or the case.
    let (_, a) = probe(&dns, &["www.pup.test"]);
    let (_, b) = probe(&dns, &["WWW.Pup.Test."]);
    let (_, c) = probe(&dns, &["www.pup.test", "AAAA"]);
    assert_eq!(a["fingerprint"], b["fingerprint"]);
    assert_ne!(a["fingerprint"], c["fingerprint"]);
}

#[test]
fn an_empty_answer_fails_unless_asserted_and_min_ttl_is_judged() {
    let dns = zone();
    // www has no MX: NOERROR with no records (NODATA).
    let (code, ev) = probe(&dns, &["www.pup.test", "MX"]);
    assert_eq!(code, 2);
    assert_eq!(kind(&ev), "answer_mismatch");
    let (code, ev) = probe(&dns, &["www.pup.test", "MX", "--expect-empty"]);
    assert_eq!(code, 0, "{ev}");

    let (code, ev) = probe(&dns, &["ttl.pup.test", "--min-ttl", "5m"]);
    assert_eq!(code, 0, "{ev}");
    assert_eq!(assertion(&ev, "min_ttl")["actual"], "300s");
    let (code, ev) = probe(&dns, &["ttl.pup.test", "--min-ttl", "10m"]);
    assert_eq!(code, 2);
    assert_eq!(kind(&ev), "ttl_too_low");
    assert_eq!(ev["details"]["answers"][0]["ttl"], 300);
}

#[test]
fn nxdomain_and_refused_are_judged_against_the_asserted_rcode() {
    let dns = zone();
    let (code, ev) = probe(&dns, &["gone.pup.test", "--rcode", "nxdomain"]);
    assert_eq!(code, 0, "{ev}");
    assert_eq!(ev["details"]["rcode"], "NXDOMAIN");

    let (code, ev) = probe(&dns, &["gone.pup.test"]);
    assert_eq!(code, 2);
    assert_eq!(kind(&ev), "rcode_mismatch");
    assert_eq!(ev["error"]["layer"], "protocol");
    let a = assertion(&ev, "rcode");
    assert_eq!(
        (a["expected"].as_str(), a["actual"].as_str()),
        (Some("NOERROR"), Some("NXDOMAIN"))
    );

    // Outside its --local zone and with no upstream, dnsmasq refuses.
    let (code, ev) = probe(&dns, &["www.example.org"]);
    assert_eq!(code, 2);
    assert_eq!(kind(&ev), "rcode_mismatch");
    assert_eq!(assertion(&ev, "rcode")["actual"], "REFUSED");
    let (code, _) = probe(&dns, &["www.example.org", "--rcode", "REFUSED"]);
    assert_eq!(code, 0);
    // The name exists: asserting NXDOMAIN fails.
    let (code, ev) = probe(&dns, &["www.pup.test", "--rcode", "NXDOMAIN"]);
    assert_eq!(code, 2);
    assert_eq!(kind(&ev), "rcode_mismatch");
}

#[test]
fn a_cached_answer_from_a_forwarder_is_not_authoritative() {
    let upstream = zone();
    let fwd_rule = format!(
        "--server=/pup.test/{}#{}",
        upstream.addr.ip(),
        upstream.port()
    );
    // A forwarder with a cache for the zone; the record needs a TTL to be
    // cached, and the second answer comes from the cache with AA clear.
    let fwd = Dnsmasq::start(&[&fwd_rule]);
    let (code, ev) = probe(&upstream, &["ttl.pup.test", "--authoritative"]);
    assert_eq!(code, 0, "{ev}");
    assert_eq!(assertion(&ev, "authoritative")["actual"], "aa");
    let _ = probe(&fwd, &["ttl.pup.test"]);
    let (code, ev) = probe(&fwd, &["ttl.pup.test", "--authoritative"]);
    assert_eq!(code, 2, "{ev}");
    assert_eq!(kind(&ev), "not_authoritative");
    assert_eq!(ev["details"]["flags"]["aa"], false);
    // Without --authoritative the same answer is fine.
    let (code, _) = probe(&fwd, &["ttl.pup.test", "--expect", "192.0.2.5"]);
    assert_eq!(code, 0);
}

#[test]
fn consistent_names_the_server_that_disagrees() {
    let a = Dnsmasq::start(&[
        "--host-record=www.pup.test,192.0.2.1",
        &soa_rr("pup.test", 7),
    ]);
    let b = Dnsmasq::start(&[
        "--host-record=www.pup.test,192.0.2.1",
        &soa_rr("pup.test", 7),
    ]);
    let c = Dnsmasq::start(&[
        "--host-record=www.pup.test,192.0.2.66",
        &soa_rr("pup.test", 6),
    ]);
    let (sa, sb, sc) = (a.server(), b.server(), c.server());

    let r = run(
        PROBE,
        &[
            "www.pup.test",
            "--server",
            &sa,
            "--server",
            &sb,
            "--consistent",
        ],
    );
    let ev = r.event();
    assert_eq!(r.code, 0, "{ev}");
    assert_eq!(ev["details"]["servers"].as_array().unwrap().len(), 2);
    assert_eq!(assertion(&ev, "consistent")["ok"], true);

    for (name, ty) in [("www.pup.test", "A"), ("pup.test", "SOA")] {
        let r = run(
            PROBE,
            &[
                name,
                ty,
                "--server",
                &sa,
                "--server",
                &sc,
                "--server",
                &sb,
                "--consistent",
            ],
        );
        let ev = r.event();
        assert_eq!(r.code, 2);
        assert_eq!(kind(&ev), "inconsistent", "{ev}");
        assert_eq!(ev["details"]["disagreeing"], serde_json::json!([sc]));
        assert!(
            ev["reason"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{sc} disagrees")),
            "{ev}"
        );
        assert_eq!(assertion(&ev, "consistent")["ok"], false);
        assert!(ev.get("fingerprint").is_none());
    }
    // SOA compares the serial only.
    let r = run(
        PROBE,
        &[
            "pup.test",
            "SOA",
            "--server",
            &sa,
            "--server",
            &sb,
            "--consistent",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.event()["reason"].as_str().unwrap().contains("serial {7}"));

    // Without --consistent, each server is a check of its own.
    let r = run(
        PROBE,
        &[
            "www.pup.test",
            "--server",
            &sa,
            "--server",
            &sc,
            "--expect",
            "192.0.2.1",
        ],
    );
    let evs = r.events();
    assert_eq!(evs.len(), 2);
    assert_eq!(r.code, 2);
    let by_target = |s: &str| {
        evs.iter()
            .find(|e| e["target"].as_str().unwrap().ends_with(&format!("@{s}")))
            .unwrap()
            .clone()
    };
    assert_eq!(by_target(&sa)["status"], "up");
    assert_eq!(kind(&by_target(&sc)), "answer_mismatch");

    // A server that fails on its own is named, before any disagreement.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let r = run(
        PROBE,
        &[
            "www.pup.test",
            "--server",
            &sa,
            "--server",
            &closed,
            "--consistent",
        ],
    );
    let ev = r.event();
    assert_eq!(kind(&ev), "connect_refused", "{ev}");
    assert!(ev["reason"]
        .as_str()
        .unwrap()
        .starts_with(&format!("server {closed}")));
}

/// A UDP server written here: for each query it calls `reply` and sends
/// what it returns (nothing for `None`). Stops when dropped.
struct FakeServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    fn start(reply: impl Fn(&Message, SocketAddr) -> Vec<Vec<u8>> + Send + 'static) -> FakeServer {
        FakeServer::start_on(UdpSocket::bind("127.0.0.1:0").unwrap(), reply)
    }

    fn start_on(
        sock: UdpSocket,
        reply: impl Fn(&Message, SocketAddr) -> Vec<Vec<u8>> + Send + 'static,
    ) -> FakeServer {
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::SeqCst) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    if let Ok(q) = Message::from_vec(&buf[..n]) {
                        for d in reply(&q, from) {
                            let _ = sock.send_to(&d, from);
                        }
                    }
                }
            }
        });
        FakeServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A well-formed answer to `q` (192.0.2.1), with `id`.
fn answer(q: &Message, id: u16, truncated: bool) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Response, q.metadata.op_code);
    m.metadata.response_code = ResponseCode::NoError;
    m.metadata.truncation = truncated;
    m.add_queries(q.queries.clone());
    m.add_answer(Record::from_rdata(
        q.queries[0].name.clone(),
        60,
        RData::A(A::new(192, 0, 2, 1)),
    ));
    m.to_vec().unwrap()
}

#[test]
fn a_silent_server_times_out_within_the_deadline() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let r = run(
        PROBE,
        &["www.pup.test", "--server", &addr, "--timeout", "500ms"],
    );
    let ev = r.event();
    assert_eq!(r.code, 2);
    assert_eq!(kind(&ev), "timeout");
    assert_eq!(ev["error"]["phase"], "query");
    let d = ev["duration_ms"].as_f64().unwrap();
    assert!((490.0..800.0).contains(&d), "took {d} ms");
    assert!(r.elapsed < Duration::from_millis(2000), "{:?}", r.elapsed);
    drop(silent);
}

#[test]
fn a_closed_port_is_connect_refused_over_udp_and_tcp() {
    let port = {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        // Both the UDP and the TCP port are closed once these go.
        drop(UdpSocket::bind(("127.0.0.1", p)));
        p
    };
    let server = format!("127.0.0.1:{port}");
    for extra in [None, Some("--tcp")] {
        let mut args = vec!["www.pup.test", "--server", &server, "--timeout", "5s"];
        args.extend(extra);
        let r = run(PROBE, &args);
        let ev = r.event();
        assert_eq!(r.code, 2);
        assert_eq!(kind(&ev), "connect_refused", "{ev}");
        assert_eq!(ev["error"]["layer"], "tcp");
        assert!(r.elapsed < Duration::from_secs(3));
    }
}

#[test]
fn a_malformed_reply_is_a_protocol_error() {
    let srv = FakeServer::start(|q, _| {
        // Our ID, then a header promising an answer that is not there.
        let mut d = q.metadata.id.to_be_bytes().to_vec();
        d.extend([0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xde, 0xad]);
        vec![d]
    });
    let r = run(
        PROBE,
        &[
            "www.pup.test",
            "--server",
            &srv.addr.to_string(),
            "--timeout",
            "5s",
        ],
    );
    let ev = r.event();
    assert_eq!(r.code, 2);
    assert_eq!(kind(&ev), "protocol_error");
    assert!(ev["reason"].as_str().unwrap().contains("malformed"), "{ev}");
    assert!(
        r.elapsed < Duration::from_secs(3),
        "a malformed reply ends the wait"
    );
}

#[test]
fn replies_with_a_wrong_id_are_ignored_not_believed() {
    // Only a wrong ID: ignored until the deadline, then protocol_error.
    let srv = FakeServer::start(|q, _| vec![answer(q, q.metadata.id.wrapping_add(1), false)]);
    let r = run(
        PROBE,
        &[
            "www.pup.test",
            "--server",
            &srv.addr.to_string(),
            "--timeout",
            "400ms",
        ],
    );
    let ev = r.event();
    assert_eq!(r.code, 2);
    assert_eq!(kind(&ev), "protocol_error");
    assert!(
        ev["reason"].as_str().unwrap().contains("not for it"),
        "{ev}"
    );
    assert!(ev["duration_ms"].as_f64().unwrap() >= 390.0);
    assert!(ev["details"].get("answers").is_none());

    // A wrong ID, then the right reply: the right one is believed.
    let srv = FakeServer::start(|q, _| {
        vec![
            answer(q, q.metadata.id ^ 0x5555, false),
            answer(q, q.metadata.id, false),
        ]
    });
    let r = run(
        PROBE,
        &[
            "www.pup.test",
            "--server",
            &srv.addr.to_string(),
            "--expect",
            "192.0.2.1",
        ],
    );
    let ev = r.event();
    assert_eq!(r.code, 0, "{ev}");
    assert_eq!(
        ev["details"]["ignored_replies"].as_array().unwrap().len(),
        1
    );

    // Our ID but another question: ignored too.
    let srv = FakeServer::start(|q, _| {
        let mut other = q.clone();
        other.queries[0].name = hickory_proto::rr::Name::from_ascii("evil.pup.test.").unwrap();
        vec![answer(&other, q.metadata.id, false)]
    });
    let r = run(
        PROBE,
        &[
            "www.pup.test",
            "--server",
            &srv.addr.to_string(),
            "--timeout",
            "400ms",
        ],
    );
    let ev = r.event();
    assert_eq!(kind(&ev), "protocol_error", "{ev}");
    assert!(
        ev["reason"].as_str().unwrap().contains("another question"),
        "{ev}"
    );

    // The right reply, but from another address than the server asked:
    // never even seen (the socket is connected), so a plain timeout.
    let spoofer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let srv = FakeServer::start(move |q, from| {
        let _ = spoofer.send_to(&answer(q, q.metadata.id, false), from);
        vec![]
    });
    let r = run(
        PROBE,
        &[
            "www.pup.test",
            "--server",
            &srv.addr.to_string(),
            "--timeout",
            "400ms",
        ],
    );
    let ev = r.event();
    assert_eq!(kind(&ev), "timeout", "{ev}");
}

#[test]
fn tcp_mode_and_the_tcp_retry_of_a_truncated_answer() {
    // 120 addresses: about 2 KB, over the 1232 bytes EDNS announces.
    let recs: Vec<String> = (1..=120)
        .map(|i| format!("--host-record=big.pup.test,198.51.100.{i}"))
        .collect();
    let mut args: Vec<&str> = recs.iter().map(String::as_str).collect();
    args.push("--host-record=www.pup.test,192.0.2.1");
    let dns = Dnsmasq::start(&args);

    let (code, ev) = probe(&dns, &["www.pup.test", "--tcp", "--expect", "192.0.2.1"]);
    assert_eq!(code, 0, "{ev}");
    assert_eq!(ev["details"]["transport"], "tcp");
    assert!(ev["phases"]["connect_ms"].is_number());

    for extra in [None, Some("--no-edns")] {
        let mut a = vec!["big.pup.test"];
        a.extend(extra);
        let (code, ev) = probe(&dns, &a);
        assert_eq!(code, 0, "{ev}");
        assert_eq!(ev["details"]["transport"], "tcp");
        assert_eq!(ev["details"]["truncated_udp"], true);
        assert_eq!(ev["details"]["answers"].as_array().unwrap().len(), 120);
    }
    // Small answers stay on UDP.
    let (_, ev) = probe(&dns, &["www.pup.test"]);
    assert_eq!(ev["details"]["transport"], "udp");
    assert!(ev["details"].get("truncated_udp").is_none());

    // Truncated over UDP and nothing on TCP: the answer cannot be had.
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind(tcp.local_addr().unwrap()).unwrap();
    drop(tcp);
    let srv = FakeServer::start_on(udp, |q, _| vec![answer(q, q.metadata.id, true)]);
    let r = run(
        PROBE,
        &[
            "www.pup.test",
            "--server",
            &srv.addr.to_string(),
            "--timeout",
            "5s",
        ],
    );
    let ev = r.event();
    assert_eq!(r.code, 2);
    assert_eq!(kind(&ev), "truncated", "{ev}");
}

#[test]
fn an_ipv6_server_address() {
    let dns = Dnsmasq::start_on(
        "::1".parse().unwrap(),
        &["--host-record=www.pup.test,192.0.2.1"],
    );
    let server = dns.server();
    assert!(server.starts_with("[::1]:"));
    for extra in [None, Some("--tcp")] {
        let mut a = vec!["www.pup.test", "--server", &server, "--expect", "192.0.2.1"];
        a.extend(extra);
        let r = run(PROBE, &a);
        let ev = r.event();
        assert_eq!(r.code, 0, "{ev}");
        assert_eq!(ev["details"]["server"], server);
    }
    let r = run(PROBE, &["www.pup.test", "--server", &server, "-4"]);
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("not an IPv4 address"), "{}", r.stderr);
}

#[test]
fn a_record_changed_between_checks_changes_the_fingerprint() {
    let dns = Dnsmasq::start(&[]);
    dns.set_hosts("192.0.2.10 moving.pup.test\n");
    dns.wait_for_a("moving.pup.test", "192.0.2.10");
    let (code, before) = probe(&dns, &["moving.pup.test", "--expect", "192.0.2.10"]);
    assert_eq!(code, 0, "{before}");
    dns.set_hosts("192.0.2.11 moving.pup.test\n");
    dns.wait_for_a("moving.pup.test", "192.0.2.11");
    let (code, after) = probe(&dns, &["moving.pup.test", "--expect", "192.0.2.10"]);
    assert_eq!(code, 2);
    assert_eq!(kind(&after), "answer_mismatch");
    assert_ne!(before["fingerprint"], after["fingerprint"]);
}

#[test]
fn stream_mode_runs_good_lines_and_reports_bad_ones() {
    let dns = zone();
    let server = dns.server();
    let input = "www.pup.test\n\
                 # a comment\n\
                 \n\
                 pup.test MX --expect '10 mail.pup.test' --expect '20 backup.pup.test'\n\
                 gone.pup.test --rcode NXDOMAIN\n\
                 www.pup.test BOGUS\n\
                 'unterminated\n\
                 www.pup.test --expect 192.0.2.99\n";
    let r = run_stdin(PROBE, &["--stdin", "--server", &server, "-j", "4"], input);
    let evs = r.events();
    assert_eq!(evs.len(), 6, "{}", r.stdout);
    let find = |pred: &dyn Fn(&Value) -> bool| evs.iter().filter(|e| pred(e)).count();
    assert_eq!(find(&|e| e["status"] == "up"), 3, "{}", r.stdout);
    assert_eq!(find(&|e| e["error"]["kind"] == "bad_input"), 2);
    assert_eq!(find(&|e| e["error"]["kind"] == "answer_mismatch"), 1);
    assert!(evs.iter().any(|e| e["reason"]
        .as_str()
        .unwrap()
        .contains("unknown record type \"BOGUS\"")));
    assert_eq!(r.code, 2, "down is the worst");
}

#[test]
fn usage_errors_exit_3_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "missing NAME"),
        (
            &["www.pup.test", "HINFO", "--server", "127.0.0.1"],
            "unknown record type",
        ),
        (
            &[
                "pup.test",
                "MX",
                "--server",
                "127.0.0.1",
                "--expect",
                "mail.pup.test",
            ],
            "PREFERENCE NAME",
        ),
        (
            &["www.pup.test", "--server", "ns.example.org"],
            "not an IP address",
        ),
        (
            &["www.pup.test", "--server", "127.0.0.1", "--consistent"],
            "at least two --server",
        ),
        (
            &["www.pup.test", "--server", "127.0.0.1", "--rcode", "MAYBE"],
            "unknown rcode",
        ),
        (
            &["www.pup.test", "--server", "127.0.0.1", "--timeout", "5"],
            "needs a unit",
        ),
        (
            &[
                "www.pup.test",
                "--server",
                "127.0.0.1",
                "--expect-empty",
                "--expect",
                "192.0.2.1",
            ],
            "cannot be used with",
        ),
    ];
    for (args, msg) in cases {
        let r = run_with(PROBE, args, None, &[], Duration::from_secs(10));
        assert_eq!(r.code, 3, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
        assert!(r.stderr.starts_with("pup-probe-dns: "), "{}", r.stderr);
        assert!(r.stderr.contains(msg), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    }
    let r = run(PROBE, &["--help"]);
    assert_eq!(r.code, 0);
    for flag in [
        "--server",
        "--expect-any",
        "--consistent",
        "--min-ttl",
        "Examples:",
    ] {
        assert!(r.stdout.contains(flag), "--help lacks {flag}");
    }
}
