//! The one engine behind `scan` and (later) `watch`: a line goes through the
//! format, the key extractor, usage and the detectors.
//!
//! ```text
//! line ──parse──▶ Record ──extract──▶ KeyedRequest ──▶ usage (per key, per day)
//!                                                 └──▶ detectors ──▶ findings
//! ```
//!
//! An [`Analyzer`] is one thread's worth of state. On several threads, the
//! analyzer of each piece of a file parses, finds keys and runs the plain
//! detectors, and records for each line a [`Rows`] entry; the analyzer of
//! the whole file takes the pieces in order, giving the rows to usage and
//! (perhaps on another thread) to the ordered rules.

use std::sync::Arc;

use crate::detect::Detectors;
use crate::format::{ErrorKind, LogFormat, ParseError, ParseScratch, Record};
use crate::keys::{Exposure, Extractor, KeyScratch};
use crate::request::{Evidence, KeyedRequest};
use crate::url;
use crate::usage::{Hit, Usage, distinct::client_tag};
use crate::zone::{DayCutter, Zone};

/// Everything that is fixed for a run and shared by all threads.
pub struct Engine {
    pub format: LogFormat,
    pub extractor: Extractor,
    pub zone: Zone,
    /// Lines longer than this are counted and skipped, never buffered whole.
    pub max_line: usize,
    /// Which rules run.
    pub rules: crate::detect::RulesConfig,
    /// Proxies whose forwarded-for headers name the client.
    pub proxies: crate::clients::Proxies,
}

/// Line counts of an input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub lines: u64,
    pub parsed: u64,
    pub skipped: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.lines += o.lines;
        self.parsed += o.parsed;
        self.skipped += o.skipped;
    }
}

/// A line that did not parse, kept for the report (only the first few).
#[derive(Clone, Debug)]
pub struct Skipped {
    pub file: Arc<str>,
    /// 1-based line number within its file.
    pub line: u64,
    pub error: ParseError,
    /// The start of the line with anything secret-looking masked.
    pub preview: String,
}

/// What an analyzer learned, carried across a reload ([`Analyzer::into_state`]).
pub struct Learned {
    usage: Usage,
    totals: Totals,
    skipped: Vec<Skipped>,
    last_time_ms: Option<i64>,
    detectors: Detectors,
    ordered: Option<crate::detect::ordered::OrderedDetectors>,
}

/// How many skipped lines an analyzer keeps for the report.
pub const SKIPPED_KEPT: usize = 5;

/// One thread's state while reading input.
pub struct Analyzer<'e> {
    engine: &'e Engine,
    parse: ParseScratch,
    keys: KeyScratch,
    exposures: Vec<Exposure>,
    secrets: Vec<crate::keys::SecretHit>,
    ua_hasher: crate::hash::FastState,
    /// The current request's endpoint, reused.
    endpoint: String,
    days: DayCutter,
    pub usage: Usage,
    pub detectors: Detectors,
    pub totals: Totals,
    pub skipped: Vec<Skipped>,
    /// The time of the last line parsed.
    pub last_time_ms: Option<i64>,
    /// Rules that need requests in order, when this analyzer sees them in order.
    pub ordered: Option<crate::detect::ordered::OrderedDetectors>,
    /// One piece of a parallel scan: what usage and the ordered rules take
    /// from each line, to be replayed in log order by [`Analyzer::merge`].
    rows: Option<Rows>,
}

/// A thread's buffers and caches, handed from one piece to the next.
#[derive(Default)]
pub struct Scratch {
    parse: ParseScratch,
    keys: KeyScratch,
    /// Rows of an earlier piece, taken again (their memory, not their rows).
    pub rows: Rows,
}

/// What usage and the ordered rules take from one line.
struct Row {
    day: chrono::NaiveDate,
    bucket: u16,
    status: Option<u16>,
    latency_ms: Option<u32>,
    /// Where the line's endpoint ends in [`Rows::endpoints`] (it starts
    /// where the previous row's ends).
    endpoint_end: usize,
    time_ms: i64,
    bytes: u64,
    client: u128,
    ua: u64,
    key: Option<crate::keys::KeyRef>,
}

/// The rows of a piece of a parallel scan, in log order: the parsing,
/// key extraction and plain rules of a piece run on a worker thread; usage
/// and the rules that need log order take the rows on the merging thread.
/// So usage sees every line in the same order whatever the number of
/// threads (the same output, the flood's folding of light keys included),
/// and there is one usage table, not one per piece.
#[derive(Default)]
pub struct Rows {
    rows: Vec<Row>,
    endpoints: String,
}

impl<'e> Analyzer<'e> {
    pub fn new(engine: &'e Engine) -> Self {
        Analyzer {
            engine,
            parse: ParseScratch::default(),
            keys: KeyScratch::default(),
            exposures: Vec::new(),
            secrets: Vec::new(),
            ua_hasher: crate::hash::FastState::default(),
            endpoint: String::new(),
            days: DayCutter::new(engine.zone.clone()),
            usage: Usage::default(),
            detectors: Detectors::new(&engine.rules),
            totals: Totals::default(),
            skipped: Vec::new(),
            last_time_ms: None,
            ordered: engine.rules.ordered(),
            rows: None,
        }
    }

    /// An analyzer for one piece of a file read in parallel: the input of
    /// usage and of the ordered rules is kept, to be replayed in order by
    /// [`Analyzer::merge`]. `scratch` is what the thread's previous piece
    /// left ([`Analyzer::take_scratch`]).
    pub fn recording(engine: &'e Engine, scratch: Scratch) -> Self {
        let mut a = Analyzer::new(engine);
        a.ordered = None;
        let mut rows = scratch.rows;
        rows.clear();
        a.rows = Some(rows);
        a.parse = scratch.parse;
        a.keys = scratch.keys;
        a
    }

    /// The buffers and caches of this analyzer, for the thread's next piece:
    /// the key-id cache above all, so a key is identified (HMAC) once a
    /// thread rather than once a piece.
    pub fn take_scratch(&mut self) -> Scratch {
        Scratch {
            parse: std::mem::take(&mut self.parse),
            keys: std::mem::take(&mut self.keys),
            rows: Rows::default(),
        }
    }

    /// Every finding so far, ordered.
    pub fn findings(&self, names: &[String]) -> Vec<crate::detect::Finding> {
        let mut all = self.detectors.findings(names);
        if let Some(o) = &self.ordered {
            all.extend(o.findings(names));
        }
        crate::detect::sort_findings(&mut all);
        all
    }

    /// The time of the latest line read.
    pub fn latest_ms(&self) -> Option<i64> {
        self.last_time_ms
    }

    /// The end of the input: the rules judge the windows still open.
    pub fn finish(&mut self) {
        if let Some(o) = &mut self.ordered {
            o.finish();
        }
    }

    /// The clock says `now_ms` (caught up with the files): the rules judge
    /// the windows that ended by then, without waiting for more lines.
    pub fn advance(&mut self, now_ms: i64) {
        if let Some(o) = &mut self.ordered {
            o.advance(now_ms);
        }
    }

    /// What the rules learned, for the store; `None` when no ordered rule runs.
    pub fn learned_bytes(&self) -> Option<Vec<u8>> {
        self.ordered.as_ref().map(|o| o.save())
    }

    /// Takes up what the rules learned before a restart, saved with the key
    /// names `saved_names`. Returns whether it could be read.
    pub fn take_learned(&mut self, bytes: &[u8], saved_names: &[String]) -> bool {
        if self.ordered.is_none() {
            return true; // no rule that learns is on
        }
        let now = &self.engine.extractor.names;
        let name = |i: Option<u32>| {
            let n = saved_names.get(i? as usize)?;
            now.iter().position(|m| m == n).map(|p| p as u32)
        };
        match crate::detect::ordered::OrderedDetectors::load(bytes, &self.engine.rules, &name) {
            Some(o) => {
                self.ordered = Some(o);
                true
            }
            None => false,
        }
    }

    /// What this analyzer learned, without the engine it ran on, to be
    /// taken up by one on another engine (a reload): usage not yet
    /// committed, line counts, skipped lines, and every rule's state.
    pub fn into_state(self) -> Learned {
        Learned {
            usage: self.usage,
            totals: self.totals,
            skipped: self.skipped,
            last_time_ms: self.last_time_ms,
            detectors: self.detectors,
            ordered: self.ordered,
        }
    }

    /// Takes up [`Analyzer::into_state`] of another analyzer, with this
    /// engine's settings: a rule still on keeps its state, one switched off
    /// forgets it, one switched on starts empty.
    pub fn restore(&mut self, old: Learned) {
        let rules = &self.engine.rules;
        self.usage = old.usage;
        self.totals = old.totals;
        self.skipped = old.skipped;
        self.last_time_ms = old.last_time_ms;
        self.detectors = old.detectors.reconfigure(rules);
        self.ordered = match old.ordered {
            Some(o) => o.reconfigure(rules),
            None => rules.ordered(),
        };
    }

    /// Reads one line (without `\n`) in the engine's format; `line_no` is
    /// its 1-based number in `file`.
    pub fn line(&mut self, line: &[u8], file: &Arc<str>, line_no: u64) {
        let engine = self.engine;
        self.line_with(&engine.format, line, file, line_no);
    }

    /// Reads one line in `format` (a followed file's own); returns the
    /// line's time when it parsed.
    pub fn line_with(
        &mut self,
        format: &LogFormat,
        line: &[u8],
        file: &Arc<str>,
        line_no: u64,
    ) -> Option<i64> {
        self.totals.lines += 1;
        let engine = self.engine;
        let mut rec = Record::default();
        if let Err(error) = format.parse_into(line, &mut self.parse, &mut rec) {
            self.skip(file, line_no, error, line);
            return None;
        }
        self.totals.parsed += 1;
        self.last_time_ms = Some(rec.time_ms);
        let keyed = engine.extractor.extract(&rec, &mut self.keys);
        let key = keyed.key;
        self.exposures.clear();
        self.exposures.extend_from_slice(keyed.exposures);
        self.secrets.clear();
        self.secrets.extend_from_slice(keyed.secrets);
        let evidence =
            (!self.exposures.is_empty() || !self.secrets.is_empty()).then(|| self.evidence(&rec));
        let mut client = rec.client.map_or(0, |c| client_tag(c.raw));
        if !engine.proxies.is_empty() {
            client = engine.proxies.client(
                client,
                rec.forwarded_for.map(|t| t.raw),
                rec.real_ip.map(|t| t.raw),
            );
        }
        let scrub = &self.keys.scrub;
        let req = KeyedRequest {
            rec: &rec,
            key,
            exposures: &self.exposures,
            secrets: &self.secrets,
            client,
            evidence: evidence.as_ref(),
            scrub,
        };
        let day = self.days.day(rec.time_ms);
        // Usage lists endpoints only of requests the API did not refuse.
        match rec.path {
            Some(p) if !matches!(rec.status, Some(401 | 403)) => {
                crate::usage::top::endpoint(p.raw, scrub, &mut self.endpoint)
            }
            _ => self.endpoint.clear(),
        }
        self.detectors.observe(&req);
        let ua = match (key, &rec.user_agent) {
            (Some(_), Some(u)) => std::hash::BuildHasher::hash_one(&self.ua_hasher, u.raw),
            _ => 0,
        };
        let row = Row {
            day,
            bucket: self.days.bucket_5m(rec.time_ms),
            status: rec.status,
            latency_ms: rec.request_time_ms,
            endpoint_end: 0,
            time_ms: rec.time_ms,
            bytes: rec.bytes.unwrap_or(0),
            client,
            ua,
            key,
        };
        match &mut self.rows {
            Some(rows) => {
                rows.endpoints.push_str(&self.endpoint);
                rows.rows.push(Row {
                    endpoint_end: rows.endpoints.len(),
                    ..row
                });
            }
            None => {
                row.to_usage(&mut self.usage, &self.endpoint);
                if let Some(o) = &mut self.ordered {
                    row.to_ordered(o);
                }
            }
        }
        Some(rec.time_ms)
    }

    /// Counts a line that was too long to read whole.
    pub fn too_long(&mut self, file: &Arc<str>, line_no: u64, len: usize, head: &[u8]) {
        self.totals.lines += 1;
        self.skip(
            file,
            line_no,
            ParseError {
                at: 0,
                kind: ErrorKind::LineTooLong { len },
            },
            head,
        );
    }

    fn skip(&mut self, file: &Arc<str>, line_no: u64, error: ParseError, line: &[u8]) {
        self.totals.skipped += 1;
        if self.skipped.len() < SKIPPED_KEPT {
            self.skipped.push(Skipped {
                file: file.clone(),
                line: line_no,
                error,
                preview: self.engine.extractor.preview(line),
            });
        }
    }

    /// The request and Referer of a line that exposed something, with every
    /// credential redacted (see [`crate::keys::redact`]).
    fn evidence(&mut self, rec: &Record<'_>) -> Evidence {
        let ex = &self.engine.extractor;
        let scrub = &self.keys.scrub;
        let path = rec.path.map(|p| p.decode()).unwrap_or_default();
        let query = rec.query.map(|q| q.decode());
        let method = rec
            .method
            .map(|m| scrub.scrub(&m.decode()))
            .unwrap_or_default();
        let target = ex.redact_url(&path, query.as_deref(), scrub);
        let referer = rec.referer.map(|r| {
            let r = r.decode();
            let (p, q) = url::split_url(&r);
            let authority = p
                .as_ptr()
                .addr()
                .saturating_sub(r.as_ptr().addr())
                .min(r.len());
            let mut head = r[..authority].to_vec();
            if let Some(info) = crate::keys::extract::url_userinfo(&head) {
                let at = info.as_ptr().addr() - head.as_ptr().addr();
                let len = info.len();
                head.splice(at..at + len, crate::keys::redact::REDACTED.bytes());
            }
            scrub.scrub(&head) + &ex.redact_url(p, q, scrub)
        });
        Evidence {
            request: if method.is_empty() {
                target
            } else {
                format!("{method} {target}")
            },
            referer,
        }
    }

    /// Folds in the piece of a parallel scan ([`Analyzer::recording`])
    /// that follows what this analyzer read: usage takes the piece's rows
    /// here, and they are given back for the ordered rules to take next
    /// ([`Rows::replay`], on another thread, as [`Analyzer::take_ordered`]
    /// allows).
    pub fn merge_piece(&mut self, other: Analyzer<'_>) -> Rows {
        let rows = other.rows.unwrap_or_default();
        rows.each(|row, endpoint| row.to_usage(&mut self.usage, endpoint));
        self.detectors.merge(other.detectors);
        self.totals.add(&other.totals);
        let room = SKIPPED_KEPT.saturating_sub(self.skipped.len());
        self.skipped.extend(other.skipped.into_iter().take(room));
        rows
    }

    /// The ordered rules, taken out to run on another thread while pieces
    /// are merged; [`Analyzer::put_ordered`] puts them back.
    pub fn take_ordered(&mut self) -> Option<crate::detect::ordered::OrderedDetectors> {
        self.ordered.take()
    }

    pub fn put_ordered(&mut self, o: Option<crate::detect::ordered::OrderedDetectors>) {
        self.ordered = o;
    }
}

impl Row {
    fn to_usage(&self, usage: &mut Usage, endpoint: &str) {
        usage.record(&Hit {
            day: self.day,
            bucket: self.bucket,
            endpoint,
            time_ms: self.time_ms,
            key: self.key,
            status: self.status,
            bytes: self.bytes,
            latency_ms: self.latency_ms,
            client: self.client,
        });
    }

    fn to_ordered(&self, o: &mut crate::detect::ordered::OrderedDetectors) {
        if let Some(key) = self.key {
            o.observe(&crate::detect::ordered::Event {
                time_ms: self.time_ms,
                client: self.client,
                key,
                status: self.status.unwrap_or(0),
                ua: self.ua,
            });
        }
    }
}

impl Rows {
    /// Each row in order, with its endpoint.
    fn each(&self, mut f: impl FnMut(&Row, &str)) {
        let mut start = 0;
        for row in &self.rows {
            f(
                row,
                self.endpoints
                    .get(start..row.endpoint_end)
                    .unwrap_or_default(),
            );
            start = row.endpoint_end;
        }
    }

    /// Empties the rows, keeping their memory.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.endpoints.clear();
    }

    /// The ordered rules take the rows, in log order.
    pub fn replay(&self, o: &mut crate::detect::ordered::OrderedDetectors) {
        self.rows.iter().for_each(|r| r.to_ordered(o));
    }
}

/// What `watch` reads goes through the same engine as `scan`.
impl crate::source::lines::LineSink for Analyzer<'_> {
    fn line(
        &mut self,
        format: &LogFormat,
        line: &[u8],
        file: &Arc<str>,
        line_no: u64,
    ) -> Option<i64> {
        self.line_with(format, line, file, line_no)
    }

    fn too_long(&mut self, file: &Arc<str>, line_no: u64, len: usize, head: &[u8]) {
        Analyzer::too_long(self, file, line_no, len, head);
    }
}
