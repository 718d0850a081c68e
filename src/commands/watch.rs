//! `keywatch watch`: follow access logs as they are written and rotated,
//! count every line exactly once into the store, and report findings.
//!
//! One thread: wake on a file event (inotify through notify) or a short tick,
//! read what is new in every followed file, re-expand the globs every second,
//! and commit offsets and counters together at most once a second and on
//! shutdown (SIGTERM, SIGINT).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use super::{Common, Failure, Setup};
use crate::detect::key_phrase;
use crate::format::{self, LogFormat};
use crate::keys::KeyId;
use crate::pipeline::{Analyzer, Engine};
use crate::source::follow::{StartAt, Stream};
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
}

/// Why following stopped.
enum Stop {
    Exit,
    /// SIGHUP: read the configuration again and reopen every file.
    Reload,
}

/// Signals the loop watches for.
struct Signals {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

/// Files named by the patterns now (globs expanded, plain paths kept even
/// when they do not exist yet, so they are picked up when they appear).
fn expand(patterns: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in patterns {
        if p.contains(['*', '?', '[']) {
            if let Ok(paths) = glob::glob(p) {
                out.extend(paths.flatten().filter(|p| p.is_file()));
            }
        } else {
            out.push(PathBuf::from(p));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The directories to watch for events: the parents of the patterns.
fn watch_dirs(patterns: &[String]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = patterns
        .iter()
        .map(|p| {
            let fixed: String = p.split(['*', '?', '[']).next().unwrap_or("").to_string();
            let path = Path::new(&fixed);
            let dir = if p.contains(['*', '?', '[']) && fixed.ends_with('/') {
                path
            } else {
                path.parent().unwrap_or(Path::new("."))
            };
            if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.to_path_buf()
            }
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

fn pick_format(setup: &Setup, args: &WatchArgs, fields: &[String]) -> Result<LogFormat, Failure> {
    let sources = setup.key_sources(&args.key_fields);
    if let Some(f) = setup.log_format(args.log_format.as_deref(), &sources)? {
        return Ok(f);
    }
    for path in expand(&args.patterns) {
        if let Ok((r, _)) = crate::source::open_file(&path) {
            let mut head = Vec::new();
            use std::io::Read;
            let _ = r.take(1 << 20).read_to_end(&mut head);
            let (f, parsed, lines) = format::detect(&head, fields);
            if lines > 0 {
                eprintln!(
                    "keywatch: log format {:?} detected in {} ({parsed} of {lines} lines parse); set it with --log-format",
                    f.name(),
                    path.display()
                );
                return Ok(f);
            }
        }
    }
    eprintln!(
        "keywatch: no lines to detect the log format from yet; assuming \"combined\" (set it with --log-format)"
    );
    Ok(format::presets::combined(fields))
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
    // One writer per state directory, for as long as this process runs
    // (reloads included).
    let (_state, _lock) = Setup::load(&args.common)?.lock_state()?;
    let page = crate::metrics::Page::default();
    if let Some(addr) = &args.metrics_listen {
        let bound = crate::metrics::serve(addr, page.clone())
            .map_err(|e| Failure::Usage(format!("--metrics-listen {addr}: {e}")))?;
        eprintln!("keywatch: metrics on http://{bound}/metrics");
    }
    loop {
        match follow(args, &signals, &page)? {
            Stop::Exit => return Ok(()),
            Stop::Reload => eprintln!("keywatch: SIGHUP: configuration read again, files reopened"),
        }
    }
}

/// Follows until a signal says to stop or reload.
fn follow(
    args: &WatchArgs,
    signals: &Signals,
    page: &crate::metrics::Page,
) -> Result<Stop, Failure> {
    let setup = Setup::load(&args.common)?;
    let sources = setup.key_sources(&args.key_fields);
    let fields = sources.fields.clone();
    let format = pick_format(&setup, args, &fields)?;
    let extractor = setup.extractor(sources)?;
    let names = extractor.names.clone();
    let max_line = args
        .max_line_length
        .or(setup.config.format.max_line_length)
        .unwrap_or(super::scan::DEFAULT_MAX_LINE);
    let engine = Engine {
        format,
        extractor,
        zone: setup.zone.clone(),
        max_line,
        rules: setup.config.rules.clone(),
    };
    let mut store = Store::open(&setup.state_dir).map_err(|e| match e {
        crate::store::StoreError::Open { .. } => Failure::Io(e.to_string()),
        _ => Failure::Usage(e.to_string()),
    })?;
    let mut analyzer = Analyzer::new(&engine);
    let mut alerting = super::alerts::Alerting::start(&setup, &store)?;
    let summaries = alerting.alerter.channels().iter().any(|c| c.summary);
    let mut last_schedule_check: Option<Instant> = None;
    // The summary waits until the files were read to their ends and
    // committed, so a restart's backlog is in it.
    let mut caught_up = false;
    let mut told_sent = false;

    // Resume every stream the store knows, then add the ones the patterns name.
    let mut saved: BTreeMap<String, Vec<Checkpoint>> = BTreeMap::new();
    for c in store
        .checkpoints()
        .map_err(|e| Failure::Io(e.to_string()))?
    {
        saved.entry(c.stream.clone()).or_default().push(c);
    }
    let mut streams: BTreeMap<PathBuf, Stream> = BTreeMap::new();
    for (stream, cps) in &saved {
        let mut s = Stream::new(PathBuf::from(stream), StartAt::Beginning);
        if let Err(e) = s.resume(cps, &mut analyzer, max_line) {
            eprintln!("keywatch: {stream}: cannot resume ({e}); reading it anew");
        }
        streams.insert(PathBuf::from(stream), s);
    }
    let first_start = saved.is_empty();
    for path in expand(&args.patterns) {
        streams.entry(path.clone()).or_insert_with(|| {
            Stream::new(
                path,
                if first_start {
                    args.start_at
                } else {
                    StartAt::Beginning
                },
            )
        });
    }

    let (tx, rx) = crossbeam_channel::unbounded();
    let mut watcher = if args.poll_only {
        None
    } else {
        notify::recommended_watcher(tx).ok()
    };
    let mut watched: HashSet<PathBuf> = HashSet::new();
    let add_watches = |watcher: &mut Option<notify::RecommendedWatcher>,
                       watched: &mut HashSet<PathBuf>| {
        for dir in watch_dirs(&args.patterns) {
            if watched.contains(&dir) || !dir.is_dir() {
                continue;
            }
            if let Some(w) = watcher.as_mut() {
                // Tried once either way: without events the directory's files
                // are still checked every poll interval.
                if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                    eprintln!(
                        "keywatch: {}: no file events ({e}); polling it instead",
                        dir.display()
                    );
                }
                watched.insert(dir);
            }
        }
    };
    add_watches(&mut watcher, &mut watched);
    let tick = if watcher.is_some() {
        Duration::from_millis(100).min(args.poll_interval)
    } else {
        args.poll_interval
    };

    let mut announced: HashSet<(&'static str, Option<KeyId>, Option<crate::keys::Place>)> =
        HashSet::new();
    let mut last_commit = Instant::now();
    let mut last_expand = Instant::now();
    let mut last_poll = Instant::now() - args.poll_interval;
    let mut dirty = true;
    let mut warned: HashSet<PathBuf> = HashSet::new();
    loop {
        // Which files the events name; `None` means "look at all of them"
        // (an event without a path, an overflow, a name we do not follow).
        let mut touched: Option<HashSet<PathBuf>> = Some(HashSet::new());
        let note = |event: notify::Result<notify::Event>,
                    touched: &mut Option<HashSet<PathBuf>>| match event {
            Ok(e) if !e.paths.is_empty() && !e.need_rescan() => {
                if let Some(t) = touched.as_mut() {
                    t.extend(e.paths);
                }
            }
            _ => *touched = None,
        };
        let woke_by_event = match rx.recv_timeout(tick) {
            Ok(event) => {
                note(event, &mut touched);
                while let Ok(event) = rx.try_recv() {
                    note(event, &mut touched);
                }
                true
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                // No event source (polling only): wait out the tick instead.
                watcher = None;
                std::thread::sleep(tick);
                false
            }
        };
        let mut read_any = false;
        let reload = signals.hup.swap(false, Ordering::Relaxed);
        let stopping = signals.term.load(Ordering::Relaxed) || reload;
        // Every poll interval all files are checked (the reconcile pass that
        // keeps a missed event from stalling a file); in between, only those
        // the events name.
        let full = stopping || last_poll.elapsed() >= args.poll_interval;
        if full || woke_by_event {
            if full {
                last_poll = Instant::now();
                touched = None;
            }
            if let Some(t) = &touched
                && t.iter().any(|p| !streams.contains_key(p))
            {
                touched = None;
            }
            for (path, s) in &mut streams {
                if touched.as_ref().is_some_and(|t| !t.contains(path)) {
                    continue;
                }
                let before = analyzer.totals;
                let polled = s.poll(&mut analyzer, max_line);
                s.totals.lines += analyzer.totals.lines - before.lines;
                s.totals.parsed += analyzer.totals.parsed - before.parsed;
                s.totals.skipped += analyzer.totals.skipped - before.skipped;
                if let Err(e) = s.close_if_idle(args.idle_close) {
                    eprintln!("keywatch: {}: {e}", path.display());
                }
                match polled {
                    Ok(n) => {
                        let counted = analyzer.totals.lines != before.lines;
                        read_any |= n > 0 || counted;
                        dirty |= n > 0
                            || counted
                            || !s.gaps.is_empty()
                            || std::mem::take(&mut s.changed);
                        warned.remove(path);
                    }
                    Err(e) => {
                        if warned.insert(path.clone()) {
                            eprintln!("keywatch: {}: {e}", path.display());
                        }
                    }
                }
            }
        }
        // Findings go out as soon as the lines that raised them are read,
        // not at the next commit.
        if read_any {
            announce(&analyzer, &names, &mut announced);
        }
        // Alerts are paced by the wall clock, so they are looked at even
        // when nothing was read (a group's wait may have run out).
        dirty |= alerting.evaluate(|| analyzer.findings(&names), &names, &store, stopping);
        caught_up |= (full || woke_by_event) && !read_any && !dirty;
        // The daily summary, once a day after its time (checked every 30 s).
        if summaries
            && caught_up
            && !stopping
            && last_schedule_check.is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
        {
            last_schedule_check = Some(Instant::now());
            let now = chrono::Utc::now().timestamp_millis();
            match super::summary::scheduled(&setup, alerting.alerter.channels(), &mut store, now) {
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
        if last_expand.elapsed() >= Duration::from_secs(1) {
            last_expand = Instant::now();
            for path in expand(&args.patterns) {
                streams
                    .entry(path.clone())
                    .or_insert_with(|| Stream::new(path, StartAt::Beginning));
            }
            add_watches(&mut watcher, &mut watched);
        }
        if stopping || (dirty && last_commit.elapsed() >= args.commit_interval) {
            let checkpoints: Vec<Checkpoint> =
                streams.values().flat_map(Stream::checkpoints).collect();
            let mut gaps = Vec::new();
            for s in streams.values_mut() {
                for g in std::mem::take(&mut s.gaps) {
                    s.gap_totals.0 += 1;
                    s.gap_totals.1 += g.bytes;
                    gaps.push(g);
                }
            }
            for g in &gaps {
                eprintln!(
                    "keywatch: {}: gap of {} bytes: {}",
                    g.stream, g.bytes, g.reason
                );
            }
            let delta = std::mem::take(&mut analyzer.usage);
            if let Err(e) = store.commit(&checkpoints, &delta, &names, &gaps, &alerting.pending) {
                // Keep the counts and notices: they are committed with the
                // next attempt.
                analyzer.usage = delta;
                eprintln!("keywatch: {e}");
            } else {
                analyzer.usage = Usage::default();
                alerting.committed();
            }
            last_commit = Instant::now();
            dirty = false;
            page.set(render_metrics(&streams, &analyzer, &store, &engine, &names));
        }
        if stopping {
            return Ok(if reload { Stop::Reload } else { Stop::Exit });
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
fn render_metrics(
    streams: &BTreeMap<PathBuf, Stream>,
    analyzer: &Analyzer<'_>,
    store: &Store,
    engine: &Engine,
    names: &[String],
) -> String {
    let mut b = crate::metrics::Builder::default();
    type PerFile = (&'static str, &'static str, fn(&Stream) -> u64);
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
        let lag = s.active.as_ref().map_or(0, |g| {
            std::fs::metadata(&s.path)
                .map(|m| m.len())
                .unwrap_or(0)
                .saturating_sub(g.offset)
        });
        b.sample("keywatch_lag_bytes", &[("file", s.name())], lag as f64);
    }
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
