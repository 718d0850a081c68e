//! Usage per key and per day: what the daily summary is made of.
//!
//! A key's day merges exactly (each commit of `watch` adds its counts to the
//! stored day; reports add up days) and stays bounded: distinct clients turn into a sketch
//! past a limit, latencies live in a log-bucket histogram.

pub mod clients;
pub mod distinct;
pub mod histogram;
pub mod top;

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::hash::FastMap;
use crate::keys::{KeyId, KeyRef, MaskedKey};
pub use clients::Clients;
pub use distinct::Distinct;
pub use histogram::Histogram;
pub use top::Top;

/// Distinct endpoints and clients counted exactly per key and day.
pub const TOP_CAP: usize = 256;

/// The shape of one key's day: when, how fast at the peak, where, who.
/// Everything here merges exactly (while the top lists stay within
/// [`TOP_CAP`]), so a day reads the same however its lines were split.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detail {
    /// Requests per 5-minute bucket of the day that had any: (bucket, count),
    /// sorted by bucket.
    pub buckets: Vec<(u16, u32)>,
    /// Endpoints of the requests not answered 401 or 403.
    pub endpoints: Top<Box<str>, TOP_CAP>,
}

impl Detail {
    fn record(&mut self, hit: &Hit<'_>) {
        match self.buckets.last_mut() {
            Some((b, n)) if *b == hit.bucket => *n += 1,
            Some((b, _)) if *b < hit.bucket => self.buckets.push((hit.bucket, 1)),
            None => self.buckets.push((hit.bucket, 1)),
            _ => match self.buckets.binary_search_by_key(&hit.bucket, |e| e.0) {
                Ok(i) => self.buckets[i].1 += 1,
                Err(i) => self.buckets.insert(i, (hit.bucket, 1)),
            },
        }
        // Where a key's requests went, of those the API did not refuse: a
        // flood of guessed keys (all 401/403) costs no endpoint lists.
        if !hit.endpoint.is_empty() && !matches!(hit.status, Some(401 | 403)) {
            self.endpoints.add_str(hit.endpoint);
        }
    }

    /// Requests per hour of the day (in the zone days are cut in), from
    /// the 5-minute buckets; a 25-hour day's last hour counts as the 24th.
    pub fn hours(&self) -> [u64; 24] {
        let mut h = [0u64; 24];
        for &(b, n) in &self.buckets {
            h[usize::from(b / 12).min(23)] += u64::from(n);
        }
        h
    }

    /// The most requests in one 5-minute bucket.
    pub fn peak_5m(&self) -> u64 {
        self.buckets
            .iter()
            .map(|b| u64::from(b.1))
            .max()
            .unwrap_or(0)
    }

    /// 5-minute buckets with at least one request.
    pub fn active_5m(&self) -> u64 {
        self.buckets.len() as u64
    }

    /// Merges another part of the same day.
    pub fn merge(&mut self, o: &Detail) {
        let mut merged = Vec::with_capacity(self.buckets.len() + o.buckets.len());
        let (mut i, mut j) = (0, 0);
        while i < self.buckets.len() || j < o.buckets.len() {
            match (self.buckets.get(i), o.buckets.get(j)) {
                (Some(a), Some(b)) if a.0 == b.0 => {
                    merged.push((a.0, a.1.saturating_add(b.1)));
                    i += 1;
                    j += 1;
                }
                (Some(a), Some(b)) if a.0 < b.0 => {
                    merged.push(*a);
                    i += 1;
                }
                (Some(a), None) => {
                    merged.push(*a);
                    i += 1;
                }
                (_, Some(b)) => {
                    merged.push(*b);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        self.buckets = merged;
        self.endpoints.merge(&o.endpoints);
    }
}

/// Counts of one key (or of keyless requests) over one day.
#[derive(Clone, Debug, Default)]
pub struct KeyUsage {
    pub requests: u64,
    /// Responses by class: index 0 = 1xx … 4 = 5xx, 5 = anything else (000, 009…).
    pub classes: [u64; 6],
    pub s401: u64,
    pub s403: u64,
    pub s429: u64,
    pub bytes: u64,
    pub latency: Histogram,
    pub clients: Clients,
    pub first_ms: i64,
    pub last_ms: i64,
    /// Boxed, made on the first request: most of a key's bytes, kept out
    /// of the per-key table so a flood of keys costs little.
    pub detail: Option<Box<Detail>>,
}

static NO_DETAIL: std::sync::LazyLock<Detail> = std::sync::LazyLock::new(Detail::default);

impl KeyUsage {
    /// The day's shape (empty before the first request).
    pub fn detail(&self) -> &Detail {
        self.detail.as_deref().unwrap_or(&NO_DETAIL)
    }

    fn record(&mut self, hit: &Hit<'_>) {
        let Hit {
            time_ms,
            status,
            bytes,
            latency_ms,
            client,
            ..
        } = *hit;
        self.detail.get_or_insert_default().record(hit);
        if self.requests == 0 || time_ms < self.first_ms {
            self.first_ms = time_ms;
        }
        if self.requests == 0 || time_ms > self.last_ms {
            self.last_ms = time_ms;
        }
        self.requests += 1;
        let class = match status {
            Some(s @ 100..=599) => usize::from(s / 100 - 1),
            _ => 5,
        };
        self.classes[class] += 1;
        match status {
            Some(401) => self.s401 += 1,
            Some(403) => self.s403 += 1,
            Some(429) => self.s429 += 1,
            _ => {}
        }
        self.bytes += bytes;
        if let Some(ms) = latency_ms {
            self.latency.record(ms);
        }
        self.clients.insert(client);
    }

    /// Requests answered 401 or 403.
    pub fn rejected(&self) -> u64 {
        self.s401 + self.s403
    }

    pub fn merge(&mut self, o: &KeyUsage) {
        if o.requests == 0 {
            return;
        }
        if self.requests == 0 || o.first_ms < self.first_ms {
            self.first_ms = o.first_ms;
        }
        if self.requests == 0 || o.last_ms > self.last_ms {
            self.last_ms = o.last_ms;
        }
        self.requests += o.requests;
        for (a, b) in self.classes.iter_mut().zip(o.classes) {
            *a += b;
        }
        self.s401 += o.s401;
        self.s403 += o.s403;
        self.s429 += o.s429;
        self.bytes += o.bytes;
        self.latency.merge(&o.latency);
        self.clients.merge(&o.clients);
        if let Some(theirs) = &o.detail {
            self.detail.get_or_insert_default().merge(theirs);
        }
    }
}

/// One day: every key's usage and the requests that carried no key.
#[derive(Clone, Debug, Default)]
pub struct DayUsage {
    pub keys: FastMap<KeyId, KeyUsage>,
    pub keyless: KeyUsage,
    /// Keys past [`MAX_KEYS_PER_DAY`] (a flood of random keys), folded together.
    pub other: KeyUsage,
    /// How many distinct keys were folded into `other`.
    pub other_keys: Distinct,
}

/// Keys counted one by one per day; past this the lightest are folded into
/// one row, so a flood of random keys cannot grow memory without bound.
pub const MAX_KEYS_PER_DAY: usize = 50_000;

impl DayUsage {
    /// Makes room for new keys by folding the tenth of keys with the fewest
    /// requests into `other`: the heavy keys (real traffic, real offenders)
    /// stay one by one whatever floods in, and no request is lost.
    fn evict_lightest(&mut self) -> Vec<KeyId> {
        let mut counts: Vec<(u64, KeyId)> =
            self.keys.iter().map(|(id, u)| (u.requests, *id)).collect();
        let n = (counts.len() / 10).max(1);
        counts.select_nth_unstable(n - 1);
        for (_, id) in &counts[..n] {
            if let Some(u) = self.keys.remove(id) {
                self.other.merge(&u);
                self.other_keys.insert(key_tag(id));
            }
        }
        counts[..n].iter().map(|(_, id)| *id).collect()
    }
}

fn key_tag(id: &KeyId) -> u128 {
    u128::from(u64::from_le_bytes(id.0))
}

/// How a key is shown: its mask and configured name.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct KeyLabel {
    pub masked: MaskedKey,
    pub name: Option<u32>,
}

/// Usage of all days seen.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub days: BTreeMap<NaiveDate, DayUsage>,
    pub labels: FastMap<KeyId, KeyLabel>,
}

/// What usage needs from one request.
pub struct Hit<'a> {
    pub day: NaiveDate,
    /// The 5-minute bucket of the day, from 0.
    pub bucket: u16,
    /// The request's endpoint ([`top::endpoint`]), empty when unknown.
    pub endpoint: &'a str,
    pub time_ms: i64,
    pub key: Option<KeyRef>,
    pub status: Option<u16>,
    pub bytes: u64,
    pub latency_ms: Option<u32>,
    pub client: u128,
}

impl Usage {
    pub fn record(&mut self, hit: &Hit<'_>) {
        let day = self.days.entry(hit.day).or_default();
        let Some(k) = hit.key else {
            day.keyless.record(hit);
            return;
        };
        if let Some(u) = day.keys.get_mut(&k.id) {
            u.record(hit);
            return;
        }
        // A key new to the day.
        let evicted = if day.keys.len() >= MAX_KEYS_PER_DAY {
            day.evict_lightest()
        } else {
            Vec::new()
        };
        day.keys.entry(k.id).or_default().record(hit);
        self.labels.entry(k.id).or_insert(KeyLabel {
            masked: k.masked,
            name: k.name,
        });
        self.forget_labels(evicted);
    }

    /// Drops the labels of keys no day holds one by one any more.
    fn forget_labels(&mut self, ids: Vec<KeyId>) {
        for id in ids {
            if !self.days.values().any(|d| d.keys.contains_key(&id)) {
                self.labels.remove(&id);
            }
        }
    }

    /// Every key's usage over all days, largest first.
    pub fn by_key(&self) -> Vec<(KeyId, KeyUsage)> {
        let mut all: FastMap<KeyId, KeyUsage> = FastMap::default();
        for day in self.days.values() {
            for (id, u) in &day.keys {
                all.entry(*id).or_default().merge(u);
            }
        }
        let mut v: Vec<_> = all.into_iter().collect();
        v.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(&b.0)));
        v
    }

    /// Keyless usage over all days.
    pub fn keyless(&self) -> KeyUsage {
        let mut k = KeyUsage::default();
        self.days.values().for_each(|d| k.merge(&d.keyless));
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyRef, MaskedKey};

    fn key(i: u64) -> KeyRef {
        let id = KeyId(i.to_le_bytes());
        KeyRef {
            id,
            masked: MaskedKey::from_stored("k…"),
            name: None,
            revoked: false,
        }
    }

    #[test]
    fn a_flood_of_keys_keeps_the_heavy_ones_and_loses_no_request() {
        let mut u = Usage::default();
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap_or_default();
        let hit = |k: u64| Hit {
            day,
            bucket: 0,
            endpoint: "/v1",
            time_ms: 0,
            key: Some(key(k)),
            status: Some(401),
            bytes: 1,
            latency_ms: None,
            client: k as u128,
        };
        for _ in 0..1000 {
            u.record(&hit(1));
        }
        let flood = MAX_KEYS_PER_DAY as u64 * 2;
        for k in 2..flood {
            u.record(&hit(k));
            if k % 1000 == 0 {
                u.record(&hit(1)); // the real key keeps going
            }
        }
        let d = &u.days[&day];
        assert!(d.keys.len() <= MAX_KEYS_PER_DAY);
        assert!(d.keys.contains_key(&key(1).id), "the heavy key is kept");
        let kept: u64 = d.keys.values().map(|k| k.requests).sum();
        assert_eq!(
            kept + d.other.requests,
            1000 + flood - 2 + (flood - 2) / 1000
        );
        assert!(
            u.labels.len() <= MAX_KEYS_PER_DAY,
            "labels follow the kept keys"
        );
    }
}
