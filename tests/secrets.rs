//! No raw key in any output or file: a log carrying keys in every place a key
//! can be (key field, Authorization, query, path, Referer, lines that do not
//! parse, over-long lines) is scanned, and everything keywatch wrote is
//! searched for the keys and for any 12-character piece of them.

mod common;

use common::receivers::{HttpReceiver, SmtpServer};
use common::{Kw, files_below, random_key, stderr, stdout};

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_api_key" "$http_authorization""#;

#[test]
fn no_raw_key_reaches_any_output_or_file() {
    let kw = Kw::new();
    let keys: Vec<String> = (0..10)
        .map(|i| random_key(if i == 5 { "kwt_" } else { "" }, 32 + i))
        .collect();
    let t = |s: u32| format!("[01/Mar/2025:10:00:{s:02} +0000]");
    let mut log = [
        format!(r#"192.0.2.1 - - {} "GET /v1/items HTTP/1.1" 200 10 "-" "ua" "{}" "-""#, t(1), keys[0]),
        format!(r#"192.0.2.2 - - {} "GET /v1/items HTTP/1.1" 200 10 "-" "ua" "-" "Bearer {}""#, t(2), keys[1]),
        format!(r#"192.0.2.3 - - {} "GET /v1/items HTTP/1.1" 401 10 "-" "ua" "-" "Basic {}""#, t(3), b64(format!("{}:", keys[2]).as_bytes())),
        format!(r#"192.0.2.4 - - {} "GET /v1/items?api%5Fkey={}&limit=3 HTTP/1.1" 200 10 "-" "ua" "-" "-""#, t(4), keys[3]),
        format!(r#"192.0.2.5 - - {} "GET /v1/items?token={}&page=2 HTTP/1.1" 200 10 "-" "ua" "-" "-""#, t(5), keys[4]),
        format!(r#"192.0.2.6 - - {} "GET /v1/keys/{}/usage HTTP/1.1" 200 10 "-" "ua" "-" "-""#, t(6), keys[5]),
        format!(r#"192.0.2.7 - - {} "GET /docs HTTP/1.1" 200 10 "https://app.example/settings?access_token={}" "ua" "-" "-""#, t(7), keys[6]),
        // The key field also carries the same key as the URL: both must be masked.
        format!(r#"192.0.2.8 - - {} "GET /v1/x?key={} HTTP/1.1" 200 10 "-" "ua" "{}" "-""#, t(8), keys[0], keys[0]),
        // A line that does not parse, carrying a key near its start.
        format!(r#"192.0.2.9 - {} "GET /v1/items?api_key={}"#, t(9), keys[7]),
        // An over-long line with a key at its start.
        format!(r#"192.0.2.10 - - {} "GET /v1/items?api_key={}&pad={} HTTP/1.1" 200 1 "-" "-" "-" "-""#, t(10), keys[8], "p".repeat(70_000)),
        // A key with bytes nginx escapes.
        format!(r#"192.0.2.11 - - {} "GET / HTTP/1.1" 200 1 "-" "-" "{}\x22\x1B" "-""#, t(11), keys[9]),
    ]
    .join("\n");
    log.push('\n');
    // Guessed keys (brute force), a third-party secret, a credential-named parameter.
    let guesses: Vec<String> = (0..7).map(|_| random_key("kwg_", 30)).collect();
    for (i, g) in guesses.iter().enumerate() {
        log.push_str(&format!("198.51.100.66 - - [01/Mar/2025:10:01:{i:02} +0000] \"GET /v1/items HTTP/1.1\" 401 10 \"-\" \"ua\" \"{g}\" \"-\"\n"));
    }
    let third_party = format!("sk_{}_{}", "live", random_key("", 24));
    let db_password = random_key("", 22);
    log.push_str(&format!("192.0.2.12 - - [01/Mar/2025:10:02:00 +0000] \"GET /pay?stripe={third_party}&db_password={db_password} HTTP/1.1\" 200 1 \"-\" \"-\" \"-\" \"-\"\n"));
    let path = kw.write("access.log", &log);
    // Alerts go out too: a signed webhook, a Slack channel and mail, to
    // real receivers whose every byte is searched below.
    let hook = HttpReceiver::start(&[]);
    let smtp = SmtpServer::start();
    let config = kw.write(
        "config.toml",
        format!(
            "[keys]\nprefixes = [\"kwt_\"]\n[channels.hook]\ntype = \"webhook\"\nurl = \"{0}\"\nsecret = \"env:KW_HOOK_SECRET\"\n[channels.chat]\ntype = \"slack\"\nurl = \"{0}\"\n[channels.mail]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {1}\ntls = \"none\"\nfrom = \"k@example.com\"\nto = [\"s@example.com\"]\n",
            hook.url(),
            smtp.port()
        ),
    );
    let mut outputs = Vec::new();
    for output in ["text", "json", "markdown", "html"] {
        let o = kw
            .cmd()
            .env("KW_HOOK_SECRET", random_key("", 32))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--timezone",
                "UTC",
                "scan",
                "-o",
                output,
                "--max-line-length",
                "65536",
                "-f",
                FORMAT,
                "--alert",
                path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        outputs.push((format!("{output} stdout"), stdout(&o)));
        outputs.push((format!("{output} stderr"), stderr(&o)));
    }
    // The findings prove the keys were seen where they were put.
    let json = &outputs[2].1;
    let url_findings = json
        .lines()
        .filter(|l| l.starts_with("{\"type\":\"finding\",\"rule\":\"key_in_url\""))
        .count();
    assert_eq!(url_findings, 5, "{json}");
    for rule in ["key_bruteforce", "secret_in_url", "credential_param_in_url"] {
        assert!(
            json.contains(&format!("\"rule\":\"{rule}\"")),
            "{rule} missing: {json}"
        );
    }
    assert!(json.contains("\"skipped\":2"), "{json}");
    let reqs = hook.requests();
    assert!(
        reqs.len() >= 10,
        "notices reached the webhook and Slack: {}",
        reqs.len()
    );
    for (i, r) in reqs.iter().enumerate() {
        outputs.push((
            format!("webhook request {i}"),
            format!("{:?} {}", r.headers, String::from_utf8_lossy(&r.body)),
        ));
    }
    let mails = smtp.mails();
    assert!(mails.len() >= 5, "notices reached the mail server");
    for (i, m) in mails.iter().enumerate() {
        for part in ["text/plain", "text/html"] {
            outputs.push((format!("mail {i} {part}"), m.part(part).unwrap_or_default()));
        }
        outputs.push((format!("mail {i}"), m.text()));
    }
    for args in [&["alerts"][..], &["alerts", "-o", "json"]] {
        let o = kw.cmd().args(args).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        outputs.push((format!("{args:?}"), stdout(&o)));
    }
    for f in files_below(&kw.state()) {
        outputs.push((
            f.display().to_string(),
            String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned(),
        ));
    }
    assert!(
        outputs.len() >= 5,
        "the state directory holds the key secret"
    );
    let all_secrets: Vec<&String> = keys
        .iter()
        .chain(&guesses)
        .chain([&third_party, &db_password])
        .collect();
    for key in all_secrets {
        for (what, text) in &outputs {
            assert!(!text.contains(key.as_str()), "a whole key in {what}");
            for w in key.as_bytes().windows(12) {
                let piece = std::str::from_utf8(w).unwrap();
                assert!(
                    !text.contains(piece),
                    "12 characters of a key ({piece}) in {what}:\n{text}"
                );
            }
        }
    }
}
