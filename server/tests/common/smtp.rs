//! A real SMTP server on 127.0.0.1:0 for tests: speaks enough RFC 5321 for lettre (greeting,
//! EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), keeps every accepted message, and can be told
//! to refuse messages with a transient (451) or permanent (550) reply.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How the sink answers the end of DATA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// `451 4.3.0`: try again later.
    Transient,
    /// `550 5.1.1`: mailbox unavailable.
    Permanent,
}

/// One accepted message: the envelope and the raw DATA (dot-unstuffed, CRLF line ends).
#[derive(Clone, Debug)]
pub struct Message {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

struct State {
    messages: Mutex<Vec<Message>>,
    arrived: Notify,
    mode: Mutex<Mode>,
    /// Transient refusals still to give before going back to the mode.
    fail_next: AtomicU32,
    /// Every completed DATA, accepted or refused.
    attempts: AtomicU32,
}

pub struct SmtpSink {
    pub port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            messages: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            mode: Mutex::new(Mode::Accept),
            fail_next: AtomicU32::new(0),
            attempts: AtomicU32::new(0),
        });
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let _ = session(stream, st).await;
                });
            }
        });
        SmtpSink { port, state, task }
    }

    /// Settings for the server: plain SMTP to this sink.
    pub fn config(&self) -> ferrobase_server::config::SmtpConfig {
        let mut c = ferrobase_server::config::SmtpConfig::default();
        c.host = "127.0.0.1".into();
        c.port = self.port;
        c.tls = "none".into();
        c
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Refuses the next `n` messages with 451, then follows the mode again.
    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Completed DATA commands so far, accepted or refused.
    pub fn attempts(&self) -> u32 {
        self.state.attempts.load(Ordering::SeqCst)
    }

    pub fn messages(&self) -> Vec<Message> {
        self.state.messages.lock().unwrap().clone()
    }

    /// The first accepted message for `to`, waiting up to `timeout` for it.
    pub async fn wait_for(&self, to: &str, timeout: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(m) = self
                .messages()
                .into_iter()
                .find(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to)))
            {
                return Some(m);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}

async fn session(stream: TcpStream, st: Arc<State>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']);
        let upper = cmd.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink.test greets you\r\n250-8BITMIME\r\n250-SIZE 10485760\r\n250 HELP\r\n"
        } else if upper.starts_with("HELO") {
            b"250 sink.test\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = angle(&cmd[10..]);
            to.clear();
            b"250 2.1.0 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            if from.is_empty() {
                b"503 5.5.1 MAIL first\r\n"
            } else {
                to.push(angle(&cmd[8..]));
                b"250 2.1.5 OK\r\n"
            }
        } else if upper == "DATA" {
            if to.is_empty() {
                b"503 5.5.1 RCPT first\r\n"
            } else {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    let l = line.trim_end_matches(['\r', '\n']);
                    if l == "." {
                        break;
                    }
                    data.push_str(
                        l.strip_prefix('.')
                            .filter(|_| l.starts_with(".."))
                            .unwrap_or(l),
                    );
                    data.push_str("\r\n");
                }
                st.attempts.fetch_add(1, Ordering::SeqCst);
                let transient_once = st
                    .fail_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let mode = *st.mode.lock().unwrap();
                let reply: &[u8] = if transient_once || mode == Mode::Transient {
                    b"451 4.3.0 Temporary failure, try again later\r\n"
                } else if mode == Mode::Permanent {
                    b"550 5.1.1 Mailbox unavailable\r\n"
                } else {
                    st.messages.lock().unwrap().push(Message {
                        from: std::mem::take(&mut from),
                        to: std::mem::take(&mut to),
                        data,
                    });
                    st.arrived.notify_waiters();
                    b"250 2.0.0 OK queued\r\n"
                };
                from.clear();
                to.clear();
                reply
            }
        } else if upper == "RSET" {
            from.clear();
            to.clear();
            b"250 2.0.0 OK\r\n"
        } else if upper == "NOOP" {
            b"250 2.0.0 OK\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            b"502 5.5.2 Command not recognized\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// `<a@b.c> SIZE=1` → `a@b.c`.
fn angle(s: &str) -> String {
    let s = s.trim();
    match (s.find('<'), s.find('>')) {
        (Some(a), Some(b)) if b > a => s[a + 1..b].to_owned(),
        _ => s.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

/// Headers (unfolded, names lowercased) and the body of a MIME entity.
fn split_entity(raw: &str) -> (Vec<(String, String)>, String) {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = match raw.find("\n\n") {
        Some(i) => (&raw[..i], raw[i + 2..].to_owned()),
        None => (raw.as_str(), String::new()),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    (headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

/// `multipart/alternative; boundary="xyz"` → `xyz`.
fn boundary(content_type: &str) -> Option<String> {
    let i = content_type.to_ascii_lowercase().find("boundary=")?;
    let rest = &content_type[i + 9..];
    let b = match rest.strip_prefix('"') {
        Some(q) => q.split('"').next()?,
        None => rest.split([';', ' ']).next()?,
    };
    Some(b.to_owned())
}

fn decode_body(headers: &[(String, String)], body: &str) -> String {
    let cte = header(headers, "content-transfer-encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    match cte.as_str() {
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .unwrap(),
            )
            .into_owned()
        }
        "quoted-printable" => decode_qp(body),
        _ => body.to_owned(),
    }
}

fn decode_qp(body: &str) -> String {
    let mut out = Vec::new();
    let lines: Vec<&str> = body.split('\n').collect();
    for (n, line) in lines.iter().enumerate() {
        let line = line.trim_end_matches('\r');
        let (line, soft) = match line.strip_suffix('=') {
            Some(l) => (l, true),
            None => (line, false),
        };
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' && i + 2 < b.len() {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                if let Ok(v) = u8::from_str_radix(hex, 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        if !soft && n + 1 < lines.len() {
            out.push(b'\n');
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`).
fn decode_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let between = &rest[..start];
        if !(last_was_word && between.trim().is_empty()) {
            out.push_str(between);
        }
        let word = &rest[start + 2..];
        let parts: Vec<&str> = word.splitn(3, '?').collect();
        let end = parts.get(2).and_then(|p| p.find("?="));
        match (parts.len(), end) {
            (3, Some(end)) => {
                let text = &parts[2][..end];
                let bytes = if parts[1].eq_ignore_ascii_case("b") {
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .unwrap_or_default()
                } else {
                    decode_qp(&text.replace('_', " ")).into_bytes()
                };
                out.push_str(&String::from_utf8_lossy(&bytes));
                let consumed = parts[0].len() + parts[1].len() + 2 + end + 2;
                rest = &word[consumed..];
                last_was_word = true;
            }
            _ => {
                out.push_str("=?");
                rest = word;
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

impl Message {
    /// A top-level header, decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        let (headers, _) = split_entity(&self.data);
        header(&headers, name).map(decode_words)
    }

    pub fn subject(&self) -> String {
        self.header("subject").unwrap_or_default()
    }

    /// The decoded body of the first part with this content type (`text/plain`, `text/html`),
    /// looking inside multipart containers.
    pub fn part(&self, content_type: &str) -> Option<String> {
        find_part(&self.data, content_type)
    }

    pub fn text(&self) -> String {
        self.part("text/plain").unwrap_or_default()
    }

    pub fn html(&self) -> String {
        self.part("text/html").unwrap_or_default()
    }
}

fn find_part(raw: &str, want: &str) -> Option<String> {
    let (headers, body) = split_entity(raw);
    let ct = header(&headers, "content-type").unwrap_or("text/plain");
    if ct.to_ascii_lowercase().starts_with("multipart/") {
        let b = boundary(ct)?;
        let delim = format!("--{b}");
        for chunk in body.split(&delim).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            let chunk = chunk.strip_prefix('\n').unwrap_or(chunk);
            if let Some(found) = find_part(chunk, want) {
                return Some(found);
            }
        }
        None
    } else if ct.to_ascii_lowercase().starts_with(want) {
        Some(decode_body(&headers, &body))
    } else {
        None
    }
}
