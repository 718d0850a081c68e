//! Reading request targets and Referer URLs the way a key scanner must:
//! split into path segments and `name=value` pairs first, percent-decode each
//! piece, then look at whole tokens. (A regex over the raw line misses a key
//! followed by `&`, see DETECTION.md §1.3.)

/// `name=value` pairs of a raw query string (split on `&`; a pair without
/// `=` has an empty value). Nothing is decoded.
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        })
}

/// Path segments of a raw path (split on `/` and `;`), empty ones skipped.
pub fn path_segments(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/' || b == b';')
        .filter(|s| !s.is_empty())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `raw` into `out` (cleared first); with `plus`, `+` is a space
/// (query strings). Broken escapes are kept as written.
pub fn percent_decode_into<'o>(raw: &[u8], out: &'o mut Vec<u8>, plus: bool) -> &'o [u8] {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Whether `raw` needs percent-decoding at all.
pub fn needs_decoding(raw: &[u8], plus: bool) -> bool {
    raw.iter().any(|&b| b == b'%' || (plus && b == b'+'))
}

/// Normalises a parameter name for comparison with credential names:
/// percent-decoded, lower case, `-` `.` and spaces as `_`, and a `_` where
/// camelCase turns from lower to upper (`apiKey` → `api_key`). Names longer
/// than the buffer are no credential names and give `None`.
pub fn normalize_name<'b>(raw: &[u8], buf: &'b mut [u8; 64]) -> Option<&'b [u8]> {
    let mut n = 0;
    let mut prev_lower = false;
    let mut i = 0;
    while i < raw.len() {
        let mut b = raw[i];
        if b == b'%'
            && i + 2 < raw.len()
            && let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2]))
        {
            b = h << 4 | l;
            i += 2;
        }
        i += 1;
        let upper = b.is_ascii_uppercase();
        if upper && prev_lower {
            *buf.get_mut(n)? = b'_';
            n += 1;
        }
        prev_lower = b.is_ascii_lowercase() || b.is_ascii_digit();
        let c = match b {
            b'-' | b'.' | b' ' | b'+' => b'_',
            _ => b.to_ascii_lowercase(),
        };
        *buf.get_mut(n)? = c;
        n += 1;
    }
    Some(&buf[..n])
}

/// Splits a full URL (as in a Referer) into its path and query, dropping the
/// scheme, authority and fragment. A bare path is taken as it is.
pub fn split_url(url: &[u8]) -> (&[u8], Option<&[u8]>) {
    let url = match memchr::memchr(b'#', url) {
        Some(h) => &url[..h],
        None => url,
    };
    let rest = match memchr::memmem::find(url, b"://") {
        Some(p)
            if url[..p]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')) =>
        {
            let after = &url[p + 3..];
            let path_start = after
                .iter()
                .position(|&c| c == b'/' || c == b'?')
                .unwrap_or(after.len());
            &after[path_start..]
        }
        _ => url,
    };
    match memchr::memchr(b'?', rest) {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    }
}

/// Shannon entropy in bits per byte.
pub fn shannon_entropy(b: &[u8]) -> f64 {
    if b.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &c in b {
        counts[usize::from(c)] += 1;
    }
    let n = b.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Values that stand in for a secret without being one (`REDACTED`, `xxxx`,
/// `<your-key>`, `${API_KEY}`, `YOUR_API_KEY`…). A random key that merely
/// contains such a word somewhere is not one: the word must be the value, or
/// the value must be made of letters and separators only.
pub fn is_placeholder(v: &[u8]) -> bool {
    if v.is_empty() || v.iter().all(|&c| c == v[0]) || matches!(v[0], b'<' | b'{' | b'$' | b'[') {
        return true;
    }
    let lower: Vec<u8> = v.iter().take(64).map(u8::to_ascii_lowercase).collect();
    const WORDS: &[&[u8]] = &[
        b"redacted",
        b"your",
        b"placeholder",
        b"changeme",
        b"example",
        b"filtered",
        b"undefined",
        b"null",
        b"xxxx",
        b"****",
    ];
    let wordy = v
        .iter()
        .all(|c| c.is_ascii_alphabetic() || matches!(c, b'_' | b'-' | b'.' | b'*'));
    WORDS
        .iter()
        .any(|w| lower == *w || (wordy && memchr::memmem::find(&lower, w).is_some()))
}

/// Whether a value under an ambiguous credential name (`key`, `token`) looks
/// like a secret rather than a word, number, id or placeholder: 16 to 512
/// bytes, not all digits, not all letters unless their case changes like
/// random text does, varied enough (entropy >= 3 bits).
pub fn looks_like_secret(v: &[u8]) -> bool {
    (16..=512).contains(&v.len())
        && (!v.iter().all(u8::is_ascii_alphabetic) || random_case(v))
        && !v.iter().all(u8::is_ascii_digit)
        && !v.contains(&b' ')
        && !is_placeholder(v)
        && shannon_entropy(v) >= 3.0
}

/// Whether the letters of `v` mix case the way random text does rather than
/// the way words and identifiers do. Random mixed-case text changes case
/// about every other letter and has capitals side by side; camelCase has one
/// capital per word and (acronyms aside) never two in a row. One random
/// 24-letter token in 70 has no digit at all; it is still a secret.
fn random_case(v: &[u8]) -> bool {
    let (mut flips, mut upper_pairs, mut lower_pairs) = (0, 0, 0);
    for w in v.windows(2) {
        match (w[0].is_ascii_uppercase(), w[1].is_ascii_uppercase()) {
            (true, true) => upper_pairs += 1,
            (false, false) => lower_pairs += 1,
            _ => flips += 1,
        }
    }
    upper_pairs >= 2 && lower_pairs >= 2 && flips * 4 >= v.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_letter_values_are_secret_only_when_random() {
        assert!(looks_like_secret(b"fGZbkQWqhTRxmPaEvtYLNcds"));
        assert!(looks_like_secret(b"XbTqmwRZkeLpVnaoyHcdSUfG"));
        assert!(!looks_like_secret(b"thisIsMyCallbackName"));
        assert!(!looks_like_secret(b"customerAccountReference"));
        assert!(!looks_like_secret(b"XMLHttpRequestHandler"));
        assert!(!looks_like_secret(b"abcdefghijklmnopqrstuvwx"));
        assert!(!looks_like_secret(b"ABCDEFGHIJKLMNOPQRSTUVWX"));
    }

    #[test]
    fn pairs_and_decoding() {
        let pairs: Vec<_> = query_pairs(b"a=1&&api%5Fkey=K%2B1&flag").collect();
        assert_eq!(
            pairs,
            vec![
                (&b"a"[..], &b"1"[..]),
                (b"api%5Fkey", b"K%2B1"),
                (b"flag", b"")
            ]
        );
        let mut out = Vec::new();
        assert_eq!(
            percent_decode_into(b"K%2B1+x%zz%4", &mut out, true),
            b"K+1 x%zz%4"
        );
    }

    #[test]
    fn names_normalise() {
        let mut buf = [0; 64];
        assert_eq!(normalize_name(b"apiKey", &mut buf), Some(&b"api_key"[..]));
        assert_eq!(
            normalize_name(b"X-API-Key", &mut buf),
            Some(&b"x_api_key"[..])
        );
        assert_eq!(
            normalize_name(b"api%5Fkey", &mut buf),
            Some(&b"api_key"[..])
        );
        assert_eq!(normalize_name(&[b'a'; 65], &mut buf), None);
    }

    #[test]
    fn referer_urls_split() {
        assert_eq!(
            split_url(b"https://h.example:8443/p/q?k=v#frag"),
            (&b"/p/q"[..], Some(&b"k=v"[..]))
        );
        assert_eq!(
            split_url(b"https://h.example?k=v"),
            (&b""[..], Some(&b"k=v"[..]))
        );
        assert_eq!(split_url(b"/local"), (&b"/local"[..], None));
    }

    #[test]
    fn secrets_versus_words() {
        assert!(looks_like_secret(b"9fQ2xL7pR4tK8mZ1"));
        assert!(!looks_like_secret(b"createdAtDescending"));
        assert!(!looks_like_secret(b"1700000000000000"));
        assert!(!looks_like_secret(b"REDACTED_REDACTED"));
        assert!(
            is_placeholder(b"YOUR_API_KEY") && is_placeholder(b"null") && is_placeholder(b"<key>")
        );
        // A random key that happens to contain a placeholder word is still a key.
        assert!(!is_placeholder(b"a8Fnull3kQ9zYourP2"));
    }
}
