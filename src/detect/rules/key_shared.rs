//! `key_shared`: one key used by many user agents from many networks in
//! a day: several integrations share it, so it cannot be rotated or
//! revoked without breaking them all. The day is judged when it ends, once
//! it is known whether the key is public by nature (see `key_new_network`):
//! every app version everywhere is no sharing between integrations. An
//! ordinary day ends the episode.

use crate::config::ranges::Checks;
use crate::detect::behaviour::{DAY_MS, Spell, Spells, each_slot, network_of, roll_to, slot_state};
use crate::detect::ordered::{At, Context, Event, Now, OrderedRule, Subject};
use crate::detect::{Finding, RuleId, RuleInfo, Severity, key_phrase};
use crate::hash::FastSet;
use crate::keys::KeyId;
use crate::usage::KeyLabel;

pub const INFO: RuleInfo = RuleInfo {
    id: "key_shared",
    title: "One key shared by several integrations",
    why: "one key used by several services cannot be rotated or revoked without breaking them all.",
    severity: Severity::Low,
    action: "give each integration its own key",
    inhibited_by: None,
};

pub type Plain = ();
pub type Ordered = KeyShared;

/// The per-day sets stop growing here: far past the thresholds.
const SHARED_SET: usize = 64;

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Distinct user agents in one day…
    pub min_user_agents: u32,
    /// …from at least this many distinct networks.
    pub min_networks: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            min_user_agents: 5,
            min_networks: 5,
        }
    }
}

pub(crate) fn check(s: &Config, c: &mut Checks, t: &str) {
    c.int(t, "min_user_agents", s.min_user_agents.into(), 1, 1_000_000);
    c.int(t, "min_networks", s.min_networks.into(), 1, 1_000_000);
}

/// Per key: the day being counted.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Day {
    day: i64,
    uas: FastSet<u64>,
    nets: FastSet<u128>,
    /// When (and from whom) the day first met both thresholds.
    reached: Option<(i64, u128)>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct KeyShared {
    #[serde(skip)]
    cfg: Config,
    /// By key slot.
    days: Vec<Option<Day>>,
    spells: Spells,
}

impl OrderedRule for KeyShared {
    fn configure(&mut self, rules: &crate::detect::RulesConfig) {
        self.cfg = rules.key_shared.clone();
    }

    fn observe(&mut self, e: &Event, at: &At, cx: &mut Context) {
        let Some(slot) = at.slot else { return };
        let day = e.time_ms.div_euclid(DAY_MS);
        let d = slot_state(&mut self.days, slot).get_or_insert_with(|| Day {
            day,
            ..Day::default()
        });
        if day > d.day {
            let public = cx.slots[slot as usize].public;
            roll_day(d, day, e.key.id, e.label(), public, &mut self.spells);
        }
        if day < d.day {
            return; // a line out of order by a day: too late
        }
        // Enough to decide, and to say "64 or more".
        if e.ua != 0 && d.uas.len() < SHARED_SET {
            d.uas.insert(e.ua);
        }
        if d.nets.len() < SHARED_SET {
            d.nets.insert(network_of(e.client));
        }
        if d.reached.is_none()
            && d.uas.len() as u32 >= self.cfg.min_user_agents
            && d.nets.len() as u32 >= self.cfg.min_networks
        {
            d.reached = Some((e.time_ms, e.client));
        }
    }

    fn advance(&mut self, now: Now, cx: &Context) {
        for (d, k) in each_slot(&mut self.days, &cx.slots) {
            if let Some(d) = d
                && let Some(to) = roll_to(now, d.day, DAY_MS)
            {
                roll_day(d, to, k.id, k.label, k.public, &mut self.spells);
            }
        }
    }

    fn findings(&self, names: &[String], out: &mut Vec<(Subject, Finding)>) {
        self.spells.render(
            |id, o| {
                let who = key_phrase(&o.label, names);
                let mut f = o.finding(
                    RuleId::KeyShared,
                    id,
                    Severity::Low,
                    format!(
                        "API key {who} is used by {} different user agents from {} networks in a day: several integrations share one key",
                        o.peak, o.count
                    ),
                    "give each integration its own key, so one can be rotated or revoked without breaking the others",
                );
                f.clients = o.count;
                f.count = u64::from(o.peak);
                f
            },
            out,
        );
    }

    fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
        self.spells.relabel(name);
    }
}

/// Judges the day that ended and moves to day `to`: a day that met both
/// thresholds opens or extends the sharing episode (unless the key is
/// public by nature); an ordinary day ends it.
fn roll_day(d: &mut Day, to: i64, id: KeyId, label: KeyLabel, public: bool, spells: &mut Spells) {
    let (uas, nets) = (d.uas.len() as u32, d.nets.len() as u64);
    match d.reached {
        Some((at, client)) if !public => {
            let o = spells
                .open
                .entry(id)
                .or_insert_with(|| Spell::new(label, client, at));
            o.peak = o.peak.max(uas);
            o.count = o.count.max(nets);
            o.last_ms = (d.day + 1) * DAY_MS - 1;
        }
        _ => {
            if let Some(mut o) = spells.open.remove(&id) {
                o.resolved_ms = Some(d.day * DAY_MS);
                spells.end(id, o);
            }
        }
    }
    *d = Day {
        day: to,
        ..Day::default()
    };
}
