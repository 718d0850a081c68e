//! The report for a person: findings first, then usage per key, then totals.

use std::io::{self, Write};

use super::Report;
use crate::detect::key_phrase;
use crate::usage::KeyUsage;

/// How many keys the table lists before it sums up the rest.
const MAX_ROWS: usize = 50;

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn millis(ms: Option<u32>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) => format!("{:.2}s", f64::from(ms) / 1000.0),
    }
}

/// A table with right-aligned numeric columns.
struct Table {
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    left: usize,
}

impl Table {
    fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let cols = self.head.len();
        let mut width: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String], out: &mut dyn Write| -> io::Result<()> {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = width[i].saturating_sub(c.chars().count());
                if i < self.left {
                    s.push_str(c);
                    if i + 1 < cols {
                        s.push_str(&" ".repeat(pad));
                    }
                } else {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
                if i + 1 < cols {
                    s.push_str("  ");
                }
            }
            writeln!(out, "  {}", s.trim_end())
        };
        line(
            &self.head.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            out,
        )?;
        for row in &self.rows {
            line(row, out)?;
        }
        Ok(())
    }
}

fn usage_row(report: &Report<'_>, key: String, name: String, u: &KeyUsage) -> Vec<String> {
    let time = |ms| report.zone.rfc3339(ms).replace('T', " ");
    vec![
        key,
        name,
        u.requests.to_string(),
        u.classes[1].to_string(),
        u.classes[2].to_string(),
        u.classes[3].to_string(),
        u.classes[4].to_string(),
        u.s401.to_string(),
        u.s403.to_string(),
        human_bytes(u.bytes),
        millis(u.latency.quantile(0.5)),
        millis(u.latency.quantile(0.95)),
        format!(
            "{}{}",
            if u.clients.is_estimated() { "~" } else { "" },
            u.clients.count()
        ),
        time(u.first_ms),
        time(u.last_ms),
    ]
}

pub fn render(report: &Report<'_>, out: &mut dyn Write) -> io::Result<()> {
    let zone = report.zone;
    if report.findings.is_empty() {
        writeln!(out, "Findings: none")?;
    } else {
        writeln!(out, "Findings ({})", report.findings.len())?;
        for f in report.findings {
            let who = match (&f.key, &f.client) {
                (Some((_, l)), _) => key_phrase(l, report.names),
                (None, Some(c)) => format!("client {c}"),
                (None, None) => String::new(),
            };
            writeln!(out)?;
            writeln!(
                out,
                "  {:<8}  {}  {}",
                f.severity.as_str().to_uppercase(),
                f.rule,
                who
            )?;
            writeln!(out, "    {}", f.message)?;
            let client = f
                .client
                .as_deref()
                .map(|c| format!(" (first {c})"))
                .unwrap_or_default();
            writeln!(
                out,
                "    first {}  last {}  requests {}  clients {}{client}",
                zone.rfc3339(f.first_ms),
                zone.rfc3339(f.last_ms),
                f.count,
                f.clients
            )?;
            if let Some(ms) = f.resolved_ms {
                writeln!(out, "    resolved {} (back to normal)", zone.rfc3339(ms))?;
            }
            if let Some(e) = &f.evidence {
                writeln!(out, "    evidence: {e}")?;
            }
            writeln!(out, "    what to do: {}", f.action)?;
        }
    }
    writeln!(out)?;
    render_usage(report, out)?;
    if report.usage.days.len() == 1 {
        // One day: the day at a glance too (findings are listed above).
        for d in report.dailies() {
            render_daily(&d, colour_wanted(), false, out)?;
        }
        writeln!(out)?;
    }
    let t = report.totals;
    writeln!(
        out,
        "Totals: {} lines read, {} parsed, {} skipped (log format: {})",
        t.lines, t.parsed, t.skipped, report.format
    )?;
    if report.inputs.len() > 1 {
        for (name, t) in report.inputs {
            writeln!(
                out,
                "  {name}: {} lines, {} parsed, {} skipped",
                t.lines, t.parsed, t.skipped
            )?;
        }
    }
    if !report.skipped.is_empty() {
        writeln!(
            out,
            "Skipped lines (first {} of {}):",
            report.skipped.len(),
            t.skipped
        )?;
        for s in report.skipped {
            writeln!(out, "  {}:{}: {}", s.file, s.line, s.error)?;
            writeln!(out, "      {}", s.preview)?;
        }
    }
    Ok(())
}

/// The usage table alone (what `summary` prints).
pub fn render_usage(report: &Report<'_>, out: &mut dyn Write) -> io::Result<()> {
    let zone = report.zone;
    let days = &report.usage.days;
    let span = match (days.keys().next(), days.keys().next_back()) {
        (Some(a), Some(b)) if a == b => format!("{a}, {}", zone.name()),
        (Some(a), Some(b)) => format!(
            "{a} to {b}, {}; per-day numbers with --output json",
            zone.name()
        ),
        _ => zone.name(),
    };
    let by_key = report.usage.by_key();
    writeln!(out, "Usage by key ({} keys; {span})", by_key.len())?;
    let mut table = Table {
        head: vec![
            "KEY",
            "NAME",
            "REQUESTS",
            "2XX",
            "3XX",
            "4XX",
            "5XX",
            "401",
            "403",
            "BYTES",
            "P50",
            "P95",
            "CLIENTS",
            "FIRST SEEN",
            "LAST SEEN",
        ],
        rows: Vec::new(),
        left: 2,
    };
    // Keys seen a few times and only ever rejected are someone guessing or a
    // typo; one row for all of them keeps the table about the keys in use.
    let (guessed, listed): (Vec<_>, Vec<_>) = by_key.iter().partition(|(id, u)| {
        u.requests <= 3
            && u.rejected() == u.requests
            && report.usage.labels.get(id).is_none_or(|l| l.name.is_none())
    });
    for (id, u) in listed.iter().take(MAX_ROWS) {
        let label = report.usage.labels.get(id);
        let key = label.map_or_else(|| id.to_string(), |l| l.masked.to_string());
        let name = label
            .and_then(|l| report.name_of(l.name))
            .unwrap_or("-")
            .to_string();
        table.rows.push(usage_row(report, key, name, u));
    }
    if listed.len() > MAX_ROWS {
        let mut rest = KeyUsage::default();
        listed[MAX_ROWS..].iter().for_each(|(_, u)| rest.merge(u));
        table.rows.push(usage_row(
            report,
            format!("({} more keys)", listed.len() - MAX_ROWS),
            "-".into(),
            &rest,
        ));
    }
    if !guessed.is_empty() {
        let mut rest = KeyUsage::default();
        guessed.iter().for_each(|(_, u)| rest.merge(u));
        table.rows.push(usage_row(
            report,
            format!("({} unknown keys, all rejected)", guessed.len()),
            "-".into(),
            &rest,
        ));
    }
    let mut other = KeyUsage::default();
    let mut other_keys = crate::usage::Distinct::default();
    for d in report.usage.days.values() {
        other.merge(&d.other);
        other_keys.merge(&d.other_keys);
    }
    if other.requests > 0 {
        let label = format!(
            "({}{} more keys, past the per-day cap)",
            if other_keys.is_estimated() { "~" } else { "" },
            other_keys.count()
        );
        table
            .rows
            .push(usage_row(report, label, "-".into(), &other));
    }
    let keyless = report.usage.keyless();
    if keyless.requests > 0 {
        table
            .rows
            .push(usage_row(report, "(no key)".into(), "-".into(), &keyless));
    }
    if table.rows.is_empty() {
        writeln!(out, "  no requests")?;
    } else {
        table.write(out)?;
    }
    writeln!(out)?;
    Ok(())
}

/// Whether standard output gets colour: a terminal, and `NO_COLOR` unset.
pub fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The day at a glance, after the usage table of `summary`: totals, the
/// days compared, key hygiene, each key's top endpoints and busiest five
/// minutes, and (`with_findings`) the findings. Headings in bold when
/// `colour`.
pub fn render_daily(
    d: &super::daily::Daily,
    colour: bool,
    with_findings: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    use super::daily::KeyBrief;
    let head = |t: &str| {
        if colour {
            format!("\x1b[1m{t}\x1b[0m")
        } else {
            t.to_owned()
        }
    };
    let who = |k: &KeyBrief| {
        let mask = k.key.as_deref().unwrap_or(&k.key_id);
        match &k.name {
            Some(n) => format!("{n} ({mask})"),
            None => mask.to_owned(),
        }
    };
    let pct = |c: Option<f64>| c.map_or_else(|| "–".to_owned(), |r| format!("{:+.0} %", r * 100.0));
    let t = &d.totals;
    writeln!(
        out,
        "{}",
        head(&format!("Day at a glance: {} ({})", d.day, d.timezone))
    )?;
    writeln!(
        out,
        "  {} requests ({} with a key, {} without), {} rejected, {} 5xx, {}, {} findings",
        t.requests,
        t.keyed,
        t.keyless,
        t.rejected,
        t.status.get("5xx").copied().unwrap_or(0),
        human_bytes(t.bytes),
        d.findings.len()
    )?;
    if let Some(s) = t.skipped_lines {
        writeln!(
            out,
            "  {s} {} skipped; {} {} ({} bytes unread)",
            if s == 1 { "line" } else { "lines" },
            t.gaps,
            if t.gaps == 1 { "gap" } else { "gaps" },
            t.gap_bytes
        )?;
    }
    for (name, c) in &d.compared {
        let what = if *name == "previous_day" {
            "day before"
        } else {
            "week before"
        };
        writeln!(
            out,
            "  against the {what} ({}): requests {}, errors {}",
            c.day,
            pct(c.requests_change),
            pct(c.errors_change)
        )?;
    }
    writeln!(out)?;
    writeln!(out, "{}", head("Key hygiene"))?;
    let hy = &d.hygiene;
    for (title, list) in [
        ("seen in URLs (rotate)", &hy.in_urls),
        ("revoked, still presented", &hy.revoked_presented),
        ("shared by integrations", &hy.shared),
        ("due for rotation", &hy.rotation_due),
        ("stopped being used", &hy.stopped),
        ("new today", &hy.new),
    ] {
        let names: Vec<String> = list.iter().take(10).map(who).collect();
        let more = list.len().saturating_sub(10);
        writeln!(
            out,
            "  {title:<26} {}{}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            },
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )?;
    }
    let (shown, _, _) = d.listed();
    if !shown.is_empty() {
        writeln!(out)?;
        writeln!(out, "{}", head("Where the busiest keys went"))?;
        let mut table = Table {
            head: vec!["KEY", "TOP ENDPOINTS", "PEAK 5 MIN", "TOP CLIENT"],
            rows: Vec::new(),
            left: 4,
        };
        for k in shown.iter().take(10) {
            table.rows.push(vec![
                who(&k.key),
                k.top_endpoints
                    .iter()
                    .take(3)
                    .map(|c| format!("{} {}", c.value, c.requests))
                    .collect::<Vec<_>>()
                    .join(" · "),
                match k.peak_5m_ratio {
                    Some(r) => format!("{} ({r}×)", k.peak_5m),
                    None => k.peak_5m.to_string(),
                },
                k.top_clients
                    .first()
                    .map_or_else(String::new, |c| format!("{} {}", c.value, c.requests)),
            ]);
        }
        table.write(out)?;
    }
    if with_findings && !d.findings.is_empty() {
        writeln!(out)?;
        writeln!(out, "{}", head("Findings"))?;
        for f in d.findings.iter().take(20) {
            let subject = match (&f.key, &f.client) {
                (Some(k), _) => who(k),
                (None, Some(c)) => format!("client {c}"),
                _ => String::new(),
            };
            writeln!(
                out,
                "  {:<8} {:<24} {subject} ×{}",
                f.severity.as_str(),
                f.rule,
                f.count
            )?;
        }
        if d.findings.len() > 20 {
            writeln!(out, "  and {} more", d.findings.len() - 20)?;
        }
    }
    Ok(())
}
