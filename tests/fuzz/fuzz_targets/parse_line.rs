//! Fuzzes the line parsers and key extraction: no input may panic, and a
//! parsed record's fields must lie inside the line.
#![no_main]

use std::sync::OnceLock;

use keywatch::format::{self, LogFormat, ParseScratch};
use keywatch::keys::{Extractor, KeyScratch, KeySecret, KeySources};
use libfuzzer_sys::fuzz_target;

fn formats() -> &'static (Vec<LogFormat>, Extractor) {
    static F: OnceLock<(Vec<LogFormat>, Extractor)> = OnceLock::new();
    F.get_or_init(|| {
        let keys = vec!["http_x_api_key".to_string()];
        let mut all: Vec<LogFormat> =
            format::presets::NAMES.iter().map(|n| format::compile(n, &keys).expect("preset")).collect();
        all.push(
            format::compile(
                r#"log_format t escape=none '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_api_key" $request_time "$upstream_response_time"';"#,
                &keys,
            )
            .expect("custom format"),
        );
        let sources = KeySources { prefixes: vec!["kw_".into()], remote_user: true, ..KeySources::default() };
        let ex = Extractor::new(&KeySecret::from_bytes(b"fuzzing-secret-0123"), sources, &[]).expect("extractor");
        (all, ex)
    })
}

fuzz_target!(|line: &[u8]| {
    let (all, ex) = formats();
    let mut keys = KeyScratch::default();
    let range = line.as_ptr_range();
    for f in all {
        if let Ok(r) = f.parse(line, &mut ParseScratch::default()) {
            for t in [r.client, r.user, r.request, r.method, r.path, r.query, r.referer, r.user_agent, r.key].into_iter().flatten() {
                let p = t.raw.as_ptr_range();
                if f.name() != "json" && f.name() != "caddy" {
                    assert!(t.raw.is_empty() || (range.start <= p.start && p.end <= range.end));
                }
                let _ = t.decode();
            }
            let _ = ex.extract(&r, &mut keys);
        }
    }
});
