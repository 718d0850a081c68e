//! `--output html`: one self-contained page per report — no script, no
//! external font, style sheet or image; charts are inline SVG. A
//! Content-Security-Policy forbids scripts, and every string that came from
//! a log is escaped, so a page made from any log is safe to open.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::daily::{CHART_KEYS, Counted, Daily, KeyBrief};
use crate::deliver::safe;

const COLOURS: [&str; 7] = [
    "#3b6fd4", "#e0803a", "#4aa36b", "#c94f6d", "#8a63c9", "#3fa3b5", "#9aa0a6",
];
const STATUS_COLOURS: [(&str, &str); 5] = [
    ("2xx", "#4aa36b"),
    ("3xx", "#3fa3b5"),
    ("4xx", "#e0a030"),
    ("5xx", "#c94f6d"),
    ("other", "#9aa0a6"),
];

fn e(text: &str) -> String {
    safe::html(text).into_owned()
}

fn who(k: &KeyBrief) -> String {
    let mask = k.key.as_deref().unwrap_or(&k.key_id);
    match &k.name {
        Some(n) => format!("{} <span class=\"m\">{}</span>", e(n), e(mask)),
        None => format!("<span class=\"m\">{}</span>", e(mask)),
    }
}

fn label(k: &KeyBrief) -> String {
    k.name
        .clone()
        .or_else(|| k.key.clone())
        .unwrap_or_else(|| k.key_id.clone())
}

fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn change(c: Option<f64>) -> String {
    match c {
        Some(r) => format!("{:+.0} %", r * 100.0),
        None => "–".into(),
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:16px;color:#1d2330;background:#f6f7f9}\
main{max-width:1000px;margin:auto}h1{font-size:1.4em;margin:0 0 4px}h2{font-size:1.1em;margin:28px 0 8px}\
.sub{color:#5b6170;margin:0 0 16px}.cards{display:flex;flex-wrap:wrap;gap:8px}.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:8px 12px;min-width:120px}\
.card b{display:block;font-size:1.3em}.card span{color:#5b6170;font-size:.85em}.wrap{overflow-x:auto;background:#fff;border:1px solid #dde1e7;border-radius:8px}\
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{padding:5px 8px;border-bottom:1px solid #eceff3;text-align:right;white-space:nowrap}\
th:first-child,td:first-child{text-align:left}.m{font-family:ui-monospace,Menlo,Consolas,monospace;color:#5b6170}\
svg{width:100%;height:auto;background:#fff;border:1px solid #dde1e7;border-radius:8px}.legend span{display:inline-block;margin-right:12px;font-size:.85em}\
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}ul{margin:4px 0 0;padding-left:20px}\
.key{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:8px 12px;margin:8px 0}.key h3{font-size:1em;margin:0 0 4px}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:8px}.f{font-size:.9em}.sev-critical,.sev-high{color:#b3263e;font-weight:600}";

/// Writes the report page for the days given.
pub fn render(days: &[Daily], out: &mut dyn Write) -> io::Result<()> {
    let title = match (days.first(), days.last()) {
        (Some(a), Some(b)) if a.day == b.day => format!("keywatch · {}", a.day),
        (Some(a), Some(b)) => format!("keywatch · {} to {}", a.day, b.day),
        _ => "keywatch · no traffic".to_owned(),
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\">\
<title>{}</title><style>{STYLE}</style></head><body><main>",
        e(&title)
    );
    if days.is_empty() {
        h.push_str("<h1>No traffic</h1><p>Nothing was counted for this period.</p>");
    }
    for d in days {
        day(&mut h, d);
    }
    h.push_str("<p class=\"sub\">Made by keywatch. Keys are shown masked; evidence has every credential replaced by [REDACTED].</p></main></body></html>\n");
    out.write_all(h.as_bytes())
}

fn day(h: &mut String, d: &Daily) {
    let t = &d.totals;
    let _ = write!(
        h,
        "<section><h1>API keys on {}</h1><p class=\"sub\">Daily summary · days cut in {} · {} keys</p><div class=\"cards\">",
        e(&d.day),
        e(&d.timezone),
        d.keys.len()
    );
    let status = |k: &str| t.status.get(k).copied().unwrap_or(0);
    let mut cards = vec![
        ("requests", num(t.requests)),
        ("with a key", num(t.keyed)),
        ("without a key", num(t.keyless)),
        ("rejected (401/403)", num(t.rejected)),
        ("5xx", num(status("5xx"))),
        ("MB sent", format!("{:.1}", t.bytes as f64 / 1e6)),
        ("findings", num(d.findings.len() as u64)),
    ];
    if let Some(s) = t.skipped_lines {
        cards.push(("lines skipped", num(s)));
    }
    if t.gaps > 0 {
        cards.push(("gaps in the input", num(t.gaps)));
    }
    for (name, c) in &d.compared {
        let what = if *name == "previous_day" {
            "vs day before"
        } else {
            "vs week before"
        };
        cards.push((
            what,
            format!(
                "{} req · {} err",
                change(c.requests_change),
                change(c.errors_change)
            ),
        ));
    }
    for (label, value) in cards {
        let _ = write!(
            h,
            "<div class=\"card\"><b>{}</b><span>{}</span></div>",
            e(&value),
            label
        );
    }
    h.push_str("</div>");

    h.push_str("<h2>Requests per hour</h2>");
    hourly_chart(h, d);
    h.push_str("<h2>Status mix and error rate per key</h2>");
    status_chart(h, d);

    h.push_str("<h2>Keys</h2><div class=\"wrap\"><table><thead><tr><th>key</th><th>requests</th><th>share</th><th>2xx</th><th>4xx</th><th>401+403</th><th>429</th><th>5xx</th><th>p50 s</th><th>p95 s</th><th>p99 s</th><th>clients</th><th>peak 5 min</th></tr></thead><tbody>");
    let secs = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |s| format!("{s:.3}"));
    let (shown, folded, folded_requests) = d.listed();
    for k in &shown {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.1} %</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}{}</td></tr>",
            who(&k.key),
            num(k.requests),
            k.share * 100.0,
            num(k.status[1]),
            num(k.status[3]),
            num(k.rejected),
            num(k.s429),
            num(k.s5xx),
            secs(k.p50),
            secs(k.p95),
            secs(k.p99),
            num(k.clients),
            if k.clients_estimated { " (est.)" } else { "" },
            num(k.peak_5m),
            k.peak_5m_ratio
                .map_or_else(String::new, |r| format!(" ({r}× mean)")),
        );
    }
    if folded > 0 {
        let _ = write!(
            h,
            "<tr><td>{folded} more keys (rarely seen, always rejected, or past the first {})</td><td>{}</td><td colspan=\"11\"></td></tr>",
            super::daily::SHOWN_KEYS,
            num(folded_requests)
        );
    }
    h.push_str("</tbody></table></div>");

    h.push_str("<h2>Where each key went</h2><div class=\"grid\">");
    for k in shown.iter().take(12) {
        let _ = write!(
            h,
            "<div class=\"key\"><h3>{}</h3><div class=\"f\">",
            who(&k.key)
        );
        let _ = write!(
            h,
            "seen {} → {}",
            e(k.first_seen.get(11..16).unwrap_or("")),
            e(k.last_seen.get(11..16).unwrap_or(""))
        );
        if !k.findings.is_empty() {
            let _ = write!(
                h,
                " · <span class=\"sev-high\">{}</span>",
                e(&k.findings.join(", "))
            );
        }
        h.push_str("</div>");
        top_list(h, "Top endpoints", &k.top_endpoints, k.top_endpoints_other);
        top_list(h, "Top clients", &k.top_clients, k.top_clients_other);
        h.push_str("</div>");
    }
    h.push_str("</div>");

    h.push_str("<h2>Key hygiene</h2><div class=\"grid\">");
    let hy = &d.hygiene;
    for (title, list) in [
        ("Seen in URLs today: rotate", &hy.in_urls),
        ("Revoked keys still presented", &hy.revoked_presented),
        ("Shared by several integrations", &hy.shared),
        ("Due for rotation (in use too long)", &hy.rotation_due),
        ("Stopped being used: revoke?", &hy.stopped),
        ("New today", &hy.new),
    ] {
        let _ = write!(h, "<div class=\"key\"><h3>{title}</h3><ul class=\"f\">");
        if list.is_empty() {
            h.push_str("<li>none</li>");
        }
        for k in list {
            let _ = write!(h, "<li>{}</li>", who(k));
        }
        h.push_str("</ul></div>");
    }
    h.push_str("</div>");

    if !d.findings.is_empty() {
        h.push_str("<h2>Findings</h2><div class=\"wrap\"><table><thead><tr><th>rule</th><th>severity</th><th>key or client</th><th>times</th></tr></thead><tbody>");
        for f in &d.findings {
            let subject = match (&f.key, &f.client) {
                (Some(k), _) => who(k),
                (None, Some(c)) => e(c),
                _ => String::new(),
            };
            let _ = write!(
                h,
                "<tr><td title=\"{}\">{}</td><td class=\"sev-{}\">{}</td><td>{subject}</td><td>{}</td></tr>",
                e(&f.message),
                e(&f.rule),
                f.severity.as_str(),
                f.severity.as_str(),
                num(f.count)
            );
        }
        h.push_str("</tbody></table></div>");
    }
    h.push_str("</section>");
}

/// A heading and a list of the top items with their requests, then the rest.
fn top_list(h: &mut String, title: &str, items: &[Counted], other: u64) {
    let _ = write!(h, "<b class=\"f\">{title}</b><ul class=\"f\">");
    for c in items {
        let _ = write!(
            h,
            "<li><span class=\"m\">{}</span> {}</li>",
            e(&c.value),
            num(c.requests)
        );
    }
    if other > 0 {
        let _ = write!(h, "<li>other {}</li>", num(other));
    }
    h.push_str("</ul>");
}

/// Stacked bars: the first keys one by one, the rest as one band.
fn hourly_chart(h: &mut String, d: &Daily) {
    let mut series: Vec<(String, [u64; 24])> = d
        .listed()
        .0
        .into_iter()
        .take(CHART_KEYS)
        .map(|k| (label(&k.key), k.hours))
        .collect();
    let mut rest = d.totals.hours;
    for (_, s) in &series {
        for (r, n) in rest.iter_mut().zip(s) {
            *r = r.saturating_sub(*n);
        }
    }
    series.push(("other keys and keyless".into(), rest));
    let max = (0..24)
        .map(|hr| series.iter().map(|(_, s)| s[hr]).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, ht, left, bottom) = (720.0, 240.0, 44.0, 22.0);
    let bw = (w - left - 8.0) / 24.0;
    let _ = write!(
        h,
        "<svg class=\"chart\" id=\"hourly\" viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-label=\"Requests per hour\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let plot = ht - bottom - 10.0;
    for i in 0..=4 {
        let y = 10.0 + plot * f64::from(i) / 4.0;
        let v = max as f64 * f64::from(4 - i) / 4.0;
        let _ = write!(
            h,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eceff3\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#5b6170\">{:.0}</text>",
            w - 8.0,
            left - 4.0,
            y + 3.0,
            v
        );
    }
    for hr in 0..24 {
        let mut y = 10.0 + plot;
        let x = left + bw * hr as f64;
        for (i, (name, s)) in series.iter().enumerate() {
            if s[hr] == 0 {
                continue;
            }
            let bh = plot * s[hr] as f64 / max as f64;
            y -= bh;
            let colour = if i + 1 == series.len() {
                COLOURS[6]
            } else {
                COLOURS[i % 6]
            };
            let _ = write!(
                h,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{hr:02}:00 {}: {}</title></rect>",
                x + 1.0,
                bw - 2.0,
                e(name),
                s[hr]
            );
        }
        if hr % 3 == 0 {
            let _ = write!(
                h,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" fill=\"#5b6170\">{hr:02}h</text>",
                x + 1.0,
                ht - 6.0
            );
        }
    }
    h.push_str("</svg><div class=\"legend\">");
    for (i, (name, _)) in series.iter().enumerate() {
        let colour = if i + 1 == series.len() {
            COLOURS[6]
        } else {
            COLOURS[i % 6]
        };
        let _ = write!(
            h,
            "<span><i style=\"background:{colour}\"></i>{}</span>",
            e(name)
        );
    }
    h.push_str("</div>");
}

/// Per key: a bar of its status classes and its error rate.
fn status_chart(h: &mut String, d: &Daily) {
    let keys: Vec<_> = d.listed().0.into_iter().take(12).collect();
    let row = 22.0;
    let (w, left, bar) = (720.0, 190.0, 380.0);
    let ht = 16.0 + row * keys.len().max(1) as f64;
    let _ = write!(
        h,
        "<svg class=\"chart\" id=\"status\" viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-label=\"Status mix and error rate per key\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let _ = write!(
        h,
        "<text x=\"{left}\" y=\"11\" font-size=\"10\" fill=\"#5b6170\">status mix</text><text x=\"{}\" y=\"11\" font-size=\"10\" fill=\"#5b6170\">errors (401/403 + 5xx)</text>",
        left + bar + 20.0
    );
    for (i, k) in keys.iter().enumerate() {
        let y = 16.0 + row * i as f64;
        let name: String = safe::truncate(&label(&k.key), 28).into_owned();
        let _ = write!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#1d2330\">{}</text>",
            left - 6.0,
            y + 13.0,
            e(&name)
        );
        let total = k.requests.max(1) as f64;
        let mut x = left;
        for (idx, (class, colour)) in [1usize, 2, 3, 4, 5].iter().zip(STATUS_COLOURS) {
            let n = k.status[*idx];
            if n == 0 {
                continue;
            }
            let bw = bar * n as f64 / total;
            let _ = write!(
                h,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"16\" fill=\"{colour}\"><title>{class}: {n}</title></rect>",
                y + 2.0
            );
            x += bw;
        }
        let rate = (k.rejected + k.s5xx) as f64 / total;
        let ew = (w - left - bar - 90.0) * rate;
        let _ = write!(
            h,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{ew:.1}\" height=\"16\" fill=\"#c94f6d\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#1d2330\">{:.1} %</text>",
            left + bar + 20.0,
            y + 2.0,
            left + bar + 24.0 + ew,
            y + 14.0,
            rate * 100.0
        );
    }
    h.push_str("</svg><div class=\"legend\">");
    for (class, colour) in STATUS_COLOURS {
        let _ = write!(
            h,
            "<span><i style=\"background:{colour}\"></i>{class}</span>"
        );
    }
    h.push_str("</div>");
}
