//! Reading finished inputs for `keywatch scan`, in order. A large regular
//! file is cut at line boundaries into pieces read on several threads; each
//! piece's lines reach usage and the ordered rules in file order (see
//! `scan_parallel`), so the result is that of one thread.

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
    // One analyzer goes through every input in order, so rules that follow
    // requests in time see them all, across files too.
    let mut total = Analyzer::new(engine);
    let mut per_input = Vec::new();
    for input in inputs {
        let name: Arc<str> = input.display().into();
        let io_err = |source| ScanError::Io {
            file: name.to_string(),
            source,
        };
        let before = total.totals;
        total = match input {
            Input::Stdin => {
                let stdin = Progress {
                    inner: io::stdin().lock(),
                    bar: None,
                };
                read_into(
                    total,
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
                    scan_parallel(total, engine, path, size, &name, opts).map_err(io_err)?
                } else {
                    let reader = Progress {
                        inner: reader,
                        bar: opts.progress.clone(),
                    };
                    read_into(total, LineReader::new(reader, engine.max_line), &name, 0)
                        .map_err(io_err)?
                }
            }
        };
        let t = total.totals;
        let file = Totals {
            lines: t.lines - before.lines,
            parsed: t.parsed - before.parsed,
            skipped: t.skipped - before.skipped,
        };
        per_input.push((name.to_string(), file));
    }
    Ok(Outcome {
        analyzer: total,
        inputs: per_input,
    })
}

/// Feeds every line of `lines` to `a`.
fn read_into<'e, R: Read>(
    mut a: Analyzer<'e>,
    mut lines: LineReader<R>,
    name: &Arc<str>,
    first_line: u64,
) -> io::Result<Analyzer<'e>> {
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

/// Where each piece starts: at each of `cuts`, moved to just after a newline.
fn chunk_starts(file: &File, size: u64, cuts: &[u64]) -> io::Result<Vec<u64>> {
    let mut starts = vec![0];
    let mut window = vec![0u8; 64 << 10];
    for &cut in cuts {
        let mut pos = cut.max(*starts.last().unwrap_or(&0));
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

/// How much of a file one piece of a parallel scan covers.
const PIECE_BYTES: u64 = 8 << 20;
/// The first and last pieces are smaller, down to this: the merging thread
/// waits for the first piece, and the last pieces' usage, rules and the
/// report come after every worker is done.
const EDGE_PIECE_BYTES: u64 = 1 << 20;

/// Where pieces are cut in a file of `size` bytes, to keep `threads`
/// workers busy: pieces of [`PIECE_BYTES`], at least one a thread, halving
/// towards both ends of the file down to [`EDGE_PIECE_BYTES`].
fn cuts(size: u64, threads: u64) -> Vec<u64> {
    let piece = PIECE_BYTES.min(size.div_ceil(threads.max(1)));
    let mut edge = Vec::new();
    let mut p = EDGE_PIECE_BYTES.min(piece);
    while p < piece {
        edge.push(p);
        p *= 2;
    }
    // `n` near-equal parts of `len` bytes.
    let even = |len: u64, n: u64| (0..n).map(move |k| len * (k + 1) / n - len * k / n);
    let edges: u64 = edge.iter().sum();
    let sizes: Vec<u64> = if size > 2 * edges {
        let middle = size - 2 * edges;
        let middle = even(middle, middle.div_ceil(piece));
        edge.iter()
            .copied()
            .chain(middle)
            .chain(edge.iter().rev().copied())
            .collect()
    } else {
        even(size, threads.max(1).max(size.div_ceil(piece))).collect()
    };
    let mut at = 0;
    let mut cuts = Vec::with_capacity(sizes.len());
    for s in &sizes[..sizes.len() - 1] {
        at += s;
        if at >= size {
            break;
        }
        cuts.push(at);
    }
    cuts
}

/// Reads a large file on several threads: it is cut into pieces at line
/// boundaries; workers take pieces in turn, parse them, find their keys and
/// run the plain rules, recording what usage and the ordered rules take
/// from each line ([`crate::pipeline::Rows`]). This thread merges the
/// pieces in file order and gives their rows to usage; one more thread
/// gives them, in the same order, to the ordered rules. So usage and every
/// rule see the requests in log order, and the result is the same on any
/// number of threads. Workers stay at most a few pieces ahead, so memory
/// does not grow with the file.
fn scan_parallel<'e>(
    mut merged: Analyzer<'e>,
    engine: &'e Engine,
    path: &std::path::Path,
    size: u64,
    name: &Arc<str>,
    opts: &ScanOptions,
) -> io::Result<Analyzer<'e>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let file = File::open(path)?;
    let starts = chunk_starts(&file, size, &cuts(size, opts.threads as u64))?;
    let next = AtomicUsize::new(0);
    let merged_upto = AtomicUsize::new(0);
    // How many pieces workers may read ahead of the merge: one each kept
    // them waiting on the merge and the rules (0.59 of one thread's time on
    // two cores, against 0.48 with two each; four gained nothing more).
    let ahead = opts.threads * 2;
    let ordered = merged.take_ordered();
    let has_ordered = ordered.is_some();
    let spare = std::sync::Mutex::new(Vec::<crate::pipeline::Rows>::new());
    std::thread::scope(|scope| {
        // The ordered rules, a piece behind the merge.
        let (rows_tx, rows_rx) = std::sync::mpsc::sync_channel::<crate::pipeline::Rows>(1);
        // Rows taken by the rules go back to the workers, so a piece's rows
        // reuse memory rather than map it afresh.
        let spare = &spare;
        let ordered = scope.spawn(move || {
            let mut ordered = ordered;
            for rows in rows_rx {
                if let Some(o) = &mut ordered {
                    rows.replay(o);
                }
                if let Ok(mut spare) = spare.lock() {
                    spare.push(rows);
                }
            }
            ordered
        });
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<(usize, io::Result<Analyzer<'e>>)>(opts.threads);
        for _ in 0..opts.threads {
            let tx = tx.clone();
            let (starts, next, merged_upto, spare) = (&starts, &next, &merged_upto, spare);
            let bar = opts.progress.clone();
            scope.spawn(move || {
                let mut scratch = crate::pipeline::Scratch::default();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= starts.len() {
                        return;
                    }
                    // Wait while too far ahead of the merge (bounded memory).
                    while i >= merged_upto.load(Ordering::SeqCst) + ahead {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    let piece = (|| {
                        let (start, end) = (starts[i], starts.get(i + 1).copied());
                        let mut f = File::open(path)?;
                        f.seek(SeekFrom::Start(start))?;
                        let reader: Box<dyn Read> = match end {
                            Some(e) => Box::new(f.take(e - start)),
                            None => Box::new(f),
                        };
                        let lines = LineReader::new(
                            Progress {
                                inner: reader,
                                bar: bar.clone(),
                            },
                            engine.max_line,
                        );
                        if let Some(rows) = spare.lock().ok().and_then(|mut s| s.pop()) {
                            scratch.rows = rows;
                        }
                        read_into(
                            Analyzer::recording(engine, std::mem::take(&mut scratch)),
                            lines,
                            name,
                            0,
                        )
                    })();
                    let piece = piece.map(|mut a| {
                        scratch = a.take_scratch();
                        a
                    });
                    if tx.send((i, piece)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let file_start = merged.totals.lines;
        let mut pending = std::collections::BTreeMap::new();
        let mut want = 0;
        for (i, piece) in rx {
            pending.insert(i, piece);
            while let Some(piece) = pending.remove(&want) {
                let mut piece = match piece {
                    Ok(p) => p,
                    Err(e) => {
                        // Workers waiting for the merge to move on go on, find
                        // the channel closed and stop.
                        merged_upto.store(usize::MAX / 2, Ordering::SeqCst);
                        return Err(e);
                    }
                };
                let before = merged.totals.lines - file_start;
                for s in &mut piece.skipped {
                    s.line += before;
                }
                let rows = merged.merge_piece(piece);
                if has_ordered {
                    // Only fails if the rules' thread panicked: join says so.
                    let _ = rows_tx.send(rows);
                } else if let Ok(mut spare) = spare.lock() {
                    spare.push(rows);
                }
                want += 1;
                merged_upto.store(want, Ordering::SeqCst);
            }
        }
        drop(rows_tx);
        let ordered = ordered
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        merged.put_ordered(ordered);
        Ok(merged)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_file_small_at_its_ends() {
        for size in [1, 100, 1 << 20, 9 << 20, 15 << 20, 200 << 20, (1 << 30) + 7] {
            for threads in 1..=4u64 {
                let cuts = cuts(size, threads);
                let mut starts = vec![0];
                starts.extend(&cuts);
                starts.push(size);
                let pieces: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
                assert!(
                    pieces.iter().all(|&p| p > 0),
                    "{size} {threads}: {pieces:?}"
                );
                assert!(
                    pieces.iter().all(|&p| p <= PIECE_BYTES),
                    "{size} {threads}: {pieces:?}"
                );
                if size >= threads * EDGE_PIECE_BYTES {
                    assert!(
                        pieces.len() as u64 >= threads,
                        "{size} {threads}: {pieces:?}"
                    );
                }
                if size >= 64 << 20 {
                    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
                    assert_eq!((first, last), (EDGE_PIECE_BYTES, EDGE_PIECE_BYTES));
                }
            }
        }
    }
}
