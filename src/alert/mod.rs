//! The alert lifecycle: findings become alerts with stable ids, alerts are
//! silenced or inhibited, grouped per channel, and paced into notices the
//! way Alertmanager paces them.
//!
//! [`Alerter::evaluate`] looks at the current findings and returns what to
//! queue. It is a pure step over its inputs and the per-group records it
//! keeps; those records go into the store in the same transaction as the
//! notices (see [`crate::store::Store::commit`]), so a restart neither
//! repeats a notice nor forgets one.
//!
//! Pacing, per channel and group:
//! - a group with something new waits `group_wait` before its first notice
//!   (more alerts of the group may arrive and share it);
//! - once notified, a changed group (a new alert, or one resolved) is
//!   notified again no sooner than `group_interval` after the last notice;
//! - a group still firing with new activity since its last notice is
//!   reminded after `repeat_interval`. An alert whose rule records events
//!   (a key seen in a URL) is "still firing" only while new events come.
//!
//! An alert resolves when its finding's episode ends; the resolution is
//! sent once, to the channels that were told it fired, and a later episode
//! of the same alert (same id) fires again with its own start.

pub mod channels;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::deliver::notice::{Alert, Notice, State};
use crate::detect::{Finding, Severity};
use crate::store::outbox::Outgoing;
use crate::store::silences::Silence;
use crate::zone::Zone;
use channels::{Channel, GroupBy};

/// What became of an alert at the last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
    /// Muted by a `keywatch silence`.
    Silenced,
    /// Muted by a stronger alert about the same client or key.
    Inhibited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
            Status::Silenced => "silenced",
            Status::Inhibited => "inhibited",
        }
    }

    pub fn parse(s: &str) -> Status {
        match s {
            "resolved" => Status::Resolved,
            "silenced" => Status::Silenced,
            "inhibited" => Status::Inhibited,
            _ => Status::Firing,
        }
    }
}

/// One alert's latest state, kept for `keywatch alerts`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub status: Status,
    pub alert: Alert,
    pub updated_ms: i64,
}

/// What one channel last told about one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// When something new in the group was first seen, while not yet sent.
    pub pending_since_ms: Option<i64>,
    /// When the last notice was queued.
    pub sent_ms: Option<i64>,
    /// The alerts the last notices reported firing: id → the time (log
    /// time) of the last event they counted.
    pub sent: BTreeMap<String, i64>,
}

/// A group record to store; `None` removes it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub channel: String,
    pub group: String,
    pub state: Option<GroupState>,
}

/// What one evaluation produced, to be committed together.
#[derive(Debug, Default)]
pub struct Evaluation {
    pub notices: Vec<Outgoing>,
    pub alerts: Vec<AlertRow>,
    pub groups: Vec<GroupRow>,
    /// Notices that could not be rendered, with the reason.
    pub errors: Vec<String>,
}

impl Evaluation {
    pub fn is_empty(&self) -> bool {
        self.notices.is_empty() && self.alerts.is_empty() && self.groups.is_empty()
    }

    /// Adds a later evaluation's output (not yet committed) to this one.
    pub fn absorb(&mut self, later: Evaluation) {
        self.notices.extend(later.notices);
        for row in later.alerts {
            self.alerts.retain(|r| r.alert.id != row.alert.id);
            self.alerts.push(row);
        }
        for row in later.groups {
            self.groups
                .retain(|g| !(g.channel == row.channel && g.group == row.group));
            self.groups.push(row);
        }
        self.errors.extend(later.errors);
    }
}

/// A current alert with what the pacing needs.
struct Current {
    alert: Alert,
    severity: Severity,
    /// The episode: when it began, its last event, and when it ended.
    first_ms: i64,
    last_ms: i64,
    resolved_ms: Option<i64>,
    status: Status,
}

/// Turns findings into notices, per channel.
pub struct Alerter {
    channels: Vec<Channel>,
    zone: Zone,
    groups: BTreeMap<(String, String), GroupState>,
    /// (status, count, last time) of each alert as last stored.
    stored: BTreeMap<String, (Status, u64, i64)>,
}

impl Alerter {
    /// An alerter for `channels`, resuming from the stored group records.
    pub fn new(channels: Vec<Channel>, zone: Zone, stored: Vec<GroupRow>) -> Alerter {
        let groups = stored
            .into_iter()
            .filter_map(|g| Some(((g.channel, g.group), g.state?)))
            .collect();
        Alerter {
            channels,
            zone,
            groups,
            stored: BTreeMap::new(),
        }
    }

    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// One step: the findings as they stand now, the silences in force, the
    /// wall-clock time. `immediate` skips the waits (a one-off `scan
    /// --alert`): every group with news is notified now.
    pub fn evaluate(
        &mut self,
        findings: &[Finding],
        names: &[String],
        silences: &[Silence],
        now_ms: i64,
        immediate: bool,
    ) -> Evaluation {
        let current = self.current(findings, names, silences, now_ms);
        let mut out = Evaluation::default();
        for c in current.values() {
            let a = &c.alert;
            let seen = (c.status, a.count, c.last_ms);
            if self.stored.get(&a.id) != Some(&seen) {
                self.stored.insert(a.id.clone(), seen);
                out.alerts.push(AlertRow {
                    status: c.status,
                    alert: a.clone(),
                    updated_ms: now_ms,
                });
            }
        }
        for ch in &self.channels {
            let mut groups: BTreeMap<String, Vec<&Current>> = BTreeMap::new();
            for c in current.values() {
                if matches!(c.status, Status::Firing | Status::Resolved)
                    && ch.routes(&c.alert.rule, c.severity)
                {
                    groups
                        .entry(group_key(&c.alert, ch.pacing.group_by))
                        .or_default()
                        .push(c);
                }
            }
            for (group, members) in groups {
                let key = (ch.name.clone(), group);
                let st = self.groups.entry(key.clone()).or_default();
                let before = st.clone();
                if let Some(n) = step(ch, &key.1, st, &members, now_ms, immediate) {
                    match ch.render(&n) {
                        Ok(body) => out.notices.push(Outgoing {
                            id: n.id.clone(),
                            channel: ch.name.clone(),
                            group: key.1.clone(),
                            body,
                            created_ms: now_ms,
                        }),
                        Err(e) => out.errors.push(format!("channel {}: {e}", ch.name)),
                    }
                }
                if *st != before {
                    let state = (st.sent_ms.is_some() && !st.sent.is_empty()
                        || st.pending_since_ms.is_some())
                    .then(|| st.clone());
                    if state.is_none() {
                        self.groups.remove(&key);
                    }
                    out.groups.push(GroupRow {
                        channel: key.0,
                        group: key.1,
                        state,
                    });
                }
            }
        }
        out
    }

    /// The findings as alerts by id (findings about the same rule and key or
    /// client are one alert), each with its status.
    fn current(
        &self,
        findings: &[Finding],
        names: &[String],
        silences: &[Silence],
        now_ms: i64,
    ) -> BTreeMap<String, Current> {
        let mut by_id: BTreeMap<String, Current> = BTreeMap::new();
        for f in findings {
            let name = f
                .key
                .as_ref()
                .and_then(|(_, l)| l.name)
                .and_then(|i| names.get(i as usize))
                .map(String::as_str);
            let a = Alert::from_finding(f, name, &self.zone);
            let episode = || Current {
                severity: f.severity,
                first_ms: f.first_ms,
                last_ms: f.last_ms,
                resolved_ms: f.resolved_ms,
                status: Status::Firing,
                alert: a.clone(),
            };
            match by_id.get_mut(&a.id) {
                // Episodes of one alert: the latest stands for it (a new
                // one fires again, with its own start).
                Some(c) if c.resolved_ms.is_some_and(|end| f.first_ms >= end) => {
                    *c = episode();
                }
                Some(c) if f.resolved_ms.is_some_and(|end| c.first_ms >= end) => {}
                Some(c) => {
                    // Same rule and subject in another place: one alert.
                    c.alert.count += a.count;
                    c.alert.clients = c.alert.clients.max(a.clients);
                    if a.state == State::Firing {
                        c.alert.state = State::Firing;
                        c.alert.resolved_at = None;
                    }
                    if f.last_ms > c.last_ms {
                        c.last_ms = f.last_ms;
                        c.alert.last_seen = a.last_seen;
                    }
                    if a.first_seen < c.alert.first_seen {
                        c.alert.first_seen = a.first_seen;
                    }
                }
                None => {
                    by_id.insert(
                        a.id.clone(),
                        Current {
                            severity: f.severity,
                            first_ms: f.first_ms,
                            last_ms: f.last_ms,
                            resolved_ms: f.resolved_ms,
                            status: Status::Firing,
                            alert: a,
                        },
                    );
                }
            }
        }
        // Inhibition, from the registry: an alert is hidden while the
        // stronger rule fires about the same client (or key).
        use crate::detect::RuleId;
        let subjects = |rule: RuleId| {
            by_id
                .values()
                .filter(|c| c.alert.rule == rule.as_str() && c.alert.state == State::Firing)
                .flat_map(|c| [c.alert.client.clone(), c.alert.key_id.clone()])
                .flatten()
                .collect::<std::collections::HashSet<String>>()
        };
        let stronger: BTreeMap<&str, std::collections::HashSet<String>> = RuleId::ALL
            .iter()
            .filter_map(|r| Some((r.as_str(), subjects(r.inhibited_by()?))))
            .collect();
        for c in by_id.values_mut() {
            let a = &c.alert;
            let silenced = silences.iter().any(|s| {
                s.rule == a.rule
                    && s.expires_ms > now_ms
                    && ((s.key_id.is_some() && s.key_id == a.key_id)
                        || (s.client.is_some() && s.client == a.client))
            });
            let inhibited = stronger.get(a.rule.as_str()).is_some_and(|by| {
                let by_client =
                    a.key_id.is_none() && a.client.as_ref().is_some_and(|cl| by.contains(cl));
                let by_key = a.key_id.as_ref().is_some_and(|k| by.contains(k));
                by_client || by_key
            });
            c.status = if silenced {
                Status::Silenced
            } else if inhibited {
                Status::Inhibited
            } else if a.state == State::Resolved {
                Status::Resolved
            } else {
                Status::Firing
            };
        }
        by_id
    }
}

/// The group an alert belongs to on a channel.
fn group_key(a: &Alert, by: GroupBy) -> String {
    match by {
        GroupBy::Rule => a.rule.clone(),
        GroupBy::Alert => match (&a.key_id, &a.client) {
            (Some(k), _) => format!("{}/key:{k}", a.rule),
            (None, Some(c)) => format!("{}/client:{c}", a.rule),
            (None, None) => a.rule.clone(),
        },
    }
}

/// Decides whether one group is notified now, and if so returns the notice
/// and updates the group's record.
fn step(
    ch: &Channel,
    group: &str,
    st: &mut GroupState,
    members: &[&Current],
    now_ms: i64,
    immediate: bool,
) -> Option<Notice> {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let p = &ch.pacing;
    let news = members.iter().any(|c| {
        let told = st.sent.get(&c.alert.id);
        // Firing and not told, told and no longer firing, or a new episode
        // begun after the last event the channel was told of.
        (c.status == Status::Firing) != told.is_some()
            || (c.status == Status::Firing && told.is_some_and(|&l| c.first_ms > l))
    });
    let activity = members.iter().any(|c| {
        c.status == Status::Firing && st.sent.get(&c.alert.id).is_some_and(|&l| c.last_ms > l)
    });
    let due = if news {
        let since = *st.pending_since_ms.get_or_insert(now_ms);
        immediate
            || match st.sent_ms {
                Some(sent) if !st.sent.is_empty() => now_ms - sent >= ms(p.group_interval),
                _ => now_ms - since >= ms(p.group_wait),
            }
    } else {
        st.pending_since_ms = None;
        activity
            && st
                .sent_ms
                .is_some_and(|sent| now_ms - sent >= ms(p.repeat_interval))
    };
    if !due {
        return None;
    }
    // Firing alerts, and resolutions of alerts this channel was told fired.
    let mut alerts: Vec<&Current> = members
        .iter()
        .copied()
        .filter(|c| c.status == Status::Firing || st.sent.contains_key(&c.alert.id))
        .collect();
    alerts.sort_by(|a, b| {
        (a.status != Status::Firing)
            .cmp(&(b.status != Status::Firing))
            .then(b.severity.cmp(&a.severity))
            .then(a.alert.id.cmp(&b.alert.id))
    });
    st.pending_since_ms = None;
    if alerts.is_empty() {
        return None;
    }
    st.sent_ms = Some(now_ms);
    let mut digest = Sha256::new();
    for part in [ch.name.as_str(), group, &now_ms.to_string()] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    for c in &alerts {
        digest.update(c.alert.id.as_bytes());
        digest.update([c.status as u8]);
        if c.status == Status::Firing {
            st.sent.insert(c.alert.id.clone(), c.last_ms);
        } else {
            st.sent.remove(&c.alert.id);
        }
    }
    let id = std::iter::once("kwn_".to_owned())
        .chain(digest.finalize()[..10].iter().map(|b| format!("{b:02x}")))
        .collect();
    Some(Notice {
        id,
        group: group.to_owned(),
        alerts: alerts.iter().map(|c| c.alert.clone()).collect(),
        test: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const MIN: i64 = 60_000;

    fn channel(extra: &str) -> Vec<Channel> {
        let (_dir, url) = channels::secret_file("https://hooks.example/a");
        let text = format!(
            "[alerts]\ngroup_wait = \"30s\"\ngroup_interval = \"5m\"\nrepeat_interval = \"4h\"\n[channels.ops]\ntype = \"slack\"\nurl = \"{url}\"\n{extra}"
        );
        channels::channels(&Config::parse(&text).unwrap()).unwrap()
    }

    fn finding(rule: &'static str, client: &str, last_ms: i64) -> Finding {
        Finding {
            rule,
            severity: Severity::High,
            key: None,
            client: Some(client.to_owned()),
            clients: 1,
            place: None,
            first_ms: 0,
            last_ms,
            count: 10,
            message: "m".into(),
            evidence: None,
            action: "a",
            resolved_ms: None,
        }
    }

    fn alerter(extra: &str) -> Alerter {
        Alerter::new(channel(extra), Zone::parse("UTC").unwrap(), Vec::new())
    }

    #[test]
    fn a_new_episode_fires_again_with_its_own_start() {
        let mut al = alerter("");
        let t0 = 1_000_000;
        let mut first = finding("key_bruteforce", "198.51.100.1", 60_000);
        let e = al.evaluate(std::slice::from_ref(&first), &[], &[], t0, true);
        assert_eq!(e.notices.len(), 1);
        // The first episode ends: its resolution is told once.
        first.resolved_ms = Some(120_000);
        let e = al.evaluate(std::slice::from_ref(&first), &[], &[], t0 + 10 * MIN, false);
        assert_eq!(e.notices.len(), 1);
        let body = String::from_utf8_lossy(&e.notices[0].body).into_owned();
        assert!(body.contains("resolved"), "{body}");
        // Hours later the client guesses again: a new finding, the same
        // alert, notified anew with the new start (the ended one is history).
        let mut second = finding("key_bruteforce", "198.51.100.1", 4 * 60 * MIN + 60_000);
        second.first_ms = 4 * 60 * MIN;
        let both = vec![first.clone(), second];
        let e = al.evaluate(&both, &[], &[], t0 + 4 * 60 * MIN, false);
        assert!(e.notices.is_empty(), "the group waits first");
        let e = al.evaluate(&both, &[], &[], t0 + 4 * 60 * MIN + 5 * MIN, false);
        assert_eq!(e.notices.len(), 1);
        let body = String::from_utf8_lossy(&e.notices[0].body).into_owned();
        assert!(body.contains("Since 1970-01-01T04:00:00Z"), "{body}");
        assert!(
            body.contains("firing") && !body.contains("resolved"),
            "{body}"
        );
        assert!(
            body.contains("10 times"),
            "the new episode's own count: {body}"
        );
        // Both episodes of one alert, the second still firing, evaluated in
        // the other order too: the same alert.
        let rev: Vec<Finding> = both.iter().rev().cloned().collect();
        let e = al.evaluate(&rev, &[], &[], t0 + 5 * 60 * MIN, false);
        assert!(e.notices.is_empty());
    }

    #[test]
    fn a_group_waits_then_is_told_once_then_repeats_only_with_activity() {
        let mut al = alerter("");
        let f = vec![finding("auth_failure_burst", "198.51.100.1", 1_000)];
        let t0 = 1_000_000;
        assert!(al.evaluate(&f, &[], &[], t0, false).notices.is_empty());
        assert!(
            al.evaluate(&f, &[], &[], t0 + 29_000, false)
                .notices
                .is_empty()
        );
        let e = al.evaluate(&f, &[], &[], t0 + 30_000, false);
        assert_eq!(e.notices.len(), 1);
        assert_eq!(e.notices[0].group, "auth_failure_burst/client:198.51.100.1");
        // Nothing new: no notice, not even after the repeat interval.
        assert!(
            al.evaluate(&f, &[], &[], t0 + 300 * MIN, false)
                .notices
                .is_empty()
        );
        // New activity: a reminder, but only after the repeat interval.
        let later = vec![finding("auth_failure_burst", "198.51.100.1", 5_000)];
        let mut al = alerter("");
        al.evaluate(&f, &[], &[], t0, false);
        al.evaluate(&f, &[], &[], t0 + 30_000, false);
        assert!(
            al.evaluate(&later, &[], &[], t0 + 60 * MIN, false)
                .notices
                .is_empty()
        );
        assert_eq!(
            al.evaluate(&later, &[], &[], t0 + 4 * 60 * MIN + 30_000, false)
                .notices
                .len(),
            1
        );
    }

    #[test]
    fn changes_wait_for_the_group_interval_and_resolutions_are_sent_once() {
        let mut al = alerter("group_by = \"rule\"\n");
        let t0 = 1_000_000;
        let one = vec![finding("key_rate_spike", "198.51.100.1", 1_000)];
        assert_eq!(al.evaluate(&one, &[], &[], t0, true).notices.len(), 1);
        let two = vec![
            one[0].clone(),
            finding("key_rate_spike", "198.51.100.2", 2_000),
        ];
        assert!(
            al.evaluate(&two, &[], &[], t0 + MIN, false)
                .notices
                .is_empty()
        );
        let e = al.evaluate(&two, &[], &[], t0 + 5 * MIN, false);
        assert_eq!(
            e.notices.len(),
            1,
            "the second alert joins after the group interval"
        );
        let mut resolved = two.clone();
        for f in &mut resolved {
            f.resolved_ms = Some(3_000);
        }
        let e = al.evaluate(&resolved, &[], &[], t0 + 10 * MIN, false);
        assert_eq!(e.notices.len(), 1);
        let body = String::from_utf8(e.notices[0].body.clone()).unwrap();
        assert!(body.contains("RESOLVED"), "{body}");
        assert_eq!(
            e.groups[0].state, None,
            "a fully resolved group is forgotten"
        );
        assert!(
            al.evaluate(&resolved, &[], &[], t0 + 20 * MIN, false)
                .notices
                .is_empty()
        );
    }

    #[test]
    fn a_restart_resumes_without_repeating() {
        let mut al = alerter("");
        let f = vec![finding("key_bruteforce", "198.51.100.1", 1_000)];
        let e = al.evaluate(&f, &[], &[], 0, true);
        assert_eq!(e.notices.len(), 1);
        let mut again = Alerter::new(channel(""), Zone::parse("UTC").unwrap(), e.groups);
        assert!(
            again
                .evaluate(&f, &[], &[], 10 * MIN, false)
                .notices
                .is_empty()
        );
    }

    #[test]
    fn stronger_alerts_inhibit_their_twins_and_silences_mute() {
        let mut al = alerter("");
        let f = vec![
            finding("key_bruteforce", "198.51.100.1", 1_000),
            finding("auth_failure_burst", "198.51.100.1", 1_000),
            finding("auth_failure_burst", "198.51.100.2", 1_000),
        ];
        let silence = Silence {
            id: 1,
            rule: "auth_failure_burst".into(),
            key_id: None,
            client: Some("198.51.100.2".into()),
            comment: "known scanner".into(),
            created_ms: 0,
            expires_ms: 10 * MIN,
        };
        let e = al.evaluate(&f, &[], std::slice::from_ref(&silence), 0, true);
        let groups: Vec<&str> = e.notices.iter().map(|n| n.group.as_str()).collect();
        assert_eq!(groups, ["key_bruteforce/client:198.51.100.1"]);
        let status: BTreeMap<_, _> = e
            .alerts
            .iter()
            .map(|r| {
                (
                    r.alert.client.clone().unwrap() + " " + &r.alert.rule,
                    r.status,
                )
            })
            .collect();
        assert_eq!(status["198.51.100.1 auth_failure_burst"], Status::Inhibited);
        assert_eq!(status["198.51.100.2 auth_failure_burst"], Status::Silenced);
        // The silence expires: the alert is news and is sent.
        let e = al.evaluate(&f, &[], &[silence], 11 * MIN, true);
        let groups: Vec<&str> = e.notices.iter().map(|n| n.group.as_str()).collect();
        assert_eq!(groups, ["auth_failure_burst/client:198.51.100.2"]);
    }

    #[test]
    fn routing_filters_rules_and_severities() {
        let mut al = alerter("rules = [\"key_bruteforce\"]\n");
        let f = vec![
            finding("key_bruteforce", "198.51.100.1", 1_000),
            finding("auth_failure_burst", "198.51.100.2", 1_000),
        ];
        assert_eq!(al.evaluate(&f, &[], &[], 0, true).notices.len(), 1);
        let mut al = alerter("min_severity = \"critical\"\n");
        assert!(al.evaluate(&f, &[], &[], 0, true).notices.is_empty());
    }
}
