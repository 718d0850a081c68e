//! `--output json`: one JSON object per line. The schema (documented in the
//! README) only ever grows: objects of `"type"` `finding`, then `summary` (one
//! per calendar day), then `totals`.

use std::io::{self, Write};

use serde_json::{Value, json};

use super::Report;
use crate::keys::KeyId;
use crate::usage::{KeyLabel, KeyUsage};
use crate::zone::Zone;

fn usage_json(u: &KeyUsage, zone: &Zone) -> Value {
    let latency = (!u.latency.is_empty()).then(|| {
        let q = |p| u.latency.quantile(p).map(|ms| f64::from(ms) / 1000.0);
        json!({ "p50": q(0.5), "p95": q(0.95), "p99": q(0.99) })
    });
    json!({
        "requests": u.requests,
        "status": {
            "1xx": u.classes[0], "2xx": u.classes[1], "3xx": u.classes[2],
            "4xx": u.classes[3], "5xx": u.classes[4], "other": u.classes[5],
        },
        "401": u.s401,
        "403": u.s403,
        "429": u.s429,
        "rejected": u.rejected(),
        "bytes": u.bytes,
        "request_time": latency,
        "clients": u.clients.count(),
        "clients_estimated": u.clients.is_estimated(),
        "first_seen": (u.requests > 0).then(|| zone.rfc3339(u.first_ms)),
        "last_seen": (u.requests > 0).then(|| zone.rfc3339(u.last_ms)),
    })
}

fn key_json(report: &Report<'_>, id: KeyId, label: Option<&KeyLabel>, u: &KeyUsage) -> Value {
    let mut v = usage_json(u, report.zone);
    if let Value::Object(m) = &mut v {
        m.insert("key_id".into(), json!(id.to_string()));
        m.insert("key".into(), json!(label.map(|l| l.masked.to_string())));
        m.insert(
            "name".into(),
            json!(label.and_then(|l| report.name_of(l.name))),
        );
    }
    v
}

pub fn render(report: &Report<'_>, out: &mut dyn Write) -> io::Result<()> {
    let zone = report.zone;
    for f in report.findings {
        let (key_id, key, name) = match &f.key {
            Some((id, l)) => (
                Some(id.to_string()),
                Some(l.masked.to_string()),
                report.name_of(l.name),
            ),
            None => (None, None, None),
        };
        let v = json!({
            "type": "finding",
            "rule": f.rule,
            "severity": f.severity,
            "key_id": key_id,
            "key": key,
            "name": name,
            "client": f.client,
            "clients": f.clients,
            "place": f.place,
            "first_seen": zone.rfc3339(f.first_ms),
            "last_seen": zone.rfc3339(f.last_ms),
            "count": f.count,
            "message": f.message,
            "evidence": f.evidence,
            "action": f.action,
            "resolved_at": f.resolved_ms.map(|ms| zone.rfc3339(ms)),
        });
        writeln!(out, "{v}")?;
    }
    render_summaries(report, out)?;
    let t = report.totals;
    let inputs: Vec<Value> = report
        .inputs
        .iter()
        .map(|(name, t)| json!({ "file": name, "lines": t.lines, "parsed": t.parsed, "skipped": t.skipped }))
        .collect();
    let skipped: Vec<Value> = report
        .skipped
        .iter()
        .map(|s| json!({ "file": &*s.file, "line": s.line, "error": s.error.to_string(), "preview": s.preview }))
        .collect();
    let v = json!({
        "type": "totals",
        "lines": t.lines,
        "parsed": t.parsed,
        "skipped": t.skipped,
        "format": report.format,
        "inputs": inputs,
        "skipped_lines": skipped,
    });
    writeln!(out, "{v}")
}

/// The `summary` objects, one per day.
pub fn render_summaries(report: &Report<'_>, out: &mut dyn Write) -> io::Result<()> {
    let zone = report.zone;
    for ((day, d), daily) in report.usage.days.iter().zip(report.dailies()) {
        let mut keys: Vec<_> = d.keys.iter().collect();
        keys.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
        // The `keys` array is written one key at a time: built whole, a
        // day of 50,000 keys was a tree of several hundred megabytes.
        let head = json!({ "type": "summary", "day": day.to_string(), "timezone": zone.name() });
        let head = head.to_string();
        write!(out, "{},\"keys\":[", &head[..head.len() - 1])?;
        for (i, ((id, u), kd)) in keys.into_iter().zip(&daily.keys).enumerate() {
            let mut v = key_json(report, *id, report.usage.labels.get(id), u);
            if let (Value::Object(m), Ok(Value::Object(extra))) = (&mut v, serde_json::to_value(kd))
            {
                for field in [
                    "share",
                    "hours",
                    "peak_5m",
                    "peak_5m_ratio",
                    "top_endpoints",
                    "top_endpoints_exact",
                    "top_endpoints_other",
                    "top_clients",
                    "top_clients_exact",
                    "top_clients_other",
                    "findings",
                ] {
                    if let Some(x) = extra.get(field) {
                        m.insert(field.into(), x.clone());
                    }
                }
            }
            if i > 0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut *out, &v)?;
        }
        let v = json!({
            "keyless": usage_json(&d.keyless, zone),
            "other_keys": (d.other.requests > 0).then(|| {
                let mut v = usage_json(&d.other, zone);
                if let Value::Object(m) = &mut v {
                    m.insert("keys".into(), json!(d.other_keys.count()));
                    m.insert("keys_estimated".into(), json!(d.other_keys.is_estimated()));
                }
                v
            }),
            "totals": daily.totals,
            "compared": daily.compared,
            "hygiene": daily.hygiene,
            // The findings themselves are the `finding` objects; here, how
            // many of each rule touched this day.
            "findings": daily.findings.iter().fold(serde_json::Map::new(), |mut m, f| {
                let n = m.get(&f.rule).and_then(Value::as_u64).unwrap_or(0);
                m.insert(f.rule.clone(), json!(n + 1));
                m
            }),
        });
        writeln!(out, "],{}", &v.to_string()[1..])?;
    }
    Ok(())
}

/// The usage object of a day without requests.
pub fn empty_usage() -> Value {
    usage_json(&KeyUsage::default(), &Zone::Utc)
}
