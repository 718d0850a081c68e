//! `keywatch scan`: analyse finished logs (files, .gz, standard input).

use std::io::{self, IsTerminal, Read, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Common, Failure, Setup};
use crate::format::{self, LogFormat};
use crate::output::{self, Report};
use crate::pipeline::Engine;
use crate::source::scan::{ScanOptions, scan};
use crate::source::{Input, open_file};

/// How many bytes of the first input are read to detect its format.
const SAMPLE_BYTES: usize = 1 << 20;
/// Inputs at least this large get a progress bar on a terminal.
const PROGRESS_MIN_BYTES: u64 = 64 << 20;
/// Default for the longest line read whole.
pub const DEFAULT_MAX_LINE: usize = 256 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    Text,
    Json,
    /// The daily summary as Markdown.
    Markdown,
    /// The daily summary as one self-contained HTML page.
    Html,
}

#[derive(Clone, Debug)]
pub struct ScanArgs {
    pub common: Common,
    pub files: Vec<String>,
    pub log_format: Option<String>,
    pub key_fields: Vec<String>,
    pub output: OutputKind,
    pub threads: Option<usize>,
    pub max_line_length: Option<usize>,
    pub progress: bool,
    /// `--alert`: notify the configured channels, delivering for at most this long.
    pub alert: Option<std::time::Duration>,
}

/// Reads the start of the first input for format detection. For standard
/// input the bytes are kept, to be read again by the scan.
fn sample(input: &Input) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::with_capacity(SAMPLE_BYTES);
    let name = input.display();
    let res = match input {
        Input::Stdin => io::stdin()
            .lock()
            .take(SAMPLE_BYTES as u64)
            .read_to_end(&mut buf),
        Input::File(p) => {
            open_file(p).and_then(|(r, _)| r.take(SAMPLE_BYTES as u64).read_to_end(&mut buf))
        }
    };
    res.map_err(|e| Failure::Io(format!("{name}: {e}")))?;
    Ok(buf)
}

pub fn run(args: &ScanArgs, stdout: &mut dyn Write) -> Result<(), Failure> {
    if args.files.is_empty() {
        return Err(Failure::Usage(
            "scan: name at least one FILE (or - for standard input)".into(),
        ));
    }
    let setup = Setup::load(&args.common)?;
    // Checked before the scan, so a bad channel fails fast.
    let channels = match args.alert {
        Some(_) => {
            let channels = setup.channels()?;
            if channels.is_empty() {
                return Err(Failure::Usage(
                    "scan --alert: no alert channels configured; add a [channels.NAME] table to the configuration".into(),
                ));
            }
            channels
        }
        None => Vec::new(),
    };
    let sources = setup.key_sources(&args.key_fields);
    let inputs: Vec<Input> = args.files.iter().map(|f| Input::from_arg(f)).collect();
    if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
        return Err(Failure::Usage(
            "scan: standard input (-) can be named only once".into(),
        ));
    }
    let mut stdin_head = Vec::new();
    let format = match setup.log_format(args.log_format.as_deref(), &sources)? {
        Some(f) => f,
        None => {
            let head = sample(&inputs[0])?;
            let (f, parsed, lines) = format::detect(&head, &sources.fields);
            if lines > 0 && parsed == 0 {
                eprintln!(
                    "keywatch: no preset matches the first {lines} lines of {}; reading them as {:?} (set the format with --log-format)",
                    inputs[0].display(),
                    f.name()
                );
            } else if lines > 0 {
                eprintln!(
                    "keywatch: log format {:?} detected ({parsed} of {lines} sample lines parse); set it with --log-format",
                    f.name()
                );
            }
            if inputs[0] == Input::Stdin {
                stdin_head = head;
            }
            f
        }
    };
    warn_missing_key_fields(&format, &args.key_fields);
    let extractor = setup.extractor(sources)?;
    let names = extractor.names.clone();
    let max_line = args
        .max_line_length
        .or(setup.config.format.max_line_length)
        .unwrap_or(DEFAULT_MAX_LINE);
    let engine = Engine {
        format,
        extractor,
        zone: setup.zone.clone(),
        max_line,
        rules: setup.config.rules.clone(),
        // Checked with the configuration (see `config::ranges`).
        proxies: crate::clients::Proxies::parse(&setup.config.clients.trusted_proxies)
            .unwrap_or_default(),
    };
    // At most one thread a core: reading is CPU-bound, so more threads
    // gain nothing and each holds a piece of the file's state (memory).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores).clamp(1, cores);
    let progress = progress_bar(args.progress, &inputs);
    let mut outcome = scan(
        &engine,
        &inputs,
        &stdin_head,
        &ScanOptions {
            threads,
            progress: progress.clone(),
        },
    )
    .map_err(|e| Failure::Io(e.to_string()))?;
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    outcome.analyzer.finish();
    let a = &outcome.analyzer;
    let findings = a.findings(&names);
    let report = Report {
        findings: &findings,
        usage: &a.usage,
        totals: a.totals,
        inputs: &outcome.inputs,
        skipped: &a.skipped,
        zone: &engine.zone,
        format: engine.format.name(),
        names: &names,
        history: None,
        rotation_days: setup.config.summary.rotation_days.unwrap_or(90),
    };
    let res = match args.output {
        OutputKind::Text => output::text::render(&report, stdout),
        OutputKind::Json => output::json::render(&report, stdout),
        OutputKind::Markdown => output::markdown::render(&report.dailies(), stdout),
        OutputKind::Html => output::html::render(&report.dailies(), stdout),
    };
    match res.and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(Failure::Io(format!("standard output: {e}"))),
        Ok(()) => {}
    }
    let alerted = match args.alert {
        Some(wait) => super::alerts::scan_alert(&setup, channels, &findings, &names, wait),
        None => Ok(()),
    };
    // The scan's state goes with the process: freeing every key's tables
    // one by one took 10 ms of the run's end on the 1 M-line benchmark log.
    std::mem::forget(findings);
    std::mem::forget(outcome);
    alerted
}

/// A key variable named with `--key-field` that the format does not log is
/// almost always a mistake in the format; say so instead of finding nothing.
fn warn_missing_key_fields(format: &LogFormat, key_fields: &[String]) {
    if let LogFormat::Nginx(f) = format {
        for k in key_fields {
            let var = k.trim_start_matches('$');
            if !f.source.contains(&format!("${var}")) && !f.source.contains(&format!("${{{var}}}"))
            {
                eprintln!(
                    "keywatch: warning: --key-field ${var} is not in the log format {:?}; pass the log_format that logs it with --log-format",
                    f.name
                );
            }
        }
    }
}

fn progress_bar(wanted: bool, inputs: &[Input]) -> Option<ProgressBar> {
    if !wanted || !io::stderr().is_terminal() {
        return None;
    }
    let total: u64 = inputs
        .iter()
        .filter_map(|i| match i {
            Input::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Input::Stdin => None,
        })
        .sum();
    if total < PROGRESS_MIN_BYTES {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    Some(bar)
}
