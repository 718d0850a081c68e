//! Output that must not change by accident: the sample day in every report
//! format, byte for byte against `tests/golden/`. Speed and memory work
//! (issue 13) must leave it as it is; a change of output that is meant is
//! made with `KEYWATCH_BLESS=1 cargo test --test golden` and explained in
//! its commit.

mod common;

use common::{Kw, TEST_SECRET, stderr};

#[test]
fn the_sample_day_reads_the_same_in_every_format() {
    let kw = Kw::new();
    let bless = std::env::var_os("KEYWATCH_BLESS").is_some();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/golden");
    let log = std::fs::read_to_string(root.join("samples/access.log")).unwrap();
    let keys: std::collections::BTreeSet<&str> = log
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("kwdemo_"))
        .collect();
    assert!(keys.len() >= 10, "the sample log's demo keys");
    for (format, file) in [
        ("json", "samples.json"),
        ("text", "samples.txt"),
        ("markdown", "samples.md"),
        ("html", "samples.html"),
    ] {
        let mut outputs = Vec::new();
        for threads in ["1", "2"] {
            let o = kw
                .cmd()
                .env("KEYWATCH_KEY_SECRET", TEST_SECRET)
                .args([
                    "--config",
                    "samples/keywatch.toml",
                    "--timezone",
                    "UTC",
                    "scan",
                    "--no-progress",
                    "-j",
                    threads,
                    "-o",
                    format,
                    "samples/access.log",
                ])
                .output()
                .unwrap();
            assert!(o.status.success(), "{format}: {}", stderr(&o));
            outputs.push(o.stdout);
        }
        assert!(
            outputs[0] == outputs[1],
            "{format}: one thread and two differ"
        );
        // No demo key shows, not even 12 characters of one.
        let text = String::from_utf8_lossy(&outputs[0]);
        for k in &keys {
            for piece in k.as_bytes().windows(12) {
                let piece = std::str::from_utf8(piece).unwrap();
                assert!(
                    !text.contains(piece),
                    "{format}: {piece} of a demo key shows"
                );
            }
        }
        let path = dir.join(file);
        if bless {
            std::fs::write(&path, &outputs[0]).unwrap();
            continue;
        }
        let want = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; make it with KEYWATCH_BLESS=1", path.display()));
        if outputs[0] != want {
            let (got, want) = (
                String::from_utf8_lossy(&outputs[0]),
                String::from_utf8_lossy(&want),
            );
            let at = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(got.lines().count().min(want.lines().count()));
            panic!(
                "{format} output of samples/access.log changed at line {}:\n got: {}\nwant: {}",
                at + 1,
                got.lines().nth(at).unwrap_or("(end)"),
                want.lines().nth(at).unwrap_or("(end)")
            );
        }
    }
}
