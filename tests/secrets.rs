//! No raw key in any output or file. Logs carry keys made at run time in
//! every place and encoding a key can take; everything keywatch then writes
//! or sends is searched for any 12-character piece of any of them: every
//! report format of `scan`, `watch`'s standard error, `status`, `summary`
//! and `alerts` in every format, every file of the state directory, a dump
//! of every row of the store, and every webhook, chat and mail body that
//! real receivers got.
//!
//! `tests/state.rs` holds what keeps the state directory private and the
//! configuration free of secrets.

mod common;

use std::path::Path;
use std::time::Duration;

use common::receivers::{HttpReceiver, SmtpServer};
use common::{Kw, files_below, random_key, stderr, stdout, wait_until};

/// The shortest piece of a key that must never appear.
const PIECE: usize = 12;

/// The log format of these tests: a key header, a logged Authorization.
const FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_api_key" "$http_authorization""#;

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn pct(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn t(minute: u32, second: u32) -> String {
    format!("[01/Mar/2025:10:{minute:02}:{second:02} +0000]")
}

/// One log line of [`FORMAT`], one argument per logged field.
#[allow(clippy::too_many_arguments)]
fn l(
    ip: &str,
    at: &str,
    target: &str,
    status: u16,
    referer: &str,
    ua: &str,
    key: &str,
    auth: &str,
) -> String {
    format!(
        r#"{ip} - - {at} "GET {target} HTTP/1.1" {status} 10 "{referer}" "{ua}" "{key}" "{auth}""#
    )
}

/// A random key of `len` characters drawn from `alphabet`.
fn key_of(alphabet: &[u8], len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).unwrap();
    bytes
        .iter()
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect()
}

/// A base64 key that holds a `/` somewhere in its middle.
fn slashed_key(len: usize) -> String {
    loop {
        let k = key_of(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            len,
        );
        let mid = &k[3..len - 3];
        if mid.contains('/') && !k.starts_with('/') && !k.ends_with('/') && !k.contains("//") {
            return k;
        }
    }
}

/// Everything keywatch wrote or sent, each with where it came from.
#[derive(Default)]
struct Exhibits(Vec<(String, String)>);

impl Exhibits {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    fn bytes(&mut self, what: impl Into<String>, data: &[u8]) {
        self.add(what, String::from_utf8_lossy(data).into_owned());
    }

    /// Fails on the first exhibit holding a 12-character piece of a key.
    /// The search ignores case: a key shown lower-cased is still shown.
    fn assert_no_piece_of(&self, keys: &[String]) {
        let lowered: Vec<String> = self.0.iter().map(|(_, t)| t.to_ascii_lowercase()).collect();
        for key in keys {
            assert!(key.len() >= PIECE, "test keys are at least {PIECE} long");
            let key = key.to_ascii_lowercase();
            for ((what, text), low) in self.0.iter().zip(&lowered) {
                for w in key.as_bytes().windows(PIECE) {
                    let piece = std::str::from_utf8(w).unwrap();
                    if let Some(at) = low.find(piece) {
                        let from = text[..at]
                            .char_indices()
                            .rev()
                            .nth(80)
                            .map_or(0, |(i, _)| i);
                        let around: String = text[from..].chars().take(200).collect();
                        panic!("12 characters of a key ({piece}) in {what}:\n…{around}…");
                    }
                }
            }
        }
    }
}

/// The store as rows of text: every table, every row, every value.
fn dump_store(state: &Path) -> String {
    let conn = rusqlite::Connection::open_with_flags(
        state.join("keywatch.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(tables.iter().any(|t| t == "usage"), "{tables:?}");
    let mut out = String::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            out.push_str(&table);
            for i in 0..n {
                use rusqlite::types::ValueRef;
                out.push_str(" | ");
                match row.get_ref(i).unwrap() {
                    ValueRef::Null => out.push_str("NULL"),
                    ValueRef::Integer(v) => out.push_str(&v.to_string()),
                    ValueRef::Real(v) => out.push_str(&v.to_string()),
                    ValueRef::Text(b) | ValueRef::Blob(b) => {
                        out.push_str(&String::from_utf8_lossy(b))
                    }
                }
            }
            out.push('\n');
        }
    }
    out
}

/// Runs `log` through everything: `scan` in every format with `--alert`,
/// `watch` (delivering too), `status`, `summary` (and `--send`) and
/// `alerts` in every format; collects what they wrote, the state files, the
/// store's rows and what every receiver got.
fn everything(kw: &Kw, log: &[u8], extra_config: &str) -> Exhibits {
    let hook = HttpReceiver::start(&[]);
    let smtp = SmtpServer::start();
    let hook_secret = kw.secret_file("hook-secret", &random_key("", 32));
    let mut config = format!(
        "timezone = \"UTC\"\n{extra_config}\n[alerts]\ngroup_wait = \"0s\"\n\
         [channels.hook]\ntype = \"webhook\"\nurl = \"{hook}\"\nsecret = \"{hook_secret}\"\nsummary = true\n\
         [channels.mail]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"k@example.com\"\nto = [\"s@example.com\"]\nsummary = true\n",
        hook = hook.url(),
        port = smtp.port()
    );
    for kind in ["slack", "discord", "teams"] {
        let url = kw.secret_file(&format!("{kind}-url"), &hook.url());
        config.push_str(&format!(
            "[channels.{kind}]\ntype = \"{kind}\"\nurl = \"{url}\"\nsummary = true\n"
        ));
    }
    kw.write("config.toml", config);
    let path = kw.write("access.log", log);
    let path = path.to_str().unwrap();
    let mut ex = Exhibits::default();
    let run = |args: &[&str]| kw.cmd().args(args).output().unwrap();
    for output in ["text", "json", "markdown", "html"] {
        let o = run(&[
            "scan",
            "-o",
            output,
            "-f",
            FORMAT,
            "--max-line-length",
            "65536",
            "--alert",
            "--alert-wait",
            "20s",
            path,
        ]);
        assert!(o.status.success(), "scan -o {output}: {}", stderr(&o));
        ex.bytes(format!("scan -o {output} (stdout)"), &o.stdout);
        ex.bytes(format!("scan -o {output} (stderr)"), &o.stderr);
    }
    // The same log followed by `watch`, which counts it into the store and
    // delivers what it finds.
    let lines = log.iter().filter(|&&b| b == b'\n').count() as u64;
    let err = kw.path("watch.err");
    let mut child = kw
        .cmd()
        .args([
            "watch",
            "--from-beginning",
            "--poll-interval",
            "50ms",
            "--commit-interval",
            "100ms",
            "-f",
            FORMAT,
            "--max-line-length",
            "65536",
            path,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    wait_until("watch to count every line", Duration::from_secs(60), || {
        let o = run(&["status", "-o", "json"]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| {
                v["files"]
                    .as_array()
                    .map(|f| f.iter().filter_map(|x| x["lines"].as_u64()).sum::<u64>())
            })
            == Some(lines)
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(
        child.wait().unwrap().success(),
        "watch: {}",
        std::fs::read_to_string(&err).unwrap()
    );
    ex.bytes("watch (stderr)", &std::fs::read(&err).unwrap());
    for args in [
        &["status"][..],
        &["status", "-o", "json"],
        &["alerts"],
        &["alerts", "-o", "json"],
        &["summary", "--day", "2025-03-01"],
        &["summary", "--day", "2025-03-01", "-o", "json"],
        &["summary", "--day", "2025-03-01", "-o", "markdown"],
        &["summary", "--day", "2025-03-01", "-o", "html"],
        &["summary", "--day", "2025-03-01", "-o", "json", "--send"],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        ex.bytes(format!("{args:?} (stdout)"), &o.stdout);
        ex.bytes(format!("{args:?} (stderr)"), &o.stderr);
    }
    for f in files_below(&kw.state()) {
        ex.bytes(f.display().to_string(), &std::fs::read(&f).unwrap());
    }
    ex.add("the store's rows", dump_store(&kw.state()));
    let requests = hook.requests();
    let kinds: Vec<&str> = requests
        .iter()
        .map(|r| {
            let b = String::from_utf8_lossy(&r.body);
            if b.contains("keywatch.summary.v1") {
                "summary"
            } else if b.contains("\"schema\"") {
                "webhook"
            } else if b.contains("AdaptiveCard") {
                "teams"
            } else if b.contains("allowed_mentions") {
                "discord"
            } else {
                "slack"
            }
        })
        .collect();
    for kind in ["summary", "webhook", "teams", "discord", "slack"] {
        assert!(
            kinds.contains(&kind),
            "no {kind} body reached the receiver: {kinds:?}"
        );
    }
    for (i, r) in requests.iter().enumerate() {
        ex.add(
            format!("HTTP request {i} ({})", kinds[i]),
            format!(
                "{} {} {:?}\n{}",
                r.method,
                r.path,
                r.headers,
                String::from_utf8_lossy(&r.body)
            ),
        );
    }
    let mails = smtp.mails();
    assert!(mails.len() >= 2, "alert and summary mail: {}", mails.len());
    for (i, m) in mails.iter().enumerate() {
        ex.add(format!("mail {i}"), m.text());
        for part in ["text/plain", "text/html"] {
            ex.add(format!("mail {i} {part}"), m.part(part).unwrap_or_default());
        }
    }
    ex
}

/// What the JSON report of `log` found, by rule.
fn found(ex: &Exhibits) -> String {
    ex.0.iter()
        .find(|(w, _)| w == "scan -o json (stdout)")
        .map(|(_, t)| t.clone())
        .unwrap_or_default()
}

#[test]
fn a_key_seen_anywhere_on_its_line_is_masked_everywhere_else() {
    let kw = Kw::new();
    let mut keys = Vec::new();
    let mut log = String::new();
    let mut key = || {
        let k = random_key("", 32);
        keys.push(k.clone());
        k
    };
    // Each placement the issue found, one key each.
    let mut i = 0;
    let mut add =
        |log: &mut String, target: String, referer: &str, ua: &str, field: &str, auth: &str| {
            i += 1;
            log.push_str(&l(
                &format!("192.0.2.{i}"),
                &t(0, i),
                &target,
                200,
                referer,
                ua,
                field,
                auth,
            ));
            log.push('\n');
        };
    let k = key();
    add(
        &mut log,
        format!("/v1/x/{k}.json?api_key={k}"),
        "-",
        "ua",
        &k,
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/a?api_key={k}&cb=https://h/?api_key={k}"),
        "-",
        "ua",
        "-",
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/a?q=1&redirect=%2Fcb%3Fapi_key%3D{k}"),
        "-",
        "ua",
        &k,
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/a?redirect=%252Fcb%253Fapi_key%253D{k}&api_key={k}"),
        "-",
        "ua",
        "-",
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/a?api_key={k}&{k}"),
        "-",
        "ua",
        "-",
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/a?api_key={k}&{k}=1"),
        "-",
        "ua",
        "-",
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/a?=={k}&api_key={k}"),
        "-",
        "ua",
        "-",
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/a?api_key={k}&x=%22{k}%22"),
        "-",
        "ua",
        "-",
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/a?api_key={k}&x=%{k}"),
        "-",
        "ua",
        "-",
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/{}%2F{}/items?api_key={k}", &k[..16], &k[16..]),
        "-",
        "ua",
        "-",
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/a?api_key={k}&x={}", &k[..20]),
        "-",
        "ua",
        "-",
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/a?api_key={k}&x={}", pct(&k)),
        "-",
        "ua",
        "-",
        "-",
    );
    let k = key();
    add(
        &mut log,
        format!("/v1/a?api_key={k}&x={}", pct(&pct(&k))),
        "-",
        "ua",
        "-",
        "-",
    );
    // A presented key in the Referer's path, and in the user agent.
    let k = key();
    add(
        &mut log,
        format!("/v1/a?api_key={k}"),
        &format!("https://app.example/keys/{k}/edit"),
        &format!("curl {k}"),
        &k,
        "-",
    );
    // Basic credentials: the key, and base64 of `key:` and `user:key` elsewhere.
    let k = key();
    let basic = b64(format!("{k}:").as_bytes());
    add(
        &mut log,
        format!(
            "/v1/a?api_key={k}&c={basic}&d={}",
            b64(format!("ops:{k}").as_bytes())
        ),
        "-",
        "ua",
        "-",
        &format!("Basic {basic}"),
    );
    // Keys the server logged with its own escaping (`\xHH`).
    let k = key();
    let escaped: String = k.bytes().map(|b| format!("\\x{b:02X}")).collect();
    add(
        &mut log,
        format!("/v1/a?api_key={k}&e={escaped}"),
        "-",
        "ua",
        "-",
        "-",
    );
    // A presented key as the name of a credential parameter (messages show
    // parameter names).
    let k = key();
    add(
        &mut log,
        format!("/v1/a?{k}_token={}", random_key("", 24)),
        "-",
        "ua",
        &k,
        "-",
    );
    // A key sent in a Bearer header and also in the path.
    let k = key();
    add(
        &mut log,
        format!("/v1/a/{k}?token=x"),
        "-",
        "ua",
        "-",
        &format!("Bearer {k}"),
    );
    // Referer credentials: a token as userinfo, a scheme-relative user:password.
    let token = format!("ghp_{}", key());
    let password = key();
    add(
        &mut log,
        "/v1/a".to_string(),
        &format!("https://{token}@github.com/org/repo"),
        "ua",
        "-",
        "-",
    );
    add(
        &mut log,
        "/v1/b".to_string(),
        &format!("//ops:{password}@intranet.example/x"),
        "ua",
        "-",
        "-",
    );
    keys.push(token);
    // Top endpoints: thirty requests each with the key in the path and the
    // key field, for keys of 12, 14, 20 and 32 characters and base64 with `/`.
    for (n, k) in [
        random_key("", 12),
        random_key("", 14),
        random_key("", 20),
        random_key("", 32),
        slashed_key(32),
        slashed_key(20),
    ]
    .into_iter()
    .enumerate()
    {
        for s in 0..30 {
            log.push_str(&l(
                &format!("198.51.100.{n}"),
                &t(10 + n as u32, s),
                &format!("/v1/users/{k}/profile"),
                200,
                "-",
                "ua",
                &k,
                "-",
            ));
            log.push('\n');
        }
        keys.push(k);
    }
    // Lines that do not parse, with values after `api_key=` of every shape.
    for (n, v) in [
        random_key("", 12),
        random_key("", 15),
        key_of(b"abcdefghijklmnopqrstuvwxyz", 24),
        key_of(b"0123456789", 24),
        format!("{}:{}", random_key("", 8), random_key("", 8)),
        format!("{}/{}", random_key("", 8), random_key("", 8)),
    ]
    .into_iter()
    .enumerate()
    {
        log.push_str(&format!(
            "203.0.113.{n} - {} \"GET /v1/a?api_key={v}&x=1 HTTP/1.1\" 200\n",
            t(30, n as u32)
        ));
        keys.push(v);
    }
    let ex = everything(&kw, log.as_bytes(), "[keys]\nprefixes = [\"kwt_\"]\n");
    let json = found(&ex);
    // The keys were seen where they were put.
    assert!(
        json.matches("\"rule\":\"key_in_url\"").count() >= 10,
        "{json}"
    );
    assert!(json.contains("\"rule\":\"secret_in_url\""), "{json}");
    assert!(json.contains("\"skipped\":6"), "{json}");
    // Endpoints keep their shape, with the key folded once.
    assert!(json.contains("/v1/users/{key}/profile"), "{json}");
    assert!(!json.contains("/v1/users/{key}/{key}"), "{json}");
    ex.assert_no_piece_of(&keys);
}

#[test]
fn keys_of_every_source_and_guesses_are_masked() {
    let kw = Kw::new();
    let keys: Vec<String> = (0..10)
        .map(|i| random_key(if i == 5 { "kwt_" } else { "" }, 32 + i))
        .collect();
    let ua = "ua";
    let mut log = [
        l(
            "192.0.2.1",
            &t(0, 1),
            "/v1/items",
            200,
            "-",
            ua,
            &keys[0],
            "-",
        ),
        l(
            "192.0.2.2",
            &t(0, 2),
            "/v1/items",
            200,
            "-",
            ua,
            "-",
            &format!("Bearer {}", keys[1]),
        ),
        l(
            "192.0.2.3",
            &t(0, 3),
            "/v1/items",
            401,
            "-",
            ua,
            "-",
            &format!("Basic {}", b64(format!("{}:", keys[2]).as_bytes())),
        ),
        l(
            "192.0.2.4",
            &t(0, 4),
            &format!("/v1/items?api%5Fkey={}&limit=3", keys[3]),
            200,
            "-",
            ua,
            "-",
            "-",
        ),
        l(
            "192.0.2.5",
            &t(0, 5),
            &format!("/v1/items?token={}&page=2", keys[4]),
            200,
            "-",
            ua,
            "-",
            "-",
        ),
        l(
            "192.0.2.6",
            &t(0, 6),
            &format!("/v1/keys/{}/usage", keys[5]),
            200,
            "-",
            ua,
            "-",
            "-",
        ),
        l(
            "192.0.2.7",
            &t(0, 7),
            "/docs",
            200,
            &format!("https://app.example/settings?access_token={}", keys[6]),
            ua,
            "-",
            "-",
        ),
        l(
            "192.0.2.8",
            &t(0, 8),
            &format!("/v1/x?key={}", keys[0]),
            200,
            "-",
            ua,
            &keys[0],
            "-",
        ),
        // A line that does not parse, carrying a key near its start.
        format!(
            r#"192.0.2.9 - {} "GET /v1/items?api_key={}"#,
            t(0, 9),
            keys[7]
        ),
        // An over-long line with a key at its start.
        l(
            "192.0.2.10",
            &t(0, 10),
            &format!("/v1/items?api_key={}&pad={}", keys[8], "p".repeat(70_000)),
            200,
            "-",
            "-",
            "-",
            "-",
        ),
        // A key with bytes nginx escapes.
        l(
            "192.0.2.11",
            &t(0, 11),
            "/",
            200,
            "-",
            "-",
            &format!("{}\\x22\\x1B", keys[9]),
            "-",
        ),
    ]
    .join("\n");
    log.push('\n');
    // Guessed keys (brute force), a third-party secret, a credential-named parameter.
    let guesses: Vec<String> = (0..7).map(|_| random_key("kwg_", 30)).collect();
    for (i, g) in guesses.iter().enumerate() {
        log.push_str(&l(
            "198.51.100.66",
            &t(1, i as u32),
            "/v1/items",
            401,
            "-",
            ua,
            g,
            "-",
        ));
        log.push('\n');
    }
    let third_party = format!("sk_{}_{}", "live", random_key("", 24));
    let db_password = random_key("", 22);
    log.push_str(&l(
        "192.0.2.12",
        &t(2, 0),
        &format!("/pay?stripe={third_party}&db_password={db_password}"),
        200,
        "-",
        "-",
        "-",
        "-",
    ));
    log.push('\n');
    let ex = everything(&kw, log.as_bytes(), "[keys]\nprefixes = [\"kwt_\"]\n");
    let json = found(&ex);
    assert_eq!(json.matches("\"rule\":\"key_in_url\"").count(), 5, "{json}");
    for rule in ["key_bruteforce", "secret_in_url", "credential_param_in_url"] {
        assert!(
            json.contains(&format!("\"rule\":\"{rule}\"")),
            "{rule} missing: {json}"
        );
    }
    assert!(json.contains("\"skipped\":2"), "{json}");
    let all: Vec<String> = keys
        .into_iter()
        .chain(guesses)
        .chain([third_party, db_password])
        .collect();
    ex.assert_no_piece_of(&all);
}

/// The shapes a key takes in the property test.
const ALPHABETS: [&[u8]; 5] = [
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    b"abcdefghijklmnopqrstuvwxyz",
    b"0123456789",
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~",
];

mod property {
    use super::*;
    use keywatch::format::{self};
    use keywatch::keys::{Extractor, KeySecret, KeySources};
    use keywatch::output::{self, Report};
    use keywatch::pipeline::{Analyzer, Engine};
    use proptest::prelude::*;

    /// How a key is presented, so keywatch has seen it.
    #[derive(Debug, Clone, Copy)]
    enum Presented {
        Field,
        Bearer,
        BasicKeyColon,
        BasicUserKey,
        Query,
    }

    /// Where a copy (or piece) of the key goes, and how it is encoded.
    #[derive(Debug, Clone, Copy)]
    enum Place {
        PathSegment,
        QueryValue,
        QueryName,
        RefererPath,
        RefererQuery,
        UserAgent,
    }

    #[derive(Debug, Clone, Copy)]
    enum Encoding {
        Raw,
        PercentOnce,
        PercentTwice,
        NginxEscaped,
        SplitBySlash,
        Prefix,
        Base64KeyColon,
        Quoted,
    }

    fn encode(k: &str, e: Encoding) -> String {
        match e {
            Encoding::Raw => k.to_owned(),
            Encoding::PercentOnce => pct(k),
            Encoding::PercentTwice => pct(&pct(k)),
            Encoding::NginxEscaped => k.bytes().map(|b| format!("\\x{b:02X}")).collect(),
            Encoding::SplitBySlash => format!("{}%2F{}", &k[..k.len() / 2], &k[k.len() / 2..]),
            Encoding::Prefix => k[..PIECE.max(k.len() * 2 / 3)].to_owned(),
            Encoding::Base64KeyColon => b64(format!("{k}:").as_bytes()),
            Encoding::Quoted => format!("%22{k}%22"),
        }
    }

    fn line(k: &str, p: Presented, copies: &[(Place, Encoding)], n: usize, status: u16) -> String {
        let (mut field, mut auth) = ("-".to_string(), "-".to_string());
        let mut query = vec![format!("n={n}")];
        match p {
            Presented::Field => field = k.to_owned(),
            Presented::Bearer => auth = format!("Bearer {k}"),
            Presented::BasicKeyColon => auth = format!("Basic {}", b64(format!("{k}:").as_bytes())),
            Presented::BasicUserKey => {
                auth = format!("Basic {}", b64(format!("svc:{k}").as_bytes()))
            }
            Presented::Query => query.push(format!("api_key={}", pct(k))),
        }
        let (mut path, mut referer, mut ua) =
            ("/v1/items".to_string(), "-".to_string(), "ua".to_string());
        for (i, (place, enc)) in copies.iter().enumerate() {
            let v = encode(k, *enc);
            match place {
                Place::PathSegment => path.push_str(&format!("/{v}/x")),
                Place::QueryValue => query.push(format!("v{i}={v}")),
                Place::QueryName => query.push(format!("{v}=1")),
                Place::RefererPath => referer = format!("https://app.example/a/{v}/b"),
                Place::RefererQuery => referer = format!("https://app.example/a?next={v}"),
                Place::UserAgent => ua = format!("client/1.0 {v}"),
            }
        }
        l(
            &format!("192.0.2.{}", n % 250),
            &t((n / 60 % 60) as u32, (n % 60) as u32),
            &format!("{path}?{}", query.join("&")),
            status,
            &referer,
            &ua,
            &field,
            &auth,
        )
    }

    fn presented() -> impl Strategy<Value = Presented> {
        prop_oneof![
            Just(Presented::Field),
            Just(Presented::Bearer),
            Just(Presented::BasicKeyColon),
            Just(Presented::BasicUserKey),
            Just(Presented::Query),
        ]
    }

    fn copy() -> impl Strategy<Value = (Place, Encoding)> {
        let place = prop_oneof![
            Just(Place::PathSegment),
            Just(Place::QueryValue),
            Just(Place::QueryName),
            Just(Place::RefererPath),
            Just(Place::RefererQuery),
            Just(Place::UserAgent),
        ];
        let enc = prop_oneof![
            Just(Encoding::Raw),
            Just(Encoding::PercentOnce),
            Just(Encoding::PercentTwice),
            Just(Encoding::NginxEscaped),
            Just(Encoding::SplitBySlash),
            Just(Encoding::Prefix),
            Just(Encoding::Base64KeyColon),
            Just(Encoding::Quoted),
        ];
        (place, enc)
    }

    /// A key of a random shape and length, made from proptest's draw.
    fn key() -> impl Strategy<Value = String> {
        (
            0..ALPHABETS.len(),
            12usize..=64,
            proptest::collection::vec(any::<u8>(), 64),
        )
            .prop_map(|(a, len, bytes)| {
                let alphabet = ALPHABETS[a];
                bytes[..len]
                    .iter()
                    .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
                    .collect()
            })
            .prop_filter("a key is not a placeholder or a path", |k: &String| {
                !k.starts_with(['/', '.', '~', '-', '+']) && !k.contains("//") && !k.ends_with('/')
            })
    }

    fn render_all(a: &Analyzer<'_>, engine: &Engine) -> Vec<(String, String)> {
        let names = engine.extractor.names.clone();
        let findings = a.findings(&names);
        let inputs = vec![("log".to_string(), a.totals)];
        let report = Report {
            findings: &findings,
            usage: &a.usage,
            totals: a.totals,
            inputs: &inputs,
            skipped: &a.skipped,
            zone: &engine.zone,
            format: engine.format.name(),
            names: &names,
            history: None,
            rotation_days: 90,
        };
        let mut out = Vec::new();
        let mut text = Vec::new();
        output::text::render(&report, &mut text).unwrap();
        out.push(("text".into(), String::from_utf8_lossy(&text).into_owned()));
        let mut json = Vec::new();
        output::json::render(&report, &mut json).unwrap();
        out.push(("json".into(), String::from_utf8_lossy(&json).into_owned()));
        let mut md = Vec::new();
        output::markdown::render(&report.dailies(), &mut md).unwrap();
        out.push(("markdown".into(), String::from_utf8_lossy(&md).into_owned()));
        let mut html = Vec::new();
        output::html::render(&report.dailies(), &mut html).unwrap();
        out.push(("html".into(), String::from_utf8_lossy(&html).into_owned()));
        for f in &findings {
            out.push(("finding".into(), format!("{f:?}")));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn a_random_key_in_random_places_and_encodings_never_shows(
            k in key(),
            p in presented(),
            copies in proptest::collection::vec(copy(), 1..4),
            rejected in any::<bool>(),
        ) {
            let engine = Engine {
                format: format::compile(FORMAT, &["http_x_api_key".to_string()]).unwrap(),
                extractor: Extractor::new(&KeySecret::from_bytes(b"property-secret-0123"), KeySources::default(), &[]).unwrap(),
                zone: keywatch::zone::Zone::parse("UTC").unwrap(),
                max_line: 1 << 16,
                rules: Default::default(),
                proxies: Default::default(),
            };
            let mut a = Analyzer::new(&engine);
            let file: std::sync::Arc<str> = "log".into();
            // Repeated, so the key is among the top endpoints and clients.
            for n in 0..8 {
                let status = if rejected && n % 2 == 0 { 401 } else { 200 };
                a.line(line(&k, p, &copies, n, status).as_bytes(), &file, n as u64 + 1);
            }
            prop_assert_eq!(a.totals.skipped, 0, "the test lines parse");
            for (what, text) in render_all(&a, &engine) {
                for w in k.as_bytes().windows(PIECE) {
                    let piece = std::str::from_utf8(w).unwrap();
                    prop_assert!(!text.contains(piece), "{} of {:?} in {}:\n{}", piece, k, what, text);
                }
            }
        }
    }
}

#[test]
fn random_keys_in_a_random_log_never_reach_any_output_file_or_receiver() {
    // The property test's lines, many at once, through the binary and every
    // channel: what the in-process test cannot reach (stores, mail, chat).
    let kw = Kw::new();
    let mut keys = Vec::new();
    let mut log = String::new();
    let mut rnd = [0u8; 4096];
    getrandom::fill(&mut rnd).unwrap();
    for n in 0..120 {
        let r = |i: usize| usize::from(rnd[(n * 31 + i) % rnd.len()]);
        let len = 12 + r(0) % 53;
        let k = loop {
            let k = key_of(ALPHABETS[r(1) % ALPHABETS.len()], len);
            if !k.starts_with(['/', '.', '~', '-', '+']) && !k.contains("//") && !k.ends_with('/') {
                break k;
            }
        };
        let copy = match r(2) % 6 {
            0 => format!("/v1/u/{}/p?api_key={}", pct(&k), pct(&k)),
            1 => format!("/v1/u/{}%2F{}/p?x=1", &k[..len / 2], &k[len / 2..]),
            2 => format!(
                "/v1/u?x={}&y={}",
                &k[..PIECE.max(len * 2 / 3)],
                pct(&pct(&k))
            ),
            3 => format!("/v1/u?b={}", b64(format!("{k}:").as_bytes())),
            4 => format!("/v1/{k}/p"),
            _ => format!("/v1/u?cb=https%3A%2F%2Fh%2F%3Fkey%3D{}", pct(&k)),
        };
        let (field, auth) = match r(3) % 3 {
            0 => (k.clone(), "-".to_string()),
            1 => ("-".to_string(), format!("Bearer {k}")),
            _ => (
                "-".to_string(),
                format!("Basic {}", b64(format!("u:{k}").as_bytes())),
            ),
        };
        let status = [200, 200, 401, 403, 500][r(4) % 5];
        let referer = if r(5) % 3 == 0 {
            format!("https://app.example/k/{k}?x=1")
        } else {
            "-".into()
        };
        log.push_str(&l(
            &format!("198.51.100.{}", r(6) % 200),
            &t((n / 60) as u32, (n % 60) as u32),
            &copy,
            status,
            &referer,
            "ua",
            &field,
            &auth,
        ));
        log.push('\n');
        keys.push(k);
    }
    let ex = everything(&kw, log.as_bytes(), "");
    ex.assert_no_piece_of(&keys);
}

#[test]
fn key_names_are_printed_printable() {
    let kw = Kw::new();
    let key = random_key("kwn_", 28);
    kw.write(
        "config.toml",
        "[[keys.names]]\nname = \"billing\\r\\n\\u001b[31mFAKE ALERT\"\nprefix = \"kwn_\"\n",
    );
    let log = kw.write(
        "a.log",
        l("192.0.2.1", &t(0, 1), "/v1/a", 200, "-", "ua", &key, "-") + "\n",
    );
    for output in ["text", "json", "markdown", "html"] {
        let o = kw.run(&["scan", "-o", output, "-f", FORMAT, log.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            !out.contains("billing\r") && !out.contains("billing\n") && !out.contains('\x1b'),
            "{output}: {out:?}"
        );
        assert!(out.contains("billing"), "{output}: {out}");
    }
}
