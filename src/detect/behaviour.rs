//! What the behaviour rules share: `key_rate_spike`, `key_new_network`,
//! `key_fanout` and `key_shared` (each in its own file in
//! [`super::rules`]). They learn how a key is used from the log itself, so
//! they need history: the first day is quiet.
//!
//! They look only at accepted traffic: a key that never worked is the
//! rejection rules' business. Each keeps its per-key state in an array by
//! the key's slot (see [`super::ordered::Context`]). Each finding is a
//! [`Spell`], an episode (see [`super::ordered`]); after one resolves, the
//! next is a new finding. A key that was idle for days comes back to its
//! old profile, not to a week of zeros.

use std::collections::VecDeque;

use super::ordered::{Now, Slot, Subject, client_text};
use super::{Finding, RuleId, Severity};
use crate::hash::FastMap;
use crate::keys::KeyId;
use crate::usage::KeyLabel;

pub const BUCKET_MS: i64 = 5 * 60_000;
pub const DAY_BUCKETS: usize = 288;
pub const WEEK_BUCKETS: usize = 7 * DAY_BUCKETS;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;
/// Ended episodes kept per rule for reports (the oldest go first).
const MAX_ENDED: usize = 100_000;

/// The /24 (IPv4) or /48 (IPv6) a client belongs to.
pub fn network_of(tag: u128) -> u128 {
    if tag >> 127 == 1 {
        tag
    } else if tag < 1 << 32 {
        tag >> 8 << 8
    } else {
        tag >> 80 << 80
    }
}

pub fn network_text(net: u128) -> String {
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

/// Windows without a request count as zero; past a day of them the key was
/// dormant, and it comes back to its old profile (the slot of the day kept)
/// rather than to a history of zeros.
pub fn push_idle(history: &mut VecDeque<u32>, gap: i64, per_day: i64, cap: usize) {
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

/// Where a window of `len` ms that now starts at `current` moves to as log
/// time comes to `now`: the clock's window, or (the end of the input) the
/// next one, so the one being filled is judged as it stands.
pub fn roll_to(now: Now, current: i64, len: i64) -> Option<i64> {
    match now {
        Now::Sweep(_) => None,
        Now::Clock(t) => Some(t.div_euclid(len)),
        Now::End(_) => Some(current + 1),
    }
    .filter(|to| *to > current)
}

/// A rule's state for the key in `slot`, made on first use.
pub fn slot_state<T: Default>(v: &mut Vec<T>, slot: u32) -> &mut T {
    let i = slot as usize;
    if v.len() <= i {
        v.resize_with(i + 1, T::default);
    }
    &mut v[i]
}

/// Every followed key's state of one rule, with the key.
pub fn each_slot<'a, T>(
    v: &'a mut [T],
    slots: &'a [Slot],
) -> impl Iterator<Item = (&'a mut T, &'a Slot)> {
    v.iter_mut().zip(slots)
}

/// One episode of a behaviour rule.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Spell {
    pub label: KeyLabel,
    pub first_ms: i64,
    pub last_ms: i64,
    pub count: u64,
    pub peak: u32,
    pub baseline: f64,
    pub extreme: bool,
    pub network: u128,
    pub client: u128,
    /// Normal buckets in a row since the spike, and when it was over.
    pub calm: u32,
    pub resolved_ms: Option<i64>,
}

impl Spell {
    pub fn new(label: KeyLabel, client: u128, first_ms: i64) -> Spell {
        Spell {
            label,
            first_ms,
            last_ms: first_ms,
            count: 0,
            peak: 0,
            baseline: 0.0,
            extreme: false,
            network: 0,
            client,
            calm: 0,
            resolved_ms: None,
        }
    }

    /// A finding of `rule` about key `id` from this spell.
    pub fn finding(
        &self,
        rule: RuleId,
        id: KeyId,
        severity: Severity,
        message: String,
        action: &'static str,
    ) -> Finding {
        Finding {
            resolved_ms: self.resolved_ms,
            rule: rule.as_str(),
            severity,
            key: Some((id, self.label)),
            client: Some(client_text(self.client)),
            clients: 0,
            place: None,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
            count: self.count,
            message,
            evidence: None,
            action,
        }
    }
}

/// One rule's spells: the current one per key, and those that ended.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Spells {
    pub open: FastMap<KeyId, Spell>,
    ended: VecDeque<(KeyId, Spell)>,
}

impl Spells {
    pub fn end(&mut self, id: KeyId, s: Spell) {
        self.ended.push_back((id, s));
        while self.ended.len() > MAX_ENDED {
            self.ended.pop_front();
        }
    }

    /// Renders every spell, current ones first.
    pub fn render(&self, f: impl Fn(KeyId, &Spell) -> Finding, out: &mut Vec<(Subject, Finding)>) {
        out.extend(
            self.open
                .iter()
                .chain(self.ended.iter().map(|(id, s)| (id, s)))
                .map(|(id, s)| (Subject::Key(*id), f(*id, s))),
        );
    }

    pub fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
        let fix = |s: &mut Spell| s.label.name = name(s.label.name);
        self.open.values_mut().for_each(fix);
        self.ended.iter_mut().for_each(|(_, s)| fix(s));
    }
}
