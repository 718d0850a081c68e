//! Faults are loud, and `watch` survives its own reload: a log it cannot
//! read, a path that is not a file or has gone missing, a store deleted
//! underneath, a full disk and a failing final commit each give one clear
//! error naming the file and the fix, an entry in `status`, `/healthz`
//! answering 503 with the reason and a metric; a SIGHUP with a broken
//! configuration is reported and the old one kept, with what the rules
//! learned.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Kw, TEST_FORMAT, TEST_SECRET, line, random_key, stderr, stdout, wait_until};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// `watch` with a metrics port, standard error kept in `watch.err`.
fn watch(kw: &Kw, port: u16, extra: &[&str], target: &str) -> Child {
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
    let addr = format!("127.0.0.1:{port}");
    args.extend(["--metrics-listen", &addr]);
    args.extend_from_slice(extra);
    args.push(target);
    kw.cmd()
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(kw.path("watch.err")).unwrap())
        .spawn()
        .unwrap()
}

/// Waits for `cond`; on a timeout the failure shows what the daemon said.
fn wait(kw: &Kw, what: &str, cond: impl FnMut() -> bool) {
    let kw_said = said(kw);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(what, LONG, cond)
    }));
    if r.is_err() {
        panic!(
            "timed out waiting for {what}; watch said:\n{}\n(before: {kw_said})",
            said(kw)
        );
    }
}

fn said(kw: &Kw) -> String {
    std::fs::read_to_string(kw.path("watch.err")).unwrap_or_default()
}

fn status(kw: &Kw) -> Value {
    let o = kw.run(&["--timezone", "UTC", "status", "-o", "json"]);
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut done = None;
    wait_until("watch to exit", LONG, || {
        done = child.try_wait().unwrap();
        done.is_some()
    });
    done.unwrap()
}

fn lines(n: usize, k: &str, from: usize) -> String {
    (from..from + n)
        .map(|i| {
            let t = format!("27/Nov/2026:10:{:02}:{:02} +0000", i / 60 % 60, i % 60);
            line("192.0.2.7", &t, &format!("/v1/items/{i}"), 200, "-", k) + "\n"
        })
        .collect()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// The fault is said once on standard error, shown by `status`, makes
/// `/healthz` answer 503 with the reason, and has a metric.
fn assert_loud(kw: &Kw, port: u16, kind: &str, words: &str) {
    wait(kw, &format!("/healthz to say {kind}"), || {
        http_get(port, "/healthz")
            .is_some_and(|h| h.starts_with("HTTP/1.1 503") && h.contains(words))
    });
    let err = said(kw);
    assert_eq!(err.matches(words).count(), 1, "said once: {err}");
    let s = status(kw);
    let faults = s["faults"].as_array().cloned().unwrap_or_default();
    assert!(
        faults
            .iter()
            .any(|f| f["kind"] == kind && f["message"].as_str().is_some_and(|m| m.contains(words))),
        "status: {s}"
    );
    let text = stdout(&kw.run(&["status"]));
    assert!(text.contains(&format!("Fault ({kind})")), "{text}");
    let metrics = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains(&format!("keywatch_faults{{kind=\"{kind}\"")),
        "{metrics}"
    );
    assert!(metrics.contains("keywatch_healthy 0"), "{metrics}");
}

#[test]
fn a_log_that_cannot_be_read_names_the_file_and_the_fix() {
    // Permission is only ever denied to someone other than root: the daemon
    // runs as nobody, with a state directory of its own.
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs keywatch as another user; run the suite as root (as CI does)"
    );
    let kw = Kw::new();
    std::fs::set_permissions(kw.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = kw.state();
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(
        kw.path("config.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let log = kw.path("access.log");
    std::fs::write(&log, lines(3, &random_key("kwf_", 24), 0)).unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port();
    let bin = env!("CARGO_BIN_EXE_keywatch");
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            bin,
        ])
        .args([
            "--timezone",
            "UTC",
            "watch",
            "--poll-interval",
            "50ms",
            "--commit-interval",
            "100ms",
            "--from-beginning",
        ])
        .args([
            "-f",
            TEST_FORMAT,
            "--metrics-listen",
            &addr,
            log.to_str().unwrap(),
        ])
        .env("KEYWATCH_STATE", &state)
        .env("KEYWATCH_CONFIG", kw.path("config.toml"))
        .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(kw.path("watch.err")).unwrap())
        .spawn()
        .expect("setpriv (util-linux) runs keywatch as nobody");
    assert_loud(&kw, port, "unreadable", "usermod -aG adm");
    assert!(
        said(&kw).contains(&log.display().to_string()),
        "{}",
        said(&kw)
    );
    // Readable again: the fault clears and the lines are counted.
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
    wait(&kw, "/healthz ok again", || {
        http_get(port, "/healthz").is_some_and(|h| h.starts_with("HTTP/1.1 200"))
    });
    wait(&kw, "the lines counted", || {
        status(&kw)["files"][0]["lines"] == 3
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_path_that_is_not_a_file_or_is_missing_is_a_fault() {
    let kw = Kw::new();
    let dir_log = kw.path("dir.log");
    std::fs::create_dir(&dir_log).unwrap();
    let port = free_port();
    let child = watch(&kw, port, &[], dir_log.to_str().unwrap());
    assert_loud(&kw, port, "not_regular", "not a regular file");
    stop(child);

    let kw = Kw::new();
    let missing = kw.path("later.log");
    let port = free_port();
    let child = watch(
        &kw,
        port,
        &["--missing-grace", "300ms"],
        missing.to_str().unwrap(),
    );
    assert_loud(&kw, port, "missing", "does not exist");
    // It appears: read from its start, and the fault is gone.
    append(&missing, &lines(4, &random_key("kwf_", 24), 0));
    wait(&kw, "the new file counted", || {
        status(&kw)["files"][0]["lines"] == 4
    });
    wait(&kw, "/healthz ok again", || {
        http_get(port, "/healthz").is_some_and(|h| h.starts_with("HTTP/1.1 200"))
    });
    assert!(stop(child).success());
}

#[test]
fn a_store_deleted_underneath_is_a_fault_and_the_final_commit_fails_loudly() {
    let kw = Kw::new();
    let log = kw.path("access.log");
    append(&log, &lines(5, &random_key("kwf_", 24), 0));
    let port = free_port();
    let child = watch(&kw, port, &["--from-beginning"], log.to_str().unwrap());
    wait(&kw, "5 lines counted", || {
        status(&kw)["files"][0]["lines"] == 5
    });
    std::fs::remove_file(kw.state().join("keywatch.db")).unwrap();
    append(&log, &lines(2, &random_key("kwf_", 24), 5));
    assert_loud(&kw, port, "store", "was deleted while keywatch ran");
    // The last commit cannot be made: the exit status says so.
    let status = stop(child);
    assert_eq!(status.code(), Some(1), "{}", said(&kw));
    assert!(
        said(&kw).contains("the final commit failed"),
        "{}",
        said(&kw)
    );
}

/// A tmpfs of `size` at `dir`, unmounted when dropped.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount (util-linux) makes a small filesystem to fill");
        assert!(
            ok.success(),
            "mounting a tmpfs needs root; run the suite as root (as CI does)"
        );
        Mount(dir.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_fault_retried_on_a_timer_and_a_failed_final_commit_exits_non_zero() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test mounts a filesystem; run the suite as root (as CI does)"
    );
    let kw = Kw::new();
    let _mount = Mount::tmpfs(&kw.state(), "2m");
    let log = kw.path("access.log");
    let k = random_key("kwf_", 24);
    append(&log, &lines(10, &k, 0));
    let port = free_port();
    let child = watch(&kw, port, &["--from-beginning"], log.to_str().unwrap());
    wait(&kw, "10 lines counted", || {
        status(&kw)["files"][0]["lines"] == 10
    });
    // Fill the disk.
    let filler = kw.state().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    {
        use std::io::Write;
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
    }
    drop(f);
    append(&log, &lines(300, &k, 10));
    wait(&kw, "/healthz to report the failing commit", || {
        http_get(port, "/healthz").is_some_and(|h| h.starts_with("HTTP/1.1 503"))
    });
    let metrics = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("keywatch_faults{kind=\"commit\""),
        "{metrics}"
    );
    assert!(
        !metrics.contains("keywatch_commit_failures_total 0"),
        "{metrics}"
    );
    // Room again: the commit is retried on its timer (no new line needed).
    std::fs::remove_file(&filler).unwrap();
    wait(&kw, "the 310 lines committed", || {
        status(&kw)["files"][0]["lines"] == 310
    });
    assert!(
        said(&kw).contains("committing works again"),
        "{}",
        said(&kw)
    );
    // Full again when the daemon stops: its exit status says the last commit failed.
    let mut f = std::fs::File::create(&filler).unwrap();
    {
        use std::io::Write;
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
    }
    drop(f);
    append(&log, &lines(300, &k, 310));
    wait(&kw, "the daemon to fail a commit", || {
        http_get(port, "/healthz").is_some_and(|h| h.starts_with("HTTP/1.1 503"))
    });
    let st = stop(child);
    assert_ne!(st.code(), Some(0), "{}", said(&kw));
    assert!(
        said(&kw).contains("the final commit failed"),
        "{}",
        said(&kw)
    );
    std::fs::remove_file(&filler).unwrap();
}

#[test]
fn sighup_with_a_broken_configuration_keeps_the_old_one_and_what_the_rules_learned() {
    let kw = Kw::new();
    let log = kw.path("access.log");
    std::fs::write(&log, "").unwrap();
    let port = free_port();
    // The daemon's own configuration file (`status` reads the default one).
    let conf = kw.write("daemon.toml", "");
    let child = watch(
        &kw,
        port,
        &["--from-beginning", "--config", conf.to_str().unwrap()],
        log.to_str().unwrap(),
    );
    wait(&kw, "the file followed", || {
        status(&kw)["files"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    });
    let hup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
    };
    // Three different rejected keys from one client: not yet a brute force.
    let guess = |n: usize, from: usize| -> String {
        (from..from + n)
            .map(|i| {
                line(
                    "198.51.100.9",
                    &format!("27/Nov/2026:11:00:{i:02} +0000"),
                    "/v1/items",
                    401,
                    "-",
                    &random_key("kwg_", 24),
                ) + "\n"
            })
            .collect()
    };
    append(&log, &guess(3, 0));
    wait(&kw, "3 lines counted", || {
        status(&kw)["files"][0]["lines"] == 3
    });
    kw.write(
        "daemon.toml",
        "[rules.key_bruteforce]\ncapacity = \"five\"\n",
    );
    hup();
    wait(&kw, "the refused reload said", || {
        said(&kw).contains("SIGHUP: the configuration was not changed")
    });
    assert!(said(&kw).contains("line 2"), "{}", said(&kw));
    wait(&kw, "the reload metric at 0", || {
        http_get(port, "/metrics")
            .is_some_and(|m| m.contains("keywatch_config_last_reload_successful 0"))
    });
    // Still following, with the old configuration.
    append(&log, &lines(2, &random_key("kwf_", 24), 0));
    wait(&kw, "5 lines counted", || {
        status(&kw)["files"][0]["lines"] == 5
    });
    kw.write(
        "daemon.toml",
        "[rules.key_bruteforce]\ncapacity = 5\nleak_seconds = 10\n",
    );
    hup();
    wait(&kw, "the reload metric at 1", || {
        http_get(port, "/metrics")
            .is_some_and(|m| m.contains("keywatch_config_last_reload_successful 1"))
    });
    // Three more guesses: six in all, across the reload, overflow the bucket.
    append(&log, &guess(3, 3));
    wait(&kw, "the brute force found", || {
        said(&kw).contains("key_bruteforce client 198.51.100.9")
    });
    assert!(stop(child).success(), "{}", said(&kw));
    let _ = stderr;
}
