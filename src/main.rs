//! The `keywatch` command line: every flag is defined here with its help text;
//! the work is done by [`keywatch::commands`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use keywatch::commands::{self, Common, scan::OutputKind};
use keywatch::source::stream::StartAt;

#[derive(Parser)]
#[command(name = "keywatch", version, about = "Watches web-server access logs for API-key trouble", long_about = None, args_override_self = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Configuration file [default: ~/.config/keywatch/config.toml, /etc/keywatch/config.toml as root]
    #[arg(long, global = true, env = "KEYWATCH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// State directory (key-id secret) [default: $XDG_STATE_HOME/keywatch, /var/lib/keywatch as root]
    #[arg(long, global = true, env = "KEYWATCH_STATE", value_name = "DIR")]
    state: Option<PathBuf>,
    /// Time zone in which days are cut: UTC, local, an IANA name or an offset such as +03:30 [default: local]
    #[arg(long, global = true, value_name = "TZ", allow_hyphen_values = true)]
    timezone: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse finished logs: findings and usage per key
    Scan(ScanCmd),
    /// Follow logs as they are written and rotated; count usage into the store
    Watch(WatchCmd),
    /// Show followed files, their offsets, lag and gaps, and the store
    Status(StatusCmd),
    /// Print the stored usage of one day
    Summary(SummaryCmd),
    /// Validate the configuration: every problem named by file, line and setting
    Check,
    /// Mute one rule for one key or client for a while
    #[command(subcommand)]
    Silence(SilenceCmd),
    /// Recent alerts, their state, and each channel's delivery of them
    Alerts(AlertsCmd),
    /// Send a marked test notice through every alert channel (or one) and print what each answered
    AlertTest(AlertTestCmd),
}

#[derive(Args)]
struct AlertsCmd {
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Output,
    /// Show at most this many alerts and deliveries
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(Args)]
struct AlertTestCmd {
    /// Only this channel
    #[arg(long, value_name = "NAME")]
    channel: Option<String>,
}

#[derive(Args)]
struct WatchCmd {
    /// Files or globs to follow (globs are re-evaluated, so files that appear later are picked up)
    #[arg(value_name = "FILE|GLOB", required = true)]
    patterns: Vec<String>,
    /// A preset or an nginx log_format directive [default: detected from the first file]
    #[arg(long, short = 'f', value_name = "FORMAT")]
    log_format: Option<String>,
    /// Log variable holding the key or key id (repeatable)
    #[arg(long, value_name = "VAR")]
    key_field: Vec<String>,
    /// On the first start, read existing files from their beginning
    #[arg(long, conflicts_with = "from_end")]
    from_beginning: bool,
    /// On the first start, read only what is written from now on (the default)
    #[arg(long)]
    from_end: bool,
    /// How often files are checked when no file event arrives, e.g. 250ms
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration)]
    poll_interval: std::time::Duration,
    /// How often offsets and counts are committed to the store
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    commit_interval: std::time::Duration,
    /// Lines longer than this many bytes are counted and skipped [default: 262144]
    #[arg(long, value_name = "BYTES")]
    max_line_length: Option<usize>,
    /// Never use file events (inotify); check files every --poll-interval (network and FUSE filesystems)
    #[arg(long)]
    poll_only: bool,
    /// Close a file that has had nothing new for this long; it is reopened when it changes
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    idle_close: std::time::Duration,
    /// A file named on the command line that is missing this long is a fault (reported, /healthz 503)
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    missing_grace: std::time::Duration,
    /// Serve Prometheus metrics on /metrics (and /healthz) at this address, e.g. 127.0.0.1:9187
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

#[derive(Args)]
struct StatusCmd {
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Output,
}

#[derive(Args)]
struct SummaryCmd {
    /// The day: YYYY-MM-DD, today or yesterday (in --timezone)
    #[arg(long, value_name = "DAY", default_value = "yesterday")]
    day: String,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: ReportOutput,
    /// Also send it to the channels that take summaries (summary = true)
    #[arg(long)]
    send: bool,
}

#[derive(Subcommand)]
enum SilenceCmd {
    /// Add a silence: `--rule R --key KEYID|--client IP --for 2h --comment TEXT`
    Add {
        /// Rule id to silence
        #[arg(long)]
        rule: String,
        /// Key id (16 hex characters) the silence applies to
        #[arg(long, conflicts_with = "client", required_unless_present = "client")]
        key: Option<String>,
        /// Client IP address the silence applies to
        #[arg(long)]
        client: Option<String>,
        /// How long: 30m, 2h, 7d
        #[arg(long = "for", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Why (shown by `silence list`)
        #[arg(long)]
        comment: String,
    },
    /// List silences in force
    List {
        /// Include expired silences
        #[arg(long)]
        all: bool,
        /// Output format
        #[arg(long, short = 'o', value_enum, default_value = "text")]
        output: Output,
    },
    /// Remove a silence by id
    Remove { id: i64 },
}

/// `250ms`, `1s`, `2m`, `2h`, `7d`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    keywatch::config::parse_duration(s)
}

fn report_kind(o: ReportOutput) -> OutputKind {
    match o {
        ReportOutput::Text => OutputKind::Text,
        ReportOutput::Json => OutputKind::Json,
        ReportOutput::Markdown => OutputKind::Markdown,
        ReportOutput::Html => OutputKind::Html,
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportOutput {
    /// Findings, a usage table per key and totals, for a person
    Text,
    /// Newline-delimited JSON: finding, summary (one per day) and totals objects
    Json,
    /// The daily summary as Markdown
    Markdown,
    /// The daily summary as one self-contained HTML page (inline SVG charts, no scripts)
    Html,
}

fn output_kind(o: Output) -> OutputKind {
    match o {
        Output::Text => OutputKind::Text,
        Output::Json => OutputKind::Json,
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// Findings, a usage table per key and totals, for a person
    Text,
    /// Newline-delimited JSON: finding, summary (one per day) and totals objects
    Json,
}

#[derive(Args)]
struct ScanCmd {
    /// Log files to read in order: plain, gzip (also concatenated), or - for standard input
    #[arg(value_name = "FILE", required = true)]
    files: Vec<String>,
    /// A preset (combined, main, keywatch, common, apache-combined, json, caddy) or an nginx log_format directive [default: detected]
    #[arg(long, short = 'f', value_name = "FORMAT")]
    log_format: Option<String>,
    /// Log variable holding the key or key id, such as $http_x_api_key (repeatable)
    #[arg(long, value_name = "VAR")]
    key_field: Vec<String>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: ReportOutput,
    /// Threads for large regular files, at most one a core [default: all cores]
    #[arg(long, short = 'j', value_name = "N")]
    threads: Option<usize>,
    /// Lines longer than this many bytes are counted and skipped [default: 262144]
    #[arg(long, value_name = "BYTES")]
    max_line_length: Option<usize>,
    /// Never show a progress bar
    #[arg(long)]
    no_progress: bool,
    /// Send the findings through the configured alert channels (queued in the state directory)
    #[arg(long)]
    alert: bool,
    /// With --alert: how long to keep delivering before leaving the rest queued
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, requires = "alert")]
    alert_wait: std::time::Duration,
}

fn main() -> ExitCode {
    // Whatever keywatch creates (the state directory, the store, the key
    // secret) is its owner's alone, under any umask.
    keywatch::files::private_umask();
    keywatch::memory::tune();
    let cli = Cli::parse();
    let common = Common {
        config: cli.global.config,
        state: cli.global.state,
        timezone: cli.global.timezone,
    };
    let result = match cli.command {
        Command::Scan(s) => commands::scan::run(
            &commands::scan::ScanArgs {
                common,
                files: s.files,
                log_format: s.log_format,
                key_fields: s.key_field,
                output: report_kind(s.output),
                threads: s.threads,
                max_line_length: s.max_line_length,
                progress: !s.no_progress,
                alert: s.alert.then_some(s.alert_wait),
            },
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        ),
        Command::Watch(w) => commands::watch::run(&commands::watch::WatchArgs {
            common,
            patterns: w.patterns,
            log_format: w.log_format,
            key_fields: w.key_field,
            start_at: if w.from_beginning {
                StartAt::Beginning
            } else {
                StartAt::End
            },
            poll_interval: w.poll_interval,
            commit_interval: w.commit_interval,
            max_line_length: w.max_line_length,
            metrics_listen: w.metrics_listen,
            poll_only: w.poll_only,
            idle_close: w.idle_close,
            missing_grace: w.missing_grace,
        }),
        Command::Status(s) => commands::status::status(
            &common,
            output_kind(s.output),
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        ),
        Command::Silence(c) => commands::silence::run(
            &common,
            match c {
                SilenceCmd::Add {
                    rule,
                    key,
                    client,
                    duration,
                    comment,
                } => commands::silence::Action::Add {
                    rule,
                    key,
                    client,
                    duration,
                    comment,
                },
                SilenceCmd::List { all, output } => commands::silence::Action::List {
                    all,
                    json: matches!(output_kind(output), OutputKind::Json),
                },
                SilenceCmd::Remove { id } => commands::silence::Action::Remove { id },
            },
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        ),
        Command::Alerts(a) => commands::alerts::list(
            &common,
            matches!(output_kind(a.output), OutputKind::Json),
            a.limit,
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        ),
        Command::AlertTest(t) => commands::alerts::test(
            &common,
            t.channel.as_deref(),
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        ),
        Command::Check => commands::check::run(
            &common,
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        ),
        Command::Summary(s) => commands::summary::summary(
            &common,
            &s.day,
            report_kind(s.output),
            s.send,
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("keywatch: {}", f.message());
            ExitCode::from(f.exit_code() as u8)
        }
    }
}
