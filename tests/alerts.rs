//! Alert delivery end to end: the real binary against real receivers on
//! 127.0.0.1 (an HTTP server, an in-process SMTP server, and Python's
//! aiosmtpd as a standalone one): retries, refusals, signatures, restarts,
//! hostile log content, silences, `alert-test` and `alerts`.

mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use base64::Engine as _;
use common::receivers::{HttpReceiver, Request, SmtpServer, free_port};
use common::{Daemon, Kw, TEST_FORMAT, TEST_SECRET, line, random_key, stderr, stdout, wait_until};
use hmac::{KeyInit, Mac};
use serde_json::Value;

const T: &str = "28/Nov/2026:10:00:00 +0000";

/// A configuration with the test format, fast retries and `channels`.
fn configure(kw: &Kw, channels: &str) {
    kw.write(
        "config.toml",
        format!(
            "timezone = \"UTC\"\n[format]\nlog_format = '{TEST_FORMAT}'\n[alerts]\nretry_initial = \"100ms\"\nretry_max = \"400ms\"\n{channels}"
        ),
    );
}

/// A signing secret made now, as receivers issue them.
fn hook_secret() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).unwrap();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn run(kw: &Kw, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = kw.cmd();
    c.env("KEYWATCH_KEY_SECRET", TEST_SECRET);
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).output().unwrap()
}

/// Checks a Standard Webhooks signature independently of keywatch's code.
fn signed(req: &Request, secret: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let id = req.header("webhook-id").unwrap();
    let ts = req.header("webhook-timestamp").unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&req.body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    req.header("webhook-signature")
        .unwrap()
        .split(' ')
        .any(|s| s == want)
}

fn alerts_json(kw: &Kw) -> Value {
    let o = run(kw, &[], &["alerts", "--output", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `alerts --output json` once the store exists.
fn try_alerts_json(kw: &Kw) -> Option<Value> {
    let o = run(kw, &[], &["alerts", "--output", "json"]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).unwrap())
}

fn url_line(key: &str) -> String {
    line(
        "203.0.113.9",
        T,
        &format!("/v1/items?api_key={key}&page=2"),
        200,
        "-",
        "-",
    )
}

fn webhook(url: &str) -> String {
    format!(
        "[channels.ops]\ntype = \"webhook\"\nurl = \"{url}\"\nsecret = \"env:KW_HOOK_SECRET\"\ngithub_signature = true\n"
    )
}

#[test]
fn webhook_500_500_200_is_one_delivery_with_one_id_and_valid_signatures() {
    let kw = Kw::new();
    let rx = HttpReceiver::start(&[500, 500, 200]);
    configure(&kw, &webhook(&rx.url()));
    let secret = hook_secret();
    let key = random_key("kw_live_", 32);
    let log = kw.write("access.log", url_line(&key) + "\n");
    let env = [("KW_HOOK_SECRET", secret.as_str())];
    let o = run(&kw, &env, &["scan", "--alert", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3, "two failures, then the delivery");
    let ids: BTreeSet<&str> = reqs
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same id");
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.body, reqs[0].body,
            "the body is the same on every attempt"
        );
        assert!(signed(r, &secret), "signature must verify: {:?}", r.headers);
        let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 300);
        assert!(
            r.header("x-hub-signature-256")
                .unwrap()
                .starts_with("sha256=")
        );
    }
    let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body["schema"], "keywatch.alert.v1");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["id"], *ids.iter().next().unwrap());
    assert_eq!(body["alerts"][0]["labels"]["rule"], "key_in_url");
    let text = String::from_utf8_lossy(&reqs[0].body);
    assert!(
        !text.contains(&key[8..20]),
        "no piece of the key in the notice"
    );

    let doc = alerts_json(&kw);
    let d = &doc["deliveries"][0];
    assert_eq!(d["state"], "delivered");
    assert_eq!(d["attempts"], 3);
    assert_eq!(doc["alerts"][0]["status"], "firing");

    // The same findings again: nothing new to tell.
    let o = run(&kw, &env, &["scan", "--alert", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rx.requests().len(), 3);
}

#[test]
fn a_400_is_not_retried_and_a_410_disables_the_channel_until_it_changes() {
    let kw = Kw::new();
    let rx = HttpReceiver::start(&[400]);
    configure(&kw, &webhook(&rx.url()));
    let secret = hook_secret();
    let env = [("KW_HOOK_SECRET", secret.as_str())];
    let scan = |name: &str| {
        let log = kw.write(name, url_line(&random_key("kw_live_", 32)) + "\n");
        let o = run(&kw, &env, &["scan", "--alert", log.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    let o = scan("a.log");
    assert_eq!(rx.requests().len(), 1, "a 400 is final");
    assert!(
        stderr(&o).contains("refused for good: HTTP 400"),
        "{}",
        stderr(&o)
    );
    let doc = alerts_json(&kw);
    assert_eq!(doc["deliveries"][0]["state"], "rejected");
    assert!(
        doc["deliveries"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 400")
    );

    rx.script(&[410]);
    let o = scan("b.log");
    assert_eq!(rx.requests().len(), 2);
    assert!(
        stderr(&o).contains("disabled until its settings change"),
        "{}",
        stderr(&o)
    );
    // Disabled: the next notice is queued, not sent.
    scan("c.log");
    assert_eq!(
        rx.requests().len(),
        2,
        "nothing is sent to a disabled channel"
    );
    let doc = alerts_json(&kw);
    assert_eq!(doc["disabled_channels"][0]["channel"], "ops");
    assert_eq!(doc["deliveries"][0]["state"], "queued");

    // A changed setting enables it again; the queued notice goes out.
    configure(
        &kw,
        &(webhook(&rx.url())
            + &format!(
                "[channels.ops.headers]\nX-Receiver-Tag = \"{}\"\n",
                kw.secret_file("tag", "keywatch")
            )),
    );
    let o = run(
        &kw,
        &env,
        &["scan", "--alert", kw.path("a.log").to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3, "{}", stderr(&o));
    assert_eq!(reqs[2].header("x-receiver-tag"), Some("keywatch"));
    assert!(
        alerts_json(&kw)["disabled_channels"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_silent_receiver_times_out_and_a_notice_that_keeps_failing_expires() {
    let kw = Kw::new();
    let rx = HttpReceiver::start(&[0, 200]);
    let secret = hook_secret();
    let env = [("KW_HOOK_SECRET", secret.as_str())];
    configure(&kw, &(webhook(&rx.url()) + "timeout = \"300ms\"\n"));
    let log = kw.write("a.log", url_line(&random_key("kw_live_", 32)) + "\n");
    let o = run(&kw, &env, &["scan", "--alert", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = alerts_json(&kw);
    let d = &doc["deliveries"][0];
    assert_eq!(d["state"], "delivered", "{doc}");
    assert_eq!(d["attempts"], 2);
    assert!(
        d["last_error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("timeout"),
        "{doc}"
    );
    assert_eq!(rx.requests().len(), 2);

    // Failing for good: expired after `expire_after`, reported, not dropped silently.
    rx.script(&[500; 100]);
    configure(
        &kw,
        &(webhook(&rx.url()).replace("[channels.ops]", "expire_after = \"1s\"\n[channels.ops]")),
    );
    let log = kw.write("b.log", url_line(&random_key("kw_live_", 32)) + "\n");
    let o = run(
        &kw,
        &env,
        &[
            "scan",
            "--alert",
            "--alert-wait",
            "20s",
            log.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("expired undelivered after"),
        "{}",
        stderr(&o)
    );
    let doc = alerts_json(&kw);
    assert_eq!(doc["deliveries"][0]["state"], "expired", "{doc}");
    assert!(
        doc["deliveries"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );
}

/// A chat channel of `kind` posting to `rx`, and the mail channel.
fn chat_and_mail(kw: &Kw, kind: &str, rx: &HttpReceiver, smtp: &SmtpServer) -> String {
    format!(
        "[channels.chat]\ntype = \"{kind}\"\nurl = \"{}\"\n{}",
        kw.secret_file("chat-url", &rx.url()),
        email_channel(smtp.port(), "")
    )
}

fn email_channel(port: u16, rules: &str) -> String {
    format!(
        "[channels.security]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"keywatch <keywatch@example.com>\"\nto = [\"security@example.com\", \"oncall@example.com\"]\n{rules}"
    )
}

#[test]
fn email_reaches_every_recipient_with_both_parts_and_no_key() {
    let kw = Kw::new();
    let smtp = SmtpServer::start();
    // Routing: security gets the leak, not the auth failures.
    let password = random_key("", 20);
    let pw_ref = kw.secret_file("smtp-password", &format!("{password}\n"));
    configure(
        &kw,
        &email_channel(
            smtp.port(),
            &format!(
                "rules = [\"key_in_url\", \"secret_in_url\"]\nusername = \"keywatch\"\npassword = \"{pw_ref}\"\n"
            ),
        ),
    );
    let key = random_key("kw_live_", 32);
    let mut text = url_line(&key) + "\n";
    for i in 0..30 {
        text.push_str(&line(
            "198.51.100.4",
            T,
            "/v1/items",
            401,
            "-",
            &format!("bad{i}"),
        ));
        text.push('\n');
    }
    let log = kw.write("access.log", text);
    let o = run(&kw, &[], &["scan", "--alert", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mails = smtp.mails();
    assert_eq!(
        mails.len(),
        1,
        "one notice, routed to the one channel: {mails:?}"
    );
    let m = &mails[0];
    assert_eq!(m.from, "keywatch@example.com");
    assert_eq!(m.to, ["security@example.com", "oncall@example.com"]);
    let subject = m.header("subject").unwrap();
    assert!(
        subject.starts_with("[FIRING:1] key_in_url kw_l…"),
        "{subject}"
    );
    assert!(m.header("message-id").unwrap().contains("kwn_"));
    assert!(m.text().contains("multipart/alternative"));
    let plain = m.part("text/plain").expect("a text part");
    let html = m.part("text/html").expect("an HTML part");
    for part in [&plain, &html] {
        assert!(part.contains("Why it matters"), "{part}");
        assert!(part.contains("203.0.113.9"), "from where: {part}");
        assert!(
            part.contains("api_key=[REDACTED]"),
            "redacted evidence: {part}"
        );
    }
    assert!(
        !m.text().contains(&key[8..20]),
        "no piece of the key in the mail"
    );
}

/// A CA and a certificate for `localhost` signed by it, made with openssl.
fn tls_files(kw: &Kw) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = kw.path("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let ext = kw.write(
        "tls/leaf.ext",
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let openssl = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("this test needs the openssl command (scripts/test installs it)");
        assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
    };
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=keywatch test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        ext.to_str().unwrap(),
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// Python's aiosmtpd, standalone, in plain, STARTTLS and implicit-TLS mode.
#[test]
fn a_standalone_smtp_server_takes_the_mail_plain_starttls_and_tls() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "this test needs Python's aiosmtpd (`pip install aiosmtpd`; scripts/test installs it)"
    );
    let kw = Kw::new();
    let (ca, cert, key) = tls_files(&kw);
    for mode in ["none", "starttls", "tls"] {
        let port = free_port();
        let maildir = kw.path(&format!("maildir-{mode}"));
        let mut args: Vec<String> = [
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (c, k) = (cert.display().to_string(), key.display().to_string());
        match mode {
            "starttls" => args.extend(["--tlscert".into(), c, "--tlskey".into(), k]),
            "tls" => args.extend(["--smtpscert".into(), c, "--smtpskey".into(), k]),
            _ => {}
        }
        args.push(maildir.display().to_string());
        let mut server = std::process::Command::new("python3")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_until("aiosmtpd to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let channel = email_channel(port, &format!("ca_file = \"{}\"\n", ca.display()));
        let channel = if mode == "none" {
            channel
        } else {
            // The certificate names localhost: connect by that name.
            channel
                .replace("host = \"127.0.0.1\"", "host = \"localhost\"")
                .replace("tls = \"none\"", &format!("tls = \"{mode}\""))
        };
        configure(&kw, &channel);
        let secret_key = random_key("kw_live_", 32);
        let log = kw.write("access.log", url_line(&secret_key) + "\n");
        let o = run(
            &kw,
            &[],
            &[
                "--state",
                kw.path(mode).to_str().unwrap(),
                "scan",
                "--alert",
                "--alert-wait",
                "20s",
                log.to_str().unwrap(),
            ],
        );
        let _ = server.kill();
        let _ = server.wait();
        assert!(o.status.success(), "{mode}: {}", stderr(&o));
        let files = common::files_below(&maildir.join("new"));
        assert_eq!(
            files.len(),
            1,
            "{mode}: one message in the maildir: {}",
            stderr(&o)
        );
        let mail = std::fs::read_to_string(&files[0]).unwrap();
        assert!(mail.contains("key_in_url"), "{mail}");
        assert!(
            mail.contains("To: security@example.com, oncall@example.com"),
            "{mail}"
        );
        assert!(!mail.contains(&secret_key[8..20]));
    }
}

#[test]
fn hostile_log_content_is_escaped_cut_and_still_valid() {
    let kw = Kw::new();
    let rx = HttpReceiver::start(&[]);
    let smtp = SmtpServer::start();
    configure(&kw, &chat_and_mail(&kw, "slack", &rx, &smtp));
    let key = random_key("kw_live_", 32);
    // nginx writes CR, LF and bytes it escapes as \xHH; the rest is as sent.
    let target = format!(
        "/v1/<script>alert(1)</script>/<!channel>/@everyone/\\xFF\\xFE/x\\x0D\\x0ABcc: evil@example.com?api_key={key}&q={}",
        "A".repeat(20_000)
    );
    let mut log = line("203.0.113.66", T, &target, 200, "-", "-").into_bytes();
    // And raw invalid UTF-8, as a client can send and a server may log it.
    let at = log.windows(9).position(|w| w == b"/<script>").unwrap();
    log.splice(at..at, [b'/', 0xFF, 0xC3, 0x28]);
    log.push(b'\n');
    let log = kw.write("access.log", log);
    let o = run(&kw, &[], &["scan", "--alert", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let slack: Value = serde_json::from_slice(&reqs[0].body).expect("valid JSON");
    let s = slack.to_string();
    assert!(!s.contains("<script>") && !s.contains("<!channel>"), "{s}");
    assert!(!s.contains("@everyone"), "mentions are broken");
    assert!(
        s.contains("more characters cut]"),
        "long evidence is cut with a marker"
    );
    for b in slack["blocks"].as_array().unwrap() {
        assert!(b["text"]["text"].as_str().unwrap().chars().count() <= 3_000);
    }
    assert!(!s.contains(&key[8..20]));

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    let head = m.header_block();
    assert!(
        !head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc")),
        "no header injected: {head}"
    );
    assert_eq!(m.to.len(), 2);
    let html = m.part("text/html").expect("an HTML part");
    assert!(
        !html.contains("<script>"),
        "the HTML part escapes markup: {html}"
    );
    assert!(html.contains("&lt;script&gt;"), "{html}");
    let plain = m.part("text/plain").expect("a text part");
    assert!(
        plain
            .lines()
            .any(|l| l.starts_with("Evidence: ") && l.contains("\\x0D\\x0ABcc: evil@example.com")),
        "line breaks from the log stay escaped on the evidence's line: {plain}"
    );
    assert!(!plain.lines().any(|l| l.starts_with("Bcc")));
    assert!(!m.text().contains(&key[8..20]));
}

#[test]
fn silences_mute_an_alert_and_alert_test_reports_each_channel() {
    let kw = Kw::new();
    let rx = HttpReceiver::start(&[]);
    let smtp = SmtpServer::start();
    configure(&kw, &chat_and_mail(&kw, "discord", &rx, &smtp));
    let key = random_key("kw_live_", 32);
    let log = kw.write("access.log", url_line(&key) + "\n");
    let o = run(
        &kw,
        &[],
        &["scan", "--output", "json", log.to_str().unwrap()],
    );
    let finding: Value = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["type"] == "finding")
        .unwrap();
    let key_id = finding["key_id"].as_str().unwrap().to_owned();
    let o = run(
        &kw,
        &[],
        &[
            "silence",
            "add",
            "--rule",
            "key_in_url",
            "--key",
            &key_id,
            "--for",
            "1h",
            "--comment",
            "rotating it",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&kw, &[], &["scan", "--alert", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(rx.requests().is_empty() && smtp.mails().is_empty());
    assert_eq!(alerts_json(&kw)["alerts"][0]["status"], "silenced");

    let o = run(&kw, &[], &["alert-test"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("chat (discord → http://127.0.0.1:"), "{out}");
    assert!(out.contains("security (email → smtp://127.0.0.1:"), "{out}");
    assert_eq!(out.matches(": delivered: ").count(), 2, "{out}");
    assert!(
        smtp.mails()[0]
            .header("subject")
            .unwrap()
            .starts_with("[TEST]")
    );
    let body: Value = serde_json::from_slice(&rx.requests()[0].body).unwrap();
    assert!(body["content"].as_str().unwrap().contains("TEST"), "{body}");

    rx.script(&[503]);
    let o = run(&kw, &[], &["alert-test", "--channel", "chat"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("failed (would be retried): HTTP 503"),
        "{}",
        stdout(&o)
    );
    let o = run(&kw, &[], &["alert-test", "--channel", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--channel nope: no such channel; configured: chat, security"));
}

#[test]
fn channel_settings_are_checked_by_name_and_line() {
    let kw = Kw::new();
    configure(
        &kw,
        "[channels.ops]\ntype = \"webhook\"\nurl = \"https://hooks.example.com/x\"\nsecret = \"whsec_c2VjcmV0c2VjcmV0c2VjcmV0\"\n",
    );
    let o = run(&kw, &[], &["check"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("config.toml: line 10: channels.ops.secret: secrets are not written in the configuration file"), "{err}");
    configure(
        &kw,
        "[channels.ops]\ntype = \"webhook\"\nurl = \"env:KW_HOOK_URL\"\nsecret = \"env:KW_HOOK_SECRET\"\n",
    );
    let o = run(&kw, &[("KW_HOOK_SECRET", &hook_secret())], &["check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("channels.ops.url: environment variable KW_HOOK_URL is not set"),
        "{}",
        stderr(&o)
    );
    let secret_url = format!("https://hooks.example.com/services/{}", random_key("", 24));
    let o = run(
        &kw,
        &[
            ("KW_HOOK_SECRET", &hook_secret()),
            ("KW_HOOK_URL", &secret_url),
        ],
        &["check"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("alert channel ops: webhook → https://hooks.example.com ("),
        "{}",
        stdout(&o)
    );
    assert!(
        !stdout(&o).contains("services"),
        "the secret part of a URL is never shown"
    );
}

/// Receivers down while alerts fire and keywatch restarts twice (once
/// cleanly, once killed); when they come back every notice arrives once,
/// in order within its group.
#[test]
fn an_outage_across_two_restarts_loses_nothing_and_repeats_nothing() {
    let kw = Kw::new();
    let (hport, sport) = (free_port(), free_port());
    configure(
        &kw,
        &format!(
            "{}group_by = \"rule\"\ngroup_wait = \"100ms\"\ngroup_interval = \"200ms\"\n{}",
            webhook(&format!("http://127.0.0.1:{hport}/hook")),
            email_channel(sport, "group_wait = \"100ms\"\n")
        ),
    );
    let secret = hook_secret();
    let log = kw.path("access.log");
    let append = |keys: &[String]| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        for k in keys {
            writeln!(f, "{}", url_line(k)).unwrap();
        }
    };
    let queued = |kw: &Kw, channel: &str| -> usize {
        let Some(doc) = try_alerts_json(kw) else {
            return 0;
        };
        doc["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["channel"] == channel && d["state"] == "queued")
            .count()
    };
    let env = [("KW_HOOK_SECRET", secret.as_str())];
    let start = |kw| Daemon::start_with(kw, log.to_str().unwrap(), &["--from-beginning"], &env);
    let keys: Vec<String> = (0..3).map(|_| random_key("kw_live_", 32)).collect();
    append(&keys[..1]);
    let d = start(&kw);
    wait_until("the first notices to fail", Duration::from_secs(20), || {
        let doc = try_alerts_json(&kw);
        doc.is_some_and(|d| {
            d["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["attempts"].as_u64() > Some(1))
                .count()
                == 2
        })
    });
    d.stop();
    append(&keys[1..2]);
    let d = start(&kw);
    wait_until(
        "notices about the second key to fail",
        Duration::from_secs(20),
        || queued(&kw, "ops") >= 2 && queued(&kw, "security") >= 2,
    );
    d.kill9();
    append(&keys[2..]);
    let rx = HttpReceiver::start_on(hport, &[]);
    let smtp = SmtpServer::start_on(sport);
    let d = start(&kw);
    wait_until("every notice delivered", Duration::from_secs(30), || {
        let doc = alerts_json(&kw);
        let all = doc["deliveries"].as_array().unwrap();
        all.len() == 6 && all.iter().all(|d| d["state"] == "delivered")
    });
    d.stop();
    let doc = alerts_json(&kw);
    let mut stored: Vec<&Value> = doc["deliveries"].as_array().unwrap().iter().collect();
    stored.reverse(); // oldest first
    let ops: Vec<&str> = stored
        .iter()
        .filter(|d| d["channel"] == "ops")
        .map(|d| d["notice"].as_str().unwrap())
        .collect();
    let got: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(got, ops, "each webhook notice once, in the order queued");
    assert_eq!(
        ops.len(),
        3,
        "the rule group had a notice per new key: {ops:?}"
    );
    let mails: Vec<String> = smtp
        .mails()
        .iter()
        .map(|m| m.header("message-id").unwrap())
        .collect();
    let unique: BTreeSet<&String> = mails.iter().collect();
    assert_eq!(unique.len(), mails.len(), "no mail twice: {mails:?}");
    let security = stored.iter().filter(|d| d["channel"] == "security").count();
    assert_eq!(mails.len(), security);
    assert_eq!(security, 3, "one mail per key's alert group");
    for r in rx.requests() {
        assert!(signed(&r, &secret));
        for k in &keys {
            assert!(!String::from_utf8_lossy(&r.body).contains(&k[8..20]));
        }
    }
}

#[test]
fn watch_ends_an_episode_as_the_clock_passes_without_another_line() {
    let kw = Kw::new();
    // Guessing whose bucket drains in 3 seconds (capacity 2, one leaks a second).
    kw.write(
        "config.toml",
        "[rules.key_bruteforce]\ncapacity = 2\nleak_seconds = 1\n",
    );
    let now = chrono::Utc::now()
        .format("%d/%b/%Y:%H:%M:%S +0000")
        .to_string();
    let log: String = (0..8)
        .map(|_| {
            format!(
                "{}\n",
                line(
                    "198.51.100.44",
                    &now,
                    "/v1/items",
                    401,
                    "-",
                    &random_key("kwg_", 28)
                )
            )
        })
        .collect();
    let path = kw.write("access.log", &log);
    let _d = Daemon::start(&kw, path.to_str().unwrap(), &["--from-beginning"]);
    let brute = |doc: &Value| {
        doc["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a.to_string().contains("key_bruteforce"))
            .cloned()
    };
    wait_until("the brute force alert", Duration::from_secs(20), || {
        try_alerts_json(&kw).is_some_and(|d| brute(&d).is_some())
    });
    // No line is written after it: the clock alone ends the episode.
    wait_until("the episode to end", Duration::from_secs(30), || {
        try_alerts_json(&kw)
            .and_then(|d| brute(&d))
            .is_some_and(|a| a["status"] == "resolved")
    });
}
