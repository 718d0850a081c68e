//! `key_new_network`: a key with a history (a week by default) used
//! successfully from a network (/24, /48) it has not used within the
//! lookback. Networks are remembered with their last use, so memory is
//! bounded without forgetting long-used ones. A key used from very many
//! networks by nature (a public or mobile app key) gets no per-network
//! findings; its leak shows as `key_fanout` against its own history.

use crate::config::ranges::Checks;
use crate::detect::behaviour::{Spell, network_of, network_text, slot_state};
use crate::detect::ordered::{At, Context, Event, Now, OrderedRule, Subject};
use crate::detect::{Finding, RuleId, RuleInfo, Severity, key_phrase};
use crate::hash::FastMap;
use crate::keys::KeyId;

pub const INFO: RuleInfo = RuleInfo {
    id: "key_new_network",
    title: "Key used from a new network",
    why: "a key suddenly used from a new network may have leaked.",
    severity: Severity::Low,
    action: "confirm the owner added a deployment; if not, rotate the key",
    inhibited_by: None,
};

pub type Plain = ();
pub type Ordered = KeyNewNetwork;

/// The most `public_networks` may be: networks remembered per key.
pub const MAX_NETWORKS: u32 = 4096;
const DAY: i64 = 86_400_000;

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Days a key must have been in use before a new network means anything.
    pub min_history_days: u32,
    /// A network unused for this many days is new again.
    pub lookback_days: u32,
    /// A key used from this many networks is public by nature (a browser or
    /// mobile app key): no per-network findings, `key_fanout` watches it.
    pub public_networks: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            min_history_days: 7,
            lookback_days: 30,
            public_networks: 64,
        }
    }
}

pub(crate) fn check(n: &Config, c: &mut Checks, t: &str) {
    c.int(t, "min_history_days", n.min_history_days.into(), 0, 365);
    c.int(t, "lookback_days", n.lookback_days.into(), 1, 3650);
    c.int(t, "public_networks", n.public_networks.into(), 1, MAX_NETWORKS.into());
}

/// Per key: when it was first seen, and its networks with their last use.
type Networks = Option<(i64, FastMap<u128, i64>)>;

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct KeyNewNetwork {
    #[serde(skip)]
    cfg: Config,
    /// By key slot.
    networks: Vec<Networks>,
    found: FastMap<(KeyId, u128), Spell>,
}

impl OrderedRule for KeyNewNetwork {
    fn configure(&mut self, rules: &crate::detect::RulesConfig) {
        self.cfg = rules.key_new_network.clone();
    }

    fn observe(&mut self, e: &Event, at: &At, cx: &mut Context) {
        let Some(slot) = at.slot else { return };
        let key = &mut cx.slots[slot as usize];
        if key.public {
            return;
        }
        let state = slot_state(&mut self.networks, slot);
        if observe(state, e, &self.cfg, &mut self.found) {
            // Public by nature: what was remembered is let go.
            key.public = true;
            *state = None;
        }
    }

    fn advance(&mut self, _: Now, _: &Context) {}

    fn findings(&self, names: &[String], out: &mut Vec<(Subject, Finding)>) {
        out.extend(self.found.iter().map(|((id, _), o)| {
            let who = key_phrase(&o.label, names);
            let f = o.finding(
                RuleId::KeyNewNetwork,
                *id,
                Severity::Low,
                format!(
                    "API key {who}, in use for a while, was used successfully from {}, a network it had not used before",
                    network_text(o.network)
                ),
                "confirm the key's owner moved or added a deployment; if not, the key has leaked: rotate it",
            );
            (Subject::Key(*id), f)
        }));
    }

    fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
        for s in self.found.values_mut() {
            s.label.name = name(s.label.name);
        }
    }
}

/// Returns whether the key turned out to be public (used from
/// `public_networks` networks).
fn observe(
    state: &mut Networks,
    e: &Event,
    cfg: &Config,
    found: &mut FastMap<(KeyId, u128), Spell>,
) -> bool {
    let net = network_of(e.client);
    let (first, seen) = state.get_or_insert_with(|| (e.time_ms, FastMap::default()));
    let history = e.time_ms - *first >= i64::from(cfg.min_history_days) * DAY;
    let success = matches!(e.status, 200..=299);
    // The network's last use, and now this one (one lookup).
    let last = match seen.get_mut(&net) {
        Some(t) => Some(std::mem::replace(t, e.time_ms)),
        None => {
            if success {
                seen.insert(net, e.time_ms);
            }
            None
        }
    };
    let lookback = i64::from(cfg.lookback_days) * DAY;
    let new = last.is_none_or(|t| e.time_ms - t > lookback);
    if history && new && success {
        let o = found.entry((e.key.id, net)).or_insert_with(|| {
            let mut o = Spell::new(e.label(), e.client, e.time_ms);
            o.network = net;
            o
        });
        o.count += 1;
        o.last_ms = o.last_ms.max(e.time_ms);
    } else if !found.is_empty()
        && let Some(o) = found.get_mut(&(e.key.id, net))
    {
        o.count += 1;
        o.last_ms = o.last_ms.max(e.time_ms);
    }
    // Networks unused past the lookback are new again: forgotten.
    if seen.len() >= cfg.public_networks as usize {
        seen.retain(|_, t| e.time_ms - *t <= lookback);
    }
    seen.len() >= cfg.public_networks as usize
}
