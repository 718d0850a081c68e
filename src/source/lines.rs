//! The one line splitter of followed files, and the [`LineSink`] it hands
//! lines to.
//!
//! A followed file arrives in pieces of any size; the splitter holds the
//! bytes after the last newline until their newline comes, drops an
//! over-long line without buffering it (keeping its first bytes for the
//! report), and strips the NUL run a writer that kept its offset across a
//! copytruncate leaves where the file was emptied. The offset it reports is
//! always the start of the first line not yet handed out, so a checkpoint
//! never splits a line.

use std::sync::Arc;

use crate::format::LogFormat;

/// Where the follower's lines go: the pipeline in `watch`, a model in tests.
pub trait LineSink {
    /// One complete line of `file` (1-based `line_no`), to be read with
    /// `format`. Returns the line's time when it parsed, `None` when it was
    /// counted as skipped.
    fn line(
        &mut self,
        format: &LogFormat,
        line: &[u8],
        file: &Arc<str>,
        line_no: u64,
    ) -> Option<i64>;

    /// A line longer than the limit: only its length and first bytes.
    fn too_long(&mut self, file: &Arc<str>, line_no: u64, len: usize, head: &[u8]);
}

/// What the splitter found in a piece of input.
pub enum Piece<'a> {
    Line(&'a [u8]),
    TooLong { len: usize, head: &'a [u8] },
}

/// How many first bytes of an over-long line are kept for the report.
const LONG_HEAD: usize = 160;

/// Splits a byte stream into lines; see the module documentation.
#[derive(Default)]
pub struct Splitter {
    partial: Vec<u8>,
    /// Bytes of an over-long line already seen and dropped.
    skip_len: usize,
    long_head: Vec<u8>,
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

impl Splitter {
    /// Bytes held after the last complete line.
    pub fn pending(&self) -> u64 {
        (self.partial.len() + self.skip_len) as u64
    }

    /// Feeds `data`, which follows what was fed before. Every complete line
    /// goes to `each`; returns how many bytes those lines took, newlines
    /// included (how far the offset moves).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        max_line: usize,
        mut each: impl FnMut(Piece<'_>),
    ) -> u64 {
        let mut consumed = 0u64;
        while let Some(nl) = memchr::memchr(b'\n', data) {
            let piece = &data[..nl];
            let line_len = self.skip_len + self.partial.len() + piece.len();
            if self.skip_len > 0 || line_len > max_line {
                if self.skip_len == 0 {
                    self.long_head = self
                        .partial
                        .iter()
                        .chain(piece)
                        .take(LONG_HEAD)
                        .copied()
                        .collect();
                }
                each(Piece::TooLong {
                    len: line_len,
                    head: &self.long_head,
                });
            } else if self.partial.is_empty() {
                each(Piece::Line(without_nul_padding(piece)));
            } else {
                self.partial.extend_from_slice(piece);
                each(Piece::Line(without_nul_padding(&self.partial)));
            }
            self.partial.clear();
            self.skip_len = 0;
            consumed += line_len as u64 + 1;
            data = &data[nl + 1..];
        }
        if self.skip_len > 0 {
            self.skip_len += data.len();
        } else if self.partial.len() + data.len() > max_line {
            // Too long to hold: remember its start for the report, drop the rest.
            self.long_head = self
                .partial
                .iter()
                .chain(data)
                .take(LONG_HEAD)
                .copied()
                .collect();
            self.skip_len = self.partial.len() + data.len();
            self.partial.clear();
        } else {
            self.partial.extend_from_slice(data);
        }
        consumed
    }

    /// Hands out the last line of a file that never got its newline (the
    /// file is let go); returns its length.
    pub fn finish(&mut self, each: impl FnOnce(Piece<'_>)) -> u64 {
        let n = self.pending();
        if self.skip_len > 0 {
            each(Piece::TooLong {
                len: self.skip_len,
                head: &self.long_head,
            });
        } else if !self.partial.is_empty() {
            each(Piece::Line(without_nul_padding(&self.partial)));
        }
        self.partial.clear();
        self.skip_len = 0;
        n
    }

    /// Forgets what was held (the file was rewritten under it).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.skip_len = 0;
    }
}

/// Line counts of one file, kept as the splitter hands lines out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    pub parsed: u64,
    pub skipped: u64,
    pub last_line_ms: Option<i64>,
}

impl Counts {
    /// Hands one piece to `sink` and counts it.
    pub fn hand(
        &mut self,
        piece: Piece<'_>,
        sink: &mut dyn LineSink,
        format: &LogFormat,
        name: &Arc<str>,
    ) {
        self.lines += 1;
        match piece {
            Piece::Line(l) => match sink.line(format, l, name, self.lines) {
                Some(t) => {
                    self.parsed += 1;
                    self.last_line_ms = Some(t);
                }
                None => self.skipped += 1,
            },
            Piece::TooLong { len, head } => {
                sink.too_long(name, self.lines, len, head);
                self.skipped += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cut_anywhere_come_out_whole_and_long_ones_are_dropped() {
        let text = b"one\ntwo two\n\0\0\0three\nfour-is-long\nfive";
        for cut in 1..text.len() {
            let mut s = Splitter::default();
            let mut got = Vec::new();
            let mut consumed = 0;
            for chunk in text.chunks(cut) {
                consumed += s.feed(chunk, 8, |p| match p {
                    Piece::Line(l) => got.push(String::from_utf8_lossy(l).into_owned()),
                    Piece::TooLong { len, head } => got.push(format!(
                        "long {len} {}",
                        String::from_utf8_lossy(&head[..4])
                    )),
                });
            }
            assert_eq!(
                got,
                ["one", "two two", "three", "long 12 four"],
                "cut {cut}"
            );
            assert_eq!(consumed, 34, "cut {cut}");
            assert_eq!(s.pending(), 4);
            let mut last = String::new();
            s.finish(|p| {
                if let Piece::Line(l) = p {
                    last = String::from_utf8_lossy(l).into_owned();
                }
            });
            assert_eq!(last, "five");
        }
    }
}
