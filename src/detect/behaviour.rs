//! How a key is used over time: `key_rate_spike` (a key's request rate far
//! above its own baseline) and `key_new_network` (a key with a history used
//! from a network it has not used before). Both learn from the log itself,
//! so they need history: a cold start is quiet.

use std::collections::VecDeque;

use super::ordered::{Event, client_text};
use super::{Finding, Severity, key_phrase};
use crate::hash::FastMap;
use crate::keys::KeyId;
use crate::usage::KeyLabel;

const BUCKET_MS: i64 = 5 * 60_000;
const DAY_BUCKETS: usize = 288;
const WEEK_BUCKETS: usize = 7 * DAY_BUCKETS;
/// Keys whose behaviour is followed; past this, new keys are not (counted).
const MAX_KEYS: usize = 20_000;
/// Networks remembered per key (the most recent; a key used from more
/// networks than this is a public one, which `key_fanout` watches instead).
const MAX_NETWORKS: usize = 256;

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpikeConfig {
    pub enabled: bool,
    /// Requests in a 5-minute bucket below which nothing is a spike.
    pub min_requests: u32,
    /// How many times the baseline a bucket must reach.
    pub factor: f64,
    /// From this many times the baseline, one bucket is enough.
    pub extreme_factor: f64,
    /// And how many robust deviations (1.4826 × MAD) above it.
    pub mad_multiplier: f64,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        SpikeConfig {
            enabled: true,
            min_requests: 25,
            factor: 3.0,
            extreme_factor: 10.0,
            mad_multiplier: 3.5,
        }
    }
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub enabled: bool,
    /// Days a key must have been in use before a new network means anything.
    pub min_history_days: u32,
    /// A network unused for this many days is new again.
    pub lookback_days: u32,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            enabled: true,
            min_history_days: 7,
            lookback_days: 30,
        }
    }
}

/// The network of a client: IPv4 /24, IPv6 /48, anything else itself.
pub fn network_of(tag: u128) -> u128 {
    if tag >> 127 == 1 {
        tag
    } else if tag < 1 << 32 {
        tag >> 8 << 8
    } else {
        tag >> 80 << 80
    }
}

fn network_text(net: u128) -> String {
    if net >> 127 == 1 {
        return "(non-IP clients)".into();
    }
    if net < 1 << 32 {
        format!("{}/24", client_text(net))
    } else {
        format!("{}/48", client_text(net))
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FanoutConfig {
    pub enabled: bool,
    /// Distinct networks in an hour that never fire, whatever the history.
    pub min_networks: u32,
    /// How many times the key's median hourly networks an hour must exceed.
    pub factor: f64,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            enabled: true,
            min_networks: 5,
            factor: 3.0,
        }
    }
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedConfig {
    pub enabled: bool,
    /// Distinct user agents in one day…
    pub min_user_agents: u32,
    /// …from at least this many distinct networks.
    pub min_networks: u32,
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig {
            enabled: true,
            min_user_agents: 5,
            min_networks: 5,
        }
    }
}

/// The per-hour network sets of `key_fanout` stop growing here.
const SMALL_SET: usize = 1024;
/// The per-day sets of `key_shared` stop growing here: far past its thresholds.
const SHARED_SET: usize = 64;

#[derive(Default)]
struct Fan {
    hour: i64,
    nets: crate::hash::FastSet<u128>,
    history: VecDeque<u32>,
}

#[derive(Default)]
struct Shared {
    day: i64,
    uas: crate::hash::FastSet<u64>,
    nets: crate::hash::FastSet<u128>,
}

#[derive(Default)]
struct KeyState {
    rate: Option<Rate>,
    fan: Option<Fan>,
    shared: Option<Shared>,
    /// When the key was first seen, and its networks with their last use.
    net: Option<(i64, FastMap<u128, i64>)>,
}

#[derive(Default)]
struct Rate {
    /// The bucket being filled and its count.
    bucket: i64,
    count: u32,
    /// Completed buckets, oldest first (at most a week).
    history: VecDeque<u32>,
    /// Consecutive buckets over the line, when that run began, and its requests.
    over: u32,
    run_start: i64,
    run_count: u64,
}

#[derive(Clone, Debug)]
struct Open {
    label: KeyLabel,
    first_ms: i64,
    last_ms: i64,
    count: u64,
    peak: u32,
    baseline: f64,
    extreme: bool,
    network: u128,
    client: u128,
    /// Normal buckets in a row since the spike, and when it was over.
    calm: u32,
    resolved_ms: Option<i64>,
}

#[derive(Default)]
pub struct KeyBehaviour {
    spike: Option<SpikeConfig>,
    network: Option<NetworkConfig>,
    fanout: Option<FanoutConfig>,
    shared: Option<SharedConfig>,

    fanouts: FastMap<KeyId, Open>,
    shared_open: FastMap<KeyId, Open>,
    /// Everything the behaviour rules keep per key, found with one lookup a line.
    keys: FastMap<KeyId, KeyState>,
    spikes: FastMap<KeyId, Open>,
    new_networks: FastMap<(KeyId, u128), Open>,
    pub untracked: u64,
}

impl KeyBehaviour {
    pub fn new(rules: &super::RulesConfig) -> Option<Self> {
        let b = KeyBehaviour {
            spike: rules
                .key_rate_spike
                .enabled
                .then(|| rules.key_rate_spike.clone()),
            network: rules
                .key_new_network
                .enabled
                .then(|| rules.key_new_network.clone()),
            fanout: rules.key_fanout.enabled.then(|| rules.key_fanout.clone()),
            shared: rules.key_shared.enabled.then(|| rules.key_shared.clone()),
            ..KeyBehaviour::default()
        };
        (b.spike.is_some() || b.network.is_some() || b.fanout.is_some() || b.shared.is_some())
            .then_some(b)
    }

    /// New settings, what was learned kept (see
    /// [`super::ordered::OrderedDetectors::reconfigure`]).
    pub fn reconfigure(mut self, rules: &super::RulesConfig) -> Option<Self> {
        let fresh = KeyBehaviour::new(rules)?;
        self.spike = fresh.spike;
        self.network = fresh.network;
        self.fanout = fresh.fanout;
        self.shared = fresh.shared;
        Some(self)
    }

    pub fn observe(&mut self, e: &Event) {
        if !self.keys.contains_key(&e.key.id) && self.keys.len() >= MAX_KEYS {
            self.untracked += 1;
            return;
        }
        let st = self.keys.entry(e.key.id).or_default();
        if let Some(cfg) = &self.spike {
            Self::observe_rate(&mut st.rate, e, cfg, &mut self.spikes);
        }
        if let Some(cfg) = &self.network {
            Self::observe_network(&mut st.net, e, cfg, &mut self.new_networks);
        }
        if let Some(cfg) = &self.fanout {
            Self::observe_fanout(&mut st.fan, e, cfg, &mut self.fanouts);
        }
        if let Some(cfg) = &self.shared {
            Self::observe_shared(&mut st.shared, e, cfg, &mut self.shared_open);
        }
    }

    fn observe_fanout(
        fan: &mut Option<Fan>,
        e: &Event,
        cfg: &FanoutConfig,
        fanouts: &mut FastMap<KeyId, Open>,
    ) {
        let hour = e.time_ms.div_euclid(3_600_000);
        let f = fan.get_or_insert_with(|| Fan {
            hour,
            ..Fan::default()
        });
        if hour > f.hour {
            let count = f.nets.len() as u32;
            // A day of hours first; then the hour against the key's own median.
            if f.history.len() >= 24 {
                let mut h: Vec<f64> = f.history.iter().map(|&c| f64::from(c)).collect();
                let limit = f64::from(cfg.min_networks).max(cfg.factor * median(&mut h));
                if f64::from(count) > limit {
                    let start = f.hour * 3_600_000;
                    let o = fanouts.entry(e.key.id).or_insert_with(|| Open {
                        label: KeyLabel {
                            masked: e.key.masked,
                            name: e.key.name,
                        },
                        first_ms: start,
                        last_ms: start,
                        count: 0,
                        peak: 0,
                        baseline: limit / cfg.factor,
                        extreme: false,
                        network: 0,
                        client: e.client,
                        calm: 0,
                        resolved_ms: None,
                    });
                    o.count += 1;
                    o.peak = o.peak.max(count);
                    o.last_ms = start + 3_599_999;
                }
            }
            f.history.push_back(count);
            for _ in 1..(hour - f.hour).min(168) {
                f.history.push_back(0);
            }
            while f.history.len() > 168 {
                f.history.pop_front();
            }
            f.hour = hour;
            f.nets.clear();
        }
        if hour == f.hour && f.nets.len() < SMALL_SET {
            f.nets.insert(network_of(e.client));
        }
    }

    fn observe_shared(
        shared: &mut Option<Shared>,
        e: &Event,
        cfg: &SharedConfig,
        open: &mut FastMap<KeyId, Open>,
    ) {
        let day = e.time_ms.div_euclid(86_400_000);
        let s = shared.get_or_insert_with(|| Shared {
            day,
            ..Shared::default()
        });
        if day != s.day {
            *s = Shared {
                day,
                ..Shared::default()
            };
        }
        // Enough to decide, and to say "64 or more".
        if e.ua != 0 && s.uas.len() < SHARED_SET {
            s.uas.insert(e.ua);
        }
        if s.nets.len() < SHARED_SET {
            s.nets.insert(network_of(e.client));
        }
        let (uas, nets) = (s.uas.len() as u32, s.nets.len() as u32);
        if uas >= cfg.min_user_agents && nets >= cfg.min_networks {
            let o = open.entry(e.key.id).or_insert_with(|| Open {
                label: KeyLabel {
                    masked: e.key.masked,
                    name: e.key.name,
                },
                first_ms: e.time_ms,
                last_ms: e.time_ms,
                count: 0,
                peak: 0,
                baseline: 0.0,
                extreme: false,
                network: 0,
                client: e.client,
                calm: 0,
                resolved_ms: None,
            });
            o.peak = o.peak.max(uas);
            o.count = o.count.max(u64::from(nets));
            o.last_ms = o.last_ms.max(e.time_ms);
        }
    }

    fn observe_rate(
        rate: &mut Option<Rate>,
        e: &Event,
        cfg: &SpikeConfig,
        spikes: &mut FastMap<KeyId, Open>,
    ) {
        let bucket = e.time_ms.div_euclid(BUCKET_MS);
        let r = rate.get_or_insert_with(|| Rate {
            bucket,
            ..Rate::default()
        });
        if bucket < r.bucket {
            // A line out of order: count it in the current bucket.
            r.count += 1;
            return;
        }
        if bucket > r.bucket {
            let done = r.count;
            let start = r.bucket * BUCKET_MS;
            let verdict = judge(r, done, start, cfg);
            if let Some((baseline, extreme)) = verdict {
                let run = (r.run_start, r.run_count);
                let o = spikes.entry(e.key.id).or_insert_with(|| Open {
                    label: KeyLabel {
                        masked: e.key.masked,
                        name: e.key.name,
                    },
                    first_ms: run.0,
                    last_ms: start,
                    count: 0,
                    peak: 0,
                    baseline,
                    extreme: false,
                    network: 0,
                    client: e.client,
                    calm: 0,
                    resolved_ms: None,
                });
                // The finding opens with the whole run of high buckets, then grows.
                o.count = if o.count == 0 {
                    run.1
                } else {
                    o.count + u64::from(done)
                };
                o.last_ms = start + BUCKET_MS - 1;
                o.calm = 0;
                o.resolved_ms = None;
                o.peak = o.peak.max(done);
                o.extreme |= extreme;
            }
            if r.over == 0 {
                // Back to normal: two calm buckets in a row resolve an open spike.
                if let Some(o) = spikes
                    .get_mut(&e.key.id)
                    .filter(|o| o.resolved_ms.is_none())
                {
                    o.calm += 1;
                    if o.calm >= 2 {
                        o.resolved_ms = Some(start + BUCKET_MS);
                    }
                }
            }
            r.history.push_back(done);
            // Buckets without a request count as zero.
            for _ in 1..(bucket - r.bucket).min(WEEK_BUCKETS as i64) {
                r.history.push_back(0);
            }
            while r.history.len() > WEEK_BUCKETS {
                r.history.pop_front();
            }
            r.bucket = bucket;
            r.count = 0;
        }
        r.count += 1;
    }

    fn observe_network(
        state: &mut Option<(i64, FastMap<u128, i64>)>,
        e: &Event,
        cfg: &NetworkConfig,
        new_networks: &mut FastMap<(KeyId, u128), Open>,
    ) {
        let net = network_of(e.client);
        let (first, seen) = state.get_or_insert_with(|| (e.time_ms, FastMap::default()));
        let day = 86_400_000i64;
        let history = e.time_ms - *first >= i64::from(cfg.min_history_days) * day;
        let last = seen.get(&net).copied();
        let new = last.is_none_or(|t| e.time_ms - t > i64::from(cfg.lookback_days) * day);
        let success = matches!(e.status, 200..=299);
        if history && new && success {
            let o = new_networks.entry((e.key.id, net)).or_insert_with(|| Open {
                label: KeyLabel {
                    masked: e.key.masked,
                    name: e.key.name,
                },
                first_ms: e.time_ms,
                last_ms: e.time_ms,
                count: 0,
                peak: 0,
                baseline: 0.0,
                extreme: false,
                network: net,
                client: e.client,
                calm: 0,
                resolved_ms: None,
            });
            o.count += 1;
            o.last_ms = o.last_ms.max(e.time_ms);
        } else if let Some(o) = new_networks.get_mut(&(e.key.id, net)) {
            o.count += 1;
            o.last_ms = o.last_ms.max(e.time_ms);
        }
        if success || last.is_some() {
            if seen.len() >= MAX_NETWORKS && last.is_none() {
                // Forget the half used longest ago, in one go (amortised: a
                // key seen from ever more networks must not cost a scan each time).
                let mut times: Vec<i64> = seen.values().copied().collect();
                let mid = times.len() / 2;
                let (_, cut, _) = times.select_nth_unstable(mid);
                let cut = *cut;
                seen.retain(|_, t| *t > cut);
            }
            seen.insert(net, e.time_ms);
        }
    }

    pub fn findings(&self, names: &[String]) -> Vec<Finding> {
        let mut out = Vec::new();
        for (id, o) in &self.spikes {
            let who = key_phrase(&o.label, names);
            let ratio = f64::from(o.peak) / o.baseline.max(1.0);
            out.push(Finding {
                resolved_ms: o.resolved_ms,
                rule: "key_rate_spike",
                severity: if o.extreme { Severity::High } else { Severity::Medium },
                key: Some((*id, o.label)),
                client: Some(client_text(o.client)),
                clients: 0,
                place: None,
                first_ms: o.first_ms,
                last_ms: o.last_ms,
                count: o.count,
                message: format!(
                    "API key {who} made up to {} requests in 5 minutes, {ratio:.0}× its usual {:.1}: a leaked key being abused, or a client in a loop",
                    o.peak, o.baseline
                ),
                evidence: None,
                action: "check who is behind the traffic (clients, user agents); rate-limit or rotate the key if it is not its owner",
            });
        }
        for (id, o) in &self.fanouts {
            let who = key_phrase(&o.label, names);
            out.push(Finding {
                resolved_ms: None,
                rule: "key_fanout",
                severity: Severity::Medium,
                key: Some((*id, o.label)),
                client: Some(client_text(o.client)),
                clients: u64::from(o.peak),
                place: None,
                first_ms: o.first_ms,
                last_ms: o.last_ms,
                count: o.count,
                message: format!(
                    "API key {who} was used from {} networks within an hour, against about {:.0} in a usual hour: a leaked key being used by many",
                    o.peak, o.baseline
                ),
                evidence: None,
                action: "rotate the key unless its owner confirms the new clients",
            });
        }
        for (id, o) in &self.shared_open {
            let who = key_phrase(&o.label, names);
            out.push(Finding {
                resolved_ms: None,
                rule: "key_shared",
                severity: Severity::Low,
                key: Some((*id, o.label)),
                client: Some(client_text(o.client)),
                clients: o.count,
                place: None,
                first_ms: o.first_ms,
                last_ms: o.last_ms,
                count: u64::from(o.peak),
                message: format!(
                    "API key {who} is used by {} different user agents from {} networks in a day: several integrations share one key",
                    o.peak, o.count
                ),
                evidence: None,
                action: "give each integration its own key, so one can be rotated or revoked without breaking the others",
            });
        }
        for ((id, _), o) in &self.new_networks {
            let who = key_phrase(&o.label, names);
            out.push(Finding {
                resolved_ms: None,
                rule: "key_new_network",
                severity: Severity::Low,
                key: Some((*id, o.label)),
                client: Some(client_text(o.client)),
                clients: 0,
                place: None,
                first_ms: o.first_ms,
                last_ms: o.last_ms,
                count: o.count,
                message: format!(
                    "API key {who}, in use for a while, was used successfully from {}, a network it had not used before",
                    network_text(o.network)
                ),
                evidence: None,
                action: "confirm the key's owner moved or added a deployment; if not, the key has leaked: rotate it",
            });
        }
        out
    }
}

/// Whether a completed bucket of `done` requests is a spike for this key:
/// `Some((baseline, extreme))` when it fires.
fn judge(r: &mut Rate, done: u32, start: i64, cfg: &SpikeConfig) -> Option<(f64, bool)> {
    let hist = &r.history;
    // Cold start: a day of history before any judgement.
    if hist.len() < DAY_BUCKETS {
        r.over = 0;
        return None;
    }
    // Three days or more: the same 5-minute slot on earlier days (a daily
    // peak is the key's normal); before that, the last 24 hours.
    let mut base: Vec<f64> = if hist.len() >= 3 * DAY_BUCKETS {
        (1..=7)
            .filter_map(|d| {
                hist.len()
                    .checked_sub(d * DAY_BUCKETS)
                    .and_then(|i| hist.get(i))
            })
            .map(|&c| f64::from(c))
            .collect()
    } else {
        hist.iter()
            .rev()
            .take(DAY_BUCKETS)
            .map(|&c| f64::from(c))
            .collect()
    };
    let baseline = median(&mut base);
    let mut dev: Vec<f64> = base.iter().map(|c| (c - baseline).abs()).collect();
    let mad = median(&mut dev) * 1.4826;
    let cur = f64::from(done);
    let margin = (cfg.mad_multiplier * mad).max(0.5 * baseline);
    let over = cur >= f64::from(cfg.min_requests)
        && cur >= cfg.factor * baseline.max(1.0)
        && cur >= baseline + margin;
    if !over {
        r.over = 0;
        return None;
    }
    if r.over == 0 {
        r.run_start = start;
        r.run_count = 0;
    }
    r.over += 1;
    r.run_count += u64::from(done);
    let extreme = cur >= cfg.extreme_factor * baseline.max(1.0);
    (r.over >= 2 || extreme).then_some((baseline, extreme))
}
