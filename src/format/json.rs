//! JSON-lines access logs: nginx `escape=json` formats, Caddy, and any other
//! server that writes one JSON object per line.
//!
//! The scanner works on bytes and never validates UTF-8: nginx copies bytes
//! of 0x80 and above into JSON strings as they are. Fields are found by their
//! (lower-cased, dot-joined) path through the object; the first name of a
//! field's candidate list that is present wins.

use super::time::{parse_epoch_seconds, parse_iso8601, parse_seconds_as_millis, parse_time_local};
use super::{ErrorKind, Escape, Field, ParseError, ParseScratch, Record, Text};

const MAX_DEPTH: usize = 32;

/// Which JSON access log this is; Caddy entries need a logger check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    Generic,
    Caddy,
}

/// A JSON-lines format: for each field, the paths that may hold it, best first.
#[derive(Clone, Debug)]
pub struct JsonFormat {
    pub(crate) name: String,
    kind: JsonKind,
    /// (lower-case path, field, rank): lower rank wins when several are present.
    paths: Vec<(Box<[u8]>, Field, u8)>,
}

/// Default candidate names for JSON access logs, after common nginx and
/// ingress conventions.
pub const DEFAULT_FIELDS: &[(Field, &[&str])] = &[
    (
        Field::Client,
        &[
            "remote_addr",
            "client_ip",
            "remote_ip",
            "clientip",
            "client",
            "ip",
        ],
    ),
    (Field::User, &["remote_user", "user"]),
    (
        Field::TimeIso8601,
        &[
            "time_iso8601",
            "time",
            "timestamp",
            "@timestamp",
            "time_local",
            "msec",
            "ts",
        ],
    ),
    (Field::Request, &["request"]),
    (Field::Method, &["request_method", "method"]),
    (Field::Target, &["request_uri", "uri", "url"]),
    (Field::Path, &["path"]),
    (Field::Query, &["args", "query_string", "query"]),
    (Field::Protocol, &["server_protocol", "protocol", "proto"]),
    (Field::Status, &["status", "status_code"]),
    (
        Field::Bytes,
        &["body_bytes_sent", "bytes_sent", "size", "bytes"],
    ),
    (Field::Referer, &["http_referer", "referer", "referrer"]),
    (
        Field::UserAgent,
        &["http_user_agent", "user_agent", "useragent"],
    ),
    (
        Field::RequestTime,
        &["request_time", "duration", "response_time"],
    ),
    (
        Field::Key,
        &[
            "http_x_api_key",
            "api_key_id",
            "api_key",
            "key_id",
            "x_api_key",
        ],
    ),
    (
        Field::Authorization,
        &["http_authorization", "authorization"],
    ),
    (
        Field::ForwardedFor,
        &["http_x_forwarded_for", "x_forwarded_for", "forwarded_for"],
    ),
    (Field::RealIp, &["http_x_real_ip", "x_real_ip"]),
];

const CADDY_FIELDS: &[(Field, &[&str])] = &[
    (Field::Client, &["request.client_ip", "request.remote_ip"]),
    (Field::User, &["user_id"]),
    (Field::TimeIso8601, &["ts"]),
    (Field::Method, &["request.method"]),
    (Field::Target, &["request.uri"]),
    (Field::Protocol, &["request.proto"]),
    (Field::Status, &["status"]),
    (Field::Bytes, &["size"]),
    (Field::Referer, &["request.headers.referer"]),
    (Field::UserAgent, &["request.headers.user-agent"]),
    (Field::RequestTime, &["duration"]),
    (Field::Key, &["request.headers.x-api-key"]),
    (Field::Authorization, &["request.headers.authorization"]),
    (Field::Other, &["logger"]),
];

impl JsonFormat {
    /// The generic JSON-lines format, with `overrides` (field name → JSON path)
    /// placed before the defaults.
    pub fn generic(overrides: &[(Field, String)], key_vars: &[String]) -> Self {
        let mut f = JsonFormat {
            name: "json".into(),
            kind: JsonKind::Generic,
            paths: Vec::new(),
        };
        for (field, path) in overrides {
            f.add(*field, path, 0);
        }
        for key in key_vars {
            f.add(Field::Key, key.trim_start_matches('$'), 1);
        }
        f.add_all(DEFAULT_FIELDS, 2);
        f
    }

    /// Caddy v2's structured access log.
    pub fn caddy(key_vars: &[String]) -> Self {
        let mut f = JsonFormat {
            name: "caddy".into(),
            kind: JsonKind::Caddy,
            paths: Vec::new(),
        };
        for key in key_vars {
            let header = key
                .trim_start_matches('$')
                .trim_start_matches("http_")
                .replace('_', "-");
            f.add(Field::Key, &format!("request.headers.{header}"), 0);
        }
        f.add_all(CADDY_FIELDS, 1);
        f
    }

    fn add_all(&mut self, table: &[(Field, &[&str])], base: u8) {
        for (field, names) in table {
            for (i, name) in names.iter().enumerate() {
                self.add(
                    *field,
                    name,
                    base.saturating_mul(16).saturating_add(i as u8),
                );
            }
        }
    }

    fn add(&mut self, field: Field, path: &str, rank: u8) {
        self.paths
            .push((path.to_ascii_lowercase().into_bytes().into(), field, rank));
    }

    pub(crate) fn parse_into<'a>(
        &self,
        line: &'a [u8],
        scratch: &mut ParseScratch,
        out: &mut Record<'a>,
    ) -> Result<(), ParseError> {
        *out = self.parse(line, scratch)?;
        Ok(())
    }

    fn parse<'a>(
        &self,
        line: &'a [u8],
        scratch: &mut ParseScratch,
    ) -> Result<Record<'a>, ParseError> {
        // Tolerate a prefix before the object, such as docker compose's `caddy  | `.
        let start = memchr::memchr(b'{', line).ok_or(ParseError {
            at: 0,
            kind: ErrorKind::InvalidJson {
                expected: "an object",
            },
        })?;
        let mut found: [Option<(Leaf<'a>, u8)>; FIELD_SLOTS] = [None; FIELD_SLOTS];
        let mut scanner = Scanner { b: line, i: start };
        scratch.path.clear();
        scanner.value(&mut scratch.path, 0, &mut |path, leaf| {
            if let Some((_, field, rank)) = self.paths.iter().find(|(p, _, _)| **p == *path) {
                let slot = &mut found[slot_of(*field)];
                if slot.is_none_or(|(_, r)| *rank < r) {
                    *slot = Some((leaf, *rank));
                }
            }
        })?;
        if self.kind == JsonKind::Caddy {
            let logger = found[slot_of(Field::Other)].map(|(l, _)| l.bytes());
            if !logger.is_some_and(|l| l.starts_with(b"http.log.access")) {
                return Err(ParseError {
                    at: start,
                    kind: ErrorKind::NotAccessEntry,
                });
            }
        }
        let has = |f: Field| found[slot_of(f)].is_some();
        if !has(Field::Status)
            || !(has(Field::Request)
                || has(Field::Target)
                || has(Field::Path)
                || has(Field::Method))
        {
            return Err(ParseError {
                at: start,
                kind: ErrorKind::NotAccessEntry,
            });
        }
        let mut rec = Record::default();
        let text = |slot: Option<(Leaf<'a>, u8)>| {
            slot.and_then(|(l, _)| l.text())
                .filter(|t| !t.raw.is_empty() && t.raw != b"-")
        };
        let time = found[slot_of(Field::TimeIso8601)].map(|(l, _)| l.bytes());
        rec.time_ms = time
            .and_then(|t| {
                parse_iso8601(t)
                    .or_else(|| parse_time_local(t))
                    .or_else(|| parse_epoch_seconds(t))
            })
            .ok_or(ParseError {
                at: start,
                kind: ErrorKind::NoTimestamp,
            })?;
        rec.client = text(found[slot_of(Field::Client)]);
        rec.user = text(found[slot_of(Field::User)]);
        if let Some(req) = text(found[slot_of(Field::Request)]) {
            rec.split_request(req);
        }
        if let Some(m) = text(found[slot_of(Field::Method)]) {
            rec.method = Some(m);
        }
        if let Some(t) = text(found[slot_of(Field::Target)]) {
            rec.set_target(t);
        } else if let Some(p) = text(found[slot_of(Field::Path)]) {
            rec.path = Some(p);
        }
        if let Some(q) = text(found[slot_of(Field::Query)]) {
            rec.query = Some(q);
        }
        if let Some(p) = text(found[slot_of(Field::Protocol)]) {
            rec.protocol = Some(p);
        }
        let number = |f: Field| found[slot_of(f)].map(|(l, _)| l.bytes());
        rec.status = number(Field::Status).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok());
        rec.bytes = number(Field::Bytes).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok());
        rec.request_time_ms = number(Field::RequestTime).and_then(parse_seconds_as_millis);
        rec.referer = text(found[slot_of(Field::Referer)]);
        rec.user_agent = text(found[slot_of(Field::UserAgent)]);
        rec.key = text(found[slot_of(Field::Key)]);
        rec.authorization = text(found[slot_of(Field::Authorization)]);
        rec.forwarded_for = text(found[slot_of(Field::ForwardedFor)]);
        rec.real_ip = text(found[slot_of(Field::RealIp)]);
        Ok(rec)
    }
}

const FIELD_SLOTS: usize = 19;

fn slot_of(f: Field) -> usize {
    match f {
        Field::Client => 0,
        Field::User => 1,
        Field::TimeLocal | Field::TimeIso8601 | Field::TimeEpoch => 2,
        Field::Request => 3,
        Field::Method => 4,
        Field::Target => 5,
        Field::Path => 6,
        Field::Query => 7,
        Field::Protocol => 8,
        Field::Status => 9,
        Field::Bytes => 10,
        Field::Referer => 11,
        Field::UserAgent => 12,
        Field::RequestTime => 13,
        Field::Key => 14,
        Field::Authorization => 15,
        Field::Other => 16,
        Field::ForwardedFor => 17,
        Field::RealIp => 18,
    }
}

/// A scalar found in the object: a string's raw (escaped) bytes, or a number's text.
#[derive(Clone, Copy, Debug)]
enum Leaf<'a> {
    Str(&'a [u8]),
    Scalar(&'a [u8]),
}

impl<'a> Leaf<'a> {
    fn bytes(self) -> &'a [u8] {
        match self {
            Leaf::Str(b) | Leaf::Scalar(b) => b,
        }
    }

    fn text(self) -> Option<Text<'a>> {
        match self {
            Leaf::Str(raw) => Some(Text {
                raw,
                escape: Escape::Json,
            }),
            Leaf::Scalar(b"null") => None,
            Leaf::Scalar(raw) => Some(Text {
                raw,
                escape: Escape::None,
            }),
        }
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn err(&self, expected: &'static str) -> ParseError {
        ParseError {
            at: self.i,
            kind: ErrorKind::InvalidJson { expected },
        }
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    /// Reads a string starting at the opening quote; returns the raw contents.
    fn string(&mut self) -> Result<&'a [u8], ParseError> {
        let start = self.i + 1;
        let mut j = start;
        loop {
            let p = memchr::memchr2(b'"', b'\\', &self.b[j..])
                .ok_or_else(|| self.err("a closing quote"))?;
            j += p;
            if self.b[j] == b'\\' {
                j += 2;
                if j > self.b.len() {
                    return Err(self.err("a closing quote"));
                }
                continue;
            }
            self.i = j + 1;
            return Ok(&self.b[start..j]);
        }
    }

    fn value(
        &mut self,
        path: &mut Vec<u8>,
        depth: usize,
        visit: &mut dyn FnMut(&[u8], Leaf<'a>),
    ) -> Result<(), ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("less nesting"));
        }
        self.ws();
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return Err(self.err("a member name"));
                    }
                    let name = self.string()?;
                    let len = path.len();
                    if len > 0 {
                        path.push(b'.');
                    }
                    path.extend(name.iter().map(u8::to_ascii_lowercase));
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return Err(self.err("`:` after a member name"));
                    }
                    self.i += 1;
                    self.value(path, depth + 1, visit)?;
                    path.truncate(len);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err("`,` or `}`")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.value(path, depth + 1, visit)?;
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err("`,` or `]`")),
                    }
                }
            }
            Some(b'"') => {
                let s = self.string()?;
                visit(path, Leaf::Str(s));
                Ok(())
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'
                    )
                {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(self.err("a value"));
                }
                visit(path, Leaf::Scalar(&self.b[start..self.i]));
                Ok(())
            }
            None => Err(self.err("a value")),
        }
    }
}
