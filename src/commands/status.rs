//! `keywatch status` and `keywatch summary`: what the store holds.

use std::io::Write;

use chrono::{Duration, NaiveDate};
use serde_json::json;

use super::scan::OutputKind;
use super::{Common, Failure, Setup};
use crate::detect::{Finding, Severity};
use crate::output::daily::{History, KeyBrief};
use crate::output::{self, Report};
use crate::pipeline::Totals;
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
    let store = open(&setup)?;
    let sql = |e: crate::store::StoreError| Failure::Io(e.to_string());
    let checkpoints = store.checkpoints().map_err(sql)?;
    let gaps = store.gaps().map_err(sql)?;
    let zone = &setup.zone;
    let files: Vec<serde_json::Value> = checkpoints
        .iter()
        .map(|c| {
            let size = if c.generation == 0 { std::fs::metadata(&c.stream).map(|m| m.len()).unwrap_or(c.size) } else { c.size };
            let file_gaps: Vec<_> = gaps.iter().filter(|g| g.stream == c.stream).collect();
            json!({
                "file": c.stream,
                "generation": if c.generation == 0 { "current".to_string() } else { format!("rotated {}", c.generation) },
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

/// `keywatch summary --day DAY`: the stored usage of a day, in the schema of
/// `scan --output json`'s `summary` objects, as the text table, Markdown or
/// the HTML report; compared with the stored day before and week before,
/// with the findings the store kept and the key-hygiene lists.
pub fn summary(
    common: &Common,
    day: &str,
    kind: OutputKind,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let setup = Setup::load(common)?;
    let day = parse_day(day, &setup.zone)?;
    let store = open(&setup)?;
    let db = |e: crate::store::StoreError| Failure::Io(e.to_string());
    let (usage, names) = store.day_usage(day).map_err(db)?;
    let mut history = History::default();
    for back in [1, 7] {
        let then = day - Duration::days(back);
        let (u, _) = store.day_usage(then).map_err(db)?;
        if let Some(d) = u.days.into_iter().next() {
            history.days.insert(d.0, d.1);
        }
    }
    for span in store.key_spans(day).map_err(db)? {
        let Ok(id) = span.key_id.parse::<crate::keys::KeyId>() else {
            continue;
        };
        history.seen.insert(id, (span.first, span.last));
        history.known.insert(
            id,
            KeyBrief {
                key_id: span.key_id,
                key: Some(span.masked),
                name: span.name,
            },
        );
    }
    history.skipped = Some(
        store
            .checkpoints()
            .map_err(db)?
            .iter()
            .map(|c| c.skipped)
            .sum(),
    );
    for g in store.gaps().map_err(db)? {
        if setup.zone.day_of(g.at_ms) == day {
            history.gaps += 1;
            history.gap_bytes += g.bytes;
        }
    }
    // Findings the store kept (`watch` records every alert's latest state).
    let findings: Vec<Finding> = store
        .alert_rows(10_000)
        .unwrap_or_default()
        .iter()
        .filter_map(stored_finding)
        .collect();
    let mut buf = Vec::new();
    let report = Report {
        findings: &findings,
        usage: &usage,
        totals: Totals::default(),
        inputs: &[],
        skipped: &[],
        zone: &setup.zone,
        format: "",
        names: &names,
        history: Some(&history),
        rotation_days: setup.config.summary.rotation_days.unwrap_or(90),
    };
    let io = |e: std::io::Error| Failure::Io(e.to_string());
    match kind {
        OutputKind::Json => {
            output::json::render_summaries(&report, &mut buf).map_err(io)?;
            if buf.is_empty() {
                // A day without traffic still has a summary, with nothing in it.
                let empty = json!({ "type": "summary", "day": day.to_string(), "timezone": setup.zone.name(), "keys": [], "keyless": output::json::empty_usage() });
                buf = format!("{empty}\n").into_bytes();
            }
        }
        OutputKind::Text => output::text::render_usage(&report, &mut buf).map_err(io)?,
        OutputKind::Markdown => {
            output::markdown::render(&report.dailies(), &mut buf).map_err(io)?
        }
        OutputKind::Html => output::html::render(&report.dailies(), &mut buf).map_err(io)?,
    }
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Io(format!("standard output: {e}")))
}

/// A stored alert as a finding, for the summary of the days it spans.
fn stored_finding(row: &crate::alert::AlertRow) -> Option<Finding> {
    let a = &row.alert;
    let rule = *crate::detect::RULE_IDS.iter().find(|r| **r == a.rule)?;
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|d| d.timestamp_millis())
    };
    let key = match (&a.key_id, &a.key) {
        (Some(id), Some(masked)) => Some((
            id.parse().ok()?,
            crate::usage::KeyLabel {
                masked: crate::keys::MaskedKey::from_stored(masked),
                name: None,
            },
        )),
        _ => None,
    };
    let severity = match a.severity.as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        _ => Severity::Info,
    };
    Some(Finding {
        rule,
        severity,
        key,
        client: a.client.clone(),
        clients: a.clients,
        place: None,
        first_ms: ms(&a.first_seen)?,
        last_ms: ms(&a.last_seen)?,
        count: a.count,
        message: a.message.clone(),
        evidence: a.evidence.clone(),
        action: "",
        resolved_ms: a.resolved_at.as_deref().and_then(ms),
    })
}
