//! Fast hashing for keywatch's in-memory maps, seeded per process.
//!
//! The hot path looks up a map or two per line; std's SipHash costs more
//! than the parse around it. Keys of these maps are either key ids (already
//! uniform HMAC output) or values an attacker controls (client addresses,
//! raw keys in the id cache), so the hasher is seeded with random bits chosen
//! once per process: collisions cannot be planned from outside.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

fn process_seed() -> [u64; 4] {
    static SEED: OnceLock<[u64; 4]> = OnceLock::new();
    *SEED.get_or_init(|| {
        let mut b = [0u8; 32];
        // Without randomness the maps stay correct, only predictable.
        let _ = getrandom::fill(&mut b);
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8])) | 1;
        [w(0), w(1), w(2), w(3)]
    })
}

/// 64×64→128-bit multiply, folded: the mixing step of wyhash and foldhash.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A seeded multiply-fold hasher.
#[derive(Clone, Copy)]
pub struct FastHasher {
    acc: u64,
    seed: u64,
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        self.write_u64(u64::from_le_bytes(last) ^ (rest.len() as u64) << 59);
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.acc = fold(self.acc ^ v, self.seed ^ 0x9E37_79B9_7F4A_7C15);
    }

    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold(self.acc, self.seed.rotate_left(17) ^ 0xD6E8_FEB8_6659_FD93)
    }
}

/// Builds [`FastHasher`]s with the process seed.
#[derive(Clone, Copy)]
pub struct FastState {
    seed: u64,
}

impl Default for FastState {
    fn default() -> Self {
        FastState {
            seed: process_seed()[0],
        }
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;
    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher {
            acc: self.seed,
            seed: self.seed,
        }
    }
}

pub type FastMap<K, V> = HashMap<K, V, FastState>;
pub type FastSet<K> = HashSet<K, FastState>;

/// A 128-bit seeded hash of `bytes` (two independent 64-bit lanes), for
/// caches keyed by values that must not themselves be kept (raw keys).
pub fn tag128(bytes: &[u8]) -> u128 {
    let s = process_seed();
    let mut a = FastHasher {
        acc: s[1],
        seed: s[1],
    };
    let mut b = FastHasher {
        acc: s[2],
        seed: s[3],
    };
    a.write(bytes);
    b.write(bytes);
    u128::from(a.finish()) << 64 | u128::from(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_inputs_hash_equal_and_lengths_matter() {
        assert_eq!(tag128(b"abc"), tag128(b"abc"));
        assert_ne!(tag128(b"abc"), tag128(b"abc\0"));
        assert_ne!(tag128(b""), tag128(b"\0"));
        let st = FastState::default();
        assert_eq!(st.hash_one(42u128), st.hash_one(42u128));
        assert_ne!(st.hash_one(42u128), st.hash_one(43u128));
    }
}
