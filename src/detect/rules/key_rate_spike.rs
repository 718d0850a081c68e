//! `key_rate_spike`: a key's request rate in 5-minute buckets far above its
//! own baseline: the same slot on earlier days once three days are known
//! (a daily peak is the key's normal), and before that a much higher bar,
//! the key's busiest hour of the day before. Cold start (the first day) is
//! quiet. A spike resolves after two calm buckets.

use std::collections::VecDeque;

use crate::config::ranges::Checks;
use crate::detect::behaviour::{
    BUCKET_MS, DAY_BUCKETS, Spell, Spells, WEEK_BUCKETS, each_slot, median, push_idle, roll_to,
    slot_state,
};
use crate::detect::ordered::{At, Context, Event, Now, OrderedRule, Subject};
use crate::detect::{Finding, RuleId, RuleInfo, Severity, key_phrase};
use crate::keys::KeyId;
use crate::usage::KeyLabel;

pub const INFO: RuleInfo = RuleInfo {
    id: "key_rate_spike",
    title: "Request rate far above the key's normal",
    why: "a key used far above its usual rate may be leaked, shared, or running away.",
    severity: Severity::Medium,
    action: "check who is behind the traffic; rate-limit or rotate the key",
    inhibited_by: None,
};

pub type Plain = ();
pub type Ordered = KeyRateSpike;

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
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

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            min_requests: 25,
            factor: 3.0,
            extreme_factor: 10.0,
            mad_multiplier: 3.5,
        }
    }
}

pub(crate) fn check(s: &Config, c: &mut Checks, t: &str) {
    c.int(t, "min_requests", s.min_requests.into(), 1, 1_000_000_000);
    c.float(t, "factor", s.factor, 1.0, 1000.0, true);
    c.float(t, "extreme_factor", s.extreme_factor, 1.0, 10_000.0, true);
    if s.factor.is_finite() && s.extreme_factor.is_finite() && s.extreme_factor < s.factor {
        c.bad(
            t,
            "extreme_factor",
            format!(
                "{} is below factor ({}); extreme_factor is at least factor",
                s.extreme_factor, s.factor
            ),
        );
    }
    c.float(t, "mad_multiplier", s.mad_multiplier, 0.0, 100.0, false);
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

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct KeyRateSpike {
    #[serde(skip)]
    cfg: Config,
    /// By key slot.
    rates: Vec<Option<Rate>>,
    spikes: Spells,
}

impl OrderedRule for KeyRateSpike {
    fn configure(&mut self, rules: &crate::detect::RulesConfig) {
        self.cfg = rules.key_rate_spike.clone();
    }

    fn observe(&mut self, e: &Event, at: &At, _: &mut Context) {
        let Some(slot) = at.slot else { return };
        let bucket = e.time_ms.div_euclid(BUCKET_MS);
        let r = slot_state(&mut self.rates, slot).get_or_insert_with(|| Rate {
            bucket,
            ..Rate::default()
        });
        if bucket > r.bucket {
            roll_rate(r, bucket, e.key.id, e.label(), e.client, &self.cfg, &mut self.spikes);
        }
        // A line out of order by a bucket or more counts in the current one.
        r.count += 1;
    }

    fn advance(&mut self, now: Now, cx: &Context) {
        for (r, k) in each_slot(&mut self.rates, &cx.slots) {
            if let Some(r) = r
                && let Some(to) = roll_to(now, r.bucket, BUCKET_MS)
            {
                roll_rate(r, to, k.id, k.label, k.client, &self.cfg, &mut self.spikes);
            }
        }
    }

    fn findings(&self, names: &[String], out: &mut Vec<(Subject, Finding)>) {
        self.spikes.render(
            |id, o| {
                let who = key_phrase(&o.label, names);
                let ratio = f64::from(o.peak) / o.baseline.max(1.0);
                o.finding(
                    RuleId::KeyRateSpike,
                    id,
                    if o.extreme { Severity::High } else { Severity::Medium },
                    format!(
                        "API key {who} made up to {} requests in 5 minutes, {ratio:.0}× its usual {:.1}: a leaked key being abused, or a client in a loop",
                        o.peak, o.baseline
                    ),
                    "check who is behind the traffic (clients, user agents); rate-limit or rotate the key if it is not its owner",
                )
            },
            out,
        );
    }

    fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
        self.spikes.relabel(name);
    }
}

/// Whether a completed bucket of `done` requests is a spike for this key:
/// `Some((baseline, extreme))` when it fires.
fn judge(r: &mut Rate, done: u32, start: i64, cfg: &Config) -> Option<(f64, bool)> {
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
fn roll_rate(
    r: &mut Rate,
    to: i64,
    id: KeyId,
    label: KeyLabel,
    client: u128,
    cfg: &Config,
    spikes: &mut Spells,
) {
    let done = r.count;
    let start = r.bucket * BUCKET_MS;
    if let Some((baseline, extreme)) = judge(r, done, start, cfg) {
        // The last spike was over: this is a new one.
        if spikes.open.get(&id).is_some_and(|o| o.resolved_ms.is_some())
            && let Some(o) = spikes.open.remove(&id)
        {
            spikes.end(id, o);
        }
        let run = (r.run_start, r.run_count);
        let o = spikes.open.entry(id).or_insert_with(|| {
            let mut o = Spell::new(label, client, run.0);
            o.last_ms = start;
            o.baseline = baseline;
            o
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
        if let Some(o) = spikes.open.get_mut(&id).filter(|o| o.resolved_ms.is_none()) {
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
