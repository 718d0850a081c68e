//! Detection rules, each with a scenario that must fire (once, with the right
//! key, client and count) and near misses that must not.

mod common;

use common::{Kw, TEST_FORMAT, TEST_SECRET, line, random_key, stderr, stdout};
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
    let o = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--timezone",
            "UTC",
            "scan",
            "-o",
            "json",
            "-f",
            TEST_FORMAT,
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "finding")
        .collect()
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
        stderr(&o).contains("bad.txt line 2: \"not-a-key-id\" is not a key id"),
        "{}",
        stderr(&o)
    );
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
