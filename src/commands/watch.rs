//! `keywatch watch`: follow access logs as they are written and rotated,
//! count every line exactly once into the store, and report findings.
//!
//! The [`Follower`] reads and hands lines to the pipeline; this loop commits
//! offsets and counters together (on time, during a long catch-up too, and
//! at once at start), evaluates alerts, sends the daily summary, serves
//! metrics and health, and reloads the configuration on SIGHUP (a bad one
//! is reported and the old one kept). Faults (an unreadable or missing
//! file, a store deleted underneath, a failing commit) are said once, shown
//! by `status` and `/healthz`, and retried on a timer.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Common, Failure, Setup};
use crate::detect::key_phrase;
use crate::format::LogFormat;
use crate::keys::KeyId;
use crate::pipeline::{Analyzer, Engine, Learned};
use crate::source::follower::{DEFAULT_BUDGET, FollowOptions, Follower};
use crate::source::stream::StartAt;
use crate::store::{Checkpoint, Store};
use crate::usage::Usage;

#[derive(Clone, Debug)]
pub struct WatchArgs {
    pub common: Common,
    pub patterns: Vec<String>,
    pub log_format: Option<String>,
    pub key_fields: Vec<String>,
    pub start_at: StartAt,
    pub poll_interval: Duration,
    pub commit_interval: Duration,
    pub max_line_length: Option<usize>,
    /// Serve Prometheus metrics on this address.
    pub metrics_listen: Option<String>,
    /// Check files on a timer only, never through file events.
    pub poll_only: bool,
    /// Close a file that has had nothing new for this long (reopened on change).
    pub idle_close: Duration,
    /// A path named literally that is missing this long is a fault.
    pub missing_grace: Duration,
}

/// Why following stopped.
enum Stop {
    Exit,
    /// SIGHUP with a configuration that checked out: follow again with it,
    /// keeping what the rules learned.
    Reload(Box<Prepared>, Box<Learned>),
}

/// Signals the loop watches for.
struct Signals {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

/// The file in the state directory where `watch` says what is wrong, for
/// `status` (which reads it only while a `watch` holds the state).
pub const HEALTH_FILE: &str = "watch-health.json";

/// A configuration read and checked: everything a run of the loop needs.
struct Prepared {
    setup: Setup,
    engine: Engine,
    /// The configured format, or `None` to detect it per file.
    format: Option<Arc<LogFormat>>,
    fields: Vec<String>,
    max_line: usize,
}

/// Reads and checks the configuration (the format, key names, revoked ids,
/// the channels) without touching the store.
fn prepare(args: &WatchArgs) -> Result<Prepared, Failure> {
    let setup = Setup::load(&args.common)?;
    let sources = setup.key_sources(&args.key_fields);
    let fields = sources.fields.clone();
    let format = setup.log_format(args.log_format.as_deref(), &sources)?;
    setup.channels()?;
    let extractor = setup.extractor(sources)?;
    let max_line = args
        .max_line_length
        .or(setup.config.format.max_line_length)
        .unwrap_or(super::scan::DEFAULT_MAX_LINE);
    if format.is_none() {
        eprintln!(
            "keywatch: the log format is detected per file from its first lines (set it with --log-format)"
        );
    }
    let engine = Engine {
        format: format
            .clone()
            .unwrap_or_else(|| crate::format::presets::combined(&fields)),
        extractor,
        zone: setup.zone.clone(),
        max_line,
        rules: setup.config.rules.clone(),
        // Checked with the configuration (see `config::ranges`).
        proxies: crate::clients::Proxies::parse(&setup.config.clients.trusted_proxies)
            .unwrap_or_default(),
    };
    Ok(Prepared {
        format: format.map(Arc::new),
        setup,
        engine,
        fields,
        max_line,
    })
}

pub fn run(args: &WatchArgs) -> Result<(), Failure> {
    if args.patterns.is_empty() {
        return Err(Failure::Usage(
            "watch: name at least one FILE or GLOB to follow".into(),
        ));
    }
    let signals = Signals {
        term: Arc::new(AtomicBool::new(false)),
        hup: Arc::new(AtomicBool::new(false)),
    };
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&signals.term))
            .map_err(|e| Failure::Io(format!("signal handler: {e}")))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&signals.hup))
        .map_err(|e| Failure::Io(format!("signal handler: {e}")))?;
    let mut prepared = prepare(args)?;
    // One writer per state directory, for as long as this process runs
    // (reloads included).
    let (state, _lock) = prepared.setup.lock_state()?;
    let page = crate::metrics::Page::default();
    if let Some(addr) = &args.metrics_listen {
        let bound = crate::metrics::serve(addr, page.clone())
            .map_err(|e| Failure::Usage(format!("--metrics-listen {addr}: {e}")))?;
        eprintln!("keywatch: metrics on http://{bound}/metrics");
    }
    let mut learned = None;
    let mut reloads_ok = true;
    loop {
        match follow(
            args,
            &prepared,
            &signals,
            &page,
            state.path(),
            learned.take(),
            &mut reloads_ok,
        )? {
            Stop::Exit => return Ok(()),
            Stop::Reload(next, state) => {
                prepared = *next;
                learned = Some(*state);
                eprintln!("keywatch: SIGHUP: configuration read again, files reopened");
            }
        }
    }
}

/// What is wrong now, by kind: the follower's files, the store, commits.
#[derive(Default, PartialEq, Eq, Clone)]
struct Health {
    faults: Vec<(String, String, String)>,
}

impl Health {
    fn lines(&self) -> Vec<String> {
        self.faults.iter().map(|(_, _, m)| m.clone()).collect()
    }

    /// Written for `status` (atomically, private); removed when healthy.
    fn publish(&self, state: &Path) {
        let v = serde_json::json!({
            "pid": std::process::id(),
            "faults": self.faults.iter().map(|(kind, file, message)| serde_json::json!({"kind": kind, "file": file, "message": message})).collect::<Vec<_>>(),
        });
        let _ = crate::files::write_private(state, HEALTH_FILE, format!("{v}\n").as_bytes());
    }
}

/// Follows until a signal says to stop or reload.
#[allow(clippy::too_many_arguments)]
fn follow(
    args: &WatchArgs,
    prepared: &Prepared,
    signals: &Signals,
    page: &crate::metrics::Page,
    state: &Path,
    learned: Option<Learned>,
    reloads_ok: &mut bool,
) -> Result<Stop, Failure> {
    let setup = &prepared.setup;
    let engine = &prepared.engine;
    let names = engine.extractor.names.clone();
    let mut store = Store::open(&setup.state_dir).map_err(|e| match e {
        crate::store::StoreError::Open { .. } | crate::store::StoreError::Create { .. } => {
            Failure::Io(e.to_string())
        }
        _ => Failure::Usage(e.to_string()),
    })?;
    let mut analyzer = Analyzer::new(engine);
    match learned {
        Some(l) => analyzer.restore(l),
        // A start: what the rules learned before the last stop, committed
        // with the offsets it goes with.
        None => match store.learned() {
            Ok(Some((saved_names, bytes))) => {
                if !analyzer.take_learned(&bytes, &saved_names) {
                    eprintln!(
                        "keywatch: what the rules learned before was saved by another version of keywatch; they learn again from here"
                    );
                }
            }
            Ok(None) => {}
            Err(e) => eprintln!("keywatch: {e}; the rules learn again from here"),
        },
    }
    // What the rules learned is committed with the offsets it goes with:
    // with every commit while it is small, else every LEARNED_INTERVAL and
    // at a stop (then a crash loses at most that much of their learning;
    // counts and offsets stay exact).
    let mut last_learned = Instant::now();
    let mut learn_retry = false;
    let mut learned_len = 0;
    let mut alerting = super::alerts::Alerting::start(setup, &store)?;
    let summaries = alerting.alerter.channels().iter().any(|c| c.summary);
    let mut last_schedule_check: Option<Instant> = None;
    // The summary waits until the files were read to their ends and
    // committed, so a restart's backlog is in it.
    let mut caught_up = false;
    let mut told_sent = false;

    let mut saved: BTreeMap<String, Vec<Checkpoint>> = BTreeMap::new();
    for c in store
        .checkpoints()
        .map_err(|e| Failure::Io(e.to_string()))?
    {
        saved.entry(c.stream.clone()).or_default().push(c);
    }
    let opts = FollowOptions {
        patterns: args.patterns.clone(),
        start_at: args.start_at,
        poll_interval: args.poll_interval,
        poll_only: args.poll_only,
        idle_close: args.idle_close,
        missing_grace: args.missing_grace,
        budget: DEFAULT_BUDGET,
        max_line: prepared.max_line,
        fields: prepared.fields.clone(),
        format: prepared.format.clone(),
    };
    let mut follower = Follower::start(opts, &saved, &mut analyzer)
        .map_err(|e| Failure::Io(format!("file events: {e}")))?;
    let tick = if follower.has_events() {
        Duration::from_millis(100).min(args.poll_interval)
    } else {
        args.poll_interval
    };

    let mut announced: HashSet<(&'static str, Option<KeyId>, Option<crate::keys::Place>)> =
        HashSet::new();
    let mut last_commit: Option<Instant> = None;
    let mut dirty = true;
    let mut more = false;
    let mut commit_error: Option<String> = None;
    let mut commit_failures = 0u64;
    let mut published: Option<Health> = None;
    let mut last_health = Instant::now() - args.commit_interval;
    let mut final_look = false;
    loop {
        let step = follower
            .step(&mut analyzer, if more { Duration::ZERO } else { tick })
            .map_err(|e| Failure::Io(e.to_string()))?;
        more = step.more;
        dirty |= step.changed;
        // Findings go out as soon as the lines that raised them are read,
        // not at the next commit.
        if step.bytes > 0 {
            announce(&analyzer, &names, &mut announced);
        }
        let stopping = signals.term.load(Ordering::Relaxed);
        if stopping && !final_look {
            // Before the last commit, one look at every file, so that each
            // is on record (a file that appeared just now and is then
            // rotated away while keywatch is stopped is a gap at the next
            // start, not a silent loss). One step: a stop stays prompt.
            final_look = true;
            follower.look_everywhere();
            more = true;
            continue;
        }
        let reload = signals.hup.swap(false, Ordering::Relaxed);
        let mut next = None;
        if reload {
            // The new configuration is read and checked before it replaces
            // this one; a bad one changes nothing.
            match prepare(args) {
                Ok(p) => {
                    *reloads_ok = true;
                    next = Some(Box::new(p));
                }
                Err(e) => {
                    *reloads_ok = false;
                    eprintln!(
                        "keywatch: SIGHUP: the configuration was not changed: {}",
                        e.message()
                    );
                }
            }
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        if !more
            && step.bytes == 0
            && analyzer
                .latest_ms()
                .is_some_and(|t| now_ms - t < LIVE_HORIZON_MS)
        {
            // Caught up with a live log: windows end as the clock passes
            // them, so a leak is reported before the key's next request.
            // (Lines are written when a request ends, stamped when it
            // began: a little slack. A log whose last line is old is not
            // live: its time is its own.)
            analyzer.advance(now_ms - ADVANCE_SLACK_MS);
        }
        let leaving = stopping || next.is_some();
        // Alerts are paced by the wall clock, so they are looked at even
        // when nothing was read (a group's wait may have run out).
        dirty |= alerting.evaluate(|| analyzer.findings(&names), &names, &store, leaving);
        caught_up |= !more && step.bytes == 0 && !dirty;
        // The daily summary, once a day after its time (checked every 30 s).
        if summaries
            && caught_up
            && !leaving
            && last_schedule_check.is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
        {
            last_schedule_check = Some(Instant::now());
            let now = chrono::Utc::now().timestamp_millis();
            match super::summary::scheduled(setup, alerting.alerter.channels(), &mut store, now) {
                Ok(Some(true)) => {
                    eprintln!("keywatch: yesterday's summary queued for its channels");
                    alerting.wake();
                }
                Ok(Some(false)) => {
                    if !told_sent {
                        told_sent = true;
                        eprintln!("keywatch: yesterday's summary was already sent");
                    }
                }
                Ok(None) => {}
                Err(e) => eprintln!("keywatch: daily summary: {}", e.message()),
            }
        }
        // Commits: at once at start (so a first run's starting position is
        // kept), then on time, during a catch-up too; a failed one is tried
        // again on the same timer, new lines or not.
        let due = last_commit.is_none_or(|t| t.elapsed() >= args.commit_interval);
        if leaving || (due && (dirty || commit_error.is_some())) {
            let result = store.check_file().and_then(|()| {
                let checkpoints = follower.checkpoints();
                let gaps: Vec<_> = follower
                    .streams
                    .values_mut()
                    .flat_map(|s| s.gaps.clone())
                    .collect();
                let delta = std::mem::take(&mut analyzer.usage);
                // (Staged anew at every attempt, so it always matches the
                // offsets of the commit that carries it.)
                // Small (most sites): with every commit, so even a kill
                // loses none of it. Large: every LEARNED_INTERVAL.
                let learn = leaving
                    || learn_retry
                    || learned_len <= LEARNED_EVERY_COMMIT
                    || last_learned.elapsed() >= LEARNED_INTERVAL;
                if learn && let Some(bytes) = analyzer.learned_bytes() {
                    learned_len = bytes.len();
                    store.stage_learned(&names, bytes);
                }
                match store.commit(&checkpoints, &delta, &names, &gaps, &alerting.pending) {
                    Ok(()) => {
                        if learn {
                            last_learned = Instant::now();
                            learn_retry = false;
                        }
                        Ok(())
                    }
                    Err(e) => {
                        learn_retry |= learn;
                        // Keep the counts and notices: they are committed
                        // with the next attempt.
                        analyzer.usage = delta;
                        Err(e.to_string())
                    }
                }
            });
            last_commit = Some(Instant::now());
            match result {
                Ok(()) => {
                    for s in follower.streams.values_mut() {
                        for g in std::mem::take(&mut s.gaps) {
                            eprintln!(
                                "keywatch: {}: gap of {} bytes: {}",
                                g.stream, g.bytes, g.reason
                            );
                            s.gap_totals.0 += 1;
                            s.gap_totals.1 += g.bytes;
                        }
                    }
                    analyzer.usage = Usage::default();
                    alerting.committed();
                    if commit_error.take().is_some() {
                        eprintln!("keywatch: committing works again");
                    }
                    dirty = false;
                }
                Err(e) => {
                    commit_failures += 1;
                    if commit_error.as_deref() != Some(&e) {
                        eprintln!("keywatch: {e}");
                    }
                    commit_error = Some(e);
                }
            }
        }
        // What is wrong is looked at on the same timer, commit or not (a
        // file that cannot be read gives nothing to commit).
        if leaving || last_health.elapsed() >= args.commit_interval {
            last_health = Instant::now();
            let mut health = Health::default();
            for (file, kind, message) in follower.faults() {
                health.faults.push((kind.to_string(), file, message));
            }
            if let Some(e) = &commit_error {
                let kind = if e.contains("deleted") || e.contains("replaced") {
                    "store"
                } else {
                    "commit"
                };
                health.faults.push((
                    kind.to_string(),
                    store.path().display().to_string(),
                    format!("{e}; keywatch tries again every {:?}", args.commit_interval),
                ));
            }
            if published.as_ref() != Some(&health) {
                // Said once each (commit faults are said where they happen).
                for (kind, _, m) in &health.faults {
                    if !published
                        .as_ref()
                        .is_some_and(|p| p.faults.iter().any(|(_, _, o)| o == m))
                        && kind != "store"
                        && kind != "commit"
                    {
                        eprintln!("keywatch: {m}");
                    }
                }
                health.publish(state);
                page.set_faults(health.lines());
                published = Some(health.clone());
            }
            page.set(render_metrics(
                &follower,
                &analyzer,
                &store,
                engine,
                &names,
                &health,
                commit_failures,
                *reloads_ok,
            ));
        }
        if leaving {
            if let Some(e) = commit_error {
                return Err(Failure::Io(format!(
                    "the final commit failed ({e}); what was read since the last commit is read again at the next start"
                )));
            }
            let _ = std::fs::remove_file(state.join(HEALTH_FILE));
            return Ok(match next {
                Some(p) => Stop::Reload(p, Box::new(analyzer.into_state())),
                None => Stop::Exit,
            });
        }
    }
}

/// Prints the findings not announced before (until alert channels exist,
/// standard error is the channel).
fn announce(
    analyzer: &Analyzer<'_>,
    names: &[String],
    announced: &mut HashSet<(&'static str, Option<KeyId>, Option<crate::keys::Place>)>,
) {
    for f in analyzer.findings(names) {
        let id = (f.rule, f.key.map(|k| k.0), f.place);
        if announced.insert(id) {
            let who = match (&f.key, &f.client) {
                (Some((_, l)), _) => key_phrase(l, names),
                (None, Some(c)) => format!("client {c}"),
                (None, None) => String::new(),
            };
            eprintln!(
                "keywatch: finding: {} {} {who}: {}",
                f.severity.as_str(),
                f.rule,
                f.message
            );
        }
    }
}

/// The metrics page: lines and gaps per file, lag, findings per rule,
/// requests of today's top keys (bounded, so cardinality stays small).
#[allow(clippy::too_many_arguments)]
fn render_metrics(
    follower: &Follower,
    analyzer: &Analyzer<'_>,
    store: &Store,
    engine: &Engine,
    names: &[String],
    health: &Health,
    commit_failures: u64,
    reload_ok: bool,
) -> String {
    let streams = &follower.streams;
    let mut b = crate::metrics::Builder::default();
    type PerFile = (
        &'static str,
        &'static str,
        fn(&crate::source::stream::Stream) -> u64,
    );
    let per_file: [PerFile; 5] = [
        (
            "keywatch_lines_read_total",
            "Lines read per followed file since start.",
            |s| s.totals.lines,
        ),
        (
            "keywatch_lines_parsed_total",
            "Lines parsed per followed file since start.",
            |s| s.totals.parsed,
        ),
        (
            "keywatch_lines_skipped_total",
            "Lines that did not match the log format, per file.",
            |s| s.totals.skipped,
        ),
        (
            "keywatch_gaps_total",
            "Gaps (bytes that could not be read) reported per file since start.",
            |s| s.gap_totals.0,
        ),
        (
            "keywatch_gap_bytes_total",
            "Bytes lost in gaps per file since start.",
            |s| s.gap_totals.1,
        ),
    ];
    for (name, help, get) in per_file {
        b.family(name, "counter", help);
        for s in streams.values() {
            b.sample(name, &[("file", s.name())], get(s) as f64);
        }
    }
    b.family(
        "keywatch_lag_bytes",
        "gauge",
        "Bytes written to the current file and not yet read.",
    );
    for s in streams.values() {
        b.sample("keywatch_lag_bytes", &[("file", s.name())], s.lag() as f64);
    }
    b.family(
        "keywatch_healthy",
        "gauge",
        "1 when every file is followed and commits succeed, 0 otherwise (see /healthz).",
    );
    b.sample(
        "keywatch_healthy",
        &[],
        if health.faults.is_empty() { 1.0 } else { 0.0 },
    );
    b.family(
        "keywatch_faults",
        "gauge",
        "What keeps keywatch from its job, by kind (unreadable, not_regular, missing, io_error, store, commit) and file.",
    );
    for (kind, file, _) in &health.faults {
        b.sample(
            "keywatch_faults",
            &[("kind", kind.as_str()), ("file", file.as_str())],
            1.0,
        );
    }
    b.family(
        "keywatch_commit_failures_total",
        "counter",
        "Commits of offsets and counts that failed (each is retried).",
    );
    b.sample(
        "keywatch_commit_failures_total",
        &[],
        commit_failures as f64,
    );
    b.family(
        "keywatch_config_last_reload_successful",
        "gauge",
        "1 when the last SIGHUP's configuration was taken (or there was none), 0 when it was refused.",
    );
    b.sample(
        "keywatch_config_last_reload_successful",
        &[],
        if reload_ok { 1.0 } else { 0.0 },
    );
    b.family("keywatch_findings", "gauge", "Open findings per rule.");
    let mut per_rule: BTreeMap<&str, u64> = BTreeMap::new();
    for f in analyzer.findings(names) {
        *per_rule.entry(f.rule).or_default() += 1;
    }
    for (rule, n) in per_rule {
        b.sample("keywatch_findings", &[("rule", rule)], n as f64);
    }
    b.family(
        "keywatch_key_requests",
        "gauge",
        "Requests today of the 20 busiest keys (masked).",
    );
    let today = engine.zone.day_of(chrono::Utc::now().timestamp_millis());
    for k in store.top_keys(today, 20).unwrap_or_default() {
        let name = k.name.as_deref().unwrap_or("");
        let labels = [
            ("key_id", k.key_id.as_str()),
            ("key", k.masked.as_str()),
            ("name", name),
        ];
        b.sample("keywatch_key_requests", &labels, k.requests as f64);
    }
    b.family(
        "keywatch_notices",
        "gauge",
        "Alert notices in the outbox per channel and delivery state (queued, delivered, rejected, expired).",
    );
    for (channel, state, n) in store.outbox_counts().unwrap_or_default() {
        b.sample(
            "keywatch_notices",
            &[("channel", channel.as_str()), ("state", state.as_str())],
            n as f64,
        );
    }
    b.family(
        "keywatch_store_bytes",
        "gauge",
        "Size of the store on disk.",
    );
    b.sample("keywatch_store_bytes", &[], store.size_bytes() as f64);
    b.family(
        "keywatch_last_commit_timestamp_seconds",
        "gauge",
        "When offsets and counts were last committed.",
    );
    b.sample(
        "keywatch_last_commit_timestamp_seconds",
        &[],
        chrono::Utc::now().timestamp() as f64,
    );
    b.finish()
}

/// How often what the rules learned is committed (and at every stop) once
/// it is larger than [`LEARNED_EVERY_COMMIT`] bytes; smaller, it goes with
/// every commit.
const LEARNED_INTERVAL: Duration = Duration::from_secs(300);
const LEARNED_EVERY_COMMIT: usize = 256 << 10;

/// A log whose last line is older than this is not followed live: the
/// wall clock does not move the rules' clock.
const LIVE_HORIZON_MS: i64 = 3_600_000;

/// How far behind the wall clock the rules' clock runs while caught up.
const ADVANCE_SLACK_MS: i64 = 5_000;
