//! `--output json`: one JSON object per line. The schema (documented in the
//! README) only ever grows: objects of `"type"` `finding`, then `summary` (one
//! per calendar day), then `totals`.

use std::io::{self, Write};

use serde_json::{Value, json};

use super::Report;
use super::daily::KeyDay;
use crate::keys::KeyId;
use crate::usage::{KeyLabel, KeyUsage};
use crate::zone::Zone;

fn usage_json(u: &KeyUsage, zone: &Zone) -> Value {
    struct Usage<'a>(&'a KeyUsage, &'a Zone);
    impl serde::Serialize for Usage<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(None)?;
            usage_entries(&mut m, self.0, self.1)?;
            m.end()
        }
    }
    serde_json::to_value(Usage(u, zone)).unwrap_or(Value::Null)
}

/// The usage fields of [`usage_json`], as entries of a map being written.
fn usage_entries<M: serde::ser::SerializeMap>(
    m: &mut M,
    u: &KeyUsage,
    zone: &Zone,
) -> Result<(), M::Error> {
    #[derive(serde::Serialize)]
    struct Status {
        #[serde(rename = "1xx")]
        c1: u64,
        #[serde(rename = "2xx")]
        c2: u64,
        #[serde(rename = "3xx")]
        c3: u64,
        #[serde(rename = "4xx")]
        c4: u64,
        #[serde(rename = "5xx")]
        c5: u64,
        other: u64,
    }
    #[derive(serde::Serialize)]
    struct Latency {
        p50: Option<f64>,
        p95: Option<f64>,
        p99: Option<f64>,
    }
    let q = |p| u.latency.quantile(p).map(|ms| f64::from(ms) / 1000.0);
    let c = u.classes;
    m.serialize_entry("requests", &u.requests)?;
    m.serialize_entry(
        "status",
        &Status {
            c1: c[0],
            c2: c[1],
            c3: c[2],
            c4: c[3],
            c5: c[4],
            other: c[5],
        },
    )?;
    m.serialize_entry("401", &u.s401)?;
    m.serialize_entry("403", &u.s403)?;
    m.serialize_entry("429", &u.s429)?;
    m.serialize_entry("rejected", &u.rejected())?;
    m.serialize_entry("bytes", &u.bytes)?;
    m.serialize_entry(
        "request_time",
        &(!u.latency.is_empty()).then(|| Latency {
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
        }),
    )?;
    m.serialize_entry("clients", &u.clients.count())?;
    m.serialize_entry("clients_estimated", &u.clients.is_estimated())?;
    m.serialize_entry(
        "first_seen",
        &(u.requests > 0).then(|| zone.rfc3339(u.first_ms)),
    )?;
    m.serialize_entry(
        "last_seen",
        &(u.requests > 0).then(|| zone.rfc3339(u.last_ms)),
    )
}

/// One key of a `summary`: its usage, who it is, and its day's shape,
/// written straight out (no tree of values per key).
struct KeyOut<'a> {
    report: &'a Report<'a>,
    id: KeyId,
    label: Option<&'a KeyLabel>,
    usage: &'a KeyUsage,
    day: &'a KeyDay,
}

impl serde::Serialize for KeyOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (label, d) = (self.label, self.day);
        let mut m = s.serialize_map(None)?;
        usage_entries(&mut m, self.usage, self.report.zone)?;
        m.serialize_entry("key_id", &self.id.to_string())?;
        m.serialize_entry("key", &label.map(|l| l.masked.to_string()))?;
        m.serialize_entry("name", &label.and_then(|l| self.report.name_of(l.name)))?;
        m.serialize_entry("share", &d.share)?;
        m.serialize_entry("hours", &d.hours)?;
        m.serialize_entry("peak_5m", &d.peak_5m)?;
        m.serialize_entry("peak_5m_ratio", &d.peak_5m_ratio)?;
        m.serialize_entry("top_endpoints", &d.top_endpoints)?;
        m.serialize_entry("top_endpoints_exact", &d.top_endpoints_exact)?;
        m.serialize_entry("top_endpoints_other", &d.top_endpoints_other)?;
        m.serialize_entry("top_clients", &d.top_clients)?;
        m.serialize_entry("top_clients_exact", &d.top_clients_exact)?;
        m.serialize_entry("top_clients_other", &d.top_clients_other)?;
        m.serialize_entry("findings", &d.findings)?;
        m.end()
    }
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
            let v = KeyOut {
                report,
                id: *id,
                label: report.usage.labels.get(id),
                usage: u,
                day: kd,
            };
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
