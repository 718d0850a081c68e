//! `--output markdown`: the daily summary as Markdown (for a wiki, a ticket
//! or a chat). Log-derived text is escaped so it cannot add links, markup or
//! mentions, and `|` cannot break a table.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::daily::{Daily, KeyBrief};
use crate::deliver::safe;

fn md(text: &str) -> String {
    safe::markdown(text).replace('|', "\\|")
}

fn who(k: &KeyBrief) -> String {
    let mask = k.key.as_deref().unwrap_or(&k.key_id);
    match &k.name {
        Some(n) => format!("{} `{}`", md(n), mask.replace('`', "'")),
        None => format!("`{}`", mask.replace('`', "'")),
    }
}

fn pct(c: Option<f64>) -> String {
    c.map_or_else(|| "–".to_owned(), |r| format!("{:+.0} %", r * 100.0))
}

/// Writes one section per day.
pub fn render(days: &[Daily], out: &mut dyn Write) -> io::Result<()> {
    let mut m = String::new();
    for d in days {
        let t = &d.totals;
        let _ = writeln!(m, "# API keys on {} ({})\n", d.day, md(&d.timezone));
        let _ = writeln!(
            m,
            "{} requests: {} with a key, {} without; {} rejected (401/403), {} 5xx; {} findings.",
            t.requests,
            t.keyed,
            t.keyless,
            t.rejected,
            t.status.get("5xx").copied().unwrap_or(0),
            d.findings.len()
        );
        for (name, c) in &d.compared {
            let _ = writeln!(
                m,
                "Against {} ({}): requests {}, errors {}.",
                if *name == "previous_day" {
                    "the day before"
                } else {
                    "a week before"
                },
                c.day,
                pct(c.requests_change),
                pct(c.errors_change)
            );
        }
        if t.gaps > 0 {
            let _ = writeln!(
                m,
                "Gaps in the input: {} ({} bytes unread).",
                t.gaps, t.gap_bytes
            );
        }
        m.push_str("\n| key | requests | share | 2xx | 4xx | 401+403 | 429 | 5xx | p95 s | clients | peak 5 min | top endpoint |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        let (shown, folded, folded_requests) = d.listed();
        for k in shown {
            let _ = writeln!(
                m,
                "| {} | {} | {:.1} % | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                who(&k.key),
                k.requests,
                k.share * 100.0,
                k.status[1],
                k.status[3],
                k.rejected,
                k.s429,
                k.s5xx,
                k.p95.map_or_else(|| "–".into(), |s| format!("{s:.3}")),
                k.clients,
                k.peak_5m,
                k.top_endpoints
                    .first()
                    .map_or_else(String::new, |c| format!(
                        "`{}` ({})",
                        c.value.replace('`', "'"),
                        c.requests
                    )),
            );
        }
        if folded > 0 {
            let _ = writeln!(
                m,
                "| {folded} more keys (rarely seen, always rejected, or past the first {}) | {folded_requests} | | | | | | | | | | |",
                super::daily::SHOWN_KEYS
            );
        }
        let hy = &d.hygiene;
        m.push_str("\n## Key hygiene\n\n");
        for (title, list) in [
            ("Seen in URLs (rotate)", &hy.in_urls),
            ("Revoked keys still presented", &hy.revoked_presented),
            ("Shared by several integrations", &hy.shared),
            ("Due for rotation", &hy.rotation_due),
            ("Stopped being used (revoke?)", &hy.stopped),
            ("New today", &hy.new),
        ] {
            let names: Vec<String> = list.iter().map(who).collect();
            let _ = writeln!(
                m,
                "- {title}: {}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            );
        }
        if !d.findings.is_empty() {
            m.push_str("\n## Findings\n\n");
            for f in &d.findings {
                let subject = match (&f.key, &f.client) {
                    (Some(k), _) => who(k),
                    (None, Some(c)) => md(c),
                    _ => String::new(),
                };
                let _ = writeln!(
                    m,
                    "- **{}** ({}) {subject}: {} times",
                    md(&f.rule),
                    f.severity.as_str(),
                    f.count
                );
            }
        }
        m.push('\n');
    }
    out.write_all(m.as_bytes())
}
