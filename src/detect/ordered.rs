//! Rules whose verdict depends on the order of requests in time (leaky
//! buckets, sliding windows). They see compact [`Event`]s in log order: live
//! as lines are read, or replayed piece by piece when a scan parses a file
//! on several threads.
//!
//! Every rule here reports **episodes**: a finding opens when its condition
//! first holds, grows while it holds, and ends (resolved) once nothing has
//! kept it going for the rule's quiet time; the next time the condition
//! holds is a new finding. An episode's end is `last event + quiet time`,
//! decided from log time alone, so a scan and a live `watch` of the same
//! log agree however often the clock is looked at.
//!
//! The rejection rules:
//! - `key_bruteforce`: one client (an IPv6 client by its /64) presenting
//!   many distinct keys that never worked: fast (a leaky bucket, CrowdSec's
//!   5 events / 10 s), slow (20 distinct keys within 6 hours), or spread
//!   over many clients (distinct unknown keys rejected site-wide in 10
//!   minutes, against the site's own median); and, critical, a guessing
//!   client whose next new key was accepted.
//! - `auth_failure_burst`: many rejections from one client, few keys.
//! - `rejected_key_repeated`: one key that never worked rejected again and
//!   again: in a window, or all day at any pace.
//! - `revoked_key_in_use` (inferred): a key that worked and is now only
//!   refused.
//!
//! Keyless requests never reach these rules, and a key that worked is no
//! guess, so keyless 401s and a working key's occasional 401 stay quiet.

use std::collections::VecDeque;

use super::{Finding, Severity, key_phrase};
use crate::hash::{FastMap, FastSet};
use crate::keys::{KeyId, KeyRef};
use crate::usage::{Distinct, KeyLabel};

/// What the ordered rules need from one keyed request.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub time_ms: i64,
    pub client: u128,
    pub key: KeyRef,
    /// 0 when the format logs none.
    pub status: u16,
    /// A hash of the user agent (0 when not logged).
    pub ua: u64,
}

impl Event {
    pub fn rejected(&self) -> bool {
        matches!(self.status, 401 | 403)
    }

    fn succeeded(&self) -> bool {
        matches!(self.status, 200..=399)
    }
}

/// A client address for people, from its tag (see `usage::distinct::client_tag`).
pub fn client_text(tag: u128) -> String {
    if tag >> 127 == 1 {
        return "(non-IP client)".into();
    }
    if tag < 1 << 32 {
        return std::net::Ipv4Addr::from(tag as u32).to_string();
    }
    std::net::Ipv6Addr::from(tag).to_string()
}

fn is_ipv6(tag: u128) -> bool {
    use crate::usage::distinct::{is_address, is_ipv4};
    is_address(tag) && !is_ipv4(tag)
}

/// The client a rule counts: an IPv6 address by its network of `prefix`
/// bits (addresses inside a /64 rotate at will), anything else itself.
pub fn client_group(tag: u128, prefix: u8) -> u128 {
    if !is_ipv6(tag) || prefix >= 128 {
        return tag;
    }
    let keep = u32::from(prefix.max(1));
    tag >> (128 - keep) << (128 - keep)
}

/// A grouped client for people: `2001:db8:1:2::/64`, or the address.
pub fn group_text(tag: u128, prefix: u8) -> String {
    if is_ipv6(tag) && prefix < 128 {
        format!("{}/{prefix}", client_text(tag))
    } else {
        client_text(tag)
    }
}

/// `[rules.auth_failure_burst]`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BucketConfig {
    pub enabled: bool,
    /// Events the bucket holds; the next one inside the leak time fires.
    pub capacity: u32,
    /// Seconds for one event to leak out.
    pub leak_seconds: u32,
}

impl Default for BucketConfig {
    /// CrowdSec's numbers for HTTP authentication failures: 5 events, one leaks every 10 s.
    fn default() -> Self {
        BucketConfig {
            enabled: true,
            capacity: 5,
            leak_seconds: 10,
        }
    }
}

/// `[rules.key_bruteforce]`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BruteConfig {
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

impl Default for BruteConfig {
    fn default() -> Self {
        BruteConfig {
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

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepeatedConfig {
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

impl Default for RepeatedConfig {
    fn default() -> Self {
        RepeatedConfig {
            enabled: true,
            min_rejections: 5,
            window_minutes: 10,
            min_share: 0.5,
            day_min_rejections: 20,
        }
    }
}

/// Per-client and per-key state is capped; past the cap, idle entries go first.
const MAX_TRACKED: usize = 100_000;
/// Ended episodes kept for reports (the oldest go first); each is kept
/// compact (counts, not sets), about 200 bytes.
const MAX_ENDED: usize = 100_000;
/// Distinct keys one client remembers for the slow window.
const SLOW_KEEP: usize = 64;
/// The site-wide window's key set stops growing here (far past any limit).
const SITE_SET: usize = 1 << 16;
/// Site windows of history (a week of 10-minute windows).
const SITE_HISTORY: usize = 1008;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// The layout of [`OrderedDetectors::save`]; another is not read back.
const LEARNED_VERSION: u32 = 1;
/// How often (log time) ended episodes are looked for.
const SWEEP_MS: i64 = 60_000;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Bucket {
    level: f64,
    last_ms: i64,
}

impl Bucket {
    /// Pours one event; returns whether the bucket overflowed.
    fn pour(&mut self, now: i64, capacity: u32, leak_ms: f64) -> bool {
        let drained = (now - self.last_ms).max(0) as f64 / leak_ms;
        self.level = (self.level - drained).max(0.0) + 1.0;
        self.last_ms = now;
        self.level > f64::from(capacity)
    }
}

/// One episode as it grows.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Open {
    count: u64,
    first_ms: i64,
    last_ms: i64,
    keys: Distinct,
    label: Option<KeyLabel>,
    clients: Distinct,
    first_client: u128,
    /// Held by a slow condition: it ends only after the long quiet time.
    slow: bool,
    /// The site's usual number (site-wide guessing).
    baseline: f64,
    peak: u64,
    /// The counts of `keys` and `clients` once the episode ended and its
    /// sets were let go.
    keys_n: u64,
    clients_n: u64,
}

impl Open {
    fn new(e: &Event) -> Open {
        Open {
            count: 0,
            first_ms: e.time_ms,
            last_ms: e.time_ms,
            keys: Distinct::default(),
            label: None,
            clients: Distinct::default(),
            first_client: e.client,
            slow: false,
            baseline: 0.0,
            peak: 0,
            keys_n: 0,
            clients_n: 0,
        }
    }

    fn nkeys(&self) -> u64 {
        self.keys.count().max(self.keys_n)
    }

    fn nclients(&self) -> u64 {
        self.clients.count().max(self.clients_n)
    }

    /// Counts instead of sets: what an ended episode keeps.
    fn compact(mut self) -> Open {
        self.keys_n = self.nkeys();
        self.clients_n = self.nclients();
        self.keys = Distinct::default();
        self.clients = Distinct::default();
        self
    }

    fn labelled(e: &Event) -> Open {
        let mut o = Open::new(e);
        o.label = Some(KeyLabel {
            masked: e.key.masked,
            name: e.key.name,
        });
        o
    }

    fn add(&mut self, e: &Event) {
        self.count += 1;
        self.last_ms = self.last_ms.max(e.time_ms);
        self.keys.insert(u128::from(u64::from_le_bytes(e.key.id.0)));
        self.clients.insert(e.client);
    }
}

/// Which rule (and flavour) an episode belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Which {
    Brute,
    Burst,
    Repeated,
    Inferred,
    Site,
    GotIn,
}

/// What an episode is about.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Subject {
    Client(u128),
    Key(KeyId),
    Site,
    ClientKey(u128, KeyId),
}

/// How long an episode lasts without anything keeping it going, per rule
/// (fast and slow flavours), from the settings.
#[derive(Clone, Copy, Debug, Default)]
struct Quiet {
    brute: (i64, i64),
    burst: i64,
    repeated: (i64, i64),
    site: i64,
}

impl Quiet {
    fn new(
        brute: &Option<BruteConfig>,
        burst: &Option<BucketConfig>,
        repeated: &Option<RepeatedConfig>,
    ) -> Quiet {
        let (b, u, r) = (
            brute.clone().unwrap_or_default(),
            burst.clone().unwrap_or_default(),
            repeated.clone().unwrap_or_default(),
        );
        let span = i64::from(b.leak_seconds.max(1)) * 1000 * i64::from(b.capacity + 1);
        let window = i64::from(r.window_minutes.max(1)) * 60_000;
        Quiet {
            brute: (span, span.max(i64::from(b.slow_window_hours) * HOUR)),
            burst: i64::from(u.leak_seconds.max(1)) * 1000 * i64::from(u.capacity.max(1)),
            repeated: (window, window.max(DAY)),
            site: 2 * i64::from(b.site_window_minutes.max(1)) * 60_000,
        }
    }

    fn of(&self, which: Which, o: &Open) -> i64 {
        let pick = |(fast, slow): (i64, i64)| if o.slow { slow } else { fast };
        match which {
            Which::Brute => pick(self.brute),
            Which::Burst => self.burst,
            Which::Repeated => pick(self.repeated),
            Which::Site => self.site,
            Which::Inferred | Which::GotIn => DAY,
        }
    }
}

/// An episode that ended.
#[derive(serde::Serialize, serde::Deserialize)]
struct Ended {
    which: Which,
    subject: Subject,
    open: Open,
    resolved_ms: i64,
}

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
pub struct OrderedDetectors {
    brute: Option<BruteConfig>,
    burst: Option<BucketConfig>,
    repeated: Option<RepeatedConfig>,
    ipv6_prefix: u8,
    /// From the settings (see [`OrderedDetectors::reconfigure`]).
    #[serde(skip)]
    quiet: Quiet,
    /// Keys that succeeded at least once: their rejections are no guessing.
    known_valid: FastSet<KeyId>,
    brute_state: FastMap<u128, ClientKeys>,
    burst_state: FastMap<u128, Bucket>,
    /// Per key: (minute, rejected, total) for the window's minutes.
    repeated_state: FastMap<KeyId, VecDeque<(i64, u32, u32)>>,
    /// Per key never accepted: rejections within a day, and since when.
    rejected_day: FastMap<KeyId, (u32, i64)>,
    site: Site,
    brute_open: FastMap<u128, Open>,
    burst_open: FastMap<u128, Open>,
    repeated_open: FastMap<KeyId, Open>,
    site_open: Option<Open>,
    got_in: FastMap<(u128, KeyId), Open>,
    behaviour: Option<super::behaviour::KeyBehaviour>,
    /// For the inferred revocation: per key that once worked, its last
    /// success and the rejections since.
    /// For the inferred revocation: (rejections in a row that fire at any
    /// pace, fewest that fire, and the span in ms that makes them enough).
    inferred: Option<(u32, u32, i64)>,
    last_success: FastMap<KeyId, (i64, u32, i64)>,
    inferred_open: FastMap<KeyId, Open>,
    ended: VecDeque<Ended>,
    /// The latest log time seen, and when ended episodes are looked for next.
    now_ms: i64,
    next_sweep_ms: i64,
    pub untracked: u64,
}

impl OrderedDetectors {
    pub fn new(rules: &super::RulesConfig) -> Option<Self> {
        let d = OrderedDetectors {
            behaviour: super::behaviour::KeyBehaviour::new(rules),
            now_ms: i64::MIN,
            next_sweep_ms: i64::MIN,
            ..OrderedDetectors::default()
        };
        d.reconfigure(rules)
    }

    /// Takes new settings and keeps what was learned (a reload): a rule
    /// still on keeps its state with the new numbers, a rule switched off
    /// forgets, one switched on starts empty.
    pub fn reconfigure(mut self, rules: &super::RulesConfig) -> Option<Self> {
        let (brute, burst, repeated) = (
            &rules.key_bruteforce,
            &rules.auth_failure_burst,
            &rules.rejected_key_repeated,
        );
        self.brute = brute.enabled.then(|| brute.clone());
        self.burst = burst.enabled.then(|| burst.clone());
        self.repeated = repeated.enabled.then(|| repeated.clone());
        self.ipv6_prefix = rules.ipv6_client_prefix;
        self.quiet = Quiet::new(&self.brute, &self.burst, &self.repeated);
        if self.brute.is_none() {
            self.brute_state.clear();
            self.brute_open.clear();
            self.site = Site::default();
            self.site_open = None;
            self.got_in.clear();
        }
        if self.burst.is_none() {
            self.burst_state.clear();
            self.burst_open.clear();
        }
        if self.repeated.is_none() {
            self.repeated_state.clear();
            self.repeated_open.clear();
            self.rejected_day.clear();
        }
        let r = &rules.revoked_key_in_use;
        self.inferred = r.enabled.then_some((
            r.infer_after_rejections,
            r.infer_min_rejections,
            i64::from(r.infer_min_hours) * HOUR,
        ));
        if self.inferred.is_none() {
            self.last_success.clear();
            self.inferred_open.clear();
        }
        self.behaviour = match self.behaviour.take() {
            Some(b) => b.reconfigure(rules),
            None => super::behaviour::KeyBehaviour::new(rules),
        };
        (self.brute.is_some()
            || self.burst.is_some()
            || self.repeated.is_some()
            || self.behaviour.is_some())
        .then_some(self)
    }

    /// What the rules learned, for the store (see [`OrderedDetectors::load`]).
    pub fn save(&self) -> Vec<u8> {
        postcard::to_stdvec(&(LEARNED_VERSION, self)).unwrap_or_default()
    }

    /// Takes up what [`OrderedDetectors::save`] wrote, with these settings;
    /// `name` maps a saved key-name index to today's (names may have
    /// changed). `None` when the bytes are not that (another version).
    pub fn load(
        bytes: &[u8],
        rules: &super::RulesConfig,
        name: &dyn Fn(Option<u32>) -> Option<u32>,
    ) -> Option<Self> {
        let (version, mut d): (u32, OrderedDetectors) = postcard::from_bytes(bytes).ok()?;
        if version != LEARNED_VERSION {
            return None;
        }
        let relabel = |o: &mut Open| {
            if let Some(l) = &mut o.label {
                l.name = name(l.name);
            }
        };
        d.brute_open.values_mut().for_each(relabel);
        d.burst_open.values_mut().for_each(relabel);
        d.repeated_open.values_mut().for_each(relabel);
        d.inferred_open.values_mut().for_each(relabel);
        d.got_in.values_mut().for_each(relabel);
        d.site_open.iter_mut().for_each(relabel);
        d.ended.iter_mut().for_each(|e| relabel(&mut e.open));
        if let Some(b) = &mut d.behaviour {
            b.relabel(name);
        }
        d.reconfigure(rules)
    }

    pub fn observe(&mut self, e: &Event) {
        if e.time_ms > self.now_ms {
            self.now_ms = e.time_ms;
        }
        if self.now_ms >= self.next_sweep_ms {
            self.next_sweep_ms = self.now_ms.saturating_add(SWEEP_MS);
            self.sweep(self.now_ms);
        }
        if let Some(b) = &mut self.behaviour {
            b.observe(e);
        }
        let group = client_group(e.client, self.ipv6_prefix);
        let first_success = e.succeeded() && !self.known_valid.contains(&e.key.id);
        if first_success {
            self.observe_got_in(e, group);
            if self.known_valid.len() < MAX_TRACKED {
                self.known_valid.insert(e.key.id);
            }
        }
        if let Some(inferred) = self.inferred
            && !e.key.revoked
        {
            self.observe_inferred(e, inferred);
        }
        if let Some(cfg) = self.repeated.clone() {
            self.observe_repeated(e, &cfg);
        }
        if !e.rejected() {
            return;
        }
        if let Some(cfg) = self.burst.clone() {
            self.observe_burst(e, group, &cfg);
        }
        if let Some(cfg) = self.brute.clone()
            && !self.known_valid.contains(&e.key.id)
            && !e.key.revoked
        {
            // A client already found guessing is its own finding: the
            // site-wide count is of guessing no single client explains.
            if !self.brute_open.contains_key(&group) {
                self.observe_site(e, group, &cfg);
            }
            self.observe_brute(e, group, &cfg);
        }
    }

    /// Ends every episode whose quiet time has passed by `now_ms` (log time),
    /// and lets the behaviour rules judge the windows that ended by then.
    pub fn advance(&mut self, now_ms: i64) {
        if let Some(b) = &mut self.behaviour {
            b.advance(now_ms);
        }
        self.sweep(now_ms);
    }

    /// The end of the input: the windows still open are judged as they
    /// stand, and episodes quiet long enough end.
    pub fn finish(&mut self) {
        if let Some(b) = &mut self.behaviour {
            b.finish();
        }
        if self.now_ms > i64::MIN {
            self.sweep(self.now_ms);
        }
    }

    fn sweep(&mut self, now_ms: i64) {
        let q = self.quiet;
        let over = |w: Which, o: &Open| now_ms - o.last_ms > q.of(w, o);
        let mut done: Vec<(Which, Subject, Open)> = Vec::new();
        done.extend(
            self.brute_open
                .extract_if(|_, o| over(Which::Brute, o))
                .map(|(c, o)| (Which::Brute, Subject::Client(c), o)),
        );
        done.extend(
            self.burst_open
                .extract_if(|_, o| over(Which::Burst, o))
                .map(|(c, o)| (Which::Burst, Subject::Client(c), o)),
        );
        done.extend(
            self.repeated_open
                .extract_if(|_, o| over(Which::Repeated, o))
                .map(|(k, o)| (Which::Repeated, Subject::Key(k), o)),
        );
        done.extend(
            self.inferred_open
                .extract_if(|_, o| over(Which::Inferred, o))
                .map(|(k, o)| (Which::Inferred, Subject::Key(k), o)),
        );
        done.extend(
            self.got_in
                .extract_if(|_, o| over(Which::GotIn, o))
                .map(|((c, k), o)| (Which::GotIn, Subject::ClientKey(c, k), o)),
        );
        if self
            .site_open
            .as_ref()
            .is_some_and(|o| over(Which::Site, o))
        {
            done.extend(
                self.site_open
                    .take()
                    .map(|o| (Which::Site, Subject::Site, o)),
            );
        }
        for (which, subject, o) in done {
            self.end_quiet(which, subject, o);
        }
    }

    /// Ends an episode that went quiet: it ended its quiet time after its
    /// last event.
    fn end_quiet(&mut self, which: Which, subject: Subject, open: Open) {
        let resolved_ms = open.last_ms + self.quiet.of(which, &open);
        self.end(Ended {
            which,
            subject,
            open,
            resolved_ms,
        });
    }

    fn end(&mut self, mut d: Ended) {
        d.open = d.open.compact();
        self.ended.push_back(d);
        while self.ended.len() > MAX_ENDED {
            self.ended.pop_front();
        }
    }

    /// Ends the episode of `which` in `map` at `key` if its quiet time
    /// passed before `now` (so what comes next opens a new one).
    fn close_stale<K: std::hash::Hash + Eq + Copy>(
        &mut self,
        which: Which,
        key: K,
        subject: Subject,
        now: i64,
        map: fn(&mut Self) -> &mut FastMap<K, Open>,
    ) {
        let q = self.quiet;
        if map(self)
            .get(&key)
            .is_some_and(|o| now - o.last_ms > q.of(which, o))
            && let Some(o) = map(self).remove(&key)
        {
            self.end_quiet(which, subject, o);
        }
    }

    fn observe_burst(&mut self, e: &Event, group: u128, cfg: &BucketConfig) {
        let leak = f64::from(cfg.leak_seconds.max(1)) * 1000.0;
        if !self.burst_state.contains_key(&group) && self.burst_state.len() >= MAX_TRACKED {
            prune(
                &mut self.burst_state,
                e.time_ms,
                |b| b.last_ms,
                leak * f64::from(cfg.capacity),
            );
        }
        if self.burst_state.len() >= MAX_TRACKED && !self.burst_state.contains_key(&group) {
            self.untracked += 1;
            return;
        }
        self.close_stale(
            Which::Burst,
            group,
            Subject::Client(group),
            e.time_ms,
            |s| &mut s.burst_open,
        );
        let b = self.burst_state.entry(group).or_insert(Bucket {
            level: 0.0,
            last_ms: e.time_ms,
        });
        let over = b.pour(e.time_ms, cfg.capacity, leak);
        if over || self.burst_open.contains_key(&group) {
            self.burst_open
                .entry(group)
                .or_insert_with(|| Open::new(e))
                .add(e);
        }
    }

    fn observe_brute(&mut self, e: &Event, group: u128, cfg: &BruteConfig) {
        let leak = f64::from(cfg.leak_seconds.max(1)) * 1000.0;
        let slow_ms = i64::from(cfg.slow_window_hours.max(1)) * HOUR;
        let span = ((leak * f64::from(cfg.capacity + 1)) as i64).max(slow_ms);
        if !self.brute_state.contains_key(&group) && self.brute_state.len() >= MAX_TRACKED {
            let before = self.brute_state.len();
            self.brute_state
                .retain(|_, c| c.recent.back().is_some_and(|(t, _)| e.time_ms - t < span));
            if self.brute_state.len() == before {
                self.untracked += 1;
                return;
            }
        }
        self.close_stale(
            Which::Brute,
            group,
            Subject::Client(group),
            e.time_ms,
            |s| &mut s.brute_open,
        );
        let c = self.brute_state.entry(group).or_default();
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
        let b = c.bucket.get_or_insert(Bucket {
            level: 0.0,
            last_ms: e.time_ms,
        });
        let fast = b.pour(e.time_ms, cfg.capacity, leak);
        let in_window = c
            .recent
            .iter()
            .filter(|(t, _)| e.time_ms - t < slow_ms)
            .count();
        let slow = in_window >= cfg.slow_min_keys as usize;
        if !(fast || slow || self.brute_open.contains_key(&group)) {
            return;
        }
        match self.brute_open.get_mut(&group) {
            Some(o) => {
                o.add(e);
                o.slow |= slow && !fast;
            }
            None => {
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
                self.brute_open.insert(group, o);
            }
        }
    }

    /// Distinct unknown keys rejected across all clients in one window,
    /// against the site's median window over the last day.
    fn observe_site(&mut self, e: &Event, group: u128, cfg: &BruteConfig) {
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
            s.baseline = super::behaviour::median(&mut last);
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
            if let Some(o) = &mut self.site_open
                && o.last_ms >= w * win
            {
                // Still this window's episode: every key counts.
                o.add(e);
            }
            return;
        }
        let q = self.quiet;
        if self
            .site_open
            .as_ref()
            .is_some_and(|o| e.time_ms - o.last_ms > q.of(Which::Site, o))
            && let Some(o) = self.site_open.take()
        {
            self.end_quiet(Which::Site, Subject::Site, o);
        }
        let s = &self.site;
        let (baseline, clients) = (s.baseline, s.clients.clone());
        let o = self.site_open.get_or_insert_with(|| {
            let mut o = Open::new(e);
            o.first_ms = w * win;
            o.count = n - 1;
            for k in &s.keys {
                o.keys.insert(u128::from(u64::from_le_bytes(k.0)));
            }
            o
        });
        o.add(e);
        o.clients.merge(&clients);
        o.baseline = baseline;
        o.peak = o.peak.max(n);
    }

    /// A client that was guessing keys, whose new key was accepted: it got in.
    fn observe_got_in(&mut self, e: &Event, group: u128) {
        let Some(cfg) = &self.brute else { return };
        let guessing = self.brute_open.contains_key(&group)
            || self
                .brute_state
                .get(&group)
                .is_some_and(|c| c.recent.len() > cfg.capacity as usize);
        if !guessing || self.got_in.contains_key(&(group, e.key.id)) {
            return;
        }
        let mut o = Open::labelled(e);
        o.add(e);
        if let Some(b) = self.brute_open.get(&group) {
            o.keys = b.keys.clone();
            o.first_ms = e.time_ms;
        }
        self.got_in.insert((group, e.key.id), o);
    }

    /// A key that worked within the last 7 days and has since only been
    /// rejected: `after` rejections in a row, or 3 spanning an hour.
    fn observe_inferred(&mut self, e: &Event, (after, min, span): (u32, u32, i64)) {
        const WEEK: i64 = 7 * DAY;
        if matches!(e.status, 200..=299) {
            // Working again: the episode is over.
            if let Some(o) = self.inferred_open.remove(&e.key.id) {
                self.end(Ended {
                    which: Which::Inferred,
                    subject: Subject::Key(e.key.id),
                    resolved_ms: e.time_ms,
                    open: o,
                });
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
        self.close_stale(
            Which::Inferred,
            e.key.id,
            Subject::Key(e.key.id),
            e.time_ms,
            |s| &mut s.inferred_open,
        );
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
        if firing || self.inferred_open.contains_key(&e.key.id) {
            let (since, n) = (*ok_ms, *rejections);
            // After an episode of the same key ended (no success since), the
            // next one begins with its own rejections.
            let after = self
                .ended
                .iter()
                .filter(|d| d.which == Which::Inferred)
                .filter(|d| matches!(d.subject, Subject::Key(k) if k == e.key.id))
                .map(|d| d.resolved_ms)
                .max()
                .filter(|end| *end > since);
            let o = self.inferred_open.entry(e.key.id).or_insert_with(|| {
                let mut o = Open::labelled(e);
                match after {
                    Some(_) => o.first_ms = e.time_ms,
                    None => {
                        o.first_ms = since;
                        o.count = u64::from(n) - 1;
                    }
                }
                o
            });
            o.add(e);
        }
    }

    fn observe_repeated(&mut self, e: &Event, cfg: &RepeatedConfig) {
        if e.key.revoked {
            return; // revoked_key_in_use covers it
        }
        let minute = e.time_ms.div_euclid(60_000);
        let tracked = self.repeated_state.contains_key(&e.key.id);
        if !tracked && !e.rejected() {
            return; // only keys with a rejection are followed
        }
        self.close_stale(
            Which::Repeated,
            e.key.id,
            Subject::Key(e.key.id),
            e.time_ms,
            |s| &mut s.repeated_open,
        );
        // All day, at any pace: a key that never worked.
        let mut all_day = false;
        if e.rejected() && !self.known_valid.contains(&e.key.id) {
            if !self.rejected_day.contains_key(&e.key.id) && self.rejected_day.len() >= MAX_TRACKED
            {
                // A flood of keys tried once each: forget those first.
                self.rejected_day.retain(|_, (n, _)| *n > 1);
            }
            if self.rejected_day.len() < MAX_TRACKED || self.rejected_day.contains_key(&e.key.id) {
                let (n, since) = self.rejected_day.entry(e.key.id).or_insert((0, e.time_ms));
                if e.time_ms - *since > DAY {
                    *n = 0;
                    *since = e.time_ms;
                }
                *n += 1;
                all_day = *n >= cfg.day_min_rejections;
            }
        }
        if !tracked && self.repeated_state.len() >= MAX_TRACKED {
            let w = i64::from(cfg.window_minutes);
            self.repeated_state
                .retain(|_, m| m.back().is_some_and(|(t, _, _)| minute - t < w));
            if self.repeated_state.len() >= MAX_TRACKED {
                self.untracked += 1;
                return;
            }
        }
        let w = i64::from(cfg.window_minutes.max(1));
        let mins = self.repeated_state.entry(e.key.id).or_default();
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
        if firing || all_day || self.repeated_open.contains_key(&e.key.id) {
            let since = self.rejected_day.get(&e.key.id).map(|(_, s)| *s);
            let o = self.repeated_open.entry(e.key.id).or_insert_with(|| {
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

    pub fn findings(&self, names: &[String]) -> Vec<Finding> {
        let mut out = self
            .behaviour
            .as_ref()
            .map(|b| b.findings(names))
            .unwrap_or_default();
        let open = self
            .brute_open
            .iter()
            .map(|(c, o)| (Which::Brute, Subject::Client(*c), o, None))
            .chain(
                self.burst_open
                    .iter()
                    .map(|(c, o)| (Which::Burst, Subject::Client(*c), o, None)),
            )
            .chain(
                self.inferred_open
                    .iter()
                    .map(|(k, o)| (Which::Inferred, Subject::Key(*k), o, None)),
            )
            .chain(
                self.repeated_open
                    .iter()
                    .map(|(k, o)| (Which::Repeated, Subject::Key(*k), o, None)),
            )
            .chain(
                self.site_open
                    .iter()
                    .map(|o| (Which::Site, Subject::Site, o, None)),
            )
            .chain(
                self.got_in
                    .iter()
                    .map(|((c, k), o)| (Which::GotIn, Subject::ClientKey(*c, *k), o, None)),
            );
        let all: Vec<(Which, Subject, &Open, Option<i64>)> = open
            .chain(
                self.ended
                    .iter()
                    .map(|d| (d.which, d.subject, &d.open, Some(d.resolved_ms))),
            )
            .collect();
        // A burst by a client that was guessing keys at the time, or a key
        // rejected again and again that looks revoked: the stronger finding
        // says more.
        let covered = |stronger: Which, subject: &Subject, o: &Open| {
            all.iter().any(|(w, s, other, _)| {
                *w == stronger
                    && s == subject
                    && other.first_ms <= o.last_ms
                    && o.first_ms <= other.last_ms
            })
        };
        for (which, subject, o, resolved) in &all {
            let hidden = match which {
                Which::Burst => covered(Which::Brute, subject, o),
                Which::Repeated => covered(Which::Inferred, subject, o),
                _ => false,
            };
            if !hidden {
                out.extend(self.render(*which, *subject, o, *resolved, names));
            }
        }
        out
    }

    fn render(
        &self,
        which: Which,
        subject: Subject,
        o: &Open,
        resolved_ms: Option<i64>,
        names: &[String],
    ) -> Option<Finding> {
        let p = self.ipv6_prefix;
        let base =
            |rule: &'static str, severity: Severity, message: String, action: &'static str| {
                Finding {
                    resolved_ms,
                    rule,
                    severity,
                    key: None,
                    client: None,
                    clients: o.nclients(),
                    place: None,
                    first_ms: o.first_ms,
                    last_ms: o.last_ms,
                    count: o.count,
                    message,
                    evidence: None,
                    action,
                }
            };
        Some(match (which, subject) {
            (Which::Brute, Subject::Client(c)) => {
                let ip = group_text(c, p);
                let n = o.nkeys();
                let pace = if o.slow {
                    "over hours, a few at a time"
                } else {
                    "faster than any client uses keys"
                };
                let mut f = base(
                    super::RuleId::KeyBruteforce.as_str(),
                    Severity::High,
                    format!(
                        "client {ip} presented {n} different keys that were rejected, {pace}: someone is guessing API keys"
                    ),
                    "block the client (firewall, rate limit on 401s); check that none of its keys was ever accepted",
                );
                f.client = Some(ip);
                f.clients = 1;
                f.count = n;
                f
            }
            (Which::Burst, Subject::Client(c)) => {
                let ip = group_text(c, p);
                let mut f = base(
                    super::RuleId::AuthFailureBurst.as_str(),
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
                f
            }
            (Which::Site, Subject::Site) => {
                let n = o.nkeys();
                let mut f = base(
                    super::RuleId::KeyBruteforce.as_str(),
                    Severity::High,
                    format!(
                        "{n} different unknown keys were rejected from {} clients, up to {} in {} minutes against a usual {:.0}: someone is guessing API keys from many addresses",
                        o.nclients(),
                        o.peak,
                        self.brute.as_ref().map_or(10, |b| b.site_window_minutes),
                        o.baseline
                    ),
                    "rate-limit 401s site-wide and look for the keys' common pattern; check which clients then got a 2xx",
                );
                f.client = Some(client_text(o.first_client));
                f.count = n;
                f
            }
            (Which::GotIn, Subject::ClientKey(c, id)) => {
                let label = o.label?;
                let who = key_phrase(&label, names);
                let ip = group_text(c, p);
                let mut f = base(
                    super::RuleId::KeyBruteforce.as_str(),
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
                f
            }
            (Which::Inferred, Subject::Key(id)) => {
                let label = o.label?;
                let who = key_phrase(&label, names);
                let mut f = base(
                    super::RuleId::RevokedKeyInUse.as_str(),
                    Severity::Medium,
                    format!(
                        "API key {who} worked until the first time shown and has since been rejected {} times with no success: it looks revoked, yet something still sends it",
                        o.count
                    ),
                    "if the key was revoked, find the client still sending it and give it a new key; if not, find out why the API rejects it",
                );
                f.key = Some((id, label));
                f.client = Some(client_text(o.first_client));
                f
            }
            (Which::Repeated, Subject::Key(id)) => {
                let label = o.label?;
                let who = key_phrase(&label, names);
                let mut f = base(
                    super::RuleId::RejectedKeyRepeated.as_str(),
                    Severity::Medium,
                    format!(
                        "API key {who} was rejected {} times, most of its requests: a client still uses a revoked, expired or mistyped key",
                        o.count
                    ),
                    "find the client still sending the key (see the clients) and give it a valid key; revoke the key if it leaked",
                );
                f.key = Some((id, label));
                f.client = Some(client_text(o.first_client));
                f
            }
            _ => return None,
        })
    }
}

fn prune<K, V>(map: &mut FastMap<K, V>, now: i64, last: impl Fn(&V) -> i64, horizon_ms: f64) {
    map.retain(|_, v| ((now - last(v)) as f64) < horizon_ms);
}
