//! `keywatch summary`: a day's summary from the store, in any output, sent
//! to the channels that take summaries (`--send`), and sent by `watch` each
//! morning, once per day whatever restarts.

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::scan::OutputKind;
use super::status::{open, parse_day};
use super::{Common, Failure, Setup};
use crate::alert::channels::{Channel, retry_policy};
use crate::deliver::send::Sender;
use crate::detect::{Finding, Severity};
use crate::output::daily::{Daily, History, KeyBrief};
use crate::output::{self, Report};
use crate::pipeline::Totals;
use crate::store::outbox::Outgoing;
use crate::store::{Store, StoreError};
use crate::usage::Usage;

fn db(e: StoreError) -> Failure {
    Failure::Io(e.to_string())
}

/// What the store holds about one day and around it.
pub struct Loaded {
    pub day: NaiveDate,
    pub usage: Usage,
    pub names: Vec<String>,
    pub history: History,
    pub findings: Vec<Finding>,
}

impl Loaded {
    pub fn load(store: &Store, setup: &Setup, day: NaiveDate) -> Result<Loaded, Failure> {
        let (usage, names) = store.day_usage(day).map_err(db)?;
        let mut history = History::default();
        for back in [1, 7] {
            let then = day - chrono::Duration::days(back);
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
        let findings = store
            .alert_rows(10_000)
            .unwrap_or_default()
            .iter()
            .filter_map(stored_finding)
            .collect();
        Ok(Loaded {
            day,
            usage,
            names,
            history,
            findings,
        })
    }

    pub fn report<'a>(&'a self, setup: &'a Setup) -> Report<'a> {
        Report {
            findings: &self.findings,
            usage: &self.usage,
            totals: Totals::default(),
            inputs: &[],
            skipped: &[],
            zone: &setup.zone,
            format: "",
            names: &self.names,
            history: Some(&self.history),
            rotation_days: setup.config.summary.rotation_days.unwrap_or(90),
        }
    }

    /// The `summary` JSON object (an empty one for a day without traffic).
    pub fn json(&self, setup: &Setup) -> Result<Value, Failure> {
        let mut buf = Vec::new();
        output::json::render_summaries(&self.report(setup), &mut buf)
            .map_err(|e| Failure::Io(e.to_string()))?;
        Ok(serde_json::from_slice(&buf).unwrap_or_else(|_| {
            json!({ "type": "summary", "day": self.day.to_string(), "timezone": setup.zone.name(), "keys": [], "keyless": output::json::empty_usage() })
        }))
    }

    /// The day's [`Daily`], also for a day without traffic.
    pub fn daily(&self, setup: &Setup) -> Daily {
        let report = self.report(setup);
        report.dailies().into_iter().next().unwrap_or_else(|| {
            Daily::build(
                self.day,
                &Default::default(),
                &self.usage.labels,
                &self.names,
                &self.findings,
                &setup.zone,
                &output::daily::Context::of(&report, self.day),
            )
        })
    }
}

/// `keywatch summary --day DAY [--output …] [--send]`.
pub fn summary(
    common: &Common,
    day: &str,
    kind: OutputKind,
    send: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let setup = Setup::load(common)?;
    let day = parse_day(day, &setup.zone)?;
    let channels = if send { setup.channels()? } else { Vec::new() };
    if send && !channels.iter().any(|c| c.summary) {
        return Err(Failure::Usage(
            "summary --send: no channel takes summaries; set summary = true in a [channels.NAME] table".into(),
        ));
    }
    let loaded = {
        let store = open(&setup)?;
        Loaded::load(&store, &setup, day)?
    };
    let report = loaded.report(&setup);
    let mut buf = Vec::new();
    let io = |e: std::io::Error| Failure::Io(e.to_string());
    match kind {
        OutputKind::Json => writeln!(buf, "{}", loaded.json(&setup)?).map_err(io)?,
        OutputKind::Text => {
            output::text::render_usage(&report, &mut buf).map_err(io)?;
            output::text::render_daily(
                &loaded.daily(&setup),
                output::text::colour_wanted(),
                true,
                &mut buf,
            )
            .map_err(io)?;
        }
        OutputKind::Markdown => {
            output::markdown::render(&[loaded.daily(&setup)], &mut buf).map_err(io)?
        }
        OutputKind::Html => output::html::render(&[loaded.daily(&setup)], &mut buf).map_err(io)?,
    }
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Io(format!("standard output: {e}")))?;
    if send {
        let state = super::ensure_dir(&setup.state_dir)?;
        let lock = match state.lock() {
            Ok(lock) => Some(lock),
            // `watch` holds the state: it delivers what is queued.
            Err(crate::state::StateError::Locked { pid, .. }) => {
                let mut store = Store::open(&setup.state_dir).map_err(db)?;
                let queued = queue(&setup, &channels, &mut store, &loaded, true)?;
                eprintln!(
                    "keywatch: summary of {day}: {queued} notice(s) queued; the running keywatch (pid {pid}) delivers them"
                );
                return Ok(());
            }
            Err(e) => return Err(super::state_failure(e)),
        };
        let mut store = Store::open(&setup.state_dir).map_err(db)?;
        let queued = queue(&setup, &channels, &mut store, &loaded, true)?;
        let mut sender = Sender::new(store, channels, retry_policy(&setup.config.alerts));
        let left = sender
            .drain(Instant::now() + Duration::from_secs(60))
            .map_err(db)?;
        eprintln!(
            "keywatch: summary of {day}: {queued} notice(s) queued; {left} still waiting for delivery"
        );
        drop(lock);
    }
    Ok(())
}

/// Queues the day's summary for every channel that takes summaries. The
/// scheduled send (`forced` false) happens once per day: the day is marked
/// sent in the same transaction that queues it. Returns the notices queued.
pub fn queue(
    setup: &Setup,
    channels: &[Channel],
    store: &mut Store,
    loaded: &Loaded,
    forced: bool,
) -> Result<usize, Failure> {
    let daily = loaded.daily(setup);
    let json = loaded.json(setup)?;
    let now = chrono::Utc::now().timestamp_millis();
    let id = if forced {
        format!("kws_{}_{now}", loaded.day)
    } else {
        format!("kws_{}", loaded.day)
    };
    let mut notices = Vec::new();
    for ch in channels.iter().filter(|c| c.summary) {
        match ch.render_summary(&id, &daily, &json) {
            Ok(body) => notices.push(Outgoing {
                id: id.clone(),
                channel: ch.name.clone(),
                group: "summary".into(),
                body,
                created_ms: now,
            }),
            Err(e) => eprintln!("keywatch: channel {}: summary: {e}", ch.name),
        }
    }
    let mark = (!forced).then_some(day_number(loaded.day));
    let queued = store.queue_summary(&notices, mark).map_err(db)?;
    Ok(if queued { notices.len() } else { 0 })
}

fn day_number(day: NaiveDate) -> i64 {
    day.format("%Y%m%d").to_string().parse().unwrap_or(0)
}

/// For `watch`: queues yesterday's summary once the configured local time
/// has passed today, unless it was queued before (by this process or an
/// earlier one). `None` before the time; then whether it queued now.
pub fn scheduled(
    setup: &Setup,
    channels: &[Channel],
    store: &mut Store,
    now_ms: i64,
) -> Result<Option<bool>, Failure> {
    let at = setup.config.summary.send_time();
    let today = setup.zone.day_of(now_ms);
    if setup.zone.local_time(now_ms) < at {
        return Ok(None);
    }
    let yesterday = today - chrono::Duration::days(1);
    if store.summary_sent().map_err(db)? >= day_number(yesterday) {
        return Ok(Some(false));
    }
    let loaded = Loaded::load(store, setup, yesterday)?;
    Ok(Some(queue(setup, channels, store, &loaded, false)? > 0))
}

/// A stored alert as a finding, for the summary of the days it spans.
fn stored_finding(row: &crate::alert::AlertRow) -> Option<Finding> {
    let a = &row.alert;
    let rule = crate::detect::RuleId::parse(&a.rule)?.as_str();
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
    let severity = Severity::parse(&a.severity).unwrap_or(Severity::Info);
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
