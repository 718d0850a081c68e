//! `--metrics-listen`: Prometheus text format on `/metrics` and a `/healthz`
//! probe, served by a small blocking HTTP loop on its own thread (no async
//! runtime: a scrape every few seconds needs none).
//!
//! The daemon renders the page at each commit; scrapes only copy it.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The page the server hands out, and what is wrong (for `/healthz`),
/// both replaced by the daemon.
#[derive(Clone, Default)]
pub struct Page {
    text: Arc<Mutex<String>>,
    faults: Arc<Mutex<Vec<String>>>,
}

impl Page {
    pub fn set(&self, text: String) {
        if let Ok(mut p) = self.text.lock() {
            *p = text;
        }
    }

    fn get(&self) -> String {
        self.text.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// What keeps the daemon from doing its job, one line each; empty when
    /// healthy.
    pub fn set_faults(&self, faults: Vec<String>) {
        if let Ok(mut f) = self.faults.lock() {
            *f = faults;
        }
    }

    fn faults(&self) -> Vec<String> {
        self.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// Starts serving on `addr`; returns the bound address.
pub fn serve(addr: &str, page: Page) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = answer(conn, &page);
            }
        })?;
    Ok(bound)
}

fn answer(mut conn: TcpStream, page: &Page) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.by_ref().take(8192).read_line(&mut request_line)?;
    // Drain the headers (bounded) so the client sees a clean response.
    let mut header = String::new();
    for _ in 0..100 {
        header.clear();
        if reader.by_ref().take(8192).read_line(&mut header)? == 0
            || header == "\r\n"
            || header == "\n"
        {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, body) = match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            page.get(),
        ),
        "/healthz" => {
            let faults = page.faults();
            if faults.is_empty() {
                ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string())
            } else {
                (
                    "503 Service Unavailable",
                    "text/plain; charset=utf-8",
                    faults.iter().map(|f| format!("{f}\n")).collect(),
                )
            }
        }
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: try /metrics or /healthz\n".to_string(),
        ),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

/// A label value escaped as the text format requires.
pub fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Builds the text of a page, one family at a time.
#[derive(Default)]
pub struct Builder {
    text: String,
}

impl Builder {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let mut b = Builder::default();
        b.family("x_total", "counter", "test");
        b.sample("x_total", &[("file", "a\"b\\c\nd")], 3.0);
        assert_eq!(
            b.finish(),
            "# HELP x_total test\n# TYPE x_total counter\nx_total{file=\"a\\\"b\\\\c\\nd\"} 3\n"
        );
    }
}
