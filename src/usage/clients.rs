//! A key's clients in one day: each client's requests while there are at
//! most [`EXACT_LIMIT`] of them (for the top clients), then only a
//! [`Distinct`] estimate of how many.
//!
//! The detectors count distinct clients with [`Distinct`] alone; only usage
//! pays for the per-client counts.

use super::distinct::{Distinct, EXACT_LIMIT, is_ipv4};
use crate::hash::FastMap;

/// A client tag split in two halves: map entries of 24 bytes rather than
/// the 32 a 16-byte-aligned `u128` key takes.
type Tag = [u64; 2];

fn split(tag: u128) -> Tag {
    [(tag >> 64) as u64, tag as u64]
}

fn join(t: Tag) -> u128 {
    u128::from(t[0]) << 64 | u128::from(t[1])
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clients {
    /// One client and its requests: most keys of a flood have one, and a
    /// map of one costs an allocation of 128 bytes.
    One(Tag, u32),
    /// Each client and its requests, all IPv4: entries of 8 bytes rather
    /// than 24, so a busy key's clients take a third of the cache.
    V4(FastMap<u32, u32>),
    /// Each client and its requests.
    Exact(FastMap<Tag, u32>),
    /// Too many to count one by one.
    Estimated(Distinct),
}

impl Default for Clients {
    fn default() -> Self {
        Clients::Exact(FastMap::default())
    }
}

impl Clients {
    pub fn insert(&mut self, tag: u128) {
        self.insert_n(tag, 1);
    }

    fn insert_n(&mut self, tag: u128, n: u32) {
        match self {
            Clients::Exact(map) if map.is_empty() => *self = Clients::One(split(tag), n),
            Clients::One(t, c) if *t == split(tag) => *c = c.saturating_add(n),
            Clients::One(t, c) => {
                let (first, count) = (join(*t), *c);
                *self = if is_ipv4(first) && is_ipv4(tag) {
                    Clients::V4(FastMap::from_iter([(first as u32, count), (tag as u32, n)]))
                } else {
                    Clients::Exact(FastMap::from_iter([(*t, count), (split(tag), n)]))
                };
            }
            Clients::V4(map) if is_ipv4(tag) => {
                let c = map.entry(tag as u32).or_default();
                *c = c.saturating_add(n);
                if map.len() > EXACT_LIMIT {
                    self.estimate();
                }
            }
            Clients::V4(map) => {
                let mut all: FastMap<Tag, u32> = map
                    .iter()
                    .map(|(t, c)| (split(u128::from(*t)), *c))
                    .collect();
                all.insert(split(tag), n);
                *self = Clients::Exact(all);
            }
            Clients::Exact(map) => {
                let c = map.entry(split(tag)).or_default();
                *c = c.saturating_add(n);
                if map.len() > EXACT_LIMIT {
                    self.estimate();
                }
            }
            Clients::Estimated(d) => d.insert(tag),
        }
    }

    pub fn merge(&mut self, other: &Clients) {
        match other {
            Clients::One(..) | Clients::V4(_) | Clients::Exact(_) => {
                other.tags().for_each(|(t, n)| self.insert_n(t, n))
            }
            Clients::Estimated(theirs) => {
                self.estimate();
                if let Clients::Estimated(mine) = self {
                    mine.merge(theirs);
                }
            }
        }
    }

    /// The `n` clients with most requests (ties by client), while counted
    /// one by one; `None` once there were too many.
    pub fn top(&self, n: usize) -> Option<Vec<(u128, u64)>> {
        if self.is_estimated() {
            return None;
        }
        Some(super::top::best(
            self.tags().map(|(t, c)| (t, u64::from(c))),
            n,
        ))
    }

    pub fn count(&self) -> u64 {
        match self {
            Clients::One(..) => 1,
            Clients::V4(map) => map.len() as u64,
            Clients::Exact(map) => map.len() as u64,
            Clients::Estimated(d) => d.count(),
        }
    }

    pub fn is_estimated(&self) -> bool {
        matches!(self, Clients::Estimated(_))
    }

    /// Counted one by one no more: an estimate of how many (once).
    fn estimate(&mut self) {
        if !self.is_estimated() {
            let mut d = Distinct::default();
            self.tags().for_each(|(t, _)| d.insert(t));
            *self = Clients::Estimated(d);
        }
    }

    /// Each client and its requests, while counted one by one.
    fn tags(&self) -> Box<dyn Iterator<Item = (u128, u32)> + '_> {
        match self {
            Clients::One(t, c) => Box::new(std::iter::once((join(*t), *c))),
            Clients::V4(map) => Box::new(map.iter().map(|(t, c)| (u128::from(*t), *c))),
            Clients::Exact(map) => Box::new(map.iter().map(|(t, c)| (join(*t), *c))),
            Clients::Estimated(_) => Box::new(std::iter::empty()),
        }
    }

    /// A byte form for the store: `2` and (16-byte tag, 4-byte count)
    /// pairs; otherwise [`Distinct::to_bytes`] (which older stores hold for
    /// exact sets too, read back with a count of one each).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Clients::One(..) | Clients::V4(_) | Clients::Exact(_) => {
                let mut tags: Vec<(u128, u32)> = self.tags().collect();
                tags.sort_unstable();
                std::iter::once(2u8)
                    .chain(
                        tags.iter()
                            .flat_map(|(t, c)| t.to_le_bytes().into_iter().chain(c.to_le_bytes())),
                    )
                    .collect()
            }
            Clients::Estimated(d) => d.to_bytes(),
        }
    }

    pub fn from_bytes(b: &[u8]) -> Option<Clients> {
        match b.split_first()? {
            (2, rest) if rest.len() % 20 == 0 => {
                let mut c = Clients::default();
                for chunk in rest.chunks_exact(20) {
                    let tag = u128::from_le_bytes(chunk[..16].try_into().ok()?);
                    c.insert_n(tag, u32::from_le_bytes(chunk[16..].try_into().ok()?));
                }
                Some(c)
            }
            (0, rest) if rest.len() % 16 == 0 => {
                // An exact set written before counts were kept: one each.
                let mut c = Clients::default();
                for chunk in rest.chunks_exact(16) {
                    c.insert(u128::from_le_bytes(chunk.try_into().ok()?));
                }
                Some(c)
            }
            _ => Some(Clients::Estimated(Distinct::from_bytes(b)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_round_trips_and_turns_into_an_estimate() {
        let mut c = Clients::default();
        for t in [5u128, 7, 5, 5, 9, 7] {
            c.insert(t);
        }
        assert_eq!(c.top(2), Some(vec![(5, 3), (7, 2)]));
        assert_eq!(Clients::from_bytes(&c.to_bytes()), Some(c.clone()));
        let mut other = Clients::default();
        (0..3u32).for_each(|_| other.insert(9));
        c.merge(&other);
        assert_eq!(c.top(1), Some(vec![(9, 4)]));
        for t in 0..(EXACT_LIMIT as u128 + 10) {
            c.insert(t + 100);
        }
        assert!(c.is_estimated() && c.top(1).is_none());
        // IPv4 clients first, then one that is not: nothing is lost.
        let mut mixed = Clients::default();
        for t in [1u128, 2, 1, 3] {
            mixed.insert(t);
        }
        assert!(matches!(mixed, Clients::V4(_)));
        mixed.insert(1 << 100);
        mixed.insert(2);
        assert_eq!(mixed.count(), 4);
        assert_eq!(mixed.top(2), Some(vec![(1, 2), (2, 2)]));
        assert_eq!(Clients::from_bytes(&mixed.to_bytes()), Some(mixed.clone()));
        let n = c.count() as f64;
        assert!((n - (EXACT_LIMIT + 13) as f64).abs() < 0.05 * n, "{n}");
    }
}
