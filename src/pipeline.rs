//! The one engine behind `scan` and (later) `watch`: a line goes through the
//! format, the key extractor, usage and the detectors.
//!
//! ```text
//! line ──parse──▶ Record ──extract──▶ KeyedRequest ──▶ usage (per key, per day)
//!                                                 └──▶ detectors ──▶ findings
//! ```
//!
//! An [`Analyzer`] is one thread's worth of state; analyzers of consecutive
//! chunks of input merge in order.

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
    /// Otherwise (one piece of a parallel scan) their input, to replay in order.
    events: Option<Vec<crate::detect::ordered::Event>>,
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
            events: None,
        }
    }

    /// An analyzer for one piece of a file read in parallel: the ordered
    /// rules' input is kept, to be replayed in order by [`Analyzer::merge`].
    pub fn recording(engine: &'e Engine) -> Self {
        let mut a = Analyzer::new(engine);
        if a.ordered.take().is_some() {
            a.events = Some(Vec::new());
        }
        a
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
        self.usage.record(&Hit {
            day,
            bucket: self.days.bucket_5m(rec.time_ms),
            endpoint: &self.endpoint,
            time_ms: rec.time_ms,
            key,
            status: rec.status,
            bytes: rec.bytes.unwrap_or(0),
            latency_ms: rec.request_time_ms,
            client,
        });
        self.detectors.observe(&req);
        if let Some(key) = key {
            let ua = rec.user_agent.map_or(0, |u| {
                std::hash::BuildHasher::hash_one(&self.ua_hasher, u.raw)
            });
            let ev = crate::detect::ordered::Event {
                time_ms: rec.time_ms,
                client,
                key,
                status: rec.status.unwrap_or(0),
                ua,
            };
            if let Some(o) = &mut self.ordered {
                o.observe(&ev);
            } else if let Some(events) = &mut self.events {
                events.push(ev);
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

    /// Folds in the analyzer of the input that follows this one.
    pub fn merge(&mut self, other: Analyzer<'_>) {
        if let Some(events) = other.events {
            match (&mut self.ordered, &mut self.events) {
                (Some(o), _) => events.iter().for_each(|e| o.observe(e)),
                (None, Some(mine)) => mine.extend(events),
                (None, None) => {}
            }
        }
        self.usage.merge(&other.usage);
        self.detectors.merge(other.detectors);
        self.totals.add(&other.totals);
        let room = SKIPPED_KEPT.saturating_sub(self.skipped.len());
        self.skipped.extend(other.skipped.into_iter().take(room));
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
