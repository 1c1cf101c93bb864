//! A real SMTP server for the tests, over a real socket on 127.0.0.1: the subset of RFC 5321 a
//! client such as lettre uses (EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP,
//! QUIT), with the 8BITMIME, SMTPUTF8 and SIZE extensions. It keeps every message it accepts,
//! with its envelope, in memory; it stops (and frees its port) when dropped.
//!
//! ```text
//! let smtp = SmtpServer::start(0);
//! // … configure `smtp://127.0.0.1:{smtp.port()}` and send …
//! let got = smtp.wait_for(1);
//! assert_eq!(got[0].rcpt_to, ["someone@example.com"]);
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The largest message accepted (the SIZE announced in the EHLO reply).
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// The most recipients of one message (RFC 5321 § 4.5.3.1.8: at least 100).
const MAX_RECIPIENTS: usize = 100;
/// The longest command line, CRLF included (RFC 5321 § 4.5.3.1.4), with room for the
/// parameters of the extensions announced.
const MAX_COMMAND_LINE: usize = 512 + 64;
/// The longest text line in DATA, CRLF included (RFC 5321 § 4.5.3.1.6).
const MAX_TEXT_LINE: usize = 1000;
/// A client idle this long is disconnected.
const IDLE: Duration = Duration::from_secs(30);

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The reverse path of `MAIL FROM` (empty for the null path `<>`).
    pub mail_from: String,
    /// The forward paths of the accepted `RCPT TO` commands, in order.
    pub rcpt_to: Vec<String>,
    /// The message as sent after DATA, dot-unstuffed, without the final `.` line.
    pub data: Vec<u8>,
}

/// What the server has received so far, and a signal for each new message.
#[derive(Default)]
struct Inbox {
    messages: Mutex<Vec<Received>>,
    arrived: Condvar,
}

/// A running SMTP server.
pub struct SmtpServer {
    port: u16,
    inbox: Arc<Inbox>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl SmtpServer {
    /// Listens on 127.0.0.1:`port` (0: a free port, see [`SmtpServer::port`]).
    pub fn start(port: u16) -> SmtpServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the SMTP server");
        let port = listener.local_addr().expect("local address").port();
        let inbox = Arc::new(Inbox::default());
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (inbox, stop) = (inbox.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let inbox = inbox.clone();
                    std::thread::spawn(move || {
                        let _ = Session::new(&stream, &inbox).and_then(|s| s.serve());
                        let _ = stream.shutdown(Shutdown::Both);
                    });
                }
            })
        };
        SmtpServer {
            port,
            inbox,
            stop,
            accept: Some(accept),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The messages received so far, in the order they were accepted.
    pub fn received(&self) -> Vec<Received> {
        self.inbox.messages.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until `n` messages have arrived; returns those received by then.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut messages = self.inbox.messages.lock().unwrap();
        while messages.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            messages = self.inbox.arrived.wait_timeout(messages, left).unwrap().0;
        }
        messages.clone()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which sees the flag and closes the listener.
        if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && let Some(accept) = self.accept.take()
        {
            let _ = accept.join();
        }
    }
}

/// Where a session is in the mail transaction (RFC 5321 § 3.3).
enum Transaction {
    /// No EHLO/HELO yet.
    NoGreeting,
    /// Greeted, no transaction open.
    Idle,
    /// After MAIL FROM: the reverse path and the recipients accepted so far.
    Open { from: String, to: Vec<String> },
}

/// One client connection.
struct Session<'a> {
    reader: BufReader<&'a TcpStream>,
    writer: &'a TcpStream,
    inbox: &'a Inbox,
    state: Transaction,
}

/// The result of reading one line.
enum Line {
    /// The line, CRLF (or a bare LF) removed.
    Text(Vec<u8>),
    /// A line longer than the limit (read and dropped up to its end).
    TooLong,
    /// The client closed the connection.
    Closed,
}

impl<'a> Session<'a> {
    fn new(stream: &'a TcpStream, inbox: &'a Inbox) -> std::io::Result<Session<'a>> {
        stream.set_read_timeout(Some(IDLE))?;
        stream.set_write_timeout(Some(IDLE))?;
        Ok(Session {
            reader: BufReader::new(stream),
            writer: stream,
            inbox,
            state: Transaction::NoGreeting,
        })
    }

    fn reply(&mut self, text: &str) -> std::io::Result<()> {
        self.writer.write_all(text.as_bytes())?;
        self.writer.write_all(b"\r\n")?;
        self.writer.flush()
    }

    /// Reads one line of at most `limit` bytes (CRLF included).
    fn line(&mut self, limit: usize) -> std::io::Result<Line> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(Line::Closed);
            }
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            if line.len() + chunk.len() > limit {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
            let n = chunk.len();
            self.reader.consume(n);
            if done {
                break;
            }
        }
        if too_long {
            return Ok(Line::TooLong);
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Line::Text(line))
    }

    fn serve(mut self) -> std::io::Result<()> {
        self.reply("220 localhost ESMTP dataop test server")?;
        loop {
            let line = match self.line(MAX_COMMAND_LINE)? {
                Line::Text(line) => line,
                Line::TooLong => {
                    self.reply("500 5.5.6 Line too long")?;
                    continue;
                }
                Line::Closed => return Ok(()),
            };
            let Ok(line) = String::from_utf8(line) else {
                self.reply("500 5.5.2 Syntax error: not UTF-8")?;
                continue;
            };
            let (verb, arg) = match line.split_once(' ') {
                Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim()),
                None => (line.trim().to_ascii_uppercase(), ""),
            };
            match verb.as_str() {
                "EHLO" | "HELO" if arg.is_empty() => {
                    self.reply("501 5.5.4 A domain or address literal is required")?
                }
                "EHLO" => {
                    self.state = Transaction::Idle;
                    self.reply(&format!(
                        "250-localhost greets {arg}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
                         250 SIZE {MAX_MESSAGE_BYTES}"
                    ))?
                }
                "HELO" => {
                    self.state = Transaction::Idle;
                    self.reply("250 localhost")?
                }
                "MAIL" => self.mail(arg)?,
                "RCPT" => self.rcpt(arg)?,
                "DATA" => self.data()?,
                "RSET" => {
                    if !matches!(self.state, Transaction::NoGreeting) {
                        self.state = Transaction::Idle;
                    }
                    self.reply("250 2.0.0 OK")?
                }
                "NOOP" => self.reply("250 2.0.0 OK")?,
                "QUIT" => {
                    self.reply("221 2.0.0 Bye")?;
                    return Ok(());
                }
                "VRFY" => self.reply("252 2.5.0 Cannot verify the user")?,
                "STARTTLS" | "AUTH" | "EXPN" | "HELP" | "TURN" => {
                    self.reply("502 5.5.1 Command not implemented")?
                }
                _ => self.reply("500 5.5.2 Command not recognized")?,
            }
        }
    }

    fn mail(&mut self, arg: &str) -> std::io::Result<()> {
        match self.state {
            Transaction::NoGreeting => return self.reply("503 5.5.1 Send EHLO first"),
            Transaction::Open { .. } => return self.reply("503 5.5.1 Nested MAIL command"),
            Transaction::Idle => {}
        }
        let Some((path, params)) = path_after(arg, "FROM:") else {
            return self.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        for param in params.split_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let ok = match key.to_ascii_uppercase().as_str() {
                "BODY" => ["7BIT", "8BITMIME"].contains(&value.to_ascii_uppercase().as_str()),
                "SMTPUTF8" => value.is_empty(),
                "SIZE" => value.parse::<usize>().is_ok_and(|n| n <= MAX_MESSAGE_BYTES),
                _ => false,
            };
            if !ok {
                return self.reply(&format!("555 5.5.4 Parameter not supported: {param}"));
            }
        }
        self.state = Transaction::Open {
            from: path,
            to: Vec::new(),
        };
        self.reply("250 2.1.0 OK")
    }

    fn rcpt(&mut self, arg: &str) -> std::io::Result<()> {
        let Transaction::Open { to, .. } = &mut self.state else {
            return self.reply("503 5.5.1 Need MAIL before RCPT");
        };
        let Some((path, params)) = path_after(arg, "TO:") else {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        if path.is_empty() || !params.is_empty() {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
        }
        if to.len() >= MAX_RECIPIENTS {
            return self.reply("452 4.5.3 Too many recipients");
        }
        to.push(path);
        self.reply("250 2.1.5 OK")
    }

    fn data(&mut self) -> std::io::Result<()> {
        let (from, to) = match &self.state {
            Transaction::Open { to, .. } if to.is_empty() => {
                return self.reply("554 5.5.1 No valid recipients");
            }
            Transaction::Open { from, to } => (from.clone(), to.clone()),
            _ => return self.reply("503 5.5.1 Need MAIL and RCPT before DATA"),
        };
        self.reply("354 End data with <CR><LF>.<CR><LF>")?;
        let mut data = Vec::new();
        let mut refused = None;
        loop {
            let mut line = match self.line(MAX_TEXT_LINE)? {
                Line::Text(line) => line,
                Line::TooLong => {
                    refused.get_or_insert("500 5.5.6 Line too long");
                    continue;
                }
                Line::Closed => return Ok(()),
            };
            if line == b"." {
                break;
            }
            if line.first() == Some(&b'.') {
                line.remove(0);
            }
            if data.len() + line.len() + 2 > MAX_MESSAGE_BYTES {
                refused.get_or_insert("552 5.3.4 Message too big");
                continue;
            }
            data.extend_from_slice(&line);
            data.extend_from_slice(b"\r\n");
        }
        self.state = Transaction::Idle;
        if let Some(refused) = refused {
            return self.reply(refused);
        }
        let mut messages = self.inbox.messages.lock().unwrap();
        messages.push(Received {
            mail_from: from,
            rcpt_to: to,
            data,
        });
        let n = messages.len();
        drop(messages);
        self.inbox.arrived.notify_all();
        self.reply(&format!("250 2.0.0 OK: queued as {n}"))
    }
}

/// The path of `MAIL FROM:<path> params` or `RCPT TO:<path> params` (`keyword` is `FROM:` or
/// `TO:`, matched without regard to case) and the parameters after it.
fn path_after<'s>(arg: &'s str, keyword: &str) -> Option<(String, &'s str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start().strip_prefix('<')?;
    let end = rest.find('>')?;
    let path = &rest[..end];
    // A source route (`<@a,@b:user@c>`) is accepted and ignored (RFC 5321 § 4.1.1.3).
    let path = match path.strip_prefix('@') {
        Some(route) => route.split_once(':')?.1,
        None => path,
    };
    if path.contains(['<', '>', ' ']) {
        return None;
    }
    Some((path.to_owned(), rest[end + 1..].trim()))
}
