//! Conformance: real access logs parse with the right preset and a documented
//! number of skipped lines, and the 20 hostile lines of FORMATS.md parse to
//! the fields documented here.

use std::path::PathBuf;

use keywatch::format::{self, LogFormat, ParseScratch, Record, Text};

fn shared() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    assert!(
        dir.join("real-logs").is_dir(),
        "the shared folder with real-logs must sit beside the checkout ({}); CI copies it there",
        dir.display()
    );
    dir
}

fn text(t: Option<Text<'_>>) -> Option<String> {
    t.map(|t| String::from_utf8_lossy(&t.decode()).into_owned())
}

fn preset(name: &str) -> LogFormat {
    format::compile(name, &[]).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Parses every line of a real log; returns (lines, parsed, skipped).
fn count(file: &str, format: &LogFormat) -> (usize, usize, usize) {
    let bytes = std::fs::read(shared().join("real-logs").join(file)).unwrap();
    let mut scratch = ParseScratch::default();
    let mut body = &bytes[..];
    if body.ends_with(b"\n") {
        body = &body[..body.len() - 1];
    }
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let parsed = lines
        .iter()
        .filter(|l| format.parse(l, &mut scratch).is_ok())
        .count();
    (lines.len(), parsed, lines.len() - parsed)
}

/// (file, preset that must be detected, lines, parsed, skipped, why the skipped lines are skipped)
const REAL_LOGS: &[(&str, &str, usize, usize, usize, &str)] = &[
    (
        "elastic-examples_apache_logs.log",
        "apache-combined",
        10_000,
        9_999,
        1,
        "line 8899 is cut off inside the user agent",
    ),
    (
        "fail2ban_nginx-bad-request.log",
        "main",
        23,
        8,
        15,
        "8 failJSON comments, 7 blank lines",
    ),
    (
        "fail2ban_nginx-botsearch.log",
        "main",
        43,
        8,
        35,
        "14 comments, 15 blank lines, 6 nginx error-log lines",
    ),
    ("lnav_logfile_access_log.0", "combined", 3, 3, 0, ""),
    (
        "lnav_logfile_bad_access_log.0",
        "combined",
        3,
        2,
        1,
        "line 2 lacks the `- -` ident and user fields",
    ),
    (
        "lnav_logfile_shop_access_log.0",
        "main",
        1_000,
        1_000,
        0,
        "",
    ),
    (
        "lnav_logfile_caddy_log.0",
        "caddy",
        39,
        4,
        35,
        "35 Caddy messages that are not request entries",
    ),
    ("lnav_logfile_caddy_log.1", "caddy", 4, 4, 0, ""),
    // Not access logs of a supported server: every line is counted as skipped, none is fatal.
    (
        "fail2ban_haproxy-http-auth.log",
        "combined",
        8,
        0,
        8,
        "HAProxy httplog over syslog, and comments",
    ),
    (
        "lnav_logfile_haproxy.0",
        "combined",
        17,
        0,
        17,
        "HAProxy httplog over syslog",
    ),
    (
        "lnav_logfile_w3c.0",
        "combined",
        5,
        0,
        5,
        "IIS W3C with #-directives",
    ),
];

#[test]
fn every_real_log_parses_with_its_preset_and_documented_skips() {
    for (file, name, lines, parsed, skipped, why) in REAL_LOGS {
        let got = count(file, &preset(name));
        assert_eq!(
            got,
            (*lines, *parsed, *skipped),
            "{file} with {name} ({why})"
        );
    }
}

#[test]
fn detection_picks_the_right_preset_for_each_real_log() {
    for (file, name, _, parsed, ..) in REAL_LOGS {
        if *parsed == 0 {
            continue;
        }
        let bytes = std::fs::read(shared().join("real-logs").join(file)).unwrap();
        let (f, _, _) = format::detect(&bytes[..bytes.len().min(1 << 20)], &[]);
        assert_eq!(f.name(), *name, "{file}");
    }
}

#[test]
fn skipped_lines_say_where_parsing_failed() {
    let bytes = std::fs::read(shared().join("real-logs/lnav_logfile_bad_access_log.0")).unwrap();
    let line = bytes.split(|&b| b == b'\n').nth(1).unwrap();
    let err = preset("combined")
        .parse(line, &mut ParseScratch::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected ` - ` before $remote_user at byte 15"
    );
}

/// The 20 lines of FORMATS.md section (c), verbatim, read from the file.
fn hostile_lines() -> Vec<Vec<u8>> {
    let doc = std::fs::read(shared().join("FORMATS.md")).unwrap();
    let doc = String::from_utf8_lossy(&doc);
    let start = doc
        .find("## (c) 20 nasty lines")
        .expect("section (c) in FORMATS.md");
    let block = &doc[start..];
    let open = block.find("```\n").unwrap() + 4;
    let close = open + block[open..].find("\n```").unwrap();
    let lines: Vec<Vec<u8>> = block[open..close]
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let n = i + 1;
            let prefix = if n < 10 {
                format!("{n}  ")
            } else {
                format!("{n} ")
            };
            l.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("line {n} numbered"))
                .as_bytes()
                .to_vec()
        })
        .collect();
    assert_eq!(lines.len(), 20);
    lines
}

fn parse_with<'a>(f: &LogFormat, line: &'a [u8]) -> Record<'a> {
    f.parse(line, &mut ParseScratch::default())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)))
}

fn custom(directive: &str, keys: &[&str]) -> LogFormat {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    format::compile(directive, &keys).unwrap()
}

fn utc(iso: &str) -> i64 {
    format::time::parse_iso8601(iso.as_bytes()).unwrap()
}

#[test]
fn hostile_lines_parse_to_documented_fields() {
    let l = hostile_lines();
    let combined = preset("combined");
    let main = preset("main");

    // 1: TLS ClientHello on a plain-HTTP port: an invalid request kept with its raw bytes.
    let r = parse_with(&combined, &l[0]);
    assert_eq!(text(r.client).as_deref(), Some("172.68.244.173"));
    assert_eq!((r.status, r.bytes), (Some(400), Some(173)));
    assert!(r.method.is_none() && r.path.is_none());
    let req = r.request.unwrap().decode();
    assert!(req.starts_with(b"\x16\x03\x01\x00\xEC\x01") && req.ends_with(b"\xC0(\x005\x00"));
    assert!(r.referer.is_none() && r.user_agent.is_none());
    assert_eq!(r.time_ms, utc("2018-08-24T12:14:04Z"));

    // 2: RDP probe, main format.
    let r = parse_with(&main, &l[1]);
    assert!(
        r.request
            .unwrap()
            .decode()
            .starts_with(b"\x03\x00\x00/*\xE0")
    );
    assert!(r.method.is_none());
    assert_eq!(r.time_ms, utc("2015-01-20T18:53:28Z"));

    // 3: an empty request line is present but empty, unlike "-".
    let r = parse_with(&main, &l[2]);
    assert_eq!(r.request.map(|t| t.raw.len()), Some(0));
    assert_eq!(r.status, Some(400));

    // 4: one token.
    let r = parse_with(&main, &l[3]);
    assert_eq!(text(r.request).as_deref(), Some("HELP"));
    assert!(r.method.is_none());

    // 5: CONNECT with a remote user.
    let r = parse_with(&main, &l[4]);
    assert_eq!(text(r.user).as_deref(), Some("root"));
    assert_eq!(text(r.method).as_deref(), Some("CONNECT"));
    assert_eq!(text(r.path).as_deref(), Some("123.123.123.123"));
    assert_eq!(text(r.protocol).as_deref(), Some("HTTP/1.1"));

    // 6: scanner garbage.
    let r = parse_with(&combined, &l[5]);
    assert_eq!(
        text(r.request).as_deref(),
        Some("MGLNDD_192.241.213.192_443")
    );
    assert_eq!(r.time_ms, utc("2022-09-18T08:03:39Z"));

    // 7: SOCKS4 probe, and trailing extra fields tolerated.
    let r = parse_with(&combined, &l[6]);
    assert_eq!(&*r.request.unwrap().decode(), b"\x04\x01\x00PpTi4\x00");
    assert_eq!(r.bytes, Some(166));

    // 8: a line cut off inside the user agent does not parse, and says where.
    let apache = preset("apache-combined");
    let err = apache
        .parse(&l[7], &mut ParseScratch::default())
        .unwrap_err();
    assert!(err.to_string().starts_with("expected"), "{err}");

    // 9: Apache's lowercase \xhh in the Referer decode to the raw cp1251 bytes.
    let r = parse_with(&apache, &l[8]);
    assert!(
        r.referer
            .unwrap()
            .decode()
            .starts_with(b"http://\xe4\xe5\xe3\xf2\xff\xf0\xed\xee\xe5-")
    );
    assert_eq!(
        text(r.user_agent).as_deref(),
        Some("Mozilla/5.0 (Windows NT 6.1; rv:11.0) Gecko/20100101 Firefox/11.0")
    );

    // 10: missing ident and user fields: skipped with the place.
    let err = combined
        .parse(&l[9], &mut ParseScratch::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected ` - ` before $remote_user at byte 15"
    );

    // 11: a custom format with $msec, a double space, a forwarded-for list
    // with ", " and $pipe; the time comes from $msec (the last time variable).
    let f = custom(
        r#"log_format x '[$time_local] $msec $host  $proxy_add_x_forwarded_for $remote_user $status $pipe $request_time $bytes_sent $request_length $upstream_cache_status "$request" "$http_user_agent" "$http_referer" "$http_cookie"';"#,
        &[],
    );
    let r = parse_with(&f, &l[10]);
    assert!(r.user.is_none(), "{:?}", text(r.user));
    assert_eq!(r.status, Some(302));
    assert_eq!(r.request_time_ms, Some(178));
    assert_eq!(r.bytes, Some(977));
    assert_eq!(text(r.method).as_deref(), Some("POST"));
    assert_eq!(
        text(r.query).as_deref(),
        Some("next=/foo/member/000799/plans/")
    );
    assert_eq!(r.time_ms, 1_539_523_517_267);

    // 12: host:port and addr:port before the usual fields.
    let f = custom(
        r#"$host:$server_port $remote_addr:$remote_port - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#,
        &[],
    );
    let r = parse_with(&f, &l[11]);
    assert_eq!(text(r.client).as_deref(), Some("14.212.143.11"));
    assert_eq!(text(r.protocol).as_deref(), Some("HTTP/2.0"));

    // 13: +0330 offset; percent-encoding is left as logged.
    let r = parse_with(&main, &l[12]);
    assert_eq!(r.time_ms, utc("2019-01-22T00:26:14Z"));
    assert!(text(r.path).unwrap().starts_with("/filter/27|13%20%D9%85"));

    // 14: no address field; an XSS payload stays percent-encoded.
    let f = custom(
        r#"[$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#,
        &[],
    );
    let r = parse_with(&f, &l[13]);
    assert_eq!(
        text(r.query).as_deref(),
        Some("%3Cimg%20src=x%20onerror=alert(1)%3E")
    );
    assert_eq!(r.time_ms, utc("2020-08-03T17:49:08Z"));

    // 15, 16 (HAProxy) and 18 (AWS ALB) are other servers' formats: counted, never fatal.
    for i in [14, 15, 17] {
        assert!(
            combined.parse(&l[i], &mut ParseScratch::default()).is_err(),
            "line {}",
            i + 1
        );
    }

    // 17: Caddy JSON behind a docker compose prefix.
    let r = parse_with(&preset("caddy"), &l[16]);
    assert_eq!(text(r.client).as_deref(), Some("172.19.0.1"));
    assert_eq!(text(r.method).as_deref(), Some("GET"));
    assert_eq!(text(r.path).as_deref(), Some("/"));
    assert_eq!((r.status, r.bytes), (Some(304), Some(0)));
    assert_eq!(r.time_ms, 1_761_019_828_615);
    assert_eq!(r.request_time_ms, Some(1));
    assert!(text(r.user_agent).unwrap().ends_with("Firefox/142.0"));

    // 19: a Basic-auth user with a space, duplicate query keys, two X-Api-Key
    // headers joined by ", ", an empty header, an upstream list with " : ".
    let f = custom(
        r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_api_key" "$http_x_client_key" $request_time "$upstream_response_time""#,
        &["http_x_api_key"],
    );
    let r = parse_with(&f, &l[18]);
    assert_eq!(text(r.user).as_deref(), Some("john doe"));
    assert_eq!(text(r.query).as_deref(), Some("api_key=K1&api_key=K2"));
    assert_eq!(text(r.key).as_deref(), Some("K3, K4"));
    assert_eq!(r.request_time_ms, Some(4));

    // 20: Traefik writes a quote inside the user agent verbatim (escape=none).
    let f = custom(
        r#"log_format t escape=none '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_count "$router" "$server_url" ${duration}ms';"#,
        &[],
    );
    let r = parse_with(&f, &l[19]);
    assert_eq!(text(r.user_agent).as_deref(), Some(r#"Bot "quoted" UA"#));
    assert_eq!(r.status, Some(200));
}

#[test]
fn crlf_endings_and_dash_versus_empty() {
    let combined = preset("combined");
    let line = b"::1 - - [01/Mar/2025:10:00:00 +0000] \"-\" 000 0 \"\" \"-\"\r";
    let r = parse_with(&combined, line);
    assert!(r.request.is_none(), "\"-\" is a request nginx did not have");
    assert_eq!(
        r.referer.map(|t| t.raw.len()),
        Some(0),
        "\"\" is a present, empty header"
    );
    assert!(r.user_agent.is_none());
    assert_eq!(r.status, Some(0));
    assert_eq!(text(r.client).as_deref(), Some("::1"));
    let r = parse_with(
        &combined,
        b"unix: - - [01/Mar/2025:10:00:00 +0000] \"GET / HTTP/0.9\" 009 5 \"-\" \"-\"",
    );
    assert_eq!(r.status, Some(9));
}

#[test]
fn json_lines_with_invalid_utf8_and_iso_times() {
    let f = custom(
        r#"log_format j escape=json '{"time":"$time_iso8601","remote_addr":"$remote_addr","request":"$request","status":$status,"bytes":$body_bytes_sent,"ua":"$http_user_agent","key":"$http_x_api_key"}';"#,
        &["http_x_api_key"],
    );
    let line = b"{\"time\":\"2025-03-01T10:00:00+01:00\",\"remote_addr\":\"10.0.0.1\",\"request\":\"GET /a?b=\\\"c\\\" HTTP/1.1\",\"status\":401,\"bytes\":12,\"ua\":\"caf\xe9\",\"key\":\"\"}";
    let r = parse_with(&f, line);
    assert_eq!(r.time_ms, utc("2025-03-01T09:00:00Z"));
    assert_eq!(text(r.query).as_deref(), Some("b=\"c\""));
    assert_eq!(r.status, Some(401));
    assert_eq!(&*r.user_agent.unwrap().decode(), b"caf\xe9");

    // The generic JSON preset reads the same line by field names.
    let r = parse_with(&preset("json"), line);
    assert_eq!(text(r.client).as_deref(), Some("10.0.0.1"));
    assert_eq!(r.status, Some(401));
}
