//! `auth_failure_burst`: many rejections from one client in a short time,
//! with few keys (many keys is guessing, `key_bruteforce`, which hides a
//! burst of the same client at the same time). A leaky bucket per client.

use crate::config::ranges::Checks;
use crate::detect::episode::{Bucket, Episodes, Open};
use crate::detect::ordered::{At, Context, Event, Now, OrderedRule, Subject, group_text};
use crate::detect::{Finding, RuleId, RuleInfo, Severity};
use crate::hash::FastMap;

pub const INFO: RuleInfo = RuleInfo {
    id: "auth_failure_burst",
    title: "Burst of rejected requests",
    why: "a burst of rejected requests is a misconfigured client or an attack in progress.",
    severity: Severity::Medium,
    action: "fix the client's key, or block it if it is an attack",
    inhibited_by: Some(RuleId::KeyBruteforce),
};

pub type Plain = ();
pub type Ordered = AuthFailureBurst;

/// `[rules.auth_failure_burst]`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Events the bucket holds; the next one inside the leak time fires.
    pub capacity: u32,
    /// Seconds for one event to leak out.
    pub leak_seconds: u32,
}

impl Default for Config {
    /// CrowdSec's numbers for HTTP authentication failures: 5 events, one leaks every 10 s.
    fn default() -> Self {
        Config {
            enabled: true,
            capacity: 5,
            leak_seconds: 10,
        }
    }
}

pub(crate) fn check(b: &Config, c: &mut Checks, t: &str) {
    c.int(t, "capacity", b.capacity.into(), 1, 10_000);
    c.int(t, "leak_seconds", b.leak_seconds.into(), 1, 86_400);
}

/// Clients followed; past the cap, idle ones go first.
const MAX_TRACKED: usize = 100_000;

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct AuthFailureBurst {
    #[serde(skip)]
    cfg: Config,
    #[serde(skip)]
    prefix: u8,
    buckets: FastMap<u128, Bucket>,
    bursts: Episodes<u128>,
}

impl AuthFailureBurst {
    fn leak_ms(&self) -> f64 {
        f64::from(self.cfg.leak_seconds.max(1)) * 1000.0
    }

    /// A burst ends once its bucket could have drained.
    fn quiet(&self) -> impl Fn(&Open) -> i64 + use<> {
        let q = i64::from(self.cfg.leak_seconds.max(1)) * 1000 * i64::from(self.cfg.capacity.max(1));
        move |_: &Open| q
    }
}

impl OrderedRule for AuthFailureBurst {
    fn configure(&mut self, rules: &crate::detect::RulesConfig) {
        self.cfg = rules.auth_failure_burst.clone();
        self.prefix = rules.ipv6_client_prefix;
    }

    fn observe(&mut self, e: &Event, at: &At, _: &mut Context) {
        if !e.rejected() {
            return;
        }
        let (group, leak) = (at.group, self.leak_ms());
        if !self.buckets.contains_key(&group) && self.buckets.len() >= MAX_TRACKED {
            let horizon = leak * f64::from(self.cfg.capacity);
            self.buckets
                .retain(|_, b| ((e.time_ms - b.last_ms) as f64) < horizon);
            if self.buckets.len() >= MAX_TRACKED {
                return;
            }
        }
        self.bursts.close_stale(group, e.time_ms, self.quiet());
        let over = self
            .buckets
            .entry(group)
            .or_insert_with(|| Bucket::new(e.time_ms))
            .pour(e.time_ms, self.cfg.capacity, leak);
        if over || self.bursts.open.contains_key(&group) {
            self.bursts
                .open
                .entry(group)
                .or_insert_with(|| Open::new(e))
                .add(e);
        }
    }

    fn advance(&mut self, now: Now, _: &Context) {
        self.bursts.sweep(now.ms(), self.quiet());
    }

    fn findings(&self, _: &[String], out: &mut Vec<(Subject, Finding)>) {
        self.bursts.render(
            Subject::Client,
            |c, o, resolved| {
                let ip = group_text(c, self.prefix);
                let mut f = o.finding(
                    RuleId::AuthFailureBurst,
                    resolved,
                    Severity::Medium,
                    format!(
                        "client {ip} had {} requests rejected (401/403) in a burst, with {} different keys",
                        o.count,
                        o.nkeys()
                    ),
                    "find out whether it is a broken client (fix its key) or an attack (block it)",
                );
                f.client = Some(ip);
                f.clients = 1;
                Some(f)
            },
            out,
        );
    }

    fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
        self.bursts.relabel(name);
    }
}
