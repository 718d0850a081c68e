//! Redaction by construction: one [`Scrubber`] per line knows every
//! credential value the extractor found on it (presented keys in any field,
//! values of credential-named parameters, third-party shapes, URL userinfo),
//! and every string derived from the line that leaves the parse goes through
//! it: evidence, endpoints, the first client, parameter names in messages,
//! and previews of lines that did not parse.
//!
//! A value is masked wherever it occurs, in whatever form: as it is,
//! percent-encoded once or twice, `\xHH`-escaped (nginx's and keywatch's own
//! escaping), or inside base64 (`Basic` credentials of `key:` or `user:key`
//! sent elsewhere); and not only whole: any piece of [`PIECE`] characters or
//! more is masked too, so a key cut in two by `%2F` or shortened to its
//! first 20 characters still does not show.
//!
//! Hand-written because it runs on the hot path (every request's endpoint is
//! checked against the request's key): a value is indexed by its 6-byte
//! blocks at a stride of 6, since any common run of 12 bytes contains one
//! whole block; text is scanned once per decoding level with a 256-bit
//! filter in front of the block table.

use std::ops::Range;

use super::extract::{Extractor, url_userinfo};

/// What a masked value is replaced by.
pub const REDACTED: &str = "[REDACTED]";
/// Pieces this long (or longer) of a known value are masked wherever they occur.
pub const PIECE: usize = 12;
/// Values shorter than [`PIECE`] but at least this long are masked where they
/// occur whole; shorter ones are too common to mask anywhere but their place.
const MIN_WHOLE: usize = 8;
/// The block length of the index; any common run of `2 × BLOCK` bytes holds
/// a whole block of the value.
const BLOCK: usize = 6;
/// How many times text is percent- and `\xHH`-decoded to look for values.
const DECODE_LEVELS: usize = 3;
/// Base64 runs shorter than this are not decoded.
const MIN_BASE64_RUN: usize = 16;
/// Decoded bytes a base64 run must share with a value (12 base64 characters
/// hold at least 8 whole bytes).
const MIN_BASE64_BYTES: usize = 8;
/// Values one line may register and the longest value indexed. A line past
/// either is hostile: the scrubber then also masks every long token
/// (it fails closed).
const MAX_VALUES: usize = 64;
const MAX_VALUE_LEN: usize = 4096;
/// Up to this many blocks are searched in order; past it, by binary search.
const LINEAR_BLOCKS: usize = 24;

/// The credential values of one line; see the module documentation.
#[derive(Default)]
pub struct Scrubber {
    arena: Vec<u8>,
    values: Vec<Range<usize>>,
    /// By block content once there are more than [`LINEAR_BLOCKS`] (the
    /// common line has one key: a few blocks, looked through in order).
    blocks: Vec<Block>,
    sorted: bool,
    filter: [u64; 4],
    /// The first bytes of the blocks: most positions of a text are passed
    /// over on one lookup.
    firsts: [u64; 4],
    overflow: bool,
}

#[derive(Clone, Copy)]
struct Block {
    bytes: u64,
    value: u32,
    offset: u32,
}

fn filter_bit(bytes: u64) -> usize {
    (bytes.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize
}

/// The `BLOCK` bytes at `p` as a number (`p + BLOCK <= text.len()`).
fn load(text: &[u8], p: usize) -> u64 {
    if p + 8 <= text.len() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&text[p..p + 8]);
        u64::from_le_bytes(b) & 0xFFFF_FFFF_FFFF
    } else {
        let mut b = [0u8; 8];
        b[..BLOCK].copy_from_slice(&text[p..p + BLOCK]);
        u64::from_le_bytes(b)
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

impl Scrubber {
    /// Forgets the previous line's values.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.values.clear();
        self.blocks.clear();
        self.sorted = false;
        self.filter = [0; 4];
        self.firsts = [0; 4];
        self.overflow = false;
    }

    /// Whether the line has any credential value at all.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && !self.overflow
    }

    /// Registers a credential value (decoded bytes). Short values and
    /// repeats are ignored.
    pub fn add(&mut self, v: &[u8]) {
        if v.len() < MIN_WHOLE || self.values.iter().any(|r| &self.arena[r.clone()] == v) {
            return;
        }
        if self.values.len() >= MAX_VALUES || v.len() > MAX_VALUE_LEN {
            self.overflow = true;
            if self.values.len() >= MAX_VALUES {
                return;
            }
        }
        let v = &v[..v.len().min(MAX_VALUE_LEN)];
        let start = self.arena.len();
        self.arena.extend_from_slice(v);
        let index = self.values.len() as u32;
        self.values.push(start..self.arena.len());
        for offset in (0..=v.len() - BLOCK).step_by(BLOCK) {
            let bytes = load(v, offset);
            let bit = filter_bit(bytes);
            self.filter[bit >> 6] |= 1 << (bit & 63);
            let first = usize::from(v[offset]);
            self.firsts[first >> 6] |= 1 << (first & 63);
            let block = Block {
                bytes,
                value: index,
                offset: offset as u32,
            };
            if self.sorted {
                let at = self.blocks.partition_point(|b| b.bytes < bytes);
                self.blocks.insert(at, block);
            } else {
                self.blocks.push(block);
            }
        }
        if !self.sorted && self.blocks.len() > LINEAR_BLOCKS {
            self.blocks.sort_unstable_by_key(|b| b.bytes);
            self.sorted = true;
        }
    }

    /// The blocks whose bytes are `bytes`.
    fn blocks_of(&self, bytes: u64) -> impl Iterator<Item = &Block> {
        let (from, all) = if self.sorted {
            (self.blocks.partition_point(|b| b.bytes < bytes), false)
        } else {
            (0, true)
        };
        self.blocks[from..]
            .iter()
            .take_while(move |b| all || b.bytes == bytes)
            .filter(move |b| b.bytes == bytes)
    }

    fn value(&self, i: u32) -> &[u8] {
        &self.arena[self.values[i as usize].clone()]
    }

    /// Ranges of `text` (as it is, no decoding) that hold a piece of a value.
    fn find_level(&self, text: &[u8], out: &mut Vec<Range<usize>>) {
        if self.overflow {
            long_tokens(text, out);
        }
        if self.blocks.is_empty() || text.len() < MIN_WHOLE {
            return;
        }
        let mut covered = 0;
        for p in 0..=text.len() - BLOCK {
            let first = usize::from(text[p]);
            if self.firsts[first >> 6] & (1 << (first & 63)) == 0 {
                continue;
            }
            let bytes = load(text, p);
            let bit = filter_bit(bytes);
            if self.filter[bit >> 6] & (1 << (bit & 63)) == 0 {
                continue;
            }
            for b in self.blocks_of(bytes) {
                let v = self.value(b.value);
                let off = b.offset as usize;
                let mut left = 0;
                while left < p && left < off && text[p - left - 1] == v[off - left - 1] {
                    left += 1;
                }
                let mut right = 0;
                while p + BLOCK + right < text.len()
                    && off + BLOCK + right < v.len()
                    && text[p + BLOCK + right] == v[off + BLOCK + right]
                {
                    right += 1;
                }
                let (start, end) = (p - left, p + BLOCK + right);
                if (end - start >= PIECE || end - start == v.len()) && end > covered {
                    out.push(start..end);
                    covered = end;
                }
            }
        }
    }

    /// Ranges of `text` whose base64 decodes to a piece of a value.
    fn find_base64(&self, text: &[u8], out: &mut Vec<Range<usize>>) {
        if self.values.is_empty() || text.len() < MIN_BASE64_RUN {
            return;
        }
        let is_b64 = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
        let mut i = 0;
        while i < text.len() {
            if !is_b64(text[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < text.len() && is_b64(text[i]) {
                i += 1;
            }
            if i - start >= MIN_BASE64_RUN {
                self.base64_run(&text[start..i], start, out);
            }
        }
    }

    fn base64_run(&self, run: &[u8], at: usize, out: &mut Vec<Range<usize>>) {
        let sextet = |c: u8| -> u32 {
            match c {
                b'A'..=b'Z' => u32::from(c - b'A'),
                b'a'..=b'z' => u32::from(c - b'a') + 26,
                b'0'..=b'9' => u32::from(c - b'0') + 52,
                b'+' | b'-' => 62,
                _ => 63,
            }
        };
        let mut decoded = Vec::with_capacity(run.len());
        for align in 0..4.min(run.len()) {
            decoded.clear();
            for group in run[align..].chunks(4) {
                let n = group
                    .iter()
                    .enumerate()
                    .fold(0u32, |acc, (k, &c)| acc | sextet(c) << (18 - 6 * k));
                let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
                decoded.extend_from_slice(&bytes[..(group.len() * 6 / 8)]);
            }
            for r in common_runs(&decoded, self, MIN_BASE64_BYTES) {
                let first = at + align + r.start / 3 * 4;
                let last = (at + align + r.end.div_ceil(3) * 4).min(at + run.len());
                out.push(first..last);
            }
        }
    }

    /// Every range of `text` that holds a value or a piece of one, in any of
    /// the forms the module documentation lists, merged and in order.
    pub fn find(&self, text: &[u8]) -> Vec<Range<usize>> {
        self.find_with(text, true)
    }

    /// [`Scrubber::find`] without looking into base64: for text split at
    /// `/` (paths), where a base64 run is rarely whole.
    pub fn find_plain(&self, text: &[u8]) -> Vec<Range<usize>> {
        self.find_with(text, false)
    }

    fn find_with(&self, text: &[u8], base64: bool) -> Vec<Range<usize>> {
        let mut ranges = Vec::new();
        if self.is_empty() {
            return ranges;
        }
        self.find_level(text, &mut ranges);
        if base64 {
            self.find_base64(text, &mut ranges);
        }
        let mut level: Option<Vec<u8>> = None;
        let mut to_text: Option<Vec<Range<usize>>> = None;
        for _ in 0..DECODE_LEVELS {
            let Some((decoded, map)) = decode_once(level.as_deref().unwrap_or(text)) else {
                break;
            };
            let map: Vec<Range<usize>> = match &to_text {
                None => map,
                Some(prev) => map
                    .iter()
                    .map(|r| prev[r.start].start..prev[r.end - 1].end)
                    .collect(),
            };
            let mut found = Vec::new();
            self.find_level(&decoded, &mut found);
            if base64 {
                self.find_base64(&decoded, &mut found);
            }
            ranges.extend(
                found
                    .into_iter()
                    .filter(|r| r.start < r.end)
                    .map(|r| map[r.start].start..map[r.end - 1].end),
            );
            level = Some(decoded);
            to_text = Some(map);
        }
        merge(ranges)
    }

    /// Whether `text` holds any value or piece of one.
    pub fn covers(&self, text: &[u8]) -> bool {
        !self.find(text).is_empty()
    }

    /// `text` with every value and piece of one replaced by `[REDACTED]`,
    /// made printable.
    pub fn scrub(&self, text: &[u8]) -> String {
        crate::format::escape::printable(&replace(text, &self.find(text)))
    }
}

/// Merges overlapping and touching ranges, in order.
fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `text` with each of `ranges` (merged, in order) replaced by `[REDACTED]`.
fn replace(text: &[u8], ranges: &[Range<usize>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        out.extend_from_slice(&text[at..r.start]);
        out.extend_from_slice(REDACTED.as_bytes());
        at = r.end;
    }
    out.extend_from_slice(&text[at..]);
    out
}

/// One pass of percent- and `\xHH`-decoding, with the source range of every
/// decoded byte; `None` when there was nothing to decode.
fn decode_once(text: &[u8]) -> Option<(Vec<u8>, Vec<Range<usize>>)> {
    memchr::memchr2(b'%', b'\\', text)?;
    let mut out = Vec::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    while i < text.len() {
        let pair = |j: usize| Some(hex(*text.get(j)?)? << 4 | hex(*text.get(j + 1)?)?);
        let (byte, len) = match text[i] {
            b'%' => pair(i + 1).map_or((b'%', 1), |b| (b, 3)),
            b'\\' if text.get(i + 1) == Some(&b'x') => pair(i + 2).map_or((b'\\', 1), |b| (b, 4)),
            b => (b, 1),
        };
        changed |= len > 1;
        out.push(byte);
        map.push(i..i + len);
        i += len;
    }
    changed.then_some((out, map))
}

/// Runs of `text` of at least `min` bytes shared with a value (a plain scan:
/// only decoded base64, which is short and rare, comes here).
fn common_runs(text: &[u8], s: &Scrubber, min: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for r in &s.values {
        let v = &s.arena[r.clone()];
        if v.len() < min || text.len() < min {
            continue;
        }
        // Any shared run of `min` bytes holds the value's bytes at some
        // multiple of `min / 2`: look those up in the text.
        let stride = min / 2;
        for off in (0..=v.len() - stride).step_by(stride) {
            let needle = &v[off..off + stride];
            for p in memchr::memmem::find_iter(text, needle) {
                let mut left = 0;
                while left < p && left < off && text[p - left - 1] == v[off - left - 1] {
                    left += 1;
                }
                let mut right = 0;
                while p + stride + right < text.len()
                    && off + stride + right < v.len()
                    && text[p + stride + right] == v[off + stride + right]
                {
                    right += 1;
                }
                if left + stride + right >= min {
                    out.push(p - left..p + stride + right);
                }
            }
        }
    }
    out
}

/// Every run of [`PIECE`] or more token characters (what a key is made of).
fn long_tokens(text: &[u8], out: &mut Vec<Range<usize>>) {
    let token = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'+');
    let mut i = 0;
    while i < text.len() {
        let start = i;
        while i < text.len() && token(text[i]) {
            i += 1;
        }
        if i - start >= PIECE {
            out.push(start..i);
        }
        i += 1;
    }
}

impl Extractor {
    /// A URL (path, optional query) ready to show: the value of every
    /// credential-named parameter is `[REDACTED]`, and so is every piece of
    /// the line's credential values anywhere else; the rest is kept as
    /// logged and made printable.
    pub fn redact_url(&self, path: &[u8], query: Option<&[u8]>, scrub: &Scrubber) -> String {
        let mut out = Vec::with_capacity(path.len() + query.map_or(0, <[u8]>::len) + 16);
        out.extend_from_slice(path);
        if let Some(q) = query {
            out.push(b'?');
            self.redact_query(q, &mut out, 0);
        }
        scrub.scrub(&out)
    }

    /// Copies `query` to `out` with credential values redacted, looking into
    /// values that are query strings or URLs themselves.
    fn redact_query(&self, query: &[u8], out: &mut Vec<u8>, depth: u8) {
        for (i, part) in query.split(|&b| b == b'&').enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            let Some(eq) = memchr::memchr(b'=', part) else {
                out.extend_from_slice(part);
                continue;
            };
            let (name, value) = (&part[..eq], &part[eq + 1..]);
            out.extend_from_slice(&part[..=eq]);
            if value.is_empty() {
                continue;
            }
            if self.is_credential_param(name) {
                out.extend_from_slice(REDACTED.as_bytes());
                continue;
            }
            // `cb=https%3A%2F%2Fh%2F%3Fapi_key%3DK`: its parameters are
            // parameters too (the value is shown decoded once).
            let mut decoded = Vec::new();
            let inner = crate::url::percent_decode_into(value, &mut decoded, true);
            if depth < 2 && inner != value && memchr::memchr(b'=', inner).is_some() {
                let inner = inner.to_vec();
                let (head, q) = match memchr::memchr(b'?', &inner) {
                    Some(at) => (&inner[..=at], &inner[at + 1..]),
                    None if memchr::memchr(b'/', &inner).is_none() => (&inner[..0], &inner[..]),
                    None => {
                        out.extend_from_slice(value);
                        continue;
                    }
                };
                out.extend_from_slice(head);
                self.redact_query(q, out, depth + 1);
            } else {
                out.extend_from_slice(value);
            }
        }
    }

    /// The start of a line that did not parse, ready to show: every value
    /// after a credential-named parameter (whatever its shape), every URL
    /// userinfo and every piece of those anywhere in the line is
    /// `[REDACTED]`, as is every token that looks like a secret or is
    /// [`PIECE`] characters or longer; the last token is masked when the
    /// line was cut inside it.
    pub fn preview(&self, line: &[u8]) -> String {
        const SHOWN: usize = 120;
        let mut scrub = Scrubber::default();
        let mut masked: Vec<Range<usize>> = Vec::new();
        // Credential values anywhere in the whole line, not just its start.
        let mut i = 0;
        while let Some(eq) = memchr::memchr(b'=', &line[i..]).map(|e| e + i) {
            let name_start = line[..eq]
                .iter()
                .rposition(|&c| {
                    !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'%'))
                })
                .map_or(0, |p| p + 1);
            let value_end = line[eq + 1..]
                .iter()
                .position(|&c| matches!(c, b'&' | b' ' | b'"' | b'\'' | b';' | b',' | b'#'))
                .map_or(line.len(), |p| eq + 1 + p);
            if name_start < eq
                && value_end > eq + 1
                && self.is_credential_param(&line[name_start..eq])
            {
                let value = &line[eq + 1..value_end];
                scrub.add(value);
                let mut decoded = Vec::new();
                scrub.add(crate::url::percent_decode_into(value, &mut decoded, true));
                masked.push(eq + 1..value_end);
            }
            i = eq + 1;
        }
        let mut at = 0;
        while let Some(p) = memchr::memmem::find(&line[at..], b"//").map(|p| p + at) {
            if let Some(info) = url_userinfo(&line[p..]) {
                let start = p + 2;
                // Only a userinfo within one URL: no space or quote in it.
                if !info.iter().any(|&c| matches!(c, b' ' | b'"')) {
                    scrub.add(info);
                    masked.push(start..start + info.len());
                }
            }
            at = p + 2;
        }
        let head = &line[..line.len().min(SHOWN)];
        masked.retain(|r| r.start < head.len());
        for r in &mut masked {
            r.end = r.end.min(head.len());
        }
        masked.extend(scrub.find(head));
        // Tokens: anything secret-looking, anything long, and a cut one.
        let is_sep = |b: u8| {
            matches!(
                b,
                b' ' | b'"' | b'?' | b'&' | b'=' | b'/' | b',' | b':' | b'[' | b']' | b'{' | b'}'
            )
        };
        let mut start = 0;
        for i in 0..=head.len() {
            if i == head.len() || is_sep(head[i]) {
                let tok = &head[start..i];
                let cut = i == head.len() && line.len() > head.len();
                if (cut && tok.len() >= 4)
                    || tok.len() >= PIECE
                    || super::shapes::secret_kind(tok).is_some()
                {
                    masked.push(start..i);
                }
                start = i + 1;
            }
        }
        let mut s = crate::format::escape::printable(&replace(head, &merge(masked)));
        if line.len() > head.len() {
            s.push('…');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random key, made at run time like every test key.
    fn key() -> String {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        bytes
            .iter()
            .map(|b| ALNUM[usize::from(*b) % ALNUM.len()] as char)
            .collect()
    }

    fn scrubber(values: &[&str]) -> Scrubber {
        let mut s = Scrubber::default();
        values.iter().for_each(|v| s.add(v.as_bytes()));
        s
    }

    #[test]
    fn a_value_is_masked_in_every_form_and_piece() {
        let k = key();
        let s = scrubber(&[&k]);
        let pct: String = k.bytes().map(|b| format!("%{b:02X}")).collect();
        let twice = pct.replace('%', "%25");
        let esc: String = k.bytes().map(|b| format!("\\x{b:02X}")).collect();
        for text in [
            format!("/v1/x/{k}.json"),
            format!("/v1/{}%2F{}/items", &k[..16], &k[16..]),
            format!("&x={}", &k[..20]),
            format!("&x=%22{k}%22"),
            format!("&x=%{k}"),
            format!("/a/{pct}/b"),
            format!("/a/{twice}/b"),
            format!("/a/{esc}/b"),
        ] {
            let out = s.scrub(text.as_bytes());
            assert!(out.contains(REDACTED), "{text} -> {out}");
            for w in k.as_bytes().windows(PIECE) {
                assert!(
                    !out.contains(std::str::from_utf8(w).unwrap()),
                    "{text} -> {out}"
                );
            }
        }
        assert_eq!(s.scrub(b"/v1/items?limit=20"), "/v1/items?limit=20");
    }

    #[test]
    fn base64_of_a_key_is_masked() {
        use base64::Engine as _;
        let k = key();
        let s = scrubber(&[&k]);
        for plain in [format!("{k}:"), format!("someone:{k}"), format!("x{k}")] {
            let b64 = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
            let out = s.scrub(format!("GET /h?x={b64}&y=1").as_bytes());
            let kept = out.split(REDACTED).map(str::len).max().unwrap_or(0);
            for w in b64.as_bytes().windows(PIECE + 4) {
                assert!(
                    !out.contains(std::str::from_utf8(w).unwrap()),
                    "{b64} -> {out} ({kept})"
                );
            }
        }
    }

    #[test]
    fn previews_mask_credential_values_and_userinfo() {
        let ex = Extractor::new(
            &super::super::KeySecret::from_bytes(b"0123456789abcdef"),
            super::super::KeySources::default(),
            &[],
        )
        .unwrap();
        let out = ex.preview(b"1.2.3.4 - [x] \"GET /a?api_key=abcdefghijkl&x=1 //u:pw12345@h/\"");
        assert!(!out.contains("abcdefghijkl"), "{out}");
        assert!(!out.contains("pw12345"), "{out}");
        assert!(out.contains("x=1"), "{out}");
    }
}
