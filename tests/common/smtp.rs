//! A small SMTP server on 127.0.0.1 that records every mail it accepts:
//! EHLO/HELO, optional STARTTLS (with a certificate the test makes with the
//! `openssl` command), optional AUTH PLAIN, MAIL FROM, RCPT TO, DATA, RSET,
//! NOOP, QUIT. It can be told to refuse recipients, to test that senders
//! report a refusal. One connection at a time, which is all a hook needs.

use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslStream};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the server offers and demands.
#[derive(Default)]
pub struct Options {
    /// Offer STARTTLS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// With `tls`: speak TLS from the first byte instead (smtps, port 465
    /// style) and offer no STARTTLS.
    pub implicit_tls: bool,
    /// Offer AUTH PLAIN (after STARTTLS when TLS is offered) and refuse
    /// MAIL FROM until a client logged in with this user and password.
    pub login: Option<(String, String)>,
    /// Answer every RCPT TO with 550.
    pub refuse_recipients: bool,
}

/// One accepted mail.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    pub ehlo: String,
    /// Whether the mail came over TLS (after STARTTLS).
    pub tls: bool,
    /// The user who logged in, if any.
    pub user: Option<String>,
    pub from: String,
    pub rcpts: Vec<String>,
    /// The message as sent, dot-unstuffed, lines joined with "\r\n".
    pub data: String,
}

impl Mail {
    /// The header block and body, split at the first blank line.
    pub fn parts(&self) -> (Vec<(String, String)>, String) {
        let (head, body) = self
            .data
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no blank line after the headers: {:?}", self.data));
        // Unfold continuation lines (RFC 5322 2.2.3), then split name: value.
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        let headers = unfolded
            .split("\r\n")
            .map(|l| {
                let (k, v) = l
                    .split_once(':')
                    .unwrap_or_else(|| panic!("header line without a colon: {l:?}"));
                (k.to_string(), v.trim().to_string())
            })
            .collect();
        (headers, body.to_string())
    }

    /// The value of the one header with this name; panics when absent or
    /// repeated.
    pub fn header(&self, name: &str) -> String {
        let (headers, _) = self.parts();
        let found: Vec<_> = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .collect();
        assert_eq!(found.len(), 1, "want one {name} header in {:?}", self.data);
        found[0].1.clone()
    }
}

/// The server; stops when dropped.
pub struct SmtpServer {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SmtpServer {
    pub fn start(opts: Options) -> SmtpServer {
        let acceptor = opts.tls.as_ref().map(|(cert, key)| {
            let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
            b.set_certificate_chain_file(cert)
                .and_then(|_| b.set_private_key_file(key, SslFiletype::PEM))
                .and_then(|_| b.check_private_key())
                .expect("test certificate and key load");
            b.build()
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (got, stopping) = (mails.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    let conn = match (&acceptor, opts.implicit_tls) {
                        (Some(acc), true) => match acc.accept(conn) {
                            Ok(tls) => Conn::Tls(Box::new(tls)),
                            Err(_) => continue,
                        },
                        _ => Conn::Plain(conn),
                    };
                    let mut s = Session {
                        conn,
                        opts: &opts,
                        acceptor: acceptor.as_ref(),
                        mail: Mail {
                            tls: opts.implicit_tls,
                            ..Mail::default()
                        },
                        got: &got,
                    };
                    let _ = s.run();
                }
            }
        });
        SmtpServer {
            port,
            mails,
            stop,
            thread: Some(thread),
        }
    }

    /// Every mail accepted so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Makes a self-signed certificate for 127.0.0.1 and localhost in `dir`;
/// returns (certificate, key), both PEM. The certificate doubles as the CA
/// file a client is told to trust.
pub fn make_cert(dir: &Path) -> (PathBuf, PathBuf) {
    super::http_server::Identity::self_signed(&["localhost", "127.0.0.1"]).write_pem(dir)
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
    Gone,
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
            Conn::Gone => Ok(0),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
            Conn::Gone => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            Conn::Gone => Ok(()),
        }
    }
}

struct Session<'a> {
    conn: Conn,
    opts: &'a Options,
    acceptor: Option<&'a SslAcceptor>,
    mail: Mail,
    got: &'a Mutex<Vec<Mail>>,
}

type Res = std::io::Result<()>;

impl Session<'_> {
    fn say(&mut self, line: &str) -> Res {
        self.conn.write_all(format!("{line}\r\n").as_bytes())?;
        self.conn.flush()
    }

    /// One line without its CRLF; None at the end of the stream. Byte by
    /// byte, so nothing is read past a STARTTLS; capped like every read.
    fn line(&mut self) -> std::io::Result<Option<String>> {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        loop {
            if self.conn.read(&mut b)? == 0 {
                return Ok(None);
            }
            if b[0] == b'\n' {
                break;
            }
            out.push(b[0]);
            if out.len() > 64 * 1024 {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
        }
        if out.last() == Some(&b'\r') {
            out.pop();
        }
        Ok(Some(String::from_utf8_lossy(&out).into_owned()))
    }

    fn tls_now(&self) -> bool {
        matches!(self.conn, Conn::Tls(_))
    }

    fn run(&mut self) -> Res {
        self.say("220 pup-test ESMTP")?;
        while let Some(line) = self.line()? {
            let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
            match verb.to_ascii_uppercase().as_str() {
                "EHLO" | "HELO" => {
                    self.mail.ehlo = arg.to_string();
                    let mut offers = vec!["pup-test".to_string(), "8BITMIME".to_string()];
                    if self.acceptor.is_some() && !self.tls_now() {
                        offers.push("STARTTLS".into());
                    }
                    if self.opts.login.is_some() && (self.acceptor.is_none() || self.tls_now()) {
                        offers.push("AUTH PLAIN".into());
                    }
                    let last = offers.len() - 1;
                    for (i, o) in offers.iter().enumerate() {
                        let sep = if i == last { ' ' } else { '-' };
                        self.say(&format!("250{sep}{o}"))?;
                    }
                }
                "STARTTLS" => match self.acceptor {
                    Some(acc) if !self.tls_now() => {
                        self.say("220 go ahead")?;
                        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Gone) else {
                            unreachable!()
                        };
                        let tls = acc.accept(tcp).map_err(std::io::Error::other)?;
                        self.conn = Conn::Tls(Box::new(tls));
                        // RFC 3207: the client starts over with EHLO.
                        self.mail = Mail {
                            tls: true,
                            ..Mail::default()
                        };
                    }
                    _ => self.say("502 STARTTLS not offered")?,
                },
                "AUTH" => self.auth(arg)?,
                "MAIL" => {
                    if self.opts.login.is_some() && self.mail.user.is_none() {
                        self.say("530 log in first")?;
                        continue;
                    }
                    self.mail.from = addr(arg);
                    self.mail.rcpts.clear();
                    self.say("250 sender ok")?;
                }
                "RCPT" if self.opts.refuse_recipients => {
                    self.say("550 5.1.1 no such mailbox here")?
                }
                "RCPT" => {
                    self.mail.rcpts.push(addr(arg));
                    self.say("250 recipient ok")?;
                }
                "DATA" if self.mail.rcpts.is_empty() => self.say("503 no recipients")?,
                "DATA" => {
                    self.say("354 end with a dot")?;
                    let mut lines = Vec::new();
                    loop {
                        let Some(l) = self.line()? else {
                            return Ok(());
                        };
                        if l == "." {
                            break;
                        }
                        // RFC 5321 4.5.2: a leading dot was doubled by the sender.
                        lines.push(l.strip_prefix('.').map(str::to_string).unwrap_or(l));
                    }
                    self.mail.data = lines.join("\r\n");
                    self.got.lock().unwrap().push(self.mail.clone());
                    self.mail.rcpts.clear();
                    self.say("250 queued")?;
                }
                "RSET" => {
                    self.mail.rcpts.clear();
                    self.say("250 ok")?;
                }
                "NOOP" => self.say("250 ok")?,
                "QUIT" => {
                    self.say("221 bye")?;
                    return Ok(());
                }
                _ => self.say("500 unknown command")?,
            }
        }
        Ok(())
    }

    fn auth(&mut self, arg: &str) -> Res {
        let Some((user, pass)) = self.opts.login.clone() else {
            return self.say("502 AUTH not offered");
        };
        let (mech, initial) = arg.split_once(' ').unwrap_or((arg, ""));
        if !mech.eq_ignore_ascii_case("PLAIN") {
            return self.say("504 only PLAIN");
        }
        let answer = if initial.is_empty() {
            self.say("334 ")?;
            self.line()?.unwrap_or_default()
        } else {
            initial.to_string()
        };
        // PLAIN is authzid NUL authcid NUL password (RFC 4616).
        let decoded = base64_decode(answer.trim()).unwrap_or_default();
        let parts: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
        if parts.len() == 3 && parts[1] == user.as_bytes() && parts[2] == pass.as_bytes() {
            self.mail.user = Some(user);
            self.say("235 2.7.0 logged in")
        } else {
            self.say("535 5.7.8 bad user or password")
        }
    }
}

/// The address in `FROM:<a@b> SIZE=1` or `TO:<a@b>`.
fn addr(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].to_string()
}

/// Standard base64 (RFC 4648) with padding; None on a bad character.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = ((acc << 6) | v as u32) & 0xff_ffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}
