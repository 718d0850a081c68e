//! `keywatch status` and `keywatch summary`: what the store holds.

use std::io::Write;

use chrono::{Duration, NaiveDate};
use serde_json::json;

use super::scan::OutputKind;
use super::{Common, Failure, Setup};
use crate::store::Store;

pub(crate) fn open(setup: &Setup) -> Result<Store, Failure> {
    match Store::open_existing(&setup.state_dir) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Failure::Usage(format!(
            "no store in {}: nothing has been watched there yet (run keywatch watch, or pass --state)",
            setup.state_dir.display()
        ))),
        Err(e) => Err(Failure::Usage(e.to_string())),
    }
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Io(format!("standard output: {e}")))
}

/// `keywatch status`: every followed file and the store.
pub fn status(common: &Common, kind: OutputKind, out: &mut dyn Write) -> Result<(), Failure> {
    let setup = Setup::load(common)?;
    let store = match open(&setup) {
        Ok(s) => s,
        Err(e) => {
            // The store may be gone under a running daemon: say what it says.
            if let Some(faults) = daemon_faults(&setup.state_dir).filter(|f| !f.is_empty()) {
                let text = match kind {
                    OutputKind::Json => format!(
                        "{}\n",
                        json!({"type": "status", "store": null, "watching": true, "faults": faults})
                    ),
                    _ => faults
                        .iter()
                        .map(|f| {
                            format!(
                                "Fault ({}): {}\n",
                                f["kind"].as_str().unwrap_or(""),
                                f["message"].as_str().unwrap_or("")
                            )
                        })
                        .collect(),
                };
                write_out(out, &text)?;
            }
            return Err(e);
        }
    };
    let sql = |e: crate::store::StoreError| Failure::Io(e.to_string());
    // Records of files read and let go, or held and never read, are the
    // follower's memory, not files being followed.
    let checkpoints: Vec<_> = store
        .checkpoints()
        .map_err(sql)?
        .into_iter()
        .filter(|c| c.generation >= 0)
        .collect();
    let faults = daemon_faults(&setup.state_dir);
    let gaps = store.gaps().map_err(sql)?;
    let zone = &setup.zone;
    let files: Vec<serde_json::Value> = checkpoints
        .iter()
        .map(|c| {
            let size = if c.generation == 0 { std::fs::metadata(&c.stream).map(|m| m.len()).unwrap_or(c.size) } else { c.size };
            let file_gaps: Vec<_> = gaps.iter().filter(|g| g.stream == c.stream).collect();
            let waiting = c.absent_since_ms.is_some();
            json!({
                "file": c.stream,
                "generation": if waiting { "waiting for the file".to_string() } else if c.generation == 0 { "current".to_string() } else { format!("rotated {}", c.generation) },
                "format": c.format,
                "offset": c.offset,
                "size": size,
                "lag_bytes": size.saturating_sub(c.offset),
                "lines": c.lines,
                "parsed": c.parsed,
                "skipped": c.skipped,
                "last_line": c.last_line_ms.map(|ms| zone.rfc3339(ms)),
                "gaps": file_gaps.len(),
                "gap_bytes": file_gaps.iter().map(|g| g.bytes).sum::<u64>(),
            })
        })
        .collect();
    let gap_list: Vec<_> = gaps
        .iter()
        .map(|g| json!({ "file": g.stream, "reason": g.reason, "bytes": g.bytes, "at": zone.rfc3339(g.at_ms) }))
        .collect();
    let v = json!({
        "type": "status",
        "store": store.path().display().to_string(),
        "store_bytes": store.size_bytes(),
        "files": files,
        "gaps": gap_list,
        "watching": faults.is_some(),
        "faults": faults.clone().unwrap_or_default(),
    });
    match kind {
        OutputKind::Json => write_out(out, &format!("{v}\n")),
        OutputKind::Text | OutputKind::Markdown | OutputKind::Html => {
            let mut s = format!(
                "Store: {} ({} bytes)\n",
                store.path().display(),
                store.size_bytes()
            );
            if checkpoints.is_empty() {
                s.push_str("No files followed yet.\n");
            }
            match &faults {
                None => s.push_str("No keywatch watch is running on this state directory.\n"),
                Some(f) if f.is_empty() => {
                    s.push_str("keywatch watch is running; nothing is wrong.\n")
                }
                Some(f) => {
                    for fault in f {
                        s.push_str(&format!(
                            "Fault ({}): {}\n",
                            fault["kind"].as_str().unwrap_or(""),
                            fault["message"].as_str().unwrap_or("")
                        ));
                    }
                }
            }
            for f in &files {
                s.push_str(&format!(
                    "{} ({}): offset {} of {} bytes, lag {} bytes, {} lines ({} parsed, {} skipped), last line {}, {} gaps\n",
                    f["file"].as_str().unwrap_or(""),
                    f["generation"].as_str().unwrap_or(""),
                    f["offset"],
                    f["size"],
                    f["lag_bytes"],
                    f["lines"],
                    f["parsed"],
                    f["skipped"],
                    f["last_line"].as_str().unwrap_or("-"),
                    f["gaps"],
                ));
            }
            for g in &gaps {
                s.push_str(&format!(
                    "Gap: {}: {} bytes at {}: {}\n",
                    g.stream,
                    g.bytes,
                    zone.rfc3339(g.at_ms),
                    g.reason
                ));
            }
            write_out(out, &s)
        }
    }
}

/// Parses `YYYY-MM-DD`, `today` or `yesterday` (in the configured zone).
pub fn parse_day(s: &str, zone: &crate::zone::Zone) -> Result<NaiveDate, Failure> {
    let now = chrono::Utc::now().timestamp_millis();
    let today = zone.day_of(now);
    match s {
        "today" => Ok(today),
        "yesterday" => Ok(today - Duration::days(1)),
        _ => NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
            Failure::Usage(format!(
                "--day {s:?}: expected YYYY-MM-DD, today or yesterday"
            ))
        }),
    }
}

/// What the running `watch` says is wrong (its health file), or `None`
/// when no `watch` holds the state directory (the file is then stale).
fn daemon_faults(state: &std::path::Path) -> Option<Vec<serde_json::Value>> {
    let lock = std::fs::File::open(state.join(crate::state::LOCK_FILE)).ok()?;
    match lock.try_lock_shared() {
        // Nobody holds it: no daemon.
        Ok(()) => None,
        Err(_) => {
            let text =
                std::fs::read_to_string(state.join(super::watch::HEALTH_FILE)).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            Some(v["faults"].as_array().cloned().unwrap_or_default())
        }
    }
}
