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
    };
    let mut store = Store::open(&setup.state_dir).map_err(|e| match e {
        crate::store::StoreError::Open { .. } => Failure::Io(e.to_string()),
        _ => Failure::Usage(e.to_string()),
    })?;
    let mut analyzer = Analyzer::new(&engine);

    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&term))
            .map_err(|e| Failure::Io(format!("signal handler: {e}")))?;
    }

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
    let mut watcher = notify::recommended_watcher(tx).ok();
    let mut watched: HashSet<PathBuf> = HashSet::new();
    let add_watches = |watcher: &mut Option<notify::RecommendedWatcher>,
                       watched: &mut HashSet<PathBuf>| {
        for dir in watch_dirs(&args.patterns) {
            if watched.contains(&dir) || !dir.is_dir() {
                continue;
            }
            if let Some(w) = watcher.as_mut() {
                match w.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        watched.insert(dir);
                    }
                    Err(e) => eprintln!(
                        "keywatch: {}: no file events ({e}); polling it instead",
                        dir.display()
                    ),
                }
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
        let woke_by_event = match rx.recv_timeout(tick) {
            Ok(_) => {
                while rx.try_recv().is_ok() {}
                true
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                watcher = None;
                false
            }
        };
        let stopping = term.load(Ordering::Relaxed);
        if woke_by_event || stopping || last_poll.elapsed() >= args.poll_interval {
            last_poll = Instant::now();
            for (path, s) in &mut streams {
                match s.poll(&mut analyzer, max_line) {
                    Ok(n) => {
                        dirty |= n > 0 || !s.gaps.is_empty();
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
            let gaps: Vec<_> = streams
                .values_mut()
                .flat_map(|s| std::mem::take(&mut s.gaps))
                .collect();
            for g in &gaps {
                eprintln!(
                    "keywatch: {}: gap of {} bytes: {}",
                    g.stream, g.bytes, g.reason
                );
            }
            let delta = std::mem::take(&mut analyzer.usage);
            if let Err(e) = store.commit(&checkpoints, &delta, &names, &gaps) {
                // Keep the counts: they are committed with the next attempt.
                analyzer.usage = delta;
                eprintln!("keywatch: {e}");
            } else {
                analyzer.usage = Usage::default();
            }
            last_commit = Instant::now();
            dirty = false;
            for f in analyzer.detectors.findings(&names) {
                let id = (f.rule, f.key.map(|k| k.0), f.place);
                if announced.insert(id) {
                    let who = f
                        .key
                        .as_ref()
                        .map(|(_, l)| key_phrase(l, &names))
                        .unwrap_or_default();
                    eprintln!(
                        "keywatch: finding: {} {} {who}: {}",
                        f.severity.as_str(),
                        f.rule,
                        f.message
                    );
                }
            }
        }
        if stopping {
            return Ok(());
        }
    }
}
