//! The `keywatch` command line: every flag is defined here with its help text;
//! the work is done by [`keywatch::commands`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use keywatch::commands::{self, Common, scan::OutputKind};

#[derive(Parser)]
#[command(name = "keywatch", version, about = "Watches web-server access logs for API-key trouble", long_about = None)]
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
    output: Output,
    /// Threads for large regular files [default: all cores]
    #[arg(long, short = 'j', value_name = "N")]
    threads: Option<usize>,
    /// Lines longer than this many bytes are counted and skipped [default: 262144]
    #[arg(long, value_name = "BYTES")]
    max_line_length: Option<usize>,
    /// Never show a progress bar
    #[arg(long)]
    no_progress: bool,
}

fn main() -> ExitCode {
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
                output: match s.output {
                    Output::Text => OutputKind::Text,
                    Output::Json => OutputKind::Json,
                },
                threads: s.threads,
                max_line_length: s.max_line_length,
                progress: !s.no_progress,
            },
            &mut std::io::stdout().lock(),
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
