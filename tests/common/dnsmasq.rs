//! A real dnsmasq on loopback for the tests: started on a free port with
//! only the records a test gives it, killed when dropped.
//!
//! ```ignore
//! let dns = Dnsmasq::start(&["--host-record=www.pup.test,192.0.2.1"]);
//! run(bin!("pup-probe-dns"), &["www.pup.test", "--server", &dns.server()]);
//! dns.set_hosts("192.0.2.9 changed.pup.test\n");   // re-read on SIGHUP
//! dns.wait_for_a("changed.pup.test", "192.0.2.9");
//! ```
//!
//! Names under `pup.test` are local (`--local=/pup.test/`): unknown ones
//! get NXDOMAIN, names elsewhere get REFUSED (no upstream), local records
//! come back with the AA bit set and TTL 0 unless a test gives one
//! (`--host-record=NAME,ADDR,TTL` or `--local-ttl=N`). Every instance also
//! reads an `--addn-hosts` file of its own, initially empty, that
//! [`Dnsmasq::set_hosts`] rewrites: that is how a test changes a record
//! between two checks.

use super::{need, Guard, TempDir};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The zone every instance answers for itself.
pub const ZONE: &str = "pup.test";

pub struct Dnsmasq {
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    // Dropped first: kills dnsmasq before its directory goes.
    guard: Guard,
    dir: TempDir,
}

impl Dnsmasq {
    /// A dnsmasq on 127.0.0.1 with these extra arguments.
    pub fn start(args: &[&str]) -> Dnsmasq {
        Dnsmasq::start_on("127.0.0.1".parse().unwrap(), args)
    }

    /// A dnsmasq listening on `ip` (127.0.0.1 or ::1) only.
    pub fn start_on(ip: IpAddr, args: &[&str]) -> Dnsmasq {
        let prog = need("dnsmasq");
        let dir = TempDir::new("dnsmasq");
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, "").unwrap();
        let log = dir.join("log");
        // A port free for TCP a moment ago may be taken for UDP, or taken
        // by the time dnsmasq binds it: try a few.
        for _ in 0..5 {
            let port = TcpListener::bind((ip, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cmd = Command::new(&prog);
            cmd.args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                // No shared /run/dnsmasq.pid between instances.
                "--pid-file=",
                "--log-facility=-",
                "--bind-interfaces",
                &format!("--listen-address={ip}"),
                &format!("--port={port}"),
                &format!("--local=/{ZONE}/"),
                &format!("--addn-hosts={}", hosts.display()),
            ]);
            // dnsmasq drops root to "nobody" after binding, which is fine
            // for what it reads here (files it opened, /dev/null); as
            // another user it keeps that user.
            cmd.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            let mut guard = Guard::spawn(cmd, "dnsmasq");
            let addr = SocketAddr::new(ip, port);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = guard.child.try_wait() {
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Dnsmasq { addr, guard, dir };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = guard.child.kill();
        }
        panic!(
            "dnsmasq did not start on {ip}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The address as `--server` takes it (`127.0.0.1:N`, `[::1]:N`).
    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The `--addn-hosts` file of this instance.
    pub fn hosts_file(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    /// Replaces the hosts file (`ADDR NAME` lines) and tells dnsmasq to
    /// read it again (SIGHUP). The reload is asynchronous: wait for the
    /// new record with [`Dnsmasq::wait_for_a`].
    pub fn set_hosts(&self, content: &str) {
        std::fs::write(self.hosts_file(), content).unwrap();
        self.guard.signal("HUP");
    }

    /// The A/AAAA addresses dnsmasq answers for `name` now (a plain UDP
    /// query, for waiting; the tests judge answers with the real probe).
    pub fn query_a(&self, name: &str) -> Vec<IpAddr> {
        let mut m = Message::query();
        let mut n = Name::from_ascii(name).unwrap();
        n.set_fqdn(true);
        m.add_query(Query::query(n, RecordType::A));
        let sock = UdpSocket::bind(SocketAddr::new(
            if self.addr.is_ipv4() {
                "0.0.0.0".parse().unwrap()
            } else {
                "::".parse().unwrap()
            },
            0,
        ))
        .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        sock.send_to(&m.to_vec().unwrap(), self.addr).unwrap();
        let mut buf = [0u8; 4096];
        let Ok(n) = sock.recv(&mut buf) else {
            return Vec::new();
        };
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            return Vec::new();
        };
        reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()
    }

    /// Waits (up to 5 s) until `name` resolves to `addr` here.
    pub fn wait_for_a(&self, name: &str, addr: &str) {
        let want: IpAddr = addr.parse().unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if self.query_a(name).contains(&want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("dnsmasq at {} never answered {name} with {addr}", self.addr);
    }
}
