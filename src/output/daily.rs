//! The daily summary: one day of usage per key, with its shape (hours,
//! peak, endpoints, clients), the days it compares with, the findings of the
//! day and the key-hygiene lists. Built once ([`Daily::build`]) and rendered
//! as JSON (inside the `summary` object), text, Markdown or HTML.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use serde::Serialize;

use crate::detect::Finding;
use crate::keys::KeyId;
use crate::usage::{DayUsage, KeyLabel, KeyUsage};
use crate::zone::Zone;

/// The counts of a day's keys added up.
#[derive(Default)]
struct Sums {
    requests: u64,
    classes: [u64; 6],
    rejected: u64,
    bytes: u64,
    hours: [u64; 24],
}

impl Sums {
    fn add(&mut self, u: &KeyUsage) {
        self.requests += u.requests;
        for (a, b) in self.classes.iter_mut().zip(u.classes) {
            *a += b;
        }
        self.rejected += u.rejected();
        self.bytes += u.bytes;
        for (a, b) in self.hours.iter_mut().zip(u.detail().hours()) {
            *a += b;
        }
    }
}

/// Top endpoints and clients shown per key.
pub const TOP_SHOWN: usize = 5;

/// What a day is compared with and judged against, beyond the day itself.
#[derive(Default)]
pub struct Context<'a> {
    /// Usage of other days, when known (for the day before and a week before).
    pub other_days: Option<&'a BTreeMap<NaiveDate, DayUsage>>,
    /// Per key: the first and the last day it was seen up to this day.
    pub seen: BTreeMap<KeyId, (NaiveDate, NaiveDate)>,
    /// Whether `seen` covers history before this day (a store), or only this
    /// input (a scan of one day cannot tell new keys from old ones).
    pub has_history: bool,
    /// Keys in use longer than this many days are due for rotation.
    pub rotation_days: u32,
    pub skipped_lines: Option<u64>,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// How keys not seen this day are shown (mask and name), when known.
    pub known: BTreeMap<KeyId, KeyBrief>,
}

/// What the store knows beyond one day: built by `summary`.
#[derive(Default)]
pub struct History {
    pub days: BTreeMap<NaiveDate, DayUsage>,
    pub seen: BTreeMap<KeyId, (NaiveDate, NaiveDate)>,
    pub known: BTreeMap<KeyId, KeyBrief>,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Lines skipped in the followed files (all of their history).
    pub skipped: Option<u64>,
}

impl<'a> Context<'a> {
    /// The context of `day` in a report: from the store's history when the
    /// report has one, else from the report's own days.
    pub fn of(report: &'a super::Report<'a>, day: NaiveDate) -> Context<'a> {
        if let Some(h) = report.history {
            return Context {
                other_days: Some(&h.days),
                seen: h.seen.clone(),
                // New keys can be told only when something came before.
                has_history: h.seen.values().any(|(first, _)| *first < day),
                rotation_days: report.rotation_days,
                skipped_lines: h.skipped,
                gaps: h.gaps,
                gap_bytes: h.gap_bytes,
                known: h.known.clone(),
            };
        }
        let days = &report.usage.days;
        let mut seen: BTreeMap<KeyId, (NaiveDate, NaiveDate)> = BTreeMap::new();
        for (d, u) in days.range(..=day) {
            for id in u.keys.keys() {
                let e = seen.entry(*id).or_insert((*d, *d));
                e.1 = *d;
            }
        }
        Context {
            other_days: Some(days),
            seen,
            has_history: days.keys().next().is_some_and(|first| *first < day),
            rotation_days: report.rotation_days,
            skipped_lines: (days.len() == 1).then_some(report.totals.skipped),
            gaps: 0,
            gap_bytes: 0,
            known: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyBrief {
    pub key_id: String,
    pub key: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Counted {
    pub value: String,
    pub requests: u64,
}

/// One key's day beyond the `summary` schema's usage fields.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyDay {
    #[serde(flatten)]
    pub key: KeyBrief,
    pub requests: u64,
    /// Share of the day's requests, 0–1.
    pub share: f64,
    /// Responses by class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub status: [u64; 6],
    pub bytes: u64,
    /// Request time quantiles in seconds, when logged.
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub clients: u64,
    pub clients_estimated: bool,
    pub first_seen: String,
    pub last_seen: String,
    pub rejected: u64,
    pub s429: u64,
    pub s5xx: u64,
    pub hours: [u64; 24],
    pub peak_5m: u64,
    /// The peak 5 minutes against the key's mean 5 minutes while active.
    pub peak_5m_ratio: Option<f64>,
    pub top_endpoints: Vec<Counted>,
    pub top_endpoints_exact: bool,
    /// The key's requests not refused (401/403) beyond the top endpoints.
    pub top_endpoints_other: u64,
    pub top_clients: Vec<Counted>,
    pub top_clients_exact: bool,
    /// The key's requests from clients beyond the top ones.
    pub top_clients_other: u64,
    /// Rules that found something about this key this day.
    pub findings: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DayTotals {
    pub requests: u64,
    pub keyed: u64,
    pub keyless: u64,
    pub status: BTreeMap<&'static str, u64>,
    pub rejected: u64,
    pub bytes: u64,
    /// All requests per hour of the day.
    pub hours: [u64; 24],
    /// Lines that could not be read as requests, in the input (`scan` of
    /// one day) or in the followed files (`summary`); not per day, so not
    /// in the JSON day object.
    #[serde(skip)]
    pub skipped_lines: Option<u64>,
    pub gaps: u64,
    pub gap_bytes: u64,
}

/// A day compared with an earlier one.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    pub day: String,
    pub requests: u64,
    pub errors: u64,
    /// Relative change of this day against that one (`0.25` = +25 %).
    pub requests_change: Option<f64>,
    pub errors_change: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Hygiene {
    /// In use longer than the rotation period.
    pub rotation_due: Vec<KeyBrief>,
    pub in_urls: Vec<KeyBrief>,
    pub revoked_presented: Vec<KeyBrief>,
    pub shared: Vec<KeyBrief>,
    /// Seen in the 30 days before, not in the last 7: candidates for revocation.
    pub stopped: Vec<KeyBrief>,
    pub new: Vec<KeyBrief>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingBrief {
    pub rule: String,
    pub severity: crate::detect::Severity,
    #[serde(flatten)]
    pub key: Option<KeyBrief>,
    pub client: Option<String>,
    pub count: u64,
    pub message: String,
}

/// One day, ready to render.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Daily {
    pub day: String,
    pub timezone: String,
    pub totals: DayTotals,
    pub keys: Vec<KeyDay>,
    pub compared: BTreeMap<&'static str, Change>,
    pub hygiene: Hygiene,
    pub findings: Vec<FindingBrief>,
}

/// Keys shown one by one in the HTML and Markdown reports.
pub const SHOWN_KEYS: usize = 50;

impl Daily {
    /// The keys to show one by one, and how many keys (and requests) were
    /// folded: keys seen at most 3 times, always rejected and unnamed are
    /// someone guessing or a typo, and so are keys past [`SHOWN_KEYS`].
    pub fn listed(&self) -> (Vec<&KeyDay>, usize, u64) {
        let (mut shown, mut folded, mut requests) = (Vec::new(), 0, 0);
        for k in &self.keys {
            let guessed = k.requests <= 3 && k.rejected == k.requests && k.key.name.is_none();
            if guessed || shown.len() >= SHOWN_KEYS {
                folded += 1;
                requests += k.requests;
            } else {
                shown.push(k);
            }
        }
        (shown, folded, requests)
    }
}

/// Keys as people see them: named ones first by name, then by mask (key
/// ids last, as they differ between installations).
fn shown_order(a: &KeyBrief, b: &KeyBrief) -> std::cmp::Ordering {
    (a.name.is_none(), &a.name, &a.key, &a.key_id).cmp(&(
        b.name.is_none(),
        &b.name,
        &b.key,
        &b.key_id,
    ))
}

fn q(u: &KeyUsage, p: f64) -> Option<f64> {
    u.latency.quantile(p).map(|ms| f64::from(ms) / 1000.0)
}

fn errors(u: &Sums) -> u64 {
    u.classes[4] + u.rejected
}

fn ratio(now: u64, then: u64) -> Option<f64> {
    (then > 0).then(|| (now as f64 - then as f64) / then as f64)
}

/// Keys drawn one by one in the charts (the hourly one stacks the first
/// six; the rest are one band).
pub const CHART_KEYS: usize = 6;

impl Daily {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        day: NaiveDate,
        d: &DayUsage,
        labels: &crate::hash::FastMap<KeyId, KeyLabel>,
        names: &[String],
        findings: &[Finding],
        zone: &Zone,
        ctx: &Context<'_>,
    ) -> Daily {
        let brief = |id: &KeyId| {
            let l = labels.get(id);
            if l.is_none()
                && let Some(k) = ctx.known.get(id)
            {
                return k.clone();
            }
            KeyBrief {
                key_id: id.to_string(),
                key: l.map(|l| l.masked.to_string()),
                name: l
                    .and_then(|l| l.name)
                    .and_then(|i| names.get(i as usize))
                    .cloned(),
            }
        };
        // Findings of this day: those whose span touches it.
        let todays: Vec<&Finding> = findings
            .iter()
            .filter(|f| zone.day_of(f.first_ms) <= day && zone.day_of(f.last_ms) >= day)
            .collect();
        let mut totals = DayTotals {
            skipped_lines: ctx.skipped_lines,
            gaps: ctx.gaps,
            gap_bytes: ctx.gap_bytes,
            ..DayTotals::default()
        };
        // The day's totals: sums of counts, not a merge of every key's
        // clients and endpoints (which the totals do not show).
        let mut all = Sums::default();
        for u in d.keys.values().chain([&d.keyless, &d.other]) {
            all.add(u);
        }
        totals.requests = all.requests;
        totals.keyless = d.keyless.requests;
        totals.keyed = all.requests - d.keyless.requests;
        for (name, n) in ["1xx", "2xx", "3xx", "4xx", "5xx", "other"]
            .into_iter()
            .zip(all.classes)
        {
            totals.status.insert(name, n);
        }
        totals.rejected = all.rejected;
        totals.bytes = all.bytes;
        totals.hours = all.hours;

        let mut rules_of: BTreeMap<KeyId, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for f in &todays {
            if let Some((k, _)) = &f.key {
                rules_of.entry(*k).or_default().insert(f.rule);
            }
        }
        let mut keys: Vec<(&KeyId, &KeyUsage)> = d.keys.iter().collect();
        keys.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
        let keys: Vec<KeyDay> = keys
            .iter()
            .map(|(id, u)| {
                let det = u.detail();
                let mean =
                    (det.active_5m() > 0).then(|| u.requests as f64 / det.active_5m() as f64);
                KeyDay {
                    key: brief(id),
                    requests: u.requests,
                    share: if all.requests > 0 {
                        (u.requests as f64 / all.requests as f64 * 10_000.0).round() / 10_000.0
                    } else {
                        0.0
                    },
                    status: u.classes,
                    bytes: u.bytes,
                    p50: q(u, 0.5),
                    p95: q(u, 0.95),
                    p99: q(u, 0.99),
                    clients: u.clients.count(),
                    clients_estimated: u.clients.is_estimated(),
                    first_seen: zone.rfc3339(u.first_ms),
                    last_seen: zone.rfc3339(u.last_ms),
                    rejected: u.rejected(),
                    s429: u.s429,
                    s5xx: u.classes[4],
                    hours: det.hours(),
                    peak_5m: det.peak_5m(),
                    peak_5m_ratio: mean.map(|m| (det.peak_5m() as f64 / m * 10.0).round() / 10.0),
                    top_endpoints: det
                        .endpoints
                        .top(TOP_SHOWN)
                        .into_iter()
                        .map(|(e, n)| Counted {
                            value: e.into(),
                            requests: n,
                        })
                        .collect(),
                    top_endpoints_exact: det.endpoints.exact(),
                    top_endpoints_other: 0,
                    top_clients: u
                        .clients
                        .top(TOP_SHOWN)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(c, n)| Counted {
                            value: crate::detect::ordered::client_text(c),
                            requests: n,
                        })
                        .collect(),
                    top_clients_exact: !u.clients.is_estimated(),
                    top_clients_other: 0,
                    findings: rules_of
                        .get(*id)
                        .map(|r| r.iter().map(|s| (*s).to_owned()).collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        let mut keys = keys;
        for k in &mut keys {
            let shown = |l: &[Counted]| l.iter().map(|c| c.requests).sum::<u64>();
            k.top_endpoints_other =
                (k.requests - k.rejected).saturating_sub(shown(&k.top_endpoints));
            k.top_clients_other = k.requests.saturating_sub(shown(&k.top_clients));
        }

        let mut compared = BTreeMap::new();
        if let Some(other) = ctx.other_days {
            for (label, back) in [("previous_day", 1), ("week_before", 7)] {
                let Some(then_day) = day.checked_sub_days(Days::new(back)) else {
                    continue;
                };
                if let Some(t) = other.get(&then_day) {
                    let mut then = Sums::default();
                    for u in t.keys.values().chain([&t.keyless, &t.other]) {
                        then.add(u);
                    }
                    compared.insert(
                        label,
                        Change {
                            day: then_day.to_string(),
                            requests: then.requests,
                            errors: errors(&then),
                            requests_change: ratio(all.requests, then.requests),
                            errors_change: ratio(errors(&all), errors(&then)),
                        },
                    );
                }
            }
        }

        let mut hygiene = Hygiene::default();
        let rule_keys = |rule: &str| {
            let mut v: Vec<KeyBrief> = todays
                .iter()
                .filter(|f| f.rule == rule)
                .filter_map(|f| f.key.as_ref().map(|(k, _)| brief(k)))
                .collect();
            v.sort_by(shown_order);
            v.dedup();
            v
        };
        use crate::detect::RuleId;
        hygiene.in_urls = rule_keys(RuleId::KeyInUrl.as_str());
        hygiene.revoked_presented = rule_keys(RuleId::RevokedKeyInUse.as_str());
        hygiene.shared = rule_keys(RuleId::KeyShared.as_str());
        let week = day.checked_sub_days(Days::new(6)).unwrap_or(day);
        let month = day.checked_sub_days(Days::new(30)).unwrap_or(day);
        let rotation = day
            .checked_sub_days(Days::new(u64::from(ctx.rotation_days)))
            .unwrap_or(day);
        for (id, &(first, last)) in &ctx.seen {
            let in_day = d.keys.contains_key(id);
            if in_day && first <= rotation {
                hygiene.rotation_due.push(brief(id));
            }
            if ctx.has_history && in_day && first == day {
                hygiene.new.push(brief(id));
            }
            if !in_day && last < week && last >= month {
                hygiene.stopped.push(brief(id));
            }
        }
        for list in [
            &mut hygiene.rotation_due,
            &mut hygiene.new,
            &mut hygiene.stopped,
        ] {
            list.sort_by(shown_order);
        }

        // One entry per rule and key (or client), as alerts are: the places
        // a key was seen in add up; the most severe finding speaks for them.
        let mut findings: Vec<FindingBrief> = Vec::new();
        let mut index: std::collections::HashMap<(&str, Option<KeyId>, Option<&str>), usize> =
            std::collections::HashMap::new();
        let mut sorted = todays.clone();
        sorted.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.first_ms.cmp(&b.first_ms))
        });
        for f in sorted {
            let key_id = f.key.as_ref().map(|(k, _)| *k);
            let client = if key_id.is_some() {
                None
            } else {
                f.client.as_deref()
            };
            match index.get(&(f.rule, key_id, client)) {
                Some(&i) => findings[i].count += f.count,
                None => {
                    index.insert((f.rule, key_id, client), findings.len());
                    findings.push(FindingBrief {
                        rule: f.rule.to_owned(),
                        severity: f.severity,
                        key: key_id.map(|k| brief(&k)),
                        client: client.map(str::to_owned),
                        count: f.count,
                        message: f.message.clone(),
                    });
                }
            }
        }
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.rule.cmp(&b.rule))
                .then(
                    a.key
                        .as_ref()
                        .map(|k| &k.key_id)
                        .cmp(&b.key.as_ref().map(|k| &k.key_id)),
                )
                .then(a.client.cmp(&b.client))
        });
        Daily {
            day: day.to_string(),
            timezone: zone.name(),
            totals,
            keys,
            compared,
            hygiene,
            findings,
        }
    }
}
