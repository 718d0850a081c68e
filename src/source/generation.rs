//! One file being read: a [`Generation`] of a followed path. It holds the
//! open descriptor (so a rotated or deleted file stays readable), where it
//! was read to, its fingerprint, and its line counts.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::checkpoint::Checkpoint;
use super::fingerprint::{HEAD_MAX, MARKER, PrefixHash, hash, read_at_most};
use super::lines::{Counts, LineSink, Splitter};
use crate::format::LogFormat;

/// Read size per call.
const CHUNK: usize = 1 << 16;
/// Bytes read before the file is checked to be still the same.
const BATCH: usize = 8 << 20;
/// A file taken up at its end is hashed up to there only when it is at most
/// this long (longer, and its head and the bytes before the offset alone
/// identify it).
const PREFIX_AT_START: u64 = 256 << 20;

/// What one read of a generation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Bytes read, and whether more were there than the budget allowed.
    Read { bytes: u64, more: bool },
    /// The file was truncated or rewritten under the reader: nothing of
    /// that read was counted.
    Rewritten,
}

/// One file being read; see the module documentation.
pub struct Generation {
    file: File,
    pub dev: u64,
    pub ino: u64,
    pub head_len: u64,
    pub head_hash: Vec<u8>,
    /// The head itself (up to [`HEAD_MAX`] bytes), to tell a copy being
    /// made of this file from a new one.
    pub head_bytes: Vec<u8>,
    /// Start of the first line not yet counted.
    pub offset: u64,
    splitter: Splitter,
    /// The last bytes before `offset` (up to [`MARKER`]).
    marker: Vec<u8>,
    /// The running hash of every byte read (from 0 to at least `offset`:
    /// an unfinished last line is in it), fed as bytes are read so it always
    /// describes what was read, not what the file holds later; `None` when
    /// unknown (a large file taken up at its end).
    prefix: Option<PrefixHash>,
    pub size: u64,
    pub counts: Counts,
    /// Size and modification time at the last look: unchanged means nothing to do.
    seen: (u64, i64, i64),
    /// When the file last had something new.
    pub last_growth: Instant,
}

impl Generation {
    /// A generation of an opened file, to be read from its start.
    pub fn of(file: File) -> io::Result<Generation> {
        let meta = file.metadata()?;
        let mut g = Generation {
            dev: meta.dev(),
            ino: meta.ino(),
            head_len: 0,
            head_hash: hash(b""),
            head_bytes: Vec::new(),
            offset: 0,
            splitter: Splitter::default(),
            marker: Vec::new(),
            prefix: Some(PrefixHash::default()),
            size: meta.len(),
            counts: Counts::default(),
            seen: (u64::MAX, 0, 0),
            last_growth: Instant::now(),
            file,
        };
        g.grow_head()?;
        Ok(g)
    }

    pub fn open(path: &Path) -> io::Result<Generation> {
        let file = File::open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Generation::of(file)
    }

    /// Starts reading at the current end (a first run's `--from-end`).
    pub fn skip_to_end(&mut self) -> io::Result<()> {
        self.offset = self.size;
        self.marker = self.bytes_before_offset()?;
        // What is skipped is hashed once, unless that is a long read; the
        // head and the bytes before the offset still identify the file.
        self.prefix = if self.size <= PREFIX_AT_START {
            Some(PrefixHash::of_file(&self.file, self.size)?)
        } else {
            None
        };
        Ok(())
    }

    pub fn metadata(&self) -> io::Result<Metadata> {
        self.file.metadata()
    }

    /// Another handle on the same file.
    pub fn try_clone_file(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Makes the next [`Generation::changed`] say yes (to look again).
    pub fn forget_seen(&mut self) {
        self.seen = (u64::MAX, 0, 0);
    }

    /// Links to the file left (0 once it was deleted).
    pub fn nlink(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.nlink())
    }

    /// Extends the head fingerprint as the file grows, up to [`HEAD_MAX`].
    fn grow_head(&mut self) -> io::Result<()> {
        let want = self.size.min(HEAD_MAX);
        if want > self.head_len {
            let head = read_at_most(&self.file, 0, want as usize)?;
            self.head_len = head.len() as u64;
            self.head_hash = hash(&head);
            self.head_bytes = head;
        }
        Ok(())
    }

    fn bytes_before_offset(&self) -> io::Result<Vec<u8>> {
        let start = self.offset.saturating_sub(MARKER as u64);
        read_at_most(&self.file, start, (self.offset - start) as usize)
    }

    /// Whether the file still holds what was read: not shorter than what was
    /// consumed, the same head, and the same bytes before the offset. (Log
    /// lines often end alike, so the tail alone is no proof.)
    pub fn intact(&self, meta: &Metadata) -> io::Result<bool> {
        // Shorter than it was ever seen: truncated, read or not.
        if meta.len() < self.read_pos().max(self.size) {
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
    pub fn read_pos(&self) -> u64 {
        self.offset + self.splitter.pending()
    }

    /// Bytes of an unfinished last line held.
    pub fn pending(&self) -> u64 {
        self.splitter.pending()
    }

    /// Notes how large the file is now (so a truncation of bytes not read
    /// yet is still known for what it took) and extends its head
    /// fingerprint; call it only while the file is intact.
    pub fn observe(&mut self, meta: &Metadata) -> io::Result<()> {
        if meta.len() > self.size {
            self.size = meta.len();
            self.grow_head()?;
        }
        Ok(())
    }

    /// Whether the file changed since the last look (size or time).
    pub fn changed(&mut self, meta: &Metadata) -> bool {
        let sig = (meta.len(), meta.mtime(), meta.mtime_nsec());
        if sig == self.seen {
            return false;
        }
        self.seen = sig;
        true
    }

    /// Reads what was appended, up to about `budget` bytes, handing
    /// complete lines to `sink`.
    pub fn read(
        &mut self,
        budget: u64,
        sink: &mut dyn LineSink,
        format: &LogFormat,
        name: &Arc<str>,
        max_line: usize,
    ) -> io::Result<Progress> {
        let mut total = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let mut data = Vec::new();
            let room = (budget.saturating_sub(total) as usize).clamp(CHUNK, BATCH);
            while data.len() < room {
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
                return Ok(Progress::Read {
                    bytes: total,
                    more: false,
                });
            }
            // The bytes are counted only if the file still starts and
            // continues as it did: a truncation between the check before
            // reading and the read itself would otherwise slip through.
            if !self.intact(&self.file.metadata()?)? {
                return Ok(Progress::Rewritten);
            }
            let at = self.read_pos();
            if let Some(p) = &mut self.prefix {
                // After a resume the hash may already cover what is read again.
                match usize::try_from(p.len().saturating_sub(at)) {
                    Ok(skip) if p.len() >= at && skip <= data.len() => p.update(&data[skip..]),
                    Ok(_) if p.len() >= at => {}
                    _ => self.prefix = None,
                }
            }
            total += data.len() as u64;
            let counts = &mut self.counts;
            let consumed = self
                .splitter
                .feed(&data, max_line, |p| counts.hand(p, sink, format, name));
            self.offset += consumed;
            self.size = self.size.max(self.read_pos());
            self.last_growth = Instant::now();
            self.grow_head()?;
            self.marker = self.bytes_before_offset()?;
            if total >= budget {
                return Ok(Progress::Read {
                    bytes: total,
                    more: true,
                });
            }
        }
    }

    /// Counts a final line that never got its newline (the file is let go).
    pub fn finish(&mut self, sink: &mut dyn LineSink, format: &LogFormat, name: &Arc<str>) {
        let counts = &mut self.counts;
        self.offset += self.splitter.finish(|p| counts.hand(p, sink, format, name));
    }

    pub fn checkpoint(&self, stream: &str, generation: i64, format: Option<&str>) -> Checkpoint {
        Checkpoint {
            stream: stream.to_string(),
            generation,
            dev: self.dev,
            ino: self.ino,
            head_len: self.head_len,
            head_hash: self.head_hash.clone(),
            offset: self.offset,
            marker_hash: hash(&self.marker),
            prefix_hash: self.prefix.map_or_else(Vec::new, |p| p.to_bytes()),
            size: self.size,
            lines: self.counts.lines,
            parsed: self.counts.parsed,
            skipped: self.counts.skipped,
            last_line_ms: self.counts.last_line_ms,
            format: format.map(str::to_owned),
            absent_since_ms: None,
        }
    }

    /// Whether this file holds what a checkpoint says was read: its head,
    /// the bytes before its offset, and (when recorded) every byte before it.
    pub fn matches(&self, c: &Checkpoint) -> io::Result<bool> {
        let size = self.file.metadata()?.len();
        if size < c.offset || size < c.head_len {
            return Ok(false);
        }
        let head = read_at_most(&self.file, 0, c.head_len as usize)?;
        if hash(&head) != c.head_hash {
            return Ok(false);
        }
        let start = c.offset.saturating_sub(MARKER as u64);
        let marker = read_at_most(&self.file, start, (c.offset - start) as usize)?;
        if hash(&marker) != c.marker_hash {
            return Ok(false);
        }
        Ok(match PrefixHash::from_bytes(&c.prefix_hash) {
            Some(want) => {
                size >= want.len() && PrefixHash::of_file(&self.file, want.len())? == want
            }
            None => true,
        })
    }

    /// Takes up where a matching checkpoint left off.
    pub fn resume_from(&mut self, c: &Checkpoint) -> io::Result<()> {
        // What the file holds now is what `matches` checked: fingerprint it
        // anew (a copy may have been rewritten since it was opened).
        self.size = self.file.metadata()?.len();
        self.head_len = 0;
        self.grow_head()?;
        self.seen = (u64::MAX, 0, 0);
        self.offset = c.offset;
        self.splitter.reset();
        self.counts = Counts {
            lines: c.lines,
            parsed: c.parsed,
            skipped: c.skipped,
            last_line_ms: c.last_line_ms,
        };
        self.marker = self.bytes_before_offset()?;
        // Without a recorded hash (an older store) the file is hashed anew
        // up to the offset.
        self.prefix = match PrefixHash::from_bytes(&c.prefix_hash) {
            Some(p) if p.len() >= c.offset => Some(p),
            _ if c.offset <= PREFIX_AT_START => Some(PrefixHash::of_file(&self.file, c.offset)?),
            _ => None,
        };
        Ok(())
    }

    /// The first bytes of the file (up to [`HEAD_MAX`]), for format
    /// detection and telling copies apart.
    pub fn head(&self, len: usize) -> io::Result<Vec<u8>> {
        read_at_most(&self.file, 0, len)
    }
}
