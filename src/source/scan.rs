//! Reading finished inputs for `keywatch scan`, in order. A large regular
//! file is cut at line boundaries into one chunk per thread; each chunk gets
//! its own [`Analyzer`] and the analyzers merge in file order.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use indicatif::ProgressBar;
use thiserror::Error;

use super::{Input, Line, LineReader, open_file};
use crate::pipeline::{Analyzer, Engine, Totals};

/// Files smaller than this are read by one thread: starting threads costs more.
const PARALLEL_MIN_BYTES: u64 = 8 << 20;

#[derive(Debug, Error)]
pub enum ScanError {
    #[error("{file}: {source}")]
    Io { file: String, source: io::Error },
}

pub struct ScanOptions {
    pub threads: usize,
    pub progress: Option<ProgressBar>,
}

/// What a scan found, with the line counts of each input.
pub struct Outcome<'e> {
    pub analyzer: Analyzer<'e>,
    pub inputs: Vec<(String, Totals)>,
}

/// Counts bytes read into a progress bar.
struct Progress<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
        Ok(n)
    }
}

/// Scans `inputs` in order. `stdin_head` holds bytes already read from
/// standard input (to detect the format); they are read first.
pub fn scan<'e>(
    engine: &'e Engine,
    inputs: &[Input],
    stdin_head: &[u8],
    opts: &ScanOptions,
) -> Result<Outcome<'e>, ScanError> {
    let mut total = Analyzer::new(engine);
    let mut per_input = Vec::new();
    for input in inputs {
        let name: Arc<str> = input.display().into();
        let io_err = |source| ScanError::Io {
            file: name.to_string(),
            source,
        };
        let analyzer = match input {
            Input::Stdin => {
                let stdin = Progress {
                    inner: io::stdin().lock(),
                    bar: None,
                };
                read_all(
                    engine,
                    LineReader::with_prefix(stdin, engine.max_line, stdin_head),
                    &name,
                    0,
                )
                .map_err(io_err)?
            }
            Input::File(path) => {
                let (reader, compressed) = open_file(path).map_err(io_err)?;
                let size = std::fs::metadata(path).map_err(io_err)?.len();
                if !compressed && opts.threads > 1 && size >= PARALLEL_MIN_BYTES {
                    drop(reader);
                    scan_parallel(engine, path, size, &name, opts).map_err(io_err)?
                } else {
                    let reader = Progress {
                        inner: reader,
                        bar: opts.progress.clone(),
                    };
                    read_all(engine, LineReader::new(reader, engine.max_line), &name, 0)
                        .map_err(io_err)?
                }
            }
        };
        per_input.push((name.to_string(), analyzer.totals));
        total.merge(analyzer);
    }
    Ok(Outcome {
        analyzer: total,
        inputs: per_input,
    })
}

/// Feeds every line of `lines` to a fresh analyzer; line numbers start after `first_line`.
fn read_all<'e, R: Read>(
    engine: &'e Engine,
    mut lines: LineReader<R>,
    name: &Arc<str>,
    first_line: u64,
) -> io::Result<Analyzer<'e>> {
    let mut a = Analyzer::new(engine);
    let mut n = first_line;
    while let Some(line) = lines.next_line()? {
        n += 1;
        match line {
            Line::Full(l) => a.line(l, name, n),
            Line::TooLong { len, head } => a.too_long(name, n, len, head),
        }
    }
    Ok(a)
}

/// Where each chunk starts: `threads` roughly equal parts, each moved to just after a newline.
fn chunk_starts(file: &File, size: u64, parts: u64) -> io::Result<Vec<u64>> {
    let mut starts = vec![0];
    let mut window = vec![0u8; 64 << 10];
    for k in 1..parts {
        let mut pos = (size * k / parts).max(*starts.last().unwrap_or(&0));
        loop {
            let n = file.read_at(&mut window, pos)?;
            if n == 0 {
                pos = size;
                break;
            }
            if let Some(p) = memchr::memchr(b'\n', &window[..n]) {
                pos += p as u64 + 1;
                break;
            }
            pos += n as u64;
        }
        if pos < size && pos > *starts.last().unwrap_or(&0) {
            starts.push(pos);
        }
    }
    Ok(starts)
}

fn scan_parallel<'e>(
    engine: &'e Engine,
    path: &std::path::Path,
    size: u64,
    name: &Arc<str>,
    opts: &ScanOptions,
) -> io::Result<Analyzer<'e>> {
    let file = File::open(path)?;
    let starts = chunk_starts(&file, size, opts.threads as u64)?;
    let results: Vec<io::Result<Analyzer<'e>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = starts.get(i + 1).copied();
                let bar = opts.progress.clone();
                scope.spawn(move || {
                    let mut f = File::open(path)?;
                    f.seek(SeekFrom::Start(start))?;
                    let reader: Box<dyn Read> = match end {
                        Some(e) => Box::new(f.take(e - start)),
                        None => Box::new(f),
                    };
                    read_all(
                        engine,
                        LineReader::new(Progress { inner: reader, bar }, engine.max_line),
                        name,
                        0,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a scan thread panicked")))
            })
            .collect()
    });
    let mut merged: Option<Analyzer<'e>> = None;
    for r in results {
        let mut chunk = r?;
        let before = merged.as_ref().map_or(0, |m| m.totals.lines);
        for s in &mut chunk.skipped {
            s.line += before;
        }
        match &mut merged {
            Some(m) => m.merge(chunk),
            None => merged = Some(chunk),
        }
    }
    Ok(merged.unwrap_or_else(|| Analyzer::new(engine)))
}
