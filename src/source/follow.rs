//! Following files as servers write and rotate them.
//!
//! A [`Stream`] is one watched path. The file at the path is its active
//! [`Generation`]; when the path starts naming another file (rename+create,
//! delete+recreate, atomic replace, a switched symlink) the old one becomes a
//! rotated generation that is read to its end before it is let go. A file
//! that shrinks or whose bytes before the read offset change was truncated
//! (copytruncate): what was unread is looked for in its `.1` copy, and what
//! cannot be recovered is reported as a [`Gap`].
//!
//! The offset of a generation is always the start of the first line not yet
//! counted, so a checkpoint never splits a line.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::pipeline::Analyzer;
use crate::store::{Checkpoint, Gap};

/// How much of a file's head identifies it.
const HEAD_MAX: u64 = 1024;
/// How many bytes before the offset are compared to detect rewritten content.
const MARKER: usize = 256;
/// Read size per call.
const CHUNK: usize = 1 << 16;

fn hash(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b)[..16].to_vec()
}

fn read_at_most(file: &File, at: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut n = 0;
    while n < len {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// A writer that kept its offset across a copytruncate leaves a run of NUL
/// bytes (a sparse hole) where the file was emptied; they belong to no line.
fn without_nul_padding(line: &[u8]) -> &[u8] {
    if line.first() == Some(&0) {
        &line[line.iter().position(|&b| b != 0).unwrap_or(line.len())..]
    } else {
        line
    }
}

/// One file being read.
pub struct Generation {
    file: File,
    pub dev: u64,
    pub ino: u64,
    pub head_len: u64,
    pub head_hash: Vec<u8>,
    /// Start of the first line not yet counted.
    pub offset: u64,
    /// Bytes read after `offset` that do not yet end in a newline.
    partial: Vec<u8>,
    /// Bytes of an over-long line already read and dropped (not buffered).
    skip_len: usize,
    /// The first bytes of that over-long line, for the report.
    long_head: Vec<u8>,
    /// The last bytes before `offset` (up to [`MARKER`]).
    marker: Vec<u8>,
    pub size: u64,
    pub lines: u64,
    pub parsed: u64,
    pub skipped: u64,
    pub last_line_ms: Option<i64>,
    /// Size and modification time at the last look: unchanged means nothing to do.
    seen: (u64, i64, i64),
}

impl Generation {
    fn open(path: &Path, offset: u64) -> io::Result<Generation> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let mut g = Generation {
            dev: meta.dev(),
            ino: meta.ino(),
            head_len: 0,
            head_hash: hash(b""),
            offset,
            partial: Vec::new(),
            skip_len: 0,
            long_head: Vec::new(),
            marker: Vec::new(),
            size: meta.len(),
            lines: 0,
            parsed: 0,
            skipped: 0,
            last_line_ms: None,
            seen: (u64::MAX, 0, 0),
            file,
        };
        g.grow_head()?;
        g.marker = g.bytes_before_offset()?;
        Ok(g)
    }

    /// Extends the head fingerprint as the file grows, up to [`HEAD_MAX`].
    fn grow_head(&mut self) -> io::Result<()> {
        let want = self.size.min(HEAD_MAX);
        if want > self.head_len {
            let head = read_at_most(&self.file, 0, want as usize)?;
            self.head_len = head.len() as u64;
            self.head_hash = hash(&head);
        }
        Ok(())
    }

    fn bytes_before_offset(&self) -> io::Result<Vec<u8>> {
        let start = self.offset.saturating_sub(MARKER as u64);
        read_at_most(&self.file, start, (self.offset - start) as usize)
    }

    /// Whether the file still holds what was read: not shorter than what was
    /// consumed, the same head, and the same bytes before the offset. (Log
    /// lines often end alike, so the tail alone is no proof: a file rewritten
    /// to the same size with lines ending the same way would pass it.)
    fn intact(&self, meta: &Metadata) -> io::Result<bool> {
        if meta.len() < self.read_pos() {
            return Ok(false);
        }
        if self.head_len > 0
            && hash(&read_at_most(&self.file, 0, self.head_len as usize)?) != self.head_hash
        {
            return Ok(false);
        }
        Ok(self.offset == 0 || self.bytes_before_offset()? == self.marker)
    }

    /// Where the next read starts.
    fn read_pos(&self) -> u64 {
        self.offset + self.partial.len() as u64 + self.skip_len as u64
    }

    /// Reads whatever was appended and feeds complete lines to `a`.
    /// Returns the bytes read, or `None` when the file turned out to have
    /// been truncated or rewritten while it was being read (nothing of that
    /// read is counted then).
    fn read_available(
        &mut self,
        a: &mut Analyzer<'_>,
        name: &Arc<str>,
        max_line: usize,
    ) -> io::Result<Option<u64>> {
        let mut total = 0;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let mut data = Vec::new();
            while data.len() < (8 << 20) {
                let n = match self
                    .file
                    .read_at(&mut buf, self.read_pos() + data.len() as u64)
                {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            if data.is_empty() {
                break;
            }
            // The bytes are counted only if the file still starts and
            // continues as it did: a truncation between the check before
            // reading and the read itself would otherwise slip through.
            if !self.intact(&self.file.metadata()?)? {
                return Ok(None);
            }
            total += data.len() as u64;
            self.consume(&data, a, name, max_line);
            // What was just consumed is what the next check compares against.
            self.size = self.size.max(self.read_pos());
            self.grow_head()?;
            self.marker = self.bytes_before_offset()?;
        }
        Ok(Some(total))
    }

    /// Splits `data` (which follows what was read before) into lines.
    fn consume(&mut self, mut data: &[u8], a: &mut Analyzer<'_>, name: &Arc<str>, max_line: usize) {
        while let Some(nl) = memchr::memchr(b'\n', data) {
            let piece = &data[..nl];
            let line_len = self.skip_len + self.partial.len() + piece.len();
            self.lines += 1;
            if self.skip_len > 0 || line_len > max_line {
                if self.skip_len == 0 {
                    self.long_head = self
                        .partial
                        .iter()
                        .chain(piece)
                        .take(160)
                        .copied()
                        .collect();
                }
                a.too_long(name, self.lines, line_len, &self.long_head);
                self.skipped += 1;
            } else {
                let before = (a.totals.parsed, a.totals.skipped);
                if self.partial.is_empty() {
                    a.line(without_nul_padding(piece), name, self.lines);
                } else {
                    self.partial.extend_from_slice(piece);
                    a.line(without_nul_padding(&self.partial), name, self.lines);
                }
                self.parsed += a.totals.parsed - before.0;
                self.skipped += a.totals.skipped - before.1;
                if a.totals.parsed > before.0 {
                    self.last_line_ms = a.last_time_ms;
                }
            }
            self.partial.clear();
            self.skip_len = 0;
            self.offset += line_len as u64 + 1;
            data = &data[nl + 1..];
        }
        if self.skip_len > 0 {
            self.skip_len += data.len();
        } else if self.partial.len() + data.len() > max_line {
            // Too long to hold: remember its start for the report, drop the rest.
            self.long_head = self.partial.iter().chain(data).take(160).copied().collect();
            self.skip_len = self.partial.len() + data.len();
            self.partial.clear();
        } else {
            self.partial.extend_from_slice(data);
        }
    }

    /// Counts a final line that never got its newline (the file is let go).
    fn flush_partial(&mut self, a: &mut Analyzer<'_>, name: &Arc<str>) {
        if self.partial.is_empty() || self.skip_len > 0 {
            return;
        }
        self.lines += 1;
        let line = std::mem::take(&mut self.partial);
        let before = a.totals.parsed;
        a.line(&line, name, self.lines);
        if a.totals.parsed > before {
            self.parsed += 1;
        } else {
            self.skipped += 1;
        }
        self.offset += line.len() as u64;
    }

    fn checkpoint(&self, stream: &str, generation: i64) -> Checkpoint {
        Checkpoint {
            stream: stream.to_string(),
            generation,
            dev: self.dev,
            ino: self.ino,
            head_len: self.head_len,
            head_hash: self.head_hash.clone(),
            offset: self.offset,
            marker_hash: hash(&self.marker),
            size: self.size,
            lines: self.lines,
            parsed: self.parsed,
            skipped: self.skipped,
            last_line_ms: self.last_line_ms,
        }
    }

    /// Whether this file is the one a checkpoint describes, at its offset.
    fn matches(&self, c: &Checkpoint) -> io::Result<bool> {
        if self.size < c.offset || self.size < c.head_len {
            return Ok(false);
        }
        let head = read_at_most(&self.file, 0, c.head_len as usize)?;
        if hash(&head) != c.head_hash {
            return Ok(false);
        }
        let start = c.offset.saturating_sub(MARKER as u64);
        let marker = read_at_most(&self.file, start, (c.offset - start) as usize)?;
        Ok(hash(&marker) == c.marker_hash)
    }

    fn resume_from(&mut self, c: &Checkpoint) -> io::Result<()> {
        self.offset = c.offset;
        self.lines = c.lines;
        self.parsed = c.parsed;
        self.skipped = c.skipped;
        self.last_line_ms = c.last_line_ms;
        self.marker = self.bytes_before_offset()?;
        Ok(())
    }
}

/// Where a new file at a watched path starts being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

/// One watched path and the files it named.
pub struct Stream {
    pub path: PathBuf,
    name: Arc<str>,
    pub active: Option<Generation>,
    pub rotated: Vec<Generation>,
    pub gaps: Vec<Gap>,
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
    last_activity: std::time::Instant,
}

/// Rotated names a file may have been given: `.1`, `.1.gz`, `.2`, `.2.gz`, …
fn siblings(path: &Path) -> Vec<(u32, PathBuf)> {
    let mut out = Vec::new();
    for n in 1..=5 {
        for ext in ["", ".gz"] {
            let mut s = path.as_os_str().to_owned();
            s.push(format!(".{n}{ext}"));
            out.push((n, PathBuf::from(s)));
        }
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Stream {
    pub fn new(path: PathBuf, start_at: StartAt) -> Stream {
        let name: Arc<str> = path.display().to_string().into();
        Stream {
            path,
            name,
            active: None,
            rotated: Vec::new(),
            gaps: Vec::new(),
            start_at,
            totals: crate::pipeline::Totals::default(),
            gap_totals: (0, 0),
            changed: false,
            dormant: None,
            last_activity: std::time::Instant::now(),
        }
    }

    /// Whether the stream holds no open file (it was idle and closed).
    pub fn is_dormant(&self) -> bool {
        self.dormant.is_some()
    }

    /// Closes the file if it has had nothing to read for `idle`, keeping
    /// where it was; it is reopened (and checked to be the same file) when
    /// the path changes. Keeps file handles bounded by the active files.
    pub fn close_if_idle(&mut self, idle: std::time::Duration) -> io::Result<()> {
        let Some(g) = &self.active else { return Ok(()) };
        if !self.rotated.is_empty()
            || !g.partial.is_empty()
            || g.skip_len > 0
            || self.last_activity.elapsed() < idle
        {
            return Ok(());
        }
        let m = g.file.metadata()?;
        let sig = (m.len(), m.mtime(), m.mtime_nsec());
        self.dormant = Some((g.checkpoint(&self.name, 0), sig));
        self.active = None;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Restores the stream from its checkpoints, reading what was written to
    /// rotated files while keywatch was not running.
    pub fn resume(
        &mut self,
        saved: &[Checkpoint],
        a: &mut Analyzer<'_>,
        max_line: usize,
    ) -> io::Result<()> {
        self.start_at = StartAt::Beginning;
        for c in saved {
            // The file now at the path, opened once: opening it again could
            // give another file if it is being rotated right now.
            if c.generation == 0 {
                let here = Generation::open(&self.path, 0)
                    .ok()
                    .filter(|g| g.dev == c.dev && g.ino == c.ino);
                if let Some(mut g) = here
                    && g.matches(c)?
                {
                    g.resume_from(c)?;
                    self.active = Some(g);
                    continue;
                }
            }
            // Not at the path (or rewritten there): find the file among its rotated names.
            let found = self.drain_sibling(c, a, max_line, true)?;
            if let (Some(n), 0) = (found, c.generation) {
                self.read_unseen_rotations(n, saved, a, max_line)?;
            }
            if found.is_none() {
                self.gaps.push(Gap {
                    stream: self.name.to_string(),
                    reason: "the file read before the stop was rotated away and no readable copy matched".into(),
                    bytes: c.size.saturating_sub(c.offset),
                    at_ms: now_ms(),
                });
            }
        }
        Ok(())
    }

    /// Looks for the file of checkpoint `c` among the rotated siblings and
    /// reads it from the checkpoint's offset. Returns the rotation number it
    /// was found under (`.2` → 2), or `None`.
    fn drain_sibling(
        &mut self,
        c: &Checkpoint,
        a: &mut Analyzer<'_>,
        max_line: usize,
        follow: bool,
    ) -> io::Result<Option<u32>> {
        for (n, sib) in siblings(&self.path) {
            let gz = sib.extension().is_some_and(|e| e == "gz");
            if gz {
                if self.drain_gz(&sib, c, a)? {
                    return Ok(Some(n));
                }
                continue;
            }
            let Ok(mut g) = Generation::open(&sib, 0) else {
                continue;
            };
            if g.matches(c)? {
                g.resume_from(c)?;
                g.read_available(a, &self.name, max_line)?;
                if follow {
                    self.rotated.push(g);
                } else {
                    g.flush_partial(a, &self.name);
                }
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    /// After a rotation: if the file we followed is already `.N` with N > 1,
    /// the files now at `.N-1` … `.1` were created and rotated between two
    /// looks; read them whole (unless we hold them already).
    fn read_unseen_since(
        &mut self,
        dev: u64,
        ino: u64,
        a: &mut Analyzer<'_>,
        max_line: usize,
    ) -> io::Result<u64> {
        let at = siblings(&self.path).into_iter().find_map(|(n, p)| {
            std::fs::metadata(&p)
                .ok()
                .filter(|m| m.dev() == dev && m.ino() == ino)
                .map(|_| n)
        });
        let mut read = 0;
        for n in (1..at.unwrap_or(1)).rev() {
            let mut p = self.path.as_os_str().to_owned();
            p.push(format!(".{n}"));
            let Ok(mut g) = Generation::open(Path::new(&p), 0) else {
                continue;
            };
            if self
                .rotated
                .iter()
                .any(|r| r.dev == g.dev && r.ino == g.ino)
            {
                continue;
            }
            read += g.read_available(a, &self.name, max_line)?.unwrap_or(0);
            self.rotated.push(g);
        }
        Ok(read)
    }

    /// Reads whole the rotated files newer than `.{found}` that no checkpoint
    /// knows: they were created and rotated while keywatch was stopped.
    fn read_unseen_rotations(
        &mut self,
        found: u32,
        saved: &[Checkpoint],
        a: &mut Analyzer<'_>,
        max_line: usize,
    ) -> io::Result<()> {
        for n in (1..found).rev() {
            for (m, sib) in siblings(&self.path) {
                if m != n {
                    continue;
                }
                if sib.extension().is_some_and(|e| e == "gz") {
                    let Ok(file) = File::open(&sib) else { continue };
                    let mut data = Vec::new();
                    flate2::read::MultiGzDecoder::new(io::BufReader::new(file))
                        .read_to_end(&mut data)?;
                    let known = saved.iter().any(|c| {
                        data.len() as u64 >= c.head_len
                            && hash(&data[..c.head_len as usize]) == c.head_hash
                    });
                    if !known {
                        let fresh = Checkpoint {
                            lines: 0,
                            offset: 0,
                            ..saved[0].clone()
                        };
                        self.count_all(&data, &fresh, a);
                    }
                    continue;
                }
                let Ok(mut g) = Generation::open(&sib, 0) else {
                    continue;
                };
                if saved.iter().any(|c| c.dev == g.dev && c.ino == g.ino) {
                    continue;
                }
                g.read_available(a, &self.name, max_line)?;
                self.rotated.push(g);
            }
        }
        Ok(())
    }

    /// Streams a compressed rotated file up to the offset and counts the rest.
    fn drain_gz(&mut self, path: &Path, c: &Checkpoint, a: &mut Analyzer<'_>) -> io::Result<bool> {
        let Ok(file) = File::open(path) else {
            return Ok(false);
        };
        let mut gz = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
        let mut head = vec![0u8; c.head_len as usize];
        if gz.read_exact(&mut head).is_err() || hash(&head) != c.head_hash {
            return Ok(false);
        }
        let mut skip = c.offset.saturating_sub(c.head_len);
        if c.offset < c.head_len {
            // The offset lies inside the head: what follows it there is unread.
            let mut rest = head[c.offset as usize..].to_vec();
            gz.read_to_end(&mut rest)?;
            return Ok(self.count_all(&rest, c, a));
        }
        let mut sink = vec![0u8; CHUNK];
        while skip > 0 {
            let n = gz.read(&mut sink[..(skip.min(CHUNK as u64)) as usize])?;
            if n == 0 {
                return Ok(false);
            }
            skip -= n as u64;
        }
        let mut rest = Vec::new();
        gz.read_to_end(&mut rest)?;
        Ok(self.count_all(&rest, c, a))
    }

    fn count_all(&mut self, data: &[u8], c: &Checkpoint, a: &mut Analyzer<'_>) -> bool {
        let mut n = c.lines;
        for line in data.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            n += 1;
            a.line(line, &self.name, n);
        }
        true
    }

    /// Reads everything new: rotated files to their end, then the file at
    /// the path, handling rotation and truncation.
    pub fn poll(&mut self, a: &mut Analyzer<'_>, max_line: usize) -> io::Result<u64> {
        if let Some((cp, sig)) = self.dormant.take() {
            let unchanged = std::fs::metadata(&self.path)
                .map(|m| {
                    m.dev() == cp.dev
                        && m.ino() == cp.ino
                        && (m.len(), m.mtime(), m.mtime_nsec()) == sig
                })
                .unwrap_or(false);
            if unchanged {
                self.dormant = Some((cp, sig));
                return Ok(0);
            }
            // Something happened: reopen as after a restart (same file → resume;
            // rotated or rewritten → its rest from the rotated copy, then the new file).
            self.resume(std::slice::from_ref(&cp), a, max_line)?;
            self.changed = true;
        }
        let mut read = 0;
        let mut rewritten = Vec::new();
        for (i, g) in self.rotated.iter_mut().enumerate() {
            match g.read_available(a, &self.name, max_line)? {
                Some(n) => read += n,
                None => rewritten.push(i),
            }
        }
        // A rotated file rewritten in place is not ours any more: what it had
        // that we had not read is a gap.
        for i in rewritten.into_iter().rev() {
            let g = self.rotated.remove(i);
            self.changed = true;
            self.gaps.push(Gap {
                stream: self.name.to_string(),
                reason: "a rotated file was rewritten before it was read to its end".into(),
                bytes: g.size.saturating_sub(g.read_pos()),
                at_ms: now_ms(),
            });
        }
        // A rotated file is let go once drained and deleted (or after three newer ones).
        let mut kept = Vec::new();
        for mut g in std::mem::take(&mut self.rotated) {
            let gone = g.file.metadata().map(|m| m.nlink() == 0).unwrap_or(true);
            if gone {
                g.flush_partial(a, &self.name);
                self.changed = true;
            } else {
                kept.push(g);
            }
        }
        while kept.len() > 3 {
            let mut g = kept.remove(0);
            g.flush_partial(a, &self.name);
            self.changed = true;
        }
        self.rotated = kept;

        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => None,
            Err(e) => return Err(e),
        };
        let Some(meta) = meta else {
            // The path is gone for now: keep reading the file we have.
            if let Some(g) = &mut self.active {
                read += g.read_available(a, &self.name, max_line)?.unwrap_or(0);
            }
            return Ok(read);
        };
        let mut just_rotated: Option<Checkpoint> = None;
        let replaced = self
            .active
            .as_ref()
            .is_some_and(|g| g.dev != meta.dev() || g.ino != meta.ino());
        if replaced {
            self.changed = true;
            if let Some(mut old) = self.active.take() {
                read += old.read_available(a, &self.name, max_line)?.unwrap_or(0);
                let (dev, ino) = (old.dev, old.ino);
                just_rotated = Some(old.checkpoint(&self.name, 0));
                self.rotated.push(old);
                read += self.read_unseen_since(dev, ino, a, max_line)?;
            }
        }
        if self.active.is_none() {
            let mut g = match Generation::open(&self.path, 0) {
                Ok(g) => g,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    return Ok(read);
                }
                Err(e) => return Err(e),
            };
            if self.start_at == StartAt::End {
                g.offset = g.size;
                g.marker = g.bytes_before_offset()?;
            }
            // Replaced by a file that starts with what was read (an atomic
            // replace with the same content): go on where we were.
            if let Some(c) = &just_rotated
                && g.matches(c)?
            {
                g.resume_from(c)?;
                if let Some(pos) = self
                    .rotated
                    .iter()
                    .position(|r| r.dev == c.dev && r.ino == c.ino)
                {
                    self.rotated.remove(pos);
                }
            }
            self.start_at = StartAt::Beginning;
            self.active = Some(g);
        }
        let truncated = match &mut self.active {
            Some(g) => {
                let m = g.file.metadata()?;
                let sig = (m.len(), m.mtime(), m.mtime_nsec());
                if sig == g.seen {
                    // Neither grown nor touched since the last look.
                    return Ok(read);
                }
                g.seen = sig;
                !g.intact(&m)?
            }
            None => false,
        };
        if truncated {
            self.truncated(a, max_line)?;
        }
        self.last_activity = std::time::Instant::now();
        if let Some(g) = &mut self.active {
            match g.read_available(a, &self.name, max_line)? {
                Some(n) => read += n,
                None => {
                    self.truncated(a, max_line)?;
                    if let Some(g) = &mut self.active {
                        read += g.read_available(a, &self.name, max_line)?.unwrap_or(0);
                    }
                }
            }
        }
        Ok(read)
    }

    /// The active file was truncated or rewritten in place (copytruncate):
    /// read what we had not yet read from its `.1` copy, then start over.
    fn truncated(&mut self, a: &mut Analyzer<'_>, max_line: usize) -> io::Result<()> {
        let Some(old) = self.active.take() else {
            return Ok(());
        };
        self.changed = true;
        let c = old.checkpoint(&self.name, 0);
        // The copy is a finished file: read its rest, do not follow it.
        let recovered = self.drain_sibling(&c, a, max_line, false)?.is_some();
        if !recovered && old.size > old.offset {
            self.gaps.push(Gap {
                stream: self.name.to_string(),
                reason: "truncated before it was read, and no rotated copy (.1) held the rest"
                    .into(),
                bytes: old.size - old.offset,
                at_ms: now_ms(),
            });
        }
        let mut g = Generation::open(&self.path, 0)?;
        g.offset = 0;
        self.active = Some(g);
        Ok(())
    }

    /// Checkpoints of every generation this stream holds.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        let mut out = Vec::new();
        if let Some(g) = &self.active {
            out.push(g.checkpoint(&self.name, 0));
        }
        if let Some((cp, _)) = &self.dormant {
            out.push(cp.clone());
        }
        for (i, g) in self.rotated.iter().enumerate() {
            out.push(g.checkpoint(&self.name, i as i64 + 1));
        }
        out
    }
}
