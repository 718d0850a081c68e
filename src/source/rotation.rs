//! The names a rotated file may have (`.1`, `.1.gz`, `.2`, …) and reading
//! compressed ones: a `.gz` sibling is streamed, never unpacked whole, and
//! taken for a checkpoint's file only when its content matches.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use super::checkpoint::Checkpoint;
use super::fingerprint::{MARKER, PrefixHash, hash};
use super::lines::{Counts, LineSink, Splitter};
use crate::format::LogFormat;

/// How many rotated names are looked at (`.1` … `.5`).
pub const MAX_ROTATIONS: u32 = 5;

/// A rotated name of a followed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sibling {
    /// The rotation number: `.2` is 2.
    pub n: u32,
    pub path: PathBuf,
    pub gz: bool,
}

/// Rotated names a file may have been given, newest first: `.1`, `.1.gz`,
/// `.2`, `.2.gz`, …
pub fn siblings(path: &Path) -> Vec<Sibling> {
    let mut out = Vec::new();
    for n in 1..=MAX_ROTATIONS {
        for gz in [false, true] {
            let mut s = path.as_os_str().to_owned();
            s.push(format!(".{n}{}", if gz { ".gz" } else { "" }));
            out.push(Sibling {
                n,
                path: PathBuf::from(s),
                gz,
            });
        }
    }
    out
}

/// Whether `name` is `path` or one of its plain rotated names.
pub fn is_plain_name_of(path: &Path, name: &Path) -> bool {
    name == path || siblings(path).iter().any(|s| !s.gz && s.path == name)
}

/// Streams a compressed file to `sink`: everything after the checkpoint's
/// offset when `from` is given and the content matches it (head, the bytes
/// before the offset, every byte before it when recorded), or all of it.
/// Returns the counts after it and what the whole content looks like (for
/// a record of a file read to its end), or `None` when it does not match.
pub fn read_gz(
    path: &Path,
    from: Option<&Checkpoint>,
    sink: &mut dyn LineSink,
    format: &LogFormat,
    name: &Arc<str>,
    max_line: usize,
) -> io::Result<Option<(Counts, Whole)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut gz = Tracked {
        inner: MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)),
        whole: Whole::default(),
    };
    let read = read_tracked(&mut gz, from, sink, format, name, max_line)?;
    Ok(read.map(|counts| (counts, gz.whole)))
}

/// The fingerprint of a whole decompressed file, as it streamed by.
#[derive(Default)]
pub struct Whole {
    pub len: u64,
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
    pub prefix: PrefixHash,
}

struct Tracked<R> {
    inner: R,
    whole: Whole,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let b = &buf[..n];
        let w = &mut self.whole;
        w.len += n as u64;
        let room = (super::fingerprint::HEAD_MAX as usize).saturating_sub(w.head.len());
        w.head.extend_from_slice(&b[..room.min(n)]);
        w.tail.extend_from_slice(b);
        if w.tail.len() > MARKER {
            w.tail.drain(..w.tail.len() - MARKER);
        }
        w.prefix.update(b);
        Ok(n)
    }
}

fn read_tracked(
    gz: &mut impl Read,
    from: Option<&Checkpoint>,
    sink: &mut dyn LineSink,
    format: &LogFormat,
    name: &Arc<str>,
    max_line: usize,
) -> io::Result<Option<Counts>> {
    let mut counts = Counts::default();
    let mut chunk = vec![0u8; 1 << 16];
    if let Some(c) = from {
        // Up to the offset: checked, not counted.
        let mut head = vec![0u8; c.head_len as usize];
        if gz.read_exact(&mut head).is_err() || hash(&head) != c.head_hash {
            return Ok(None);
        }
        let mut prefix = PrefixHash::default();
        let mut tail: Vec<u8> = Vec::with_capacity(MARKER * 2);
        let keep = |bytes: &[u8], prefix: &mut PrefixHash, tail: &mut Vec<u8>| {
            prefix.update(bytes);
            tail.extend_from_slice(bytes);
            if tail.len() > MARKER {
                tail.drain(..tail.len() - MARKER);
            }
        };
        let inside = (c.offset as usize).min(head.len());
        keep(&head[..inside], &mut prefix, &mut tail);
        let mut rest_of_head = head[inside..].to_vec();
        while prefix.len() < c.offset {
            let want = (c.offset - prefix.len()).min(chunk.len() as u64) as usize;
            let n = gz.read(&mut chunk[..want])?;
            if n == 0 {
                return Ok(None);
            }
            keep(&chunk[..n], &mut prefix, &mut tail);
        }
        if hash(&tail) != c.marker_hash {
            return Ok(None);
        }
        // The recorded hash may cover an unfinished last line after the
        // offset: hash those bytes too, and keep them to be read.
        if let Some(want) = PrefixHash::from_bytes(&c.prefix_hash) {
            let mut beyond = std::mem::take(&mut rest_of_head);
            let covered = beyond
                .len()
                .min(want.len().saturating_sub(prefix.len()) as usize);
            prefix.update(&beyond[..covered]);
            while prefix.len() < want.len() {
                let want_more = (want.len() - prefix.len()).min(chunk.len() as u64) as usize;
                let n = gz.read(&mut chunk[..want_more])?;
                if n == 0 {
                    return Ok(None);
                }
                prefix.update(&chunk[..n]);
                beyond.extend_from_slice(&chunk[..n]);
            }
            if want != prefix {
                return Ok(None);
            }
            rest_of_head = beyond;
        }
        counts = Counts {
            lines: c.lines,
            parsed: c.parsed,
            skipped: c.skipped,
            last_line_ms: c.last_line_ms,
        };
        let mut splitter = Splitter::default();
        let c2 = &mut counts;
        splitter.feed(&rest_of_head, max_line, |p| c2.hand(p, sink, format, name));
        rest_of_head.clear();
        return stream_rest(gz, splitter, counts, sink, format, name, max_line).map(Some);
    }
    stream_rest(
        gz,
        Splitter::default(),
        counts,
        sink,
        format,
        name,
        max_line,
    )
    .map(Some)
}

fn stream_rest(
    mut gz: impl Read,
    mut splitter: Splitter,
    mut counts: Counts,
    sink: &mut dyn LineSink,
    format: &LogFormat,
    name: &Arc<str>,
    max_line: usize,
) -> io::Result<Counts> {
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = gz.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        let c = &mut counts;
        splitter.feed(&chunk[..n], max_line, |p| c.hand(p, sink, format, name));
    }
    let c = &mut counts;
    splitter.finish(|p| c.hand(p, sink, format, name));
    Ok(counts)
}

/// Whether a `.gz` file decompresses to its end (one still being written
/// does not).
pub fn gz_complete(path: &Path) -> bool {
    File::open(path).is_ok_and(|f| {
        io::copy(&mut MultiGzDecoder::new(BufReader::new(f)), &mut io::sink()).is_ok()
    })
}

/// The first `len` decompressed bytes of a `.gz` file (fewer if shorter).
pub fn gz_head(path: &Path, len: usize) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut out = Vec::with_capacity(len);
    MultiGzDecoder::new(BufReader::new(file))
        .take(len as u64)
        .read_to_end(&mut out)?;
    Ok(out)
}
