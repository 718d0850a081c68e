//! One followed path: a [`Stream`] and the files it named.
//!
//! The life of a file at a watched path:
//!
//! ```text
//!             arrives (event, poll, sibling scan)
//!                         │
//!                         ▼
//!   ┌───────────── active (the file at the path) ──────────────┐
//!   │ truncated / rewritten          │ renamed, replaced,      │ idle
//!   │ (copytruncate): its rest from  │ deleted                 ▼
//!   │ the copy, else a gap; read     ▼                       dormant (closed,
//!   │ again from 0              rotated (read to its end)    reopened when it
//!   └─────────────────────────────── │                       changes)
//!                                    ▼ drained and deleted, or 3 newer, or idle
//!                                let go (a last unfinished line is counted)
//! ```
//!
//! Files are recognised by content ([`super::fingerprint`]), never by name
//! or inode alone. Besides its generations a stream holds open the files
//! there before keywatch (history, never read) and copies made by
//! copytruncate (read only to recover what a truncation took): holding them
//! keeps their inodes from being reused by a new file unseen.
//!
//! A stream reads at most a budget per poll, so commits, events and other
//! files get their turn during a long catch-up.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checkpoint::{Checkpoint, Gap};
use super::generation::{Generation, Progress};
use super::lines::LineSink;
use super::rotation::{read_gz, siblings};
use crate::format::{self, LogFormat};

/// Where a new file at a watched path starts being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

/// Rotated generations held at most; past this the oldest is let go and
/// what it had unread is a gap.
const MAX_ROTATED: usize = 64;
/// Files held only so they are not taken for new ones (history, files read
/// and done with), at most.
const MAX_FOREIGN: usize = 32;
/// Copies (copytruncate) held at most, and for how long.
const MAX_COPIES: usize = 4;
const COPY_KEPT: Duration = Duration::from_secs(300);
/// A drained rotated file with this many newer generations is let go even
/// if it is not deleted (`rotate 52` keeps files for weeks).
const NEWER_BEFORE_RELEASE: usize = 3;

/// What the follower passes to every poll.
pub struct Ctx<'a> {
    pub sink: &'a mut dyn LineSink,
    /// The format every stream reads with, when configured.
    pub configured: Option<&'a Arc<LogFormat>>,
    /// Key variables, for format detection.
    pub fields: &'a [String],
    pub max_line: usize,
    /// Bytes one poll of one stream may read before others get their turn.
    pub budget: u64,
    /// A rotated file idle this long is let go once drained.
    pub idle: Duration,
    /// A path named literally that is missing this long is a fault.
    pub missing_grace: Duration,
}

/// Why a stream cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Permission denied, with the fix.
    Unreadable(String),
    /// A directory, device or socket at the path.
    NotRegular,
    /// A path named on the command line that has not existed for a while.
    Missing,
}

impl Fault {
    /// One line for people: what is wrong and what to do.
    pub fn describe(&self, path: &Path) -> String {
        match self {
            Fault::Unreadable(e) => format!(
                "{}: cannot read it ({e}); give the user keywatch runs as read access, e.g. add it to the group that owns the log (`usermod -aG adm USER` for nginx on Debian and Ubuntu), then restart keywatch",
                path.display()
            ),
            Fault::NotRegular => format!(
                "{}: not a regular file; point keywatch at the log file itself",
                path.display()
            ),
            Fault::Missing => format!(
                "{}: does not exist; check the path (it is read from its start when it appears)",
                path.display()
            ),
        }
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Unreadable(_) => "unreadable",
            Fault::NotRegular => "not_regular",
            Fault::Missing => "missing",
        }
    }
}

/// What one poll did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    pub bytes: u64,
    /// More was there than the budget let it read.
    pub more: bool,
}

/// One watched path and the files it named; see the module documentation.
pub struct Stream {
    pub path: PathBuf,
    name: Arc<str>,
    pub active: Option<Generation>,
    /// Oldest first.
    pub rotated: Vec<Generation>,
    /// Files opened for this stream (by the event thread) not yet looked at.
    arrived: Vec<File>,
    /// With when each was seen and whether it was compared with the file.
    copies: Vec<(Generation, Instant, bool)>,
    /// Files that were there before keywatch: held, never read.
    foreign: Vec<Generation>,
    /// A new file the event thread found at the path, not yet taken up.
    pending_active: Option<Generation>,
    /// With no file: when the path was last seen without one.
    absent_seen_ms: Option<i64>,
    /// The last files read to their end and let go (or a `.gz` read whole),
    /// kept as records (checkpoints of generation -1) while no other file is
    /// held, so a restart knows them under any new name (a `.gz` of one, say)
    /// and reads nothing of them twice.
    done: Vec<Checkpoint>,
    /// Heads of files truncated lately, so a copy of one seen late is known
    /// for what it is.
    recent_heads: Vec<Vec<u8>>,
    /// Heads (length, hash) of files held or let go that are never to be
    /// read again, carried across restarts as records (generation -2).
    known_heads: Vec<(u64, Vec<u8>)>,
    /// A full look asked for a look at the `.gz` siblings, done once the
    /// files held are read up to date.
    gz_due: bool,
    /// `.gz` siblings looked at: identity, size when first seen, decided.
    gz_seen: Vec<((u64, u64), u64, bool)>,
    pub gaps: Vec<Gap>,
    /// The format of this stream's lines, and its preset name when detected.
    format: Option<(Arc<LogFormat>, Option<String>)>,
    start_at: StartAt,
    /// Lines of this stream read since keywatch started.
    pub totals: crate::pipeline::Totals,
    /// Gaps (count, bytes) reported since keywatch started.
    pub gap_totals: (u64, u64),
    /// Set when the generations changed (a file let go, replaced, truncated):
    /// the checkpoints must be committed even if no byte was read.
    pub changed: bool,
    /// A file with nothing new for a while is closed; this is where it was,
    /// with its size and modification time when it was closed.
    dormant: Option<(Checkpoint, (u64, i64, i64))>,
    /// When the active file last had something to read.
    last_activity: Instant,
    /// New files at the path the event thread saw, and new generations
    /// taken up since start: the difference came and went unseen.
    arrivals: u64,
    taken: u64,
    pub fault: Option<Fault>,
    /// Named on the command line (not matched by a glob): its absence is a fault.
    pub literal: bool,
    /// The last poll stopped at its budget: poll again at once.
    pub wants_more: bool,
    /// The last poll failed with this (said once).
    pub io_error: Option<String>,
    missing_since: Option<Instant>,
}

impl Stream {
    pub fn new(path: PathBuf, start_at: StartAt) -> Stream {
        let name: Arc<str> = path.display().to_string().into();
        Stream {
            path,
            name,
            active: None,
            rotated: Vec::new(),
            arrived: Vec::new(),
            copies: Vec::new(),
            foreign: Vec::new(),
            pending_active: None,
            absent_seen_ms: None,
            done: Vec::new(),
            recent_heads: Vec::new(),
            gz_seen: Vec::new(),
            gz_due: false,
            known_heads: Vec::new(),
            gaps: Vec::new(),
            format: None,
            start_at,
            totals: crate::pipeline::Totals::default(),
            gap_totals: (0, 0),
            changed: false,
            dormant: None,
            last_activity: Instant::now(),
            arrivals: 0,
            taken: 0,
            fault: None,
            literal: false,
            wants_more: false,
            io_error: None,
            missing_since: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The preset detected for this stream, if any.
    pub fn format_name(&self) -> Option<&str> {
        self.format.as_ref().and_then(|(_, n)| n.as_deref())
    }

    /// Whether the stream holds no open file (it was idle and closed).
    pub fn is_dormant(&self) -> bool {
        self.dormant.is_some()
    }

    /// Every (device, inode) this stream holds open.
    pub fn held(&self) -> Vec<(u64, u64)> {
        self.active
            .iter()
            .chain(&self.rotated)
            .chain(self.copies.iter().map(|(g, _, _)| g))
            .chain(&self.foreign)
            .chain(&self.pending_active)
            .map(|g| (g.dev, g.ino))
            .chain(
                self.arrived
                    .iter()
                    .filter_map(|f| f.metadata().ok().map(|m| (m.dev(), m.ino()))),
            )
            .collect()
    }

    /// A file the event thread opened at this stream's path or one of its
    /// rotated names, as soon as it was seen.
    pub fn arrived(&mut self, file: File) {
        self.arrived.push(file);
    }

    /// A new file arrived at the path (an event said so).
    pub fn note_arrival(&mut self) {
        self.arrivals += 1;
    }

    fn gap(&mut self, reason: &str, bytes: u64) {
        self.gaps.push(Gap::new(&self.name, reason, bytes));
        self.changed = true;
    }

    fn holds(&self, dev: u64, ino: u64) -> bool {
        self.active
            .iter()
            .chain(&self.rotated)
            .chain(self.copies.iter().map(|(g, _, _)| g))
            .chain(&self.foreign)
            .chain(&self.pending_active)
            .any(|g| g.dev == dev && g.ino == ino)
    }

    /// The format this stream's lines are read with, when known: the
    /// configured one, or the one detected before.
    fn current_format(&self, ctx: &Ctx<'_>) -> Option<Arc<LogFormat>> {
        ctx.configured
            .cloned()
            .or_else(|| self.format.as_ref().map(|(f, _)| Arc::clone(f)))
    }

    /// The format to read with, detecting it from `sample` (a file's first
    /// bytes) when none is known. `None` while the sample has no complete
    /// line: an empty file is detected when its first lines arrive.
    fn format_from(&mut self, ctx: &Ctx<'_>, sample: &[u8]) -> Option<Arc<LogFormat>> {
        if let Some(f) = self.current_format(ctx) {
            return Some(f);
        }
        let end = memchr::memrchr(b'\n', sample)?;
        let (f, parsed, lines) = format::detect(&sample[..=end], ctx.fields);
        eprintln!(
            "keywatch: {}: log format {:?} detected ({parsed} of {lines} lines parse); set it with --log-format",
            self.name,
            f.name()
        );
        let name = f.name().to_string();
        let f = Arc::new(f);
        self.format = Some((Arc::clone(&f), Some(name)));
        self.changed = true;
        Some(f)
    }

    /// [`Stream::format_from`] with the sample read only when it is needed.
    fn format_for(
        &mut self,
        ctx: &Ctx<'_>,
        head: impl FnOnce() -> io::Result<Vec<u8>>,
    ) -> io::Result<Option<Arc<LogFormat>>> {
        if let Some(f) = self.current_format(ctx) {
            return Ok(Some(f));
        }
        let sample = head()?;
        Ok(self.format_from(ctx, &sample))
    }

    /// Sets up the stream at start: resumes what the store says was read
    /// (reading what rotated files got while keywatch was stopped), and
    /// holds the files already there that are not its to read.
    ///
    /// The file of each checkpoint is looked for among the path and its
    /// rotated names by content (the same inode first). Files newer than the
    /// one read last (nearer the path) arrived while keywatch was stopped
    /// and are read whole; older ones are history. Without a checkpoint only
    /// the file at the path is read: from its start, or from its end on a
    /// first run with `--from-end`.
    pub fn start(&mut self, saved: &[Checkpoint], ctx: &mut Ctx<'_>) -> io::Result<()> {
        // A stream that had no file: whatever is there now, but what it held
        // and would not read, is new, under any of its names.
        let absent = saved.iter().any(|c| c.absent_since_ms.is_some());
        let skips: Vec<&Checkpoint> = saved.iter().filter(|c| is_skip(c.generation)).collect();
        for k in &skips {
            self.know_head(k.head_len, k.head_hash.clone());
        }
        let kept: Vec<Checkpoint> = saved
            .iter()
            .filter(|c| c.absent_since_ms.is_none() && !is_skip(c.generation))
            .cloned()
            .collect();
        let saved = &kept[..];
        let skipped = |head: &[u8], ident: Option<(u64, u64)>| {
            skips.iter().any(|k| {
                let n = (k.head_len as usize).min(head.len());
                k.head_len > 0
                    && ident.is_none_or(|(d, i)| d == k.dev && i == k.ino)
                    && super::fingerprint::hash(&head[..n]) == k.head_hash
                    && n as u64 == k.head_len
            })
        };
        if let Some(name) = saved.iter().find_map(|c| c.format.as_deref())
            && let Some(f) = format::presets::by_name(name, ctx.fields)
        {
            self.format = Some((Arc::new(f), Some(name.to_string())));
        }
        // Candidates, newest first: the path (position 0), then `.1`, `.2`…
        let mut plain: Vec<(usize, Option<Generation>)> =
            vec![(0, Generation::open(&self.path).ok())];
        let mut gz: Vec<(usize, PathBuf, bool)> = Vec::new();
        for s in siblings(&self.path) {
            let position = s.n as usize;
            if s.gz {
                if s.path.exists() {
                    gz.push((position, s.path, false));
                }
            } else {
                plain.push((position, Generation::open(&s.path).ok()));
            }
        }
        let present: Vec<usize> = plain
            .iter()
            .filter(|(_, g)| g.is_some())
            .map(|(p, _)| *p)
            .chain(gz.iter().map(|(p, _, _)| *p))
            .collect();
        let mut newest: Option<usize> = None;
        let mut rotated: Vec<(usize, Generation)> = Vec::new();
        let mut ordered: Vec<&Checkpoint> = saved.iter().collect();
        // The file at the path first, then rotated ones, then records.
        ordered.sort_by_key(|c| (c.generation < 0, c.generation.abs()));
        for c in ordered {
            let mut hit = None;
            'search: for same_inode in [true, false] {
                for (i, (position, g)) in plain.iter().enumerate() {
                    // With no whole line read, content tells little apart:
                    // only the same file at the same path (an inode is reused
                    // soon after its file is deleted).
                    let weak = c.offset == 0;
                    if let Some(g) = g
                        && (g.dev == c.dev && g.ino == c.ino) == same_inode
                        && if same_inode {
                            !weak || *position == 0
                        } else {
                            !weak && c.head_len > 0
                        }
                        && g.matches(c)?
                    {
                        hit = Some(i);
                        break 'search;
                    }
                }
            }
            if let Some(i) = hit {
                let position = plain[i].0;
                let Some(mut g) = plain[i].1.take() else {
                    continue;
                };
                g.resume_from(c)?;
                // The newest file read before: whatever is nearer the path
                // came after.
                newest = Some(newest.map_or(position, |n: usize| n.min(position)));
                if position == 0 {
                    self.active = Some(g);
                } else {
                    rotated.push((position, g));
                }
                continue;
            }
            let mut found = false;
            for (position, path, claimed) in gz.iter_mut() {
                // Another file holds what was read only if something was.
                if *claimed || c.head_len == 0 || c.offset == 0 {
                    continue;
                }
                let Some(f) =
                    self.format_for(ctx, || super::rotation::gz_head(path, DETECT_SAMPLE))?
                else {
                    continue;
                };
                if let Some((counts, whole)) =
                    read_gz(path, Some(c), ctx.sink, &f, &self.name, ctx.max_line)?
                {
                    self.remember_gz(counts, whole);
                    *claimed = true;
                    found = true;
                    self.changed = true;
                    newest = Some(newest.map_or(*position, |n: usize| n.min(*position)));
                    break;
                }
            }
            if !found && !is_done(c.generation) {
                self.gap(
                    "the file read before the stop was rotated away or rewritten, and no file there holds what was read",
                    c.size.saturating_sub(c.offset),
                );
            }
        }
        // The file last read is `.p`: p rotations happened while keywatch was
        // stopped, so `.1` … `.p-1` held files it never saw. One missing is
        // a generation gone unseen.
        if let Some(p) = newest {
            let gone = (1..p).filter(|q| !present.contains(q)).count();
            if gone > 0 {
                self.gap(
                    &format!(
                        "{gone} rotated file(s) written while keywatch was stopped were gone when it started (their size is unknown)"
                    ),
                    0,
                );
            }
        }
        // What the store knew of this stream: a first start knows nothing,
        // and what is there then is history (the path's file aside).
        let first = saved.is_empty() && !absent;
        // Heads of the files taken up from checkpoints: a file that starts
        // like one of them is a copy of what is being read, not new.
        let resumed: Vec<Vec<u8>> = self
            .active
            .iter()
            .chain(rotated.iter().map(|(_, g)| g))
            .map(|g| g.head_bytes.clone())
            .collect();
        let copy_of_resumed = |head: &[u8]| {
            resumed.iter().any(|r| {
                let n = r.len().min(head.len());
                n > 0 && r[..n] == head[..n]
            })
        };
        for (position, g) in plain.iter_mut() {
            let Some(mut g) = g.take() else { continue };
            if skipped(&g.head_bytes, Some((g.dev, g.ino))) {
                self.foreign.push(g);
            } else if *position == 0 && self.active.is_none() {
                // The file at the path that no checkpoint claims is new (or,
                // on a first run from the end, taken up at its end).
                if first && self.start_at == StartAt::End {
                    g.skip_to_end()?;
                }
                self.changed = true;
                self.active = Some(g);
            } else if first || copy_of_resumed(&g.head_bytes) {
                self.foreign.push(g);
            } else {
                // Not read, not held before: it arrived while keywatch was
                // stopped (a rotated or copied file of lines never seen).
                self.changed = true;
                rotated.push((*position, g));
            }
        }
        if !first {
            for (_, path, claimed) in &gz {
                if *claimed {
                    continue;
                }
                let head = super::rotation::gz_head(path, HEAD as usize)?;
                if head.is_empty() || skipped(&head, None) || copy_of_resumed(&head) {
                    continue;
                }
                let Some(f) = self.format_from(ctx, &head) else {
                    continue;
                };
                if let Some((counts, whole)) =
                    read_gz(path, None, ctx.sink, &f, &self.name, ctx.max_line)?
                {
                    self.remember_gz(counts, whole);
                }
                self.changed = true;
            }
        }
        if self.active.is_none() && !self.path.exists() {
            self.absent_seen_ms = Some(super::checkpoint::now_ms());
        }
        // Every `.gz` there now was dealt with here (read, or history).
        for (_, path, _) in &gz {
            if let Ok(m) = std::fs::metadata(path) {
                self.gz_seen.push(((m.dev(), m.ino()), m.len(), true));
            }
        }
        // Oldest (highest rotation number) first.
        rotated.sort_by_key(|(p, _)| std::cmp::Reverse(*p));
        self.rotated = rotated.into_iter().map(|(_, g)| g).collect();
        // Whatever appears at the path from now on is read from its start.
        self.start_at = StartAt::Beginning;
        Ok(())
    }

    fn know_head(&mut self, len: u64, hash: Vec<u8>) {
        if len > 0
            && !self
                .known_heads
                .iter()
                .any(|(l, h)| *l == len && *h == hash)
        {
            self.known_heads.push((len, hash));
        }
        if self.known_heads.len() > MAX_HEADS {
            self.known_heads.remove(0);
        }
    }

    fn remember_head(&mut self, head: Vec<u8>) {
        if !self.recent_heads.contains(&head) {
            self.recent_heads.push(head);
        }
        if self.recent_heads.len() > MAX_HEADS {
            self.recent_heads.remove(0);
        }
    }

    fn remember_done(&mut self, record: Checkpoint) {
        // An empty file's record tells it from nothing.
        if record.head_len == 0 {
            return;
        }
        self.done
            .retain(|d| d.head_hash != record.head_hash || d.head_len != record.head_len);
        self.done.push(record);
        if self.done.len() > MAX_DONE {
            self.done.remove(0);
        }
    }

    /// A `.gz` read to its end: a record of it, so a restart reads none of it
    /// again.
    fn remember_gz(&mut self, counts: super::lines::Counts, whole: super::rotation::Whole) {
        let format = self.format.as_ref().and_then(|(_, n)| n.clone());
        let head_len = whole.head.len() as u64;
        self.remember_done(Checkpoint {
            stream: self.name.to_string(),
            generation: DONE,
            dev: 0,
            ino: 0,
            head_len,
            head_hash: super::fingerprint::hash(&whole.head),
            offset: whole.len,
            marker_hash: super::fingerprint::hash(&whole.tail),
            prefix_hash: whole.prefix.to_bytes(),
            size: whole.len,
            lines: counts.lines,
            parsed: counts.parsed,
            skipped: counts.skipped,
            last_line_ms: counts.last_line_ms,
            format,
            absent_since_ms: None,
        });
        self.changed = true;
    }

    /// Closes the file if it has had nothing to read for `idle`, keeping
    /// where it was; it is reopened (and checked to be the same file) when
    /// the path changes. Keeps file handles bounded by the active files.
    pub fn close_if_idle(&mut self, idle: Duration) -> io::Result<()> {
        let Some(g) = &mut self.active else {
            return Ok(());
        };
        if !self.rotated.is_empty()
            || !self.arrived.is_empty()
            || !self.copies.is_empty()
            || g.pending() > 0
            || self.last_activity.elapsed() < idle
        {
            return Ok(());
        }
        let m = g.metadata()?;
        let sig = (m.len(), m.mtime(), m.mtime_nsec());
        let format = self.format.as_ref().and_then(|(_, n)| n.clone());
        self.dormant = Some((g.checkpoint(&self.name, 0, format.as_deref()), sig));
        self.active = None;
        self.foreign.clear();
        Ok(())
    }

    /// Takes the files the event thread opened: a copy of a file being
    /// read is kept for recovering a truncation, a file this stream already
    /// holds is dropped, and any other file is a generation not seen yet.
    fn classify_arrived(&mut self) -> io::Result<()> {
        for file in std::mem::take(&mut self.arrived) {
            let Ok(meta) = file.metadata() else { continue };
            if !meta.is_file() || self.holds(meta.dev(), meta.ino()) {
                continue;
            }
            let g = Generation::of(file)?;
            self.take_unknown(g)?;
        }
        Ok(())
    }

    /// A file of this stream not held before: a copy of what is being read
    /// (copytruncate), or a generation that was created and rotated before
    /// it could be seen at the path.
    fn take_unknown(&mut self, mut g: Generation) -> io::Result<()> {
        let at_path =
            std::fs::metadata(&self.path).is_ok_and(|m| m.dev() == g.dev && m.ino() == g.ino);
        // A file read to its end and let go, seen again (an event about it
        // came late, or it was let go while still there): what was read is
        // not read again.
        if !at_path {
            let mut read = None;
            for d in &self.done {
                if d.head_len > 0 && g.matches(d)? {
                    read = Some(d.clone());
                    break;
                }
            }
            if let Some(d) = read {
                g.resume_from(&d)?;
                if g.size > d.offset {
                    self.rotated.push(g);
                } else if g.nlink() > 0 {
                    self.foreign.push(g);
                }
                self.changed = true;
                return Ok(());
            }
        }
        // A copy (copytruncate's `cp`) starts as the file it copies, and may
        // still be being written when it is seen: its head is the start of
        // the head of a file read (or just truncated).
        let head = &g.head_bytes;
        let starts = |of: &[u8]| {
            let n = head.len().min(of.len());
            of[..n] == head[..n]
        };
        let copy = self
            .active
            .iter()
            .chain(self.rotated.iter())
            .any(|h| !h.head_bytes.is_empty() && starts(&h.head_bytes))
            || self.recent_heads.iter().any(|h| starts(h));
        if copy && !at_path {
            self.copies.push((g, Instant::now(), false));
            while self.copies.len() > MAX_COPIES {
                self.copies.remove(0);
            }
        } else if at_path {
            // Taken up as the active file by the next look at the path; one
            // found there before is not there any more: a generation.
            if let Some(older) = self.pending_active.replace(g) {
                self.taken += 1;
                self.changed = true;
                self.rotated.push(older);
            }
        } else {
            self.taken += 1;
            self.changed = true;
            self.rotated.push(g);
        }
        Ok(())
    }

    /// Rotated names that hold a file this stream does not hold: a
    /// generation created and rotated between two looks (or a copy). Only
    /// plain names: a `.gz` is a compressed copy of a file read already.
    fn scan_siblings(&mut self) -> io::Result<()> {
        for sib in siblings(&self.path).into_iter().filter(|s| !s.gz) {
            let Ok(meta) = std::fs::metadata(&sib.path) else {
                continue;
            };
            if !meta.is_file() || self.holds(meta.dev(), meta.ino()) {
                continue;
            }
            let Ok(g) = Generation::open(&sib.path) else {
                continue;
            };
            if !self.holds(g.dev, g.ino) {
                self.take_unknown(g)?;
            }
        }
        Ok(())
    }

    /// A `.gz` sibling is normally a compressed copy of a file read already;
    /// one whose content starts like no file this stream has read, held or
    /// recorded holds lines never seen (created, rotated and compressed
    /// before keywatch could look) and is read whole, once its size has
    /// held still for a look.
    fn scan_gz(&mut self, ctx: &mut Ctx<'_>) -> io::Result<()> {
        let mut present = Vec::new();
        for sib in siblings(&self.path).into_iter().filter(|s| s.gz) {
            let Ok(meta) = std::fs::metadata(&sib.path) else {
                continue;
            };
            let ident = (meta.dev(), meta.ino());
            present.push(ident);
            let at = match self.gz_seen.iter().position(|(i, _, _)| *i == ident) {
                Some(at) => at,
                None => {
                    self.gz_seen.push((ident, meta.len(), false));
                    self.gz_seen.len() - 1
                }
            };
            if self.gz_seen[at].2 {
                continue;
            }
            // Only a whole `.gz` is read (one being written is looked at again).
            if !super::rotation::gz_complete(&sib.path) {
                continue;
            }
            self.gz_seen[at].2 = true;
            let head = super::rotation::gz_head(&sib.path, HEAD as usize)?;
            if head.is_empty() || self.knows_head(&head) {
                continue;
            }
            let Some(f) = self.format_from(ctx, &head) else {
                continue;
            };
            if let Some((counts, whole)) =
                read_gz(&sib.path, None, ctx.sink, &f, &self.name, ctx.max_line)?
            {
                self.remember_gz(counts, whole);
            }
        }
        self.gz_seen.retain(|(i, _, _)| present.contains(i));
        Ok(())
    }

    /// Whether a file starting with `head` is one this stream read, holds
    /// or recorded (their heads agree as far as both go).
    fn knows_head(&self, head: &[u8]) -> bool {
        let agrees = |of: &[u8]| {
            let n = head.len().min(of.len());
            n > 0 && of[..n] == head[..n]
        };
        self.active
            .iter()
            .chain(&self.rotated)
            .chain(self.copies.iter().map(|(g, _, _)| g))
            .chain(&self.foreign)
            .chain(&self.pending_active)
            .any(|g| agrees(&g.head_bytes))
            || self.recent_heads.iter().any(|h| agrees(h))
            || self.known_heads.iter().any(|(len, hash)| {
                let n = *len as usize;
                n <= head.len() && super::fingerprint::hash(&head[..n]) == *hash
            })
            || self.done.iter().any(|d| {
                let n = d.head_len as usize;
                n > 0 && n <= head.len() && super::fingerprint::hash(&head[..n]) == d.head_hash
            })
    }

    /// Reads everything new: rotated files to their end (oldest first),
    /// then the file at the path, handling rotation and truncation, within
    /// `ctx.budget` bytes. `full` also looks for unseen rotated files.
    pub fn poll(&mut self, ctx: &mut Ctx<'_>, full: bool) -> io::Result<Polled> {
        self.gz_due |= full;
        if let Some((cp, sig)) = self.dormant.take() {
            let unchanged = std::fs::metadata(&self.path).is_ok_and(|m| {
                m.dev() == cp.dev
                    && m.ino() == cp.ino
                    && (m.len(), m.mtime(), m.mtime_nsec()) == sig
            });
            if unchanged && self.arrived.is_empty() {
                self.dormant = Some((cp, sig));
                return Ok(Polled::default());
            }
            // Something happened: take it up as after a restart (the same
            // file goes on, a rotated one is found by content).
            self.start(std::slice::from_ref(&cp), ctx)?;
            self.changed = true;
        }
        self.classify_arrived()?;
        self.look_at_path(ctx)?;
        // Also while the path is missing (rotated away, not yet recreated):
        // a file that was rotated on before any event about it was handled
        // is found under its rotated name.
        if full {
            self.scan_siblings()?;
        }
        let mut out = Polled::default();
        // Rotated files first, oldest first: their lines came before.
        let mut i = 0;
        while i < self.rotated.len() {
            let budget = ctx.budget.saturating_sub(out.bytes);
            if budget == 0 {
                out.more = true;
                break;
            }
            let f = match self.current_format(ctx) {
                Some(f) => Some(f),
                None => {
                    let sample = self.rotated[i].head(DETECT_SAMPLE)?;
                    self.format_from(ctx, &sample)
                }
            };
            let Some(f) = f else {
                i += 1;
                continue;
            };
            let meta = self.rotated[i].metadata()?;
            let progress = if self.rotated[i].intact(&meta)? {
                self.rotated[i].read(budget, ctx.sink, &f, &self.name, ctx.max_line)?
            } else {
                Progress::Rewritten
            };
            match progress {
                Progress::Read { bytes, more } => {
                    out.bytes += bytes;
                    out.more |= more;
                    i += 1;
                }
                Progress::Rewritten => {
                    // Truncated or rewritten after it was rotated: what it had
                    // unread is a gap, what it holds now is read from its start.
                    let g = self.rotated.remove(i);
                    let lost = g.size.saturating_sub(g.read_pos());
                    self.remember_head(g.head_bytes.clone());
                    self.rotated.insert(i, Generation::of(g.try_clone_file()?)?);
                    self.gap(
                        "a rotated file was rewritten before it was read to its end",
                        lost,
                    );
                }
            }
        }
        self.release_rotated(ctx)?;
        if out.bytes >= ctx.budget {
            out.more = true;
            return Ok(out);
        }
        let budget = ctx.budget - out.bytes;
        let polled = self.read_active(ctx, budget)?;
        out.bytes += polled.bytes;
        out.more |= polled.more;
        // Last, when every file held is up to date (a truncation seen, its
        // new lines read): only then is a `.gz` of lines never seen told
        // from one of lines read.
        if self.gz_due && !out.more {
            self.gz_due = false;
            self.scan_gz(ctx)?;
        }
        if self.arrivals > self.taken {
            let n = self.arrivals - self.taken;
            self.taken = self.arrivals;
            self.gap(
                &format!(
                    "{n} file(s) created at the path were rotated away and deleted before keywatch could open them (their size is unknown)"
                ),
                0,
            );
        }
        Ok(out)
    }

    /// Lets go of rotated files that are read to their end and done with:
    /// deleted, or with enough newer generations, or idle. Past
    /// [`MAX_ROTATED`] the oldest is let go even unread (a gap).
    fn release_rotated(&mut self, ctx: &mut Ctx<'_>) -> io::Result<()> {
        let mut kept = Vec::new();
        let total = self.rotated.len();
        for (i, mut g) in std::mem::take(&mut self.rotated).into_iter().enumerate() {
            let meta = g.metadata()?;
            let drained = meta.len() <= g.read_pos();
            let newer = total - 1 - i + usize::from(self.active.is_some());
            let done = meta.nlink() == 0
                || newer >= NEWER_BEFORE_RELEASE
                || g.last_growth.elapsed() >= ctx.idle;
            if drained && done {
                if let Some(f) = self.current_format(ctx) {
                    g.finish(ctx.sink, &f, &self.name);
                }
                self.changed = true;
                let format = self.format.as_ref().and_then(|(_, n)| n.clone());
                let record = g.checkpoint(&self.name, DONE, format.as_deref());
                self.remember_done(record);
                // Read and done, but still there under a rotated name: held
                // (not read) until it is deleted, so it is never taken for
                // a new file.
                if meta.nlink() > 0 {
                    self.foreign.push(g);
                }
            } else {
                kept.push(g);
            }
        }
        while kept.len() > MAX_ROTATED {
            let g = kept.remove(0);
            let lost = g
                .metadata()
                .map_or(0, |m| m.len())
                .saturating_sub(g.read_pos());
            self.gap(
                "too many rotated files waiting to be read: the oldest was let go unread",
                lost,
            );
        }
        self.rotated = kept;
        // Let go of files deleted (or copies kept long enough), keeping
        // their heads: a `.gz` of one is then still known for what it is.
        let mut gone = Vec::new();
        self.copies.retain(|(g, at, _)| {
            let keep = g.nlink() > 0 && at.elapsed() < COPY_KEPT;
            if !keep {
                gone.push(g.head_bytes.clone());
            }
            keep
        });
        self.foreign.retain(|g| {
            let keep = g.nlink() > 0;
            if !keep {
                gone.push(g.head_bytes.clone());
            }
            keep
        });
        for head in gone.into_iter().filter(|h| !h.is_empty()) {
            self.remember_head(head);
        }
        if self.foreign.len() > MAX_FOREIGN {
            self.foreign.drain(..self.foreign.len() - MAX_FOREIGN);
        }
        Ok(())
    }

    /// Looks at what the path names now: a new file (rename + create,
    /// delete + recreate, atomic replace, a switched symlink) makes the
    /// active one rotated; a missing or unreadable path is a fault.
    fn look_at_path(&mut self, ctx: &mut Ctx<'_>) -> io::Result<()> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.active.is_none() && self.pending_active.is_none() {
                    self.absent_seen_ms = Some(super::checkpoint::now_ms());
                }
                let since = *self.missing_since.get_or_insert_with(Instant::now);
                if self.literal && self.active.is_none() && since.elapsed() >= ctx.missing_grace {
                    self.fault = Some(Fault::Missing);
                }
                // The file we have (rotated away without a new one yet) is still read.
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                self.fault = Some(Fault::Unreadable(e.to_string()));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.missing_since = None;
        if !meta.is_file() {
            self.fault = Some(Fault::NotRegular);
            return Ok(());
        }
        let same = |g: &Generation| g.dev == meta.dev() && g.ino == meta.ino();
        if self.active.as_ref().is_some_and(same) {
            self.fault = None;
            // Seen at its size now, even if the budget leaves it unread.
            if let Some(g) = &mut self.active
                && g.intact(&meta)?
            {
                g.observe(&meta)?;
            }
            return Ok(());
        }
        // A new file at the path: the event thread may hold it already.
        let new = match self.pending_active.take() {
            Some(g) if same(&g) => Ok(g),
            other => {
                if let Some(g) = other {
                    self.taken += 1;
                    self.rotated.push(g);
                }
                Generation::open(&self.path)
            }
        };
        let mut new = match new {
            Ok(g) => g,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                self.fault = Some(Fault::Unreadable(e.to_string()));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.fault = None;
        self.changed = true;
        if let Some(old) = self.active.take() {
            // Replaced by a file that holds what was read (an atomic
            // replace with the same content and more): go on where it was.
            let format = self.format.as_ref().and_then(|(_, n)| n.clone());
            let cp = old.checkpoint(&self.name, 0, format.as_deref());
            if new.matches(&cp)? {
                new.resume_from(&cp)?;
            } else {
                self.rotated.push(old);
            }
        }
        if self.start_at == StartAt::End {
            new.skip_to_end()?;
        } else {
            self.taken += 1;
        }
        self.start_at = StartAt::Beginning;
        if new.intact(&meta)? {
            new.observe(&meta)?;
        }
        self.active = Some(new);
        Ok(())
    }

    /// Reads the active file: a truncation or rewrite in place first takes
    /// what was unread from a copy (else a gap) and starts the file over.
    fn read_active(&mut self, ctx: &mut Ctx<'_>, budget: u64) -> io::Result<Polled> {
        let Some(g) = &mut self.active else {
            return Ok(Polled::default());
        };
        let meta = g.metadata()?;
        // Untouched since the last look, and read to its end: nothing to do.
        if !g.changed(&meta) && g.read_pos() >= meta.len() {
            return Ok(Polled::default());
        }
        if !g.intact(&meta)? || self.copied_then_truncated()? {
            self.truncated(ctx)?;
        }
        if let Some(g) = &mut self.active {
            g.observe(&g.metadata()?)?;
        }
        self.last_activity = Instant::now();
        for _ in 0..2 {
            let f = match (self.current_format(ctx), &self.active) {
                (Some(f), _) => Some(f),
                (None, Some(g)) => {
                    let sample = g.head(DETECT_SAMPLE)?;
                    self.format_from(ctx, &sample)
                }
                (None, None) => None,
            };
            let Some(f) = f else {
                // No complete line yet to tell the format by: look again.
                if let Some(g) = &mut self.active {
                    g.forget_seen();
                }
                return Ok(Polled::default());
            };
            let Some(g) = &mut self.active else { break };
            match g.read(budget, ctx.sink, &f, &self.name, ctx.max_line)? {
                Progress::Read { bytes, more } => return Ok(Polled { bytes, more }),
                Progress::Rewritten => self.truncated(ctx)?,
            }
        }
        Ok(Polled::default())
    }

    /// Whether a copy made of the active file (copytruncate's `cp`) is no
    /// longer how the file starts: it was truncated after the copy, even if
    /// it has grown back past what was read with lines that start alike.
    /// Each copy is compared once, when it is first complete.
    fn copied_then_truncated(&mut self) -> io::Result<bool> {
        let Some(g) = &self.active else {
            return Ok(false);
        };
        for (copy, _, checked) in &mut self.copies {
            if *checked {
                continue;
            }
            let size = copy.metadata()?.len();
            // Compared once the copy has stopped growing.
            if size == 0 || copy.size != size {
                copy.size = size;
                continue;
            }
            *checked = true;
            // A copy of another file (one rotated and truncated before) that
            // was taken while this one is read says nothing about this one.
            let head = copy.head(g.head_bytes.len())?;
            if g.head_bytes[..head.len()] != head[..] {
                continue;
            }
            let now = g.metadata()?.len();
            if now < size {
                return Ok(true);
            }
            let mine = super::fingerprint::PrefixHash::of_file(&g.try_clone_file()?, size)?;
            let theirs = super::fingerprint::PrefixHash::of_file(&copy.try_clone_file()?, size)?;
            if mine != theirs {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The active file was truncated or rewritten in place (copytruncate):
    /// read what had not been read from a copy that holds what was read,
    /// then read the file again from its start.
    fn truncated(&mut self, ctx: &mut Ctx<'_>) -> io::Result<()> {
        // The copy may have been seen already (the event thread opens it
        // as soon as it is made); look while the file itself is still held.
        self.classify_arrived()?;
        self.scan_siblings()?;
        let Some(old) = self.active.take() else {
            return Ok(());
        };
        self.changed = true;
        let format = self.format.as_ref().and_then(|(_, n)| n.clone());
        let c = old.checkpoint(&self.name, 0, format.as_deref());
        self.remember_head(old.head_bytes.clone());
        let mut recovered = false;
        // A copy is known by what was read; of a file seen empty it is not.
        if c.head_len > 0
            && let Some(f) = self.current_format(ctx)
        {
            for (copy, _, _) in &mut self.copies {
                if copy.matches(&c)? {
                    copy.resume_from(&c)?;
                    copy.read(u64::MAX, ctx.sink, &f, &self.name, ctx.max_line)?;
                    copy.finish(ctx.sink, &f, &self.name);
                    recovered = true;
                    break;
                }
            }
            if !recovered {
                for sib in siblings(&self.path) {
                    if sib.gz {
                        if c.offset == 0 {
                            continue;
                        }
                        if let Some((counts, whole)) =
                            read_gz(&sib.path, Some(&c), ctx.sink, &f, &self.name, ctx.max_line)?
                        {
                            self.remember_gz(counts, whole);
                            recovered = true;
                            break;
                        }
                    } else if c.offset > 0
                        && let Ok(mut copy) = Generation::open(&sib.path)
                        // A file read as a generation of its own is no copy.
                        && !self.rotated.iter().any(|g| g.dev == copy.dev && g.ino == copy.ino)
                        && copy.matches(&c)?
                    {
                        copy.resume_from(&c)?;
                        copy.read(u64::MAX, ctx.sink, &f, &self.name, ctx.max_line)?;
                        copy.finish(ctx.sink, &f, &self.name);
                        recovered = true;
                        break;
                    }
                }
            }
        }
        let unread = old.size.max(old.read_pos()).saturating_sub(old.offset);
        if !recovered && unread > 0 {
            self.gap(
                "truncated before it was read to its end, and no rotated copy (.1) held the rest",
                unread,
            );
        }
        // Copies made so far are of what the file held before: none of them
        // says anything about what it holds from now on.
        for (_, _, checked) in &mut self.copies {
            *checked = true;
        }
        // The same file, read again from its start.
        let file = File::open(&self.path).or_else(|_| old.try_clone_file())?;
        self.active = Some(Generation::of(file)?);
        Ok(())
    }

    /// Checkpoints of every generation this stream holds.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        let format = self.format.as_ref().and_then(|(_, n)| n.clone());
        let format = format.as_deref();
        let mut out = Vec::new();
        if let Some(g) = &self.active {
            out.push(g.checkpoint(&self.name, 0, format));
        }
        if let Some((cp, _)) = &self.dormant {
            out.push(cp.clone());
        }
        for (i, g) in self.rotated.iter().enumerate() {
            out.push(g.checkpoint(&self.name, i as i64 + 1, format));
        }
        if out.is_empty() {
            // Known, without a file now: what appears is read from its start,
            // after a restart too.
            let seen = self
                .absent_seen_ms
                .unwrap_or_else(super::checkpoint::now_ms);
            out.push(Checkpoint::absent(&self.name, seen, format));
        }
        // Records get generations of their own (the store keys rows by them).
        out.extend(self.done.iter().enumerate().map(|(i, d)| Checkpoint {
            generation: DONE - i as i64,
            ..d.clone()
        }));
        // Files held and never to be read (there before, copies): a
        // restart knows them for what they are.
        let mut skips = 0usize;
        // (An empty one says nothing: its inode may be another file's soon.)
        for g in self
            .foreign
            .iter()
            .chain(self.copies.iter().map(|(g, _, _)| g))
            .filter(|g| !g.head_bytes.is_empty())
        {
            let mut k = g.checkpoint(&self.name, SKIP - skips as i64, format);
            skips += 1;
            k.head_len = g.head_bytes.len() as u64;
            k.head_hash = super::fingerprint::hash(&g.head_bytes);
            out.push(k);
        }
        // And the heads of files read and let go: a `.gz` made of one is
        // known after a restart too.
        let mut heads = self.known_heads.clone();
        for head in &self.recent_heads {
            let h = (head.len() as u64, super::fingerprint::hash(head));
            if !heads.contains(&h) {
                heads.push(h);
            }
        }
        for (len, hash) in heads {
            let mut k = Checkpoint::absent(&self.name, 0, format);
            k.absent_since_ms = None;
            k.generation = SKIP - skips as i64;
            skips += 1;
            k.head_len = len;
            k.head_hash = hash;
            out.push(k);
        }
        out
    }

    /// Bytes written to the active file and not read yet.
    pub fn lag(&self) -> u64 {
        let rotated: u64 = self
            .rotated
            .iter()
            .map(|g| g.metadata().map_or(0, |m| m.len()).saturating_sub(g.offset))
            .sum();
        rotated
            + self.active.as_ref().map_or(0, |g| {
                g.metadata().map_or(0, |m| m.len()).saturating_sub(g.offset)
            })
    }
}

/// The generation number of a record of a file held and never to be read
/// (there before keywatch, or a copytruncate copy).
/// (Numbered down from here: -1000, -1001, …)
const SKIP: i64 = -1000;

fn is_skip(generation: i64) -> bool {
    generation <= SKIP
}

fn is_done(generation: i64) -> bool {
    (SKIP + 1..=DONE).contains(&generation)
}
/// How much of a head a `.gz` is compared by against those records.
const HEAD: u64 = super::fingerprint::HEAD_MAX;

/// The generation number of a record of a file read to its end and let go
/// (numbered down from here: -1, -2, …).
const DONE: i64 = -1;
/// Such records kept at most.
const MAX_DONE: usize = 8;
/// Heads of files let go remembered at most.
const MAX_HEADS: usize = 32;

/// How many first bytes of a file a format is detected from.
const DETECT_SAMPLE: usize = 1 << 20;
