//! Under attack: 1,000,000 requests, each with a different random key, all
//! rejected, from 50,000 clients that each try 20 keys in a quick burst.
//! Reports throughput, peak memory (VmHWM) and how many attacking clients
//! the brute-force rule still reports.
//!
//! Run: `cargo bench --bench attack`; `-- --generate FILE` only writes the
//! log (`benches/memory.sh` uses it).

mod common;

use std::io::{BufWriter, Write};
use std::time::Instant;

use common::FORMAT;
use keywatch::format;
use keywatch::keys::{Extractor, KeySecret, KeySources};
use keywatch::pipeline::Engine;
use keywatch::source::Input;
use keywatch::source::scan::{ScanOptions, scan};
use keywatch::zone::Zone;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Attacking clients.
const CLIENTS: u64 = 50_000;

/// The flood: 50,000 clients, 20 new random keys each, all rejected.
fn generate(path: &std::path::Path) {
    let (clients, per_client) = (CLIENTS, 20u64);
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for c in 0..clients {
        for i in 0..per_client {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = c * per_client + i;
            let secs = n / 100; // 100 requests a second
            let ip = format!("10.{}.{}.{}", c / 65_536 % 256, c / 256 % 256, c % 256);
            writeln!(
                out,
                "{ip} - - [27/Nov/2026:{:02}:{:02}:{:02} +0000] \"GET /v1/items HTTP/1.1\" 401 61 \"-\" \"attack/1.0\" 0.001 \"rk_{x:016x}{:08x}\"",
                secs / 3600 % 24,
                secs / 60 % 60,
                secs % 60,
                n
            )
            .expect("write");
        }
    }
}

fn main() {
    let dir = std::env::temp_dir().join(format!("keywatch-attack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("attack.log");
    if let Some(i) = std::env::args().position(|a| a == "--generate") {
        let path = std::env::args().nth(i + 1).expect("--generate FILE");
        generate(std::path::Path::new(&path));
        return;
    }
    generate(&path);
    let fields = vec!["http_x_api_key".to_string()];
    let engine = Engine {
        format: format::compile(FORMAT, &fields).expect("format"),
        extractor: Extractor::new(
            &KeySecret::from_bytes(b"attack-benchmark-secret"),
            KeySources {
                fields: fields.clone(),
                ..KeySources::default()
            },
            &[],
        )
        .expect("extractor"),
        zone: Zone::Utc,
        max_line: 256 * 1024,
        rules: keywatch::detect::RulesConfig::default(),
        proxies: Default::default(),
    };
    let before = peak_rss_mb();
    let start = Instant::now();
    let out = scan(
        &engine,
        &[Input::File(path.clone())],
        &[],
        &ScanOptions {
            threads: 1,
            progress: None,
        },
    )
    .expect("scan");
    let secs = start.elapsed().as_secs_f64();
    let findings = out.analyzer.findings(&[]);
    let brute = findings
        .iter()
        .filter(|f| f.rule == "key_bruteforce")
        .count();
    let lines = out.analyzer.totals.lines;
    println!(
        "attack: {lines} requests with distinct rejected keys from {CLIENTS} clients: {:.2} M lines/s on one thread, peak memory {:.0} MB (before the scan {:.0} MB); key_bruteforce raised for {brute} of {CLIENTS} clients",
        lines as f64 / secs / 1e6,
        peak_rss_mb(),
        before
    );
    let _ = std::fs::remove_dir_all(&dir);
}
