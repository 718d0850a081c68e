//! The noise benchmark: a generated, realistic week of API traffic with the
//! trouble every real API has (revoked keys still deployed, mistyped keys
//! retried all day, internet scanners trying random keys, a working key's
//! occasional 401, public app keys used from everywhere) and a few real
//! incidents planted on the last day. It runs `keywatch scan -o json` on it
//! and reports findings per rule per million lines, the share of behaviour
//! findings about keys that never worked (goal: 0), and which planted
//! incidents were caught.
//!
//! `cargo bench --bench noise` (about 1 M lines; `-- --days N` for another
//! length). Exits non-zero if an incident is missed or a behaviour finding
//! is about a key that never worked, so it can gate a change.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufWriter, Write};
use std::process::Command;

use common::{FORMAT, Rng};
use keywatch::keys::{Extractor, KeySecret, KeySources};

const SECRET: &str = "noise-benchmark-secret-0123456789";
/// 2026-11-20T00:00:00Z.
const START: i64 = 1_795_132_800;

/// `n` rejected requests, each with a new key never accepted; `at(i)` gives
/// the time and client of the `i`-th.
fn guesses(
    rng: &mut Rng,
    lines: &mut Vec<Line>,
    never: &mut HashSet<String>,
    n: i64,
    agent: &str,
    at: impl Fn(i64) -> (i64, String),
) {
    for i in 0..n {
        let key = rng.key("nk_");
        let (t, ip) = at(i);
        lines.push(Line {
            t,
            ip,
            target: "/v1/items".into(),
            status: 401,
            agent: agent.into(),
            key: key.clone(),
        });
        never.insert(key);
    }
}

struct Line {
    t: i64,
    ip: String,
    target: String,
    status: u16,
    agent: String,
    key: String,
}

/// What was planted, and how to know it was caught.
struct Incident {
    what: &'static str,
    rule: &'static str,
    key: Option<String>,
    client: Option<String>,
}

fn main() {
    let days: i64 = std::env::args()
        .skip_while(|a| a != "--days")
        .nth(1)
        .and_then(|d| d.parse().ok())
        .unwrap_or(7);
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let mut lines: Vec<Line> = Vec::new();
    let mut accepted: HashSet<String> = HashSet::new();
    let mut never: HashSet<String> = HashSet::new();
    let agents = [
        "python-requests/2.32.3",
        "Go-http-client/1.1",
        "okhttp/4.12.0",
        "node-fetch/1.0",
    ];
    // Working server keys: Zipf popularity, each from its own one to three
    // hosts, busier in working hours.
    let server: Vec<(String, Vec<String>, String)> = (0..300)
        .map(|i| {
            let hosts = (0..1 + rng.below(3))
                .map(|h| format!("10.{}.{}.{}", i / 250, i % 250, 10 + h))
                .collect();
            (rng.key("nk_"), hosts, agents[i % agents.len()].to_string())
        })
        .collect();
    let weights: Vec<f64> = (1..=server.len())
        .map(|r| 1.0 / (r as f64).powf(1.1))
        .collect();
    let total: f64 = weights.iter().sum();
    let per_day = 130_000.0;
    for d in 0..days {
        for (i, (key, hosts, agent)) in server.iter().enumerate() {
            let n = (per_day * weights[i] / total) as i64;
            for _ in 0..n {
                // Diurnal: two thirds of the traffic between 08:00 and 20:00.
                let secs = if rng.below(3) < 2 {
                    8 * 3600 + rng.below(12 * 3600) as i64
                } else {
                    rng.below(86_400) as i64
                };
                // A working key's occasional 401 (a clock skew, a race).
                let status = match rng.below(1000) {
                    0 => 401,
                    1..=20 => 404,
                    21..=25 => 500,
                    _ => 200,
                };
                lines.push(Line {
                    t: START + d * 86_400 + secs,
                    ip: hosts[rng.below(hosts.len() as u64) as usize].clone(),
                    target: format!("/v1/items/{}", rng.below(100_000)),
                    status,
                    agent: agent.clone(),
                    key: key.clone(),
                });
            }
        }
    }
    accepted.extend(server.iter().map(|(k, _, _)| k.clone()));
    // Public (mobile app) keys: used from everywhere by nature.
    for a in 0..5 {
        let key = rng.key("pk_app_");
        for _ in 0..days * 4000 {
            lines.push(Line {
                t: START + rng.below((days * 86_400) as u64) as i64,
                ip: format!(
                    "100.{}.{}.{}",
                    64 + rng.below(64),
                    rng.below(256),
                    1 + rng.below(254)
                ),
                target: "/v1/feed".into(),
                status: 200,
                agent: format!("ExampleApp/{a}.{} (Android)", rng.below(9)),
                key: key.clone(),
            });
        }
        accepted.insert(key);
    }
    // Revoked keys still deployed, listed in the configuration.
    let revoked: Vec<String> = (0..3).map(|_| rng.key("nk_")).collect();
    for (i, key) in revoked.iter().enumerate() {
        for m in 0..days * 144 {
            lines.push(Line {
                t: START + m * 600 + i as i64 * 7,
                ip: format!("192.0.2.{}", 200 + i),
                target: "/v1/sync".into(),
                status: 401,
                agent: "legacy-widget/1.0".into(),
                key: key.clone(),
            });
        }
        never.insert(key.clone());
    }
    // Mistyped keys, retried every five minutes all week.
    let mistyped: Vec<String> = (0..4).map(|_| rng.key("nk_")).collect();
    for (i, key) in mistyped.iter().enumerate() {
        for m in 0..days * 288 {
            lines.push(Line {
                t: START + m * 300 + 60 + i as i64 * 11,
                ip: format!("198.18.7.{}", 10 + i),
                target: "/v1/report".into(),
                status: 403,
                agent: "cron/1.0".into(),
                key: key.clone(),
            });
        }
        never.insert(key.clone());
    }
    // Internet scanners: a random key now and then from a random address.
    for _ in 0..days * 200 {
        let key = rng.key("nk_");
        lines.push(Line {
            t: START + rng.below((days * 86_400) as u64) as i64,
            ip: format!(
                "45.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                1 + rng.below(254)
            ),
            target: "/v1/items".into(),
            status: 401,
            agent: "Mozilla/5.0 zgrab/0.x".into(),
            key: key.clone(),
        });
        never.insert(key);
    }
    // Keyless traffic: health checks and keyless 401s.
    for _ in 0..days * 20_000 {
        let status = if rng.below(10) == 0 { 401 } else { 200 };
        lines.push(Line {
            t: START + rng.below((days * 86_400) as u64) as i64,
            ip: format!("10.250.0.{}", 1 + rng.below(4)),
            target: if status == 200 {
                "/healthz".into()
            } else {
                "/v1/items".into()
            },
            status,
            agent: "kube-probe/1.31".into(),
            key: "-".into(),
        });
    }

    // The incidents, on the last day.
    let last = START + (days - 1) * 86_400;
    let mut incidents = Vec::new();
    // A brute force: 200 keys in five minutes from one client.
    guesses(
        &mut rng,
        &mut lines,
        &mut never,
        200,
        "python-requests/2.32.3",
        |i| (last + 3 * 3600 + i * 3 / 2, "198.51.100.23".into()),
    );
    incidents.push(Incident {
        what: "brute force from one client",
        rule: "key_bruteforce",
        key: None,
        client: Some("198.51.100.23".into()),
    });
    // Guessing spread over 80 addresses: 160 keys in ten minutes.
    guesses(&mut rng, &mut lines, &mut never, 160, "curl/8.5.0", |i| {
        (
            last + 11 * 3600 + i * 3,
            format!("203.0.113.{}", 1 + i % 80),
        )
    });
    incidents.push(Incident {
        what: "guessing spread over 80 clients",
        rule: "key_bruteforce",
        key: None,
        client: None,
    });
    // Low and slow: a new key every two minutes for three hours.
    guesses(&mut rng, &mut lines, &mut never, 90, "curl/8.5.0", |i| {
        (last + 22 * 3600 + i * 120, "192.0.2.77".into())
    });
    incidents.push(Incident {
        what: "low-and-slow guessing",
        rule: "key_bruteforce",
        key: None,
        client: Some("192.0.2.77".into()),
    });
    // A guesser that got in.
    guesses(&mut rng, &mut lines, &mut never, 10, "curl/8.5.0", |i| {
        (last + 6 * 3600 + i, "198.51.100.99".into())
    });
    let guessed = rng.key("nk_");
    for i in 0..5 {
        lines.push(Line {
            t: last + 6 * 3600 + 12 + i,
            ip: "198.51.100.99".into(),
            target: "/v1/admin/export".into(),
            status: 200,
            agent: "curl/8.5.0".into(),
            key: guessed.clone(),
        });
    }
    accepted.insert(guessed.clone());
    incidents.push(Incident {
        what: "a guessed key accepted",
        rule: "key_bruteforce",
        key: Some(guessed),
        client: Some("198.51.100.99".into()),
    });
    // A leaked working key: an hour from 40 new networks at five times its rate.
    let (leaked, _, _) = server[3].clone();
    for i in 0..2400 {
        lines.push(Line {
            t: last + 15 * 3600 + i * 3 / 2,
            ip: format!("172.{}.{}.9", 16 + i % 40, i % 200),
            target: "/v1/customers".into(),
            status: 200,
            agent: "python-requests/2.31.0".into(),
            key: leaked.clone(),
        });
    }
    for rule in ["key_fanout", "key_rate_spike"] {
        incidents.push(Incident {
            what: "a leaked key used from 40 networks",
            rule,
            key: Some(leaked.clone()),
            client: None,
        });
    }
    // One key shared by six integrations, every day.
    let (shared, _, _) = server[20].clone();
    for d in 0..days {
        for i in 0..6 {
            for r in 0..30 {
                lines.push(Line {
                    t: START + d * 86_400 + 9 * 3600 + r * 600 + i,
                    ip: format!("10.{}.{}.5", 100 + i, 7 * i),
                    target: "/v1/invoices".into(),
                    status: 200,
                    agent: format!("service-{i}/2.{r}", r = i % 3),
                    key: shared.clone(),
                });
            }
        }
    }
    incidents.push(Incident {
        what: "one key shared by six integrations",
        rule: "key_shared",
        key: Some(shared),
        client: None,
    });
    // A key sent in a URL.
    let (in_url, hosts, _) = server[7].clone();
    lines.push(Line {
        t: last + 9 * 3600,
        ip: hosts[0].clone(),
        target: format!("/v1/items?api_key={in_url}"),
        status: 200,
        agent: "curl/8.5.0".into(),
        key: in_url.clone(),
    });
    incidents.push(Incident {
        what: "a key in a URL",
        rule: "key_in_url",
        key: Some(in_url),
        client: None,
    });
    incidents.push(Incident {
        what: "a revoked key still deployed",
        rule: "revoked_key_in_use",
        key: Some(revoked[0].clone()),
        client: None,
    });
    incidents.push(Incident {
        what: "a mistyped key retried all day",
        rule: "rejected_key_repeated",
        key: Some(mistyped[0].clone()),
        client: None,
    });

    lines.sort_by_key(|l| l.t);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut out = BufWriter::new(std::fs::File::create(&log).unwrap());
    for l in &lines {
        let t = chrono::DateTime::from_timestamp(l.t, 0).unwrap();
        writeln!(
            out,
            "{} - - [{}] \"GET {} HTTP/1.1\" {} 512 \"-\" \"{}\" 0.020 \"{}\"",
            l.ip,
            t.format("%d/%b/%Y:%H:%M:%S +0000"),
            l.target,
            l.status,
            l.agent,
            l.key
        )
        .unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let ex = Extractor::new(
        &KeySecret::from_bytes(SECRET.as_bytes()),
        KeySources::default(),
        &[],
    )
    .unwrap();
    let id = |k: &str| ex.key_id(k.as_bytes()).to_string();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[rules.revoked_key_in_use]\nids = [{}]\n",
            revoked
                .iter()
                .map(|k| format!("\"{}\"", id(k)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .env("KEYWATCH_KEY_SECRET", SECRET)
        .args([
            "--config",
            config.to_str().unwrap(),
            "--timezone",
            "UTC",
            "scan",
            "--no-progress",
            "-o",
            "json",
            "-f",
            FORMAT,
        ])
        .arg(&log)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let elapsed = started.elapsed();
    let findings: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["type"] == "finding")
        .collect();
    if std::env::var_os("NOISE_SHOW").is_some() {
        for f in &findings {
            println!(
                "{} {} {} {} {} {}",
                f["rule"], f["client"], f["key"], f["first_seen"], f["count"], f["message"]
            );
        }
    }
    let never_ids: HashSet<String> = never.iter().map(|k| id(k)).collect();
    let accepted_ids: HashSet<String> = accepted.iter().map(|k| id(k)).collect();
    let n = lines.len() as f64;
    println!(
        "noise benchmark: {} lines over {days} days ({} working keys, 5 public, 3 revoked, 4 mistyped, {} scanner guesses), scanned in {:.2} s",
        lines.len(),
        server.len(),
        days * 200,
        elapsed.as_secs_f64()
    );
    let mut per_rule: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for f in &findings {
        let e = per_rule
            .entry(f["rule"].as_str().unwrap_or("").to_owned())
            .or_default();
        e.0 += 1;
        if f["key_id"].as_str().is_some_and(|k| never_ids.contains(k)) {
            e.1 += 1;
        }
    }
    println!(
        "{:<26} {:>9} {:>14} {:>22}",
        "rule", "findings", "per M lines", "on keys never accepted"
    );
    for (rule, (count, on_never)) in &per_rule {
        println!(
            "{rule:<26} {count:>9} {:>14.1} {on_never:>22}",
            *count as f64 * 1e6 / n
        );
    }
    let behaviour = [
        "key_rate_spike",
        "key_new_network",
        "key_fanout",
        "key_shared",
    ];
    let bad: u64 = behaviour
        .iter()
        .filter_map(|r| per_rule.get(*r))
        .map(|(_, b)| b)
        .sum();
    let behaviour_total: u64 = behaviour
        .iter()
        .filter_map(|r| per_rule.get(*r))
        .map(|(a, _)| a)
        .sum();
    println!("behaviour findings on keys never accepted: {bad} of {behaviour_total} (goal 0)");
    let mut missed = 0;
    for inc in &incidents {
        let caught = findings.iter().any(|f| {
            f["rule"] == inc.rule
                && inc.key.as_ref().is_none_or(|k| f["key_id"] == id(k))
                && inc
                    .client
                    .as_ref()
                    .is_none_or(|c| f["client"] == c.as_str())
                && (inc.key.is_some() || inc.client.is_some() || f["clients"].as_u64() >= Some(40))
        });
        missed += u32::from(!caught);
        println!(
            "  {} {:<36} ({})",
            if caught { "caught" } else { "MISSED" },
            inc.what,
            inc.rule
        );
    }
    let false_keys: usize = findings
        .iter()
        .filter(|f| behaviour.contains(&f["rule"].as_str().unwrap_or("")))
        .filter(|f| {
            f["key_id"]
                .as_str()
                .is_some_and(|k| !accepted_ids.contains(k))
        })
        .count();
    if missed > 0 || bad > 0 || false_keys > 0 {
        eprintln!(
            "noise benchmark: {missed} incident(s) missed, {bad} behaviour finding(s) on keys never accepted"
        );
        std::process::exit(1);
    }
}
