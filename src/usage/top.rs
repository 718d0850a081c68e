//! The heaviest items of a stream in fixed memory (Space-Saving, Metwally et
//! al. 2005): `CAP` counters; a new item past them replaces the smallest and
//! inherits its count. While no item was ever replaced the counts are exact,
//! and [`Top::exact`] says so; afterwards every item with more than
//! `total / CAP` occurrences is present and its count is an upper bound.

use serde::{Deserialize, Serialize};

/// The top items of one key's day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Top<K, const CAP: usize> {
    items: Vec<(K, u64)>,
    /// Whether an item was ever replaced (counts are then upper bounds).
    replaced: bool,
}

impl<K, const CAP: usize> Default for Top<K, CAP> {
    fn default() -> Self {
        Top {
            items: Vec::new(),
            replaced: false,
        }
    }
}

impl<K: Clone, const CAP: usize> Top<K, CAP> {
    /// Counts `n` occurrences of the item `is` recognises, made by `make`
    /// only when it is new (so a hit allocates nothing).
    pub fn add_by(&mut self, is: impl Fn(&K) -> bool, make: impl FnOnce() -> K, n: u64) {
        if let Some(slot) = self.items.iter_mut().find(|(k, _)| is(k)) {
            slot.1 += n;
            return;
        }
        if self.items.len() < CAP {
            self.items.push((make(), n));
            return;
        }
        if let Some(min) = self.items.iter_mut().min_by_key(|(_, c)| *c) {
            *min = (make(), min.1 + n);
            self.replaced = true;
        }
    }

    /// Adds another sketch's counts (the result is exact only if both were
    /// and nothing had to be replaced).
    pub fn merge(&mut self, other: &Self)
    where
        K: PartialEq,
    {
        self.replaced |= other.replaced;
        for (k, n) in &other.items {
            self.add_by(|x| x == k, || k.clone(), *n);
        }
    }

    /// The items, most frequent first (ties in insertion order).
    pub fn ranked(&self) -> Vec<(K, u64)> {
        let mut v = self.items.clone();
        v.sort_by_key(|b| std::cmp::Reverse(b.1));
        v
    }

    pub fn exact(&self) -> bool {
        !self.replaced
    }
}

/// A request path as an endpoint: ids, UUIDs, long hex, numbers and
/// anything secret-looking in a segment become `{id}`, so `/v1/users/42`
/// and `/v1/users/43` are one endpoint and no key in a path is shown. The
/// query is not part of it. At most 80 characters.
pub fn endpoint(path: &[u8], out: &mut String) {
    out.clear();
    for seg in path.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        out.push('/');
        if out.len() > 80 {
            out.push('…');
            return;
        }
        match classify(seg) {
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
    Id,
    Plain,
    Other,
}

/// One pass over a segment: an id, printable ASCII, or anything else.
fn classify(seg: &[u8]) -> Segment {
    let (mut digits, mut hex, mut plain) = (0usize, true, true);
    for &b in seg {
        digits += usize::from(b.is_ascii_digit());
        hex &= b.is_ascii_hexdigit() || b == b'-';
        plain &= b.is_ascii_graphic() && b != b'\\';
    }
    let id = seg.len() > 40
        || digits == seg.len()
        || (digits > 0 && hex && seg.len() >= 8)
        || (digits >= 3 && digits * 3 >= seg.len())
        || (seg.len() >= 16 && crate::url::looks_like_secret(seg));
    if id {
        Segment::Id
    } else if plain {
        Segment::Plain
    } else {
        Segment::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_until_an_item_is_replaced() {
        let mut t: Top<u32, 3> = Top::default();
        for (k, n) in [(1, 5), (2, 3), (1, 1), (3, 2)] {
            t.add_by(|x| *x == k, || k, n);
        }
        assert_eq!(t.ranked(), [(1, 6), (2, 3), (3, 2)]);
        assert!(t.exact());
        t.add_by(|x| *x == 4, || 4, 1);
        assert!(!t.exact());
        assert_eq!(t.ranked()[0], (1, 6), "the heavy item stays");
        let mut other: Top<u32, 3> = Top::default();
        other.add_by(|x| *x == 2, || 2, 10);
        t.merge(&other);
        assert_eq!(t.ranked()[0], (2, 13));
    }

    #[test]
    fn large_client_tags_survive_json() {
        let mut t: Top<u128, 4> = Top::default();
        t.add_by(|x| *x == u128::MAX, || u128::MAX, 3);
        let back: Top<u128, 4> = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
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
            ("/v1/keys/kwt_Zq8xP2mL9vB4nR7tY3wK6hJ1", "/v1/keys/{id}"),
            ("/health", "/health"),
            ("/", "/"),
            ("/v2/orders/ORD-2026-000123", "/v2/orders/{id}"),
            ("/v1/items/<script>", "/v1/items/<script>"),
        ] {
            endpoint(path.as_bytes(), &mut s);
            assert_eq!(s, want, "{path}");
        }
    }
}
