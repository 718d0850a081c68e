//! The nginx `log_format` compiler.
//!
//! A format string becomes a literal prefix followed by (variable, literal)
//! pairs. Matching a line walks the pairs: each variable ends where the next
//! literal begins, and its value must have the shape the variable always has
//! (`$status` three digits, `$time_local` a full timestamp…). When a value
//! could end at several places (`$remote_user` may contain spaces, Traefik
//! writes raw quotes) the matcher backtracks to the next occurrence of the
//! literal, within a fixed budget, so no line can make it run away.

use thiserror::Error;

use super::directive;
use super::time::{parse_epoch_seconds, parse_iso8601, parse_seconds_as_millis};
use super::{ErrorKind, Escape, Field, ParseError, ParseScratch, Record, Text};

/// How many candidate splits one line may try before it is declared ambiguous.
const BACKTRACK_BUDGET: u32 = 512;

/// A log format that cannot be used, with what to change.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error(
        "log format: unknown escape={0:?} (nginx accepts escape=default, escape=json or escape=none)"
    )]
    UnknownEscape(String),
    #[error("log format: unterminated {0} quote in the log_format directive")]
    UnterminatedQuote(char),
    #[error("log format: the format string is empty")]
    Empty,
    #[error("log format: unterminated ${{…}} variable at byte {0}")]
    UnterminatedVariable(usize),
    #[error(
        "log format: ${0} and ${1} have nothing between them, so their values cannot be told apart; put a literal (a space) between them"
    )]
    AdjacentVariables(String, String),
    #[error(
        "log format: no time variable; keywatch needs $time_local, $time_iso8601 or $msec in the format to place each request in time"
    )]
    NoTime,
}

/// What a variable's value always looks like; decides where it can end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Three digits (`%03ui`).
    Status,
    /// An integer (`%O`); Apache and verbatim writers may log `-`.
    Int,
    /// Seconds with milliseconds (`%T.%03M`) or `-`.
    Decimal,
    TimeLocal,
    TimeIso,
    /// No spaces (addresses, methods, protocols).
    Token,
    /// `$upstream_*`: elements joined by `, ` and ` : `.
    List,
    /// Anything.
    Text,
}

impl Shape {
    /// Whether the end of the value is fixed by its shape alone.
    fn self_delimiting(self) -> bool {
        matches!(
            self,
            Shape::Status | Shape::Int | Shape::Decimal | Shape::TimeLocal | Shape::TimeIso
        )
    }

    fn expected(self) -> &'static str {
        match self {
            Shape::Status => "a three-digit status",
            Shape::Int => "an integer",
            Shape::Decimal => "seconds such as 0.004",
            Shape::TimeLocal => "a time such as 28/Sep/1970:12:00:00 +0600",
            Shape::TimeIso => "a time such as 1970-09-28T12:00:00+06:00",
            Shape::Token => "a value without spaces",
            Shape::List => "a list such as 0.001, 0.002 : 0.003",
            Shape::Text => "a value",
        }
    }
}

#[derive(Clone, Debug)]
struct Var {
    name: Box<str>,
    field: Field,
    shape: Shape,
}

#[derive(Clone, Debug)]
struct Item {
    var: Var,
    /// The literal that follows the variable (empty only for the last one).
    lit: Box<[u8]>,
}

/// A compiled nginx (or Apache, expressed in nginx variables) log format.
#[derive(Clone, Debug)]
pub struct NginxFormat {
    pub(crate) name: String,
    escape: Escape,
    prefix: Box<[u8]>,
    items: Vec<Item>,
    /// The format string after directive parsing, for messages.
    pub source: String,
}

/// Maps an nginx variable to what keywatch uses it for, and its shape.
fn classify(name: &str, key_vars: &[String], escape: Escape) -> (Field, Shape) {
    if key_vars.iter().any(|k| k.trim_start_matches('$') == name) {
        return (Field::Key, Shape::Text);
    }
    match name {
        "remote_addr" => (Field::Client, Shape::Token),
        // The realip module's original connection address: the proxy.
        "realip_remote_addr" => (Field::Other, Shape::Token),
        "http_x_real_ip" => (Field::RealIp, Shape::Text),
        "remote_user" => (Field::User, Shape::Text),
        "time_local" => (Field::TimeLocal, Shape::TimeLocal),
        "time_iso8601" => (Field::TimeIso8601, Shape::TimeIso),
        "msec" => (Field::TimeEpoch, Shape::Decimal),
        "request" => (Field::Request, Shape::Text),
        "request_method" => (Field::Method, Shape::Token),
        "request_uri" => (Field::Target, Shape::Text),
        "uri" | "document_uri" => (Field::Path, Shape::Text),
        "args" | "query_string" => (Field::Query, Shape::Text),
        "server_protocol" => (Field::Protocol, Shape::Token),
        "status" => (Field::Status, Shape::Status),
        "body_bytes_sent" | "bytes_sent" => (Field::Bytes, Shape::Int),
        "http_referer" => (Field::Referer, Shape::Text),
        "http_user_agent" => (Field::UserAgent, Shape::Text),
        "request_time" => (Field::RequestTime, Shape::Decimal),
        "http_authorization" => (Field::Authorization, Shape::Text),
        "request_length"
        | "connection"
        | "connection_requests"
        | "pid"
        | "server_port"
        | "remote_port" => (Field::Other, Shape::Int),
        "pipe" | "scheme" | "host" | "server_name" | "remote_ident" => (Field::Other, Shape::Token),
        "request_count" => (Field::Other, Shape::Int),
        "http_x_forwarded_for" | "proxy_add_x_forwarded_for" => (Field::ForwardedFor, Shape::List),
        n if n.starts_with("upstream_") => (Field::Other, Shape::List),
        _ if escape == Escape::Json => (Field::Other, Shape::Text),
        _ => (Field::Other, Shape::Text),
    }
}

impl NginxFormat {
    /// Accepts what a user pastes: `log_format NAME [escape=…] 'string' 'string';`,
    /// just the quoted strings, or the bare format string.
    pub fn from_directive(spec: &str, key_vars: &[String]) -> Result<Self, FormatError> {
        let trimmed = spec.trim();
        let is_directive =
            trimmed.starts_with("log_format") && trimmed[10..].starts_with(char::is_whitespace);
        if !is_directive && !trimmed.starts_with(['\'', '"']) {
            return Self::compile("custom", trimmed, Escape::Nginx, key_vars);
        }
        let mut tokens = directive::config_tokens(trimmed)
            .map_err(|e| match e {
                directive::SyntaxError::UnterminatedQuote(q) => FormatError::UnterminatedQuote(q),
                directive::SyntaxError::UnterminatedVariable(at) => {
                    FormatError::UnterminatedVariable(at)
                }
            })?
            .into_iter()
            .peekable();
        let mut name = "custom".to_string();
        if is_directive {
            tokens.next();
            if let Some(n) = tokens.next() {
                name = n;
            }
        }
        let mut escape = Escape::Nginx;
        if let Some(value) = tokens.peek().and_then(|t| t.strip_prefix("escape=")) {
            escape = match value {
                "default" => Escape::Nginx,
                "json" => Escape::Json,
                "none" => Escape::None,
                other => return Err(FormatError::UnknownEscape(other.to_string())),
            };
            tokens.next();
        }
        let format: String = tokens.collect();
        Self::compile(&name, &format, escape, key_vars)
    }

    /// Compiles a format string (already unquoted) under an escaping mode.
    pub fn compile(
        name: &str,
        format: &str,
        escape: Escape,
        key_vars: &[String],
    ) -> Result<Self, FormatError> {
        if format.is_empty() {
            return Err(FormatError::Empty);
        }
        let mut prefix = Vec::new();
        let mut items: Vec<(Var, Vec<u8>)> = Vec::new();
        let pieces = directive::pieces(format).map_err(|e| match e {
            directive::SyntaxError::UnterminatedVariable(at) => {
                FormatError::UnterminatedVariable(at)
            }
            directive::SyntaxError::UnterminatedQuote(q) => FormatError::UnterminatedQuote(q),
        })?;
        for piece in pieces {
            let var_name = match piece {
                directive::Piece::Literal(l) => {
                    match items.last_mut() {
                        Some((_, lit)) => lit.extend_from_slice(l.as_bytes()),
                        None => prefix.extend_from_slice(l.as_bytes()),
                    }
                    continue;
                }
                directive::Piece::Variable(v) => v,
            };
            if let Some((prev, lit)) = items.last()
                && lit.is_empty()
                && !prev.shape.self_delimiting()
            {
                return Err(FormatError::AdjacentVariables(
                    prev.name.to_string(),
                    var_name.to_string(),
                ));
            }
            let (field, shape) = classify(var_name, key_vars, escape);
            items.push((
                Var {
                    name: var_name.into(),
                    field,
                    shape,
                },
                Vec::new(),
            ));
        }
        if !items.iter().any(|(v, _)| {
            matches!(
                v.field,
                Field::TimeLocal | Field::TimeIso8601 | Field::TimeEpoch
            )
        }) {
            return Err(FormatError::NoTime);
        }
        // `$bytes_sent` counts headers too; prefer `$body_bytes_sent` when both are logged.
        if items.iter().any(|(v, _)| &*v.name == "body_bytes_sent") {
            for (v, _) in &mut items {
                if &*v.name == "bytes_sent" {
                    v.field = Field::Other;
                }
            }
        }
        // Between quotes a list is just text: the quotes delimit it.
        let mut prev_lit_quote = prefix.ends_with(b"\"");
        for (var, lit) in &mut items {
            if var.shape == Shape::List && prev_lit_quote && lit.starts_with(b"\"") {
                var.shape = Shape::Text;
            }
            prev_lit_quote = lit.ends_with(b"\"");
        }
        let items = items
            .into_iter()
            .map(|(var, lit)| Item {
                lit: lit.into(),
                var,
            })
            .collect();
        Ok(NginxFormat {
            name: name.to_string(),
            escape,
            prefix: prefix.into(),
            items,
            source: format.to_string(),
        })
    }

    pub(crate) fn parse_into<'a>(
        &self,
        line: &'a [u8],
        scratch: &mut ParseScratch,
        rec: &mut Record<'a>,
    ) -> Result<(), ParseError> {
        if !starts_with(line, &self.prefix) {
            return Err(self.literal_error(0, None, 0));
        }
        if self.parse_first_split(line, scratch, rec) {
            return Ok(());
        }
        *rec = Record::default();
        let mut m = Matcher {
            format: self,
            line,
            rec,
            scratch,
            budget: BACKTRACK_BUDGET,
            best: None,
        };
        if m.item(0, self.prefix.len()) {
            Ok(())
        } else {
            Err(m.best.unwrap_or(ParseError {
                at: 0,
                kind: ErrorKind::TooAmbiguous,
            }))
        }
    }

    /// The fast path: every value ends at the first place it may end. When
    /// that split is valid it is the one the backtracking matcher would find
    /// first (it tries candidates in the same order), so the result is the
    /// same; any doubt falls through to the matcher.
    fn parse_first_split<'a>(
        &self,
        line: &'a [u8],
        scratch: &mut ParseScratch,
        rec: &mut Record<'a>,
    ) -> bool {
        let mut pos = self.prefix.len();
        for item in &self.items {
            let end = if item.var.shape.self_delimiting() {
                pos + shape_len(item.var.shape, &line[pos..], self.escape)
            } else {
                match next_end(line, item, pos, self.escape) {
                    Some(e) => e,
                    None => return false,
                }
            };
            let raw = &line[pos..end];
            if item.var.shape == Shape::Token && memchr::memchr(b' ', raw).is_some() {
                return false;
            }
            if !assign(rec, scratch, &item.var, raw, self.escape)
                || !starts_with(&line[end..], &item.lit)
            {
                return false;
            }
            pos = end + item.lit.len();
        }
        let rest = &line[pos..];
        let lit_space = self.items.last().is_some_and(|it| it.lit.ends_with(b" "));
        rest.is_empty() || matches!(rest[0], b' ' | b'\t') || lit_space
    }

    /// The error for a literal missing at `at`; `item` is the index of the
    /// variable the literal follows (`None` for the prefix).
    fn literal_error(&self, at: usize, item: Option<usize>, _depth: usize) -> ParseError {
        let (literal, after, before) = match item {
            None => (
                &self.prefix,
                None,
                self.items.first().map(|i| i.var.name.clone()),
            ),
            Some(i) => (
                &self.items[i].lit,
                Some(self.items[i].var.name.clone()),
                self.items.get(i + 1).map(|n| n.var.name.clone()),
            ),
        };
        ParseError {
            at,
            kind: ErrorKind::ExpectedLiteral {
                literal: String::from_utf8_lossy(literal).into(),
                before,
                after,
            },
        }
    }
}

struct Matcher<'f, 'a, 's, 'r> {
    format: &'f NginxFormat,
    line: &'a [u8],
    rec: &'r mut Record<'a>,
    scratch: &'s mut ParseScratch,
    budget: u32,
    best: Option<ParseError>,
}

impl<'a> Matcher<'_, 'a, '_, '_> {
    fn fail(&mut self, err: ParseError) -> bool {
        if self.best.as_ref().is_none_or(|b| err.at >= b.at) {
            self.best = Some(err);
        }
        false
    }

    /// Matches item `i` (a variable and the literal after it) at `pos`, then the rest.
    fn item(&mut self, i: usize, pos: usize) -> bool {
        let format = self.format;
        let Some(item) = format.items.get(i) else {
            return self.tail(i, pos);
        };
        let rest = &self.line[pos..];
        if item.var.shape.self_delimiting() {
            let end = pos + shape_len(item.var.shape, rest, format.escape);
            return self.value(i, pos, end);
        }
        let mut from = pos;
        loop {
            if self.budget == 0 {
                return self.fail(ParseError {
                    at: from,
                    kind: ErrorKind::TooAmbiguous,
                });
            }
            self.budget -= 1;
            let end = match self.next_end(item, from) {
                Some(end) => end,
                None => {
                    let at = match item.var.shape {
                        Shape::Token => {
                            memchr::memchr(b' ', rest).map_or(self.line.len(), |p| pos + p)
                        }
                        _ => self.line.len(),
                    };
                    return self.fail(format.literal_error(at, Some(i), 0));
                }
            };
            if item.var.shape == Shape::Token
                && let Some(sp) = memchr::memchr(b' ', &self.line[pos..end])
            {
                return self.fail(format.literal_error(pos + sp, Some(i), 0));
            }
            if self.value(i, pos, end) {
                return true;
            }
            if end >= self.line.len() {
                return false;
            }
            from = end + 1;
        }
    }

    /// The next place at or after `from` where the value of `item` may end.
    #[inline]
    fn next_end(&self, item: &Item, from: usize) -> Option<usize> {
        next_end(self.line, item, from, self.format.escape)
    }

    /// Checks the value `pos..end` of item `i`, records it, and matches on.
    #[inline]
    fn value(&mut self, i: usize, pos: usize, end: usize) -> bool {
        let item = &self.format.items[i];
        let raw = &self.line[pos..end];
        if !self.assign(&item.var, raw) {
            let var = item.var.name.clone();
            return self.fail(ParseError {
                at: pos,
                kind: ErrorKind::BadValue {
                    var,
                    expected: item.var.shape.expected(),
                },
            });
        }
        if !starts_with(&self.line[end..], &item.lit) {
            return self.fail(self.format.literal_error(end, Some(i), 0));
        }
        self.item(i + 1, end + item.lit.len())
    }

    /// After the last item: only whitespace-separated extra fields may follow.
    fn tail(&mut self, i: usize, pos: usize) -> bool {
        let rest = &self.line[pos..];
        let last_lit_ends_in_space = self
            .format
            .items
            .last()
            .is_some_and(|it| it.lit.ends_with(b" "));
        if rest.is_empty() || matches!(rest[0], b' ' | b'\t') || last_lit_ends_in_space {
            return true;
        }
        let after = self.format.items[i - 1].var.name.clone();
        self.fail(ParseError {
            at: pos,
            kind: ErrorKind::TrailingBytes { after },
        })
    }

    #[inline]
    fn assign(&mut self, var: &Var, raw: &'a [u8]) -> bool {
        assign(self.rec, self.scratch, var, raw, self.format.escape)
    }
}

/// Checks `raw` against the variable's shape and stores it in `rec`.
#[inline]
fn assign<'a>(
    rec: &mut Record<'a>,
    scratch: &mut ParseScratch,
    var: &Var,
    raw: &'a [u8],
    escape: Escape,
) -> bool {
    if !shape_ok(var.shape, raw, escape) {
        return false;
    }
    let missing = raw == b"-";
    let text = (!missing).then_some(Text { raw, escape });
    match var.field {
        Field::Client => rec.client = text,
        Field::User => rec.user = text,
        Field::TimeLocal => match scratch.time.time_local(raw) {
            Some(t) => rec.time_ms = t,
            None => return false,
        },
        Field::TimeIso8601 => match parse_iso8601(raw) {
            Some(t) => rec.time_ms = t,
            None => return false,
        },
        Field::TimeEpoch => match parse_epoch_seconds(raw) {
            Some(t) => rec.time_ms = t,
            None => return false,
        },
        Field::Request => match text {
            Some(t) => rec.split_request(t),
            None => rec.request = None,
        },
        Field::Method => rec.method = text,
        Field::Target => {
            if let Some(t) = text {
                rec.set_target(t);
            }
        }
        Field::Path => rec.path = text,
        Field::Query => rec.query = text.filter(|t| !t.raw.is_empty()),
        Field::Protocol => rec.protocol = text,
        Field::Status => rec.status = parse_u64(raw).and_then(|s| u16::try_from(s).ok()),
        Field::Bytes => rec.bytes = Some(parse_u64(raw).unwrap_or(0)),
        Field::Referer => rec.referer = text,
        Field::UserAgent => rec.user_agent = text,
        Field::RequestTime => rec.request_time_ms = parse_seconds_as_millis(raw),
        Field::Key => rec.key = text,
        Field::Authorization => rec.authorization = text,
        Field::ForwardedFor => rec.forwarded_for = text,
        Field::RealIp => rec.real_ip = text,
        Field::Other => {}
    }
    true
}

/// The next place at or after `from` where the value of `item` may end.
#[inline]
fn next_end(line: &[u8], item: &Item, mut from: usize, escape: Escape) -> Option<usize> {
    if item.lit.is_empty() {
        // The last variable ends at a space (extra trailing fields) or the end of the line.
        return Some(memchr::memchr(b' ', &line[from..]).map_or(line.len(), |p| from + p));
    }
    // Literals are short: find their first byte, then compare.
    let first = item.lit[0];
    loop {
        let p = from + find_byte(first, &line[from..])?;
        if !starts_with(&line[p..], &item.lit)
            || (first == b'"' && escape.backslash_quotes() && escaped(line, p))
        {
            from = p + 1;
            continue;
        }
        return Some(p);
    }
}

/// The first `b` in `hay`. Most fields are a few bytes long, where a plain
/// loop beats the set-up of a vectorised search; longer ones go to memchr.
#[inline]
fn find_byte(b: u8, hay: &[u8]) -> Option<usize> {
    let head = hay.len().min(16);
    match hay[..head].iter().position(|&c| c == b) {
        Some(p) => Some(p),
        None => memchr::memchr(b, &hay[head..]).map(|p| p + head),
    }
}

/// `hay.starts_with(lit)` for the short literals of a format, without a
/// call to `memcmp` (which costs more than the comparison itself).
#[inline]
fn starts_with(hay: &[u8], lit: &[u8]) -> bool {
    hay.len() >= lit.len() && hay.iter().zip(lit).all(|(a, b)| a == b)
}

/// Whether the byte at `p` is preceded by an odd number of backslashes.
fn escaped(line: &[u8], p: usize) -> bool {
    line[..p].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

/// Length of the value at the start of `rest` for a self-delimiting shape.
fn shape_len(shape: Shape, rest: &[u8], escape: Escape) -> usize {
    let digits = |b: &[u8]| b.iter().take_while(|c| c.is_ascii_digit()).count();
    if rest.first() == Some(&b'-') && shape != Shape::TimeIso && shape != Shape::TimeLocal {
        return 1;
    }
    match shape {
        Shape::Status if escape == Escape::Json => digits(rest),
        Shape::Status => digits(rest).min(3),
        Shape::Int => digits(rest),
        Shape::Decimal => {
            let n = digits(rest);
            if rest.get(n) == Some(&b'.') {
                n + 1 + digits(&rest[n + 1..])
            } else {
                n
            }
        }
        Shape::TimeLocal => match rest.get(20) {
            Some(b'.') => memchr::memchr(b' ', &rest[20..])
                .map_or(rest.len(), |p| (20 + p + 6).min(rest.len())),
            _ => rest.len().min(26),
        },
        Shape::TimeIso => rest
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b':' | b'.' | b'+')))
            .unwrap_or(rest.len()),
        Shape::Token | Shape::List | Shape::Text => rest.len(),
    }
}

fn shape_ok(shape: Shape, raw: &[u8], escape: Escape) -> bool {
    let dash_ok = escape != Escape::Nginx;
    match shape {
        Shape::Status => {
            (raw.len() == 3 && raw.iter().all(u8::is_ascii_digit)) || (dash_ok && raw == b"-")
        }
        Shape::Int => {
            (!raw.is_empty() && raw.iter().all(u8::is_ascii_digit)) || (dash_ok && raw == b"-")
        }
        Shape::Decimal => raw == b"-" || parse_epoch_seconds(raw).is_some(),
        Shape::TimeLocal | Shape::TimeIso => !raw.is_empty(),
        Shape::Token => !raw.is_empty() && memchr::memchr(b' ', raw).is_none(),
        Shape::List => list_ok(raw),
        Shape::Text => true,
    }
}

/// `$upstream_*` values: elements without spaces, joined by `, ` or ` : `.
fn list_ok(raw: &[u8]) -> bool {
    let mut rest = raw;
    loop {
        let n = rest.iter().take_while(|&&c| c != b' ' && c != b',').count();
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        if rest.is_empty() {
            return true;
        }
        if let Some(r) = rest
            .strip_prefix(b", ")
            .or_else(|| rest.strip_prefix(b" : "))
        {
            rest = r;
        } else {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_forms_compile_to_the_same_format() {
        let bare = r#"$remote_addr - $remote_user [$time_local] "$request" $status"#;
        let directive = "log_format main '$remote_addr - $remote_user [$time_local] '\n    '\"$request\" $status';";
        let a = NginxFormat::from_directive(bare, &[]).unwrap();
        let b = NginxFormat::from_directive(directive, &[]).unwrap();
        assert_eq!(a.source, b.source);
        assert_eq!(b.name, "main");
    }

    #[test]
    fn escape_parameter_is_read() {
        let f = NginxFormat::from_directive(
            r#"log_format j escape=json '{"t":"$time_iso8601"}';"#,
            &[],
        )
        .unwrap();
        assert_eq!(f.escape, Escape::Json);
        assert_eq!(
            NginxFormat::from_directive("log_format j escape=xml '$msec';", &[]).unwrap_err(),
            FormatError::UnknownEscape("xml".into())
        );
    }

    #[test]
    fn formats_without_time_or_with_glued_text_variables_are_refused() {
        assert_eq!(
            NginxFormat::from_directive("$remote_addr $status", &[]).unwrap_err(),
            FormatError::NoTime
        );
        assert!(matches!(
            NginxFormat::from_directive("$msec $http_a$http_b", &[]).unwrap_err(),
            FormatError::AdjacentVariables(..)
        ));
    }

    #[test]
    fn upstream_lists() {
        assert!(list_ok(b"0.001, 0.002 : 0.001"));
        assert!(list_ok(b"- : 0.004"));
        assert!(!list_ok(b"0.001,"));
        assert!(!list_ok(b"0.001 x"));
    }
}
