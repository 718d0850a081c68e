//! Where lines come from: plain files, gzip files (concatenated members too),
//! standard input. Lines are split with memchr in a reused buffer; a line
//! longer than the limit is counted and skipped, never buffered whole.

pub mod checkpoint;
pub mod fingerprint;
pub mod follower;
pub mod generation;
pub mod lines;
pub mod paths;
pub mod rotation;
pub mod scan;
pub mod stream;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

/// An input named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(arg))
        }
    }

    /// The name used in messages.
    pub fn display(&self) -> String {
        match self {
            Input::Stdin => "<stdin>".into(),
            Input::File(p) => p.display().to_string(),
        }
    }
}

/// Opens a file, decompressing it when it starts with the gzip magic bytes
/// (whatever its name). Returns the reader and whether it is compressed.
pub fn open_file(path: &Path) -> io::Result<(Box<dyn Read + Send>, bool)> {
    let mut file = File::open(path)?;
    let mut magic = [0u8; 2];
    let n = read_full(&mut file, &mut magic)?;
    let head = io::Cursor::new(magic[..n].to_vec());
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok((
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(
                1 << 16,
                head.chain(file),
            ))),
            true,
        ))
    } else {
        Ok((Box::new(head.chain(file)), false))
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A line read by [`LineReader`].
pub enum Line<'a> {
    Full(&'a [u8]),
    /// A line longer than the limit: its length and first bytes.
    TooLong {
        len: usize,
        head: &'a [u8],
    },
}

/// Splits a reader into lines, holding at most `max` bytes of one line.
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    max: usize,
    long_head: Vec<u8>,
}

impl<R: Read> LineReader<R> {
    pub fn new(reader: R, max: usize) -> Self {
        let cap = (max + 1).clamp(1 << 12, 1 << 18);
        LineReader {
            reader,
            buf: vec![0; cap],
            start: 0,
            end: 0,
            eof: false,
            max,
            long_head: Vec::new(),
        }
    }

    /// Like `new`, with bytes already read from the reader placed first.
    pub fn with_prefix(reader: R, max: usize, prefix: &[u8]) -> Self {
        let mut lr = Self::new(reader, max);
        if lr.buf.len() < prefix.len() {
            lr.buf.resize(prefix.len(), 0);
        }
        lr.buf[..prefix.len()].copy_from_slice(prefix);
        lr.end = prefix.len();
        lr
    }

    /// Reads more into the buffer; returns false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).min(self.max + 1).max(self.buf.len());
            self.buf.resize(grown, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next line, without its `\n`; the last line may lack one.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        let mut scanned = 0;
        loop {
            if let Some(p) = memchr::memchr(b'\n', &self.buf[self.start + scanned..self.end]) {
                let s = self.start;
                let e = s + scanned + p;
                self.start = e + 1;
                return Ok(Some(Line::Full(&self.buf[s..e])));
            }
            scanned = self.end - self.start;
            if scanned > self.max {
                return self.skip_long().map(Some);
            }
            if self.eof || !self.fill()? {
                if self.start == self.end {
                    return Ok(None);
                }
                let s = self.start;
                self.start = self.end;
                return Ok(Some(Line::Full(&self.buf[s..self.end])));
            }
        }
    }

    /// Discards the rest of an over-long line; keeps its first bytes for the report.
    fn skip_long(&mut self) -> io::Result<Line<'_>> {
        const HEAD: usize = 160;
        self.long_head.clear();
        self.long_head
            .extend_from_slice(&self.buf[self.start..self.start + HEAD.min(self.end - self.start)]);
        let mut len = 0;
        loop {
            if let Some(p) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                len += p;
                self.start += p + 1;
                break;
            }
            len += self.end - self.start;
            self.start = self.end;
            if self.eof || !self.fill()? {
                break;
            }
        }
        Ok(Line::TooLong {
            len,
            head: &self.long_head,
        })
    }
}
