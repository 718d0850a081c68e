//! Throughput of `keywatch scan`'s engine on a realistic generated log.
//!
//! `cargo bench --bench throughput` generates 1,000,000 lines in a temporary
//! file and reports lines per second on one thread and on all cores.
//! `cargo bench --bench throughput -- --floor FILE` counts the requests per
//! key of FILE the fastest simple way (the floor of `benches/vs_mawk.sh`).
//! `cargo bench --bench throughput -- --generate FILE [--lines N]` only writes
//! the log (benches/vs_mawk.sh uses it to compare against mawk).
//!
//! The log: the `keywatch`-style format (combined + $request_time +
//! "$http_x_api_key"), 5,000 keys with Zipf popularity (s = 1.1), 100,000
//! client addresses, a realistic status mix, one request in a thousand with
//! its key in the query string, nginx `\xHH` escapes in some user agents and
//! referers, keyless health checks.

mod common;

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use common::{FORMAT, Rng};
use keywatch::format;
use keywatch::keys::{Extractor, KeySecret, KeySources};
use keywatch::pipeline::Engine;
use keywatch::source::Input;
use keywatch::source::scan::{ScanOptions, scan};
use keywatch::zone::Zone;

fn generate(path: &PathBuf, lines: u64) -> std::io::Result<u64> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let keys: Vec<String> = (0..5000)
        .map(|_| {
            let body: String = (0..32)
                .map(|_| ALNUM[rng.below(62) as usize] as char)
                .collect();
            format!("bk_{body}")
        })
        .collect();
    let weights: Vec<f64> = (1..=keys.len())
        .map(|r| 1.0 / (r as f64).powf(1.1))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        "python-requests/2.32.3",
        "Go-http-client/1.1",
        "okhttp/4.12.0",
        "curl/8.5.0",
        "Mozilla/5.0 (Linux; Android 14; caf\\xC3\\xA9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
    ];
    let endpoints = [
        "/v1/invoices",
        "/v1/customers",
        "/v1/charges",
        "/v1/items",
        "/v1/reports/daily",
        "/v2/search",
    ];
    let statuses = [
        (200, 820),
        (201, 40),
        (204, 20),
        (304, 40),
        (400, 15),
        (401, 20),
        (403, 8),
        (404, 25),
        (429, 12),
        (500, 8),
        (502, 4),
    ];
    let status_total: u64 = statuses.iter().map(|s| s.1).sum();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut bytes = 0u64;
    let mut line = String::with_capacity(512);
    for i in 0..lines {
        line.clear();
        let secs = 1_764_201_600 + i * 86_400 / lines.max(1);
        let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
        let day = 27 + (secs - 1_764_201_600) / 86_400;
        let ip = rng.below(100_000);
        let ip = format!(
            "{}.{}.{}.{}",
            10 + ip % 200,
            ip / 200 % 250,
            ip / 50_000 % 250,
            1 + ip % 254
        );
        let u = rng.unit();
        let key = &keys[cdf.partition_point(|c| *c < u).min(keys.len() - 1)];
        let keyless = rng.below(20) == 0;
        let mut st = rng.below(status_total);
        let status = statuses
            .iter()
            .find(|(_, w)| {
                if st < *w {
                    true
                } else {
                    st -= w;
                    false
                }
            })
            .map_or(200, |s| s.0);
        let ep = endpoints[rng.below(endpoints.len() as u64) as usize];
        let target = if keyless {
            "/healthz".to_string()
        } else if rng.below(1000) == 0 {
            format!("{ep}?api_key={key}&limit=50")
        } else if rng.below(3) == 0 {
            format!(
                "{ep}/{}?page={}&sort=created_at",
                rng.below(1_000_000),
                rng.below(20)
            )
        } else {
            format!("{ep}/{}", rng.below(1_000_000))
        };
        let referer = match rng.below(10) {
            0 => "https://app.example.com/dashboard?tab=\\x22usage\\x22",
            1..=3 => "https://app.example.com/",
            _ => "-",
        };
        let agent = agents[rng.below(agents.len() as u64) as usize];
        let rt = rng.below(800) as f64 / 1000.0;
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            "{ip} - - [{day:02}/Nov/2026:{h:02}:{m:02}:{s:02} +0000] \"GET {target} HTTP/1.1\" {status} {} \"{referer}\" \"{agent}\" {rt:.3} \"{}\"",
            rng.below(20_000),
            if keyless { "-" } else { key.as_str() }
        );
        bytes += line.len() as u64;
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(bytes)
}

fn engine() -> Engine {
    let fields = vec!["http_x_api_key".to_string()];
    let sources = KeySources {
        fields: fields.clone(),
        ..KeySources::default()
    };
    Engine {
        format: format::compile(FORMAT, &fields).expect("bench format compiles"),
        extractor: Extractor::new(
            &KeySecret::from_bytes(b"benchmark-secret-0123456789"),
            sources,
            &[],
        )
        .expect("extractor"),
        zone: Zone::Utc,
        max_line: 256 * 1024,
        rules: keywatch::detect::RulesConfig::default(),
        proxies: Default::default(),
    }
}

/// The floor a per-key count cannot beat: read the file in large blocks,
/// split lines with memchr, take the last quoted field (the key) and count
/// it in a hash map. `benches/vs_mawk.sh` times it beside mawk and keywatch.
fn floor(path: &PathBuf) {
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("open the log");
    let mut counts: keywatch::hash::FastMap<Vec<u8>, u64> = Default::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut have = 0;
    loop {
        let n = f.read(&mut buf[have..]).expect("read the log");
        let end = have + n;
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[start..end]) {
            let line = &buf[start..start + nl];
            start += nl + 1;
            let key = match memchr::memrchr(b'"', line) {
                Some(q) => match memchr::memrchr(b'"', &line[..q]) {
                    Some(p) => &line[p + 1..q],
                    None => &[][..],
                },
                None => &[][..],
            };
            match counts.get_mut(key) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(key.to_vec(), 1);
                }
            }
        }
        buf.copy_within(start..end, 0);
        have = end - start;
        if n == 0 {
            break;
        }
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
    println!("{} keys", counts.len());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let lines: u64 = opt("--lines")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    if let Some(path) = opt("--floor") {
        floor(&PathBuf::from(&path));
        return;
    }
    if let Some(path) = opt("--generate") {
        let bytes = generate(&PathBuf::from(&path), lines).expect("write the generated log");
        eprintln!("wrote {lines} lines, {bytes} bytes to {path}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("keywatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("access.log");
    let bytes = generate(&path, lines).expect("write the generated log");
    let engine = engine();
    // Where the time goes: splitting lines alone, then parsing them too.
    let data = std::fs::read(&path).expect("read the generated log");
    for parse in [false, true] {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            let mut scratch = keywatch::format::ParseScratch::default();
            let mut ok = 0u64;
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                ok += u64::from(!parse || engine.format.parse(line, &mut scratch).is_ok());
            }
            assert_eq!(ok, lines);
            best = best.min(start.elapsed().as_secs_f64());
        }
        let what = if parse {
            "split + parse"
        } else {
            "split lines only"
        };
        println!(
            "{what}, 1 thread: {:.2} M lines/s",
            lines as f64 / best / 1e6
        );
    }
    drop(data);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [1, cores] {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            let out = scan(
                &engine,
                &[Input::File(path.clone())],
                &[],
                &ScanOptions {
                    threads,
                    progress: None,
                },
            )
            .expect("scan");
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(out.analyzer.totals.parsed, lines);
            best = best.min(secs);
        }
        println!(
            "scan, {threads} thread(s): {lines} lines in {best:.3} s = {:.2} M lines/s, {:.0} MB/s",
            lines as f64 / best / 1e6,
            bytes as f64 / best / 1e6
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
