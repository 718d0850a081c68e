//! Log formats: what a line of an access log holds, and how to read it.
//!
//! A [`LogFormat`] is compiled once (from a preset name, a pasted nginx
//! `log_format` directive or a JSON field mapping) and then turns each line into
//! a [`Record`] of borrowed, still-escaped slices. Nothing here allocates per
//! line; values are decoded only when a consumer asks for them.

pub mod directive;
pub mod escape;
pub mod json;
pub mod nginx;
pub mod presets;
pub mod time;

use std::borrow::Cow;
use std::fmt;

pub use escape::Escape;

/// A logged value: the raw bytes between its delimiters and how they are escaped.
#[derive(Clone, Copy, Debug)]
pub struct Text<'a> {
    pub raw: &'a [u8],
    pub escape: Escape,
}

impl<'a> Text<'a> {
    /// The value's bytes with the server's escapes undone.
    pub fn decode(&self) -> Cow<'a, [u8]> {
        escape::decode(self.raw, self.escape)
    }

    /// Like [`Text::decode`], but decodes into `buf` instead of allocating.
    pub fn decode_into<'b>(&self, buf: &'b mut Vec<u8>) -> &'b [u8]
    where
        'a: 'b,
    {
        if !escape::has_escapes(self.raw, self.escape) {
            return self.raw;
        }
        buf.clear();
        escape::decode_escapes_into(self.raw, self.escape, buf);
        buf
    }
}

/// What the request of one log line was, as far as the format logs it.
/// `None` means the format does not log the field or the server wrote "not found" (`-`).
#[derive(Clone, Debug, Default)]
pub struct Record<'a> {
    /// When the line was written, milliseconds since the Unix epoch, UTC.
    pub time_ms: i64,
    pub client: Option<Text<'a>>,
    pub user: Option<Text<'a>>,
    /// The request line as logged; for an invalid request it is all there is.
    pub request: Option<Text<'a>>,
    pub method: Option<Text<'a>>,
    /// The request target up to `?`.
    pub path: Option<Text<'a>>,
    /// The query string after `?` (raw, percent-encoding untouched).
    pub query: Option<Text<'a>>,
    pub protocol: Option<Text<'a>>,
    pub status: Option<u16>,
    pub bytes: Option<u64>,
    pub referer: Option<Text<'a>>,
    pub user_agent: Option<Text<'a>>,
    pub request_time_ms: Option<u32>,
    /// The configured key field (`$http_x_api_key`, `$api_key_id`…).
    pub key: Option<Text<'a>>,
    pub authorization: Option<Text<'a>>,
    pub forwarded_for: Option<Text<'a>>,
    pub real_ip: Option<Text<'a>>,
}

impl<'a> Record<'a> {
    /// Splits a logged request line into method, target and protocol. The
    /// protocol is the part after the last space when it looks like `HTTP/x.y`;
    /// anything else is an invalid request whose raw bytes stay in `request`.
    pub(crate) fn split_request(&mut self, req: Text<'a>) {
        self.request = Some(req);
        let raw = req.raw;
        let Some(sp1) = memchr::memchr(b' ', raw) else {
            return;
        };
        let Some(sp2) = memchr::memrchr(b' ', raw) else {
            return;
        };
        if sp2 <= sp1 || !is_http_protocol(&raw[sp2 + 1..]) || sp1 == 0 {
            // "GET /" (HTTP/0.9) has a method and a target but no protocol.
            if sp1 == sp2 && sp1 > 0 && raw[sp1 + 1..].starts_with(b"/") {
                self.method = Some(Text {
                    raw: &raw[..sp1],
                    escape: req.escape,
                });
                self.set_target(Text {
                    raw: &raw[sp1 + 1..],
                    escape: req.escape,
                });
            }
            return;
        }
        self.method = Some(Text {
            raw: &raw[..sp1],
            escape: req.escape,
        });
        self.protocol = Some(Text {
            raw: &raw[sp2 + 1..],
            escape: req.escape,
        });
        self.set_target(Text {
            raw: &raw[sp1 + 1..sp2],
            escape: req.escape,
        });
    }

    /// Sets path and query from a request target such as `/v1/x?a=b`.
    pub(crate) fn set_target(&mut self, target: Text<'a>) {
        match memchr::memchr(b'?', target.raw) {
            Some(q) => {
                self.path = Some(Text {
                    raw: &target.raw[..q],
                    escape: target.escape,
                });
                self.query = Some(Text {
                    raw: &target.raw[q + 1..],
                    escape: target.escape,
                });
            }
            None => self.path = Some(target),
        }
    }
}

fn is_http_protocol(b: &[u8]) -> bool {
    match b.strip_prefix(b"HTTP/") {
        Some([d]) => d.is_ascii_digit(),
        Some([d1, b'.', d2]) => d1.is_ascii_digit() && d2.is_ascii_digit(),
        _ => false,
    }
}

/// The meaning of a logged value, whatever the server called it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Client,
    User,
    TimeLocal,
    TimeIso8601,
    TimeEpoch,
    Request,
    Method,
    /// A request target with its query (`$request_uri`, Caddy `uri`).
    Target,
    /// A path without query (`$uri`).
    Path,
    Query,
    Protocol,
    Status,
    Bytes,
    Referer,
    UserAgent,
    RequestTime,
    Key,
    Authorization,
    /// `X-Forwarded-For` as the proxy sent it (see [`crate::clients`]).
    ForwardedFor,
    /// `X-Real-IP`.
    RealIp,
    /// Logged but not used by keywatch.
    Other,
}

/// Why a line did not match its format. Small and allocation-free: the
/// message is built only for the few skipped lines that are shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the line where the mismatch was found.
    pub at: usize,
    pub kind: ErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A literal of the format was not where it should be.
    ExpectedLiteral {
        literal: Box<str>,
        before: Option<Box<str>>,
        after: Option<Box<str>>,
    },
    /// A variable's value does not have the shape the variable always has.
    BadValue {
        var: Box<str>,
        expected: &'static str,
    },
    /// Bytes follow the last field without a separating space.
    TrailingBytes {
        after: Box<str>,
    },
    /// The line could not be split unambiguously within the search budget.
    TooAmbiguous,
    Empty,
    Comment,
    /// Valid JSON, but not a request entry (a Caddy startup message, say).
    NotAccessEntry,
    InvalidJson {
        expected: &'static str,
    },
    NoTimestamp,
    LineTooLong {
        len: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::ExpectedLiteral {
                literal,
                before,
                after,
            } => {
                write!(f, "expected `{}`", literal.escape_debug())?;
                match (before, after) {
                    (Some(b), _) => write!(f, " before ${b}")?,
                    (None, Some(a)) => write!(f, " after ${a}")?,
                    (None, None) => {}
                }
                write!(f, " at byte {}", self.at)
            }
            ErrorKind::BadValue { var, expected } => {
                write!(f, "invalid ${var} at byte {}: expected {expected}", self.at)
            }
            ErrorKind::TrailingBytes { after } => {
                write!(f, "unexpected bytes after ${after} at byte {}", self.at)
            }
            ErrorKind::TooAmbiguous => write!(
                f,
                "the line is too ambiguous to split (at byte {})",
                self.at
            ),
            ErrorKind::Empty => write!(f, "empty line"),
            ErrorKind::Comment => write!(f, "comment line"),
            ErrorKind::NotAccessEntry => write!(f, "JSON entry is not an access-log entry"),
            ErrorKind::InvalidJson { expected } => {
                write!(f, "invalid JSON at byte {}: expected {expected}", self.at)
            }
            ErrorKind::NoTimestamp => write!(f, "no timestamp field in the entry"),
            ErrorKind::LineTooLong { len } => {
                write!(f, "line of {len} bytes is longer than the maximum")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// A compiled log format.
#[derive(Clone, Debug)]
pub enum LogFormat {
    Nginx(nginx::NginxFormat),
    Json(json::JsonFormat),
}

/// Per-thread mutable helpers for parsing (time cache, JSON path buffer).
#[derive(Default)]
pub struct ParseScratch {
    pub(crate) time: time::TimeCache,
    pub(crate) path: Vec<u8>,
}

impl LogFormat {
    /// Parses one line (without its `\n`; a trailing `\r` is ignored).
    pub fn parse<'a>(
        &self,
        line: &'a [u8],
        scratch: &mut ParseScratch,
    ) -> Result<Record<'a>, ParseError> {
        let mut rec = Record::default();
        self.parse_into(line, scratch, &mut rec).map(|()| rec)
    }

    /// Like [`LogFormat::parse`], filling `rec` (which must be fresh) in place:
    /// the hot path, where moving a record around costs more than parsing a field.
    pub fn parse_into<'a>(
        &self,
        line: &'a [u8],
        scratch: &mut ParseScratch,
        rec: &mut Record<'a>,
    ) -> Result<(), ParseError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_none_or(u8::is_ascii_whitespace)
            && line.iter().all(u8::is_ascii_whitespace)
        {
            return Err(ParseError {
                at: 0,
                kind: ErrorKind::Empty,
            });
        }
        if line.first() == Some(&b'#') {
            return Err(ParseError {
                at: 0,
                kind: ErrorKind::Comment,
            });
        }
        match self {
            LogFormat::Nginx(f) => f.parse_into(line, scratch, rec),
            LogFormat::Json(f) => f.parse_into(line, scratch, rec),
        }
    }

    /// A short description for messages (`combined`, `custom nginx format`…).
    pub fn name(&self) -> &str {
        match self {
            LogFormat::Nginx(f) => &f.name,
            LogFormat::Json(f) => &f.name,
        }
    }
}

/// Builds a format from what the user wrote after `--log-format`: a preset
/// name, or an nginx `log_format` directive or string.
pub fn compile(spec: &str, key_vars: &[String]) -> Result<LogFormat, nginx::FormatError> {
    if let Some(preset) = presets::by_name(spec.trim(), key_vars) {
        return Ok(preset);
    }
    nginx::NginxFormat::from_directive(spec, key_vars).map(LogFormat::Nginx)
}

/// Picks the preset that parses most of `sample` (first lines of the input).
/// Returns the format and how many of the sample lines it parsed.
pub fn detect(sample: &[u8], key_vars: &[String]) -> (LogFormat, usize, usize) {
    let lines: Vec<&[u8]> = sample
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(1000)
        .collect();
    let mut best: Option<(LogFormat, usize)> = None;
    let mut scratch = ParseScratch::default();
    for name in presets::DETECTION_ORDER {
        let Some(format) = presets::by_name(name, key_vars) else {
            continue;
        };
        let parsed = lines
            .iter()
            .filter(|l| format.parse(l, &mut scratch).is_ok())
            .count();
        if best.as_ref().is_none_or(|(_, n)| parsed > *n) {
            best = Some((format, parsed));
        }
    }
    let (format, parsed) = match best {
        Some((f, n)) if n > 0 => (f, n),
        _ => (presets::combined(key_vars), 0),
    };
    (format, parsed, lines.len())
}
