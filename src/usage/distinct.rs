//! Counting distinct clients in bounded memory: exact up to a limit, then a
//! HyperLogLog estimate (about 1.6% standard error) marked as estimated.

use std::net::IpAddr;

use crate::hash::FastSet;

/// Above this many distinct clients a set turns into a sketch.
pub const EXACT_LIMIT: usize = 4096;
const P: u32 = 12;
const REGISTERS: usize = 1 << P;

/// Whether a [`client_tag`] is an address (not the hash of something else).
pub fn is_address(tag: u128) -> bool {
    tag >> 127 == 0
}

/// Whether a [`client_tag`] is an IPv4 address.
pub fn is_ipv4(tag: u128) -> bool {
    tag < 1 << 32
}

/// A client address as a number: IPv4 and IPv6 as themselves, anything
/// else (`unix:`, garbage) as a hash of its bytes with the top bit set.
pub fn client_tag(raw: &[u8]) -> u128 {
    if let Some(v4) = parse_ipv4(raw) {
        return u128::from(v4);
    }
    if let Some(ip) = std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<IpAddr>().ok())
    {
        return match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6) & !(1u128 << 127),
        };
    }
    let h = raw.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    });
    1u128 << 127 | u128::from(h)
}

/// Dotted-quad IPv4, the common case, without going through `str`.
fn parse_ipv4(b: &[u8]) -> Option<u32> {
    let mut out = 0u32;
    let mut parts = 0;
    for part in b.split(|&c| c == b'.') {
        if part.is_empty() || part.len() > 3 || parts == 4 {
            return None;
        }
        let mut v = 0u32;
        for &d in part {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(d - b'0');
        }
        if v > 255 {
            return None;
        }
        out = out << 8 | v;
        parts += 1;
    }
    (parts == 4).then_some(out)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Distinct {
    Exact(FastSet<u128>),
    Sketch(Box<[u8; REGISTERS]>),
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Exact(FastSet::default())
    }
}

fn mix(tag: u128) -> u64 {
    // A fixed (unseeded) hash, so sketches made anywhere merge.
    let fold = |a: u64, b: u64| {
        let p = u128::from(a) * u128::from(b);
        (p as u64) ^ ((p >> 64) as u64)
    };
    fold(
        fold(
            tag as u64 ^ 0x9E37_79B9_7F4A_7C15,
            (tag >> 64) as u64 ^ 0xD6E8_FEB8_6659_FD93,
        ),
        0xA076_1D64_78BD_642F,
    )
}

impl Distinct {
    pub fn insert(&mut self, tag: u128) {
        match self {
            Distinct::Exact(set) => {
                set.insert(tag);
                if set.len() > EXACT_LIMIT {
                    let mut regs = Box::new([0u8; REGISTERS]);
                    for t in set.iter() {
                        add(&mut regs, *t);
                    }
                    *self = Distinct::Sketch(regs);
                }
            }
            Distinct::Sketch(regs) => add(regs, tag),
        }
    }

    pub fn merge(&mut self, other: &Distinct) {
        match other {
            Distinct::Exact(set) => set.iter().for_each(|t| self.insert(*t)),
            Distinct::Sketch(theirs) => {
                if let Distinct::Exact(set) = self {
                    let mut regs = Box::new([0u8; REGISTERS]);
                    set.iter().for_each(|t| add(&mut regs, *t));
                    *self = Distinct::Sketch(regs);
                }
                if let Distinct::Sketch(mine) = self {
                    for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                        *m = (*m).max(*t);
                    }
                }
            }
        }
    }

    /// A byte form for the store: `0` and 16-byte tags, or `1` and the registers.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Distinct::Exact(set) => {
                let mut tags: Vec<u128> = set.iter().copied().collect();
                tags.sort_unstable();
                std::iter::once(0u8)
                    .chain(tags.iter().flat_map(|t| t.to_le_bytes()))
                    .collect()
            }
            Distinct::Sketch(regs) => std::iter::once(1u8).chain(regs.iter().copied()).collect(),
        }
    }

    /// Reads what [`Distinct::to_bytes`] wrote; `None` if it is not that.
    pub fn from_bytes(b: &[u8]) -> Option<Distinct> {
        match b.split_first()? {
            (0, rest) if rest.len() % 16 == 0 => {
                let mut d = Distinct::default();
                for c in rest.chunks_exact(16) {
                    d.insert(u128::from_le_bytes(c.try_into().ok()?));
                }
                Some(d)
            }
            (1, rest) if rest.len() == REGISTERS => {
                let mut regs = Box::new([0u8; REGISTERS]);
                regs.copy_from_slice(rest);
                Some(Distinct::Sketch(regs))
            }
            _ => None,
        }
    }

    pub fn is_estimated(&self) -> bool {
        matches!(self, Distinct::Sketch(_))
    }

    pub fn count(&self) -> u64 {
        match self {
            Distinct::Exact(set) => set.len() as u64,
            Distinct::Sketch(regs) => estimate(regs),
        }
    }
}

fn add(regs: &mut [u8; REGISTERS], tag: u128) {
    let h = mix(tag);
    let idx = (h >> (64 - P)) as usize;
    let rank = ((h << P) | (1 << (P - 1))).leading_zeros() as u8 + 1;
    regs[idx] = regs[idx].max(rank);
}

fn estimate(regs: &[u8; REGISTERS]) -> u64 {
    let m = REGISTERS as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let sum: f64 = regs.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
    let raw = alpha * m * m / sum;
    let zeros = regs.iter().filter(|&&r| r == 0).count();
    let e = if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    };
    e.round() as u64
}

/// Stored in [`Distinct::to_bytes`]'s form.
impl serde::Serialize for Distinct {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> serde::Deserialize<'de> for Distinct {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = <Vec<u8>>::deserialize(d)?;
        Distinct::from_bytes(&b).ok_or_else(|| serde::de::Error::custom("not a distinct-count set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_estimated_within_five_percent() {
        let mut d = Distinct::default();
        for i in 0..1000u128 {
            d.insert(i);
            d.insert(i);
        }
        assert_eq!(d.count(), 1000);
        assert!(!d.is_estimated());
        for i in 0..100_000u128 {
            d.insert(i);
        }
        assert!(d.is_estimated());
        let n = d.count() as f64;
        assert!((n - 100_000.0).abs() < 5_000.0, "{n}");
    }

    #[test]
    fn merges_agree_with_one_set() {
        let (mut a, mut b) = (Distinct::default(), Distinct::default());
        (0..3000u128).for_each(|i| a.insert(i));
        (2000..9000u128).for_each(|i| b.insert(i));
        a.merge(&b);
        let n = a.count() as f64;
        assert!((n - 9000.0).abs() < 450.0, "{n}");
    }

    #[test]
    fn client_tags() {
        assert_eq!(client_tag(b"10.0.0.1"), 0x0A00_0001);
        assert_ne!(client_tag(b"unix:"), client_tag(b"garbage"));
        assert_eq!(client_tag(b"::1"), 1);
    }
}
