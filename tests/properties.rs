//! Properties of the parser and key extraction over generated input:
//! whatever nginx writes parses back to exactly what it escaped, and no
//! input of any shape makes anything panic.

use keywatch::format::escape::nginx_escape;
use keywatch::format::{self, LogFormat, ParseScratch, Text};
use keywatch::keys::{Extractor, KeyScratch, KeySecret, KeySources};
use proptest::prelude::*;

fn esc(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    nginx_escape(b, &mut out);
    out
}

fn decoded(t: Option<Text<'_>>) -> Option<Vec<u8>> {
    t.map(|t| t.decode().into_owned())
}

fn formats() -> Vec<LogFormat> {
    let keys = vec!["http_x_api_key".to_string()];
    let mut all: Vec<LogFormat> = keywatch::format::presets::NAMES
        .iter()
        .map(|n| format::compile(n, &keys).unwrap())
        .collect();
    all.push(
        format::compile(
            r#"log_format k '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_api_key" $request_time "$upstream_response_time" $upstream_addr';"#,
            &keys,
        )
        .unwrap(),
    );
    all
}

fn extractor() -> Extractor {
    let sources = KeySources {
        prefixes: vec!["kw_".into()],
        remote_user: true,
        ..KeySources::default()
    };
    Extractor::new(
        &KeySecret::from_bytes(b"property-test-secret"),
        sources,
        &[],
    )
    .unwrap()
}

/// Values nginx never writes as themselves: `-` means "not found".
fn not_dash(v: &Vec<u8>) -> bool {
    v.as_slice() != b"-"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn nginx_escaped_fields_parse_back_to_themselves(
        user in proptest::collection::vec(any::<u8>(), 1..40).prop_filter("not -", not_dash),
        request in proptest::collection::vec(any::<u8>(), 0..80).prop_filter("not -", not_dash),
        referer in proptest::collection::vec(any::<u8>(), 0..60).prop_filter("not -", not_dash),
        agent in proptest::collection::vec(any::<u8>(), 0..60).prop_filter("not -", not_dash),
        status in 0u16..1000,
        bytes in any::<u32>(),
    ) {
        let mut line = b"192.0.2.1 - ".to_vec();
        line.extend(esc(&user));
        line.extend_from_slice(b" [01/Mar/2025:10:00:00 +0100] \"");
        line.extend(esc(&request));
        line.extend_from_slice(format!("\" {status:03} {bytes} \"").as_bytes());
        line.extend(esc(&referer));
        line.extend_from_slice(b"\" \"");
        line.extend(esc(&agent));
        line.push(b'"');
        let f = format::compile("combined", &[]).unwrap();
        let r = f.parse(&line, &mut ParseScratch::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded(r.user), Some(user));
        prop_assert_eq!(decoded(r.request), Some(request));
        prop_assert_eq!(decoded(r.referer), Some(referer));
        prop_assert_eq!(decoded(r.user_agent), Some(agent));
        prop_assert_eq!(r.status, Some(status));
        prop_assert_eq!(r.bytes, Some(u64::from(bytes)));
        prop_assert_eq!(r.time_ms, 1_740_819_600_000);
    }

    #[test]
    fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..400)) {
        let ex = extractor();
        let mut keys = KeyScratch::default();
        for f in formats() {
            if let Ok(r) = f.parse(&line, &mut ParseScratch::default()) {
                let _ = ex.extract(&r, &mut keys);
            }
        }
    }

    /// What the store holds is read back without panicking, whatever its
    /// bytes became; whatever reads back is written the same way again.
    #[test]
    fn stored_client_sets_read_back_or_are_refused(
        head in 0u8..4,
        rest in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut bytes = vec![head];
        bytes.extend(rest);
        if let Some(c) = keywatch::usage::Clients::from_bytes(&bytes) {
            let again = keywatch::usage::Clients::from_bytes(&c.to_bytes());
            prop_assert_eq!(again, Some(c));
        }
        let _ = keywatch::usage::Distinct::from_bytes(&bytes);
    }

    #[test]
    fn mutated_access_lines_never_panic(
        cut in 0usize..220,
        flips in proptest::collection::vec((0usize..220, any::<u8>()), 0..8),
    ) {
        let mut line = br#"203.0.113.9 - john doe [01/Mar/2025:10:00:00 +0000] "GET /v1/items?api_key=kw_abcdefghijklmnop&x=%41 HTTP/1.1" 200 12 "https://a.example/p?token=kw_zyxwvutsrqponmlk" "curl/8.5.0" "K3, K4" 0.004 "0.001, 0.002 : 0.001" 10.0.0.1:80"#.to_vec();
        for (at, b) in flips {
            if at < line.len() {
                line[at] = b;
            }
        }
        line.truncate(cut.max(1).min(line.len()));
        let ex = extractor();
        let mut keys = KeyScratch::default();
        for f in formats() {
            if let Ok(r) = f.parse(&line, &mut ParseScratch::default()) {
                let k = ex.extract(&r, &mut keys);
                let n = k.exposures.len();
                prop_assert!(n <= 8);
            }
        }
    }

    #[test]
    fn the_scrubber_masks_every_piece_of_every_value_and_never_panics(
        values in proptest::collection::vec("[a-dA-D0-3/%x\\\\=+_-]{1,40}", 1..5),
        parts in proptest::collection::vec((0usize..5, 0usize..6, 0usize..40, 0usize..40, "[a-dA-D0-3/%x\\\\=+_ &?-]{0,12}"), 0..12),
    ) {
        // Values of a tiny alphabet, so pieces of one turn up in another and
        // around the noise; text made of values, pieces and encodings of them.
        let mut scrub = keywatch::keys::Scrubber::default();
        values.iter().for_each(|v| scrub.add(v.as_bytes()));
        let mut text = String::new();
        for (which, how, from, to, noise) in &parts {
            let v = &values[which % values.len()];
            let (a, b) = ((*from).min(v.len()), (*to).min(v.len()));
            let piece = &v[a.min(b)..a.max(b)];
            text.push_str(noise);
            match how {
                0 | 1 => text.push_str(v),
                2 => text.push_str(piece),
                3 => v.bytes().for_each(|c| text.push_str(&format!("%{c:02X}"))),
                4 => v.bytes().for_each(|c| text.push_str(&format!("%25{c:02X}"))),
                _ => v.bytes().for_each(|c| text.push_str(&format!("\\x{c:02X}"))),
            }
        }
        let out = scrub.scrub(text.as_bytes());
        // What is left of the text between the masks holds no piece of a value.
        for kept in out.split("[REDACTED]") {
            for v in values.iter().filter(|v| v.len() >= 12) {
                for w in v.as_bytes().windows(12) {
                    let w = std::str::from_utf8(w).unwrap();
                    prop_assert!(!kept.contains(w), "{w:?} of {v:?} kept in {out:?} (from {text:?})");
                }
            }
        }
    }

    #[test]
    fn any_format_string_compiles_or_errors(spec in "\\PC{0,80}") {
        let _ = format::compile(&spec, &[]);
    }
}

#[test]
fn key_in_query_followed_by_ampersand_is_found() {
    // gitleaks-style line regexes miss a key that an `&` follows (DETECTION.md §1.3).
    let f = format::compile("combined", &[]).unwrap();
    let key = format!("kw_{}", "Q2x9Lp7vR4tZ8mK1bN6c");
    let line = format!(
        r#"192.0.2.1 - - [01/Mar/2025:10:00:00 +0000] "GET /v1?api%5Fkey={key}&limit=3 HTTP/1.1" 200 1 "-" "-""#
    );
    let r = f
        .parse(line.as_bytes(), &mut ParseScratch::default())
        .unwrap();
    let ex = extractor();
    let mut s = KeyScratch::default();
    let k = ex.extract(&r, &mut s);
    assert_eq!(k.key.map(|k| k.id), Some(ex.key_id(key.as_bytes())));
    assert_eq!(k.exposures.len(), 1);
}

mod episodes {
    use keywatch::detect::RulesConfig;
    use keywatch::detect::ordered::{Event, OrderedDetectors};
    use keywatch::keys::{KeyId, KeyRef, MaskedKey};
    use proptest::prelude::*;

    /// One request: seconds after the previous one, which client, which
    /// key, and how it was answered.
    fn step() -> impl Strategy<Value = (u32, u8, u8, u16)> {
        (
            prop_oneof![4 => 0u32..5, 2 => 5u32..120, 1 => 120u32..7200],
            0u8..6,
            0u8..24,
            prop_oneof![3 => Just(200u16), 2 => Just(401u16), 1 => Just(403u16), 1 => Just(404u16)],
        )
    }

    fn events(steps: &[(u32, u8, u8, u16)]) -> Vec<Event> {
        let mut t = 1_795_132_800_000i64;
        steps
            .iter()
            .map(|&(dt, c, k, status)| {
                t += i64::from(dt) * 1000;
                Event {
                    time_ms: t,
                    // Keys 0–3 work, the rest are guesses; client 5 is IPv6.
                    client: if c == 5 {
                        0x2001_0db8_u128 << 96 | u128::from(k)
                    } else {
                        0xC000_0200 + u128::from(c)
                    },
                    key: KeyRef {
                        id: KeyId([k, 0, 0, 0, 0, 0, 0, 1]),
                        masked: MaskedKey::from_stored("kw_…x"),
                        name: None,
                        revoked: false,
                    },
                    status: if k < 4 && status != 404 { 200 } else { status },
                    ua: u64::from(c),
                }
            })
            .collect()
    }

    fn run(evs: &[Event], advance_at: &[bool]) -> Vec<String> {
        let mut cfg = RulesConfig::default();
        cfg.key_bruteforce.slow_min_keys = 6;
        cfg.key_bruteforce.site_min_keys = 5;
        cfg.key_bruteforce.site_min_clients = 2;
        let mut d = OrderedDetectors::new(&cfg).unwrap();
        for (i, e) in evs.iter().enumerate() {
            d.observe(e);
            // The clock moves on between two requests, as `watch` sees it.
            if advance_at.get(i).copied().unwrap_or(false)
                && let Some(next) = evs.get(i + 1)
            {
                d.advance((e.time_ms + next.time_ms) / 2);
            }
        }
        d.finish();
        let mut out: Vec<String> = d
            .findings(&[])
            .iter()
            .map(|f| {
                format!(
                    "{} {:?} {:?} {} {} {} {:?}",
                    f.rule,
                    f.key.map(|k| k.0),
                    f.client,
                    f.first_ms,
                    f.last_ms,
                    f.count,
                    f.resolved_ms
                )
            })
            .collect();
        out.sort();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whenever the clock is looked at between requests, the findings
        /// are those of one pass over the log; and the episodes of one rule
        /// about one subject never overlap, each ending after its last event.
        #[test]
        fn the_clock_never_changes_a_verdict_and_episodes_do_not_overlap(
            steps in proptest::collection::vec(step(), 1..400),
            ticks in proptest::collection::vec(any::<bool>(), 400),
        ) {
            let evs = events(&steps);
            let once = run(&evs, &[]);
            let ticked = run(&evs, &ticks);
            prop_assert_eq!(&once, &ticked);
            let mut cfg = RulesConfig::default();
            cfg.key_bruteforce.slow_min_keys = 6;
            let mut d = OrderedDetectors::new(&cfg).unwrap();
            evs.iter().for_each(|e| d.observe(e));
            d.finish();
            let mut by_subject: std::collections::BTreeMap<String, Vec<(i64, i64, Option<i64>)>> = Default::default();
            for f in d.findings(&[]) {
                if let Some(r) = f.resolved_ms {
                    prop_assert!(r >= f.last_ms, "{} ends before its last event", f.rule);
                }
                let subject = format!("{} {:?} {:?} {}", f.rule, f.key.map(|k| k.0), f.client, f.severity.as_str());
                by_subject.entry(subject).or_default().push((f.first_ms, f.last_ms, f.resolved_ms));
            }
            for (subject, mut eps) in by_subject {
                eps.sort();
                for w in eps.windows(2) {
                    let end = w[0].2;
                    prop_assert!(end.is_some_and(|e| e <= w[1].0), "{subject}: {:?} overlaps {:?}", w[0], w[1]);
                }
            }
        }
    }
}

proptest! {
    /// Whatever a forwarded-for header holds, the client is the connection
    /// or one of the addresses the header names, and nothing panics.
    #[test]
    fn forwarded_for_gives_the_connection_or_a_named_hop(
        hops in proptest::collection::vec(
            prop_oneof![
                (0u8..=255, 0u8..=255).prop_map(|(a, b)| format!("10.0.{a}.{b}")),
                (0u8..=255, 1u8..=254).prop_map(|(a, b)| format!("198.51.{a}.{b}")),
                Just("unknown".to_string()),
                "[ -~]{0,12}",
            ],
            0..6,
        ),
        from_proxy in any::<bool>(),
    ) {
        use keywatch::usage::distinct::client_tag;
        let p = keywatch::clients::Proxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let remote = client_tag(if from_proxy { b"10.9.9.9" } else { b"203.0.113.1" });
        let header = hops.join(", ");
        let got = p.client(remote, Some(header.as_bytes()), None);
        if !from_proxy {
            prop_assert_eq!(got, remote);
        } else {
            // Every address the header names, in any of its hop forms.
            let named: Vec<u128> = header
                .split(',')
                .flat_map(|h| {
                    let h = h.trim();
                    [h, h.split(':').next().unwrap_or(""), h.trim_start_matches('[').split(']').next().unwrap_or("")]
                })
                .map(|h| client_tag(h.as_bytes()))
                .filter(|t| t >> 127 == 0)
                .collect();
            prop_assert!(got == remote || named.contains(&got), "{header:?} gave {got:x}");
            prop_assert!(got >> 127 == 0, "never a client that is no address");
        }
    }
}
