//! No allocation per line on the hot path: once a log's keys, clients and
//! endpoints have been seen, reading more lines like them allocates
//! nothing (a counting allocator around the whole analyzer: parsing, key
//! extraction and redaction, usage, every rule).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keywatch::keys::{Extractor, KeySecret, KeySources};
use keywatch::pipeline::{Analyzer, Engine};
use keywatch::zone::Zone;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

const FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time "$http_x_api_key""#;

fn engine() -> Engine {
    let fields = vec!["http_x_api_key".to_string()];
    Engine {
        format: keywatch::format::compile(FORMAT, &fields).unwrap(),
        extractor: Extractor::new(
            &KeySecret::from_bytes(common::TEST_SECRET.as_bytes()),
            KeySources {
                fields,
                ..KeySources::default()
            },
            &[],
        )
        .unwrap(),
        zone: Zone::Utc,
        max_line: 256 * 1024,
        rules: keywatch::detect::RulesConfig::default(),
        proxies: Default::default(),
    }
}

/// Line `i` of a busy API: 200 keys, 500 clients, 50 endpoints (some with
/// query strings), a status mix with rejections, a few user agents; every
/// combination comes back every 1,000 lines. A thousand lines a second,
/// all inside one minute: the measured lines open no new window (a rule's
/// bucket, minute or hour), which allocates once per key and window.
fn line(i: usize, keys: &[String]) -> String {
    let (s, ms) = (10 + i / 1000, i % 1000);
    let paths = [
        "/v1/items",
        "/v1/users/{}/profile",
        "/v2/search?q=shoes&sort=created_at&page={}",
        "/v1/orders/{}",
    ];
    let path = paths[i % 4].replace("{}", &(i % 50).to_string());
    // One line in forty rejected: no client or key crosses a rule's line
    // (the rules' own episodes allocate as they open, which is no line's doing).
    let status = match i / 7 % 40 {
        0..=29 => 200,
        30..=32 => 201,
        33..=35 => 304,
        36 | 37 => 404,
        38 => 401,
        _ => 500,
    };
    format!(
        r#"198.51.{}.{} - - [01/Mar/2025:10:{:02}:{:02} +0000] "GET {path} HTTP/1.1" {status} 512 "https://app.example/p?tab=usage_overview_{}" "client/{}.0" 0.{:03} "{}""#,
        i % 500 / 250,
        i % 250,
        s / 60 % 60,
        s % 60,
        i % 3,
        i % 5,
        ms,
        keys[i % keys.len()]
    )
}

#[test]
fn lines_like_those_before_allocate_nothing() {
    let engine = engine();
    let keys: Vec<String> = (0..200).map(|_| common::random_key("kwa_", 32)).collect();
    let file: Arc<str> = Arc::from("access.log");
    let mut analyzer = Analyzer::new(&engine);
    const WARM: usize = 20_000;
    const MEASURED: usize = 20_000;
    let lines: Vec<String> = (0..WARM + MEASURED).map(|i| line(i, &keys)).collect();
    for (n, l) in lines[..WARM].iter().enumerate() {
        analyzer.line(l.as_bytes(), &file, n as u64 + 1);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for (n, l) in lines[WARM..].iter().enumerate() {
        analyzer.line(l.as_bytes(), &file, (WARM + n) as u64 + 1);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(analyzer.totals.parsed, (WARM + MEASURED) as u64);
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for {MEASURED} lines like those already seen"
    );
}
