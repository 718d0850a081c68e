//! How a file is recognised: not by its name or inode (both are reused) but
//! by its content. A generation is described by a hash of its head (up to
//! [`HEAD_MAX`] bytes), a hash of the [`MARKER`] bytes before the read
//! offset, and a running [`PrefixHash`] of every byte before the offset, so
//! a file of equal size with different content is never taken for what was
//! read.
//!
//! The running hash is hand-written: it is fed every byte the follower
//! reads, so it must cost a fraction of a cycle per byte, and its state must
//! be stored and compared (no hashing crate in the build offers both).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

/// How much of a file's head identifies it.
pub const HEAD_MAX: u64 = 1024;
/// How many bytes before the offset are compared to detect rewritten content.
pub const MARKER: usize = 256;

/// A short digest of `b` (16 bytes of SHA-256).
pub fn hash(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b)[..16].to_vec()
}

/// Up to `len` bytes of `file` from `at` (fewer at the end of the file).
pub fn read_at_most(file: &File, at: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut n = 0;
    while n < len {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// A running hash of a byte stream, fed in pieces of any size; its state is
/// 24 bytes that are stored with a checkpoint and compared on resume.
#[derive(Clone, Copy, Debug)]
pub struct PrefixHash {
    h: u64,
    len: u64,
    pending: [u8; 8],
}

impl Default for PrefixHash {
    fn default() -> Self {
        PrefixHash {
            h: 0x243F_6A88_85A3_08D3,
            len: 0,
            pending: [0; 8],
        }
    }
}

/// Equal when they hashed the same bytes (bytes past the pending ones are
/// left-overs and do not count).
impl PartialEq for PrefixHash {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

impl Eq for PrefixHash {}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(h: u64, w: u64) -> u64 {
    let m = u128::from(h ^ w) * u128::from(K ^ w.rotate_left(29));
    (m as u64) ^ ((m >> 64) as u64)
}

impl PrefixHash {
    /// Feeds the next bytes.
    pub fn update(&mut self, mut b: &[u8]) {
        let fill = (self.len % 8) as usize;
        self.len += b.len() as u64;
        if fill > 0 {
            let take = (8 - fill).min(b.len());
            self.pending[fill..fill + take].copy_from_slice(&b[..take]);
            b = &b[take..];
            if fill + take < 8 {
                return;
            }
            self.h = mix(self.h, u64::from_le_bytes(self.pending));
        }
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.h = mix(self.h, u64::from_le_bytes(a));
        }
        let rest = words.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
    }

    /// How many bytes were fed.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The state as stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.h.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        let fill = (self.len % 8) as usize;
        let mut p = [0u8; 8];
        p[..fill].copy_from_slice(&self.pending[..fill]);
        out.extend_from_slice(&p);
        out
    }

    /// Reads a stored state back (`None` for an empty or malformed one).
    pub fn from_bytes(b: &[u8]) -> Option<PrefixHash> {
        if b.len() != 24 {
            return None;
        }
        let word = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            a
        };
        Some(PrefixHash {
            h: u64::from_le_bytes(word(0)),
            len: u64::from_le_bytes(word(8)),
            pending: word(16),
        })
    }

    /// The hash of the first `len` bytes of `file` (fewer if it is shorter).
    pub fn of_file(file: &File, len: u64) -> io::Result<PrefixHash> {
        let mut h = PrefixHash::default();
        let mut buf = vec![0u8; 1 << 16];
        let mut at = 0u64;
        while at < len {
            let want = (len - at).min(buf.len() as u64) as usize;
            let n = match file.read_at(&mut buf[..want], at) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            h.update(&buf[..n]);
            at += n as u64;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_hash_is_the_same_however_the_bytes_are_cut() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = PrefixHash::default();
        whole.update(&data);
        for cut in [1usize, 3, 7, 8, 9, 64, 333] {
            let mut parts = PrefixHash::default();
            data.chunks(cut).for_each(|c| parts.update(c));
            assert_eq!(parts, whole, "cut {cut}");
            assert_eq!(PrefixHash::from_bytes(&parts.to_bytes()), Some(whole));
        }
        let mut other = data.clone();
        other[500] ^= 1;
        let mut changed = PrefixHash::default();
        changed.update(&other);
        assert_ne!(changed, whole);
    }
}
