//! `rejected_key_repeated`: one key that never worked rejected again and
//! again: most of its requests in a window, or all day at any pace (a
//! mistyped key still deployed, retried every few minutes). A key that
//! looks revoked (`revoked_key_in_use`, inferred) hides it.

use std::collections::VecDeque;

use crate::config::ranges::Checks;
use crate::detect::episode::{Episodes, Open};
use crate::detect::ordered::{At, Context, Event, Now, OrderedRule, Subject};
use crate::detect::{Finding, RuleId, RuleInfo, Severity};
use crate::hash::FastMap;
use crate::keys::KeyId;

pub const INFO: RuleInfo = RuleInfo {
    id: "rejected_key_repeated",
    title: "Key rejected again and again",
    why: "a key rejected again and again is a broken deployment or a stale leaked key.",
    severity: Severity::Medium,
    action: "find the client still sending the key and give it a valid one",
    inhibited_by: Some(RuleId::RevokedKeyInUse),
};

pub type Plain = ();
pub type Ordered = RejectedKeyRepeated;

/// `[rules.rejected_key_repeated]`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Rejections of one key within the window that fire.
    pub min_rejections: u32,
    /// The window, in minutes.
    pub window_minutes: u32,
    /// Share of the key's requests in the window that were rejected (0..1).
    pub min_share: f64,
    /// Rejections within a day of a key that never worked that fire at
    /// any pace (a mistyped key still deployed, retried every few minutes).
    pub day_min_rejections: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            min_rejections: 5,
            window_minutes: 10,
            min_share: 0.5,
            day_min_rejections: 20,
        }
    }
}

pub(crate) fn check(r: &Config, c: &mut Checks, t: &str) {
    c.int(t, "min_rejections", r.min_rejections.into(), 1, 1_000_000);
    c.int(t, "window_minutes", r.window_minutes.into(), 1, 7 * 24 * 60);
    c.float(t, "min_share", r.min_share, 0.0, 1.0, true);
    c.int(t, "day_min_rejections", r.day_min_rejections.into(), 2, 1_000_000);
}

/// Keys followed; past the cap, idle ones go first.
const MAX_TRACKED: usize = 100_000;
const DAY: i64 = 86_400_000;

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct RejectedKeyRepeated {
    #[serde(skip)]
    cfg: Config,
    /// Per key: (minute, rejected, total) for the window's minutes.
    minutes: FastMap<KeyId, VecDeque<(i64, u32, u32)>>,
    /// Per key never accepted: rejections within a day, and since when.
    day: FastMap<KeyId, (u32, i64)>,
    episodes: Episodes<KeyId>,
}

impl RejectedKeyRepeated {
    /// The window, or a day for an all-day episode.
    fn quiet(&self) -> impl Fn(&Open) -> i64 + use<> {
        let window = i64::from(self.cfg.window_minutes.max(1)) * 60_000;
        let slow = window.max(DAY);
        move |o: &Open| if o.slow { slow } else { window }
    }
}

impl OrderedRule for RejectedKeyRepeated {
    fn configure(&mut self, rules: &crate::detect::RulesConfig) {
        self.cfg = rules.rejected_key_repeated.clone();
    }

    fn observe(&mut self, e: &Event, at: &At, _: &mut Context) {
        if e.key.revoked {
            return; // revoked_key_in_use covers it
        }
        let cfg = &self.cfg;
        let minute = e.time_ms.div_euclid(60_000);
        let tracked = self.minutes.contains_key(&e.key.id);
        if !tracked && !e.rejected() {
            return; // only keys with a rejection are followed
        }
        self.episodes.close_stale(e.key.id, e.time_ms, self.quiet());
        // All day, at any pace: a key that never worked.
        let mut all_day = false;
        if e.rejected() && !at.valid {
            if !self.day.contains_key(&e.key.id) && self.day.len() >= MAX_TRACKED {
                // A flood of keys tried once each: forget those first.
                self.day.retain(|_, (n, _)| *n > 1);
            }
            if self.day.len() < MAX_TRACKED || self.day.contains_key(&e.key.id) {
                let (n, since) = self.day.entry(e.key.id).or_insert((0, e.time_ms));
                if e.time_ms - *since > DAY {
                    *n = 0;
                    *since = e.time_ms;
                }
                *n += 1;
                all_day = *n >= cfg.day_min_rejections;
            }
        }
        let w = i64::from(cfg.window_minutes.max(1));
        if !tracked && self.minutes.len() >= MAX_TRACKED {
            let wm = i64::from(cfg.window_minutes);
            self.minutes
                .retain(|_, m| m.back().is_some_and(|(t, _, _)| minute - t < wm));
            if self.minutes.len() >= MAX_TRACKED {
                return;
            }
        }
        let mins = self.minutes.entry(e.key.id).or_default();
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
        if firing || all_day || self.episodes.open.contains_key(&e.key.id) {
            let since = self.day.get(&e.key.id).map(|(_, s)| *s);
            let o = self.episodes.open.entry(e.key.id).or_insert_with(|| {
                let mut o = Open::labelled(e);
                if all_day && !firing {
                    o.count = u64::from(cfg.day_min_rejections) - 1;
                    o.first_ms = since.unwrap_or(e.time_ms);
                } else {
                    // The window's earlier rejections belong to the finding.
                    o.count = u64::from(rej) - 1;
                    o.first_ms = mins.front().map_or(e.time_ms, |(t, _, _)| t * 60_000);
                }
                o
            });
            o.add(e);
            o.slow |= all_day;
        }
    }

    fn advance(&mut self, now: Now, _: &Context) {
        self.episodes.sweep(now.ms(), self.quiet());
    }

    fn findings(&self, names: &[String], out: &mut Vec<(Subject, Finding)>) {
        self.episodes.render_keys(
            (
                RuleId::RejectedKeyRepeated,
                Severity::Medium,
                "find the client still sending the key (see the clients) and give it a valid key; revoke the key if it leaked",
            ),
            names,
            |who, o| {
                format!(
                    "API key {who} was rejected {} times, most of its requests: a client still uses a revoked, expired or mistyped key",
                    o.count
                )
            },
            out,
        );
    }

    fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
        self.episodes.relabel(name);
    }
}
