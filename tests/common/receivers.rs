//! Real receivers on 127.0.0.1 for the alert tests: an HTTP server that
//! answers with scripted statuses and records every request, and an SMTP
//! server that speaks enough of RFC 5321 for any client and records every
//! message. Both run on threads of the test process and listen on real
//! sockets.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the HTTP receiver read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A TCP listener served by a thread until dropped; each connection is
/// served on a thread of its own.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(port: u16, serve: impl Fn(TcpStream) + Send + Sync + 'static) -> Server {
        let serve = Arc::new(serve);
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind a test receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        // One thread per connection: a held one blocks no other.
                        let serve = Arc::clone(&serve);
                        std::thread::spawn(move || serve(s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An HTTP receiver: answers each request with the next scripted status
/// (200 once the script runs out; 0 means "never answer": the connection
/// is held for two seconds, then closed) and records it.
pub struct HttpReceiver {
    server: Server,
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl HttpReceiver {
    pub fn start(script: &[u16]) -> HttpReceiver {
        HttpReceiver::start_on(0, script)
    }

    pub fn start_on(port: u16, script: &[u16]) -> HttpReceiver {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(
            script.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let (r, s) = (Arc::clone(&requests), Arc::clone(&script));
        let server = Server::start(port, move |stream| {
            if let Some(req) = read_request(&stream) {
                let status = s.lock().unwrap().pop_front().unwrap_or(200);
                r.lock().unwrap().push(req);
                if status == 0 {
                    std::thread::sleep(Duration::from_secs(2));
                    return;
                }
                let mut w = &stream;
                let _ = write!(
                    w,
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
        HttpReceiver {
            server,
            requests,
            script,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.server.addr)
    }

    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Answers the next requests with these statuses.
    pub fn script(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses.iter().copied());
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut r = BufReader::new(stream);
    let mut first = String::new();
    r.read_line(&mut first).ok()?;
    let mut parts = first.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// One message as the SMTP server took it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

impl Mail {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The header block (up to the first empty line), unfolded.
    pub fn header_block(&self) -> String {
        let t = self.text();
        let head = t.split("\r\n\r\n").next().unwrap_or("");
        head.replace("\r\n ", " ").replace("\r\n\t", " ")
    }

    /// A header's value, RFC 2047 encoded words decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.header_block()
            .split("\r\n")
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| decode_words(l[prefix.len()..].trim()))
    }

    /// The decoded body of the first part of this content type.
    pub fn part(&self, content_type: &str) -> Option<String> {
        let text = self.text();
        let start = text.find(&format!("Content-Type: {content_type}"))?;
        let rest = &text[start..];
        let (head, body) = rest.split_once("\r\n\r\n")?;
        let body = body.split("\r\n--").next().unwrap_or("");
        let encoding = head
            .lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with("content-transfer-encoding:")
            })
            .map(|l| l[26..].trim().to_ascii_lowercase())
            .unwrap_or_default();
        Some(match encoding.as_str() {
            "base64" => {
                let joined: String = body.split_whitespace().collect();
                String::from_utf8_lossy(&b64(&joined)).into_owned()
            }
            "quoted-printable" => quoted_printable(body),
            _ => body.to_owned(),
        })
    }
}

fn b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap_or_default()
}

fn quoted_printable(body: &str) -> String {
    let bytes = body.replace("=\r\n", "").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `=?utf-8?b?…?=` and `=?utf-8?q?…?=` words decoded; the space between
/// two encoded words dropped, as RFC 2047 says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut last_encoded = false;
    for (n, word) in value.split(' ').enumerate() {
        let inner = word
            .strip_prefix("=?")
            .and_then(|w| w.strip_suffix("?="))
            .and_then(|w| {
                let mut p = w.splitn(3, '?');
                Some((p.next()?, p.next()?, p.next()?))
            });
        match inner {
            Some((_, enc, text)) => {
                let decoded = if enc.eq_ignore_ascii_case("b") {
                    String::from_utf8_lossy(&b64(text)).into_owned()
                } else {
                    quoted_printable(&text.replace('_', " "))
                };
                if n > 0 && !last_encoded {
                    out.push(' ');
                }
                out.push_str(&decoded);
                last_encoded = true;
            }
            None => {
                if n > 0 {
                    out.push(' ');
                }
                out.push_str(word);
                last_encoded = false;
            }
        }
    }
    out
}

/// An SMTP server: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
pub struct SmtpServer {
    server: Server,
    mails: Arc<Mutex<Vec<Mail>>>,
    logins: Arc<Mutex<Vec<(String, String)>>>,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        SmtpServer::start_on(0)
    }

    pub fn start_on(port: u16) -> SmtpServer {
        let mails = Arc::new(Mutex::new(Vec::new()));
        let logins = Arc::new(Mutex::new(Vec::new()));
        let (m, l) = (Arc::clone(&mails), Arc::clone(&logins));
        let server = Server::start(port, move |stream| {
            let _ = smtp_session(&stream, &m, &l);
        });
        SmtpServer {
            server,
            mails,
            logins,
        }
    }

    /// The (user, password) pairs clients logged in with (AUTH PLAIN).
    pub fn logins(&self) -> Vec<(String, String)> {
        self.logins.lock().unwrap().clone()
    }

    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn smtp_session(
    stream: &TcpStream,
    mails: &Mutex<Vec<Mail>>,
    logins: &Mutex<Vec<(String, String)>>,
) -> std::io::Result<()> {
    let mut w = stream;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 127.0.0.1 ESMTP test server\r\n")?;
    let mut from = String::new();
    let mut to = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let arg = |s: &str| {
            s.split_once(':')
                .map(|(_, a)| {
                    a.trim()
                        .trim_start_matches('<')
                        .split('>')
                        .next()
                        .unwrap_or("")
                        .to_owned()
                })
                .unwrap_or_default()
        };
        if upper.starts_with("EHLO") {
            w.write_all(b"250-127.0.0.1\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SMTPUTF8\r\n")?;
        } else if upper.starts_with("AUTH PLAIN ") {
            // \0user\0password, base64.
            let raw = b64(line[11..].trim());
            let mut parts = raw.split(|&b| b == 0).skip(1);
            let user = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let pass = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            logins.lock().unwrap().push((user, pass));
            w.write_all(b"235 2.7.0 Authentication successful\r\n")?;
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            w.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("MAIL FROM") {
            from = arg(&line);
            to.clear();
            w.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("RCPT TO") {
            to.push(arg(&line));
            w.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go ahead\r\n")?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l)? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                // Dot-stuffing: a leading dot was doubled by the client.
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            let n = {
                let mut all = mails.lock().unwrap();
                all.push(Mail {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                });
                all.len()
            };
            write!(w, "250 OK queued as {n}\r\n")?;
        } else if upper.starts_with("RSET") {
            to.clear();
            w.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"502 not implemented\r\n")?;
        }
    }
}

/// A port nothing listens on now (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
