//! `revoked_key_in_use`: a revoked key still presented. Two ways to know it
//! is revoked:
//! - listed: the configuration names it (by key id, by prefix, or in a
//!   file of key ids); any request with it is a finding, critical if the
//!   API still accepted it (the revocation never took effect);
//! - inferred: a key that worked and is now only refused (`infer_*`): it
//!   looks revoked, yet something still sends it. An episode that ends at
//!   the key's next success.

use crate::config::ranges::Checks;
use crate::detect::episode::{Episodes, Open};
use crate::detect::ordered::{At, Context, Event, Now, OrderedRule, Subject};
use crate::detect::tally::{Tallies, Tally};
use crate::detect::{Detector, Finding, RuleId, RuleInfo, Severity, key_phrase};
use crate::hash::FastMap;
use crate::keys::KeyId;
use crate::request::KeyedRequest;
use crate::usage::KeyLabel;

pub const INFO: RuleInfo = RuleInfo {
    id: "revoked_key_in_use",
    title: "Revoked key still in use",
    why: "a revoked key is still deployed somewhere, or someone is trying a leaked key.",
    severity: Severity::High,
    action: "find the client still sending the key and give it a new one",
    inhibited_by: None,
};

pub type Plain = RevokedKeyInUse;
pub type Ordered = InferredRevocation;

/// `[rules.revoked_key_in_use]`: the revoked keys.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Key ids (16 hex characters, as keywatch prints them).
    pub ids: Vec<String>,
    /// Prefixes of revoked keys (as logged; with `logged_prefix_length`, at most that long).
    pub prefixes: Vec<String>,
    /// A file with one key id per line (`#` comments allowed).
    pub ids_file: Option<std::path::PathBuf>,
    /// A key that worked and is then rejected this many times in a row
    /// looks revoked…
    pub infer_after_rejections: u32,
    /// …or at least `infer_min_rejections` times in a row spanning
    /// `infer_min_hours` hours.
    pub infer_min_rejections: u32,
    pub infer_min_hours: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            ids: Vec::new(),
            prefixes: Vec::new(),
            ids_file: None,
            infer_after_rejections: 10,
            infer_min_rejections: 3,
            infer_min_hours: 1,
        }
    }
}

pub(crate) fn check(r: &Config, c: &mut Checks, t: &str) {
    c.int(t, "infer_after_rejections", r.infer_after_rejections.into(), 1, 1_000_000);
    c.int(t, "infer_min_rejections", r.infer_min_rejections.into(), 1, 1_000_000);
    c.int(t, "infer_min_hours", r.infer_min_hours.into(), 0, 7 * 24);
    for p in &r.prefixes {
        if p.is_empty() || p.chars().any(char::is_control) {
            c.bad(
                t,
                "prefixes",
                format!("{p:?}: a prefix is the first characters of a revoked key, as logged"),
            );
        }
    }
}

/// `extra` counts the requests the API accepted although the key is revoked.
#[derive(Default)]
pub struct RevokedKeyInUse {
    seen: Tallies<KeyId>,
}

impl Detector for RevokedKeyInUse {
    const RULE: &'static str = RuleId::RevokedKeyInUse.as_str();

    fn observe(&mut self, req: &KeyedRequest<'_>) {
        let Some(key) = req.key.filter(|k| k.revoked) else {
            return;
        };
        let label = KeyLabel {
            masked: key.masked,
            name: key.name,
        };
        if let Some(t) = self
            .seen
            .get(key.id, || Tally::new(label, String::new(), req, None))
        {
            t.add(req);
            if matches!(req.rec.status, Some(200..=399)) {
                t.extra += 1;
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.seen.merge(other.seen);
    }

    fn findings(&self, names: &[String]) -> Vec<Finding> {
        self.seen
            .iter()
            .map(|(id, s)| {
                let who = key_phrase(&s.label, names);
                let times = if s.count == 1 { "once".to_string() } else { format!("{} times", s.count) };
                let (severity, message, action) = if s.extra > 0 {
                    (
                        Severity::Critical,
                        format!(
                            "revoked API key {who} was presented {times} and the API still accepted it {} of those times: the revocation has not taken effect",
                            s.extra
                        ),
                        "make the API reject the key (remove it from the key store, reload the gateway), then find and update the client still sending it",
                    )
                } else {
                    (
                        Severity::High,
                        format!("revoked API key {who} was presented {times}; a deployment still carries the old key"),
                        "find the deployment still sending the key (see the clients) and give it its new key",
                    )
                };
                Finding {
                    resolved_ms: None,
                    rule: Self::RULE,
                    severity,
                    key: Some((*id, s.label)),
                    client: s.first_client.clone(),
                    clients: s.clients.count(),
                    place: None,
                    first_ms: s.first_ms,
                    last_ms: s.last_ms,
                    count: s.count,
                    message,
                    evidence: None,
                    action,
                }
            })
            .collect()
    }
}

/// Keys that once worked, followed; past the cap, new ones are not.
const MAX_TRACKED: usize = 100_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

/// The inferred revocation.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct InferredRevocation {
    /// Rejections in a row that fire at any pace, fewest that fire, and
    /// the span in ms that makes them enough.
    #[serde(skip)]
    cfg: (u32, u32, i64),
    /// Per key that once worked: its last success, the rejections since,
    /// and when they began.
    last_success: FastMap<KeyId, (i64, u32, i64)>,
    episodes: Episodes<KeyId>,
}

impl OrderedRule for InferredRevocation {
    fn configure(&mut self, rules: &crate::detect::RulesConfig) {
        let r = &rules.revoked_key_in_use;
        self.cfg = (
            r.infer_after_rejections,
            r.infer_min_rejections,
            i64::from(r.infer_min_hours) * HOUR,
        );
    }

    /// A key that worked within the last 7 days and has since only been
    /// rejected: `after` rejections in a row, or `min` spanning `span`.
    fn observe(&mut self, e: &Event, _: &At, _: &mut Context) {
        const WEEK: i64 = 7 * DAY;
        let (after, min, span) = self.cfg;
        if e.key.revoked {
            return; // listed: the plain rule's
        }
        if matches!(e.status, 200..=299) {
            // Working again: the episode is over.
            if let Some(o) = self.episodes.open.remove(&e.key.id) {
                self.episodes.end(e.key.id, o, e.time_ms);
            }
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
        self.episodes.close_stale(e.key.id, e.time_ms, |_| DAY);
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
        let firing =
            *rejections >= min && (e.time_ms - *streak_start >= span || *rejections >= after);
        if firing || self.episodes.open.contains_key(&e.key.id) {
            let (since, n) = (*ok_ms, *rejections);
            // After an episode of the same key ended (no success since), the
            // next one begins with its own rejections.
            let again = self
                .episodes
                .ended
                .iter()
                .filter(|(k, _, _)| *k == e.key.id)
                .map(|(_, _, end)| *end)
                .max()
                .is_some_and(|end| end > since);
            let o = self.episodes.open.entry(e.key.id).or_insert_with(|| {
                let mut o = Open::labelled(e);
                if again {
                    o.first_ms = e.time_ms;
                } else {
                    o.first_ms = since;
                    o.count = u64::from(n) - 1;
                }
                o
            });
            o.add(e);
        }
    }

    fn advance(&mut self, now: Now, _: &Context) {
        self.episodes.sweep(now.ms(), |_| DAY);
    }

    fn findings(&self, names: &[String], out: &mut Vec<(Subject, Finding)>) {
        self.episodes.render_keys(
            (
                RuleId::RevokedKeyInUse,
                Severity::Medium,
                "if the key was revoked, find the client still sending it and give it a new key; if not, find out why the API rejects it",
            ),
            names,
            |who, o| {
                format!(
                    "API key {who} worked until the first time shown and has since been rejected {} times with no success: it looks revoked, yet something still sends it",
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
