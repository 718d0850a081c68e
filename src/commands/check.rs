//! `keywatch check`: validates the configuration without touching any state.

use std::io::Write;

use super::{Common, Failure, Setup};
use crate::config;
use crate::keys::KeySecret;

/// Loads the configuration as `scan` and `watch` would and reports the first
/// problem (naming the file, line and setting), or what it found. Nothing is
/// created: the key-id secret is only read when a file for it is configured.
pub fn run(common: &Common, out: &mut dyn Write) -> Result<(), Failure> {
    let path = common.config.clone().or_else(config::default_path);
    let setup = Setup::load(common)?;
    let sources = setup.key_sources(&[]);
    let format = setup.log_format(None, &sources)?;
    let secret = match &setup.config.keys.key_secret_file {
        Some(file) => KeySecret::load(None, Some(file), &setup.state_dir)
            .map_err(|e| Failure::Usage(format!("keys.key_secret_file: {e}")))?,
        // The generated secret is made on first use; any secret serves to
        // check names and revoked ids.
        None => KeySecret::from_bytes(&[0x5a; 32]),
    };
    setup.extractor_with(&secret, sources)?;
    let channels = setup.channels()?;
    if setup.state_dir.exists() && !setup.state_dir.is_dir() {
        return Err(Failure::Usage(format!(
            "state directory {}: exists but is not a directory; point --state or state_dir elsewhere",
            setup.state_dir.display()
        )));
    }
    let io = |e: std::io::Error| Failure::Io(format!("standard output: {e}"));
    let shown = path.as_ref().map_or_else(
        || "(none: defaults)".to_owned(),
        |p| {
            if p.exists() {
                p.display().to_string()
            } else {
                format!("{} (absent: defaults)", p.display())
            }
        },
    );
    writeln!(out, "configuration {shown}: OK").map_err(io)?;
    writeln!(
        out,
        "  log format: {}",
        format.map_or("detected from the first lines", |_| "as configured")
    )
    .map_err(io)?;
    writeln!(out, "  time zone: {}", setup.zone.name()).map_err(io)?;
    writeln!(out, "  key names: {}", setup.config.keys.names.len()).map_err(io)?;
    writeln!(out, "  state directory: {}", setup.state_dir.display()).map_err(io)?;
    if channels.is_empty() {
        writeln!(out, "  alert channels: none").map_err(io)?;
    }
    for c in &channels {
        let rules = c.rules.as_ref().map_or_else(
            || "every rule".to_owned(),
            |r| r.iter().cloned().collect::<Vec<_>>().join(", "),
        );
        writeln!(
            out,
            "  alert channel {}: {} → {} ({rules}, severity {} and up)",
            c.name,
            c.kind.as_str(),
            c.shown(),
            c.min_severity.as_str()
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)
}
