//! What the rules learn survives a reload, a restart and a kill: one log
//! fed to `watch` in pieces, with a SIGHUP, a stop and start, and a SIGKILL
//! between them, yields the findings of one `scan` of it.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{
    Daemon, Kw, TEST_FORMAT, alert_list, at, committed_lines, random_key, scan_json, wait_until,
};
use serde_json::Value;

fn ms(t: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[test]
fn a_reload_a_restart_and_a_kill_keep_what_the_rules_learned() {
    let kw = Kw::new();
    let k = random_key("kws_", 28);
    // A day and two hours of a key's ordinary use (10 requests per five
    // minutes), then a spike: two buckets of 60, then two normal ones.
    let mut first = String::new();
    for i in 0..26 * 12 * 10 {
        first.push_str(&at(i * 30, "192.0.2.10", 200, &k));
    }
    let mut second = String::new();
    let start = 26 * 3600;
    for b in 0..4i64 {
        let n = if b < 2 { 60 } else { 10 };
        for i in 0..n {
            second.push_str(&at(start + b * 300 + i * 300 / n, "192.0.2.10", 200, &k));
        }
    }
    let whole = kw.write("whole.log", format!("{first}{second}"));
    let scanned: Vec<Value> = scan_json(
        &kw,
        &["-f", TEST_FORMAT, whole.to_str().unwrap()],
        "finding",
    )
    .into_iter()
    .filter(|v| v["rule"] == "key_rate_spike")
    .collect();
    assert_eq!(scanned.len(), 1, "the scan finds the spike");

    let log = kw.path("access.log");
    std::fs::write(&log, &first).unwrap();
    let n1 = first.lines().count() as u64;
    let d = Daemon::start(&kw, log.to_str().unwrap(), &["--from-beginning"]);
    wait_until("the first part committed", Duration::from_secs(30), || {
        committed_lines(&kw) == n1
    });
    d.hup();
    wait_until("the reload", Duration::from_secs(10), || {
        std::fs::read_to_string(kw.path("daemon.err"))
            .is_ok_and(|e| e.contains("configuration read again"))
    });
    d.stop();
    // Started again: the key's day of history must still be known. The
    // spike's first bucket, then a kill, then the rest.
    let append = |text: &str| {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    };
    let lines: Vec<&str> = second.split_inclusive('\n').collect();
    let (a, b) = lines.split_at(60);
    let d = Daemon::start(&kw, log.to_str().unwrap(), &[]);
    // In two pieces, so the second is read after the daemon's first commit.
    append(&a[..30].concat());
    wait_until(
        "half the first bucket committed",
        Duration::from_secs(30),
        || committed_lines(&kw) == n1 + 30,
    );
    append(&a[30..].concat());
    wait_until(
        "the first bucket committed",
        Duration::from_secs(30),
        || committed_lines(&kw) == n1 + 60,
    );
    d.kill9();
    let d = Daemon::start(&kw, log.to_str().unwrap(), &[]);
    append(&b.concat());
    let n = n1 + second.lines().count() as u64;
    wait_until("everything committed", Duration::from_secs(30), || {
        committed_lines(&kw) == n
    });
    wait_until("the spike alert", Duration::from_secs(20), || {
        alert_list(&kw)
            .iter()
            .any(|a| a["rule"] == "key_rate_spike")
    });
    d.stop();
    let spike = alert_list(&kw)
        .into_iter()
        .find(|a| a["rule"] == "key_rate_spike")
        .unwrap();
    assert_eq!(
        ms(&spike["first_seen"]),
        ms(&scanned[0]["first_seen"]),
        "{spike}"
    );
    assert_eq!(spike["count"], scanned[0]["count"], "{spike}");
    assert_eq!(spike["key_id"], scanned[0]["key_id"]);
}

/// The latest episode of each alert: (rule, key, client) → (start, count).
fn latest(items: impl Iterator<Item = Value>) -> std::collections::BTreeMap<String, (i64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for f in items {
        let id = format!("{} {} {}", f["rule"], f["key_id"], f["client"]);
        let ep = (ms(&f["first_seen"]), f["count"].as_u64().unwrap_or(0));
        let e = out.entry(id).or_insert(ep);
        if ep.0 > e.0 {
            *e = ep;
        }
    }
    out
}

#[test]
fn random_kills_restarts_and_reloads_give_the_findings_of_one_scan() {
    let kw = Kw::new();
    let k = random_key("kws_", 28);
    let bad = random_key("kwx_", 28);
    // Time order: a key's day and a half of use with a spike after a day,
    // a mistyped key rejected every five minutes, a guesser twice.
    let mut lines: Vec<(i64, String)> = Vec::new();
    for i in 0..30 * 12 * 10 {
        let t = i * 30;
        let spike = (26 * 3600..26 * 3600 + 600).contains(&t);
        lines.push((t, at(t, "192.0.2.10", 200, &k)));
        if spike {
            for j in 1..6 {
                lines.push((t + j * 5, at(t + j * 5, "192.0.2.10", 200, &k)));
            }
        }
    }
    for i in 0..30 * 12 {
        lines.push((i * 300 + 7, at(i * 300 + 7, "198.18.7.10", 401, &bad)));
    }
    for start in [10 * 3600, 20 * 3600] {
        for j in 0..10 {
            let t = start + j * 2 + 1;
            lines.push((t, at(t, "198.51.100.7", 401, &random_key("kwg_", 28))));
        }
    }
    lines.sort_by_key(|(t, _)| *t);
    let text: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
    let whole = kw.write("whole.log", text.concat());
    let scanned = latest(
        scan_json(
            &kw,
            &["-f", TEST_FORMAT, whole.to_str().unwrap()],
            "finding",
        )
        .into_iter(),
    );
    for rule in ["key_rate_spike", "key_bruteforce", "rejected_key_repeated"] {
        assert!(
            scanned.keys().any(|id| id.contains(rule)),
            "the scan finds {rule}: {scanned:?}"
        );
    }

    // The same log fed to `watch` in random pieces, with a random kill,
    // stop and start, or reload between them.
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).unwrap();
    let mut x = u64::from_le_bytes(seed) | 1;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let log = kw.path("access.log");
    std::fs::write(&log, "").unwrap();
    let mut d = Some(Daemon::start(
        &kw,
        log.to_str().unwrap(),
        &["--from-beginning"],
    ));
    let mut done = 0usize;
    let mut actions = Vec::new();
    while done < text.len() {
        let take = (1 + rnd(800) as usize).min(text.len() - done);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(text[done..done + take].concat().as_bytes())
            .unwrap();
        done += take;
        let n = done as u64;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while committed_lines(&kw) != n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} lines committed after {actions:?}; the daemon said:\n{}",
                committed_lines(&kw),
                std::fs::read_to_string(kw.path("daemon.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let action = ["none", "kill", "restart", "reload"][rnd(4) as usize];
        actions.push((done, action));
        match action {
            "kill" => {
                d.take().unwrap().kill9();
                d = Some(Daemon::start(&kw, log.to_str().unwrap(), &[]));
            }
            "restart" => {
                d.take().unwrap().stop();
                d = Some(Daemon::start(&kw, log.to_str().unwrap(), &[]));
            }
            "reload" => d.as_ref().unwrap().hup(),
            _ => {}
        }
    }
    wait_until("everything committed", Duration::from_secs(30), || {
        committed_lines(&kw) == text.len() as u64
    });
    let mut watched = Default::default();
    wait_until("the findings of the scan", Duration::from_secs(20), || {
        watched = latest(alert_list(&kw).into_iter());
        watched == scanned
    });
    d.take().unwrap().stop();
    assert_eq!(watched, scanned, "after {actions:?}");
}
