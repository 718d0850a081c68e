//! Decoding of the escape schemes web servers apply to logged values.
//!
//! Fields are split on the raw, still-escaped bytes (the escaping guarantees the
//! delimiters cannot appear inside a value); a field is decoded only when a
//! consumer asks for it, and only then may it allocate.

use std::borrow::Cow;

/// How a server escaped the bytes of a logged value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// nginx `escape=default`: `\xHH` (uppercase) for `"`, `\`, control bytes and bytes >= 0x7F.
    Nginx,
    /// Apache `ap_escape_logitem`: `\"`, `\\`, `\n`, `\t`… and `\xhh` (lowercase).
    Apache,
    /// JSON string escapes (nginx `escape=json`, Caddy, other JSON-lines logs).
    Json,
    /// nginx `escape=none` and servers that write values verbatim.
    None,
}

impl Escape {
    /// Whether a backslash in this scheme can protect a following quote.
    pub(crate) fn backslash_quotes(self) -> bool {
        matches!(self, Escape::Apache | Escape::Json)
    }
}

/// Decodes `raw` as written under `escape`. Borrows when there is nothing to decode.
pub fn decode(raw: &[u8], escape: Escape) -> Cow<'_, [u8]> {
    if escape == Escape::None || memchr::memchr(b'\\', raw).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    decode_escapes_into(raw, escape, &mut out);
    Cow::Owned(out)
}

/// Whether `raw` holds anything to decode under `escape`.
pub fn has_escapes(raw: &[u8], escape: Escape) -> bool {
    escape != Escape::None && memchr::memchr(b'\\', raw).is_some()
}

/// Decodes `raw` into `out` (appending), for callers that reuse a buffer.
pub fn decode_escapes_into(raw: &[u8], escape: Escape, out: &mut Vec<u8>) {
    match escape {
        Escape::None => out.extend_from_slice(raw),
        Escape::Json => decode_json_into(raw, out),
        _ => decode_backslash_hex_into(raw, out),
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// nginx and Apache escapes: `\xHH` in either case, plus Apache's C escapes.
/// A backslash that starts no known escape is kept as it is.
fn decode_backslash_hex_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 >= raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = raw[i + 1];
        let hex = (next == b'x')
            .then(|| Some((hex_val(*raw.get(i + 2)?)?, hex_val(*raw.get(i + 3)?)?)))
            .flatten();
        if let Some((hi, lo)) = hex {
            out.push(hi << 4 | lo);
            i += 4;
            continue;
        }
        let simple = match next {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'b' => Some(0x08),
            b'v' => Some(0x0b),
            _ => None,
        };
        match simple {
            Some(c) => {
                out.push(c);
                i += 2;
            }
            None => {
                out.push(b'\\');
                i += 1;
            }
        }
    }
}

/// JSON string escapes, lenient: raw bytes >= 0x80 (nginx `escape=json` copies
/// them as they are) pass through, and a broken escape is kept literally.
fn decode_json_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 >= raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let simple = match raw[i + 1] {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        if raw[i + 1] == b'u'
            && let Some((cp, used)) = json_code_point(&raw[i..])
        {
            let mut utf8 = [0u8; 4];
            out.extend_from_slice(cp.encode_utf8(&mut utf8).as_bytes());
            i += used;
            continue;
        }
        out.push(b'\\');
        i += 1;
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let digits = b.get(..4)?;
    digits
        .iter()
        .try_fold(0u32, |acc, &d| Some(acc << 4 | u32::from(hex_val(d)?)))
}

/// Reads `\uXXXX` (and a following low surrogate) at the start of `b`.
fn json_code_point(b: &[u8]) -> Option<(char, usize)> {
    let hi = hex4(b.get(2..)?)?;
    if (0xD800..0xDC00).contains(&hi) {
        let rest = b.get(6..)?;
        if rest.starts_with(b"\\u") {
            let lo = hex4(&rest[2..])?;
            if (0xDC00..0xE000).contains(&lo) {
                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return Some((char::from_u32(cp)?, 12));
            }
        }
        return Some(('\u{FFFD}', 6));
    }
    Some((char::from_u32(hi).unwrap_or('\u{FFFD}'), 6))
}

/// Escapes bytes the way nginx `escape=default` does (used by tests and the
/// benchmark generator to write realistic lines).
pub fn nginx_escape(raw: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in raw {
        if b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7F {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.push(b);
        }
    }
}

/// Renders bytes for a person: valid UTF-8 stays, control characters and
/// invalid bytes become `\xHH`, so nothing from a log can steer a terminal.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' || c == '\u{FEFF}' {
                if (c as u32) < 0x100 {
                    out.push_str(&format!("\\x{:02X}", c as u32));
                } else {
                    out.push_str(&format!("\\u{{{:X}}}", c as u32));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_hex_decodes_exactly() {
        assert_eq!(&*decode(br"a\x22b\x5C\xE4", Escape::Nginx), b"a\"b\\\xE4");
        assert_eq!(&*decode(br"\xe4\xe5", Escape::Apache), b"\xE4\xE5");
        assert_eq!(&*decode(br#"say \"hi\""#, Escape::Apache), b"say \"hi\"");
        assert!(matches!(decode(b"plain", Escape::Nginx), Cow::Borrowed(_)));
    }

    #[test]
    fn broken_escapes_are_kept() {
        assert_eq!(&*decode(br"\x4", Escape::Nginx), br"\x4");
        assert_eq!(&*decode(br"end\", Escape::Nginx), br"end\");
        assert_eq!(&*decode(br"\u12", Escape::Json), br"\u12");
    }

    #[test]
    fn json_escapes_and_raw_bytes() {
        assert_eq!(&*decode(b"\\u0016\\\"\xE9", Escape::Json), b"\x16\"\xE9");
        assert_eq!(&*decode(br"\ud83d\ude00", Escape::Json), "😀".as_bytes());
    }

    #[test]
    fn printable_neutralises_control_bytes() {
        assert_eq!(printable(b"a\x1b[31m\xff"), "a\\x1B[31m\\xFF");
    }
}
