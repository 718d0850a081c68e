//! `key_fanout`: an hour in which a key is used from far more networks than
//! in its usual hour (its median hour, and the same hour on earlier days, a
//! daily batch from several sites being normal). A day of hours first. An
//! ordinary hour of use ends the episode.

use std::collections::VecDeque;

use crate::config::ranges::Checks;
use crate::detect::behaviour::{
    HOUR_MS, Spell, Spells, each_slot, median, network_of, push_idle, roll_to, slot_state,
};
use crate::detect::ordered::{At, Context, Event, Now, OrderedRule, Subject};
use crate::detect::{Finding, RuleId, RuleInfo, Severity, key_phrase};
use crate::hash::FastSet;
use crate::keys::KeyId;
use crate::usage::KeyLabel;

pub const INFO: RuleInfo = RuleInfo {
    id: "key_fanout",
    title: "Key used from many networks at once",
    why: "a key used from many clients at once is shared or leaked.",
    severity: Severity::Medium,
    action: "rotate the key unless its owner confirms the new clients",
    inhibited_by: None,
};

pub type Plain = ();
pub type Ordered = KeyFanout;

/// The per-hour network sets stop growing here.
const SMALL_SET: usize = 1024;

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Distinct networks in an hour that never fire, whatever the history.
    pub min_networks: u32,
    /// How many times the key's median hourly networks an hour must exceed.
    pub factor: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            min_networks: 5,
            factor: 3.0,
        }
    }
}

pub(crate) fn check(f: &Config, c: &mut Checks, t: &str) {
    c.int(t, "min_networks", f.min_networks.into(), 1, 1_000_000);
    c.float(t, "factor", f.factor, 1.0, 1000.0, false);
}

/// Per key: the hour being filled, its networks, and the counts of the
/// hours before (a week).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Fan {
    hour: i64,
    nets: FastSet<u128>,
    history: VecDeque<u32>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct KeyFanout {
    #[serde(skip)]
    cfg: Config,
    /// By key slot.
    fans: Vec<Option<Fan>>,
    spells: Spells,
}

impl OrderedRule for KeyFanout {
    fn configure(&mut self, rules: &crate::detect::RulesConfig) {
        self.cfg = rules.key_fanout.clone();
    }

    fn observe(&mut self, e: &Event, at: &At, _: &mut Context) {
        let Some(slot) = at.slot else { return };
        let hour = e.time_ms.div_euclid(HOUR_MS);
        let f = slot_state(&mut self.fans, slot).get_or_insert_with(|| Fan {
            hour,
            ..Fan::default()
        });
        if hour > f.hour {
            roll_fan(f, hour, e.key.id, e.label(), e.client, &self.cfg, &mut self.spells);
        }
        if hour == f.hour && f.nets.len() < SMALL_SET {
            f.nets.insert(network_of(e.client));
        }
    }

    fn advance(&mut self, now: Now, cx: &Context) {
        for (f, k) in each_slot(&mut self.fans, &cx.slots) {
            if let Some(f) = f
                && let Some(to) = roll_to(now, f.hour, HOUR_MS)
            {
                roll_fan(f, to, k.id, k.label, k.client, &self.cfg, &mut self.spells);
            }
        }
    }

    fn findings(&self, names: &[String], out: &mut Vec<(Subject, Finding)>) {
        self.spells.render(
            |id, o| {
                let who = key_phrase(&o.label, names);
                let mut f = o.finding(
                    RuleId::KeyFanout,
                    id,
                    Severity::Medium,
                    format!(
                        "API key {who} was used from {} networks within an hour, against about {:.0} in a usual hour: a leaked key being used by many",
                        o.peak, o.baseline
                    ),
                    "rotate the key unless its owner confirms the new clients",
                );
                f.clients = u64::from(o.peak);
                f
            },
            out,
        );
    }

    fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
        self.spells.relabel(name);
    }
}

/// Completes the hour of networks being filled and moves to hour `to`.
fn roll_fan(
    f: &mut Fan,
    to: i64,
    id: KeyId,
    label: KeyLabel,
    client: u128,
    cfg: &Config,
    spells: &mut Spells,
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
            let o = spells.open.entry(id).or_insert_with(|| {
                let mut o = Spell::new(label, client, start);
                o.baseline = limit / cfg.factor;
                o
            });
            o.count += 1;
            o.peak = o.peak.max(count);
            o.last_ms = start + HOUR_MS - 1;
        }
    }
    if !over && count > 0 {
        // An ordinary hour of use: the fan-out is over.
        if let Some(mut o) = spells.open.remove(&id) {
            o.resolved_ms = Some(start);
            spells.end(id, o);
        }
    }
    f.history.push_back(count);
    push_idle(&mut f.history, to - f.hour, 24, 168);
    f.hour = to;
    f.nets.clear();
}
