//! The episodes of the rejection rules: one [`Open`] record per episode as
//! it grows, kept by subject in [`Episodes`] until it has been quiet for the
//! rule's quiet time, then kept compact among the ended ones for reports.
//! Also the leaky [`Bucket`] several of them pour into.

use std::collections::VecDeque;
use std::hash::Hash;

use super::ordered::{Event, Subject, client_text};
use crate::hash::FastMap;
use crate::keys::KeyId;
use crate::usage::{Distinct, KeyLabel};

/// Ended episodes kept per rule for reports (the oldest go first); each is
/// kept compact (counts, not sets), about 200 bytes.
const MAX_ENDED: usize = 100_000;

/// A leaky bucket (CrowdSec's model): each event pours one in, one leaks out
/// every `leak_ms`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Bucket {
    pub level: f64,
    pub last_ms: i64,
}

impl Bucket {
    pub fn new(now: i64) -> Bucket {
        Bucket {
            level: 0.0,
            last_ms: now,
        }
    }

    /// Pours one event; returns whether the bucket overflowed.
    pub fn pour(&mut self, now: i64, capacity: u32, leak_ms: f64) -> bool {
        let drained = (now - self.last_ms).max(0) as f64 / leak_ms;
        self.level = (self.level - drained).max(0.0) + 1.0;
        self.last_ms = now;
        self.level > f64::from(capacity)
    }
}

/// The distinct keys and clients of an open episode.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Sets {
    pub keys: Distinct,
    pub clients: Distinct,
}

/// One episode as it grows.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Open {
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// The distinct keys and clients while the episode is open (boxed: an
    /// ended one keeps counts only, and a flood ends tens of thousands).
    sets: Option<Box<Sets>>,
    pub label: Option<KeyLabel>,
    pub first_client: u128,
    /// Held by a slow condition: it ends only after the long quiet time.
    pub slow: bool,
    /// The site's usual number (site-wide guessing).
    pub baseline: f64,
    pub peak: u64,
    /// The counts of `keys` and `clients` once the episode ended and its
    /// sets were let go.
    keys_n: u64,
    clients_n: u64,
}

impl Open {
    pub fn new(e: &Event) -> Open {
        Open {
            count: 0,
            first_ms: e.time_ms,
            last_ms: e.time_ms,
            sets: None,
            label: None,
            first_client: e.client,
            slow: false,
            baseline: 0.0,
            peak: 0,
            keys_n: 0,
            clients_n: 0,
        }
    }

    /// An episode about the event's key.
    pub fn labelled(e: &Event) -> Open {
        let mut o = Open::new(e);
        o.label = Some(e.label());
        o
    }

    pub fn nkeys(&self) -> u64 {
        self.sets
            .as_ref()
            .map_or(0, |s| s.keys.count())
            .max(self.keys_n)
    }

    pub fn nclients(&self) -> u64 {
        self.sets
            .as_ref()
            .map_or(0, |s| s.clients.count())
            .max(self.clients_n)
    }

    /// The episode's sets, made on first use.
    pub fn sets(&mut self) -> &mut Sets {
        self.sets.get_or_insert_default()
    }

    /// The distinct keys so far (empty once ended).
    pub fn keys(&self) -> Distinct {
        self.sets
            .as_ref()
            .map(|s| s.keys.clone())
            .unwrap_or_default()
    }

    /// Counts instead of sets: what an ended episode keeps.
    fn compact(mut self) -> Open {
        self.keys_n = self.nkeys();
        self.clients_n = self.nclients();
        self.sets = None;
        self
    }

    pub fn add(&mut self, e: &Event) {
        self.count += 1;
        self.last_ms = self.last_ms.max(e.time_ms);
        let sets = self.sets();
        sets.keys.insert(u128::from(u64::from_le_bytes(e.key.id.0)));
        sets.clients.insert(e.client);
    }

    /// A finding of `rule` from this episode, without key or client.
    pub fn finding(
        &self,
        rule: super::RuleId,
        resolved_ms: Option<i64>,
        severity: super::Severity,
        message: String,
        action: &'static str,
    ) -> super::Finding {
        super::Finding {
            resolved_ms,
            rule: rule.as_str(),
            severity,
            key: None,
            client: None,
            clients: self.nclients(),
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

/// One rule's episodes: the open ones by subject, and those that ended.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "S: serde::Serialize + Eq + Hash",
    deserialize = "S: serde::Deserialize<'de> + Eq + Hash"
))]
pub struct Episodes<S> {
    pub open: FastMap<S, Open>,
    /// Oldest first, with when each resolved.
    pub ended: VecDeque<(S, Open, i64)>,
}

impl<S> Default for Episodes<S> {
    fn default() -> Self {
        Episodes {
            open: FastMap::default(),
            ended: VecDeque::new(),
        }
    }
}

impl<S: Hash + Eq + Copy> Episodes<S> {
    /// Ends every episode that was quiet for longer than `quiet(episode)`
    /// by `now`: each ended its quiet time after its last event.
    pub fn sweep(&mut self, now: i64, quiet: impl Fn(&Open) -> i64) {
        let done: Vec<(S, Open)> = self
            .open
            .extract_if(|_, o| now - o.last_ms > quiet(o))
            .collect();
        for (s, o) in done {
            let at = o.last_ms + quiet(&o);
            self.end(s, o, at);
        }
    }

    /// Ends the episode about `s` if it went quiet before `now`, so what
    /// comes next opens a new one.
    pub fn close_stale(&mut self, s: S, now: i64, quiet: impl Fn(&Open) -> i64) {
        if self
            .open
            .get(&s)
            .is_some_and(|o| now - o.last_ms > quiet(o))
            && let Some(o) = self.open.remove(&s)
        {
            let at = o.last_ms + quiet(&o);
            self.end(s, o, at);
        }
    }

    pub fn end(&mut self, s: S, o: Open, resolved_ms: i64) {
        self.ended.push_back((s, o.compact(), resolved_ms));
        while self.ended.len() > MAX_ENDED {
            self.ended.pop_front();
        }
    }

    /// Every episode, open first, with when it resolved.
    pub fn all(&self) -> impl Iterator<Item = (S, &Open, Option<i64>)> {
        self.open
            .iter()
            .map(|(s, o)| (*s, o, None))
            .chain(self.ended.iter().map(|(s, o, at)| (*s, o, Some(*at))))
    }

    /// Renders every episode with `f` (`None` skips one) into `out`.
    pub fn render(
        &self,
        subject: impl Fn(S) -> Subject,
        f: impl Fn(S, &Open, Option<i64>) -> Option<super::Finding>,
        out: &mut Vec<(Subject, super::Finding)>,
    ) {
        out.extend(
            self.all()
                .filter_map(|(s, o, at)| f(s, o, at).map(|found| (subject(s), found))),
        );
    }

    pub fn relabel(&mut self, name: &dyn Fn(Option<u32>) -> Option<u32>) {
        let fix = |o: &mut Open| {
            if let Some(l) = &mut o.label {
                l.name = name(l.name);
            }
        };
        self.open.values_mut().for_each(fix);
        self.ended.iter_mut().for_each(|(_, o, _)| fix(o));
    }
}

impl Episodes<KeyId> {
    /// Renders every episode about a key: `message` says it of the key's
    /// name (see [`super::key_phrase`]); the client is the first one.
    pub fn render_keys(
        &self,
        (rule, severity, action): (super::RuleId, super::Severity, &'static str),
        names: &[String],
        message: impl Fn(&str, &Open) -> String,
        out: &mut Vec<(Subject, super::Finding)>,
    ) {
        self.render(
            Subject::Key,
            |id, o, resolved| {
                let label = o.label?;
                let who = super::key_phrase(&label, names);
                let mut f = o.finding(rule, resolved, severity, message(&who, o), action);
                f.key = Some((id, label));
                f.client = Some(client_text(o.first_client));
                Some(f)
            },
            out,
        );
    }
}
