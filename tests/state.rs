//! The state directory is private and has one writer; the configuration
//! holds no secret and no nonsense:
//!
//! - the directory is 0700 and every file in it 0600 under any umask, looser
//!   modes are tightened (and said once), and a directory that is a symlink,
//!   writable by others or owned by someone else is refused with the fix;
//! - planted symlinks are never followed;
//! - a second writer exits 2 naming the first, while readers still work;
//! - literal secrets (headers, chat webhook URLs, userinfo) are refused, as are
//!   readable `file:` secrets, unbounded or special files, non-http URLs,
//!   and out-of-range values, each naming the file, line, setting and range.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::{Kw, TEST_FORMAT, files_below, line, random_key, stderr, stdout, wait_until};

/// A log of one keyed request.
fn one_line(kw: &Kw) -> String {
    let text = line(
        "192.0.2.1",
        "01/Mar/2025:10:00:01 +0000",
        "/v1/a",
        200,
        "-",
        &random_key("", 32),
    ) + "\n";
    kw.write("a.log", text).display().to_string()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// Runs keywatch under a umask (through the shell, which sets it).
fn with_umask(kw: &Kw, umask: &str, args: &[&str]) -> std::process::Output {
    let mut c = kw.cmd();
    let program = c.get_program().to_owned();
    c.env("KW_PROGRAM", program);
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c")
        .arg(format!("umask {umask}; exec \"$KW_PROGRAM\" \"$@\""))
        .arg("keywatch")
        .args(args);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh.current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

#[test]
fn the_state_directory_and_its_files_are_private_under_any_umask() {
    for umask in ["000", "022"] {
        let kw = Kw::new();
        let log = one_line(&kw);
        // The first use makes the directory, the secret and the store.
        let o = with_umask(&kw, umask, &["scan", "-f", TEST_FORMAT, &log]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = with_umask(
            &kw,
            umask,
            &[
                "silence",
                "add",
                "--rule",
                "key_in_url",
                "--client",
                "192.0.2.1",
                "--for",
                "1h",
                "--comment",
                "t",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let state = kw.state();
        assert_eq!(mode(&state), 0o700, "umask {umask}");
        let files = files_below(&state);
        for name in ["key-secret", "keywatch.db"] {
            assert!(
                files.iter().any(|f| f.ends_with(name)),
                "{name} in {files:?}"
            );
        }
        for f in &files {
            assert_eq!(mode(f), 0o600, "{} under umask {umask}", f.display());
        }
    }
}

#[test]
fn looser_modes_are_tightened_and_said_once() {
    let kw = Kw::new();
    let log = one_line(&kw);
    let o = kw.run(&[
        "silence",
        "add",
        "--rule",
        "key_in_url",
        "--client",
        "192.0.2.1",
        "--for",
        "1h",
        "--comment",
        "t",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let state = kw.state();
    // As an older keywatch (or a careless copy) left them.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        state.join("keywatch.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let o = kw.run(&["scan", "-f", TEST_FORMAT, &log]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("made private to their owner").count(),
        1,
        "{err}"
    );
    assert!(err.contains("keywatch.db (0644)"), "{err}");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("keywatch.db")), 0o600);
    let o = kw.run(&["scan", "-f", TEST_FORMAT, &log]);
    assert!(
        !stderr(&o).contains("made private"),
        "said once: {}",
        stderr(&o)
    );
}

#[test]
fn unsafe_state_directories_are_refused_with_the_fix() {
    let kw = Kw::new();
    let log = one_line(&kw);
    let log = &log;
    let refused = |state: &Path, want: &str| {
        let o = kw
            .cmd()
            .env("KEYWATCH_STATE", state)
            .args(["scan", "-f", TEST_FORMAT, log])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: {}",
            state.display(),
            stderr(&o)
        );
        let err = stderr(&o);
        assert!(
            err.contains(&state.display().to_string()) && err.contains(want),
            "{err}"
        );
        for args in [&["status"][..], &["summary", "--day", "2025-03-01"]] {
            let o = kw
                .cmd()
                .env("KEYWATCH_STATE", state)
                .args(args)
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        }
    };
    let open = kw.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused(&open, "chmod 700");
    let group = kw.path("group");
    std::fs::create_dir(&group).unwrap();
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o770)).unwrap();
    refused(&group, "chmod 700");
    let real = kw.path("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = kw.path("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    refused(&link, "symbolic link");
    // Owned by someone else: as root, a directory given away; otherwise one
    // of root's.
    let foreign = if rustix::process::geteuid().is_root() {
        let d = kw.path("foreign");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
        d
    } else {
        Path::new("/usr/share").to_path_buf()
    };
    refused(&foreign, "belongs to user");
}

#[test]
fn planted_symlinks_are_never_followed() {
    let kw = Kw::new();
    let state = kw.state();
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let victim = kw.write("victim", "precious");
    // Where an older keywatch wrote its temporary secret file.
    std::os::unix::fs::symlink(&victim, state.join("key-secret.tmp")).unwrap();
    let log = one_line(&kw);
    let o = kw.run(&["scan", "-f", TEST_FORMAT, &log]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(
        std::fs::symlink_metadata(state.join("key-secret"))
            .unwrap()
            .is_file()
    );
    // A store or secret that is a symlink is refused, and its target untouched.
    for name in ["keywatch.db", "key-secret"] {
        let kw = Kw::new();
        let state = kw.state();
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        let victim = kw.write("victim", "precious");
        std::os::unix::fs::symlink(&victim, state.join(name)).unwrap();
        let log = kw.write("a.log", "").display().to_string();
        let o = kw.run(&[
            "silence",
            "add",
            "--rule",
            "key_in_url",
            "--client",
            "192.0.2.1",
            "--for",
            "1h",
            "--comment",
            "t",
        ]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("{name} in the state directory is a symbolic link")),
            "{}",
            stderr(&o)
        );
        let o = kw.run(&["scan", "-f", TEST_FORMAT, &log]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }
}

#[test]
fn a_second_writer_exits_2_naming_the_first_while_readers_still_work() {
    let kw = Kw::new();
    let log = one_line(&kw);
    let log = &log;
    let watch = || {
        kw.cmd()
            .args([
                "watch",
                "--from-beginning",
                "--poll-interval",
                "50ms",
                "--commit-interval",
                "100ms",
                "-f",
                TEST_FORMAT,
                log,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = watch();
    wait_until("the first watch to commit", Duration::from_secs(20), || {
        let o = kw.run(&["status", "-o", "json"]);
        stdout(&o).contains("\"lines\":1")
    });
    let second = kw
        .cmd()
        .args(["watch", "--from-beginning", "-f", TEST_FORMAT, log])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    let want = format!(
        "another keywatch (pid {}) is writing to {}",
        first.id(),
        kw.state().display()
    );
    assert!(stderr(&second).contains(&want), "{}", stderr(&second));
    let o = kw.run(&["scan", "--alert", "-f", TEST_FORMAT, log]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // While a daemon holds the store, its write-ahead log and shared memory
    // exist: private too.
    let files = files_below(&kw.state());
    for name in ["keywatch.db-wal", "keywatch.db-shm", "keywatch.lock"] {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "{name} in {files:?}"
        );
    }
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    for args in [
        &["status"][..],
        &["alerts"],
        &["summary", "--day", "2025-03-01"],
    ] {
        let o = kw.run(args);
        assert!(
            o.status.success(),
            "{args:?} while watch runs: {}",
            stderr(&o)
        );
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    assert!(first.wait().unwrap().success());
    // Counted once, by the one writer.
    let o = kw.run(&["status", "-o", "json"]);
    assert!(stdout(&o).contains("\"lines\":1"), "{}", stdout(&o));
    // Released with its holder: the next one runs.
    let mut next = watch();
    wait_until("the next watch to start", Duration::from_secs(20), || {
        std::fs::read_to_string(kw.state().join("keywatch.lock"))
            .is_ok_and(|p| p.trim() == next.id().to_string())
    });
    next.kill().unwrap();
    next.wait().unwrap();
}

#[test]
fn literal_secrets_in_the_configuration_are_refused() {
    let kw = Kw::new();
    let check = |config: &str, want: &str| {
        kw.write("config.toml", config);
        let o = kw.run(&["check"]);
        assert_eq!(o.status.code(), Some(2), "{config}\n{}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains(want), "{config}\n  got: {err}\n want: {want}");
        err
    };
    let secret = kw.secret_file("hook-secret", &random_key("", 32));
    let hook = |rest: &str| {
        format!(
            "[channels.x]\ntype = \"webhook\"\nurl = \"https://siem.example/hook\"\nsecret = \"{secret}\"\n{rest}"
        )
    };
    let bearer = format!("Bearer {}", random_key("", 32));
    let err = check(
        &hook(&format!(
            "[channels.x.headers]\nAuthorization = \"{bearer}\"\n"
        )),
        "line 6: channels.x.headers: Authorization: a header value is a secret",
    );
    assert!(!err.contains(&bearer[7..]), "{err}");
    let live = format!("sk_{}_{}", "live", random_key("", 24));
    let err = check(
        &hook(&format!("[channels.x.headers]\nX-Api-Key = \"{live}\"\n")),
        "channels.x.headers: X-Api-Key",
    );
    assert!(!err.contains(&live), "{err}");
    for kind in ["slack", "discord", "teams"] {
        let url = format!("https://hooks.example.com/services/{}", random_key("", 24));
        let err = check(
            &format!("[channels.c]\ntype = \"{kind}\"\nurl = \"{url}\"\n"),
            &format!("line 3: channels.c.url: a {kind} webhook URL is the credential itself"),
        );
        assert!(!err.contains(&url[20..]), "{err}");
    }
    let slack = format!("https://hooks.slack.com/services/{}", random_key("", 24));
    check(
        &format!("[channels.x]\ntype = \"webhook\"\nurl = \"{slack}\"\nsecret = \"{secret}\"\n"),
        "https://hooks.slack.com URLs are credentials themselves",
    );
    let pass = random_key("", 16);
    let err = check(
        &format!(
            "[channels.x]\ntype = \"webhook\"\nurl = \"https://ops:{pass}@siem.example/h\"\nsecret = \"{secret}\"\n"
        ),
        "a user name or password in the URL is a secret",
    );
    assert!(!err.contains(&pass), "{err}");
    let err = check(
        &format!(
            "[channels.x]\ntype = \"webhook\"\nurl = \"https://siem.example/h?token={pass}\"\nsecret = \"{secret}\"\n"
        ),
        "the URL's `token` parameter carries a secret",
    );
    assert!(!err.contains(&pass), "{err}");
    // Not http(s): refused, and the file is never read.
    let err = check(
        &format!(
            "[channels.x]\ntype = \"webhook\"\nurl = \"file:///etc/passwd\"\nsecret = \"{secret}\"\n"
        ),
        "channels.x.url: file: only http:// and https:// URLs",
    );
    assert!(!err.contains("root:"), "{err}");
    let passwd = kw.secret_file("passwd-copy", "root:x:0:0:root:/root:/bin/bash\n");
    let err = check(
        &format!("[channels.x]\ntype = \"webhook\"\nurl = \"{passwd}\"\nsecret = \"{secret}\"\n"),
        "channels.x.url: only http:// and https:// URLs",
    );
    assert!(!err.contains("root"), "{err}");
    check(
        &format!(
            "[channels.x]\ntype = \"webhook\"\nurl = \"ftp://siem.example/h\"\nsecret = \"{secret}\"\n"
        ),
        "channels.x.url: ftp: only http:// and https:// URLs",
    );
    // A `file:` secret others may read is refused, as ssh refuses such a key.
    let loose = kw.write("loose-secret", random_key("", 32));
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    check(
        &format!(
            "[channels.x]\ntype = \"webhook\"\nurl = \"https://siem.example/h\"\nsecret = \"file:{}\"\n",
            loose.display()
        ),
        "its group or others may read it (mode 0644); run `chmod 600",
    );
    check(
        &format!("[keys]\nkey_secret_file = \"{}\"\n", loose.display()),
        "its group or others may read it",
    );
    // Files the configuration names are bounded, and must be regular files.
    check(
        "[rules.revoked_key_in_use]\nids_file = \"/dev/zero\"\n",
        "/dev/zero is not a regular file",
    );
    check(
        "[channels.x]\ntype = \"webhook\"\nurl = \"https://siem.example/h\"\nsecret = \"file:/dev/zero\"\n",
        "/dev/zero is not a regular file",
    );
    let big = kw.write("big-secret", "x".repeat(100_000));
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
    check(
        &format!(
            "[channels.x]\ntype = \"webhook\"\nurl = \"https://siem.example/h\"\nsecret = \"file:{}\"\n",
            big.display()
        ),
        "100000 bytes, more than the 65536",
    );
    // And the same settings with references are accepted.
    let url = kw.secret_file(
        "url",
        &format!("https://hooks.slack.com/services/{}", random_key("", 24)),
    );
    let header = kw.secret_file("header", &bearer);
    kw.write("config.toml", format!("[channels.c]\ntype = \"slack\"\nurl = \"{url}\"\n[channels.x]\ntype = \"webhook\"\nurl = \"https://siem.example/h\"\nsecret = \"{secret}\"\n[channels.x.headers]\nAuthorization = \"{header}\"\n"));
    let o = kw.run(&["check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("slack → https://hooks.slack.com ("),
        "{}",
        stdout(&o)
    );
}

#[test]
fn out_of_range_values_are_refused_naming_file_line_setting_and_range() {
    let kw = Kw::new();
    for (config, want) in [
        (
            "[channels.m]\ntype = \"email\"\nhost = \"localhost\"\nport = 0\nfrom = \"k@example.com\"\nto = [\"a@example.com\"]\n",
            "line 4: channels.m.port: 0 is out of range; use 1 to 65535",
        ),
        (
            "[channels.m]\ntype = \"email\"\nhost = \"relay\\r\\nRCPT TO:<x@evil.example>\"\nfrom = \"k@example.com\"\nto = [\"a@example.com\"]\n",
            "line 3: channels.m.host: holds a line break",
        ),
        (
            "[rules.key_rate_spike]\nfactor = nan\n",
            "line 2: rules.key_rate_spike.factor: NaN is out of range",
        ),
        (
            "[rules.key_rate_spike]\nfactor = -1.0\n",
            "line 2: rules.key_rate_spike.factor: -1 is out of range",
        ),
        (
            "[rules.rejected_key_repeated]\nmin_share = 2.0\n",
            "line 2: rules.rejected_key_repeated.min_share: 2 is out of range; use a number more than 0 up to 1",
        ),
        (
            "[rules.rejected_key_repeated]\nwindow_minutes = 0\n",
            "line 2: rules.rejected_key_repeated.window_minutes: 0 is out of range; use 1 to 10080",
        ),
        (
            "[alerts]\nretry_initial = \"30m\"\nretry_max = \"10s\"\n",
            "line 3: alerts.retry_max: retry_initial (30m) is above retry_max (10s)",
        ),
        (
            "[keys]\nprefixes = [\"\"]\n",
            "line 2: keys.prefixes: \"\": a prefix is 1 to 24 printable characters",
        ),
        (
            "[rules.key_bruteforce]\ncapacity = 0\n",
            "line 2: rules.key_bruteforce.capacity: 0 is out of range; use 1 to 10000",
        ),
        (
            "[keys]\nlogged_prefix_length = 0\n",
            "line 2: keys.logged_prefix_length: 0 is out of range; use 4 to 256",
        ),
    ] {
        kw.write("config.toml", config);
        let o = kw.run(&["check"]);
        assert_eq!(o.status.code(), Some(2), "{config}");
        let err = stderr(&o);
        let file = kw.path("config.toml").display().to_string();
        assert!(
            err.contains(&format!("config file {file}: {want}")),
            "{config}\n  got: {err}\n want: {want}"
        );
        // `scan` refuses it the same way, before reading any log.
        let o = kw.run(&["scan", "samples/access.log"]);
        assert_eq!(o.status.code(), Some(2), "{config}");
    }
}
