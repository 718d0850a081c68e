//! Usage per key and per day: what the daily summary is made of.
//!
//! Every structure here merges exactly (threads of a scan each aggregate a
//! chunk, then merge) and stays bounded: distinct clients turn into a sketch
//! past a limit, latencies live in a log-bucket histogram.

pub mod distinct;
pub mod histogram;
pub mod top;

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::hash::FastMap;
use crate::keys::{KeyId, KeyRef, MaskedKey};
pub use distinct::Distinct;
pub use histogram::Histogram;
pub use top::Top;

/// Endpoints and clients followed per key and day.
pub const TOP_CAP: usize = 16;

/// The shape of one key's day: when, how fast at the peak, where, who.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detail {
    /// Requests per hour of the day (in the zone days are cut in).
    pub hours: [u64; 24],
    /// The most requests in one 5-minute bucket.
    pub peak_5m: u64,
    /// 5-minute buckets with at least one request.
    pub buckets_5m: u64,
    cur_bucket: i64,
    cur_count: u64,
    pub endpoints: Top<Box<str>, TOP_CAP>,
    /// Client tags (see [`distinct::client_tag`]).
    pub clients: Top<u128, TOP_CAP>,
}

impl Detail {
    fn record(&mut self, time_ms: i64, hour: u8, endpoint: &str, client: u128) {
        self.hours[usize::from(hour.min(23))] += 1;
        let bucket = time_ms.div_euclid(300_000);
        if bucket == self.cur_bucket && self.cur_count > 0 {
            self.cur_count += 1;
        } else if bucket > self.cur_bucket || self.cur_count == 0 {
            self.cur_bucket = bucket;
            self.cur_count = 1;
            self.buckets_5m += 1;
        }
        self.peak_5m = self.peak_5m.max(self.cur_count);
        if !endpoint.is_empty() {
            self.endpoints
                .add_by(|e| **e == *endpoint, || endpoint.into(), 1);
        }
        self.clients.add_by(|c| *c == client, || client, 1);
    }

    /// Merges another part of the same day. The peak of a bucket split
    /// between the two parts is not summed, so it may be a little low.
    pub fn merge(&mut self, o: &Detail) {
        for (a, b) in self.hours.iter_mut().zip(o.hours) {
            *a += b;
        }
        self.peak_5m = self.peak_5m.max(o.peak_5m);
        self.buckets_5m += o.buckets_5m;
        self.endpoints.merge(&o.endpoints);
        self.clients.merge(&o.clients);
    }

    /// Restores a stored detail.
    pub fn from_parts(
        hours: [u64; 24],
        peak_5m: u64,
        buckets_5m: u64,
        endpoints: Top<Box<str>, TOP_CAP>,
        clients: Top<u128, TOP_CAP>,
    ) -> Detail {
        Detail {
            hours,
            peak_5m,
            buckets_5m,
            cur_bucket: 0,
            cur_count: 0,
            endpoints,
            clients,
        }
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
    pub clients: Distinct,
    pub first_ms: i64,
    pub last_ms: i64,
    pub detail: Detail,
}

impl KeyUsage {
    fn record(&mut self, hit: &Hit<'_>) {
        let Hit {
            time_ms,
            status,
            bytes,
            latency_ms,
            client,
            ..
        } = *hit;
        self.detail.record(time_ms, hit.hour, hit.endpoint, client);
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
        self.detail.merge(&o.detail);
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
#[derive(Clone, Copy, Debug)]
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
    /// The hour of the day, 0–23, in the zone days are cut in.
    pub hour: u8,
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
        if let Some(k) = hit.key {
            if day.keys.len() >= MAX_KEYS_PER_DAY && !day.keys.contains_key(&k.id) {
                let evicted = day.evict_lightest();
                self.forget_labels(evicted);
            }
        }
        let day = self.days.entry(hit.day).or_default();
        let usage = match hit.key {
            Some(k) => match day.keys.get_mut(&k.id) {
                Some(u) => u,
                None => {
                    self.labels.entry(k.id).or_insert(KeyLabel {
                        masked: k.masked,
                        name: k.name,
                    });
                    day.keys.entry(k.id).or_default()
                }
            },
            None => &mut day.keyless,
        };
        usage.record(hit);
    }

    pub fn merge(&mut self, other: &Usage) {
        let mut forgotten = Vec::new();
        for (day, theirs) in &other.days {
            let mine = self.days.entry(*day).or_default();
            for (id, u) in &theirs.keys {
                if mine.keys.len() >= MAX_KEYS_PER_DAY && !mine.keys.contains_key(id) {
                    let evicted = mine.evict_lightest();
                    forgotten.extend(evicted);
                }
                mine.keys.entry(*id).or_default().merge(u);
            }
            mine.keyless.merge(&theirs.keyless);
            mine.other.merge(&theirs.other);
            mine.other_keys.merge(&theirs.other_keys);
        }
        for (id, l) in &other.labels {
            if self.days.values().any(|d| d.keys.contains_key(id)) {
                self.labels.entry(*id).or_insert(*l);
            }
        }
        self.forget_labels(forgotten);
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
            hour: 0,
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
