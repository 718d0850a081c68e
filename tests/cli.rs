//! `keywatch scan` as a user runs it: the README's sample command, the JSON
//! schema, inputs (.gz, stdin), days and time zones, exit statuses.

mod common;

use std::io::Write;

use common::{Kw, TEST_FORMAT, line, random_key, stderr, stdout};
use serde_json::Value;

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn readme_sample_command_shows_findings_and_usage() {
    let kw = Kw::new();
    let o = kw.run(&[
        "--config",
        "samples/keywatch.toml",
        "scan",
        "samples/access.log",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("Findings (4)"), "{out}");
    assert!(
        out.contains("HIGH      revoked_key_in_use  legacy-widget"),
        "{out}"
    );
    assert!(
        out.contains("HIGH      key_bruteforce  client 198.51.100.23"),
        "{out}"
    );
    assert!(out.contains("presented 40 different keys"), "{out}");
    assert!(out.contains("CRITICAL  key_in_url  mobile-app"), "{out}");
    assert!(
        out.contains("evidence: GET /v1/items?api_key=[REDACTED]&limit=20"),
        "{out}"
    );
    assert!(out.contains("HIGH      key_in_url  partner-acme"), "{out}");
    let usage = &out[out.find("Usage by key").unwrap()..];
    for name in [
        "billing-service",
        "mobile-app",
        "partner-acme",
        "reporting-cron",
        "legacy-widget",
        "(no key)",
    ] {
        assert!(usage.contains(name), "{name} missing from {usage}");
    }
    assert!(usage.contains("(40 unknown keys, all rejected)"), "{usage}");
    assert!(
        out.contains("Totals: 2823 lines read, 2822 parsed, 1 skipped (log format: keywatch)"),
        "{out}"
    );
    assert!(
        out.contains("samples/access.log:1412: expected ` [` before $time_local"),
        "{out}"
    );
}

#[test]
fn json_output_follows_the_documented_schema() {
    let kw = Kw::new();
    let o = kw.run(&[
        "--config",
        "samples/keywatch.toml",
        "scan",
        "--output",
        "json",
        "samples/access.log",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let objs = json_lines(&stdout(&o));
    let types: Vec<&str> = objs.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "finding", "finding", "finding", "finding", "summary", "totals"
        ]
    );
    let f = &objs[0];
    for field in [
        "rule",
        "severity",
        "key_id",
        "key",
        "client",
        "first_seen",
        "last_seen",
        "count",
        "message",
    ] {
        assert!(!f[field].is_null(), "finding lacks {field}: {f}");
    }
    assert_eq!(f["rule"], "key_in_url");
    assert_eq!(f["place"], "query");
    assert_eq!(f["count"], 37);
    assert_eq!(
        f["first_seen"].as_str().unwrap().len(),
        "2026-11-27T05:52:36Z".len()
    );
    let s = &objs[4];
    assert_eq!(s["day"], "2026-11-27");
    assert_eq!(s["timezone"], "UTC");
    let keys = s["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 45);
    let billing = &keys[0];
    assert_eq!(billing["name"], "billing-service");
    assert_eq!(billing["requests"], 1100);
    for field in [
        "key_id",
        "key",
        "status",
        "rejected",
        "bytes",
        "clients",
        "first_seen",
        "last_seen",
    ] {
        assert!(!billing[field].is_null(), "key lacks {field}");
    }
    let status = &billing["status"];
    let sum: u64 = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"]
        .iter()
        .map(|c| status[c].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 1100);
    let legacy = keys.iter().find(|k| k["name"] == "legacy-widget").unwrap();
    assert_eq!(
        (legacy["rejected"].as_u64(), legacy["401"].as_u64()),
        (Some(96), Some(96))
    );
    assert_eq!(s["keyless"]["requests"], 441);
    let t = &objs[5];
    assert_eq!(
        (
            t["lines"].as_u64(),
            t["parsed"].as_u64(),
            t["skipped"].as_u64()
        ),
        (Some(2823), Some(2822), Some(1))
    );
    assert_eq!(t["skipped_lines"][0]["line"], 1412);
}

#[test]
fn format_is_detected_and_announced() {
    let kw = Kw::new();
    let o = kw.run(&[
        "--timezone",
        "UTC",
        "scan",
        "../shared/real-logs/lnav_logfile_shop_access_log.0",
    ]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("log format \"main\" detected (1000 of 1000 sample lines parse)"),
        "{}",
        stderr(&o)
    );
}

fn two_day_log(key: &str) -> String {
    [
        line(
            "192.0.2.1",
            "27/Nov/2026:23:30:00 +0000",
            "/v1/a",
            200,
            "-",
            key,
        ),
        line(
            "192.0.2.1",
            "28/Nov/2026:00:30:00 +0000",
            "/v1/a",
            200,
            "-",
            key,
        ),
        line(
            "192.0.2.2",
            "28/Nov/2026:09:30:00 +0000",
            "/v1/b",
            401,
            "-",
            key,
        ),
    ]
    .join("\n")
        + "\n"
}

#[test]
fn days_are_cut_in_the_chosen_time_zone() {
    let kw = Kw::new();
    let key = random_key("kwt_", 24);
    let log = kw.write("two.log", two_day_log(&key));
    let days = |tz: &str| -> Vec<(String, u64)> {
        let o = kw.run(&[
            "--timezone",
            tz,
            "scan",
            "-o",
            "json",
            "-f",
            TEST_FORMAT,
            log.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        json_lines(&stdout(&o))
            .into_iter()
            .filter(|v| v["type"] == "summary")
            .map(|v| {
                (
                    v["day"].as_str().unwrap().to_string(),
                    v["keys"][0]["requests"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        days("UTC"),
        [("2026-11-27".into(), 1), ("2026-11-28".into(), 2)]
    );
    // In Tokyo (UTC+9) all three fall on 28 November.
    assert_eq!(days("Asia/Tokyo"), [("2026-11-28".into(), 3)]);
    assert_eq!(
        days("-05:00"),
        [("2026-11-27".into(), 2), ("2026-11-28".into(), 1)]
    );
}

#[test]
fn gzip_files_and_standard_input_read_like_plain_files() {
    let kw = Kw::new();
    let key = random_key("kwt_", 24);
    let text = two_day_log(&key);
    let plain = kw.write("plain.log", &text);
    // Two gzip members in one file, as `cat a.gz b.gz` makes.
    let mut gz = Vec::new();
    let (a, b) = text.split_at(text.find('\n').unwrap() + 1);
    for part in [a, b] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(part.as_bytes()).unwrap();
        gz.extend(enc.finish().unwrap());
    }
    let gzipped = kw.write("rotated.log.1.gz", gz);
    let args = |f: &str| {
        vec![
            "--timezone",
            "UTC",
            "scan",
            "-o",
            "json",
            "-f",
            TEST_FORMAT,
            f,
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let run = |f: &str| {
        let a = args(f);
        let o = kw.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let from_plain = run(plain.to_str().unwrap());
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("\"totals\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&run(gzipped.to_str().unwrap())), strip(&from_plain));
    let a = args("-");
    let o = kw.run_stdin(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        text.as_bytes(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(strip(&stdout(&o)), strip(&from_plain));
    assert!(stdout(&o).contains("\"file\":\"<stdin>\""));
}

#[test]
fn detection_works_on_standard_input_too() {
    let kw = Kw::new();
    let data = std::fs::read("../shared/real-logs/lnav_logfile_shop_access_log.0").unwrap();
    let o = kw.run_stdin(&["--timezone", "UTC", "scan", "-o", "json", "-"], &data);
    assert!(o.status.success(), "{}", stderr(&o));
    let totals = json_lines(&stdout(&o)).pop().unwrap();
    assert_eq!(
        (totals["lines"].as_u64(), totals["parsed"].as_u64()),
        (Some(1000), Some(1000))
    );
    assert_eq!(totals["format"], "main");
}

#[test]
fn key_field_option_names_the_variable() {
    let kw = Kw::new();
    let key = random_key("", 32);
    let log = kw.write(
        "custom.log",
        format!("192.0.2.7 - - [01/Mar/2025:10:00:00 +0000] \"GET /v1/x HTTP/1.1\" 200 5 \"-\" \"ua\" \"{key}\"\n"),
    );
    let fmt = r#"log_format api '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_client_token"';"#;
    let o = kw.run(&[
        "--timezone",
        "UTC",
        "scan",
        "-o",
        "json",
        "-f",
        fmt,
        "--key-field",
        "$http_x_client_token",
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = json_lines(&stdout(&o))
        .into_iter()
        .find(|v| v["type"] == "summary")
        .unwrap();
    assert_eq!(summary["keys"].as_array().unwrap().len(), 1);
    assert_eq!(summary["keyless"]["requests"], 0);
    // Without the option the variable is not a key source.
    let o = kw.run(&[
        "--timezone",
        "UTC",
        "scan",
        "-o",
        "json",
        "-f",
        fmt,
        log.to_str().unwrap(),
    ]);
    let summary = json_lines(&stdout(&o))
        .into_iter()
        .find(|v| v["type"] == "summary")
        .unwrap();
    assert_eq!(summary["keyless"]["requests"], 1);
}

#[test]
fn exit_status_and_message_name_the_problem() {
    let kw = Kw::new();
    let o = kw.run(&["scan", "/nonexistent/access.log"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/access.log"),
        "{}",
        stderr(&o)
    );

    let o = kw.run(&[
        "scan",
        "-f",
        "log_format x escape=xml '$msec';",
        "samples/access.log",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--log-format: log format: unknown escape=\"xml\""),
        "{}",
        stderr(&o)
    );

    let o = kw.run(&["scan", "-f", "$remote_addr $status", "samples/access.log"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no time variable"), "{}", stderr(&o));

    let o = kw.run(&["--timezone", "Mars/Olympus", "scan", "samples/access.log"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--timezone: unknown time zone \"Mars/Olympus\""),
        "{}",
        stderr(&o)
    );

    let bad = kw.write(
        "bad.toml",
        "timezone = \"UTC\"\n\n[keys]\nprefixs = [\"kw_\"]\n",
    );
    let o = kw.run(&[
        "--config",
        bad.to_str().unwrap(),
        "scan",
        "samples/access.log",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml: line 4: unknown field `prefixs`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");

    let o = kw.run(&[
        "--config",
        "/nonexistent/keywatch.toml",
        "scan",
        "samples/access.log",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("config file /nonexistent/keywatch.toml: not found"),
        "{}",
        stderr(&o)
    );

    let o = kw.run(&["scan", "samples"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("samples: Is a directory"),
        "{}",
        stderr(&o)
    );

    let o = kw.run(&["scan"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn unknown_formats_are_said_and_counted() {
    let kw = Kw::new();
    let o = kw.run_stdin(
        &["--timezone", "UTC", "scan", "-o", "json", "-"],
        b"garbage\nmore garbage\n",
    );
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("no preset matches the first 2 lines of <stdin>"),
        "{}",
        stderr(&o)
    );
    let totals = json_lines(&stdout(&o)).pop().unwrap();
    assert_eq!(
        (totals["lines"].as_u64(), totals["skipped"].as_u64()),
        (Some(2), Some(2))
    );
}

/// `scan -o OUT -j THREADS` of `log`, which must succeed: its output.
fn scan_on_threads(kw: &Kw, log: &std::path::Path, threads: &str, out: &str) -> String {
    let o = kw.run(&[
        "--timezone",
        "UTC",
        "scan",
        "-o",
        out,
        "-j",
        threads,
        "-f",
        TEST_FORMAT,
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

#[test]
fn large_files_scan_the_same_on_one_thread_and_many() {
    let kw = Kw::new();
    let keys: Vec<String> = (0..50).map(|_| random_key("kwt_", 28)).collect();
    let mut text = String::with_capacity(12 << 20);
    let mut i = 0u64;
    while text.len() < 10 << 20 {
        let k = &keys[(i * i % 47) as usize];
        let secs = i / 40;
        let t = format!(
            "{:02}/Nov/2026:{:02}:{:02}:{:02} +0000",
            20 + secs / 86_400 % 5,
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60
        );
        let target = if i.is_multiple_of(997) {
            format!("/v1/x?api_key={k}")
        } else {
            format!("/v1/items/{}", i % 1000)
        };
        let status = [200, 200, 200, 401, 404, 500, 304][(i % 7) as usize];
        text.push_str(&line(
            &format!("198.51.100.{}", i % 200),
            &t,
            &target,
            status,
            "-",
            if i.is_multiple_of(9) { "-" } else { k },
        ));
        text.push('\n');
        if i % 50_000 == 7 {
            text.push_str("garbage line that does not parse\n");
        }
        i += 1;
    }
    let log = kw.write("big.log", &text);
    let one = scan_on_threads(&kw, &log, "1", "json");
    let four = scan_on_threads(&kw, &log, "4", "json");
    assert_eq!(one, four);
    let totals = json_lines(&one).pop().unwrap();
    assert!(totals["skipped"].as_u64().unwrap() >= 1);
    let first_skip = totals["skipped_lines"][0]["line"].as_u64().unwrap();
    assert_eq!(
        first_skip, 9,
        "line numbers count from the start of the file"
    );
}

/// Past 50,000 keys a day the lightest are folded into one row; which ones
/// depends on the order keys come in, so the folding must see the file in
/// log order on any number of threads (a flood of 70,000 guessed keys
/// around three real ones, in a file cut into two pieces).
#[test]
fn a_flood_past_the_key_cap_scans_the_same_on_one_thread_and_two() {
    let kw = Kw::new();
    let real: Vec<String> = (0..3).map(|_| random_key("kwt_", 28)).collect();
    let mut text = String::with_capacity(16 << 20);
    for i in 0..70_000u64 {
        let secs = i * 86_000 / 70_000;
        let t = format!(
            "27/Nov/2026:{:02}:{:02}:{:02} +0000",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        let guessed = random_key("kwt_", 28);
        let client = format!("203.0.113.{}", i % 250);
        text.push_str(&line(&client, &t, "/v1/items", 401, "-", &guessed));
        text.push('\n');
        // The real keys, now and then (and a guessed key tried twice).
        if i % 7 == 0 {
            let k = &real[(i % 3) as usize];
            text.push_str(&line("198.51.100.7", &t, "/v1/orders/42", 200, "-", k));
            text.push('\n');
        }
        if i % 11 == 0 {
            text.push_str(&line(&client, &t, "/v1/items", 401, "-", &guessed));
            text.push('\n');
        }
    }
    assert!(text.len() > 9 << 20, "more than one piece of 8 MiB");
    let log = kw.write("flood.log", &text);
    for out in ["json", "text"] {
        let (one, two) = (
            scan_on_threads(&kw, &log, "1", out),
            scan_on_threads(&kw, &log, "2", out),
        );
        // The first line that differs, not megabytes of output.
        let differ = one.lines().zip(two.lines()).position(|(a, b)| a != b);
        assert_eq!(differ, None, "-o {out}: line {differ:?} differs");
        assert_eq!(one.len(), two.len(), "-o {out}");
        if out == "json" {
            let summary = json_lines(&one)
                .into_iter()
                .find(|v| v["type"] == "summary")
                .expect("a summary line");
            assert!(
                summary["other_keys"]["keys"].as_u64().unwrap_or(0) > 0,
                "the flood went past the cap: {}",
                summary["other_keys"]
            );
        }
    }
}

#[test]
fn over_long_lines_are_counted_not_buffered() {
    let kw = Kw::new();
    let key = random_key("kwt_", 24);
    let long = format!("{}\n", "x".repeat(300_000));
    let text = format!(
        "{}\n{long}{}\n",
        line(
            "192.0.2.1",
            "01/Mar/2025:10:00:00 +0000",
            "/a",
            200,
            "-",
            &key
        ),
        line(
            "192.0.2.1",
            "01/Mar/2025:10:00:01 +0000",
            "/b",
            200,
            "-",
            &key
        )
    );
    let log = kw.write("long.log", text);
    let o = kw.run(&[
        "--timezone",
        "UTC",
        "scan",
        "-o",
        "json",
        "--max-line-length",
        "65536",
        "-f",
        TEST_FORMAT,
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let totals = json_lines(&stdout(&o)).pop().unwrap();
    assert_eq!(
        (
            totals["lines"].as_u64(),
            totals["parsed"].as_u64(),
            totals["skipped"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(totals["skipped_lines"][0]["line"], 2);
    assert!(
        totals["skipped_lines"][0]["error"]
            .as_str()
            .unwrap()
            .contains("300000 bytes")
    );
}

#[test]
fn readme_shows_the_sample_report_as_it_is() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```text\n")
        .expect("a text block in the README")
        + 8;
    let end = start + readme[start..].find("```").unwrap();
    let kw = Kw::new();
    let o = kw.run(&[
        "--config",
        "samples/keywatch.toml",
        "scan",
        "samples/access.log",
    ]);
    assert!(o.status.success());
    assert_eq!(
        &readme[start..end],
        stdout(&o),
        "the README's sample report is out of date"
    );
}

#[test]
fn check_validates_the_configuration_without_creating_state() {
    let kw = Kw::new();
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/keywatch.toml");
    let state = kw.path("state-for-check");
    let state_arg = state.to_str().unwrap();
    let o = kw.run(&["--config", samples, "--state", state_arg, "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("keywatch.toml: OK"), "{}", stdout(&o));
    assert!(stdout(&o).contains("key names: 5"), "{}", stdout(&o));
    assert!(!state.exists(), "check created the state directory");

    // A misspelt rule: file, line and the setting's valid names.
    let bad = kw.write(
        "bad.toml",
        "timezone = \"UTC\"\n\n[rules.key_bruteforse]\nenabled = false\n",
    );
    let o = kw.run(&["--config", bad.to_str().unwrap(), "check"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("bad.toml")
            && e.contains("line 3")
            && e.contains("key_bruteforse")
            && e.contains("`key_bruteforce`"),
        "{e}"
    );

    // A revoked-ids file that is missing, then one with a bad line.
    let missing = kw.write(
        "missing.toml",
        "[rules.revoked_key_in_use]\nids_file = \"/nonexistent/keywatch-ids\"\n",
    );
    let o = kw.run(&["--config", missing.to_str().unwrap(), "check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("rules.revoked_key_in_use.ids_file"),
        "{}",
        stderr(&o)
    );
    let ids = kw.write("ids.txt", "0123456789abcdef\nnot-an-id\n");
    let bad_ids = kw.write(
        "bad-ids.toml",
        format!(
            "[rules.revoked_key_in_use]\nids_file = {:?}\n",
            ids.to_str().unwrap()
        ),
    );
    let o = kw.run(&["--config", bad_ids.to_str().unwrap(), "check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("ids.txt line 2"), "{}", stderr(&o));

    // A log format that does not compile names the setting.
    let fmt = kw.write(
        "fmt.toml",
        "[format]\nlog_format = \"log_format main '$remote_addr [$time_local]\"\n",
    );
    let o = kw.run(&["--config", fmt.to_str().unwrap(), "check"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("format.log_format") && e.contains("unterminated"),
        "{e}"
    );
}

#[test]
fn silences_are_stored_listed_and_removed() {
    let kw = Kw::new();
    let add = |args: &[&str]| {
        let mut a = vec!["silence", "add"];
        a.extend_from_slice(args);
        kw.run(&a)
    };
    let o = add(&[
        "--rule",
        "key_in_url",
        "--key",
        "0123456789ABCDEF",
        "--for",
        "2h",
        "--comment",
        "rotating\r\nnow",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("silence 1: key_in_url for key 0123456789abcdef until "));
    let o = add(&[
        "--rule",
        "key_bruteforce",
        "--client",
        "203.0.113.9",
        "--for",
        "30m",
        "--comment",
        "pentest",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Bad rule, bad key id, bad client, both targets: usage errors naming the option.
    for (args, needle) in [
        (
            vec!["--rule", "nope", "--client", "192.0.2.1"],
            "--rule \"nope\": not a rule",
        ),
        (
            vec!["--rule", "key_in_url", "--key", "kwt_live_abc"],
            "--key \"kwt_live_abc\": not a key id",
        ),
        (
            vec!["--rule", "key_in_url", "--client", "example.com"],
            "--client \"example.com\": not an IP",
        ),
    ] {
        let mut a = args.clone();
        a.extend_from_slice(&["--for", "1h", "--comment", "x"]);
        let o = add(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
    }
    let o = add(&[
        "--rule",
        "key_in_url",
        "--key",
        "0123456789abcdef",
        "--client",
        "192.0.2.1",
        "--for",
        "1h",
        "--comment",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(2));

    let o = kw.run(&["silence", "list", "-o", "json"]);
    let list: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["key_id"], "0123456789abcdef");
    assert_eq!(list[1]["client"], "203.0.113.9");
    // A comment is one line in the text listing, whatever it held.
    let text = stdout(&kw.run(&["silence", "list"]));
    assert_eq!(text.lines().count(), 2, "{text}");

    assert_eq!(kw.run(&["silence", "remove", "1"]).status.code(), Some(0));
    let o = kw.run(&["silence", "remove", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such silence"));
    assert_eq!(stdout(&kw.run(&["silence", "list"])).lines().count(), 1);
}
