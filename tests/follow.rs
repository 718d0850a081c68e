//! `keywatch watch` on real files with real rotation: every line counted
//! exactly once, through rename, copytruncate, truncation, replacement,
//! restarts and `kill -9` (the scenarios of TAILING.md this machine can make).

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Daemon, Kw, TEST_FORMAT, TEST_SECRET, line, stderr, stdout, wait_until};
use keywatch::keys::{Extractor, KeySecret, KeySources};
use serde_json::Value;

const DAY: &str = "2026-11-27";
const LONG: Duration = Duration::from_secs(20);

/// A writer that knows what it wrote: key → requests.
struct Writer {
    counts: BTreeMap<String, u64>,
    n: u64,
}

impl Writer {
    fn new() -> Writer {
        Writer {
            counts: BTreeMap::new(),
            n: 0,
        }
    }

    /// The next line (with its newline) for key `k`.
    fn next(&mut self, k: &str) -> String {
        self.n += 1;
        *self.counts.entry(k.to_string()).or_default() += 1;
        let s = self.n;
        let t = format!(
            "27/Nov/2026:{:02}:{:02}:{:02} +0000",
            s / 3600 % 24,
            s / 60 % 60,
            s % 60
        );
        format!(
            "{}\n",
            line("192.0.2.1", &t, &format!("/v1/items/{s}"), 200, "-", k)
        )
    }

    fn append(&mut self, path: &Path, k: &str, count: u64) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        let mut buf = String::new();
        for _ in 0..count {
            buf.push_str(&self.next(k));
        }
        f.write_all(buf.as_bytes()).unwrap();
    }

    /// What keywatch should report: key id → requests.
    fn expected(&self) -> BTreeMap<String, u64> {
        let ex = Extractor::new(
            &KeySecret::from_bytes(TEST_SECRET.as_bytes()),
            KeySources::default(),
            &[],
        )
        .unwrap();
        self.counts
            .iter()
            .map(|(k, n)| (ex.key_id(k.as_bytes()).to_string(), *n))
            .collect()
    }
}

fn key(i: usize) -> String {
    format!("kwf_{i:02}_{}", "Qm7ZpX2vL9rT4nB8")
}

fn status(kw: &Kw) -> Value {
    let o = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args(["--timezone", "UTC", "status", "-o", "json"])
        .output()
        .unwrap();
    if !o.status.success() {
        return Value::Null;
    }
    serde_json::from_str(stdout(&o).trim()).unwrap_or(Value::Null)
}

/// Lines counted (committed) over all files.
fn committed_lines(kw: &Kw) -> u64 {
    status(kw)["files"].as_array().map_or(0, |f| {
        f.iter().map(|x| x["lines"].as_u64().unwrap_or(0)).sum()
    })
}

/// Requests per key id in the stored summary of the test day.
fn stored(kw: &Kw) -> BTreeMap<String, u64> {
    try_stored(kw).unwrap_or_else(|e| panic!("summary failed: {e}"))
}

/// Like [`stored`], but an error (no store yet) is returned, not fatal.
fn try_stored(kw: &Kw) -> Result<BTreeMap<String, u64>, String> {
    let o = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args(["--timezone", "UTC", "summary", "--day", DAY, "-o", "json"])
        .output()
        .unwrap();
    if !o.status.success() {
        return Err(stderr(&o));
    }
    let v: Value = serde_json::from_str(stdout(&o).trim()).map_err(|e| e.to_string())?;
    Ok(v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().unwrap().to_string(),
                k["requests"].as_u64().unwrap(),
            )
        })
        .collect())
}

fn stored_total(kw: &Kw) -> u64 {
    try_stored(kw).map_or(0, |m| m.values().sum())
}

/// Waits until the store holds as many requests as were written.
fn settle(kw: &Kw, w: &Writer) {
    let deadline = std::time::Instant::now() + LONG;
    while stored_total(kw) < w.n {
        if std::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for {} requests stored; stored {:?}\nexpected {:?}\nstatus {}\ndaemon stderr:\n{}",
                w.n,
                try_stored(kw),
                w.expected(),
                status(kw),
                std::fs::read_to_string(kw.path("daemon.err")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Empties a file in place, as copytruncate does.
fn truncate(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

fn log_path(kw: &Kw) -> PathBuf {
    kw.path("access.log")
}

fn rotated(kw: &Kw, n: &str) -> PathBuf {
    kw.path(&format!("access.log.{n}"))
}

#[test]
fn rename_create_drains_old_file_before_release() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 100);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    std::fs::rename(&log, rotated(&kw, "1")).unwrap();
    // The old writer still has the file open and lags behind.
    w.append(&rotated(&kw, "1"), &key(2), 10);
    w.append(&log, &key(3), 50);
    // A long backlog in the old file after the switch: still drained.
    w.append(&rotated(&kw, "1"), &key(2), 20_000);
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn copytruncate_counts_every_line_once() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 200);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    for round in 0..5 {
        // Lines the daemon may or may not have read when the copy is made.
        w.append(&log, &key(2 + round), 30);
        std::fs::copy(&log, rotated(&kw, "1")).unwrap();
        truncate(&log);
        w.append(&log, &key(9), 7);
        settle(&kw, &w);
    }
    d.stop();
    assert_eq!(stored(&kw), w.expected());
    assert_eq!(
        status(&kw)["gaps"].as_array().unwrap().len(),
        0,
        "every unread line was in the copy"
    );
}

#[test]
fn truncate_then_refill_past_the_old_offset_is_read_from_the_start() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 20);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    // Rewrite the file in place with more bytes than were read, in one go.
    let mut fresh = Writer {
        counts: BTreeMap::new(),
        n: w.n,
    };
    let mut content = String::new();
    for _ in 0..60 {
        content.push_str(&fresh.next(&key(2)));
    }
    std::fs::write(&log, content).unwrap();
    for (k, n) in fresh.counts {
        *w.counts.entry(k).or_default() += n;
    }
    w.n = fresh.n;
    wait_until("the rewritten file counted", LONG, || {
        stored_total(&kw) == 80
    });
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn delete_recreate_and_atomic_replace_start_new_files_at_zero() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 10);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    std::fs::remove_file(&log).unwrap();
    w.append(&log, &key(2), 5);
    settle(&kw, &w);
    // Atomic replace: a new file renamed over the old one.
    let tmp = kw.path("access.log.tmp");
    w.append(&tmp, &key(3), 8);
    std::fs::rename(&tmp, &log).unwrap();
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn partial_lines_are_held_until_their_newline_even_across_a_restart() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    let other = kw.path("other.log");
    w.append(&log, &key(1), 3);
    let pattern = format!("{}/*.log", kw.dir.path().display());
    let d = Daemon::start(&kw, &pattern, &["--from-beginning"]);
    settle(&kw, &w);
    let full = w.next(&key(2));
    let (a, b) = full.split_at(40);
    OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(a.as_bytes())
        .unwrap();
    // Half a line sits in the file while a whole one in another is counted:
    // the daemon looked at both, and half a line is not a line.
    let before = committed_lines(&kw);
    let mut beside = Writer::new();
    beside.n = 1_000_000;
    beside.append(&other, &key(3), 1);
    wait_until("the line beside counted", LONG, || {
        committed_lines(&kw) == before + 1
    });
    d.stop();
    w.counts.extend(beside.counts.clone());
    w.n += 1;
    let d = Daemon::start(&kw, &pattern, &[]);
    OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b.as_bytes())
        .unwrap();
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn rotation_while_stopped_resumes_the_rotated_file_then_reads_the_new_one() {
    for compress in [false, true] {
        let kw = Kw::new();
        let mut w = Writer::new();
        let log = log_path(&kw);
        w.append(&log, &key(1), 50);
        let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
        settle(&kw, &w);
        d.stop();
        // While stopped: the old file gets 10 more lines, is rotated, and a new file gets 20.
        w.append(&log, &key(2), 10);
        std::fs::rename(&log, rotated(&kw, "1")).unwrap();
        if compress {
            let data = std::fs::read(rotated(&kw, "1")).unwrap();
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(&data).unwrap();
            std::fs::write(rotated(&kw, "1.gz"), enc.finish().unwrap()).unwrap();
            std::fs::remove_file(rotated(&kw, "1")).unwrap();
        }
        w.append(&log, &key(3), 20);
        let d = Daemon::start(&kw, log.to_str().unwrap(), &[]);
        wait_until("80 requests stored", LONG, || stored_total(&kw) == 80);
        d.stop();
        assert_eq!(stored(&kw), w.expected(), "compressed: {compress}");
    }
}

#[test]
fn symlink_switch_drains_the_old_target() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let (a, b) = (kw.path("access-1.log"), kw.path("access-2.log"));
    let link = kw.path("current.log");
    w.append(&a, &key(1), 10);
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let d = Daemon::start(&kw, link.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    w.append(&b, &key(2), 4);
    let tmp = kw.path("current.tmp");
    std::os::unix::fs::symlink(&b, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    w.append(&a, &key(3), 6); // the old target still gets written to
    wait_until("20 requests stored", LONG, || stored_total(&kw) == 20);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn files_appearing_later_are_picked_up_from_their_start() {
    let kw = Kw::new();
    let mut w = Writer::new();
    w.append(&kw.path("a.log"), &key(1), 5);
    let pattern = format!("{}/*.log", kw.dir.path().display());
    let d = Daemon::start(&kw, &pattern, &["--from-beginning"]);
    settle(&kw, &w);
    // A tiny file: one line, far smaller than the fingerprint window.
    w.append(&kw.path("b.log"), &key(2), 1);
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn first_start_from_end_skips_what_was_there() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 10);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &[]);
    wait_until("the file followed", LONG, || {
        status(&kw)["files"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    });
    let mut later = Writer::new();
    later.n = w.n;
    later.append(&log, &key(2), 4);
    wait_until("4 new requests stored", LONG, || stored_total(&kw) == 4);
    d.stop();
    assert_eq!(stored(&kw), later.expected());
}

#[test]
fn kill_9_at_random_points_loses_and_doubles_nothing() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    let mut seed = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(std::process::id());
    let mut rand = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..12 {
        // The same command line every time, as a service manager would run
        // it: --from-beginning only matters while nothing is stored.
        let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
        // A writer appends at a steady rate while the daemon runs…
        let stop_after = Duration::from_millis(150 + rand(400));
        let started = std::time::Instant::now();
        while started.elapsed() < stop_after {
            w.append(&log, &key((round % 5) as usize), 1 + rand(20));
            std::thread::sleep(Duration::from_millis(5));
        }
        if round == 6 {
            std::fs::rename(&log, rotated(&kw, "1")).unwrap();
        }
        // …and the daemon dies without warning.
        d.kill9();
    }
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    d.stop();
    assert_eq!(
        stored(&kw),
        w.expected(),
        "daemon stderr:\n{}",
        std::fs::read_to_string(kw.path("daemon.err")).unwrap_or_default()
    );
}

#[test]
fn a_day_followed_live_equals_the_same_file_scanned() {
    let kw = Kw::new();
    let log = kw.path("access.log");
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/access.log")).unwrap();
    let (first, second) = sample.split_at(sample.len() / 3);
    std::fs::write(&log, first).unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/keywatch.toml");
    let mut args = vec![
        "--config",
        config,
        "--timezone",
        "UTC",
        "watch",
        "--poll-interval",
        "50ms",
        "--commit-interval",
        "100ms",
        "--from-beginning",
    ];
    args.push(log.to_str().unwrap());
    let child = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon {
        kw: &kw,
        child: Some(child),
    };
    // The rest arrives while the daemon follows, in uneven pieces (lines cut in two).
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    for piece in second.chunks(7_777) {
        f.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_until("the whole sample counted", LONG, || {
        status(&kw)["files"].as_array().is_some_and(|f| {
            f.iter()
                .map(|x| x["lines"].as_u64().unwrap_or(0))
                .sum::<u64>()
                == 2823
        })
    });
    d.stop();
    let summary = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args([
            "--config",
            config,
            "--timezone",
            "UTC",
            "summary",
            "--day",
            DAY,
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let scan = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args([
            "--config",
            config,
            "--timezone",
            "UTC",
            "scan",
            "-o",
            "json",
            log.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let from_scan = stdout(&scan)
        .lines()
        .find(|l| l.contains("\"type\":\"summary\""))
        .unwrap()
        .to_string();
    assert_eq!(stdout(&summary).trim(), from_scan);
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn metrics_are_served_and_sighup_reopens_without_losing_a_line() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 25);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start(
        &kw,
        log.to_str().unwrap(),
        &["--from-beginning", "--metrics-listen", &addr],
    );
    settle(&kw, &w);
    let want = format!("keywatch_lines_read_total{{file=\"{}\"}} 25", log.display());
    wait_until("the metrics page to count 25 lines", LONG, || {
        http_get(port, "/metrics").is_some_and(|m| m.contains(&want))
    });
    let page = http_get(port, "/metrics").unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    for family in [
        "keywatch_lines_parsed_total",
        "keywatch_gaps_total",
        "keywatch_lag_bytes",
        "keywatch_key_requests",
        "keywatch_store_bytes",
    ] {
        assert!(
            page.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{page}"
        );
    }
    assert!(!page.contains(&key(1)), "no raw key in metrics");
    assert!(
        http_get(port, "/healthz")
            .unwrap()
            .starts_with("HTTP/1.1 200 OK")
    );
    // SIGHUP: commit, read the configuration again, reopen; nothing lost or doubled.
    let pid = d.child.as_ref().unwrap().id().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    w.append(&log, &key(2), 10);
    settle(&kw, &w);
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    w.append(&log, &key(3), 5);
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn a_damaged_store_stops_the_daemon_with_advice() {
    let kw = Kw::new();
    std::fs::create_dir_all(kw.state()).unwrap();
    std::fs::write(kw.state().join("keywatch.db"), vec![b'x'; 8192]).unwrap();
    let log = log_path(&kw);
    std::fs::write(&log, "").unwrap();
    let o = kw.run(&[
        "--timezone",
        "UTC",
        "watch",
        "-f",
        TEST_FORMAT,
        log.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is damaged or not a keywatch store"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("move it aside"), "{}", stderr(&o));
}

#[test]
fn a_key_in_a_url_is_reported_as_soon_as_its_line_is_read() {
    let kw = Kw::new();
    let log = log_path(&kw);
    std::fs::write(&log, "").unwrap();
    // A long commit interval: the finding must not wait for a commit.
    let d = Daemon::start(
        &kw,
        log.to_str().unwrap(),
        &["--from-beginning", "--commit-interval", "60s"],
    );
    wait_until("the daemon to start", LONG, || {
        std::fs::read_to_string(kw.path("daemon.err")).is_ok()
    });
    let secret = common::random_key("", 32);
    let t = "27/Nov/2026:10:00:00 +0000";
    let text = format!(
        "{}\n",
        common::line(
            "192.0.2.9",
            t,
            &format!("/v1/items?api_key={secret}"),
            200,
            "-",
            "-"
        )
    );
    OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let started = std::time::Instant::now();
    wait_until(
        "the finding on standard error",
        Duration::from_secs(5),
        || {
            std::fs::read_to_string(kw.path("daemon.err"))
                .unwrap_or_default()
                .contains("finding: critical key_in_url")
        },
    );
    let latency = started.elapsed();
    d.stop();
    let err = std::fs::read_to_string(kw.path("daemon.err")).unwrap();
    assert!(
        !err.contains(&secret[..12]),
        "no key in the daemon's output: {err}"
    );
    assert!(latency < Duration::from_secs(5));
}

#[test]
fn copytruncate_with_a_writer_that_keeps_its_offset_leaves_no_nul_garbage() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    // One handle, not opened for appending: it keeps writing at its own offset.
    let mut writer = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    let mut text = String::new();
    for _ in 0..40 {
        text.push_str(&w.next(&key(1)));
    }
    writer.write_all(text.as_bytes()).unwrap();
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    std::fs::copy(&log, rotated(&kw, "1")).unwrap();
    truncate(&log);
    // The writer continues at its old offset: the file now starts with a hole of NULs.
    let mut more = String::new();
    for _ in 0..12 {
        more.push_str(&w.next(&key(2)));
    }
    writer.write_all(more.as_bytes()).unwrap();
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
    let skipped: u64 = status(&kw)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["skipped"].as_u64().unwrap())
        .sum();
    assert_eq!(skipped, 0, "the NUL hole is not a line");
}

#[test]
fn an_unfinished_last_line_of_a_rotated_file_counts_when_the_file_is_let_go() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 5);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    let last = w.next(&key(2));
    OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(last.trim_end().as_bytes())
        .unwrap();
    std::fs::rename(&log, rotated(&kw, "1")).unwrap();
    w.append(&log, &key(3), 3);
    wait_until("the new file read", LONG, || stored_total(&kw) == 8);
    // The writer never finishes the line; the rotated file is deleted.
    std::fs::remove_file(rotated(&kw, "1")).unwrap();
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn rotated_twice_or_copytruncated_while_stopped_loses_nothing() {
    // Rotated twice: the file read before the stop is now .2, with more lines in it.
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 30);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    d.stop();
    w.append(&log, &key(2), 5);
    std::fs::rename(&log, rotated(&kw, "1")).unwrap();
    w.append(&log, &key(3), 7);
    std::fs::rename(rotated(&kw, "1"), rotated(&kw, "2")).unwrap();
    std::fs::rename(&log, rotated(&kw, "1")).unwrap();
    w.append(&log, &key(4), 9);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    // .2 is found by its head and offset and read from there; .1 was made and
    // rotated while keywatch was stopped, so it is read whole; then the new file.
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());

    // Copytruncated while stopped, with the new content already longer than the old offset.
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 20);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    d.stop();
    w.append(&log, &key(2), 6);
    std::fs::copy(&log, rotated(&kw, "1")).unwrap();
    truncate(&log);
    w.append(&log, &key(3), 40);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

/// How many log files under `dir` the daemon holds open (not its store or its stderr).
fn open_handles(pid: u32, dir: &Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| {
                    t.starts_with(dir)
                        && !t.starts_with(dir.join("state"))
                        && !t.ends_with("daemon.err")
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn idle_files_are_closed_and_reopened_when_they_change() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 10);
    let d = Daemon::start(
        &kw,
        log.to_str().unwrap(),
        &["--from-beginning", "--idle-close", "300ms"],
    );
    settle(&kw, &w);
    let pid = d.child.as_ref().unwrap().id();
    wait_until("the idle file closed", LONG, || {
        open_handles(pid, kw.dir.path()) == 0
    });
    // It changes: reopened, checked to be the same file, read from where it was.
    w.append(&log, &key(2), 5);
    settle(&kw, &w);
    wait_until("closed again", LONG, || {
        open_handles(pid, kw.dir.path()) == 0
    });
    // Rotated while closed: the rest of the old file, then the new one.
    w.append(&log, &key(3), 4);
    std::fs::rename(&log, rotated(&kw, "1")).unwrap();
    w.append(&log, &key(4), 6);
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn polling_alone_follows_rotation_and_truncation() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 30);
    let d = Daemon::start(
        &kw,
        log.to_str().unwrap(),
        &["--from-beginning", "--poll-only"],
    );
    settle(&kw, &w);
    std::fs::rename(&log, rotated(&kw, "1")).unwrap();
    w.append(&rotated(&kw, "1"), &key(2), 3);
    w.append(&log, &key(3), 8);
    settle(&kw, &w);
    w.append(&log, &key(4), 5);
    std::fs::copy(&log, rotated(&kw, "2")).unwrap();
    std::fs::rename(rotated(&kw, "2"), rotated(&kw, "1")).unwrap();
    truncate(&log);
    w.append(&log, &key(5), 2);
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn rapid_size_based_rotation_under_a_fast_writer_loses_nothing() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    std::fs::write(&log, "").unwrap();
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    wait_until("the file followed", LONG, || {
        status(&kw)["files"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    });
    // Like logrotate with size=…, rotate 3: shift .2→.3, .1→.2, log→.1, every
    // 2,000 lines, with the writer at 50,000 lines/s (TAILING.md scenario 23
    // rotates every 1 MB at that rate; this rotates more often).
    for round in 0..30 {
        w.append(&log, &key(round % 7), 2000);
        std::thread::sleep(Duration::from_millis(40));
        for n in (1..3).rev() {
            let from = rotated(&kw, &n.to_string());
            if from.exists() {
                std::fs::rename(&from, rotated(&kw, &(n + 1).to_string())).unwrap();
            }
        }
        std::fs::rename(&log, rotated(&kw, "1")).unwrap();
    }
    w.append(&log, &key(9), 10);
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn atomic_replace_with_the_same_content_goes_on_where_it_was() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 40);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    // A new file with the same first lines and more, renamed over the log.
    let tmp = kw.path("access.log.tmp");
    std::fs::copy(&log, &tmp).unwrap();
    w.append(&tmp, &key(2), 9);
    std::fs::rename(&tmp, &log).unwrap();
    settle(&kw, &w);
    w.append(&log, &key(3), 3);
    settle(&kw, &w);
    d.stop();
    assert_eq!(
        stored(&kw),
        w.expected(),
        "the first 40 lines are not counted again"
    );
}

#[test]
fn inode_reuse_while_stopped_is_a_new_file() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 12);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    d.stop();
    use std::os::unix::fs::MetadataExt;
    let old_ino = std::fs::metadata(&log).unwrap().ino();
    // Delete and create until the filesystem hands out the same inode again.
    std::fs::remove_file(&log).unwrap();
    let mut reused = false;
    let mut spare = Vec::new();
    for i in 0..2000 {
        std::fs::write(&log, "").unwrap();
        if std::fs::metadata(&log).unwrap().ino() == old_ino {
            reused = true;
            break;
        }
        let keep = kw.path(&format!("spare-{i}"));
        std::fs::rename(&log, &keep).unwrap();
        spare.push(keep);
    }
    for p in spare {
        let _ = std::fs::remove_file(p);
    }
    if !reused {
        println!(
            "inode reuse not produced by this filesystem in 2000 tries; the new file still has a new inode"
        );
    }
    // Different content, more bytes than the old offset.
    let mut fresh = Writer {
        counts: BTreeMap::new(),
        n: w.n,
    };
    fresh.append(&log, &key(2), 30);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    let total = w.n + 30;
    wait_until("the new file counted", LONG, || stored_total(&kw) == total);
    d.stop();
    for (k, n) in fresh.counts {
        *w.counts.entry(k).or_default() += n;
    }
    assert_eq!(
        stored(&kw),
        w.expected(),
        "the new file is read from its start, not from the old offset"
    );
}

#[test]
fn an_overflowing_event_queue_misses_no_rotation() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 10);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    // More events than inotify queues by default (16,384: each new file makes
    // three), in the directory of the log, with a rotation in the middle.
    for i in 0..12_000 {
        std::fs::write(kw.path(&format!("n{i}")), b"").unwrap();
        if i == 6_000 {
            w.append(&log, &key(2), 5);
            std::fs::rename(&log, rotated(&kw, "1")).unwrap();
            w.append(&log, &key(3), 7);
        }
    }
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn findings_of_a_followed_log_equal_those_of_the_same_log_scanned() {
    let kw = Kw::new();
    let log = kw.path("access.log");
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/access.log")).unwrap();
    std::fs::write(&log, "").unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/keywatch.toml");
    let err = std::fs::File::create(kw.path("watch.err")).unwrap();
    let child = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args([
            "--config",
            config,
            "--timezone",
            "UTC",
            "watch",
            "--poll-interval",
            "50ms",
            "--from-beginning",
        ])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let d = Daemon {
        kw: &kw,
        child: Some(child),
    };
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    for piece in sample.chunks(50_000) {
        f.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_until("the whole sample counted", LONG, || {
        status(&kw)["files"].as_array().is_some_and(|f| {
            f.iter()
                .map(|x| x["lines"].as_u64().unwrap_or(0))
                .sum::<u64>()
                == 2823
        })
    });
    d.stop();
    // "keywatch: finding: <severity> <rule> <who>: <message>"
    let mut live: Vec<String> = std::fs::read_to_string(kw.path("watch.err"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("keywatch: finding: "))
        .map(|l| l.split(": ").next().unwrap_or("").to_string())
        .collect();
    live.sort();
    let scan = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args([
            "--config",
            config,
            "--timezone",
            "UTC",
            "scan",
            "-o",
            "json",
        ])
        .arg(&log)
        .output()
        .unwrap();
    let mut scanned: Vec<String> = stdout(&scan)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "finding")
        .map(|v| {
            let who = match (v["name"].as_str(), v["key"].as_str(), v["client"].as_str()) {
                (Some(n), Some(k), _) => format!("{n} ({k})"),
                (None, Some(k), _) => k.to_string(),
                (_, None, Some(c)) => format!("client {c}"),
                _ => String::new(),
            };
            format!(
                "{} {} {who}",
                v["severity"].as_str().unwrap(),
                v["rule"].as_str().unwrap()
            )
        })
        .collect();
    scanned.sort();
    assert_eq!(live, scanned);
    assert_eq!(live.len(), 4, "{live:?}");
}

#[test]
fn a_file_that_appears_after_start_is_read_from_its_first_line_every_time() {
    // A first run from the end, on a path that does not exist yet: whatever
    // the file gets, from its first byte, is counted.
    for trial in 0..8 {
        let kw = Kw::new();
        let mut w = Writer::new();
        let log = log_path(&kw);
        let d = Daemon::start(&kw, log.to_str().unwrap(), &[]);
        wait_until("the path known before it exists", LONG, || {
            status(&kw)["files"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
        });
        // Created and written in small pieces, as fast as possible.
        for _ in 0..10 {
            w.append(&log, &key(trial), 5);
        }
        let started = std::time::Instant::now();
        settle(&kw, &w);
        assert!(
            started.elapsed() < LONG,
            "trial {trial}: counted in {:?}",
            started.elapsed()
        );
        let s = status(&kw);
        assert_eq!(s["files"][0]["generation"], "current", "trial {trial}: {s}");
        d.stop();
        assert_eq!(stored(&kw), w.expected(), "trial {trial}");
    }
}

#[test]
fn a_log_empty_at_start_is_detected_when_its_first_lines_arrive() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    std::fs::write(&log, "").unwrap();
    // No --log-format: the format is detected per file, from its lines.
    let err = std::fs::File::create(kw.path("daemon.err")).unwrap();
    let mut child = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args([
            "--timezone",
            "UTC",
            "watch",
            "--poll-interval",
            "50ms",
            "--commit-interval",
            "100ms",
            log.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    wait_until("the empty file followed", LONG, || {
        status(&kw)["files"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    });
    w.append(&log, &key(1), 20);
    w.append(&log, &key(2), 7);
    settle(&kw, &w);
    // Every request is attributed to its key, not counted keyless.
    assert_eq!(stored(&kw), w.expected());
    let said = std::fs::read_to_string(kw.path("daemon.err")).unwrap();
    assert!(said.contains("log format \"keywatch\" detected"), "{said}");
    assert_eq!(status(&kw)["files"][0]["format"], "keywatch");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    // The choice is kept with the file: a restart reads on with it.
    let d = Daemon::start(&kw, log.to_str().unwrap(), &[]);
    w.append(&log, &key(3), 3);
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn two_rotations_of_any_kind_while_stopped_are_counted_exactly() {
    // Copytruncate, then a rename rotation.
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 200);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    d.stop();
    std::fs::copy(&log, rotated(&kw, "1")).unwrap();
    truncate(&log);
    w.append(&log, &key(2), 200);
    std::fs::rename(rotated(&kw, "1"), rotated(&kw, "2")).unwrap();
    std::fs::rename(&log, rotated(&kw, "1")).unwrap();
    w.append(&log, &key(3), 200);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &[]);
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
    assert_eq!(status(&kw)["gaps"].as_array().unwrap().len(), 0);

    // Two copytruncates, then a rename rotation.
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 200);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    settle(&kw, &w);
    d.stop();
    let shift = |kw: &Kw| {
        for n in (1..3).rev() {
            let from = rotated(kw, &n.to_string());
            if from.exists() {
                std::fs::rename(&from, rotated(kw, &(n + 1).to_string())).unwrap();
            }
        }
    };
    std::fs::copy(&log, rotated(&kw, "1")).unwrap();
    truncate(&log);
    w.append(&log, &key(2), 200);
    shift(&kw);
    std::fs::copy(&log, rotated(&kw, "1")).unwrap();
    truncate(&log);
    w.append(&log, &key(3), 200);
    shift(&kw);
    std::fs::rename(&log, rotated(&kw, "1")).unwrap();
    w.append(&log, &key(4), 200);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &[]);
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
    assert_eq!(status(&kw)["gaps"].as_array().unwrap().len(), 0);
}

#[test]
fn a_catch_up_commits_as_it_goes_and_a_kill_keeps_what_was_committed() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    for k in 0..20 {
        w.append(&log, &key(k % 7), 10_000);
    }
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    // Progress shows while the backlog is read: commits come on time.
    wait_until("a commit in the middle of the backlog", LONG, || {
        let n = committed_lines(&kw);
        n > 0 && n < w.n
    });
    let seen = committed_lines(&kw);
    d.kill9();
    let d = Daemon::start(&kw, log.to_str().unwrap(), &[]);
    wait_until("the commits before the kill kept", LONG, || {
        committed_lines(&kw) >= seen
    });
    settle(&kw, &w);
    d.stop();
    assert_eq!(stored(&kw), w.expected());
}

#[test]
fn a_first_run_killed_before_anything_was_read_keeps_its_starting_point() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    w.append(&log, &key(1), 100);
    // From the end: the 100 lines there are history.
    let d = Daemon::start(&kw, log.to_str().unwrap(), &[]);
    wait_until("the starting position committed", LONG, || {
        status(&kw)["files"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    });
    d.kill9();
    let mut later = Writer::new();
    later.n = w.n;
    later.append(&log, &key(2), 10);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &[]);
    wait_until("the 10 lines written after the first start", LONG, || {
        stored_total(&kw) == 10
    });
    d.stop();
    assert_eq!(stored(&kw), later.expected());
}

/// A file that appears just before a stop, before the daemon has looked at
/// it (no file events, a slow poll), and is rotated away and deleted while
/// keywatch is stopped: the stop's last look reads it and puts it on record,
/// so its lines are counted, and the next start reports that what came after
/// the stop is unknown (a gap) instead of nothing at all.
#[test]
fn a_file_appearing_just_before_a_stop_is_on_record() {
    let kw = Kw::new();
    let mut w = Writer::new();
    let log = log_path(&kw);
    let args = [
        "--timezone",
        "UTC",
        "watch",
        "--poll-only",
        "--poll-interval",
        "1s",
        "--commit-interval",
        "100ms",
        "-f",
        TEST_FORMAT,
        log.to_str().unwrap(),
    ];
    let d = Daemon::spawn(&kw, &args, &[]);
    wait_until("the daemon waiting for the file", LONG, || {
        status(&kw)["files"][0]["generation"] == "waiting for the file"
    });
    w.append(&log, &key(1), 25);
    d.stop();
    std::fs::rename(&log, rotated(&kw, "1")).unwrap();
    std::fs::remove_file(rotated(&kw, "1")).unwrap();
    let d = Daemon::spawn(&kw, &args, &[]);
    wait_until("the lost lines reported as a gap", LONG, || {
        status(&kw)["gaps"]
            .as_array()
            .is_some_and(|g| !g.is_empty())
    });
    d.stop();
    assert_eq!(stored_total(&kw), w.n, "the lines were read at the stop");
}
