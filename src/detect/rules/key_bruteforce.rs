//! `key_bruteforce`: one client (an IPv6 client by its /64) presenting many
//! distinct keys that never worked: fast (a leaky bucket, CrowdSec's 5
//! events / 10 s), slow (20 distinct keys within 6 hours), or spread over
//! many clients (distinct unknown keys rejected site-wide in 10 minutes,
//! against the site's own median); and, critical, a guessing client whose
//! next new key was accepted.

use std::collections::VecDeque;

use crate::config::ranges::Checks;
use crate::detect::episode::{Bucket, Episodes, Open};
use crate::detect::ordered::{At, Context, Event, Now, OrderedRule, Subject, client_text, group_text};
use crate::detect::{Finding, RuleId, RuleInfo, Severity, key_phrase};
use crate::hash::{FastMap, FastSet};
use crate::keys::{KeyId, KeyRef};
use crate::usage::Distinct;

pub const INFO: RuleInfo = RuleInfo {
    id: "key_bruteforce",
    title: "Key guessing",
    why: "one client, or many together, trying many different keys is guessing or replaying a leaked list.",
    severity: Severity::High,
    action: "block the clients and rate-limit 401s; revoke any key a guesser got accepted",
    inhibited_by: None,
};

pub type Plain = ();
pub type Ordered = KeyBruteforce;

/// `[rules.key_bruteforce]`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Distinct unknown keys one client's bucket holds; the next one fires.
    pub capacity: u32,
    /// Seconds for one key to leak out of the bucket.
    pub leak_seconds: u32,
    /// Low and slow: this many distinct unknown keys from one client…
    pub slow_min_keys: u32,
    /// …within this many hours.
    pub slow_window_hours: u32,
    /// Spread over clients: distinct unknown keys rejected site-wide in one
    /// window that fire, whatever the history…
    pub site_min_keys: u32,
    /// …and how many times the site's median window they must exceed.
    pub site_factor: f64,
    /// The site-wide window, in minutes.
    pub site_window_minutes: u32,
    /// Distinct clients (networks, for IPv6) the keys must come from:
    /// fewer are each the per-client rule's business.
    pub site_min_clients: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            capacity: 5,
            leak_seconds: 10,
            slow_min_keys: 20,
            slow_window_hours: 6,
            site_min_keys: 30,
            site_factor: 5.0,
            site_window_minutes: 10,
            site_min_clients: 5,
        }
    }
}

pub(crate) fn check(b: &Config, c: &mut Checks, t: &str) {
    c.int(t, "capacity", b.capacity.into(), 1, 10_000);
    c.int(t, "leak_seconds", b.leak_seconds.into(), 1, 86_400);
    c.int(t, "slow_min_keys", b.slow_min_keys.into(), 2, 1_000_000);
    c.int(t, "slow_window_hours", b.slow_window_hours.into(), 1, 7 * 24);
    c.int(t, "site_min_keys", b.site_min_keys.into(), 2, 100_000_000);
    c.float(t, "site_factor", b.site_factor, 1.0, 1000.0, false);
    c.int(t, "site_window_minutes", b.site_window_minutes.into(), 1, 24 * 60);
    c.int(t, "site_min_clients", b.site_min_clients.into(), 2, 1_000_000);
}

/// Clients followed; past the cap, idle ones go first.
const MAX_TRACKED: usize = 100_000;
/// Distinct keys one client remembers for the slow window.
const SLOW_KEEP: usize = 64;
/// The site-wide window's key set stops growing here (far past any limit).
const SITE_SET: usize = 1 << 16;
/// Site windows of history (a week of 10-minute windows).
const SITE_HISTORY: usize = 1008;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

/// Per client: its bucket and the distinct unknown keys it presented
/// within the slow window (at most [`SLOW_KEEP`], the newest).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct ClientKeys {
    bucket: Option<Bucket>,
    recent: VecDeque<(i64, KeyId)>,
}

/// Site-wide: the distinct unknown keys rejected in the current window.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Site {
    window: i64,
    keys: FastSet<KeyId>,
    clients: Distinct,
    /// What the current window must exceed.
    limit: f64,
    baseline: f64,
    history: VecDeque<u32>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct KeyBruteforce {
    #[serde(skip)]
    cfg: Config,
    #[serde(skip)]
    prefix: u8,
    clients: FastMap<u128, ClientKeys>,
    guessing: Episodes<u128>,
    site: Site,
    site_wide: Episodes<()>,
    got_in: Episodes<(u128, KeyId)>,
}

impl KeyBruteforce {
    fn leak_ms(&self) -> f64 {
        f64::from(self.cfg.leak_seconds.max(1)) * 1000.0
    }

    fn slow_ms(&self) -> i64 {
        i64::from(self.cfg.slow_window_hours.max(1)) * HOUR
    }

    /// How long a guessing episode lasts without a new key: the bucket's
    /// span, or the slow window for slow guessing.
    fn quiet(&self) -> impl Fn(&Open) -> i64 + use<> {
        let span = i64::from(self.cfg.leak_seconds.max(1)) * 1000 * i64::from(self.cfg.capacity + 1);
        let slow = span.max(i64::from(self.cfg.slow_window_hours) * HOUR);
        move |o: &Open| if o.slow { slow } else { span }
    }

    fn site_quiet(&self) -> impl Fn(&Open) -> i64 + use<> {
        let q = 2 * i64::from(self.cfg.site_window_minutes.max(1)) * 60_000;
        move |_: &Open| q
    }

    fn observe_brute(&mut self, e: &Event, group: u128) {
        let (cfg, leak, slow_ms) = (&self.cfg, self.leak_ms(), self.slow_ms());
        let span = ((leak * f64::from(cfg.capacity + 1)) as i64).max(slow_ms);
        if !self.clients.contains_key(&group) && self.clients.len() >= MAX_TRACKED {
            let before = self.clients.len();
            self.clients
                .retain(|_, c| c.recent.back().is_some_and(|(t, _)| e.time_ms - t < span));
            if self.clients.len() == before {
                return;
            }
        }
        let quiet = self.quiet();
        self.guessing.close_stale(group, e.time_ms, &quiet);
        let c = self.clients.entry(group).or_default();
        while c.recent.front().is_some_and(|(t, _)| e.time_ms - t >= span) {
            c.recent.pop_front();
        }
        if c.recent.iter().any(|(_, k)| *k == e.key.id) {
            return; // not a new key: distinct keys only
        }
        c.recent.push_back((e.time_ms, e.key.id));
        if c.recent.len() > SLOW_KEEP {
            c.recent.pop_front();
        }
        let fast = c
            .bucket
            .get_or_insert(Bucket::new(e.time_ms))
            .pour(e.time_ms, cfg.capacity, leak);
        let in_window = c
            .recent
            .iter()
            .filter(|(t, _)| e.time_ms - t < slow_ms)
            .count();
        let slow = in_window >= cfg.slow_min_keys as usize;
        match self.guessing.open.get_mut(&group) {
            Some(o) => {
                o.add(e);
                o.slow |= slow && !fast;
            }
            None if fast || slow => {
                // The episode starts with the keys already presented.
                let mut o = Open::new(e);
                let window = if fast {
                    (leak * f64::from(cfg.capacity + 1)) as i64
                } else {
                    slow_ms
                };
                for (t, k) in c.recent.iter().filter(|(t, _)| e.time_ms - t < window) {
                    o.first_ms = o.first_ms.min(*t);
                    o.add(&Event {
                        time_ms: *t,
                        key: KeyRef { id: *k, ..e.key },
                        ..*e
                    });
                }
                o.first_client = e.client;
                o.slow = slow && !fast;
                self.guessing.open.insert(group, o);
            }
            None => {}
        }
    }

    /// Distinct unknown keys rejected across all clients in one window,
    /// against the site's median window over the last day.
    fn observe_site(&mut self, e: &Event, group: u128) {
        let cfg = &self.cfg;
        let win = i64::from(cfg.site_window_minutes.max(1)) * 60_000;
        let w = e.time_ms.div_euclid(win);
        let s = &mut self.site;
        if s.keys.is_empty() && s.history.is_empty() && s.window == 0 {
            s.window = w;
            s.limit = f64::from(cfg.site_min_keys);
        }
        if w > s.window {
            s.history.push_back(s.keys.len() as u32);
            for _ in 1..(w - s.window).min(SITE_HISTORY as i64) {
                s.history.push_back(0);
            }
            while s.history.len() > SITE_HISTORY {
                s.history.pop_front();
            }
            let day = (DAY / win).max(1) as usize;
            let mut last: Vec<f64> = s
                .history
                .iter()
                .rev()
                .take(day)
                .map(|&n| f64::from(n))
                .collect();
            s.baseline = crate::detect::behaviour::median(&mut last);
            s.limit = f64::from(cfg.site_min_keys).max(cfg.site_factor * s.baseline);
            s.window = w;
            s.keys.clear();
            s.clients = Distinct::default();
        } else if w < s.window {
            return; // out of order by a window: too late to count
        }
        if s.keys.len() < SITE_SET {
            s.keys.insert(e.key.id);
        }
        s.clients.insert(group);
        let n = s.keys.len() as u64;
        // The site's own baseline first: a day of windows. (At the start of
        // a log every working key's first request may be one of its rare
        // rejections, before it is known to work.)
        let learned = s.history.len() as i64 >= DAY / win;
        if !learned || (n as f64) <= s.limit || s.clients.count() < u64::from(cfg.site_min_clients)
        {
            if let Some(o) = self.site_wide.open.get_mut(&())
                && o.last_ms >= w * win
            {
                // Still this window's episode: every key counts.
                o.add(e);
            }
            return;
        }
        let quiet = self.site_quiet();
        self.site_wide.close_stale((), e.time_ms, quiet);
        let s = &self.site;
        let o = self.site_wide.open.entry(()).or_insert_with(|| {
            let mut o = Open::new(e);
            o.first_ms = w * win;
            o.count = n - 1;
            for k in &s.keys {
                o.sets().keys.insert(u128::from(u64::from_le_bytes(k.0)));
            }
            o
        });
        o.add(e);
        o.sets().clients.merge(&s.clients);
        o.baseline = s.baseline;
        o.peak = o.peak.max(n);
    }

    /// A client that was guessing keys, whose new key was accepted: it got in.
    fn observe_got_in(&mut self, e: &Event, group: u128) {
        let guessing = self.guessing.open.contains_key(&group)
            || self
                .clients
                .get(&group)
                .is_some_and(|c| c.recent.len() > self.cfg.capacity as usize);
        if !guessing || self.got_in.open.contains_key(&(group, e.key.id)) {
            return;
        }
        let mut o = Open::labelled(e);
        o.add(e);
        if let Some(b) = self.guessing.open.get(&group) {
            o.sets().keys = b.keys();
            o.first_ms = e.time_ms;
        }
        self.got_in.open.insert((group, e.key.id), o);
    }
}

impl OrderedRule for KeyBruteforce {
    fn configure(&mut self, rules: &crate::detect::RulesConfig) {
        self.cfg = rules.key_bruteforce.clone();
        self.prefix = rules.ipv6_client_prefix;
    }

    fn observe(&mut self, e: &Event, at: &At, _: &mut Context) {
        if at.first_success {
            self.observe_got_in(e, at.group);
        }
        if e.rejected() && !at.valid && !e.key.revoked {
            // A client already found guessing is its own finding: the
            // site-wide count is of guessing no single client explains.
            if !self.guessing.open.contains_key(&at.group) {
                self.observe_site(e, at.group);
            }
            self.observe_brute(e, at.group);
        }
    }

    fn advance(&mut self, now: Now, _: &Context) {
        let t = now.ms();
        self.guessing.sweep(t, self.quiet());
        self.site_wide.sweep(t, self.site_quiet());
        self.got_in.sweep(t, |_| DAY);
    }

    fn findings(&self, names: &[String], out: &mut Vec<(Subject, Finding)>) {
        let p = self.prefix;
        self.guessing.render(
            Subject::Client,
            |c, o, resolved| {
                let ip = group_text(c, p);
                let n = o.nkeys();
                let pace = if o.slow {
                    "over hours, a few at a time"
                } else {
                    "faster than any client uses keys"
                };
                let mut f = o.finding(
                    RuleId::KeyBruteforce,
                    resolved,
                    Severity::High,
                    format!(
                        "client {ip} presented {n} different keys that were rejected, {pace}: someone is guessing API keys"
                    ),
                    "block the client (firewall, rate limit on 401s); check that none of its keys was ever accepted",
                );
                f.client = Some(ip);
                f.clients = 1;
                f.count = n;
                Some(f)
            },
            out,
        );
        self.site_wide.render(
            |()| Subject::Site,
            |(), o, resolved| {
                let n = o.nkeys();
                let mut f = o.finding(
                    RuleId::KeyBruteforce,
                    resolved,
                    Severity::High,
                    format!(
                        "{n} different unknown keys were rejected from {} clients, up to {} in {} minutes against a usual {:.0}: someone is guessing API keys from many addresses",
                        o.nclients(),
                        o.peak,
                        self.cfg.site_window_minutes,
                        o.baseline
                    ),
                    "rate-limit 401s site-wide and look for the keys' common pattern; check which clients then got a 2xx",
                );
                f.client = Some(client_text(o.first_client));
                f.count = n;
                Some(f)
            },
            out,
        );
        self.got_in.render(
            |(c, k)| Subject::ClientKey(c, k),
            |(c, id), o, resolved| {
                let label = o.label?;
                let who = key_phrase(&label, names);
                let ip = group_text(c, p);
                let mut f = o.finding(
                    RuleId::KeyBruteforce,
                    resolved,
                    Severity::Critical,
                    format!(
                        "client {ip} was guessing keys ({} rejected) and then key {who} was accepted for it: a guessed key works",
                        o.nkeys().saturating_sub(1)
                    ),
                    "revoke the accepted key now, block the client, and review what the key did",
                );
                f.key = Some((id, label));
                f.client = Some(ip);
                f.clients = 1;
                f.count = 1;
                Some(f)
            },
            out,
        );
    }

    fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
        self.guessing.relabel(name);
        self.site_wide.relabel(name);
        self.got_in.relabel(name);
    }
}
