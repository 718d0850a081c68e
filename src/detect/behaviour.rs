//! How a key is used over time: `key_rate_spike` (a key's request rate far
//! above its own baseline), `key_new_network` (a key with a history used
//! from a network it has not used before), `key_fanout` (an hour with far
//! more networks than the key's usual hour) and `key_shared` (many user
//! agents from many networks in a day). They learn from the log itself,
//! so they need history: the first day is quiet, and until the same hour
//! of earlier days is known a spike must beat the key's busiest hours.
//!
//! They look only at accepted traffic: a key that never worked is the
//! rejection rules' business. Each finding is an episode (see
//! [`super::ordered`]): a spike resolves after two calm buckets, a fan-out
//! after an ordinary hour, sharing after an ordinary day, and the next one
//! is a new finding. A key that was idle for days comes back to its old
//! profile, not to a week of zeros. A key used from very many networks by
//! nature (a public or mobile app key) gets no per-network findings; its
//! leak shows as fan-out against its own history.

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
/// The most `public_networks` may be: networks remembered per key.
pub const MAX_NETWORKS: u32 = 4096;
/// Ended episodes kept for reports (the oldest go first).
const MAX_ENDED: usize = 100_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
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

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub enabled: bool,
    /// Days a key must have been in use before a new network means anything.
    pub min_history_days: u32,
    /// A network unused for this many days is new again.
    pub lookback_days: u32,
    /// A key used from this many networks is public by nature (a browser or
    /// mobile app key): no per-network findings, `key_fanout` watches it.
    pub public_networks: u32,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            enabled: true,
            min_history_days: 7,
            lookback_days: 30,
            public_networks: 64,
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

pub(crate) fn median(v: &mut [f64]) -> f64 {
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

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
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

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
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

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Fan {
    hour: i64,
    nets: crate::hash::FastSet<u128>,
    history: VecDeque<u32>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Shared {
    day: i64,
    uas: crate::hash::FastSet<u64>,
    nets: crate::hash::FastSet<u128>,
    /// When (and from whom) the day first met both thresholds.
    reached: Option<(i64, u128)>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct KeyState {
    label: Option<KeyLabel>,
    client: u128,
    /// Used from `public_networks` networks: no per-network findings.
    public: bool,
    rate: Option<Rate>,
    fan: Option<Fan>,
    shared: Option<Shared>,
    /// When the key was first seen, and its networks with their last use.
    net: Option<(i64, FastMap<u128, i64>)>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
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

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
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

#[derive(Default, serde::Serialize, serde::Deserialize)]
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
    /// Episodes that ended, oldest first.
    ended: VecDeque<(Rule, KeyId, Open)>,
    pub untracked: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Rule {
    Spike,
    Fanout,
    Shared,
}

fn end(ended: &mut VecDeque<(Rule, KeyId, Open)>, rule: Rule, id: KeyId, o: Open) {
    ended.push_back((rule, id, o));
    while ended.len() > MAX_ENDED {
        ended.pop_front();
    }
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

    /// Maps every saved key-name index to today's.
    pub fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
        for st in self.keys.values_mut() {
            if let Some(l) = &mut st.label {
                l.name = name(l.name);
            }
        }
        let fix = |o: &mut Open| o.label.name = name(o.label.name);
        self.spikes.values_mut().for_each(fix);
        self.fanouts.values_mut().for_each(fix);
        self.shared_open.values_mut().for_each(fix);
        self.new_networks.values_mut().for_each(fix);
        self.ended.iter_mut().for_each(|(_, _, o)| fix(o));
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
        if e.rejected() {
            return; // accepted traffic only
        }
        if !self.keys.contains_key(&e.key.id) && self.keys.len() >= MAX_KEYS {
            self.untracked += 1;
            return;
        }
        let st = self.keys.entry(e.key.id).or_default();
        st.label = Some(KeyLabel {
            masked: e.key.masked,
            name: e.key.name,
        });
        st.client = e.client;
        if let Some(cfg) = &self.spike {
            let bucket = e.time_ms.div_euclid(BUCKET_MS);
            let r = st.rate.get_or_insert_with(|| Rate {
                bucket,
                ..Rate::default()
            });
            if bucket > r.bucket {
                let label = st.label.unwrap_or(KeyLabel {
                    masked: e.key.masked,
                    name: e.key.name,
                });
                roll_rate(
                    r,
                    bucket,
                    e.key.id,
                    label,
                    e.client,
                    cfg,
                    &mut self.spikes,
                    &mut self.ended,
                );
            }
            // A line out of order by a bucket or more counts in the current one.
            r.count += 1;
        }
        if let Some(cfg) = &self.network
            && !st.public
        {
            st.public = Self::observe_network(&mut st.net, e, cfg, &mut self.new_networks);
            if st.public {
                st.net = None;
            }
        }
        if let Some(cfg) = &self.fanout {
            Self::observe_fanout(&mut st.fan, e, cfg, &mut self.fanouts, &mut self.ended);
        }
        // A public key is used by every app version everywhere: that is no
        // sharing between integrations (judged when the day ends).
        if let Some(cfg) = &self.shared
            && Self::observe_shared(&mut st.shared, e, cfg).is_some()
            && let Some(sh) = &mut st.shared
        {
            let label = st.label.unwrap_or(KeyLabel {
                masked: e.key.masked,
                name: e.key.name,
            });
            let day = e.time_ms.div_euclid(DAY_MS);
            roll_shared(
                sh,
                day,
                e.key.id,
                label,
                st.public,
                &mut self.shared_open,
                &mut self.ended,
            );
            Self::observe_shared(&mut st.shared, e, cfg);
        }
    }

    /// Judges every window that ended by `now_ms` (log time) without waiting
    /// for the key's next request.
    pub fn advance(&mut self, now_ms: i64) {
        self.roll_each(|_, len| now_ms.div_euclid(len));
    }

    /// The end of the input: each key's last bucket, hour and day are
    /// judged as they stand.
    pub fn finish(&mut self) {
        self.roll_each(|current, _| current + 1);
    }

    /// Moves every key's rate bucket, fan-out hour and sharing day to
    /// `to(current, window length)`, judging the windows that end.
    fn roll_each(&mut self, to: impl Fn(i64, i64) -> i64) {
        for (id, st) in &mut self.keys {
            let (Some(label), client) = (st.label, st.client) else {
                continue;
            };
            if let (Some(cfg), Some(r)) = (&self.spike, &mut st.rate) {
                let next = to(r.bucket, BUCKET_MS);
                if next > r.bucket {
                    roll_rate(
                        r,
                        next,
                        *id,
                        label,
                        client,
                        cfg,
                        &mut self.spikes,
                        &mut self.ended,
                    );
                }
            }
            if let (Some(cfg), Some(f)) = (&self.fanout, &mut st.fan) {
                let next = to(f.hour, HOUR_MS);
                if next > f.hour {
                    roll_fan(
                        f,
                        next,
                        *id,
                        label,
                        client,
                        cfg,
                        &mut self.fanouts,
                        &mut self.ended,
                    );
                }
            }
            if let (Some(_), Some(sh)) = (&self.shared, &mut st.shared) {
                let next = to(sh.day, DAY_MS);
                if next > sh.day {
                    roll_shared(
                        sh,
                        next,
                        *id,
                        label,
                        st.public,
                        &mut self.shared_open,
                        &mut self.ended,
                    );
                }
            }
        }
    }

    fn observe_fanout(
        fan: &mut Option<Fan>,
        e: &Event,
        cfg: &FanoutConfig,
        fanouts: &mut FastMap<KeyId, Open>,
        ended: &mut VecDeque<(Rule, KeyId, Open)>,
    ) {
        let hour = e.time_ms.div_euclid(HOUR_MS);
        let f = fan.get_or_insert_with(|| Fan {
            hour,
            ..Fan::default()
        });
        if hour > f.hour {
            let label = KeyLabel {
                masked: e.key.masked,
                name: e.key.name,
            };
            roll_fan(f, hour, e.key.id, label, e.client, cfg, fanouts, ended);
        }
        if hour == f.hour && f.nets.len() < SMALL_SET {
            f.nets.insert(network_of(e.client));
        }
    }

    /// Counts the day's user agents and networks; the day is judged when
    /// it ends (see [`roll_shared`]), once it is known whether the key is
    /// public. Returns the day that ended when `e` starts a new one.
    fn observe_shared(shared: &mut Option<Shared>, e: &Event, cfg: &SharedConfig) -> Option<i64> {
        let day = e.time_ms.div_euclid(DAY_MS);
        let s = shared.get_or_insert_with(|| Shared {
            day,
            ..Shared::default()
        });
        if day > s.day {
            return Some(s.day);
        }
        if day < s.day {
            return None; // a line out of order by a day: too late
        }
        // Enough to decide, and to say "64 or more".
        if e.ua != 0 && s.uas.len() < SHARED_SET {
            s.uas.insert(e.ua);
        }
        if s.nets.len() < SHARED_SET {
            s.nets.insert(network_of(e.client));
        }
        if s.reached.is_none()
            && s.uas.len() as u32 >= cfg.min_user_agents
            && s.nets.len() as u32 >= cfg.min_networks
        {
            s.reached = Some((e.time_ms, e.client));
        }
        None
    }

    /// Returns whether the key turned out to be public (used from
    /// `public_networks` networks).
    fn observe_network(
        state: &mut Option<(i64, FastMap<u128, i64>)>,
        e: &Event,
        cfg: &NetworkConfig,
        new_networks: &mut FastMap<(KeyId, u128), Open>,
    ) -> bool {
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
            seen.insert(net, e.time_ms);
        }
        // Networks unused past the lookback are new again: forgotten.
        let lookback = i64::from(cfg.lookback_days) * day;
        if seen.len() >= cfg.public_networks as usize {
            seen.retain(|_, t| e.time_ms - *t <= lookback);
        }
        seen.len() >= cfg.public_networks as usize
    }

    pub fn findings(&self, names: &[String]) -> Vec<Finding> {
        let mut out = Vec::new();
        let pick = |rule: Rule| {
            self.ended
                .iter()
                .filter(move |(r, _, _)| *r == rule)
                .map(|(_, id, o)| (id, o))
        };
        for (id, o) in self.spikes.iter().chain(pick(Rule::Spike)) {
            let who = key_phrase(&o.label, names);
            let ratio = f64::from(o.peak) / o.baseline.max(1.0);
            out.push(Finding {
                resolved_ms: o.resolved_ms,
                rule: super::RuleId::KeyRateSpike.as_str(),
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
        for (id, o) in self.fanouts.iter().chain(pick(Rule::Fanout)) {
            let who = key_phrase(&o.label, names);
            out.push(Finding {
                resolved_ms: o.resolved_ms,
                rule: super::RuleId::KeyFanout.as_str(),
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
        for (id, o) in self.shared_open.iter().chain(pick(Rule::Shared)) {
            let who = key_phrase(&o.label, names);
            out.push(Finding {
                resolved_ms: o.resolved_ms,
                rule: super::RuleId::KeyShared.as_str(),
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
                rule: super::RuleId::KeyNewNetwork.as_str(),
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
        // Before that, a much higher bar: the key's busiest hour (its mean
        // bucket) in the 24 hours before the last hour (which may be the spike
        // itself), so a working day like the first is no spike.
        let day: Vec<u32> = hist
            .iter()
            .rev()
            .skip(12)
            .take(DAY_BUCKETS + 12)
            .copied()
            .collect();
        let busiest = day
            .windows(12)
            .map(|w| w.iter().map(|&c| f64::from(c)).sum::<f64>() / 12.0)
            .fold(0.0, f64::max);
        vec![busiest]
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

/// Completes the rate bucket being filled and moves to bucket `to`: the
/// completed bucket is judged, a spike episode opens, grows or resolves.
#[allow(clippy::too_many_arguments)]
fn roll_rate(
    r: &mut Rate,
    to: i64,
    id: KeyId,
    label: KeyLabel,
    client: u128,
    cfg: &SpikeConfig,
    spikes: &mut FastMap<KeyId, Open>,
    ended: &mut VecDeque<(Rule, KeyId, Open)>,
) {
    let done = r.count;
    let start = r.bucket * BUCKET_MS;
    if let Some((baseline, extreme)) = judge(r, done, start, cfg) {
        if spikes.get(&id).is_some_and(|o| o.resolved_ms.is_some()) {
            // The last spike was over: this is a new one.
            let o = spikes.remove(&id).unwrap();
            end(ended, Rule::Spike, id, o);
        }
        let run = (r.run_start, r.run_count);
        let o = spikes.entry(id).or_insert_with(|| Open {
            label,
            first_ms: run.0,
            last_ms: start,
            count: 0,
            peak: 0,
            baseline,
            extreme: false,
            network: 0,
            client,
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
        o.peak = o.peak.max(done);
        o.extreme |= extreme;
    }
    if r.over == 0 {
        // Back to normal: two calm buckets in a row resolve an open spike.
        if let Some(o) = spikes.get_mut(&id).filter(|o| o.resolved_ms.is_none()) {
            o.calm += 1;
            if o.calm >= 2 {
                o.resolved_ms = Some(start + BUCKET_MS);
            }
        }
    }
    r.history.push_back(done);
    push_idle(
        &mut r.history,
        to - r.bucket,
        DAY_BUCKETS as i64,
        WEEK_BUCKETS,
    );
    r.bucket = to;
    r.count = 0;
}

/// Buckets without a request count as zero; past a day of them the key was
/// dormant, and it comes back to its old profile (the slot of the day kept)
/// rather than to a history of zeros.
fn push_idle(history: &mut VecDeque<u32>, gap: i64, per_day: i64, cap: usize) {
    let idle = if gap - 1 > per_day {
        (gap - 1) % per_day
    } else {
        gap - 1
    };
    for _ in 0..idle.clamp(0, cap as i64) {
        history.push_back(0);
    }
    while history.len() > cap {
        history.pop_front();
    }
}

/// Completes the hour of networks being filled and moves to hour `to`.
#[allow(clippy::too_many_arguments)]
fn roll_fan(
    f: &mut Fan,
    to: i64,
    id: KeyId,
    label: KeyLabel,
    client: u128,
    cfg: &FanoutConfig,
    fanouts: &mut FastMap<KeyId, Open>,
    ended: &mut VecDeque<(Rule, KeyId, Open)>,
) {
    let count = f.nets.len() as u32;
    let start = f.hour * HOUR_MS;
    // A day of hours first; then the hour against the key's own median.
    let mut over = false;
    if f.history.len() >= 24 {
        let mut h: Vec<f64> = f.history.iter().map(|&c| f64::from(c)).collect();
        // The same hour on earlier days is the key's normal too (a daily
        // batch from several sites).
        let same_hour = (1..=7)
            .filter_map(|d| {
                f.history
                    .len()
                    .checked_sub(24 * d)
                    .and_then(|i| f.history.get(i))
            })
            .max()
            .map_or(0.0, |&c| f64::from(c));
        let limit = f64::from(cfg.min_networks)
            .max(cfg.factor * median(&mut h))
            .max(1.5 * same_hour);
        if f64::from(count) > limit {
            over = true;
            let o = fanouts.entry(id).or_insert_with(|| Open {
                label,
                first_ms: start,
                last_ms: start,
                count: 0,
                peak: 0,
                baseline: limit / cfg.factor,
                extreme: false,
                network: 0,
                client,
                calm: 0,
                resolved_ms: None,
            });
            o.count += 1;
            o.peak = o.peak.max(count);
            o.last_ms = start + HOUR_MS - 1;
        }
    }
    if !over && count > 0 {
        // An ordinary hour of use: the fan-out is over.
        if let Some(mut o) = fanouts.remove(&id) {
            o.resolved_ms = Some(start);
            end(ended, Rule::Fanout, id, o);
        }
    }
    f.history.push_back(count);
    push_idle(&mut f.history, to - f.hour, 24, 168);
    f.hour = to;
    f.nets.clear();
}

/// Judges the day of user agents and networks that ended and moves to day
/// `to`: a day that met both thresholds opens or extends the sharing
/// episode (unless the key is public by nature); an ordinary day ends it.
fn roll_shared(
    s: &mut Shared,
    to: i64,
    id: KeyId,
    label: KeyLabel,
    public: bool,
    open: &mut FastMap<KeyId, Open>,
    ended: &mut VecDeque<(Rule, KeyId, Open)>,
) {
    let (uas, nets) = (s.uas.len() as u32, s.nets.len() as u64);
    match s.reached {
        Some((at, client)) if !public => {
            let o = open.entry(id).or_insert_with(|| Open {
                label,
                first_ms: at,
                last_ms: at,
                count: 0,
                peak: 0,
                baseline: 0.0,
                extreme: false,
                network: 0,
                client,
                calm: 0,
                resolved_ms: None,
            });
            o.peak = o.peak.max(uas);
            o.count = o.count.max(nets);
            o.last_ms = (s.day + 1) * DAY_MS - 1;
        }
        _ => {
            if let Some(mut o) = open.remove(&id) {
                o.resolved_ms = Some(s.day * DAY_MS);
                end(ended, Rule::Shared, id, o);
            }
        }
    }
    *s = Shared {
        day: to,
        ..Shared::default()
    };
}
