//! The bookkeeping the per-key rules share: one growing record per key (and
//! place), capped in number, mergeable across the pieces of a scan.

use std::hash::Hash;

use crate::hash::FastMap;
use crate::request::KeyedRequest;
use crate::usage::{Distinct, KeyLabel};

/// How many records one rule keeps; past this, new ones are only counted.
pub const MAX_TRACKED: usize = 10_000;

/// What one finding has seen so far.
#[derive(Clone, Debug)]
pub struct Tally {
    pub label: KeyLabel,
    /// What was found, for rules that find different things (a secret's kind).
    pub what: String,
    pub count: u64,
    /// A second count some rules keep (requests the API accepted anyway).
    pub extra: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub first_client: Option<String>,
    pub clients: Distinct,
    /// The first offending URL, redacted.
    pub evidence: Option<String>,
}

impl Tally {
    pub fn new(
        label: KeyLabel,
        what: String,
        req: &KeyedRequest<'_>,
        evidence: Option<String>,
    ) -> Tally {
        let t = req.rec.time_ms;
        Tally {
            label,
            what,
            count: 0,
            extra: 0,
            first_ms: t,
            last_ms: t,
            first_client: req.rec.client.map(|c| req.shown(&c.decode())),
            clients: Distinct::default(),
            evidence,
        }
    }

    /// Counts one more request.
    pub fn add(&mut self, req: &KeyedRequest<'_>) {
        let t = req.rec.time_ms;
        self.count += 1;
        if t < self.first_ms {
            self.first_ms = t;
        }
        self.last_ms = self.last_ms.max(t);
        self.clients.insert(req.client);
    }

    fn absorb(&mut self, theirs: Tally) {
        self.count += theirs.count;
        self.extra += theirs.extra;
        if theirs.first_ms < self.first_ms {
            self.first_ms = theirs.first_ms;
            self.first_client = theirs.first_client;
            self.evidence = theirs.evidence;
        }
        self.last_ms = self.last_ms.max(theirs.last_ms);
        self.clients.merge(&theirs.clients);
    }
}

/// A rule's records by key (or key and place).
pub struct Tallies<K> {
    map: FastMap<K, Tally>,
    /// Requests that did not fit.
    pub untracked: u64,
}

impl<K> Default for Tallies<K> {
    fn default() -> Self {
        Tallies {
            map: FastMap::default(),
            untracked: 0,
        }
    }
}

impl<K: Hash + Eq + Copy> Tallies<K> {
    /// The record of `k`, made with `make` if new; `None` (counted) when full.
    pub fn get(&mut self, k: K, make: impl FnOnce() -> Tally) -> Option<&mut Tally> {
        if !self.map.contains_key(&k) && self.map.len() >= MAX_TRACKED {
            self.untracked += 1;
            return None;
        }
        Some(self.map.entry(k).or_insert_with(make))
    }

    /// Folds in the records of a later part of the input.
    pub fn merge(&mut self, other: Tallies<K>) {
        self.untracked += other.untracked;
        for (k, theirs) in other.map {
            let room = self.map.len() < MAX_TRACKED;
            match self.map.get_mut(&k) {
                Some(mine) => mine.absorb(theirs),
                None if room => {
                    self.map.insert(k, theirs);
                }
                None => self.untracked += theirs.count,
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &Tally)> {
        self.map.iter()
    }
}
