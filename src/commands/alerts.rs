//! Alerts from the command line: the sender `watch` runs beside its reader,
//! `scan --alert`, `keywatch alerts` (what fired and how delivery went) and
//! `keywatch alert-test`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Common, Failure, Setup};
use crate::alert::channels::{Channel, retry_policy};
use crate::alert::{Alerter, Evaluation};
use crate::deliver::notice::{Alert, Notice, State};
use crate::deliver::retry::Verdict;
use crate::deliver::send::{self, Sender};
use crate::detect::Finding;
use crate::store::{Store, StoreError};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn db(e: StoreError) -> Failure {
    Failure::Io(e.to_string())
}

/// The alerter and its sender thread, for `watch`.
pub struct Alerting {
    pub alerter: Alerter,
    /// Evaluated but not yet committed.
    pub pending: Evaluation,
    stop: Arc<AtomicBool>,
    wake: crossbeam_channel::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
    last: Option<Instant>,
}

impl Alerting {
    /// Starts the alerter (which also keeps every alert's state for
    /// `alerts` and `summary`), and the sender when channels are configured.
    pub fn start(setup: &Setup, store: &Store) -> Result<Alerting, Failure> {
        let channels = setup.channels()?;
        let groups = store.alert_groups().map_err(db)?;
        let names: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();
        let alerter = Alerter::new(channels.clone(), setup.zone.clone(), groups);
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, woken) = crossbeam_channel::bounded(1);
        let thread = if names.is_empty() {
            None
        } else {
            let sender = Sender::new(
                Store::open(&setup.state_dir).map_err(db)?,
                channels,
                retry_policy(&setup.config.alerts),
            );
            let flag = Arc::clone(&stop);
            eprintln!("keywatch: alert channels: {}", names.join(", "));
            Some(
                std::thread::Builder::new()
                    .name("keywatch-sender".into())
                    .spawn(move || sender.run(flag, woken))
                    .map_err(|e| Failure::Io(format!("alert sender thread: {e}")))?,
            )
        };
        Ok(Alerting {
            alerter,
            pending: Evaluation::default(),
            stop,
            wake,
            thread,
            last: None,
        })
    }

    /// Evaluates the findings at most once a second (always when `force`);
    /// returns whether anything new waits to be committed.
    pub fn evaluate(
        &mut self,
        findings: impl FnOnce() -> Vec<Finding>,
        names: &[String],
        store: &Store,
        force: bool,
    ) -> bool {
        if !force
            && self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return false;
        }
        self.last = Some(Instant::now());
        let now = now_ms();
        let silences = match store.silences(now, false) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("keywatch: silences: {e}");
                Vec::new()
            }
        };
        let e = self
            .alerter
            .evaluate(&findings(), names, &silences, now, false);
        for err in &e.errors {
            eprintln!("keywatch: {err}");
        }
        let news = !e.is_empty();
        self.pending.absorb(e);
        news
    }

    /// Wakes the sender (something was queued outside the alerter).
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// After the pending evaluation was committed: wakes the sender.
    pub fn committed(&mut self) {
        if !self.pending.notices.is_empty() {
            let _ = self.wake.try_send(());
        }
        self.pending = Evaluation::default();
    }
}

impl Drop for Alerting {
    /// Stops the sender. An attempt in flight gets two seconds to finish
    /// and be recorded; past that the process may end under it, and the
    /// notice, still queued, is sent again with the same id after restart.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.try_send(());
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// `scan --alert`: queues notices for the scan's findings (no waiting: a
/// one-off run notifies every group with news at once) and delivers them
/// for at most `wait`. What is not delivered stays queued in the store for
/// the next `watch` or `scan --alert`.
pub fn scan_alert(
    setup: &Setup,
    channels: Vec<Channel>,
    findings: &[Finding],
    names: &[String],
    wait: Duration,
) -> Result<(), Failure> {
    // The alerter's group records are the writer's: not while watch runs.
    let (_state, _lock) = setup.lock_state()?;
    let mut store = Store::open(&setup.state_dir).map_err(db)?;
    let now = now_ms();
    let silences = store.silences(now, false).map_err(db)?;
    let groups = store.alert_groups().map_err(db)?;
    let mut alerter = Alerter::new(channels.clone(), setup.zone.clone(), groups);
    let e = alerter.evaluate(findings, names, &silences, now, true);
    for err in &e.errors {
        eprintln!("keywatch: {err}");
    }
    let queued = e.notices.len();
    store.save_alerts(&e).map_err(db)?;
    let mut sender = Sender::new(store, channels, retry_policy(&setup.config.alerts));
    let left = sender.drain(Instant::now() + wait).map_err(db)?;
    eprintln!(
        "keywatch: alerts: {queued} new notice(s) queued; {left} still waiting for delivery{}",
        if left > 0 {
            " (keywatch watch or the next scan --alert sends them; see keywatch alerts)"
        } else {
            ""
        }
    );
    Ok(())
}

/// `keywatch alerts`: recent alerts, their state, and every channel's
/// delivery of the notices about them.
pub fn list(
    common: &Common,
    json_out: bool,
    limit: usize,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let setup = Setup::load(common)?;
    let store = super::status::open(&setup)?;
    let alerts = store.alert_rows(limit).map_err(db)?;
    let deliveries = store.deliveries(limit).map_err(db)?;
    let disabled = store.disabled_channels().map_err(db)?;
    let zone = &setup.zone;
    let io = |e: std::io::Error| Failure::Io(format!("standard output: {e}"));
    if json_out {
        let doc = json!({
            "alerts": alerts.iter().map(|r| json!({
                "id": r.alert.id,
                "status": r.status.as_str(),
                "rule": r.alert.rule,
                "severity": r.alert.severity,
                "key_id": r.alert.key_id,
                "key": r.alert.key,
                "key_name": r.alert.key_name,
                "client": r.alert.client,
                "count": r.alert.count,
                "first_seen": r.alert.first_seen,
                "last_seen": r.alert.last_seen,
                "resolved_at": r.alert.resolved_at,
                "updated": zone.rfc3339(r.updated_ms),
                "message": r.alert.message,
            })).collect::<Vec<_>>(),
            "deliveries": deliveries.iter().map(|d| json!({
                "notice": d.id,
                "channel": d.channel,
                "group": d.group,
                "state": d.state.as_str(),
                "attempts": d.attempts,
                "queued": zone.rfc3339(d.created_ms),
                "done": d.done_ms.map(|ms| zone.rfc3339(ms)),
                "last_error": d.last_error,
            })).collect::<Vec<_>>(),
            "disabled_channels": disabled.iter().map(|d| json!({
                "channel": d.channel,
                "since": zone.rfc3339(d.disabled_ms),
                "reason": d.reason,
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{doc}").map_err(io)?;
        return out.flush().map_err(io);
    }
    let mut text = String::new();
    if alerts.is_empty() {
        text.push_str("No alerts yet.\n");
    } else {
        text.push_str("Alerts (newest change first)\n");
        for r in &alerts {
            let a = &r.alert;
            text.push_str(&format!(
                "  {:<9} {:<8} {:<24} {}  ×{}  {} → {}\n",
                r.status.as_str(),
                a.severity,
                a.rule,
                crate::format::escape::printable(a.about().as_bytes()),
                a.count,
                a.first_seen,
                a.last_seen
            ));
        }
    }
    if !deliveries.is_empty() {
        text.push_str("\nDeliveries (newest first)\n");
        for d in &deliveries {
            text.push_str(&format!(
                "  {}  {:<10} {:<10} attempts {}  {}{}\n",
                d.id,
                d.channel,
                d.state.as_str(),
                d.attempts,
                crate::format::escape::printable(d.group.as_bytes()),
                d.last_error
                    .as_ref()
                    .map_or_else(String::new, |e| format!("  last error: {e}"))
            ));
        }
    }
    for d in &disabled {
        text.push_str(&format!(
            "\nChannel {} is disabled since {}: {} (change its settings to send again)\n",
            d.channel,
            zone.rfc3339(d.disabled_ms),
            d.reason
        ));
    }
    out.write_all(text.as_bytes()).map_err(io)?;
    out.flush().map_err(io)
}

/// `keywatch alert-test`: a marked test notice through every channel (or
/// one), sent now, with what each receiver answered. Fails when any failed.
pub fn test(common: &Common, only: Option<&str>, out: &mut dyn Write) -> Result<(), Failure> {
    let setup = Setup::load(common)?;
    let channels = setup.channels()?;
    if channels.is_empty() {
        return Err(Failure::Usage(
            "alert-test: no alert channels configured; add a [channels.NAME] table to the configuration".into(),
        ));
    }
    if let Some(name) = only
        && !channels.iter().any(|c| c.name == name)
    {
        let all: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
        return Err(Failure::Usage(format!(
            "--channel {name}: no such channel; configured: {}",
            all.join(", ")
        )));
    }
    let now = now_ms();
    let stamp = setup.zone.rfc3339(now);
    let notice = Notice {
        id: format!("kwn_test_{now}"),
        group: "keywatch_test".into(),
        alerts: vec![Alert {
            id: "kw_test".into(),
            state: State::Firing,
            rule: "keywatch_test".into(),
            severity: "info".into(),
            key_id: None,
            key: None,
            key_name: None,
            client: None,
            clients: 0,
            count: 1,
            first_seen: stamp.clone(),
            last_seen: stamp,
            resolved_at: None,
            message: "This is a test notice from keywatch alert-test. Nothing happened.".into(),
            evidence: None,
            action: "Nothing to do: this channel works.".into(),
        }],
        test: true,
    };
    let policy = retry_policy(&setup.config.alerts);
    let io = |e: std::io::Error| Failure::Io(format!("standard output: {e}"));
    let mut failed = 0;
    for ch in channels.iter().filter(|c| only.is_none_or(|n| n == c.name)) {
        let result = ch
            .render(&notice)
            .map(|body| send::attempt(ch, &notice.id, &body, &policy));
        let line = match result {
            Ok(o) => {
                let word = match o.verdict {
                    Verdict::Delivered => "delivered",
                    Verdict::Retry { .. } => {
                        failed += 1;
                        "failed (would be retried)"
                    }
                    Verdict::Rejected { .. } => {
                        failed += 1;
                        "refused"
                    }
                    Verdict::Disable { .. } => {
                        failed += 1;
                        "refused: endpoint gone"
                    }
                };
                format!(
                    "{} ({} → {}): {word}: {}",
                    ch.name,
                    ch.kind.as_str(),
                    ch.shown(),
                    o.answer
                )
            }
            Err(e) => {
                failed += 1;
                format!("{} ({}): cannot render: {e}", ch.name, ch.kind.as_str())
            }
        };
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)?;
    if failed > 0 {
        return Err(Failure::Io(format!(
            "alert-test: {failed} channel(s) did not take the test notice"
        )));
    }
    Ok(())
}
