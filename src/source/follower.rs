//! The follower: every watched path as a [`Stream`], file events, and the
//! loop step that reads what is new and hands lines to a [`LineSink`].
//!
//! Events come from inotify (through notify) on the parent directories. The
//! event thread does one thing beyond passing them on: when a file appears
//! at a watched path or is renamed among its rotated names, it opens the
//! path and every rotated name it does not hold yet, at once, so a file
//! rotated away faster than parsing keeps up stays readable through its
//! open descriptor. New files at the path are counted, and one that came
//! and went before it could be opened is reported as a gap.
//!
//! Each step reads at most a budget per file, so the caller can commit on
//! time during a long catch-up; every poll interval all files are looked at
//! (the reconcile pass that keeps a missed event from stalling a file).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::checkpoint::Checkpoint;
use super::lines::LineSink;
use super::paths::{expand, watch_dirs};
use super::rotation::siblings;
use super::stream::{Ctx, StartAt, Stream};
use crate::format::LogFormat;
use crate::pipeline::Totals;

/// Bytes one file may be read per step (about a few milliseconds of work).
pub const DEFAULT_BUDGET: u64 = 4 << 20;

/// How the follower runs.
#[derive(Clone)]
pub struct FollowOptions {
    pub patterns: Vec<String>,
    /// Where a file that is there at a first start is read from.
    pub start_at: StartAt,
    pub poll_interval: Duration,
    /// No file events at all (network filesystems).
    pub poll_only: bool,
    /// A file idle this long is closed (and a drained rotated one let go).
    pub idle_close: Duration,
    /// A path named literally that is missing this long is a fault.
    pub missing_grace: Duration,
    pub budget: u64,
    pub max_line: usize,
    /// Key variables, for format detection.
    pub fields: Vec<String>,
    /// The format of every file, when configured; else detected per file.
    pub format: Option<Arc<LogFormat>>,
}

/// What the event thread tells the loop.
enum Msg {
    /// A file opened at a stream's path or rotated name as soon as it was seen.
    Opened(PathBuf, File),
    /// A new file appeared at a stream's path.
    Arrived(PathBuf),
    /// Something happened to a stream's files.
    Touched(PathBuf),
    /// Events were lost (the queue overflowed): look at everything.
    Rescan,
}

/// What the event thread needs to know: which names belong to which stream,
/// and which files each stream holds already.
#[derive(Default)]
struct Targets {
    by_name: HashMap<PathBuf, PathBuf>,
    held: HashMap<PathBuf, HashSet<(u64, u64)>>,
}

impl Targets {
    fn add(&mut self, stream: &Path) {
        self.by_name
            .insert(stream.to_path_buf(), stream.to_path_buf());
        for s in siblings(stream) {
            self.by_name.insert(s.path, stream.to_path_buf());
        }
    }
}

/// Opens, for `stream`, its path and each plain rotated name it does not
/// hold yet.
fn open_unheld(stream: &Path, targets: &Mutex<Targets>, tx: &crossbeam_channel::Sender<Msg>) {
    let names = std::iter::once(stream.to_path_buf()).chain(
        siblings(stream)
            .into_iter()
            .filter(|s| !s.gz)
            .map(|s| s.path),
    );
    for name in names {
        let Ok(file) = File::open(&name) else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let fresh = targets.lock().is_ok_and(|mut t| {
            t.held
                .entry(stream.to_path_buf())
                .or_default()
                .insert((meta.dev(), meta.ino()))
        });
        if fresh {
            let _ = tx.send(Msg::Opened(stream.to_path_buf(), file));
        }
    }
}

/// The event thread's handler; see the module documentation.
fn handle(
    event: notify::Result<notify::Event>,
    targets: &Mutex<Targets>,
    tx: &crossbeam_channel::Sender<Msg>,
) {
    let Ok(event) = event else {
        let _ = tx.send(Msg::Rescan);
        return;
    };
    if event.need_rescan() {
        let _ = tx.send(Msg::Rescan);
    }
    let arrival = matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To))
    );
    let renamed = matches!(event.kind, EventKind::Modify(ModifyKind::Name(_)));
    for path in &event.paths {
        let stream = targets
            .lock()
            .ok()
            .and_then(|t| t.by_name.get(path).cloned());
        let Some(stream) = stream else { continue };
        if arrival && *path == stream {
            let _ = tx.send(Msg::Arrived(stream.clone()));
        }
        if arrival || renamed {
            open_unheld(&stream, targets, tx);
        }
        let _ = tx.send(Msg::Touched(stream));
    }
}

/// Line counts per stream, kept by wrapping the sink.
struct Counting<'a> {
    inner: &'a mut dyn LineSink,
    totals: &'a mut Totals,
}

impl LineSink for Counting<'_> {
    fn line(
        &mut self,
        format: &LogFormat,
        line: &[u8],
        file: &Arc<str>,
        line_no: u64,
    ) -> Option<i64> {
        self.totals.lines += 1;
        let t = self.inner.line(format, line, file, line_no);
        if t.is_some() {
            self.totals.parsed += 1;
        } else {
            self.totals.skipped += 1;
        }
        t
    }

    fn too_long(&mut self, file: &Arc<str>, line_no: u64, len: usize, head: &[u8]) {
        self.totals.lines += 1;
        self.totals.skipped += 1;
        self.inner.too_long(file, line_no, len, head);
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Step {
    /// Bytes read.
    pub bytes: u64,
    /// Some file had more than its budget: step again without waiting.
    pub more: bool,
    /// Something to commit (lines, a gap, a file taken up or let go).
    pub changed: bool,
}

/// Every followed path; see the module documentation.
pub struct Follower {
    opts: FollowOptions,
    pub streams: BTreeMap<PathBuf, Stream>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    rx: crossbeam_channel::Receiver<Msg>,
    targets: Arc<Mutex<Targets>>,
    touched: HashSet<PathBuf>,
    rescan: bool,
    last_poll: Instant,
    last_expand: Instant,
    first_start: bool,
}

impl Follower {
    /// Starts watching (events first, so nothing happens unseen while the
    /// files are opened), then takes up every stream: those the store knows
    /// from their checkpoints, new ones from their start (or, on a first
    /// run, from `opts.start_at`).
    pub fn start(
        opts: FollowOptions,
        saved: &BTreeMap<String, Vec<Checkpoint>>,
        sink: &mut dyn LineSink,
    ) -> std::io::Result<Follower> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let targets = Arc::new(Mutex::new(Targets::default()));
        let watcher = if opts.poll_only {
            None
        } else {
            let (t, tx) = (Arc::clone(&targets), tx);
            notify::recommended_watcher(move |e| handle(e, &t, &tx)).ok()
        };
        let mut f = Follower {
            streams: BTreeMap::new(),
            watcher,
            watched: HashSet::new(),
            rx,
            targets,
            touched: HashSet::new(),
            rescan: true,
            last_poll: Instant::now(),
            last_expand: Instant::now(),
            first_start: saved.is_empty(),
            opts,
        };
        let mut paths: Vec<(PathBuf, bool)> =
            saved.keys().map(|s| (PathBuf::from(s), false)).collect();
        for (p, literal) in expand(&f.opts.patterns) {
            match paths.iter_mut().find(|(q, _)| *q == p) {
                Some(known) => known.1 |= literal,
                None => paths.push((p, literal)),
            }
        }
        f.add_watches();
        for (path, literal) in paths {
            if let Ok(mut t) = f.targets.lock() {
                t.add(&path);
            }
            let start_at = if f.first_start {
                f.opts.start_at
            } else {
                StartAt::Beginning
            };
            let mut s = Stream::new(path.clone(), start_at);
            s.literal = literal;
            let cps = saved
                .get(&path.display().to_string())
                .map_or(&[][..], Vec::as_slice);
            let (r, totals) = Follower::run(&f.opts, &mut s, sink, |s, ctx| {
                s.start(cps, ctx).map(|()| Default::default())
            });
            if let Err(e) = r {
                eprintln!(
                    "keywatch: {}: cannot resume ({e}); reading it anew",
                    path.display()
                );
            }
            s.totals.add(&totals);
            s.changed = true;
            f.share_held(&s);
            f.streams.insert(path, s);
        }
        Ok(f)
    }

    /// Takes up `s` (from its checkpoints) or polls it, with its lines
    /// counted into its totals.
    fn run(
        opts: &FollowOptions,
        s: &mut Stream,
        sink: &mut dyn LineSink,
        work: impl FnOnce(&mut Stream, &mut Ctx<'_>) -> std::io::Result<super::stream::Polled>,
    ) -> (std::io::Result<super::stream::Polled>, Totals) {
        let mut totals = Totals::default();
        let mut counting = Counting {
            inner: sink,
            totals: &mut totals,
        };
        let mut ctx = Ctx {
            sink: &mut counting,
            configured: opts.format.as_ref(),
            fields: &opts.fields,
            max_line: opts.max_line,
            budget: opts.budget,
            idle: opts.idle_close,
            missing_grace: opts.missing_grace,
        };
        let r = work(s, &mut ctx);
        (r, totals)
    }

    fn share_held(&self, s: &Stream) {
        if let Ok(mut t) = self.targets.lock() {
            t.held
                .insert(s.path.clone(), s.held().into_iter().collect());
        }
    }

    fn add_watches(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        for dir in watch_dirs(&self.opts.patterns) {
            if self.watched.contains(&dir) || !dir.is_dir() {
                continue;
            }
            // Tried once either way: without events the directory's files
            // are still checked every poll interval.
            if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                eprintln!(
                    "keywatch: {}: no file events ({e}); polling it instead",
                    dir.display()
                );
            }
            self.watched.insert(dir);
        }
    }

    /// Makes the next step look at every file, as the poll interval does.
    pub fn look_everywhere(&mut self) {
        self.rescan = true;
    }

    /// Whether file events are used (else only the poll interval).
    pub fn has_events(&self) -> bool {
        self.watcher.is_some()
    }

    /// Waits up to `wait` for an event (not at all when `wait` is zero),
    /// then reads what is new.
    pub fn step(&mut self, sink: &mut dyn LineSink, wait: Duration) -> std::io::Result<Step> {
        let timeout = if self.watcher.is_some() {
            wait
        } else {
            wait.min(self.opts.poll_interval)
        };
        let mut got = Vec::new();
        if !timeout.is_zero()
            && let Ok(m) = self.rx.recv_timeout(timeout)
        {
            got.push(m);
        }
        got.extend(self.rx.try_iter());
        for m in got {
            match m {
                Msg::Opened(stream, file) => {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.arrived(file);
                        self.touched.insert(stream);
                    }
                }
                Msg::Arrived(stream) => {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.note_arrival();
                    }
                    self.touched.insert(stream);
                }
                Msg::Touched(stream) => {
                    self.touched.insert(stream);
                }
                Msg::Rescan => self.rescan = true,
            }
        }
        let full = self.rescan || self.last_poll.elapsed() >= self.opts.poll_interval;
        if full {
            self.last_poll = Instant::now();
            self.rescan = false;
        }
        if self.last_expand.elapsed() >= Duration::from_secs(1) {
            self.last_expand = Instant::now();
            self.expand_again(sink);
        }
        let mut step = Step::default();
        let touched = std::mem::take(&mut self.touched);
        let paths: Vec<PathBuf> = self.streams.keys().cloned().collect();
        for path in paths {
            let Some(mut s) = self.streams.remove(&path) else {
                continue;
            };
            let wanted = full || touched.contains(&path) || s.wants_more;
            if wanted {
                let (polled, totals) =
                    Follower::run(&self.opts, &mut s, sink, |s, ctx| s.poll(ctx, full));
                s.totals.add(&totals);
                match polled {
                    Ok(p) => {
                        step.bytes += p.bytes;
                        step.more |= p.more;
                        s.wants_more = p.more;
                        s.io_error = None;
                    }
                    Err(e) => {
                        if s.io_error.as_deref() != Some(&e.to_string()) {
                            eprintln!("keywatch: {}: {e}", path.display());
                        }
                        s.io_error = Some(e.to_string());
                    }
                }
                if let Err(e) = s.close_if_idle(self.opts.idle_close) {
                    eprintln!("keywatch: {}: {e}", path.display());
                }
                step.changed |=
                    totals.lines > 0 || !s.gaps.is_empty() || std::mem::take(&mut s.changed);
                self.share_held(&s);
            }
            self.streams.insert(path, s);
        }
        Ok(step)
    }

    /// Picks up files a glob matches now (read from their start).
    fn expand_again(&mut self, sink: &mut dyn LineSink) {
        for (path, literal) in expand(&self.opts.patterns) {
            if self.streams.contains_key(&path) {
                continue;
            }
            if let Ok(mut t) = self.targets.lock() {
                t.add(&path);
            }
            let mut s = Stream::new(path.clone(), StartAt::Beginning);
            s.literal = literal;
            let (r, totals) = Follower::run(&self.opts, &mut s, sink, |s, ctx| {
                s.start(&[], ctx).map(|()| Default::default())
            });
            if let Err(e) = r {
                eprintln!("keywatch: {}: {e}", path.display());
            }
            s.totals.add(&totals);
            s.changed = true;
            self.share_held(&s);
            self.streams.insert(path.clone(), s);
            self.touched.insert(path);
        }
        self.add_watches();
    }

    /// Every checkpoint to commit.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.streams
            .values()
            .flat_map(Stream::checkpoints)
            .collect()
    }

    /// Files that cannot be followed now, with why and what to do.
    pub fn faults(&self) -> Vec<(String, &'static str, String)> {
        let mut out = Vec::new();
        for s in self.streams.values() {
            if let Some(f) = &s.fault {
                out.push((s.name().to_string(), f.kind(), f.describe(&s.path)));
            }
            if let Some(e) = &s.io_error {
                out.push((
                    s.name().to_string(),
                    "io_error",
                    format!("{}: {e}", s.name()),
                ));
            }
        }
        out
    }

    /// Whether every file was read to its end at the last step.
    pub fn caught_up(&self) -> bool {
        self.streams.values().all(|s| !s.wants_more) && self.rx.is_empty()
    }
}
