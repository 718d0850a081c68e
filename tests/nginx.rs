//! End to end with a real nginx: requests with API keys go through nginx,
//! which logs a key prefix with `map` (the README's setup); the log is
//! rotated with `mv` + `nginx -s reopen` several times under load; the
//! counts keywatch stores must equal the requests that were answered.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Kw, TEST_SECRET, random_key, stderr, stdout, wait_until};
use keywatch::keys::{Extractor, KeySecret, KeySources};

fn nginx_binary() -> Option<String> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn request(port: u16, path: &str, key: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    resp.split_whitespace().nth(1)?.parse().ok()
}

struct Nginx {
    bin: String,
    dir: std::path::PathBuf,
    child: Child,
}

impl Nginx {
    fn signal(&self, s: &str) {
        let out = Command::new(&self.bin)
            .args([
                "-p",
                self.dir.to_str().unwrap(),
                "-c",
                "nginx.conf",
                "-s",
                s,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nginx -s {s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master: it stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn counts_through_a_real_nginx_with_rotation_under_load() {
    let bin = nginx_binary()
        .expect("this test needs nginx (Debian package nginx-light; scripts/test installs it)");
    let kw = Kw::new();
    let dir = kw.path("nginx");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let port = free_port();
    let log = dir.join("logs/access.log");
    let conf = format!(
        r#"daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_x_api_key $api_key_id {{
        "~^(?<kid>.{{1,16}})"  $kid;
        default              "-";
    }}
    log_format keywatch '$remote_addr - $remote_user [$time_local] "$request" '
                        '$status $body_bytes_sent "$http_referer" "$http_user_agent" '
                        '$request_time "$api_key_id"';
    server {{
        listen 127.0.0.1:{port};
        access_log {log} keywatch;
        location / {{ return 200 "ok\n"; }}
        location /denied {{ return 401; }}
    }}
}}
"#,
        d = dir.display(),
        log = log.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(&bin)
        .args(["-p", dir.to_str().unwrap(), "-c", "nginx.conf"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let nginx = Nginx {
        bin,
        dir: dir.clone(),
        child,
    };
    wait_until("nginx to answer", Duration::from_secs(10), || {
        request(port, "/", "warmup").is_some()
    });

    let keys: Vec<String> = (0..4).map(|_| random_key("kwn_", 28)).collect();
    let daemon = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args([
            "--timezone",
            "UTC",
            "watch",
            "-f",
            "keywatch",
            "--poll-interval",
            "50ms",
            "--commit-interval",
            "100ms",
            "--from-beginning",
        ])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Four clients send requests while the log is rotated three times.
    let answered: Vec<BTreeMap<String, u64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                scope.spawn(move || {
                    let mut got = BTreeMap::new();
                    for n in 0..300 {
                        let path = if n % 10 == 0 {
                            "/denied".to_string()
                        } else {
                            format!("/v1/items/{n}?client={i}")
                        };
                        if request(port, &path, k).is_some() {
                            *got.entry(k.clone()).or_insert(0u64) += 1;
                        }
                    }
                    got
                })
            })
            .collect();
        for r in 1..=3 {
            std::thread::sleep(Duration::from_millis(150));
            let rotated = |n: u32| dir.join(format!("logs/access.log.{n}"));
            if rotated(1).exists() {
                std::fs::rename(rotated(1), rotated(2)).unwrap();
            }
            std::fs::rename(&log, rotated(1)).unwrap();
            nginx.signal("reopen");
            eprintln!("rotation {r} done");
        }
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    // The warm-up request carried the key "warmup" (logged as its prefix).
    let ex = Extractor::new(
        &KeySecret::from_bytes(TEST_SECRET.as_bytes()),
        KeySources::default(),
        &[],
    )
    .unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for m in &answered {
        for (k, n) in m {
            *expected
                .entry(ex.key_id(&k.as_bytes()[..16]).to_string())
                .or_default() += n;
        }
    }
    let total: u64 = expected.values().sum();
    assert!(total >= 1000, "most requests are answered ({total})");

    // A field of every key, summed over yesterday and today (a run may cross midnight).
    let per_key = |field: &str| -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for day in ["yesterday", "today"] {
            let o = kw
                .cmd()
                .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
                .args(["--timezone", "UTC", "summary", "--day", day, "-o", "json"])
                .output()
                .unwrap();
            if !o.status.success() {
                return BTreeMap::new();
            }
            let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap_or_default();
            for k in v["keys"].as_array().into_iter().flatten() {
                *all.entry(k["key_id"].as_str().unwrap_or("").to_string())
                    .or_insert(0) += k[field].as_u64().unwrap_or(0);
            }
        }
        all
    };
    let stored = || per_key("requests");
    wait_until(
        "every answered request stored",
        Duration::from_secs(30),
        || {
            let s = stored();
            expected.iter().all(|(k, n)| s.get(k) == Some(n))
        },
    );
    let pid = daemon.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = daemon.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stored();
    for (k, n) in &expected {
        assert_eq!(s.get(k), Some(n), "key {k}");
    }
    // The 401s of /denied were counted for their keys.
    let rejected: u64 = per_key("401").values().sum();
    assert!(rejected >= 100, "401s counted: {rejected}");
    drop(nginx);
}
