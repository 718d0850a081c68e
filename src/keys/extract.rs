//! Turning a parsed line into keys: the key the request presented (key
//! field, Authorization, query, `$remote_user`), every key and third-party
//! credential its URLs expose, and — for the [`Scrubber`] — every credential
//! value on the line, so that nothing derived from the line can show one.
//!
//! A key in plaintext lives only inside [`Extractor::extract`] for one line.
//! It leaves as a [`KeyId`] and a [`MaskedKey`].

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::id::{KeyId, MaskedKey, mask};
use super::redact::Scrubber;
use super::secret::KeySecret;
use super::shapes::{SecretKind, is_signed_url, secret_kind};
use super::sources::{KeyName, KeySources, credential_named};
use crate::format::Record;
use crate::hash::{FastMap, tag128};
use crate::url;

/// Where on a request a key was presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeySource {
    Field,
    Authorization,
    Query,
    RemoteUser,
}

/// Where in a URL a key was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    Query,
    Path,
    Referer,
}

impl Place {
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Query => "query",
            Place::Path => "path",
            Place::Referer => "referer",
        }
    }
}

/// A key as the rest of keywatch knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef {
    pub id: KeyId,
    pub masked: MaskedKey,
    /// Index into [`Extractor::names`].
    pub name: Option<u32>,
    /// Listed as revoked in the configuration (by id or by prefix).
    pub revoked: bool,
}

/// A key found in a URL.
#[derive(Clone, Copy, Debug)]
pub struct Exposure {
    pub key: KeyRef,
    pub place: Place,
}

/// A third-party credential (or a credential-named parameter's secret
/// value) found in a URL. `key` identifies the value the way keys are.
#[derive(Clone, Debug)]
pub struct SecretHit {
    /// `None` for a credential-named parameter whose value has no known shape.
    pub kind: Option<SecretKind>,
    /// The (normalised) parameter name, for credential-named parameters.
    pub param: Option<String>,
    pub key: KeyRef,
    pub place: Place,
}

/// The keys of one request.
pub struct Keyed<'s> {
    pub key: Option<KeyRef>,
    pub source: Option<KeySource>,
    pub exposures: &'s [Exposure],
    pub secrets: &'s [SecretHit],
    /// Every credential value on the line, to mask in whatever is shown.
    pub scrub: &'s Scrubber,
}

/// Turns the fields of a [`Record`] into keys. Shared by all threads.
pub struct Extractor {
    mac: Hmac<Sha256>,
    sources: KeySources,
    /// Configured key names (printable); [`KeyRef::name`] indexes this.
    pub names: Vec<String>,
    names_by_id: FastMap<KeyId, u32>,
    names_by_prefix: Vec<(Vec<u8>, u32)>,
    /// Normalised query parameter names that carry keys.
    param_classes: FastMap<Vec<u8>, ParamClass>,
    revoked_ids: crate::hash::FastSet<KeyId>,
    revoked_prefixes: Vec<Vec<u8>>,
}

/// How many distinct keys each thread remembers the id of.
const ID_CACHE_LIMIT: usize = 1 << 14;

/// How deep query values that are URLs or query strings themselves
/// (`redirect=%2Fcb%3Fapi_key%3DK`) are looked into.
const MAX_NESTING: u8 = 3;

/// Per-thread buffers and the id cache. The cache is keyed by a 128-bit
/// seeded hash of the key ([`tag128`]), so it holds no key.
#[derive(Default)]
pub struct KeyScratch {
    secrets: Vec<SecretHit>,
    decoded: Vec<u8>,
    presented: Vec<u8>,
    value: Vec<u8>,
    exposures: Vec<Exposure>,
    referer: Vec<u8>,
    cache: FastMap<u128, KeyRef>,
    /// The credential values of the current line.
    pub scrub: Scrubber,
}

/// What a query parameter's name says about its value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ParamClass {
    Key,
    MaybeKey,
    Other,
}

impl Extractor {
    pub fn new(secret: &KeySecret, sources: KeySources, names: &[KeyName]) -> Result<Self, String> {
        let mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&secret.0).map_err(|e| e.to_string())?;
        let mut param_classes = FastMap::default();
        for p in &sources.ambiguous_params {
            param_classes.insert(p.as_bytes().to_vec(), ParamClass::MaybeKey);
        }
        for p in &sources.query_params {
            param_classes.insert(p.as_bytes().to_vec(), ParamClass::Key);
        }
        let mut ex = Extractor {
            mac,
            sources,
            names: Vec::new(),
            names_by_id: FastMap::default(),
            names_by_prefix: Vec::new(),
            param_classes,
            revoked_ids: crate::hash::FastSet::default(),
            revoked_prefixes: Vec::new(),
        };
        for (i, n) in names.iter().enumerate() {
            let idx = i as u32;
            // A name is shown everywhere a key is: printable, like all other text.
            ex.names
                .push(crate::format::escape::printable(n.name.as_bytes()));
            let shown = &ex.names[i];
            match (&n.id, &n.prefix) {
                (Some(id), None) => {
                    let id = id.parse().map_err(|()| {
                        format!(
                            "keys.names[{i}] ({shown}): id {} is not 16 hex characters",
                            mask(id.as_bytes(), &[])
                        )
                    })?;
                    ex.names_by_id.insert(id, idx);
                }
                (None, Some(p)) if !p.is_empty() => {
                    ex.names_by_prefix.push((p.as_bytes().to_vec(), idx))
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "keys.names[{i}] ({shown}): prefix is empty; give the first characters of the key"
                    ));
                }
                _ => {
                    return Err(format!(
                        "keys.names[{i}] ({shown}): give exactly one of `id` or `prefix`"
                    ));
                }
            }
        }
        // The longest prefix wins.
        ex.names_by_prefix
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(ex)
    }

    /// Marks keys as revoked, by key id (16 hex characters) or by prefix.
    /// Returns the ids that are not key ids.
    pub fn set_revoked(&mut self, ids: &[String], prefixes: &[String]) -> Result<(), String> {
        for id in ids {
            let parsed = id
                .trim()
                .parse()
                .map_err(|()| {
                    format!(
                        "{} is not a key id (16 hex characters, as keywatch prints them); list key ids, never the keys themselves",
                        mask(id.as_bytes(), &[])
                    )
                })?;
            self.revoked_ids.insert(parsed);
        }
        self.revoked_prefixes = prefixes
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.as_bytes().to_vec())
            .collect();
        Ok(())
    }

    /// The key id of a raw key (no cache).
    pub fn key_id(&self, raw: &[u8]) -> KeyId {
        let mut mac = self.mac.clone();
        mac.update(raw);
        let out = mac.finalize().into_bytes();
        let mut id = [0u8; 8];
        id.copy_from_slice(&out[..8]);
        KeyId(id)
    }

    /// The key's id, mask and name, from the thread's cache when it was seen before.
    pub fn identify(&self, raw: &[u8], s: &mut KeyScratch) -> KeyRef {
        let raw = match self.sources.logged_prefix_length {
            Some(n) if n > 0 => &raw[..raw.len().min(n)],
            _ => raw,
        };
        let tag = tag128(raw);
        if let Some(k) = s.cache.get(&tag) {
            return *k;
        }
        let id = self.key_id(raw);
        let name = self
            .names_by_prefix
            .iter()
            .find(|(p, _)| raw.starts_with(p))
            .map(|(_, i)| *i)
            .or_else(|| self.names_by_id.get(&id).copied());
        let revoked = self.revoked_ids.contains(&id)
            || self.revoked_prefixes.iter().any(|p| raw.starts_with(p));
        let k = KeyRef {
            id,
            masked: mask(raw, &self.sources.prefixes),
            name,
            revoked,
        };
        if s.cache.len() >= ID_CACHE_LIMIT {
            s.cache.clear();
        }
        s.cache.insert(tag, k);
        k
    }

    /// What a (raw) parameter name says, and whether its value is a
    /// credential that must never be shown.
    pub(super) fn classify(&self, name: &[u8]) -> (ParamClass, bool) {
        let mut buf = [0u8; 64];
        match url::normalize_name(name, &mut buf) {
            Some(n) => {
                let class = self
                    .param_classes
                    .get(n)
                    .copied()
                    .unwrap_or(ParamClass::Other);
                (
                    class,
                    class != ParamClass::Other || credential_named(n) || signature_named(n),
                )
            }
            None => (ParamClass::Other, false),
        }
    }

    /// Whether a query parameter is one whose value must not be shown.
    pub fn is_credential_param(&self, name: &[u8]) -> bool {
        self.classify(name).1
    }

    pub(super) fn has_own_prefix(&self, v: &[u8]) -> bool {
        self.sources
            .prefixes
            .iter()
            .any(|p| !p.is_empty() && v.len() >= p.len() + 8 && v.starts_with(p.as_bytes()))
    }

    /// Finds the key a request presented, every key its URLs expose, and
    /// every credential value on the line (for [`Keyed::scrub`]).
    pub fn extract<'s>(&self, rec: &Record<'_>, s: &'s mut KeyScratch) -> Keyed<'s> {
        s.exposures.clear();
        s.secrets.clear();
        s.presented.clear();
        s.scrub.clear();
        let mut source = None;
        if let Some(field) = rec.key {
            let v = field.decode();
            // Repeated headers are joined with ", "; the first is the one servers use.
            for (i, part) in v.split(|&b| b == b',').enumerate() {
                let part = part.trim_ascii();
                if part.is_empty() || part == b"-" {
                    continue;
                }
                s.scrub.add(part);
                if i == 0 {
                    s.presented.extend_from_slice(part);
                    source = Some(KeySource::Field);
                }
            }
        }
        if let Some(auth) = rec.authorization {
            // A logged Authorization header is a credential whether or not
            // it is the key keywatch attributes the request to.
            let header = auth.decode();
            let mut cred = std::mem::take(&mut s.value);
            cred.clear();
            let found = authorization_key(&header, &mut cred, &mut s.scrub);
            if found && source.is_none() && self.sources.authorization {
                s.presented.extend_from_slice(&cred);
                source = Some(KeySource::Authorization);
            }
            s.value = cred;
        }
        if let Some(q) = rec.query {
            let q = q.decode();
            if self.scan_query(&q, Place::Query, s, source.is_none(), 0) && source.is_none() {
                source = Some(KeySource::Query);
            }
        }
        if let Some(u) = rec
            .user
            .filter(|_| source.is_none() && self.sources.remote_user)
        {
            s.presented.extend_from_slice(&u.decode());
            s.scrub.add(&s.presented);
            source = Some(KeySource::RemoteUser);
        }
        if let Some(p) = rec.path {
            let p = p.decode();
            // A proxy request's absolute target may carry user:password@.
            if p.first() != Some(&b'/') {
                self.userinfo(&p, Place::Path, s);
            }
            self.scan_path(&p, Place::Path, s);
        }
        if let Some(r) = rec.referer {
            let mut buf = std::mem::take(&mut s.referer);
            let r = r.decode_into(&mut buf);
            let (path, query) = url::split_url(r);
            self.userinfo(r, Place::Referer, s);
            self.scan_path(path, Place::Referer, s);
            if let Some(q) = query {
                self.scan_query(q, Place::Referer, s, false, 0);
            }
            s.referer = buf;
        }
        let key = source.map(|_| {
            let presented = std::mem::take(&mut s.presented);
            let k = self.identify(&presented, s);
            s.presented = presented;
            k
        });
        s.presented.clear();
        // Parameter names are shown in messages; only now are all of the
        // line's values known.
        for hit in &mut s.secrets {
            if let Some(p) = &hit.param
                && s.scrub.covers(p.as_bytes())
            {
                hit.param = Some(s.scrub.scrub(p.as_bytes()));
            }
        }
        Keyed {
            key,
            source,
            exposures: &s.exposures,
            secrets: &s.secrets,
            scrub: &s.scrub,
        }
    }

    /// The userinfo of a URL (`https://user:pw@host/`, `//token@host/`):
    /// always a credential to mask; a finding when it has a password or
    /// looks like a token.
    fn userinfo(&self, url: &[u8], place: Place, s: &mut KeyScratch) {
        let Some(info) = url_userinfo(url) else {
            return;
        };
        s.scrub.add(info);
        let (user, pass) = match memchr::memchr(b':', info) {
            Some(c) => (&info[..c], &info[c + 1..]),
            None => (info, &info[..0]),
        };
        s.scrub.add(user);
        s.scrub.add(pass);
        let decoded = url::percent_decode_into(info, &mut s.decoded, false).to_vec();
        s.scrub.add(&decoded);
        let token =
            pass.is_empty() && (url::looks_like_secret(user) || secret_kind(user).is_some());
        if !pass.is_empty() || token {
            let key = self.identify(info, s);
            s.secrets.push(SecretHit {
                kind: Some(SecretKind::UrlCredentials),
                param: None,
                key,
                place,
            });
        }
    }

    /// Looks through query pairs for keys. With `attribute`, the first key
    /// found becomes the presented key. Returns whether one was attributed.
    fn scan_query(
        &self,
        query: &[u8],
        place: Place,
        s: &mut KeyScratch,
        attribute: bool,
        depth: u8,
    ) -> bool {
        let mut attributed = false;
        // Signed URLs carry credentials by design: only our own keys count there.
        let signed = (memchr::memmem::find(query, b"ignature").is_some()
            || memchr::memmem::find(query, b"sig=").is_some())
            && is_signed_url(query);
        for (name, raw_value) in url::query_pairs(query) {
            if raw_value.is_empty() {
                continue;
            }
            let (class, credential) = self.classify(name);
            let long = raw_value.len() >= 16 && !signed;
            let nested = depth < MAX_NESTING && may_nest(raw_value);
            if !credential
                && s.presented.is_empty()
                && self.sources.prefixes.is_empty()
                && !long
                && !nested
            {
                continue;
            }
            let value = url::percent_decode_into(raw_value, &mut s.value, true);
            if value.is_empty() {
                continue;
            }
            if credential {
                s.scrub.add(value);
            }
            if nested && memchr::memchr(b'=', value).is_some() {
                // The inner scan has buffers of its own; this value stays.
                let outer = std::mem::take(&mut s.value);
                self.scan_nested(&outer, place, s, depth + 1);
                s.value = outer;
            }
            let value = &s.value[..];
            // Values that are what they are by design: OAuth's `state` and
            // `code`, pagination tokens, and cursors (a value that decodes
            // to JSON). Only our own keys count there.
            let by_design = by_design(name) || decodes_to_json(value);
            let own = (!s.presented.is_empty() && value == s.presented.as_slice())
                || self.has_own_prefix(value);
            if by_design && !own {
                continue;
            }
            let is_key = match class {
                ParamClass::Key => !url::is_placeholder(value),
                ParamClass::MaybeKey => url::looks_like_secret(value),
                ParamClass::Other => false,
            } || (!s.presented.is_empty() && value == s.presented.as_slice())
                || self.has_own_prefix(value);
            if !is_key {
                if long {
                    let kind = secret_kind(value);
                    let mut buf = [0u8; 64];
                    let param = match (kind, url::normalize_name(name, &mut buf)) {
                        (None, Some(n))
                            if credential_named(n)
                                && url::looks_like_secret(value)
                                && shannon_ok(value) =>
                        {
                            Some(shown_param(name, n))
                        }
                        _ => None,
                    };
                    if kind.is_some() || param.is_some() {
                        s.scrub.add(&s.value);
                        let value = std::mem::take(&mut s.value);
                        let key = self.identify(&value, s);
                        s.value = value;
                        s.secrets.push(SecretHit {
                            kind,
                            param,
                            key,
                            place,
                        });
                    }
                }
                continue;
            }
            s.scrub.add(&s.value);
            if attribute && !attributed {
                s.presented.clear();
                s.presented.extend_from_slice(&s.value);
                attributed = true;
            }
            let value = std::mem::take(&mut s.value);
            let key = self.identify(&value, s);
            s.value = value;
            push_exposure(&mut s.exposures, key, place);
        }
        attributed
    }

    /// A query value that is itself a URL or a query string: its own
    /// parameters, userinfo and path are looked at the same way.
    fn scan_nested(&self, inner: &[u8], place: Place, s: &mut KeyScratch, depth: u8) {
        let (path, query) = url::split_url(inner);
        if memchr::memmem::find(inner, b"//").is_some() {
            self.userinfo(inner, place, s);
        }
        match query {
            Some(q) => {
                self.scan_path(path, place, s);
                self.scan_query(q, place, s, false, depth);
            }
            None => {
                self.scan_query(inner, place, s, false, depth);
            }
        }
    }

    fn scan_path(&self, path: &[u8], place: Place, s: &mut KeyScratch) {
        let own = !self.sources.prefixes.is_empty()
            || (!s.presented.is_empty()
                && (memchr::memchr(b'%', path).is_some()
                    || memchr::memmem::find(path, &s.presented).is_some()));
        for seg in url::path_segments(path) {
            if !own && seg.len() < 16 {
                continue;
            }
            let seg = if url::needs_decoding(seg, false) {
                url::percent_decode_into(seg, &mut s.decoded, false)
            } else {
                seg
            };
            let is_own = own
                && ((!s.presented.is_empty() && seg == s.presented.as_slice())
                    || self.has_own_prefix(seg));
            let kind = if is_own { None } else { secret_kind(seg) };
            if !is_own && kind.is_none() {
                continue;
            }
            s.scrub.add(seg);
            s.value.clear();
            s.value.extend_from_slice(seg);
            let value = std::mem::take(&mut s.value);
            let key = self.identify(&value, s);
            s.value = value;
            if is_own {
                push_exposure(&mut s.exposures, key, place);
            } else {
                s.secrets.push(SecretHit {
                    kind,
                    param: None,
                    key,
                    place,
                });
            }
        }
    }
}

/// A credential-named parameter as a message shows it: as the client wrote
/// it (decoded, printable), unless the name is long or has a word of 16
/// characters or more (a secret, not a word), when only its last word is
/// kept (`…_token`). The line's
/// credential values are masked in it later, with the rest of the line's.
fn shown_param(raw: &[u8], normalized: &[u8]) -> String {
    let mut decoded = Vec::new();
    let name = url::percent_decode_into(raw, &mut decoded, true);
    let secretive = name.len() > 32
        || name
            .split(|&b| matches!(b, b'_' | b'-' | b'.'))
            .any(|part| part.len() >= 16);
    if secretive {
        let last = normalized
            .rsplit(|&b| b == b'_')
            .next()
            .unwrap_or(normalized);
        format!("…_{}", String::from_utf8_lossy(last))
    } else {
        crate::format::escape::printable(name)
    }
}

/// Whether a raw query value may hold parameters of its own (`=` raw or
/// percent-encoded).
fn may_nest(raw: &[u8]) -> bool {
    memchr::memchr(b'=', raw).is_some()
        || memchr::memchr_iter(b'%', raw).any(|at| {
            // `%3D`, or `%25…` (encoded twice).
            matches!(
                raw.get(at + 1..at + 3),
                Some([b'3', b'D' | b'd']) | Some([b'2', b'5'])
            )
        })
}

/// Names of per-request signatures (`signature`, `X-Amz-Signature`, `sig`):
/// not findings, but a signed URL is a bearer capability until it expires,
/// so their values are never shown either.
fn signature_named(n: &[u8]) -> bool {
    let last = n.rsplit(|&b| b == b'_').next().unwrap_or(n);
    matches!(last, b"signature" | b"sig" | b"hmac")
}

fn push_exposure(list: &mut Vec<Exposure>, key: KeyRef, place: Place) {
    if !list.iter().any(|e| e.key.id == key.id && e.place == place) {
        list.push(Exposure { key, place });
    }
}

/// The key in an Authorization header: `Bearer`, `Token`, `ApiKey`, `Api-Key`
/// and `Key` schemes take the credential as it is; `Basic` takes the password
/// of `user:password`, or the user when the password is empty (the Stripe
/// style). Every credential part, whatever the scheme, goes to `scrub`.
fn authorization_key(header: &[u8], out: &mut Vec<u8>, scrub: &mut Scrubber) -> bool {
    let header = header.trim_ascii();
    let Some(sp) = memchr::memchr(b' ', header) else {
        scrub.add(header);
        return false;
    };
    let (scheme, cred) = (&header[..sp], header[sp + 1..].trim_ascii());
    if cred.is_empty() {
        return false;
    }
    scrub.add(cred);
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_slice() {
        b"bearer" | b"token" | b"apikey" | b"api-key" | b"key" => {
            out.extend_from_slice(cred);
            true
        }
        b"basic" => {
            let Some(decoded) = base64_decode(cred) else {
                return false;
            };
            scrub.add(&decoded);
            let (user, pass) = match memchr::memchr(b':', &decoded) {
                Some(c) => (&decoded[..c], &decoded[c + 1..]),
                None => (&decoded[..], &decoded[..0]),
            };
            let key = if pass.is_empty() { user } else { pass };
            scrub.add(key);
            out.extend_from_slice(key);
            !key.is_empty()
        }
        _ => false,
    }
}

/// The userinfo of a URL's authority: `user:pw` of `https://user:pw@host/`,
/// `token` of `//token@host/`.
pub(crate) fn url_userinfo(url: &[u8]) -> Option<&[u8]> {
    // Most URLs have no `@` at all.
    memchr::memchr(b'@', url)?;
    let rest = match memchr::memmem::find(url, b"://") {
        Some(p) => &url[p + 3..],
        None => url.strip_prefix(b"//")?,
    };
    let end = rest
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let at = memchr::memrchr(b'@', &rest[..end])?;
    (at > 0).then_some(&rest[..at])
}

/// Parameters whose values carry state by design, decided by the words of
/// the name: OAuth's `state` and `code`, and pagination (`next_token`,
/// `NextToken`, `page_token`, `continuation_token`, `cursor`…).
fn by_design(raw_name: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    let Some(n) = url::normalize_name(raw_name, &mut buf) else {
        return false;
    };
    if matches!(n, b"state" | b"code" | b"oauth_state" | b"relay_state") {
        return true;
    }
    n.split(|&b| b == b'_').any(|w| {
        matches!(
            w,
            b"next" | b"page" | b"continuation" | b"pagination" | b"cursor" | b"marker" | b"resume"
        )
    })
}

/// Whether a value is JSON, or base64 of JSON (a pagination cursor).
fn decodes_to_json(v: &[u8]) -> bool {
    let json = |b: &[u8]| {
        let t = b.trim_ascii();
        matches!(
            (t.first(), t.last()),
            (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
        ) && serde_json::from_slice::<serde::de::IgnoredAny>(t).is_ok()
    };
    // Base64 of text that starts with `{`, `[` or ASCII white space starts
    // with one of these (the first byte's top six bits): a cheap test
    // before decoding, which allocates.
    let may_be_json = |c: &u8| matches!(c, b'e' | b'W' | b'I' | b'C' | b'D');
    json(v)
        || (v.len() >= 8
            && v.first().is_some_and(may_be_json)
            && base64_decode(v).is_some_and(|d| json(&d)))
}

/// The credential-parameter rule's entropy floor (gitleaks' generic rule: 3.5 bits).
fn shannon_ok(v: &[u8]) -> bool {
    url::shannon_entropy(v) > 3.5
}

/// Base64 (standard or URL-safe, padded or not); `None` if it is not.
fn base64_decode(b: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let url_safe = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(b).or_else(|_| url_safe.decode(b)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_by_design_are_told_by_structure() {
        use base64::Engine as _;
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"after":"2026-11-27T10:00:00Z","id":8812734}"#);
        assert!(decodes_to_json(cursor.as_bytes()));
        assert!(decodes_to_json(br#"{"page":2}"#));
        // Whatever starts the JSON, the cheap test before decoding lets it by.
        for j in [
            &b" [1, 2, 3]"[..],
            b"\n{\"a\": 1}",
            b"\t[]   ",
            b"\r{}    ",
            b"\x0c[0]   ",
        ] {
            for engine in [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                let b = engine.encode(j);
                assert!(decodes_to_json(b.as_bytes()), "{b}");
            }
        }
        assert!(!decodes_to_json(b"Zm9vYmFyYmF6cXV4cXV1eA"));
        assert!(!decodes_to_json(b"sk_live_4eC39HqLyjWDarjtT1zdp7dc"));
        for n in [
            "state",
            "code",
            "NextToken",
            "next_page_token",
            "pageToken",
            "cursor",
        ] {
            assert!(by_design(n.as_bytes()), "{n}");
        }
        for n in ["token", "api_key", "access_token", "auth", "secret"] {
            assert!(!by_design(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn authorization_schemes() {
        let mut out = Vec::new();
        let mut scrub = Scrubber::default();
        assert!(authorization_key(b"Bearer abc.def", &mut out, &mut scrub));
        assert_eq!(out, b"abc.def");
        out.clear();
        // "user:" as Basic credentials: the key is the user part.
        assert!(authorization_key(b"Basic dXNlcjo=", &mut out, &mut scrub));
        assert_eq!(out, b"user");
        out.clear();
        assert!(authorization_key(
            b"Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            &mut out,
            &mut scrub
        ));
        assert_eq!(out, b"opensesame");
        assert!(!authorization_key(
            b"Negotiate",
            &mut Vec::new(),
            &mut scrub
        ));
    }

    #[test]
    fn userinfo_of_absolute_and_scheme_relative_urls() {
        assert_eq!(url_userinfo(b"https://u:p@h.example/x"), Some(&b"u:p"[..]));
        assert_eq!(url_userinfo(b"//tok@h/x"), Some(&b"tok"[..]));
        assert_eq!(url_userinfo(b"https://h.example/a@b"), None);
        assert_eq!(url_userinfo(b"/path@x"), None);
    }

    #[test]
    fn key_ids_depend_on_the_secret() {
        let a = Extractor::new(
            &KeySecret::from_bytes(b"0123456789abcdef"),
            KeySources::default(),
            &[],
        )
        .unwrap();
        let b = Extractor::new(
            &KeySecret::from_bytes(b"fedcba9876543210"),
            KeySources::default(),
            &[],
        )
        .unwrap();
        assert_ne!(a.key_id(b"k"), b.key_id(b"k"));
        assert_eq!(a.key_id(b"k"), a.key_id(b"k"));
        assert_eq!(a.key_id(b"k").to_string().len(), 16);
    }
}
