//! API keys: where a request's key comes from, and what it becomes.
//!
//! A key in plaintext lives only inside [`Extractor::extract`] for one line.
//! It leaves as a [`KeyId`] (HMAC-SHA256 under a per-install secret, so ids
//! cannot be checked against guessed keys offline) and a [`MaskedKey`] for
//! people. Nothing else of the key is kept, written or shown.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::format::Record;
use crate::hash::{FastMap, tag128};
use crate::url;

/// The environment variable that gives the key-id secret directly.
pub const SECRET_ENV: &str = "KEYWATCH_KEY_SECRET";
/// The file in the state directory that holds a generated secret.
pub const SECRET_FILE: &str = "key-secret";

/// A key's stable identifier: the first 8 bytes (16 hex characters) of
/// HMAC-SHA256(secret, key).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
    pub kind: Option<crate::detect::shapes::SecretKind>,
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
}

/// Last name tokens that make a query parameter a credential (`db_password`,
/// `refresh_token`, `session_key`…), checked on names keywatch does not take
/// as API keys.
const CREDENTIAL_SUFFIXES: &[&str] = &[
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "apikey",
    "auth",
    "session",
    "sessionid",
    "credential",
    "credentials",
];

/// Names whose last token looks like a credential but which never carry one.
const NOT_CREDENTIALS: &[&str] = &[
    "sort_key",
    "primary_key",
    "partition_key",
    "public_key",
    "publishable_key",
    "idempotency_key",
    "cache_key",
    "key_id",
    "public_token",
    "csrf_token",
    "xsrf_token",
    "page_token",
    "next_page_token",
    "continuation_token",
    "cursor_token",
];

/// Whether a normalised parameter name is credential-like by its last token.
fn credential_named(n: &[u8]) -> bool {
    let last = n.rsplit(|&b| b == b'_').next().unwrap_or(n);
    CREDENTIAL_SUFFIXES.iter().any(|s| s.as_bytes() == last)
        && !NOT_CREDENTIALS.iter().any(|s| s.as_bytes() == n)
}

/// A name for a key, by id or by a prefix of the key.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyName {
    pub name: String,
    pub id: Option<String>,
    pub prefix: Option<String>,
}

/// Where keys are looked for.
#[derive(Clone, Debug)]
pub struct KeySources {
    /// Log variables that hold a key or key id.
    pub fields: Vec<String>,
    pub authorization: bool,
    pub remote_user: bool,
    /// Query parameter names whose every value is a key (normalised).
    pub query_params: Vec<String>,
    /// Names that carry a key only when the value looks like a secret.
    pub ambiguous_params: Vec<String>,
    /// Prefixes of this API's keys, for finding them anywhere in a URL.
    pub prefixes: Vec<String>,
    /// When the key field logs only the first N characters of each key (the
    /// recommended nginx `map`), keys found elsewhere are cut to N characters
    /// too, so that a key gets one id wherever it was seen.
    pub logged_prefix_length: Option<usize>,
}

/// Log variables that hold keys unless configured otherwise.
pub const DEFAULT_FIELDS: &[&str] = &[
    "api_key_id",
    "http_x_api_key",
    "http_api_key",
    "http_apikey",
    "http_x_api_token",
    "http_x_auth_token",
    "api_key",
    "key_id",
];

/// Query parameters whose value is a key whatever it looks like.
pub const DEFAULT_QUERY_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "x_api_key",
    "api_token",
    "apitoken",
    "access_token",
    "accesstoken",
    "access_key",
    "accesskey",
    "auth_token",
    "authtoken",
    "private_token",
    "client_secret",
    "secret_key",
    "app_key",
    "appkey",
    "subscription_key",
    "developer_key",
    "x_auth_token",
    "token_key",
];

/// Query parameters that carry a key only when the value looks like one
/// (`key=name` and `token=page2` are common and harmless).
pub const AMBIGUOUS_QUERY_PARAMS: &[&str] = &[
    "key",
    "token",
    "auth",
    "secret",
    "bearer",
    "apikey_id",
    "password",
    "passwd",
    "pwd",
];

impl Default for KeySources {
    fn default() -> Self {
        KeySources {
            fields: DEFAULT_FIELDS.iter().map(|s| s.to_string()).collect(),
            authorization: true,
            remote_user: false,
            query_params: DEFAULT_QUERY_PARAMS.iter().map(|s| s.to_string()).collect(),
            ambiguous_params: AMBIGUOUS_QUERY_PARAMS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            prefixes: Vec::new(),
            logged_prefix_length: None,
        }
    }
}

/// Problems with the key-id secret.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error(
        "{SECRET_ENV} is shorter than 16 characters; use a long random value (for example `openssl rand -hex 32`)"
    )]
    EnvTooShort,
    #[error(
        "key secret file {path}: {source}; create it with a long random value or unset key_secret_file"
    )]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key secret file {path} holds fewer than 16 characters; put a long random value in it")]
    FileTooShort { path: PathBuf },
    #[error(
        "cannot create the key secret in {path}: {source}; pass --state DIR with a writable directory or set {SECRET_ENV}"
    )]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The per-install secret under which key ids are computed.
pub struct KeySecret(Vec<u8>);

impl KeySecret {
    pub fn from_bytes(b: &[u8]) -> Self {
        KeySecret(b.to_vec())
    }

    /// The secret from `KEYWATCH_KEY_SECRET`, else from `file`, else from the
    /// state directory (generated there on first use, mode 0600).
    pub fn load(
        env: Option<&str>,
        file: Option<&Path>,
        state_dir: &Path,
    ) -> Result<Self, SecretError> {
        if let Some(v) = env {
            let v = v.trim();
            return if v.len() < 16 {
                Err(SecretError::EnvTooShort)
            } else {
                Ok(KeySecret(v.as_bytes().to_vec()))
            };
        }
        if let Some(path) = file {
            return read_secret(path);
        }
        let path = state_dir.join(SECRET_FILE);
        if path.exists() {
            return read_secret(&path);
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| SecretError::Create {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&path, hex.as_bytes()).map_err(|source| SecretError::Create {
            path: path.clone(),
            source,
        })?;
        Ok(KeySecret(hex.into_bytes()))
    }
}

fn read_secret(path: &Path) -> Result<KeySecret, SecretError> {
    let text = std::fs::read(path).map_err(|source| SecretError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let trimmed = text.trim_ascii();
    if trimmed.len() < 16 {
        return Err(SecretError::FileTooShort {
            path: path.to_path_buf(),
        });
    }
    Ok(KeySecret(trimmed.to_vec()))
}

fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Turns the fields of a [`Record`] into keys. Shared by all threads.
pub struct Extractor {
    mac: Hmac<Sha256>,
    sources: KeySources,
    /// Configured key names; [`KeyRef::name`] indexes this.
    pub names: Vec<String>,
    names_by_id: FastMap<KeyId, u32>,
    names_by_prefix: Vec<(Vec<u8>, u32)>,
    /// Normalised query parameter names that carry keys.
    param_classes: FastMap<Vec<u8>, ParamClass>,
    revoked_ids: crate::hash::FastSet<KeyId>,
    revoked_prefixes: Vec<Vec<u8>>,
}

/// How many distinct keys each thread remembers the id of.
const ID_CACHE_LIMIT: usize = 1 << 16;

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
}

/// What a query parameter's name says about its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ParamClass {
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
            ex.names.push(n.name.clone());
            match (&n.id, &n.prefix) {
                (Some(id), None) => {
                    let id = id.parse().map_err(|()| {
                        format!(
                            "keys.names[{i}] ({}): id {id:?} is not 16 hex characters",
                            n.name
                        )
                    })?;
                    ex.names_by_id.insert(id, idx);
                }
                (None, Some(p)) if !p.is_empty() => {
                    ex.names_by_prefix.push((p.as_bytes().to_vec(), idx))
                }
                _ => {
                    return Err(format!(
                        "keys.names[{i}] ({}): give exactly one of `id` or `prefix`",
                        n.name
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
                .map_err(|()| format!("{id:?} is not a key id (16 hex characters)"))?;
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

    fn classify(&self, name: &[u8]) -> ParamClass {
        let mut buf = [0u8; 64];
        match url::normalize_name(name, &mut buf) {
            Some(n) => self
                .param_classes
                .get(n)
                .copied()
                .unwrap_or(ParamClass::Other),
            None => ParamClass::Other,
        }
    }

    /// Whether a query parameter is one whose value must not be shown.
    pub fn is_credential_param(&self, name: &[u8]) -> bool {
        let mut buf = [0u8; 64];
        self.classify(name) != ParamClass::Other
            || url::normalize_name(name, &mut buf).is_some_and(credential_named)
    }

    fn has_own_prefix(&self, v: &[u8]) -> bool {
        self.sources
            .prefixes
            .iter()
            .any(|p| v.len() >= p.len() + 8 && v.starts_with(p.as_bytes()))
    }

    /// Finds the key a request presented and every key its URLs expose.
    pub fn extract<'s>(&self, rec: &Record<'_>, s: &'s mut KeyScratch) -> Keyed<'s> {
        s.exposures.clear();
        s.secrets.clear();
        s.presented.clear();
        let mut source = None;
        if let Some(field) = rec.key {
            let v = field.decode();
            // Repeated headers are joined with ", "; the first is the one servers use.
            let first = v.split(|&b| b == b',').next().unwrap_or(&[]).trim_ascii();
            if !first.is_empty() && first != b"-" {
                s.presented.extend_from_slice(first);
                source = Some(KeySource::Field);
            }
        }
        if source.is_none() && self.sources.authorization {
            if let Some(auth) = rec.authorization {
                if authorization_key(&auth.decode(), &mut s.presented) {
                    source = Some(KeySource::Authorization);
                }
            }
        }
        if let Some(q) = rec.query {
            let q = q.decode();
            if self.scan_query(&q, Place::Query, s, source.is_none()) && source.is_none() {
                source = Some(KeySource::Query);
            }
        }
        if source.is_none() && self.sources.remote_user {
            if let Some(u) = rec.user {
                s.presented.extend_from_slice(&u.decode());
                source = Some(KeySource::RemoteUser);
            }
        }
        if let Some(p) = rec.path {
            self.scan_path(&p.decode(), Place::Path, s);
        }
        if let Some(r) = rec.referer {
            let mut buf = std::mem::take(&mut s.referer);
            let r = r.decode_into(&mut buf);
            let (path, query) = url::split_url(r);
            if let Some(userinfo) = url_userinfo(r) {
                s.value.clear();
                s.value.extend_from_slice(userinfo);
                let value = std::mem::take(&mut s.value);
                let key = self.identify(&value, s);
                s.value = value;
                let kind = Some(crate::detect::shapes::SecretKind::UrlCredentials);
                s.secrets.push(SecretHit {
                    kind,
                    param: None,
                    key,
                    place: Place::Referer,
                });
            }
            self.scan_path(path, Place::Referer, s);
            if let Some(q) = query {
                self.scan_query(q, Place::Referer, s, false);
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
        Keyed {
            key,
            source,
            exposures: &s.exposures,
            secrets: &s.secrets,
        }
    }

    /// Looks through query pairs for keys. With `attribute`, the first key
    /// found becomes the presented key. Returns whether one was attributed.
    fn scan_query(&self, query: &[u8], place: Place, s: &mut KeyScratch, attribute: bool) -> bool {
        use crate::detect::shapes::{is_signed_url, secret_kind};
        let mut attributed = false;
        // Signed URLs carry credentials by design: only our own keys count there.
        let signed = (memchr::memmem::find(query, b"ignature").is_some()
            || memchr::memmem::find(query, b"sig=").is_some())
            && is_signed_url(query);
        for (name, raw_value) in url::query_pairs(query) {
            let class = self.classify(name);
            let long = raw_value.len() >= 16 && !signed;
            if class == ParamClass::Other
                && s.presented.is_empty()
                && self.sources.prefixes.is_empty()
                && !long
            {
                continue;
            }
            let value = url::percent_decode_into(raw_value, &mut s.value, true);
            if value.is_empty() {
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
                            Some(String::from_utf8_lossy(n).into_owned())
                        }
                        _ => None,
                    };
                    if kind.is_some() || param.is_some() {
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
            if attribute && !attributed {
                s.presented.clear();
                s.presented.extend_from_slice(value);
                attributed = true;
            }
            let value = std::mem::take(&mut s.value);
            let key = self.identify(&value, s);
            s.value = value;
            push_exposure(&mut s.exposures, key, place);
        }
        attributed
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
            let kind = if is_own {
                None
            } else {
                crate::detect::shapes::secret_kind(seg)
            };
            if !is_own && kind.is_none() {
                continue;
            }
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

impl Extractor {
    /// Whether a URL token (percent-encoded) is one of `exposed` or has this API's key prefix.
    fn is_exposed_token(
        &self,
        raw: &[u8],
        plus: bool,
        exposed: &[KeyId],
        s: &mut KeyScratch,
    ) -> bool {
        let mut value = std::mem::take(&mut s.value);
        url::percent_decode_into(raw, &mut value, plus);
        let hit = !value.is_empty()
            && (self.has_own_prefix(&value)
                || crate::detect::shapes::secret_kind(&value).is_some()
                || exposed.contains(&self.identify(&value, s).id));
        s.value = value;
        hit
    }

    /// A URL (path, optional query) ready to show: every credential-named
    /// parameter's value and every token that is an exposed key is replaced by
    /// `[REDACTED]`; the rest is kept as logged and made printable.
    pub fn redact_url(
        &self,
        path: &[u8],
        query: Option<&[u8]>,
        exposed: &[KeyId],
        s: &mut KeyScratch,
    ) -> String {
        const REDACTED: &[u8] = b"[REDACTED]";
        let mut out = Vec::with_capacity(path.len() + query.map_or(0, <[u8]>::len) + 16);
        let mut rest = path;
        loop {
            let end = rest
                .iter()
                .position(|&b| b == b'/' || b == b';')
                .unwrap_or(rest.len());
            let seg = &rest[..end];
            if self.is_exposed_token(seg, false, exposed, s) {
                out.extend_from_slice(REDACTED);
            } else {
                out.extend_from_slice(seg);
            }
            if end == rest.len() {
                break;
            }
            out.push(rest[end]);
            rest = &rest[end + 1..];
        }
        if let Some(q) = query {
            out.push(b'?');
            for (i, part) in q.split(|&b| b == b'&').enumerate() {
                if i > 0 {
                    out.push(b'&');
                }
                match memchr::memchr(b'=', part) {
                    Some(eq) if eq + 1 < part.len() => {
                        let (name, value) = (&part[..eq], &part[eq + 1..]);
                        out.extend_from_slice(&part[..=eq]);
                        if self.is_credential_param(name)
                            || self.is_exposed_token(value, true, exposed, s)
                        {
                            out.extend_from_slice(REDACTED);
                        } else {
                            out.extend_from_slice(value);
                        }
                    }
                    _ => out.extend_from_slice(part),
                }
            }
        }
        crate::format::escape::printable(&out)
    }
}

fn push_exposure(list: &mut Vec<Exposure>, key: KeyRef, place: Place) {
    if !list.iter().any(|e| e.key.id == key.id && e.place == place) {
        list.push(Exposure { key, place });
    }
}

/// The key in an Authorization header: `Bearer`, `Token`, `ApiKey`, `Api-Key`
/// and `Key` schemes take the credential as it is; `Basic` takes the password
/// of `user:password`, or the user when the password is empty (the Stripe style).
fn authorization_key(header: &[u8], out: &mut Vec<u8>) -> bool {
    let header = header.trim_ascii();
    let Some(sp) = memchr::memchr(b' ', header) else {
        return false;
    };
    let (scheme, cred) = (&header[..sp], header[sp + 1..].trim_ascii());
    if cred.is_empty() {
        return false;
    }
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
            let (user, pass) = match memchr::memchr(b':', &decoded) {
                Some(c) => (&decoded[..c], &decoded[c + 1..]),
                None => (&decoded[..], &decoded[..0]),
            };
            let key = if pass.is_empty() { user } else { pass };
            out.extend_from_slice(key);
            !key.is_empty()
        }
        _ => false,
    }
}

/// The `user:password` of a URL's authority (`https://user:pw@host/`), when
/// it has a password.
pub(crate) fn url_userinfo(url: &[u8]) -> Option<&[u8]> {
    let p = memchr::memmem::find(url, b"://")?;
    let rest = &url[p + 3..];
    let end = rest
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let at = memchr::memrchr(b'@', &rest[..end])?;
    let userinfo = &rest[..at];
    let colon = memchr::memchr(b':', userinfo)?;
    (colon + 1 < userinfo.len()).then_some(userinfo)
}

/// The credential-parameter rule's entropy floor (gitleaks' generic rule: 3.5 bits).
fn shannon_ok(v: &[u8]) -> bool {
    url::shannon_entropy(v) > 3.5
}

/// Standard base64 with or without padding; `None` on any other byte.
fn base64_decode(b: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let b = b
        .strip_suffix(b"==")
        .or_else(|| b.strip_suffix(b"="))
        .unwrap_or(b);
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in b {
        acc = acc << 6 | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
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

    #[test]
    fn authorization_schemes() {
        let mut out = Vec::new();
        assert!(authorization_key(b"Bearer abc.def", &mut out));
        assert_eq!(out, b"abc.def");
        out.clear();
        // "user:" as Basic credentials: the key is the user part.
        assert!(authorization_key(b"Basic dXNlcjo=", &mut out));
        assert_eq!(out, b"user");
        out.clear();
        assert!(authorization_key(
            b"Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            &mut out
        ));
        assert_eq!(out, b"opensesame");
        assert!(!authorization_key(b"Negotiate", &mut Vec::new()));
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
