//! What a key becomes the moment it is read: a [`KeyId`] (a keyed hash, the
//! same on every host that shares the secret) and a [`MaskedKey`] for people.
//! Neither can be turned back into the key.

use std::fmt;

/// A key's stable identifier: the first 8 bytes (16 hex characters) of
/// HMAC-SHA256(secret, key).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KeyId(pub [u8; 8]);

impl std::hash::Hash for KeyId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from_le_bytes(self.0));
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl std::str::FromStr for KeyId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let b = s.as_bytes();
        if b.len() != 16 {
            return Err(());
        }
        let mut out = [0u8; 8];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2).ok_or(())?, 16).map_err(|_| ())?;
        }
        Ok(KeyId(out))
    }
}

/// A key as people see it: a known public prefix or the first few characters,
/// `…`, the last few. Printable ASCII only, at most 44 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MaskedKey {
    buf: [u8; 44],
    len: u8,
}

impl MaskedKey {
    /// A mask read back from the store (cut to fit, printable only).
    pub fn from_stored(s: &str) -> MaskedKey {
        let mut m = MaskedKey {
            buf: [0; 44],
            len: 0,
        };
        for c in s.chars() {
            let mut tmp = [0u8; 4];
            let enc = c.encode_utf8(&mut tmp);
            let ok = c == '…' || (c.is_ascii_graphic());
            if !ok || usize::from(m.len) + enc.len() > m.buf.len() {
                continue;
            }
            m.buf[usize::from(m.len)..usize::from(m.len) + enc.len()]
                .copy_from_slice(enc.as_bytes());
            m.len += enc.len() as u8;
        }
        m
    }

    pub fn as_str(&self) -> &str {
        // Only printable ASCII and the UTF-8 of `…` are ever written.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("…")
    }
}

impl fmt::Display for MaskedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MaskedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MaskedKey({})", self.as_str())
    }
}

/// Prefixes that say what a key is without revealing any of it.
const PUBLIC_PREFIXES: &[&str] = &[
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "pk_live_",
    "pk_test_",
    "github_pat_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxr-",
    "npm_",
    "sk-ant-api03-",
    "sk-ant-admin01-",
    "sk-proj-",
    "sk-svcacct-",
    "sk-",
    "SG.",
    "AIza",
    "AKIA",
    "ASIA",
    "hf_",
    "shpat_",
    "key-",
];

/// Masks a key: a known public prefix shows in full with at most a quarter
/// of the rest at the end; otherwise at most a sixth of the key shows at each
/// end (4 characters at most), and a key shorter than 10 characters shows
/// nothing at all.
pub fn mask(raw: &[u8], extra_prefixes: &[String]) -> MaskedKey {
    let mut m = MaskedKey {
        buf: [0; 44],
        len: 0,
    };
    let mut push = |b: &[u8]| {
        for &c in b {
            let c = if (0x21..0x7F).contains(&c) { c } else { b'?' };
            if usize::from(m.len) < m.buf.len() {
                m.buf[usize::from(m.len)] = c;
                m.len += 1;
            }
        }
    };
    let prefix = extra_prefixes
        .iter()
        .map(String::as_str)
        .chain(PUBLIC_PREFIXES.iter().copied())
        .filter(|p| p.len() <= 24 && raw.starts_with(p.as_bytes()) && raw.len() >= p.len() + 6)
        .max_by_key(|p| p.len());
    let (head, rest) = match prefix {
        Some(p) => (p.as_bytes(), &raw[p.len()..]),
        None => (&raw[..0], raw),
    };
    // Behind a public prefix a quarter of the rest may show at the end;
    // without one, a sixth at each end.
    let show = match prefix {
        Some(_) => (rest.len() / 4).min(4),
        None if rest.len() >= 10 => (rest.len() / 6).min(4),
        None => 0,
    };
    push(head);
    if prefix.is_none() {
        push(&rest[..show]);
    }
    let ellipsis = "…".as_bytes();
    let at = usize::from(m.len);
    m.buf[at..at + ellipsis.len()].copy_from_slice(ellipsis);
    m.len += ellipsis.len() as u8;
    let mut push_tail = |b: &[u8]| {
        for &c in b {
            let c = if (0x21..0x7F).contains(&c) { c } else { b'?' };
            m.buf[usize::from(m.len)] = c;
            m.len += 1;
        }
    };
    push_tail(&rest[rest.len() - show..]);
    m
}

/// Stored as the text people see.
impl serde::Serialize for MaskedKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MaskedKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(MaskedKey::from_stored(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_reveal_little() {
        let key = format!("{}{}", "kwtest", "A1b2C3d4E5f6G7h8J9k0");
        assert_eq!(mask(key.as_bytes(), &[]).as_str(), "kwte…J9k0");
        let stripe = format!("sk_{}_{}", "live", "4eC39HqLyjWDarjtT1zdp7dc");
        assert_eq!(mask(stripe.as_bytes(), &[]).as_str(), "sk_live_…p7dc");
        assert_eq!(mask(b"short1", &[]).as_str(), "…");
        assert_eq!(mask(b"ten-chars!", &[]).as_str(), "t…!");
        assert_eq!(mask(b"\x1b[31mabcdefghijkl", &[]).as_str(), "?[…kl");
    }
}
