//! A model-based test of the follower, as Vector tests its file source: a
//! proptest interpreter drives a real [`Follower`] (real files, real
//! inotify, its event thread) through random sequences of writes, partial
//! writes, rename rotations, copytruncates, truncations, deletions,
//! recreations, gzip of a rotated file, pauses, clean stops, crashes and
//! restarts, and compares what it counted with a model of what was written:
//! no line is ever counted twice, and a line that is never counted is
//! covered by a reported gap.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keywatch::format::LogFormat;
use keywatch::source::checkpoint::{Checkpoint, Gap};
use keywatch::source::follower::{FollowOptions, Follower};
use keywatch::source::lines::LineSink;
use keywatch::source::stream::StartAt;
use proptest::prelude::*;

/// Counts every line by the id in its path (`/i/ID`).
#[derive(Default, Clone)]
struct Tally {
    counts: BTreeMap<u64, u32>,
}

impl LineSink for Tally {
    fn line(&mut self, _: &LogFormat, line: &[u8], _: &Arc<str>, _: u64) -> Option<i64> {
        let text = String::from_utf8_lossy(line);
        let id = text
            .split("/i/")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())?;
        *self.counts.entry(id).or_default() += 1;
        Some(0)
    }

    fn too_long(&mut self, _: &Arc<str>, _: u64, _: usize, _: &[u8]) {}
}

/// What a store would hold: checkpoints and counts committed together.
#[derive(Default, Clone)]
struct Committed {
    checkpoints: BTreeMap<String, Vec<Checkpoint>>,
    tally: Tally,
    gaps: Vec<Gap>,
}

#[derive(Clone, Debug)]
enum Action {
    Write(u8),
    Partial,
    Rotate,
    CopyTruncate,
    Truncate,
    Delete,
    DeleteOldest,
    GzipFirst,
    Step(u8),
    Pause,
    Stop,
    Crash,
    Restart,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (1u8..40).prop_map(Action::Write),
        2 => Just(Action::Partial),
        3 => Just(Action::Rotate),
        2 => Just(Action::CopyTruncate),
        1 => Just(Action::Truncate),
        1 => Just(Action::Delete),
        1 => Just(Action::DeleteOldest),
        1 => Just(Action::GzipFirst),
        5 => (1u8..4).prop_map(Action::Step),
        2 => Just(Action::Pause),
        1 => Just(Action::Stop),
        1 => Just(Action::Crash),
        2 => Just(Action::Restart),
    ]
}

/// One file's content in the model: which lines it holds, and whether it
/// lived and died while keywatch was down (then no one could have read it).
#[derive(Clone, Debug, Default)]
struct ModelFile {
    ids: Vec<u64>,
    created_down: Option<u64>,
    deleted_down: Option<u64>,
}

struct World {
    /// Files by name (the log, `.1`…, `.1.gz`…) → index in `files`.
    names: BTreeMap<PathBuf, usize>,
    files: Vec<ModelFile>,
    /// Counts stops and crashes: which stretch of downtime it is, if down.
    downtime: u64,
    /// Lines written while keywatch was down, with which downtime.
    written_down: BTreeMap<u64, u64>,
    dir: tempfile::TempDir,
    log: PathBuf,
    next_id: u64,
    written: BTreeSet<u64>,
    /// The second half of a line written half, waiting for its rest.
    half: Option<String>,
    follower: Option<Follower>,
    live: Tally,
    committed: Committed,
    /// No file events, and a poll so rare it never comes: the follower
    /// sees a file only when told to look.
    blind: bool,
}

/// A line of request `id`. Lines differ from their first bytes on (another
/// client, another second), as real ones do; lines that agree in every byte
/// read so far cannot be told apart by anyone.
fn line(id: u64) -> String {
    format!(
        "10.{}.{}.{} - - [27/Nov/2026:{:02}:{:02}:{:02} +0000] \"GET /i/{id} HTTP/1.1\" 200 12 \"-\" \"model\"\n",
        id / 65536 % 256,
        id / 256 % 256,
        id % 256,
        id / 3600 % 24,
        id / 60 % 60,
        id % 60
    )
}

fn name(log: &Path, n: u32, gz: bool) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(format!(".{n}{}", if gz { ".gz" } else { "" }));
    PathBuf::from(s)
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        World {
            names: BTreeMap::new(),
            files: Vec::new(),
            downtime: 0,
            written_down: BTreeMap::new(),
            dir,
            log,
            next_id: 0,
            written: BTreeSet::new(),
            half: None,
            follower: None,
            live: Tally::default(),
            committed: Committed::default(),
            blind: false,
        }
    }

    fn opts(&self) -> FollowOptions {
        FollowOptions {
            patterns: vec![self.log.display().to_string()],
            start_at: StartAt::Beginning,
            poll_interval: Duration::from_millis(if self.blind { 3_600_000 } else { 20 }),
            poll_only: self.blind,
            idle_close: Duration::from_secs(600),
            missing_grace: Duration::from_secs(60),
            // Small, so reads stop at their budget and go on later.
            budget: 1500,
            max_line: 4096,
            fields: vec![],
            format: Some(Arc::new(
                keywatch::format::compile("combined", &[]).unwrap(),
            )),
        }
    }

    fn down(&self) -> Option<u64> {
        self.follower.is_none().then_some(self.downtime)
    }

    fn new_file(&mut self, ids: Vec<u64>) -> usize {
        self.files.push(ModelFile {
            ids,
            created_down: self.down(),
            deleted_down: None,
        });
        self.files.len() - 1
    }

    fn delete_name(&mut self, name: &Path) {
        if let Some(i) = self.names.remove(name) {
            self.files[i].deleted_down = self.down();
        }
    }

    fn rename(&mut self, from: &Path, to: &Path) {
        if let Some(i) = self.names.remove(from) {
            self.delete_name(to);
            self.names.insert(to.to_path_buf(), i);
        }
    }

    /// The model of appending lines `ids` to the log.
    fn model_append(&mut self, ids: &[u64]) {
        if let Some(e) = self.down() {
            self.written_down.extend(ids.iter().map(|id| (*id, e)));
        }
        let log = self.log.clone();
        let i = match self.names.get(&log) {
            Some(&i) => i,
            None => {
                let i = self.new_file(Vec::new());
                self.names.insert(log, i);
                i
            }
        };
        self.files[i].ids.extend_from_slice(ids);
    }

    fn model_truncate(&mut self) {
        if let Some(&i) = self.names.get(&self.log) {
            // What was there is gone: a file of its own that died now.
            let gone = ModelFile {
                ids: std::mem::take(&mut self.files[i].ids),
                created_down: self.files[i].created_down,
                deleted_down: self.down(),
            };
            self.files.push(gone);
            self.files[i].created_down = self.down();
        }
    }

    /// Lines no one could have read: written while keywatch was down, and
    /// every file that held them was deleted or emptied before it came back.
    fn unobservable(&self) -> BTreeSet<u64> {
        let mut kept = BTreeSet::new();
        let mut dark = BTreeSet::new();
        for f in &self.files {
            for id in &f.ids {
                match self.written_down.get(id) {
                    Some(e) if f.deleted_down == Some(*e) => {
                        dark.insert(*id);
                    }
                    _ => {
                        kept.insert(*id);
                    }
                }
            }
        }
        dark.difference(&kept).copied().collect()
    }

    fn append(&mut self, text: &str) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// The rest of a half-written line, before the file is rotated away.
    fn finish_half(&mut self) {
        if let Some(rest) = self.half.take() {
            self.append(&rest);
        }
    }

    fn start(&mut self) {
        if self.follower.is_none() {
            self.live = self.committed.tally.clone();
            let f =
                Follower::start(self.opts(), &self.committed.checkpoints, &mut self.live).unwrap();
            self.follower = Some(f);
            // The starting position is committed at once, as `watch` does.
            self.commit();
        }
    }

    fn step(&mut self) {
        if let Some(f) = &mut self.follower {
            f.step(&mut self.live, Duration::from_millis(2)).unwrap();
        }
    }

    /// Before content is destroyed while keywatch runs: it has looked at
    /// every file and committed what it saw, as `watch` does within a
    /// commit interval. (Content destroyed before anyone could look, or
    /// between a look and its commit followed by a crash, leaves no trace
    /// any tailer could report.)
    fn look_and_commit(&mut self) {
        if let Some(f) = &mut self.follower {
            f.look_everywhere();
            // Until no file has more than its budget, as `watch` steps.
            while f
                .step(&mut self.live, Duration::from_millis(2))
                .unwrap()
                .more
            {}
        }
        self.commit();
    }

    fn commit(&mut self) {
        let Some(f) = &mut self.follower else { return };
        let mut by_stream: BTreeMap<String, Vec<Checkpoint>> = BTreeMap::new();
        for c in f.checkpoints() {
            by_stream.entry(c.stream.clone()).or_default().push(c);
        }
        for (stream, cps) in by_stream {
            self.committed.checkpoints.insert(stream, cps);
        }
        for s in f.streams.values_mut() {
            self.committed.gaps.append(&mut s.gaps);
        }
        self.committed.tally = self.live.clone();
    }

    fn rotate_names(&mut self) {
        for gz in [false, true] {
            for n in (1..3).rev() {
                let from = name(&self.log, n, gz);
                if from.exists() {
                    let to = name(&self.log, n + 1, gz);
                    std::fs::rename(&from, &to).unwrap();
                    self.rename(&from, &to);
                }
            }
        }
    }

    fn apply(&mut self, a: &Action) {
        match a {
            Action::Write(n) => {
                self.finish_half();
                let mut text = String::new();
                let mut ids = Vec::new();
                for _ in 0..*n {
                    self.next_id += 1;
                    self.written.insert(self.next_id);
                    ids.push(self.next_id);
                    text.push_str(&line(self.next_id));
                }
                self.append(&text);
                self.model_append(&ids);
            }
            Action::Partial => {
                self.finish_half();
                self.next_id += 1;
                self.written.insert(self.next_id);
                let l = line(self.next_id);
                let (a, b) = l.split_at(l.len() / 2);
                self.append(a);
                self.model_append(&[self.next_id]);
                self.half = Some(b.to_string());
            }
            Action::Rotate => {
                self.finish_half();
                if name(&self.log, 3, false).exists() || name(&self.log, 3, true).exists() {
                    // The oldest is about to be overwritten (deleted).
                    self.look_and_commit();
                }
                self.rotate_names();
                if self.log.exists() {
                    let to = name(&self.log, 1, false);
                    std::fs::rename(&self.log, &to).unwrap();
                    let log = self.log.clone();
                    self.rename(&log, &to);
                }
            }
            Action::CopyTruncate => {
                self.finish_half();
                if self.log.exists() {
                    if name(&self.log, 3, false).exists() || name(&self.log, 3, true).exists() {
                        self.look_and_commit();
                    }
                    self.rotate_names();
                    let to = name(&self.log, 1, false);
                    std::fs::copy(&self.log, &to).unwrap();
                    let ids = self
                        .names
                        .get(&self.log)
                        .map(|&i| self.files[i].ids.clone())
                        .unwrap_or_default();
                    self.delete_name(&to);
                    let copy = self.new_file(ids);
                    self.names.insert(to, copy);
                    OpenOptions::new()
                        .write(true)
                        .open(&self.log)
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                    self.model_truncate();
                }
            }
            Action::Truncate => {
                self.finish_half();
                self.look_and_commit();
                if self.log.exists() {
                    OpenOptions::new()
                        .write(true)
                        .open(&self.log)
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                    self.model_truncate();
                }
            }
            Action::Delete => {
                self.finish_half();
                self.look_and_commit();
                let _ = std::fs::remove_file(&self.log);
                let log = self.log.clone();
                self.delete_name(&log);
            }
            Action::DeleteOldest => {
                self.look_and_commit();
                for gz in [false, true] {
                    let p = name(&self.log, 3, gz);
                    let _ = std::fs::remove_file(&p);
                    self.delete_name(&p);
                }
            }
            Action::GzipFirst => {
                let first = name(&self.log, 1, false);
                let gz = name(&self.log, 1, true);
                if first.exists() && !gz.exists() {
                    let data = std::fs::read(&first).unwrap();
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(&data).unwrap();
                    std::fs::write(&gz, e.finish().unwrap()).unwrap();
                    std::fs::remove_file(&first).unwrap();
                    let ids = self
                        .names
                        .get(&first)
                        .map(|&i| self.files[i].ids.clone())
                        .unwrap_or_default();
                    self.delete_name(&first);
                    let packed = self.new_file(ids);
                    self.names.insert(gz, packed);
                }
            }
            Action::Step(k) => {
                for _ in 0..*k {
                    self.step();
                }
                self.commit();
            }
            Action::Pause => std::thread::sleep(Duration::from_millis(3)),
            Action::Stop => {
                if let Some(f) = &mut self.follower {
                    // A clean stop, as `watch` stops: one look at every
                    // file (what the events said and what they have not said
                    // yet), then the commit.
                    f.look_everywhere();
                    self.step();
                    self.commit();
                    self.follower = None;
                    self.downtime += 1;
                }
            }
            Action::Crash => {
                // A kill: what was read since the last commit is lost with
                // the process and must be read again, once. (The daemon
                // commits on time, so the last commit knew every file:
                // otherwise a file it never recorded and that is destroyed
                // while it is down leaves no trace any tailer could report.)
                if self.follower.is_some() {
                    self.look_and_commit();
                    self.step();
                    self.follower = None;
                    self.downtime += 1;
                }
            }
            Action::Restart => self.start(),
        }
    }

    /// Runs until everything written was read (or given up as a gap).
    fn settle(&mut self) {
        self.finish_half();
        self.start();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut idle_since: Option<Instant> = None;
        while Instant::now() < deadline {
            let f = self.follower.as_mut().unwrap();
            let s = f.step(&mut self.live, Duration::from_millis(10)).unwrap();
            if s.bytes > 0 || s.more {
                idle_since = None;
            } else if idle_since.get_or_insert_with(Instant::now).elapsed()
                > Duration::from_millis(150)
            {
                break;
            }
        }
        self.commit();
    }
}

/// Runs `actions` and checks what was counted against what was written:
/// nothing twice, and nothing missing unless a gap says so.
fn check(mut w: World, actions: &[Action]) -> Result<(), TestCaseError> {
    w.start();
    for a in actions {
        w.apply(a);
    }
    w.settle();
    let counts = &w.committed.tally.counts;
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    prop_assert!(twice.is_empty(), "counted twice: {:?}", twice);
    let dark = w.unobservable();
    let missing: Vec<_> = w
        .written
        .iter()
        .filter(|id| !counts.contains_key(id) && !dark.contains(id))
        .collect();
    prop_assert!(
        missing.is_empty() || !w.committed.gaps.is_empty(),
        "{} lines never counted and no gap reported: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    // The files live in `dir` until here.
    let _ = w.dir.path();
    Ok(())
}

/// Lines written to a file the follower has not seen yet (no event handled,
/// no poll), then a stop, then the file rotated away and deleted while
/// stopped: the stop's look put the file on record, so the next start
/// reports the loss. (Found by the model test under two busy loops, where
/// the create event had not been handled when the stop came.)
#[test]
fn a_file_not_yet_seen_at_a_stop_is_on_record() {
    let mut w = World::new();
    w.blind = true;
    check(
        w,
        &[
            Action::Step(2),
            Action::Write(30),
            Action::Stop,
            Action::Rotate,
            Action::Rotate,
            Action::Rotate,
            Action::DeleteOldest,
        ],
    )
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn every_line_is_counted_once_or_covered_by_a_gap(
        actions in proptest::collection::vec(action(), 1..30)
    ) {
        check(World::new(), &actions)?;
    }
}
