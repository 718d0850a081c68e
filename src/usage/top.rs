//! The heaviest items of one key's day, exactly while they are few.
//!
//! Counts are exact for up to `CAP` distinct items, so they add up the same
//! whatever order the requests come in and however a file is split across
//! threads. Past `CAP`, the half with the fewest requests is dropped (ties
//! by item) and the list is marked estimated: a dropped item that comes back
//! starts again from zero, so its count may be low.

use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::hash::FastMap;

/// Counts per item, bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Top<K: Hash + Eq, const CAP: usize> {
    counts: FastMap<K, u64>,
    /// Whether items were ever dropped (counts are then estimates).
    dropped: bool,
}

impl<K: Hash + Eq, const CAP: usize> Default for Top<K, CAP> {
    fn default() -> Self {
        Top {
            counts: FastMap::default(),
            dropped: false,
        }
    }
}

impl<K: Hash + Eq + Ord + Clone, const CAP: usize> Top<K, CAP> {
    /// Counts one occurrence of `k`.
    pub fn add(&mut self, k: K) {
        *self.counts.entry(k).or_default() += 1;
        self.bound();
    }

    fn bound(&mut self) {
        if self.counts.len() <= CAP {
            return;
        }
        // Keep the CAP/2 heaviest (ties by item) in place: a threshold found
        // in linear time, then one pass.
        let keep = CAP / 2;
        let mut counts: Vec<u64> = self.counts.values().copied().collect();
        let (_, t, _) = counts.select_nth_unstable_by(keep - 1, |a, b| b.cmp(a));
        let t = *t;
        let above = self.counts.values().filter(|&&n| n > t).count();
        let mut tied: Vec<K> = self
            .counts
            .iter()
            .filter(|&(_, &n)| n == t)
            .map(|(k, _)| k.clone())
            .collect();
        tied.sort_unstable();
        tied.truncate(keep - above);
        let tied: std::collections::BTreeSet<K> = tied.into_iter().collect();
        self.counts
            .retain(|k, n| *n > t || (*n == t && tied.contains(k)));
        self.dropped = true;
    }

    /// Adds another part's counts: exact when neither part dropped items
    /// and together they stay within `CAP`.
    pub fn merge(&mut self, other: &Self) {
        self.dropped |= other.dropped;
        for (k, n) in &other.counts {
            *self.counts.entry(k.clone()).or_default() += n;
        }
        self.bound();
    }

    /// The items, most frequent first (ties by item).
    pub fn ranked(&self) -> Vec<(K, u64)> {
        let mut v: Vec<(K, u64)> = self.counts.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// The `n` most frequent items, in [`Self::ranked`] order, in one pass
    /// without copying the rest.
    pub fn top(&self, n: usize) -> Vec<(K, u64)> {
        best(self.counts.iter().map(|(k, c)| (k, *c)), n)
            .into_iter()
            .map(|(k, c)| (k.clone(), c))
            .collect()
    }

    pub fn exact(&self) -> bool {
        !self.dropped
    }

    /// As stored: the items with their counts, and whether any was dropped.
    pub fn parts(&self) -> (Vec<(K, u64)>, bool) {
        (self.ranked(), self.dropped)
    }

    pub fn from_parts(items: Vec<(K, u64)>, dropped: bool) -> Self {
        Top {
            counts: items.into_iter().collect(),
            dropped,
        }
    }
}

impl<const CAP: usize> Top<Box<str>, CAP> {
    /// Counts one occurrence of `s`, allocating only for a new item.
    pub fn add_str(&mut self, s: &str) {
        match self.counts.get_mut(s) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(s.into(), 1);
                self.bound();
            }
        }
    }
}

/// The `n` items with the highest counts (ties by the smaller item), most
/// first: one pass, holding `n` at a time.
pub fn best<K: Ord>(items: impl Iterator<Item = (K, u64)>, n: usize) -> Vec<(K, u64)> {
    let better = |a: &(K, u64), b: &(K, u64)| a.1 > b.1 || (a.1 == b.1 && a.0 < b.0);
    let mut top: Vec<(K, u64)> = Vec::with_capacity(n + 1);
    for item in items {
        if top.len() == n && top.last().is_none_or(|worst| !better(&item, worst)) {
            continue;
        }
        let at = top
            .iter()
            .position(|t| better(&item, t))
            .unwrap_or(top.len());
        top.insert(at, item);
        top.truncate(n);
    }
    top
}

/// A stored [`Top`].
#[derive(Serialize, Deserialize)]
pub struct StoredTop<K> {
    pub items: Vec<(K, u64)>,
    pub dropped: bool,
}

/// A request path (raw, as logged) as an endpoint: a segment that is or
/// holds one of the line's credential values (`scrub`), or looks like a
/// secret, becomes `{key}` (one `{key}` for a value that spans segments,
/// such as base64 with `/`); ids, UUIDs, long hex and numbers become `{id}`,
/// so `/v1/users/42` and `/v1/users/43` are one endpoint. The query is not
/// part of it. At most 80 characters.
pub fn endpoint(path: &[u8], scrub: &crate::keys::Scrubber, out: &mut String) {
    out.clear();
    let secret = scrub.find_plain(path);
    let mut at = 0;
    let mut last_secret: Option<usize> = None;
    for seg in path.split(|&b| b == b'/') {
        let (start, end) = (at, at + seg.len());
        at = end + 1;
        if seg.is_empty() {
            continue;
        }
        // The range of a credential value this segment overlaps, if any.
        let hit = secret.iter().position(|r| r.start < end && start < r.end);
        if let Some(h) = hit
            && last_secret == Some(h)
        {
            continue;
        }
        last_secret = hit;
        out.push('/');
        if out.len() > 80 {
            out.push('…');
            return;
        }
        match hit.map_or_else(|| classify(seg), |_| Segment::Key) {
            Segment::Key => out.push_str("{key}"),
            Segment::Id => out.push_str("{id}"),
            // Printable ASCII (checked by `classify`): copied as is.
            Segment::Plain => out.push_str(std::str::from_utf8(seg).unwrap_or("?")),
            Segment::Other => out.push_str(&crate::format::escape::printable(seg)),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
}

enum Segment {
    Key,
    Id,
    Plain,
    Other,
}

/// One pass over a segment: a secret-looking token, an id, printable ASCII,
/// or anything else.
fn classify(seg: &[u8]) -> Segment {
    let (mut digits, mut hex, mut plain, mut escaped) = (0usize, true, true, false);
    for &b in seg {
        digits += usize::from(b.is_ascii_digit());
        hex &= b.is_ascii_hexdigit() || b == b'-';
        plain &= b.is_ascii_graphic() && b != b'\\';
        escaped |= b == b'%' || b == b'\\';
    }
    // Numbers, hex and UUIDs are ids even when they look random.
    if digits == seg.len() || (digits > 0 && hex && seg.len() >= 8) {
        return Segment::Id;
    }
    if seg.len() >= 16 && secret_looking(seg, escaped) {
        return Segment::Key;
    }
    let id = seg.len() > 40 || (digits >= 3 && digits * 3 >= seg.len());
    if id {
        Segment::Id
    } else if plain {
        Segment::Plain
    } else {
        Segment::Other
    }
}

/// Whether a segment (decoded when it is escaped) looks like a secret or
/// has the shape of a known credential.
fn secret_looking(seg: &[u8], escaped: bool) -> bool {
    let looks = |v: &[u8]| {
        crate::url::looks_like_secret(v) || crate::keys::shapes::secret_kind(v).is_some()
    };
    if looks(seg) {
        return true;
    }
    if !escaped {
        return false;
    }
    let mut nginx = Vec::new();
    crate::format::escape::decode_escapes_into(
        seg,
        crate::format::escape::Escape::Nginx,
        &mut nginx,
    );
    let mut decoded = Vec::new();
    looks(crate::url::percent_decode_into(&nginx, &mut decoded, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_and_order_free_until_the_cap() {
        let items = [1u32, 2, 1, 3, 1, 2];
        let mut a: Top<u32, 4> = Top::default();
        items.iter().for_each(|&k| a.add(k));
        assert_eq!(a.ranked(), [(1, 3), (2, 2), (3, 1)]);
        assert!(a.exact());
        // Split in two parts and merged: the same.
        let (mut x, mut y): (Top<u32, 4>, Top<u32, 4>) = (Top::default(), Top::default());
        items[..3].iter().for_each(|&k| x.add(k));
        items[3..].iter().for_each(|&k| y.add(k));
        y.merge(&x);
        assert_eq!(y, a);
        // Past the cap: the heavy items stay, the list says it is estimated.
        for k in 10..20 {
            a.add(k);
        }
        assert!(!a.exact());
        assert_eq!(a.ranked()[0], (1, 3));
        let mut s: Top<Box<str>, 4> = Top::default();
        s.add_str("/v1");
        s.add_str("/v1");
        assert_eq!(s.ranked(), [("/v1".into(), 2)]);
    }

    #[test]
    fn endpoints_fold_ids_and_hide_secrets() {
        let mut s = String::new();
        for (path, want) in [
            ("/v1/users/42/orders", "/v1/users/{id}/orders"),
            (
                "/v1/items/3f2b1c9e-8a7d-4e6f-9b0a-1c2d3e4f5a6b",
                "/v1/items/{id}",
            ),
            ("/v1/keys/kwt_Zq8xP2mL9vB4nR7tY3wK6hJ1", "/v1/keys/{key}"),
            ("/health", "/health"),
            ("/", "/"),
            ("/v2/orders/ORD-2026-000123", "/v2/orders/{id}"),
            ("/v1/items/<script>", "/v1/items/<script>"),
        ] {
            endpoint(path.as_bytes(), &crate::keys::Scrubber::default(), &mut s);
            assert_eq!(s, want, "{path}");
        }
    }
}
