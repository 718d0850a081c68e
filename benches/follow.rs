//! `keywatch watch` figures, measured on the release binary:
//!
//! 1. latency from a line appended to its finding on the daemon's standard
//!    error, with file events (inotify) and with polling only, while lines
//!    are appended at 10,000 lines/s;
//! 2. CPU and memory while following 1,000 files of which 10 are written to.
//!
//! Run: `cargo bench --bench follow` (builds the release binary first).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time "$http_x_api_key""#;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keywatch")
}

fn line(n: u64, key_in_url: Option<&str>) -> String {
    let target = match key_in_url {
        Some(k) => format!("/v1/items?api_key={k}"),
        None => format!("/v1/items/{n}"),
    };
    format!(
        "192.0.2.{} - - [27/Nov/2026:10:{:02}:{:02} +0000] \"GET {target} HTTP/1.1\" 200 120 \"-\" \"bench/1.0\" 0.004 \"bk_{:012}\"\n",
        n % 250,
        n / 60 % 60,
        n % 60,
        n % 50
    )
}

fn start(dir: &Path, pattern: &str, extra: &[&str]) -> Child {
    Command::new(bin())
        .env("KEYWATCH_KEY_SECRET", "bench-secret-0123456789")
        .env("KEYWATCH_STATE", dir.join("state"))
        .env("KEYWATCH_CONFIG", "/dev/null")
        .args([
            "--timezone",
            "UTC",
            "watch",
            "-f",
            FORMAT,
            "--from-beginning",
        ])
        .args(extra)
        .arg(pattern)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keywatch")
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn latency(poll_only: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    std::fs::write(&log, "").expect("create log");
    let extra: &[&str] = if poll_only {
        &["--poll-only", "--poll-interval", "250ms"]
    } else {
        &[]
    };
    let mut child = start(dir.path(), log.to_str().expect("utf-8 path"), extra);
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if l.contains("finding: critical key_in_url") {
                let _ = tx.send(Instant::now());
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open log");
    let mut sent = Vec::new();
    let start = Instant::now();
    // 10,000 lines/s for 5 s, in batches of 100 every 10 ms; one line in each
    // batch carries a new key in its URL.
    for batch in 0..500u64 {
        let mut buf = String::new();
        for i in 0..100 {
            let n = batch * 100 + i;
            let key = (i == 50).then(|| format!("bench{n:020}zZ9"));
            buf.push_str(&line(n, key.as_deref()));
        }
        f.write_all(buf.as_bytes()).expect("append");
        sent.push(Instant::now());
        let next = start + Duration::from_millis(10 * (batch + 1));
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(t) => got.push(t),
            Err(_) => break,
        }
    }
    stop(child);
    let mut lat: Vec<Duration> = sent
        .iter()
        .zip(&got)
        .map(|(s, g)| g.saturating_duration_since(*s))
        .collect();
    lat.sort();
    let mode = if poll_only {
        "polling every 250 ms"
    } else {
        "inotify"
    };
    if lat.is_empty() {
        println!("latency ({mode}): no finding arrived");
        return;
    }
    println!(
        "latency, append to finding ({mode}), {} of {} findings at 10,000 lines/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        got.len(),
        sent.len(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
}

/// (user + system CPU seconds, resident bytes) of a process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, rss_kb * 1024)
}

fn many_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    for i in 0..1000 {
        std::fs::write(logs.join(format!("site{i:04}.log")), line(i, None)).expect("create file");
    }
    let pattern = format!("{}/*.log", logs.display());
    let child = start(dir.path(), &pattern, &[]);
    std::thread::sleep(Duration::from_secs(3));
    let pid = child.id();
    let (cpu0, _) = usage(pid);
    let t0 = Instant::now();
    let mut n = 0u64;
    // 10 active files, 100 lines/s each, for 20 s.
    while t0.elapsed() < Duration::from_secs(20) {
        for i in 0..10 {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(logs.join(format!("site{:04}.log", i * 97)))
                .expect("open");
            let mut buf = String::new();
            for _ in 0..10 {
                n += 1;
                buf.push_str(&line(n, None));
            }
            f.write_all(buf.as_bytes()).expect("append");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (cpu1, rss) = usage(pid);
    let secs = t0.elapsed().as_secs_f64();
    stop(child);
    println!(
        "1,000 files followed, 10 written at 100 lines/s each for {secs:.0} s: CPU {:.1}% of one core, RSS {:.1} MB",
        (cpu1 - cpu0) / secs * 100.0,
        rss as f64 / 1e6
    );
}

fn main() {
    latency(false);
    latency(true);
    many_files();
}
