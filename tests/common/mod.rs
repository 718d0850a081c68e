//! Helpers shared by the integration tests: running the real binary in an
//! isolated state directory, and test keys made at run time.
#![allow(dead_code)]

pub mod receivers;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Kw {
    pub dir: tempfile::TempDir,
}

impl Kw {
    /// A fresh state directory and an empty configuration file.
    pub fn new() -> Kw {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "").unwrap();
        Kw { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn state(&self) -> PathBuf {
        self.path("state")
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// A private file (0600) holding `value`, as the configuration's
    /// `file:` reference to it: how tests give keywatch a secret setting.
    pub fn secret_file(&self, name: &str, value: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = self.write(name, value);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        format!("file:{}", p.display())
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keywatch"));
        c.env_remove("KEYWATCH_KEY_SECRET")
            .env("KEYWATCH_STATE", self.state())
            .env("KEYWATCH_CONFIG", self.path("config.toml"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A random key made now (never a literal in the repository).
///
/// The body always mixes a capital, a small letter and a digit, as keys
/// from a generator do: a letters-only value is by design not a secret
/// to the URL rules (DETECTION.md R8), and one random body in fifty would
/// otherwise be one.
pub fn random_key(prefix: &str, len: usize) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const CLASSES: [&[u8]; 3] = [
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        b"abcdefghijklmnopqrstuvwxyz",
        b"0123456789",
    ];
    let mut bytes = vec![0u8; len + 6];
    getrandom::fill(&mut bytes).unwrap();
    let (picks, spots) = bytes[len..].split_at(3);
    let mut body: Vec<u8> = bytes[..len]
        .iter()
        .map(|b| ALNUM[usize::from(*b) % ALNUM.len()])
        .collect();
    if len >= CLASSES.len() {
        // One of each class, at three distinct places.
        let mut free: Vec<usize> = (0..len).collect();
        for ((class, pick), spot) in CLASSES.iter().zip(picks).zip(spots) {
            let at = free.swap_remove(usize::from(*spot) % free.len());
            body[at] = class[usize::from(*pick) % class.len()];
        }
    }
    format!("{prefix}{}", String::from_utf8(body).unwrap())
}

/// Every file below `dir`, recursively.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_below(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// One combined-format line with a key field and request time appended
/// (the `keywatch`-like test format used across the tests).
pub fn line(ip: &str, time: &str, target: &str, status: u16, referer: &str, key: &str) -> String {
    format!(
        r#"{ip} - - [{time}] "GET {target} HTTP/1.1" {status} 120 "{referer}" "test-agent/1.0" 0.012 "{key}""#
    )
}

pub const TEST_FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time "$http_x_api_key""#;

/// The secret the daemon tests run with, so they can compute key ids.
pub const TEST_SECRET: &str = "follow-tests-secret-0123456789";

/// Waits for `cond` with a deadline; panics with `what` when it passes.
/// A log line (`/v1/items`) at `secs` seconds after 2025-11-20T00:00:00Z.
pub fn at(secs: i64, ip: &str, status: u16, key: &str) -> String {
    let t = chrono::DateTime::from_timestamp(1_763_596_800 + secs, 0).unwrap();
    format!(
        "{}\n",
        line(
            ip,
            &t.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "/v1/items",
            status,
            "-",
            key
        )
    )
}

pub fn wait_until(what: &str, timeout: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `keywatch watch` running on the test format with [`TEST_SECRET`].
pub struct Daemon<'k> {
    pub kw: &'k Kw,
    pub child: Option<std::process::Child>,
}

impl<'k> Daemon<'k> {
    pub fn start(kw: &'k Kw, pattern: &str, extra: &[&str]) -> Daemon<'k> {
        Daemon::start_with(kw, pattern, extra, &[])
    }

    /// Starts with more environment variables set.
    pub fn start_with(
        kw: &'k Kw,
        pattern: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon<'k> {
        let mut args = vec![
            "--timezone",
            "UTC",
            "watch",
            "--poll-interval",
            "50ms",
            "--commit-interval",
            "100ms",
            "-f",
            TEST_FORMAT,
        ];
        args.extend_from_slice(extra);
        args.push(pattern);
        Daemon::spawn(kw, &args, env)
    }

    /// Starts `keywatch ARGS` (the whole command line) with the test secret,
    /// its standard error in `daemon.err`.
    pub fn spawn(kw: &'k Kw, args: &[&str], env: &[(&str, &str)]) -> Daemon<'k> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(kw.path("daemon.err"))
            .unwrap();
        let child = kw
            .cmd()
            .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
            .envs(env.iter().copied())
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon {
            kw,
            child: Some(child),
        }
    }

    /// SIGTERM, and the daemon must exit 0 within two seconds.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let mut done = None;
        wait_until(
            "the daemon to exit after SIGTERM",
            std::time::Duration::from_secs(2),
            || {
                done = child.try_wait().unwrap();
                done.is_some()
            },
        );
        assert!(
            done.unwrap().success(),
            "daemon exit: {}",
            std::fs::read_to_string(self.kw.path("daemon.err")).unwrap_or_default()
        );
    }

    /// SIGHUP: read the configuration again, reopen files.
    pub fn hup(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status();
    }

    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `keywatch --timezone UTC scan -o json ARGS…` with the test secret: the
/// output objects whose `type` is `kind` (`finding`, `summary`…).
pub fn scan_json(kw: &Kw, args: &[&str], kind: &str) -> Vec<serde_json::Value> {
    let o = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args(["--timezone", "UTC", "scan", "-o", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == kind)
        .collect()
}

/// Lines committed over all files, as `status -o json` says (0 before the
/// store exists).
pub fn committed_lines(kw: &Kw) -> u64 {
    let o = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args(["status", "-o", "json"])
        .output()
        .unwrap();
    serde_json::from_str::<serde_json::Value>(stdout(&o).trim()).map_or(0, |v| {
        v["files"].as_array().map_or(0, |f| {
            f.iter().map(|x| x["lines"].as_u64().unwrap_or(0)).sum()
        })
    })
}

/// The alerts `alerts -o json` lists (none before the store exists).
pub fn alert_list(kw: &Kw) -> Vec<serde_json::Value> {
    let o = kw
        .cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args(["alerts", "-o", "json"])
        .output()
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .ok()
        .and_then(|v| v["alerts"].as_array().cloned())
        .unwrap_or_default()
}
