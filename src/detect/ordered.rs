//! Rules whose verdict depends on the order of requests in time (leaky
//! buckets, sliding windows). They see compact [`Event`]s in log order: live
//! as lines are read, or replayed piece by piece when a scan parses a file
//! on several threads.

use std::collections::VecDeque;

use super::{Finding, Severity, key_phrase};
use crate::hash::{FastMap, FastSet};
use crate::keys::{KeyId, KeyRef};
use crate::usage::{Distinct, KeyLabel};

/// What the ordered rules need from one keyed request.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub time_ms: i64,
    pub client: u128,
    pub key: KeyRef,
    /// 0 when the format logs none.
    pub status: u16,
    /// A hash of the user agent (0 when not logged).
    pub ua: u64,
}

impl Event {
    fn rejected(&self) -> bool {
        matches!(self.status, 401 | 403)
    }
}

/// A client address for people, from its tag (see `usage::distinct::client_tag`).
pub fn client_text(tag: u128) -> String {
    if tag >> 127 == 1 {
        return "(non-IP client)".into();
    }
    if tag < 1 << 32 {
        return std::net::Ipv4Addr::from(tag as u32).to_string();
    }
    std::net::Ipv6Addr::from(tag).to_string()
}

/// `[rules.key_bruteforce]`, `[rules.auth_failure_burst]`, `[rules.rejected_key_repeated]`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BucketConfig {
    pub enabled: bool,
    /// Events the bucket holds; the next one inside the leak time fires.
    pub capacity: u32,
    /// Seconds for one event to leak out.
    pub leak_seconds: u32,
}

impl Default for BucketConfig {
    /// CrowdSec's numbers for HTTP authentication failures: 5 events, one leaks every 10 s.
    fn default() -> Self {
        BucketConfig {
            enabled: true,
            capacity: 5,
            leak_seconds: 10,
        }
    }
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepeatedConfig {
    pub enabled: bool,
    /// Rejections of one key within the window that fire.
    pub min_rejections: u32,
    /// The window, in minutes.
    pub window_minutes: u32,
    /// Share of the key's requests in the window that were rejected (0..1).
    pub min_share: f64,
}

impl Default for RepeatedConfig {
    fn default() -> Self {
        RepeatedConfig {
            enabled: true,
            min_rejections: 5,
            window_minutes: 10,
            min_share: 0.5,
        }
    }
}

/// Per-client and per-key state is capped; past the cap, idle entries go first.
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Debug)]
struct Bucket {
    level: f64,
    last_ms: i64,
}

impl Bucket {
    /// Pours one event; returns whether the bucket overflowed.
    fn pour(&mut self, now: i64, capacity: u32, leak_ms: f64) -> bool {
        let drained = (now - self.last_ms).max(0) as f64 / leak_ms;
        self.level = (self.level - drained).max(0.0) + 1.0;
        self.last_ms = now;
        self.level > f64::from(capacity)
    }
}

/// One client's or key's finding as it grows.
#[derive(Clone, Debug)]
struct Open {
    count: u64,
    first_ms: i64,
    last_ms: i64,
    keys: Distinct,
    label: Option<KeyLabel>,
    clients: Distinct,
    first_client: u128,
}

impl Open {
    fn new(e: &Event) -> Open {
        Open {
            count: 0,
            first_ms: e.time_ms,
            last_ms: e.time_ms,
            keys: Distinct::default(),
            label: None,
            clients: Distinct::default(),
            first_client: e.client,
        }
    }

    fn add(&mut self, e: &Event) {
        self.count += 1;
        self.last_ms = self.last_ms.max(e.time_ms);
        self.keys.insert(u128::from(u64::from_le_bytes(e.key.id.0)));
        self.clients.insert(e.client);
    }
}

/// Per client: the distinct rejected keys still in the bucket.
#[derive(Default)]
struct ClientKeys {
    bucket: Option<Bucket>,
    recent: VecDeque<(i64, KeyId)>,
}

#[derive(Default)]
pub struct OrderedDetectors {
    brute: Option<BucketConfig>,
    burst: Option<BucketConfig>,
    repeated: Option<RepeatedConfig>,
    /// Keys that succeeded at least once: their rejections are no guessing.
    known_valid: FastSet<KeyId>,
    brute_state: FastMap<u128, ClientKeys>,
    burst_state: FastMap<u128, Bucket>,
    /// Per key: (minute, rejected, total) for the window's minutes.
    repeated_state: FastMap<KeyId, VecDeque<(i64, u32, u32)>>,
    brute_open: FastMap<u128, Open>,
    burst_open: FastMap<u128, Open>,
    repeated_open: FastMap<KeyId, Open>,
    behaviour: Option<super::behaviour::KeyBehaviour>,
    /// For the inferred revocation: per key that once worked, its last
    /// success and the rejections since.
    inferred: bool,
    last_success: FastMap<KeyId, (i64, u32, i64)>,
    inferred_open: FastMap<KeyId, Open>,
    pub untracked: u64,
}

impl OrderedDetectors {
    pub fn new(rules: &super::RulesConfig) -> Option<Self> {
        let (brute, burst, repeated) = (
            &rules.key_bruteforce,
            &rules.auth_failure_burst,
            &rules.rejected_key_repeated,
        );
        let d = OrderedDetectors {
            inferred: rules.revoked_key_in_use.enabled,
            behaviour: super::behaviour::KeyBehaviour::new(rules),
            brute: brute.enabled.then(|| brute.clone()),
            burst: burst.enabled.then(|| burst.clone()),
            repeated: repeated.enabled.then(|| repeated.clone()),
            ..OrderedDetectors::default()
        };
        (d.brute.is_some() || d.burst.is_some() || d.repeated.is_some() || d.behaviour.is_some())
            .then_some(d)
    }

    /// Takes new settings and keeps what was learned (a reload): a rule
    /// still on keeps its state with the new numbers, a rule switched off
    /// forgets, one switched on starts empty.
    pub fn reconfigure(mut self, rules: &super::RulesConfig) -> Option<Self> {
        let (brute, burst, repeated) = (
            &rules.key_bruteforce,
            &rules.auth_failure_burst,
            &rules.rejected_key_repeated,
        );
        self.brute = brute.enabled.then(|| brute.clone());
        self.burst = burst.enabled.then(|| burst.clone());
        self.repeated = repeated.enabled.then(|| repeated.clone());
        if self.brute.is_none() {
            self.brute_state.clear();
            self.brute_open.clear();
        }
        if self.burst.is_none() {
            self.burst_state.clear();
            self.burst_open.clear();
        }
        if self.repeated.is_none() {
            self.repeated_state.clear();
            self.repeated_open.clear();
        }
        self.inferred = rules.revoked_key_in_use.enabled;
        if !self.inferred {
            self.last_success.clear();
            self.inferred_open.clear();
        }
        self.behaviour = match self.behaviour.take() {
            Some(b) => b.reconfigure(rules),
            None => super::behaviour::KeyBehaviour::new(rules),
        };
        (self.brute.is_some()
            || self.burst.is_some()
            || self.repeated.is_some()
            || self.behaviour.is_some())
        .then_some(self)
    }

    pub fn observe(&mut self, e: &Event) {
        if let Some(b) = &mut self.behaviour {
            b.observe(e);
        }
        if matches!(e.status, 200..=399)
            && self.known_valid.len() < MAX_TRACKED
            && !self.known_valid.contains(&e.key.id)
        {
            self.known_valid.insert(e.key.id);
        }
        if self.inferred && !e.key.revoked {
            self.observe_inferred(e);
        }
        if let Some(cfg) = self.repeated.clone() {
            self.observe_repeated(e, &cfg);
        }
        if !e.rejected() {
            return;
        }
        if let Some(cfg) = self.burst.clone() {
            let leak = f64::from(cfg.leak_seconds.max(1)) * 1000.0;
            if !self.burst_state.contains_key(&e.client) && self.burst_state.len() >= MAX_TRACKED {
                prune(
                    &mut self.burst_state,
                    e.time_ms,
                    |b| b.last_ms,
                    leak * f64::from(cfg.capacity),
                );
            }
            if self.burst_state.len() < MAX_TRACKED || self.burst_state.contains_key(&e.client) {
                let b = self.burst_state.entry(e.client).or_insert(Bucket {
                    level: 0.0,
                    last_ms: e.time_ms,
                });
                let over = b.pour(e.time_ms, cfg.capacity, leak);
                if over || self.burst_open.contains_key(&e.client) {
                    self.burst_open
                        .entry(e.client)
                        .or_insert_with(|| Open::new(e))
                        .add(e);
                }
            } else {
                self.untracked += 1;
            }
        }
        if let Some(cfg) = self.brute.clone() {
            if self.known_valid.contains(&e.key.id) {
                return;
            }
            let leak = f64::from(cfg.leak_seconds.max(1)) * 1000.0;
            let span = (leak * f64::from(cfg.capacity + 1)) as i64;
            if !self.brute_state.contains_key(&e.client) && self.brute_state.len() >= MAX_TRACKED {
                let before = self.brute_state.len();
                self.brute_state
                    .retain(|_, c| c.recent.back().is_some_and(|(t, _)| e.time_ms - t < span));
                if self.brute_state.len() == before {
                    self.untracked += 1;
                    return;
                }
            }
            let c = self.brute_state.entry(e.client).or_default();
            while c.recent.front().is_some_and(|(t, _)| e.time_ms - t >= span) {
                c.recent.pop_front();
            }
            if c.recent.iter().any(|(_, k)| *k == e.key.id) {
                return; // not a new key: distinct keys only
            }
            c.recent.push_back((e.time_ms, e.key.id));
            let b = c.bucket.get_or_insert(Bucket {
                level: 0.0,
                last_ms: e.time_ms,
            });
            let over = b.pour(e.time_ms, cfg.capacity, leak);
            if over || self.brute_open.contains_key(&e.client) {
                let first = self.brute_open.entry(e.client).or_insert_with(|| {
                    // The finding starts with the keys already in the bucket.
                    let mut o = Open::new(e);
                    o.first_ms = c.recent.front().map_or(e.time_ms, |(t, _)| *t);
                    o
                });
                if first.count == 0 {
                    for (t, k) in &c.recent {
                        let prior = Event {
                            time_ms: *t,
                            key: KeyRef { id: *k, ..e.key },
                            ..*e
                        };
                        first.add(&prior);
                    }
                } else {
                    first.add(e);
                }
            }
        }
    }

    /// A key that worked within the last 7 days and has since been rejected
    /// at least 3 times in a row for an hour or more, with no success in
    /// between: it looks revoked, while something still uses it.
    fn observe_inferred(&mut self, e: &Event) {
        const WEEK: i64 = 7 * 86_400_000;
        const HOUR: i64 = 3_600_000;
        if matches!(e.status, 200..=299) {
            let room = self.last_success.len() < MAX_TRACKED;
            match self.last_success.get_mut(&e.key.id) {
                Some(v) => *v = (e.time_ms, 0, 0),
                None if room => {
                    self.last_success.insert(e.key.id, (e.time_ms, 0, 0));
                }
                None => {}
            }
            return;
        }
        if !e.rejected() {
            return;
        }
        let Some((ok_ms, rejections, streak_start)) = self.last_success.get_mut(&e.key.id) else {
            return;
        };
        if e.time_ms - *ok_ms > WEEK {
            return;
        }
        if *rejections == 0 {
            *streak_start = e.time_ms;
        }
        *rejections += 1;
        if *rejections >= 3 && e.time_ms - *streak_start >= HOUR {
            let since = *ok_ms;
            let n = *rejections;
            let o = self.inferred_open.entry(e.key.id).or_insert_with(|| {
                let mut o = Open::new(e);
                o.label = Some(KeyLabel {
                    masked: e.key.masked,
                    name: e.key.name,
                });
                o.first_ms = since;
                o.count = u64::from(n) - 1;
                o
            });
            o.add(e);
        }
    }

    fn observe_repeated(&mut self, e: &Event, cfg: &RepeatedConfig) {
        if e.key.revoked {
            return; // revoked_key_in_use covers it
        }
        let minute = e.time_ms.div_euclid(60_000);
        let tracked = self.repeated_state.contains_key(&e.key.id);
        if !tracked && !e.rejected() {
            return; // only keys with a rejection are followed
        }
        if !tracked && self.repeated_state.len() >= MAX_TRACKED {
            let w = i64::from(cfg.window_minutes);
            self.repeated_state
                .retain(|_, m| m.back().is_some_and(|(t, _, _)| minute - t < w));
            if self.repeated_state.len() >= MAX_TRACKED {
                self.untracked += 1;
                return;
            }
        }
        let w = i64::from(cfg.window_minutes.max(1));
        let mins = self.repeated_state.entry(e.key.id).or_default();
        while mins.front().is_some_and(|(t, _, _)| minute - t >= w) {
            mins.pop_front();
        }
        match mins.back_mut() {
            Some((t, r, n)) if *t == minute => {
                *n += 1;
                *r += u32::from(e.rejected());
            }
            _ => mins.push_back((minute, u32::from(e.rejected()), 1)),
        }
        if !e.rejected() {
            return;
        }
        let (rej, total) = mins
            .iter()
            .fold((0u32, 0u32), |(r, n), (_, a, b)| (r + a, n + b));
        let firing =
            rej >= cfg.min_rejections && f64::from(rej) >= cfg.min_share * f64::from(total);
        if firing || self.repeated_open.contains_key(&e.key.id) {
            let o = self.repeated_open.entry(e.key.id).or_insert_with(|| {
                let mut o = Open::new(e);
                o.label = Some(KeyLabel {
                    masked: e.key.masked,
                    name: e.key.name,
                });
                // The window's earlier rejections belong to the finding.
                o.count = u64::from(rej) - 1;
                o.first_ms = mins.front().map_or(e.time_ms, |(t, _, _)| t * 60_000);
                o
            });
            o.add(e);
        }
    }

    pub fn findings(&self, names: &[String]) -> Vec<Finding> {
        let mut out = self
            .behaviour
            .as_ref()
            .map(|b| b.findings(names))
            .unwrap_or_default();
        for (client, o) in &self.brute_open {
            let ip = client_text(*client);
            out.push(Finding {
                resolved_ms: None,
                rule: "key_bruteforce",
                severity: Severity::High,
                key: None,
                client: Some(ip.clone()),
                clients: 1,
                place: None,
                first_ms: o.first_ms,
                last_ms: o.last_ms,
                count: o.keys.count(),
                message: format!(
                    "client {ip} presented {} different keys that were rejected, faster than any client uses keys: someone is guessing API keys",
                    o.keys.count()
                ),
                evidence: None,
                action: "block the client (firewall, rate limit on 401s); check that none of its keys was ever accepted",
            });
        }
        for (client, o) in &self.burst_open {
            if self.brute_open.contains_key(client) {
                continue; // the brute-force finding says more
            }
            let ip = client_text(*client);
            out.push(Finding {
                resolved_ms: None,
                rule: "auth_failure_burst",
                severity: Severity::Medium,
                key: None,
                client: Some(ip.clone()),
                clients: 1,
                place: None,
                first_ms: o.first_ms,
                last_ms: o.last_ms,
                count: o.count,
                message: format!(
                    "client {ip} had {} requests rejected (401/403) in a burst, with {} different keys",
                    o.count,
                    o.keys.count()
                ),
                evidence: None,
                action: "find out whether it is a broken client (fix its key) or an attack (block it)",
            });
        }
        for (id, o) in &self.inferred_open {
            let Some(label) = o.label else { continue };
            let who = key_phrase(&label, names);
            out.push(Finding {
                resolved_ms: None,
                rule: "revoked_key_in_use",
                severity: Severity::Medium,
                key: Some((*id, label)),
                client: Some(client_text(o.first_client)),
                clients: o.clients.count(),
                place: None,
                first_ms: o.first_ms,
                last_ms: o.last_ms,
                count: o.count,
                message: format!(
                    "API key {who} worked until the first time shown and has since been rejected {} times with no success: it looks revoked, yet something still sends it",
                    o.count
                ),
                evidence: None,
                action: "if the key was revoked, find the client still sending it and give it a new key; if not, find out why the API rejects it",
            });
        }
        for (id, o) in &self.repeated_open {
            if self.inferred_open.contains_key(id) {
                continue; // the key looks revoked: that finding says more
            }
            let Some(label) = o.label else { continue };
            let who = key_phrase(&label, names);
            out.push(Finding {
                resolved_ms: None,
                rule: "rejected_key_repeated",
                severity: Severity::Medium,
                key: Some((*id, label)),
                client: Some(client_text(o.first_client)),
                clients: o.clients.count(),
                place: None,
                first_ms: o.first_ms,
                last_ms: o.last_ms,
                count: o.count,
                message: format!(
                    "API key {who} was rejected {} times, most of its requests: a client still uses a revoked, expired or mistyped key",
                    o.count
                ),
                evidence: None,
                action: "find the client still sending the key (see the clients) and give it a valid key; revoke the key if it leaked",
            });
        }
        out
    }
}

fn prune<K, V>(map: &mut FastMap<K, V>, now: i64, last: impl Fn(&V) -> i64, horizon_ms: f64) {
    map.retain(|_, v| ((now - last(v)) as f64) < horizon_ms);
}
