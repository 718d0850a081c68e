//! The driver of the rules whose verdict depends on the order of requests
//! in time (leaky buckets, sliding windows, baselines). They see compact
//! [`Event`]s in log order: live as lines are read, or replayed piece by
//! piece when a scan parses a file on several threads. Each rule is one
//! file in [`super::rules`] behind [`OrderedRule`]; this module gives them
//! what they share ([`Context`]: which keys ever worked, a dense slot per
//! accepted key) and turns log time into their clock.
//!
//! Every rule reports **episodes**: a finding opens when its condition
//! first holds, grows while it holds, and ends (resolved) once nothing has
//! kept it going for the rule's quiet time; the next time the condition
//! holds is a new finding. An episode's end is decided from log time
//! alone, so a scan and a live `watch` of the same log agree however often
//! the clock is looked at.
//!
//! Keyless requests never reach these rules, and a key that worked is no
//! guess, so keyless 401s and a working key's occasional 401 stay quiet.

use super::Finding;
use super::rules::{OrderedRules, RulesConfig};
use crate::hash::{FastMap, FastSet};
use crate::keys::{KeyId, KeyRef};
use crate::usage::KeyLabel;

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

    pub fn succeeded(&self) -> bool {
        matches!(self.status, 200..=399)
    }

    /// How the key is named in findings.
    pub fn label(&self) -> KeyLabel {
        KeyLabel {
            masked: self.key.masked,
            name: self.key.name,
        }
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

/// What an episode is about: a stronger rule's episode hides a weaker
/// one's about the same subject at the same time (see
/// [`super::RuleId::inhibited_by`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Subject {
    Client(u128),
    Key(KeyId),
    Site,
    ClientKey(u128, KeyId),
}

/// What the driver knows of one event before the rules see it.
#[derive(Clone, Copy, Debug)]
pub struct At {
    /// The client as the rules count it (see [`client_group`]).
    pub group: u128,
    /// The key's first success ever.
    pub first_success: bool,
    /// The key succeeded at least once (this event included): its
    /// rejections are no guessing.
    pub valid: bool,
    /// The key's slot, for accepted requests of a followed key.
    pub slot: Option<u32>,
}

/// How far log time has come, for [`OrderedRule::advance`].
#[derive(Clone, Copy, Debug)]
pub enum Now {
    /// Now and then while events arrive: episodes quiet long enough end.
    Sweep(i64),
    /// The clock says this time: every window that ended by then is judged.
    Clock(i64),
    /// The end of the input (the last event's time): the windows still open
    /// are judged as they stand.
    End(i64),
}

impl Now {
    pub fn ms(self) -> i64 {
        match self {
            Now::Sweep(t) | Now::Clock(t) | Now::End(t) => t,
        }
    }
}

/// An accepted key the behaviour rules follow.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Slot {
    pub id: KeyId,
    /// As last seen.
    pub label: KeyLabel,
    /// The last client.
    pub client: u128,
    /// Used from so many networks that it is public by nature (set by
    /// `key_new_network`): no per-network or sharing findings.
    pub public: bool,
    /// Succeeded at least once (as [`At::valid`]).
    pub valid: bool,
}

/// Keys whose behaviour is followed; past this, new keys are not (counted).
pub const MAX_SLOTS: usize = 20_000;
/// Keys remembered as having worked.
const MAX_VALID: usize = 100_000;

/// What the rules share.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Context {
    /// Keys that succeeded at least once: their rejections are no guessing.
    known_valid: FastSet<KeyId>,
    /// A dense slot per accepted key, so each behaviour rule keeps its
    /// per-key state in an array (one lookup a line for all of them).
    slot_of: FastMap<KeyId, u32>,
    pub slots: Vec<Slot>,
    /// Accepted requests of keys past [`MAX_SLOTS`].
    pub untracked: u64,
}

impl Context {
    fn at(&mut self, e: &Event, prefix: u8) -> At {
        let slot = if e.rejected() {
            None
        } else if let Some(&s) = self.slot_of.get(&e.key.id) {
            let st = &mut self.slots[s as usize];
            st.label = e.label();
            st.client = e.client;
            Some(s)
        } else if self.slots.len() < MAX_SLOTS {
            let s = self.slots.len() as u32;
            self.slot_of.insert(e.key.id, s);
            self.slots.push(Slot {
                id: e.key.id,
                label: e.label(),
                client: e.client,
                public: false,
                valid: false,
            });
            Some(s)
        } else {
            self.untracked += 1;
            None
        };
        // A followed key that worked needs no look in the set.
        let known = match slot {
            Some(s) if self.slots[s as usize].valid => true,
            _ => self.known_valid.contains(&e.key.id),
        };
        let first_success = e.succeeded() && !known;
        let mut valid = known;
        if first_success && self.known_valid.len() < MAX_VALID {
            self.known_valid.insert(e.key.id);
            valid = true;
        }
        if let Some(s) = slot {
            self.slots[s as usize].valid = valid;
        }
        At {
            group: client_group(e.client, prefix),
            first_success,
            valid,
            slot,
        }
    }

    fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
        for s in &mut self.slots {
            s.label.name = name(s.label.name);
        }
    }
}

/// A rule that sees events in log order (one file of [`super::rules`]).
pub trait OrderedRule: Default + serde::Serialize + serde::de::DeserializeOwned + Send {
    /// Whether the rule has an ordered part (`()` has none).
    const RUNS: bool = true;
    /// Takes the settings, at the start and at every reload, keeping what
    /// was learned.
    fn configure(&mut self, rules: &RulesConfig);
    fn observe(&mut self, e: &Event, at: &At, cx: &mut Context);
    /// Log time has come this far.
    fn advance(&mut self, now: Now, cx: &Context);
    /// Every episode, open or ended, with what it is about.
    fn findings(&self, names: &[String], out: &mut Vec<(Subject, Finding)>);
    /// Maps every saved key-name index to today's (after a reload).
    fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>);
}

/// The rule that has no ordered part.
impl OrderedRule for () {
    const RUNS: bool = false;
    fn configure(&mut self, _: &RulesConfig) {}
    fn observe(&mut self, _: &Event, _: &At, _: &mut Context) {}
    fn advance(&mut self, _: Now, _: &Context) {}
    fn findings(&self, _: &[String], _: &mut Vec<(Subject, Finding)>) {}
    fn relabel(&mut self, _: &dyn Fn(Option<u32>) -> Option<u32>) {}
}

/// The layout of [`OrderedDetectors::save`]; another is not read back.
const LEARNED_VERSION: u32 = 3;
/// How often (log time) ended episodes are looked for.
const SWEEP_MS: i64 = 60_000;

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct OrderedDetectors {
    rules: OrderedRules,
    cx: Context,
    #[serde(skip)]
    ipv6_prefix: u8,
    /// The latest log time seen, and when ended episodes are looked for next.
    now_ms: i64,
    next_sweep_ms: i64,
}

impl OrderedDetectors {
    pub fn new(rules: &RulesConfig) -> Option<Self> {
        let d = OrderedDetectors {
            now_ms: i64::MIN,
            next_sweep_ms: i64::MIN,
            ..OrderedDetectors::default()
        };
        d.reconfigure(rules)
    }

    /// Takes new settings and keeps what was learned (a reload): a rule
    /// still on keeps its state with the new numbers, a rule switched off
    /// forgets, one switched on starts empty. `None` when no rule runs.
    pub fn reconfigure(mut self, rules: &RulesConfig) -> Option<Self> {
        self.ipv6_prefix = rules.ipv6_client_prefix;
        self.rules.configure(rules).then_some(self)
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
        rules: &RulesConfig,
        name: &dyn Fn(Option<u32>) -> Option<u32>,
    ) -> Option<Self> {
        let (version, mut d): (u32, OrderedDetectors) = postcard::from_bytes(bytes).ok()?;
        if version != LEARNED_VERSION {
            return None;
        }
        d.rules.relabel(name);
        d.cx.relabel(name);
        d.reconfigure(rules)
    }

    pub fn observe(&mut self, e: &Event) {
        if e.time_ms > self.now_ms {
            self.now_ms = e.time_ms;
        }
        if self.now_ms >= self.next_sweep_ms {
            self.next_sweep_ms = self.now_ms.saturating_add(SWEEP_MS);
            self.rules.advance(Now::Sweep(self.now_ms), &self.cx);
        }
        let at = self.cx.at(e, self.ipv6_prefix);
        self.rules.observe(e, &at, &mut self.cx);
    }

    /// Ends every episode whose quiet time has passed by `now_ms` (log time),
    /// and judges the windows that ended by then.
    pub fn advance(&mut self, now_ms: i64) {
        self.rules.advance(Now::Clock(now_ms), &self.cx);
    }

    /// The end of the input: the windows still open are judged as they
    /// stand, and episodes quiet long enough end.
    pub fn finish(&mut self) {
        if self.now_ms > i64::MIN {
            self.rules.advance(Now::End(self.now_ms), &self.cx);
        }
    }

    /// Every episode, but those a stronger rule's episode about the same
    /// subject at the same time says more about (a burst by a client that
    /// was guessing keys, a key rejected again and again that looks revoked).
    pub fn findings(&self, names: &[String]) -> Vec<Finding> {
        let mut all = Vec::new();
        self.rules.findings(names, &mut all);
        // The episodes of every rule that hides another, by subject.
        let mut stronger: FastMap<(&str, Subject), Vec<(i64, i64)>> = FastMap::default();
        for (s, f) in &all {
            if super::RuleId::ALL
                .iter()
                .any(|r| r.inhibited_by().is_some_and(|by| by.as_str() == f.rule))
            {
                stronger
                    .entry((f.rule, *s))
                    .or_default()
                    .push((f.first_ms, f.last_ms));
            }
        }
        let hidden = |s: &Subject, f: &Finding| {
            super::RuleId::parse(f.rule)
                .and_then(super::RuleId::inhibited_by)
                .and_then(|by| stronger.get(&(by.as_str(), *s)))
                .is_some_and(|spans| {
                    spans
                        .iter()
                        .any(|(first, last)| *first <= f.last_ms && f.first_ms <= *last)
                })
        };
        let keep: Vec<bool> = all.iter().map(|(s, f)| !hidden(s, f)).collect();
        all.into_iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|((_, f), _)| f)
            .collect()
    }
}
