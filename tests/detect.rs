//! Detection rules, each with a scenario that must fire (once, with the right
//! key, client and count) and near misses that must not.

mod common;

use common::{Kw, TEST_FORMAT, TEST_SECRET, at, line, random_key, scan_json, stderr};
use keywatch::keys::{Extractor, KeySecret, KeySources};
use serde_json::Value;

fn key_id(raw: &str) -> String {
    let ex = Extractor::new(
        &KeySecret::from_bytes(TEST_SECRET.as_bytes()),
        KeySources::default(),
        &[],
    )
    .unwrap();
    ex.key_id(raw.as_bytes()).to_string()
}

/// Scans `log` with `config`; returns the finding objects.
fn findings(kw: &Kw, config: &str, log: &str) -> Vec<Value> {
    let cfg = kw.write("rules.toml", config);
    let path = kw.write("access.log", log);
    let (cfg, path) = (cfg.to_str().unwrap(), path.to_str().unwrap());
    scan_json(kw, &["--config", cfg, "-f", TEST_FORMAT, path], "finding")
}

fn log_of(entries: &[(&str, u32, u16, &str)]) -> String {
    entries
        .iter()
        .map(|(ip, s, status, key)| {
            format!(
                "{}\n",
                line(
                    ip,
                    &format!("27/Nov/2026:10:{:02}:{:02} +0000", s / 60, s % 60),
                    "/v1/items",
                    *status,
                    "-",
                    key
                )
            )
        })
        .collect()
}

#[test]
fn revoked_key_by_id_fires_once_with_count_and_clients() {
    let kw = Kw::new();
    let (old, other) = (random_key("kwr_", 28), random_key("kwr_", 28));
    let log = log_of(&[
        ("192.0.2.1", 1, 401, &old),
        ("192.0.2.2", 5, 401, &old),
        ("192.0.2.1", 9, 401, &old),
        ("192.0.2.3", 12, 200, &other),
        ("192.0.2.3", 13, 401, "-"),
    ]);
    let f = findings(
        &kw,
        &format!("[rules.revoked_key_in_use]\nids = [\"{}\"]\n", key_id(&old)),
        &log,
    );
    let revoked: Vec<_> = f
        .iter()
        .filter(|v| v["rule"] == "revoked_key_in_use")
        .collect();
    assert_eq!(revoked.len(), 1, "{f:?}");
    let r = revoked[0];
    assert_eq!(r["key_id"], key_id(&old));
    assert_eq!(
        (r["count"].as_u64(), r["clients"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(r["client"], "192.0.2.1");
    assert_eq!(r["severity"], "high");
    assert_eq!(r["first_seen"], "2026-11-27T10:00:01Z");
    assert_eq!(r["last_seen"], "2026-11-27T10:00:09Z");
    let all = serde_json::to_string(&f).unwrap();
    assert!(
        !all.contains(&old[..12]) && !all.contains(&other[..12]),
        "no key in findings"
    );
}

#[test]
fn a_revoked_key_the_api_still_accepts_is_critical() {
    let kw = Kw::new();
    let old = random_key("kwold_", 26);
    let log = log_of(&[("192.0.2.9", 1, 200, &old), ("192.0.2.9", 2, 401, &old)]);
    let f = findings(
        &kw,
        "[rules.revoked_key_in_use]\nprefixes = [\"kwold_\"]\n",
        &log,
    );
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["severity"], "critical");
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("still accepted it 1 of those times"),
        "{}",
        f[0]["message"]
    );
}

#[test]
fn revoked_ids_come_from_a_file_and_bad_ones_name_their_line() {
    let kw = Kw::new();
    let old = random_key("kwr_", 28);
    let ids = kw.write(
        "revoked.txt",
        format!(
            "# keys revoked in November\n{}  # billing, leaked\n\n",
            key_id(&old)
        ),
    );
    let log = log_of(&[("192.0.2.1", 1, 401, &old)]);
    let f = findings(
        &kw,
        &format!(
            "[rules.revoked_key_in_use]\nids_file = \"{}\"\n",
            ids.display()
        ),
        &log,
    );
    assert_eq!(f.len(), 1);

    let bad = kw.write("bad.txt", "0123456789abcdef\nnot-a-key-id\n");
    let cfg = kw.write(
        "bad.toml",
        format!(
            "[rules.revoked_key_in_use]\nids_file = \"{}\"\n",
            bad.display()
        ),
    );
    let o = kw.run(&[
        "--config",
        cfg.to_str().unwrap(),
        "scan",
        "samples/access.log",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad.txt line 2: not a key id"),
        "{}",
        stderr(&o)
    );
    // What is on the line is not echoed: it may be a key listed by mistake.
    assert!(!stderr(&o).contains("not-a-key-id"), "{}", stderr(&o));
}

#[test]
fn near_misses_do_not_fire_and_rules_switch_off() {
    let kw = Kw::new();
    let (old, other) = (random_key("kwr_", 28), random_key("kwr_", 28));
    let log = log_of(&[("192.0.2.1", 1, 401, &other), ("192.0.2.2", 2, 401, "-")]);
    // Listed, but never presented: nothing.
    let f = findings(
        &kw,
        &format!("[rules.revoked_key_in_use]\nids = [\"{}\"]\n", key_id(&old)),
        &log,
    );
    assert!(f.is_empty(), "{f:?}");
    // Presented, but the rule is off.
    let log = log_of(&[("192.0.2.1", 1, 401, &old)]);
    let f = findings(
        &kw,
        &format!(
            "[rules.revoked_key_in_use]\nenabled = false\nids = [\"{}\"]\n",
            key_id(&old)
        ),
        &log,
    );
    assert!(f.is_empty(), "{f:?}");
    // An unknown rule setting is a configuration error.
    let cfg = kw.write("typo.toml", "[rules.revoked_key_in_use]\nid = [\"x\"]\n");
    let o = kw.run(&[
        "--config",
        cfg.to_str().unwrap(),
        "scan",
        "samples/access.log",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 2: unknown field `id`"),
        "{}",
        stderr(&o)
    );
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|_| random_key("kwg_", 28)).collect()
}

fn rules_of<'a>(f: &'a [Value], rule: &str) -> Vec<&'a Value> {
    f.iter().filter(|v| v["rule"] == rule).collect()
}

#[test]
fn key_bruteforce_fires_on_the_sixth_distinct_rejected_key_and_grows() {
    let kw = Kw::new();
    let guesses = keys(9);
    // Nine different keys from one client within 18 seconds, all rejected.
    let entries: Vec<(&str, u32, u16, &str)> = guesses
        .iter()
        .enumerate()
        .map(|(i, k)| ("198.51.100.7", i as u32 * 2, 401, k.as_str()))
        .collect();
    let f = findings(&kw, "", &log_of(&entries));
    let b = rules_of(&f, "key_bruteforce");
    assert_eq!(b.len(), 1, "{f:?}");
    assert_eq!(b[0]["client"], "198.51.100.7");
    assert_eq!(
        b[0]["count"], 9,
        "all distinct keys of the burst are counted"
    );
    assert_eq!(b[0]["first_seen"], "2026-11-27T10:00:00Z");
    assert_eq!(b[0]["severity"], "high");
    // The generic burst of the same client is silenced by the stronger finding.
    assert!(rules_of(&f, "auth_failure_burst").is_empty(), "{f:?}");
    let all = serde_json::to_string(&f).unwrap();
    assert!(guesses.iter().all(|k| !all.contains(&k[..12])));
}

#[test]
fn key_bruteforce_near_misses() {
    let kw = Kw::new();
    let g = keys(12);
    // Five distinct keys: at capacity, not over it.
    let five: Vec<_> = g[..5]
        .iter()
        .enumerate()
        .map(|(i, k)| ("198.51.100.7", i as u32, 401, k.as_str()))
        .collect();
    assert!(rules_of(&findings(&kw, "", &log_of(&five)), "key_bruteforce").is_empty());
    // Twelve keys, one every 40 seconds: the bucket leaks faster than it fills.
    let slow: Vec<_> = g
        .iter()
        .enumerate()
        .map(|(i, k)| ("198.51.100.7", i as u32 * 40, 401, k.as_str()))
        .collect();
    assert!(rules_of(&findings(&kw, "", &log_of(&slow)), "key_bruteforce").is_empty());
    // Keyless 401s are the normal authentication challenge.
    let keyless: Vec<_> = (0..30).map(|i| ("198.51.100.7", i, 401, "-")).collect();
    assert!(findings(&kw, "", &log_of(&keyless)).is_empty());
    // One key retried: not guessing (one distinct key).
    let retried: Vec<_> = (0..20)
        .map(|i| ("198.51.100.7", i, 401, g[0].as_str()))
        .collect();
    assert!(rules_of(&findings(&kw, "", &log_of(&retried)), "key_bruteforce").is_empty());
    // Nine keys from nine clients: no single client guesses.
    let spread: Vec<(String, u32, u16, &str)> = g[..9]
        .iter()
        .enumerate()
        .map(|(i, k)| (format!("198.51.100.{i}"), i as u32, 401, k.as_str()))
        .collect();
    let spread: Vec<(&str, u32, u16, &str)> = spread
        .iter()
        .map(|(ip, s, st, k)| (ip.as_str(), *s, *st, *k))
        .collect();
    assert!(rules_of(&findings(&kw, "", &log_of(&spread)), "key_bruteforce").is_empty());
    // Switched off.
    let fast: Vec<_> = g[..9]
        .iter()
        .enumerate()
        .map(|(i, k)| ("198.51.100.7", i as u32, 401, k.as_str()))
        .collect();
    assert!(
        rules_of(
            &findings(
                &kw,
                "[rules.key_bruteforce]\nenabled = false\n",
                &log_of(&fast)
            ),
            "key_bruteforce"
        )
        .is_empty()
    );
}

#[test]
fn auth_failure_burst_fires_for_many_rejections_with_few_keys() {
    let kw = Kw::new();
    let g = keys(2);
    let entries: Vec<_> = (0..8)
        .map(|i| ("203.0.113.50", i, 403, g[(i % 2) as usize].as_str()))
        .collect();
    let f = findings(&kw, "", &log_of(&entries));
    let b = rules_of(&f, "auth_failure_burst");
    assert_eq!(b.len(), 1, "{f:?}");
    assert_eq!(b[0]["client"], "203.0.113.50");
    assert_eq!(
        b[0]["count"], 3,
        "the 6th, 7th and 8th rejection overflow the bucket of 5"
    );
    assert!(rules_of(&f, "key_bruteforce").is_empty());
    // Five rejections: no burst.
    let five: Vec<_> = (0..5)
        .map(|i| ("203.0.113.50", i, 403, g[0].as_str()))
        .collect();
    assert!(rules_of(&findings(&kw, "", &log_of(&five)), "auth_failure_burst").is_empty());
}

#[test]
fn rejected_key_repeated_needs_count_and_share_in_the_window() {
    let kw = Kw::new();
    let k = random_key("kwx_", 28);
    // Six rejections in six minutes, nothing else: fires.
    let six: Vec<_> = (0..6)
        .map(|i| ("192.0.2.77", i * 60, 401, k.as_str()))
        .collect();
    let f = findings(&kw, "", &log_of(&six));
    let r = rules_of(&f, "rejected_key_repeated");
    assert_eq!(r.len(), 1, "{f:?}");
    assert_eq!(r[0]["key_id"], key_id(&k));
    assert_eq!(r[0]["count"], 6);
    // Four rejections: below the minimum.
    assert!(
        rules_of(
            &findings(&kw, "", &log_of(&six[..4])),
            "rejected_key_repeated"
        )
        .is_empty()
    );
    // Six rejections among many successes: a small share.
    let mut mixed: Vec<(&str, u32, u16, &str)> = six.clone();
    mixed.extend((0..60).map(|i| ("192.0.2.77", i * 5, 200, k.as_str())));
    mixed.sort_by_key(|e| e.1);
    assert!(rules_of(&findings(&kw, "", &log_of(&mixed)), "rejected_key_repeated").is_empty());
    // Six rejections over an hour: too thin.
    let thin: Vec<_> = (0..6)
        .map(|i| ("192.0.2.77", i * 590, 401, k.as_str()))
        .collect();
    assert!(rules_of(&findings(&kw, "", &log_of(&thin)), "rejected_key_repeated").is_empty());
    // A revoked key is the revoked rule's finding, not this one.
    let f = findings(
        &kw,
        &format!("[rules.revoked_key_in_use]\nids = [\"{}\"]\n", key_id(&k)),
        &log_of(&six),
    );
    assert!(rules_of(&f, "rejected_key_repeated").is_empty());
    assert_eq!(rules_of(&f, "revoked_key_in_use").len(), 1);
}

fn rand_from(alphabet: &[u8], n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    b.iter()
        .map(|x| alphabet[usize::from(*x) % alphabet.len()] as char)
        .collect()
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn url_log(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .enumerate()
        .map(|(i, (target, referer))| {
            format!(
                "{}\n",
                line(
                    "192.0.2.60",
                    &format!("27/Nov/2026:11:00:{:02} +0000", i % 60),
                    target,
                    200,
                    referer,
                    "-"
                )
            )
        })
        .collect()
}

#[test]
fn third_party_secrets_in_any_url_position_are_found_and_redacted() {
    let kw = Kw::new();
    let stripe = format!("sk_{}_{}", "live", rand_from(ALNUM, 24));
    let github = format!("ghp_{}", rand_from(ALNUM, 36));
    let jwt = format!(
        "eyJhbGciOiJIUzI1NiJ9.eyJ{}.{}",
        rand_from(ALNUM, 20),
        rand_from(ALNUM, 30)
    );
    let password = rand_from(ALNUM, 14);
    let log = url_log(&[
        (&format!("/v1/pay?a=1&stripe={stripe}&b=2"), "-"),
        (&format!("/v1/repos/{github}/hooks"), "-"),
        (
            "/docs",
            &format!("https://app.example/cb?next=%2F&id_token={jwt}"),
        ),
        (
            "/docs",
            &format!("https://deploy:{password}@ci.example/build/7"),
        ),
    ]);
    let f = findings(&kw, "", &log);
    let s = rules_of(&f, "secret_in_url");
    assert_eq!(s.len(), 4, "{f:?}");
    let places: Vec<&str> = s.iter().map(|v| v["place"].as_str().unwrap()).collect();
    assert!(
        places.contains(&"query")
            && places.contains(&"path")
            && places.iter().filter(|p| **p == "referer").count() == 2
    );
    assert!(s.iter().all(|v| v["severity"] == "high"));
    let all = serde_json::to_string(&f).unwrap();
    for secret in [&stripe, &github, &jwt, &password] {
        assert!(
            !all.contains(&secret[..secret.len().min(14)]),
            "a secret in the output: {all}"
        );
    }
    assert!(all.contains("stripe=[REDACTED]&b=2"), "{all}");
    assert!(
        all.contains("https://[REDACTED]@ci.example/build/7"),
        "{all}"
    );
}

#[test]
fn credential_named_parameters_with_secret_values_are_found() {
    let kw = Kw::new();
    // A typical generated secret: letters and digits. (An all-letter value
    // counts only when its case pattern looks random; `url::tests` covers
    // that with fixed values, since one random 24-character draw in 70 has
    // no digit.)
    let secret = format!("{}{}", rand_from(ALNUM, 21), rand_from(b"0123456789", 3));
    let log = url_log(&[(&format!("/v1/db?db_password={secret}&x=1"), "-")]);
    let f = findings(&kw, "", &log);
    let c = rules_of(&f, "credential_param_in_url");
    assert_eq!(c.len(), 1, "{f:?}");
    assert_eq!(c[0]["severity"], "medium");
    assert!(c[0]["message"].as_str().unwrap().contains("`db_password`"));
    assert!(!serde_json::to_string(&f).unwrap().contains(&secret[..12]));
}

#[test]
fn false_positive_traps_stay_quiet() {
    let kw = Kw::new();
    let akid = format!("AKIA{}", rand_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
    let publishable = format!("pk_{}_{}", "live", rand_from(ALNUM, 24));
    let random = rand_from(ALNUM, 24);
    let log = url_log(&[
        // An S3 presigned URL carries an access key id by design.
        (
            &format!(
                "/bucket/obj.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={akid}%2F20261127%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261127T110000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature={}",
                rand_from(b"0123456789abcdef", 64)
            ),
            "-",
        ),
        // Azure SAS.
        (
            &format!(
                "/container/blob?sv=2022-11-02&se=2026-11-28T00%3A00%3A00Z&sp=r&sig={}",
                rand_from(ALNUM, 43)
            ),
            "-",
        ),
        // Publishable keys are meant to be public.
        (&format!("/checkout?pk={publishable}"), "-"),
        // Names that are not credentials, and cache busters, UUIDs, ids, placeholders.
        (
            &format!("/v1/items?sort_key={random}&idempotency_key={random}&page_token={random}"),
            "-",
        ),
        (
            "/static/app.js?v=d41d8cd98f00b204e9800998ecf8427e&_=1764241200000",
            "-",
        ),
        (
            "/v1/orders/550e8400-e29b-41d4-a716-446655440000/items/123456789012345678",
            "-",
        ),
        (
            "/v1/x?session_token=YOUR_SESSION_TOKEN&api_secret=REDACTED",
            "-",
        ),
    ]);
    let f = findings(&kw, "", &log);
    assert!(f.is_empty(), "{f:?}");
}

/// `per_bucket(b)` requests in 5-minute bucket b, spread inside it.
fn traffic(buckets: i64, key: &str, per_bucket: impl Fn(i64) -> u32) -> String {
    let mut s = String::new();
    for b in 0..buckets {
        let n = per_bucket(b);
        for i in 0..n {
            s.push_str(&at(
                b * 300 + i64::from(i) * 299 / i64::from(n.max(1)),
                "192.0.2.10",
                200,
                key,
            ));
        }
    }
    s
}

#[test]
fn key_rate_spike_fires_after_two_high_buckets_with_history() {
    let kw = Kw::new();
    let k = random_key("kws_", 28);
    // 26 hours at 10 requests per 5 minutes, then two buckets of 60, then normal again.
    let log = traffic(316, &k, |b| if b == 312 || b == 313 { 60 } else { 10 });
    let f = findings(&kw, "", &log);
    let s = rules_of(&f, "key_rate_spike");
    assert_eq!(s.len(), 1, "{f:?}");
    assert_eq!(s[0]["key_id"], key_id(&k));
    assert_eq!(s[0]["count"], 120);
    assert_eq!(s[0]["severity"], "medium");
    assert!(
        s[0]["message"]
            .as_str()
            .unwrap()
            .contains("up to 60 requests in 5 minutes, 6×"),
        "{}",
        s[0]["message"]
    );
}

#[test]
fn key_rate_spike_near_misses() {
    let kw = Kw::new();
    let k = random_key("kws_", 28);
    // One high bucket, not extreme: no.
    let one = traffic(316, &k, |b| if b == 312 { 60 } else { 10 });
    assert!(rules_of(&findings(&kw, "", &one), "key_rate_spike").is_empty());
    // Cold start: the spike comes within the key's first day.
    let cold = traffic(100, &k, |b| if b == 90 || b == 91 { 200 } else { 10 });
    assert!(rules_of(&findings(&kw, "", &cold), "key_rate_spike").is_empty());
    // Tiny volumes: 2 a bucket, then 20 twice (10×, under the 25-request floor).
    let tiny = traffic(316, &k, |b| if b == 312 || b == 313 { 20 } else { 2 });
    assert!(rules_of(&findings(&kw, "", &tiny), "key_rate_spike").is_empty());
    // A daily peak is the key's normal: an ordinary working day is never a
    // spike, on the second day (against the first day's busiest bucket) or
    // later (against the same hour of earlier days).
    let daily = traffic(4 * 288 + 10, &k, |b| {
        if (108..112).contains(&(b % 288)) {
            60
        } else {
            10
        }
    });
    let f = findings(&kw, "", &daily);
    assert!(rules_of(&f, "key_rate_spike").is_empty(), "{f:?}");
}

#[test]
fn key_new_network_needs_history_and_a_success() {
    let kw = Kw::new();
    let k = random_key("kwn_", 28);
    let mut log: String = (0..8 * 24)
        .map(|h| at(h * 3600, "192.0.2.10", 200, &k))
        .collect();
    let day8 = 8 * 86_400;
    log.push_str(&at(day8 + 10, "203.0.113.9", 401, &k)); // rejected: not yet
    log.push_str(&at(day8 + 20, "192.0.2.99", 200, &k)); // the same /24 as always
    log.push_str(&at(day8 + 30, "203.0.113.9", 200, &k)); // new network, accepted
    log.push_str(&at(day8 + 40, "203.0.113.12", 200, &k)); // same new /24: the finding grows
    let f = findings(&kw, "", &log);
    let n = rules_of(&f, "key_new_network");
    assert_eq!(n.len(), 1, "{f:?}");
    assert_eq!(n[0]["count"], 2);
    assert!(
        n[0]["message"].as_str().unwrap().contains("203.0.113.0/24"),
        "{}",
        n[0]["message"]
    );
    // Three days of history only: no finding.
    let short: String = (0..3 * 24)
        .map(|h| at(h * 3600, "192.0.2.10", 200, &k))
        .chain([at(3 * 86_400, "203.0.113.9", 200, &k)])
        .collect();
    assert!(rules_of(&findings(&kw, "", &short), "key_new_network").is_empty());
}

/// Like [`at`], with a user agent.
fn at_ua(secs: i64, ip: &str, ua: &str, key: &str) -> String {
    let t = chrono::DateTime::from_timestamp(1_763_596_800 + secs, 0).unwrap();
    format!(
        "{ip} - - [{}] \"GET /v1/items HTTP/1.1\" 200 120 \"-\" \"{ua}\" 0.010 \"{key}\"\n",
        t.format("%d/%b/%Y:%H:%M:%S +0000")
    )
}

#[test]
fn key_fanout_fires_when_an_hour_brings_far_more_networks() {
    let kw = Kw::new();
    let k = random_key("kwf_", 28);
    // 30 hours from two networks, then an hour from 20 networks, then a normal hour.
    let mut log = String::new();
    for h in 0..30i64 {
        log.push_str(&at(h * 3600 + 10, "192.0.2.10", 200, &k));
        log.push_str(&at(h * 3600 + 20, "198.51.100.10", 200, &k));
    }
    for n in 0..20 {
        log.push_str(&at(30 * 3600 + 10 + n, &format!("203.0.{n}.7"), 200, &k));
    }
    log.push_str(&at(31 * 3600 + 10, "192.0.2.10", 200, &k));
    let f = findings(&kw, "", &log);
    let fan = rules_of(&f, "key_fanout");
    assert_eq!(fan.len(), 1, "{f:?}");
    assert!(
        fan[0]["message"]
            .as_str()
            .unwrap()
            .contains("from 20 networks within an hour"),
        "{}",
        fan[0]["message"]
    );
    // Five networks in the hour: not more than max(5, 3 × 2).
    let mut near = String::new();
    for h in 0..30i64 {
        near.push_str(&at(h * 3600 + 10, "192.0.2.10", 200, &k));
        near.push_str(&at(h * 3600 + 20, "198.51.100.10", 200, &k));
    }
    for n in 0..5 {
        near.push_str(&at(30 * 3600 + 10 + n, &format!("203.0.{n}.7"), 200, &k));
    }
    near.push_str(&at(31 * 3600 + 10, "192.0.2.10", 200, &k));
    assert!(rules_of(&findings(&kw, "", &near), "key_fanout").is_empty());
}

#[test]
fn key_shared_needs_many_user_agents_from_many_networks() {
    let kw = Kw::new();
    let k = random_key("kwh_", 28);
    let shared: String = (0..6)
        .map(|i| {
            at_ua(
                i * 60,
                &format!("203.0.{i}.9"),
                &format!("integration-{i}/1.0"),
                &k,
            )
        })
        .collect();
    let f = findings(&kw, "", &shared);
    let s = rules_of(&f, "key_shared");
    assert_eq!(s.len(), 1, "{f:?}");
    assert_eq!(s[0]["severity"], "low");
    assert!(
        s[0]["message"]
            .as_str()
            .unwrap()
            .contains("6 different user agents from 6 networks"),
        "{}",
        s[0]["message"]
    );
    // Many browsers behind one office network are one integration.
    let office: String = (0..6)
        .map(|i| at_ua(i * 60, "192.0.2.44", &format!("Browser/{i}"), &k))
        .collect();
    assert!(rules_of(&findings(&kw, "", &office), "key_shared").is_empty());
}

#[test]
fn keys_in_every_url_position_are_found() {
    let kw = Kw::new();
    let ks: Vec<String> = (0..7).map(|_| random_key("kwu_", 28)).collect();
    let log = url_log(&[
        (&format!("/v1/a?api_key={}&limit=3&page=2", ks[0]), "-"), // first parameter, followed by &
        (&format!("/v1/b?limit=3&apikey={}&page=2", ks[1]), "-"),  // middle
        (&format!("/v1/c?limit=3&page=2&access_token={}", ks[2]), "-"), // last
        (
            &format!("/v1/d?api%5Fkey={}", ks[3].replace('_', "%5F")),
            "-",
        ), // percent-encoded name and value
        (&format!("/v1/e?api_key=x&api_key={}", ks[4]), "-"),      // repeated parameter
        (&format!("/v1/keys/{}/usage", ks[5]), "-"),               // a path segment (our prefix)
        (
            "/docs",
            &format!("https://dash.example/p?api_key={}", ks[6]),
        ), // the Referer
    ]);
    let f = findings(&kw, "[keys]\nprefixes = [\"kwu_\"]\n", &log);
    let ids: Vec<&str> = rules_of(&f, "key_in_url")
        .iter()
        .map(|v| v["key_id"].as_str().unwrap())
        .collect();
    for k in &ks {
        assert!(
            ids.contains(&key_id(k).as_str()),
            "a key position was missed: {f:?}"
        );
    }
    let all = serde_json::to_string(&f).unwrap();
    assert!(ks.iter().all(|k| !all.contains(&k[..12])));
}

#[test]
fn a_rate_spike_resolves_when_the_rate_is_back_to_normal() {
    let kw = Kw::new();
    let k = random_key("kws_", 28);
    let log = traffic(320, &k, |b| if b == 312 || b == 313 { 60 } else { 10 });
    let f = findings(&kw, "", &log);
    let s = rules_of(&f, "key_rate_spike");
    assert_eq!(s.len(), 1, "{f:?}");
    // Buckets 314 and 315 are normal: resolved at the end of 315 (2025-11-21T02:20:00Z).
    assert_eq!(s[0]["resolved_at"], "2025-11-21T02:20:00Z");
}

#[test]
fn a_key_that_worked_and_is_now_only_rejected_looks_revoked() {
    let kw = Kw::new();
    let k = random_key("kwi_", 28);
    // Worked hourly for two days, then rejected every 10 minutes for two hours.
    let mut log: String = (0..48)
        .map(|h| at(h * 3600, "192.0.2.10", 200, &k))
        .collect();
    log.extend((0..12).map(|i| at(48 * 3600 + i * 600, "192.0.2.10", 401, &k)));
    let f = findings(&kw, "", &log);
    let r = rules_of(&f, "revoked_key_in_use");
    assert_eq!(r.len(), 1, "{f:?}");
    assert_eq!(r[0]["severity"], "medium");
    assert_eq!(r[0]["key_id"], key_id(&k));
    // Rejected a few times, then working again within the hour: no.
    let mut blip: String = (0..48)
        .map(|h| at(h * 3600, "192.0.2.10", 200, &k))
        .collect();
    blip.extend((0..3).map(|i| at(48 * 3600 + i * 60, "192.0.2.10", 401, &k)));
    blip.push_str(&at(48 * 3600 + 600, "192.0.2.10", 200, &k));
    assert!(rules_of(&findings(&kw, "", &blip), "revoked_key_in_use").is_empty());
    // Never worked: not a revocation (other rules speak of guessing).
    let never: String = (0..12)
        .map(|i| at(i * 600, "192.0.2.10", 401, &k))
        .collect();
    assert!(rules_of(&findings(&kw, "", &never), "revoked_key_in_use").is_empty());
}

/// Lines at their times, in time order, as a server writes them.
fn in_order(mut lines: Vec<(i64, String)>) -> String {
    lines.sort_by_key(|(t, _)| *t);
    lines.into_iter().map(|(_, l)| l).collect()
}

/// A working key's ordinary traffic: 10 requests per 5 minutes for `hours`.
fn ordinary(hours: i64, key: &str) -> Vec<(i64, String)> {
    (0..hours * 12 * 10)
        .map(|i| {
            let t = i * 30;
            (t, at(t, "192.0.2.10", 200, key))
        })
        .collect()
}

#[test]
fn every_windowed_rule_reports_one_finding_per_episode() {
    let kw = Kw::new();
    let k = random_key("kws_", 28);
    // A key with two days of ordinary use and two bursts hours apart: two
    // spikes, each with its own start, the first resolved before the second.
    let burst = |start: i64| -> Vec<(i64, String)> {
        (0..120)
            .map(|i| {
                let t = start + i * 5;
                (t, at(t, "192.0.2.10", 200, &k))
            })
            .collect()
    };
    let mut lines = ordinary(48, &k);
    lines.extend(burst(34 * 3600));
    lines.extend(burst(40 * 3600));
    // A guesser coming back four hours after its first try: two brute-force
    // findings, not one that swallows the second.
    let guesses = keys(20);
    for (i, g) in guesses.iter().enumerate() {
        let t = 30 * 3600
            + if i < 10 {
                i as i64 * 2
            } else {
                4 * 3600 + i as i64 * 2
            };
        lines.push((t, at(t, "198.51.100.7", 401, g)));
    }
    let f = findings(&kw, "", &in_order(lines));
    let spikes = rules_of(&f, "key_rate_spike");
    assert_eq!(spikes.len(), 2, "{f:?}");
    let mut starts: Vec<&str> = spikes
        .iter()
        .map(|s| s["first_seen"].as_str().unwrap())
        .collect();
    starts.sort();
    assert_eq!(starts, ["2025-11-21T10:00:00Z", "2025-11-21T16:00:00Z"]);
    let first = spikes
        .iter()
        .find(|s| s["first_seen"] == starts[0])
        .unwrap();
    assert!(
        first["resolved_at"].as_str().unwrap() < starts[1],
        "{first}"
    );
    let brute = rules_of(&f, "key_bruteforce");
    assert_eq!(brute.len(), 2, "{f:?}");
    assert!(brute.iter().all(|b| b["count"] == 10), "{brute:?}");
    assert!(
        brute.iter().any(|b| b["resolved_at"].is_string()),
        "{brute:?}"
    );
}

#[test]
fn guessing_spread_over_many_clients_is_found_against_the_sites_own_baseline() {
    let kw = Kw::new();
    let owner = random_key("kws_", 28);
    let mut lines = ordinary(26, &owner);
    // An ordinary day has a few mistyped keys, one every couple of hours
    // (at odd hours: none in the attack's ten minutes).
    for i in 0..12 {
        let t = i * 7200 + 3600 + 77;
        lines.push((
            t,
            at(
                t,
                &format!("203.0.113.{}", i + 1),
                401,
                &random_key("kwx_", 28),
            ),
        ));
    }
    let quiet = findings(&kw, "", &in_order(lines.clone()));
    assert!(rules_of(&quiet, "key_bruteforce").is_empty(), "{quiet:?}");
    // Then 80 addresses guess 160 keys in ten minutes, two keys each.
    let guesses = keys(160);
    for (i, g) in guesses.iter().enumerate() {
        let t = 25 * 3600 + i as i64 * 3;
        let ip = format!("198.18.{}.{}", i % 80 / 250, i % 80 + 1);
        lines.push((t, at(t, &ip, 401, g)));
    }
    let f = findings(&kw, "", &in_order(lines));
    let b = rules_of(&f, "key_bruteforce");
    assert_eq!(b.len(), 1, "one finding for the whole attack: {f:?}");
    assert_eq!(b[0]["clients"], 80, "{}", b[0]);
    assert!(b[0]["count"].as_u64().unwrap() >= 150, "{}", b[0]);
    assert!(b[0]["message"].as_str().unwrap().contains("many addresses"));
}

#[test]
fn low_and_slow_guessing_and_rotating_ipv6_addresses_are_one_client() {
    let kw = Kw::new();
    // One client trying a new key every 30 s for three hours.
    let slow: Vec<(i64, String)> = keys(360)
        .iter()
        .enumerate()
        .map(|(i, g)| (i as i64 * 30, at(i as i64 * 30, "198.51.100.9", 401, g)))
        .collect();
    let f = findings(&kw, "", &in_order(slow));
    let b = rules_of(&f, "key_bruteforce");
    assert_eq!(b.len(), 1, "{f:?}");
    assert_eq!(b[0]["client"], "198.51.100.9");
    assert_eq!(b[0]["count"], 360);
    assert!(b[0]["message"].as_str().unwrap().contains("over hours"));
    // 1,000 guesses from one /64 with random host parts.
    let mut host = [0u8; 8];
    let v6: Vec<(i64, String)> = keys(1000)
        .iter()
        .enumerate()
        .map(|(i, g)| {
            getrandom::fill(&mut host).unwrap();
            let ip = format!(
                "2001:db8:7:9:{:x}:{:x}:{:x}:{:x}",
                u16::from_be_bytes([host[0], host[1]]),
                u16::from_be_bytes([host[2], host[3]]),
                u16::from_be_bytes([host[4], host[5]]),
                u16::from_be_bytes([host[6], host[7]])
            );
            let t = i as i64 * 2;
            (t, at(t, &ip, 401, g))
        })
        .collect();
    let f = findings(&kw, "", &in_order(v6));
    let b = rules_of(&f, "key_bruteforce");
    assert_eq!(b.len(), 1, "{f:?}");
    assert_eq!(b[0]["client"], "2001:db8:7:9::/64");
    assert_eq!(b[0]["count"], 1000);
    // Near miss: one client with three mistyped keys over three hours, and a
    // working key's occasional 401.
    let k = random_key("kws_", 28);
    let mut near = ordinary(3, &k);
    for (i, g) in keys(3).iter().enumerate() {
        let t = i as i64 * 3600 + 11;
        near.push((t, at(t, "192.0.2.10", 401, g)));
    }
    near.push((5000, at(5000, "192.0.2.10", 401, &k)));
    let f = findings(&kw, "", &in_order(near));
    assert!(f.iter().all(|v| v["rule"] == "key_in_url"), "{f:?}");
}

#[test]
fn a_guesser_that_got_in_is_critical_and_names_the_accepted_key() {
    let kw = Kw::new();
    let mut lines: Vec<(i64, String)> = keys(12)
        .iter()
        .enumerate()
        .map(|(i, g)| (i as i64, at(i as i64, "198.51.100.66", 401, g)))
        .collect();
    let hit = random_key("kws_", 28);
    lines.push((13, at(13, "198.51.100.66", 200, &hit)));
    lines.push((14, at(14, "198.51.100.66", 200, &hit)));
    let f = findings(&kw, "", &in_order(lines));
    let crit: Vec<_> = f.iter().filter(|v| v["severity"] == "critical").collect();
    assert_eq!(crit.len(), 1, "{f:?}");
    assert_eq!(crit[0]["rule"], "key_bruteforce");
    assert_eq!(crit[0]["key_id"], key_id(&hit));
    assert_eq!(crit[0]["client"], "198.51.100.66");
    // Near miss: a client whose own key works, with a few typos before.
    let own = random_key("kws_", 28);
    let mut near = ordinary(1, &own);
    for (i, g) in keys(3).iter().enumerate() {
        near.push((i as i64 + 1, at(i as i64 + 1, "192.0.2.10", 401, g)));
    }
    let f = findings(&kw, "", &in_order(near));
    assert!(f.iter().all(|v| v["severity"] != "critical"), "{f:?}");
}

#[test]
fn a_key_rejected_all_day_or_refused_after_working_is_reported_once_at_any_pace() {
    let kw = Kw::new();
    // A mistyped key still deployed: rejected every 5 minutes, all day.
    let k = random_key("kws_", 28);
    let day: Vec<(i64, String)> = (0..288)
        .map(|i| (i * 300, at(i * 300, "192.0.2.20", 401, &k)))
        .collect();
    let f = findings(&kw, "", &in_order(day));
    let r = rules_of(&f, "rejected_key_repeated");
    assert_eq!(r.len(), 1, "{f:?}");
    assert_eq!(r[0]["count"], 288);
    assert_eq!(r[0]["key_id"], key_id(&k));
    // Near miss: a key rejected ten times in a day, an hour or more apart.
    let few: Vec<(i64, String)> = (0..10)
        .map(|i| (i * 7200, at(i * 7200, "192.0.2.20", 401, &k)))
        .collect();
    assert!(findings(&kw, "", &in_order(few)).is_empty());
    // A key that worked daily for a week, then rejected ten times in 54 minutes.
    let w = random_key("kws_", 28);
    let mut week: Vec<(i64, String)> = (0..7 * 24)
        .map(|h| (h * 3600, at(h * 3600, "192.0.2.21", 200, &w)))
        .collect();
    for i in 0..10 {
        let t = 7 * 86_400 + i * 360;
        week.push((t, at(t, "192.0.2.21", 401, &w)));
    }
    let f = findings(&kw, "", &in_order(week));
    let r = rules_of(&f, "revoked_key_in_use");
    assert_eq!(r.len(), 1, "{f:?}");
    assert_eq!(r[0]["key_id"], key_id(&w));
}

#[test]
fn behaviour_rules_look_only_at_accepted_traffic() {
    let kw = Kw::new();
    // A key that never worked, sent by 30 user agents from 30 networks for
    // two days: the rejection rules speak of it, never sharing or fan-out.
    let k = random_key("kws_", 28);
    let lines: Vec<(i64, String)> = (0..2 * 24 * 30)
        .map(|i| {
            let t = i * 120;
            let n = i % 30;
            let l = at(t, &format!("198.51.{n}.7"), 401, &k)
                .replace("test-agent/1.0", &format!("agent-{n}/1.0"));
            (t, l)
        })
        .collect();
    let f = findings(&kw, "", &in_order(lines));
    for rule in [
        "key_shared",
        "key_fanout",
        "key_rate_spike",
        "key_new_network",
    ] {
        assert!(rules_of(&f, rule).is_empty(), "{rule}: {f:?}");
    }
    assert!(!rules_of(&f, "rejected_key_repeated").is_empty(), "{f:?}");
}

#[test]
fn scan_judges_the_windows_still_open_at_the_end_of_the_input() {
    let kw = Kw::new();
    let k = random_key("kws_", 28);
    // The log ends during the spike's second bucket: no later line arrives.
    let log = traffic(314, &k, |b| if b >= 312 { 60 } else { 10 });
    let f = findings(&kw, "", &log);
    let s = rules_of(&f, "key_rate_spike");
    assert_eq!(s.len(), 1, "{f:?}");
    assert_eq!(s[0]["count"], 120);
    assert!(s[0]["resolved_at"].is_null(), "still going: {}", s[0]);
}

#[test]
fn url_traps_are_decided_by_structure() {
    use base64::Engine as _;
    let kw = Kw::new();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    // An OAuth `state` that is a JWT, with its `code`.
    let jwt = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(format!(r#"{{"nonce":"{}","return":"/app"}}"#, rand_from(ALNUM, 16)).as_bytes()),
        b64(rand_from(ALNUM, 32).as_bytes())
    );
    // A pagination cursor under `token=`: base64 of JSON.
    let cursor = b64(format!(r#"{{"after":"{}","limit":50}}"#, rand_from(ALNUM, 20)).as_bytes());
    let akid = format!("AKIA{}", rand_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
    let quiet = url_log(&[
        (
            &format!("/oauth/callback?code={}&state={jwt}", rand_from(ALNUM, 40)),
            "-",
        ),
        (&format!("/v1/items?token={cursor}"), "-"),
        // An AWS NextToken: opaque, by design.
        (
            &format!("/v1/list?MaxResults=50&NextToken={}", rand_from(ALNUM, 44)),
            "-",
        ),
        // S3 SigV2, GCS V2 and CloudFront signed URLs.
        (
            &format!(
                "/bucket/a.pdf?AWSAccessKeyId={akid}&Expires=1800000000&Signature={}%3D",
                rand_from(ALNUM, 27)
            ),
            "-",
        ),
        (
            &format!(
                "/b/o.bin?GoogleAccessId=svc%40p.iam.gserviceaccount.com&Expires=1800000000&Signature={}",
                rand_from(ALNUM, 60)
            ),
            "-",
        ),
        (
            &format!(
                "/video.mp4?Expires=1800000000&Signature={}&Key-Pair-Id=K2JCJMDEHXQW5F",
                rand_from(ALNUM, 60)
            ),
            "-",
        ),
    ]);
    let f = findings(&kw, "", &quiet);
    assert!(f.is_empty(), "{f:?}");
    // The same places with a real secret still fire.
    let secret = rand_from(ALNUM, 32);
    let loud = url_log(&[
        (&format!("/v1/items?token={secret}"), "-"),
        (&format!("/bucket/a.pdf?AWSAccessKeyId={akid}"), "-"),
    ]);
    let f = findings(&kw, "", &loud);
    assert!(!rules_of(&f, "key_in_url").is_empty(), "{f:?}");
    assert!(!rules_of(&f, "secret_in_url").is_empty(), "{f:?}");
}

/// Scans `log` in `format` with `config`; returns the finding objects.
fn findings_in(kw: &Kw, config: &str, format: &str, log: &str) -> Vec<Value> {
    let cfg = kw.write("clients.toml", config);
    let path = kw.write("proxied.log", log);
    let (cfg, path) = (cfg.to_str().unwrap(), path.to_str().unwrap());
    let args = [
        "--config",
        cfg,
        "-f",
        format,
        "--key-field",
        "http_x_api_key",
        path,
    ];
    scan_json(kw, &args, "finding")
}

#[test]
fn behind_trusted_proxies_the_client_is_the_right_most_untrusted_forwarded_address() {
    let kw = Kw::new();
    let format = r#"$remote_addr [$time_local] "$request" $status "$http_x_forwarded_for" $realip_remote_addr "$http_x_api_key""#;
    // One guesser behind the load balancer 10.0.0.5, which appends what it
    // saw; the guesser forges a left part, and realip logs the balancer.
    let log: String = keys(12)
        .iter()
        .enumerate()
        .map(|(i, g)| {
            format!(
                "10.0.0.5 [27/Nov/2026:10:00:{i:02} +0000] \"GET /v1/items HTTP/1.1\" 401 \"6.6.6.6, 203.0.113.50\" 10.0.0.5 \"{g}\"\n"
            )
        })
        .collect();
    let f = findings_in(
        &kw,
        "[clients]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        format,
        &log,
    );
    let b = rules_of(&f, "key_bruteforce");
    assert_eq!(b.len(), 1, "{f:?}");
    assert_eq!(b[0]["client"], "203.0.113.50");
    // Without trusted proxies, the connection is the client.
    let f = findings_in(&kw, "", format, &log);
    assert_eq!(rules_of(&f, "key_bruteforce")[0]["client"], "10.0.0.5");
    // A bad network is refused with the setting named.
    let cfg = kw.write(
        "bad.toml",
        "[clients]\ntrusted_proxies = [\"10.0.0.0/40\"]\n",
    );
    let o = kw
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("clients.trusted_proxies"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_public_key_gets_no_per_network_findings_and_a_dormant_key_comes_back_quietly() {
    let kw = Kw::new();
    // A mobile app's key: used from a new /24 every half hour for ten days.
    let app = random_key("kws_", 28);
    let lines: Vec<(i64, String)> = (0..10 * 48)
        .map(|i| {
            let t = i * 1800;
            (
                t,
                at(t, &format!("100.{}.{}.9", 64 + i / 250, i % 250), 200, &app),
            )
        })
        .collect();
    let f = findings(&kw, "", &in_order(lines));
    assert!(rules_of(&f, "key_new_network").is_empty(), "{f:?}");
    // A key used for three days, idle for twenty, then back from its usual
    // host at its usual rate: nothing to say.
    // (30 requests per 5 minutes: enough to be a spike against zeros.)
    let k = random_key("kws_", 28);
    let steady = |from: i64, hours: i64| -> Vec<(i64, String)> {
        (0..hours * 360)
            .map(|i| (from + i * 10, at(from + i * 10, "192.0.2.10", 200, &k)))
            .collect()
    };
    let mut lines = steady(0, 72);
    lines.extend(steady(23 * 86_400, 24));
    let f = findings(&kw, "", &in_order(lines));
    assert!(rules_of(&f, "key_rate_spike").is_empty(), "{f:?}");
    assert!(rules_of(&f, "key_fanout").is_empty(), "{f:?}");
}

#[test]
fn every_attacking_client_of_a_flood_is_reported() {
    let kw = Kw::new();
    // 12,000 clients, each trying 7 new keys in a second, one after the
    // other: 12,000 brute-force episodes, all ended by the end of the log.
    let mut log = String::new();
    let mut n = 0u64;
    for c in 0..12_000u32 {
        for _ in 0..7 {
            let secs = (n / 20) as i64;
            n += 1;
            let ip = format!("10.{}.{}.{}", c / 65_536, c / 256 % 256, c % 256);
            log.push_str(&at(secs, &ip, 401, &format!("kwg_{n:028}")));
        }
    }
    let f = findings(&kw, "", &log);
    let b = rules_of(&f, "key_bruteforce");
    assert_eq!(b.len(), 12_000);
    assert!(
        b.iter().all(|v| v["count"] == 7),
        "every key of every client"
    );
    // All ended but those whose quiet time (a minute) reaches past the end.
    let end = 1_763_596_800 + ((n - 1) / 20) as i64;
    let minute_before = chrono::DateTime::from_timestamp(end - 61, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for v in &b {
        if v["resolved_at"].is_null() {
            assert!(
                v["last_seen"].as_str().unwrap() >= minute_before.as_str(),
                "{v}"
            );
        }
    }
    assert!(rules_of(&f, "auth_failure_burst").is_empty());
}
