//! The daily summary: its numbers against an independent count of the same
//! log, the same day followed live and scanned, and the HTML report opened
//! in a real headless Chromium with hostile log content.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Daemon, Kw, TEST_FORMAT, TEST_SECRET, random_key, stderr, stdout, wait_until};
use serde_json::Value;

/// A deterministic pseudo-random sequence (xorshift), so the log is the
/// same on every run but varied.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Default, Debug)]
struct Count {
    requests: u64,
    classes: BTreeMap<String, u64>,
    s401: u64,
    s403: u64,
    s429: u64,
    bytes: u64,
    hours: [u64; 24],
    endpoints: BTreeMap<String, u64>,
    clients: BTreeMap<String, u64>,
}

/// Writes a day of traffic for `keys` and counts it the simple way.
fn day_of_traffic(keys: &[String]) -> (String, BTreeMap<String, Count>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut log = String::new();
    let mut counts: BTreeMap<String, Count> = BTreeMap::new();
    let paths = [
        "/v1/items",
        "/v1/items/{n}",
        "/v1/orders/{n}/lines",
        "/health",
    ];
    for i in 0..4_000u64 {
        let key = &keys[rng.next(keys.len() as u64) as usize];
        let hour = rng.next(24);
        let (min, sec) = (rng.next(60), rng.next(60));
        let status = [200, 200, 200, 201, 304, 401, 403, 404, 429, 500, 503][rng.next(11) as usize];
        let bytes = rng.next(5_000);
        let client = format!("198.51.100.{}", rng.next(12) + 1);
        let template = paths[rng.next(paths.len() as u64) as usize];
        let path = template.replace("{n}", &(1_000 + i).to_string());
        let endpoint = template.replace("{n}", "{id}");
        log.push_str(&format!(
            "{client} - - [27/Nov/2026:{hour:02}:{min:02}:{sec:02} +0000] \"GET {path}?page={} HTTP/1.1\" {status} {bytes} \"-\" \"agent\" 0.010 \"{key}\"\n",
            rng.next(5)
        ));
        let c = counts.entry(key.clone()).or_default();
        c.requests += 1;
        *c.classes.entry(format!("{}xx", status / 100)).or_default() += 1;
        match status {
            401 => c.s401 += 1,
            403 => c.s403 += 1,
            429 => c.s429 += 1,
            _ => {}
        }
        c.bytes += bytes;
        c.hours[hour as usize] += 1;
        if status != 401 && status != 403 {
            // Endpoints count what the API did not refuse.
            *c.endpoints.entry(endpoint).or_default() += 1;
        }
        *c.clients.entry(client).or_default() += 1;
    }
    (log, counts)
}

fn summaries(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "summary")
        .collect()
}

fn check_against(
    summary: &Value,
    counts: &BTreeMap<String, Count>,
    key_ids: &BTreeMap<String, String>,
) {
    let keys = summary["keys"].as_array().unwrap();
    assert_eq!(keys.len(), counts.len());
    let total: u64 = counts.values().map(|c| c.requests).sum();
    assert_eq!(summary["totals"]["requests"], total);
    assert_eq!(summary["totals"]["keyed"], total);
    for (key, c) in counts {
        let id = &key_ids[key];
        let k = keys
            .iter()
            .find(|k| k["key_id"] == *id)
            .expect("every key summarised");
        assert_eq!(k["requests"], c.requests, "{key}");
        for (class, n) in &c.classes {
            assert_eq!(k["status"][class], *n, "{key} {class}");
        }
        assert_eq!(k["401"], c.s401);
        assert_eq!(k["403"], c.s403);
        assert_eq!(k["429"], c.s429);
        assert_eq!(k["bytes"], c.bytes);
        let hours: Vec<u64> = k["hours"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_u64().unwrap())
            .collect();
        assert_eq!(hours, c.hours, "{key}: requests per hour");
        assert_eq!(k["clients"], c.clients.len() as u64);
        // Four endpoints and twelve clients: within the sketches' capacity, so exact.
        assert_eq!(k["top_endpoints_exact"], true);
        for e in k["top_endpoints"].as_array().unwrap() {
            assert_eq!(
                e["requests"],
                c.endpoints[e["value"].as_str().unwrap()],
                "{e}"
            );
        }
        assert_eq!(
            k["top_endpoints"].as_array().unwrap().len(),
            c.endpoints.len().min(5)
        );
        assert_eq!(k["top_clients_exact"], true);
        let shown: u64 = k["top_endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["requests"].as_u64().unwrap())
            .sum();
        let accepted: u64 = c.endpoints.values().sum();
        assert_eq!(k["top_endpoints_other"], accepted - shown, "the other row");
        let top_client = c.clients.values().max().unwrap();
        assert_eq!(k["top_clients"][0]["requests"], *top_client);
        let share = k["share"].as_f64().unwrap();
        assert!(
            (share - c.requests as f64 / total as f64).abs() <= 0.000_050_001,
            "share to four places"
        );
    }
}

fn key_ids(kw: &Kw, keys: &[String]) -> BTreeMap<String, String> {
    // The ids keywatch gives, via a one-line scan per key.
    keys.iter()
        .map(|k| {
            let line = format!("192.0.2.1 - - [27/Nov/2026:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"a\" 0.001 \"{k}\"\n");
            let o = kw
                .cmd()
                .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
                .args(["--timezone", "UTC", "scan", "-o", "json", "-f", TEST_FORMAT, "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().unwrap().write_all(line.as_bytes())?;
                    c.wait_with_output()
                })
                .unwrap();
            let s = &summaries(&stdout(&o))[0];
            (k.clone(), s["keys"][0]["key_id"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn the_summary_equals_an_independent_count_scanned_and_followed_live() {
    let kw = Kw::new();
    let keys: Vec<String> = (0..5).map(|_| random_key("kws_", 28)).collect();
    let (log, counts) = day_of_traffic(&keys);
    let path = kw.write("access.log", &log);
    let ids = key_ids(&kw, &keys);

    let o = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args([
            "--timezone",
            "UTC",
            "scan",
            "-o",
            "json",
            "-j",
            "2",
            "-f",
            TEST_FORMAT,
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let scanned = summaries(&stdout(&o));
    assert_eq!(scanned.len(), 1);
    check_against(&scanned[0], &counts, &ids);

    // The same day followed live, then summarised from the store.
    let stored = || {
        let o = kw
            .cmd()
            .args([
                "--timezone",
                "UTC",
                "summary",
                "--day",
                "2026-11-27",
                "-o",
                "json",
            ])
            .output()
            .unwrap();
        o.status
            .success()
            .then(|| summaries(&stdout(&o)).into_iter().next())
            .flatten()
    };
    let d = Daemon::start(&kw, path.to_str().unwrap(), &["--from-beginning"]);
    wait_until(
        "the daemon to count the day",
        Duration::from_secs(30),
        || stored().is_some_and(|s| s["totals"]["requests"] == 4_000),
    );
    d.stop();
    let live = &stored().expect("the stored summary");
    check_against(live, &counts, &ids);
    let fields = [
        "requests",
        "status",
        "401",
        "403",
        "429",
        "bytes",
        "hours",
        "clients",
        "top_endpoints",
        "top_clients",
        "share",
        "first_seen",
        "last_seen",
    ];
    for (a, b) in live["keys"]
        .as_array()
        .unwrap()
        .iter()
        .zip(scanned[0]["keys"].as_array().unwrap())
    {
        for f in fields {
            assert_eq!(a[f], b[f], "live and scanned differ in {f}");
        }
    }
}

fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.to_owned();
        }
    }
    panic!(
        "this test needs a headless Chromium (Debian package chromium; scripts/test installs it)"
    );
}

/// Runs headless Chromium on `page` with `what` (`--dump-dom` or `--screenshot=…`).
fn headless(kw: &Kw, page: &std::path::Path, what: &str) -> std::process::Output {
    let profile = kw.path("chromium-profile");
    std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,1800",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
}

#[test]
fn the_html_report_of_a_hostile_log_is_inert_and_renders_in_chromium() {
    let kw = Kw::new();
    let key = random_key("kwh_", 30);
    let named = random_key("kwn_", 30);
    kw.write(
        "config.toml",
        format!(
            "[keys]\nprefixes = [\"kwh_\", \"kwn_\"]\n[[keys.names]]\nname = \"<script>document.title='pwned'</script>\"\nprefix = \"{}\"\n",
            &named[..12]
        ),
    );
    let hostile_paths = [
        "/v1/<svg/onload=alert(1)>".to_owned(),
        "/v1/</style><script>document.title='pwned'</script>".to_owned(),
        "/v1/<img src=x onerror=\"document.title='pwned'\">".to_owned(),
        format!("/v1/{}", "A".repeat(3_000)),
        "/v1/\\xFF\\xFE\\xC3\\x28/x".to_owned(),
        "/v1/\" style=\"background:url(x)".to_owned(),
        format!("/v1/items?api_key={key}"),
    ];
    let mut log = Vec::new();
    for (i, p) in hostile_paths.iter().enumerate() {
        for k in [&key, &named] {
            log.extend_from_slice(
                format!("203.0.113.{} - - [27/Nov/2026:1{}:00:00 +0000] \"GET {p} HTTP/1.1\" 200 10 \"-\" \"<script>alert(2)</script>\" 0.010 \"{k}\"\n", i + 1, i).as_bytes(),
            );
        }
    }
    // Raw invalid UTF-8 in a user agent.
    log.extend_from_slice(b"203.0.113.9 - - [27/Nov/2026:12:00:00 +0000] \"GET /v1/items HTTP/1.1\" 200 1 \"-\" \"\xff\xfe<b>\" 0.010 \"-\"\n");
    let path = kw.write("access.log", &log);
    let o = kw
        .cmd()
        .args(["--timezone", "UTC", "scan", "-o", "html", "-f", TEST_FORMAT])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let html = stdout(&o);
    let page = kw.write("report.html", &html);
    let lower = html.to_lowercase();
    assert!(!lower.contains("<script"), "no script element in the page");
    assert!(
        !lower.contains("<svg/onload") && !lower.contains("<img"),
        "no markup from the log"
    );
    assert!(html.contains("Content-Security-Policy") && html.contains("default-src 'none'"));
    for k in [&key, &named] {
        for w in k.as_bytes().windows(12) {
            assert!(
                !html.contains(std::str::from_utf8(w).unwrap()),
                "no piece of a key in the report"
            );
        }
    }

    let dom = headless(&kw, &page, "--dump-dom");
    assert!(dom.status.success(), "chromium: {}", stderr(&dom));
    let dom = stdout(&dom);
    assert!(
        dom.contains("<title>keywatch · 2026-11-27</title>"),
        "no script ran: {}",
        &dom[..dom.len().min(400)]
    );
    assert!(!dom.contains("pwned</title>"));
    assert!(
        !dom.to_lowercase().contains("<script"),
        "the DOM holds no script"
    );
    assert!(
        dom.contains("id=\"hourly\"") && dom.contains("id=\"status\""),
        "both charts are in the page"
    );
    assert!(dom.matches("<rect").count() >= 10, "the charts have bars");

    let shot = kw.path("report.png");
    let o = headless(&kw, &page, &format!("--screenshot={}", shot.display()));
    assert!(o.status.success(), "chromium: {}", stderr(&o));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture: {} bytes",
        png.len()
    );
    let distinct: BTreeSet<&[u8]> = png.chunks(64).collect();
    assert!(distinct.len() > 50, "the screenshot is not blank");
}

#[test]
fn summaries_are_sent_on_demand_and_once_a_day_on_schedule_across_restarts() {
    use common::receivers::{HttpReceiver, SmtpServer};
    let kw = Kw::new();
    let smtp = SmtpServer::start();
    let hook = HttpReceiver::start(&[]);
    let secret = {
        use base64::Engine as _;
        let raw = random_key("", 32);
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    };
    kw.write(
        "config.toml",
        format!(
            "timezone = \"UTC\"\n[summary]\nsend_at = \"00:00\"\n\
             [channels.mail]\ntype = \"email\"\nalerts = false\nsummary = true\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"keywatch@example.com\"\nto = [\"api-owners@example.com\"]\n\
             [channels.hook]\ntype = \"webhook\"\nalerts = false\nsummary = true\nurl = \"{}\"\nsecret = \"env:KW_HOOK_SECRET\"\n",
            smtp.port(),
            hook.url()
        ),
    );
    // Yesterday's traffic, so the scheduled summary has something in it.
    let now = chrono::Utc::now();
    let yesterday = (now - chrono::Duration::days(1)).date_naive();
    let stamp = yesterday.format("%d/%b/%Y:12:00:00 +0000").to_string();
    let key = random_key("kws_", 28);
    let log = kw.write(
        "access.log",
        (0..20)
            .map(|i| format!("198.51.100.{i} - - [{stamp}] \"GET /v1/items/{i} HTTP/1.1\" 200 10 \"-\" \"a\" 0.010 \"{key}\"\n"))
            .collect::<String>(),
    );
    let env = [("KW_HOOK_SECRET", secret.as_str())];
    let daemon_log = || std::fs::read_to_string(kw.path("daemon.err")).unwrap_or_default();

    let d = Daemon::start_with(&kw, log.to_str().unwrap(), &["--from-beginning"], &env);
    wait_until(
        "the scheduled summary to arrive",
        Duration::from_secs(30),
        || smtp.mails().len() == 1 && hook.requests().len() == 1,
    );
    d.stop();
    let mail = &smtp.mails()[0];
    assert_eq!(mail.to, ["api-owners@example.com"]);
    let subject = mail.header("subject").unwrap();
    assert!(
        subject.starts_with(&format!("keywatch daily summary {yesterday}: 20 requests")),
        "{subject}"
    );
    let html = mail.part("text/html").expect("the HTML report");
    assert!(html.contains("Content-Security-Policy") && html.contains("id=\"hourly\""));
    let text = mail.part("text/plain").expect("a text alternative");
    assert!(text.contains("| key | requests |"), "{text}");
    let body: Value = serde_json::from_slice(&hook.requests()[0].body).unwrap();
    assert_eq!(body["schema"], "keywatch.summary.v1");
    assert_eq!(body["summary"]["totals"]["requests"], 20);
    assert_eq!(
        hook.requests()[0].header("webhook-id").unwrap(),
        format!("kws_{yesterday}")
    );
    assert!(
        hook.requests()[0]
            .header("webhook-signature")
            .unwrap()
            .starts_with("v1,")
    );
    for w in key.as_bytes().windows(12) {
        let piece = std::str::from_utf8(w).unwrap();
        assert!(
            !mail.text().contains(piece)
                && !String::from_utf8_lossy(&hook.requests()[0].body).contains(piece)
        );
    }

    // A restart after the scheduled time: the summary is not sent again.
    let d = Daemon::start_with(&kw, log.to_str().unwrap(), &[], &env);
    wait_until(
        "the restarted daemon to check the schedule",
        Duration::from_secs(30),
        || daemon_log().contains("yesterday's summary was already sent"),
    );
    d.stop();
    assert_eq!(smtp.mails().len(), 1, "once per day");
    assert_eq!(hook.requests().len(), 1, "once per day");

    // On demand: sent again, with its own id.
    let o = kw
        .cmd()
        .env("KW_HOOK_SECRET", &secret)
        .args([
            "summary",
            "--day",
            &yesterday.to_string(),
            "--send",
            "-o",
            "markdown",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with(&format!("# API keys on {yesterday}")));
    assert_eq!(smtp.mails().len(), 2);
    assert_eq!(hook.requests().len(), 2);
    assert_ne!(
        hook.requests()[1].header("webhook-id"),
        hook.requests()[0].header("webhook-id")
    );
}

/// Bold headings on a terminal (a pseudo-terminal made by `script`), none
/// with `NO_COLOR` or when the output is not a terminal.
#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_script,
        "this test needs `script` (util-linux) to make a terminal"
    );
    let kw = Kw::new();
    let bin = env!("CARGO_BIN_EXE_keywatch");
    let run = |no_color: Option<&str>| {
        let mut c = std::process::Command::new("script");
        c.args(["-qec"])
            .arg(format!(
                "{bin} --config samples/keywatch.toml --state {} scan samples/access.log",
                kw.state().display()
            ))
            .arg("/dev/null")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert!(
        run(None).contains("\x1b[1mKey hygiene\x1b[0m"),
        "bold on a terminal"
    );
    assert!(
        !run(Some("1")).contains('\x1b'),
        "NO_COLOR turns colour off"
    );
    let piped = kw
        .cmd()
        .args([
            "--config",
            "samples/keywatch.toml",
            "scan",
            "samples/access.log",
        ])
        .output()
        .unwrap();
    assert!(!stdout(&piped).contains('\x1b'), "no colour into a pipe");
}
