//! The TOML configuration: one file, every setting optional, secrets never
//! inside it (they come from environment variables or files).
//!
//! Unknown settings are errors, and every error names the file, the line and
//! the setting, so a typo cannot silently switch something off.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::format::Field;
use crate::keys::KeyName;

pub(crate) mod ranges;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Zone in which days are cut: `UTC`, `local`, an IANA name or an offset.
    pub timezone: Option<String>,
    /// Where keywatch keeps its state (the key-id secret, later the store).
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub format: FormatConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    /// Who the client is behind proxies.
    #[serde(default)]
    pub clients: crate::clients::ClientsConfig,
    #[serde(default)]
    pub rules: crate::detect::RulesConfig,
    /// Pacing and retries for every alert channel.
    #[serde(default)]
    pub alerts: crate::alert::channels::AlertsConfig,
    /// The daily summary.
    #[serde(default)]
    pub summary: SummaryConfig,
    /// Alert channels by name.
    #[serde(default)]
    pub channels: BTreeMap<String, crate::alert::channels::ChannelConfig>,
    /// Each `[table]` header of the file and its line, for messages.
    #[serde(skip)]
    tables: Vec<(String, usize)>,
    /// The file as read, for the line of a setting in messages.
    #[serde(skip)]
    text: String,
}

/// `[summary]`: the daily summary.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryConfig {
    /// Keys in use longer than this many days are listed as due for rotation (default 90).
    pub rotation_days: Option<u32>,
    /// When `watch` sends the previous day's summary, local time (default 07:00).
    pub send_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatConfig {
    /// A preset name or an nginx `log_format` directive.
    pub log_format: Option<String>,
    /// Lines longer than this many bytes are counted and skipped.
    pub max_line_length: Option<usize>,
    /// For JSON logs: field → JSON path (`key = "request.headers.X-Api-Key"`).
    #[serde(default)]
    pub json_fields: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Log variables that hold a key or key id (replaces the default list).
    pub fields: Option<Vec<String>>,
    /// Look for keys in a logged Authorization header (default true).
    pub authorization: Option<bool>,
    /// Take `$remote_user` (Basic auth user) as the key (default false).
    pub remote_user: Option<bool>,
    /// Query parameters whose value is a key (replaces the default list).
    pub query_params: Option<Vec<String>>,
    /// Query parameters added to the default list.
    #[serde(default)]
    pub extra_query_params: Vec<String>,
    /// Prefixes of this API's keys (`kw_live_`): found anywhere in a URL, shown in masks.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// The key field holds only the first N characters of each key.
    pub logged_prefix_length: Option<usize>,
    /// File holding the key-id secret (instead of the generated one).
    pub key_secret_file: Option<PathBuf>,
    /// Names for keys, by id or by prefix.
    #[serde(default)]
    pub names: Vec<KeyName>,
}

impl Config {
    /// Reads `path`; a missing file is an error only when `required`.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
            Ok(_) => {}
        }
        let bytes =
            crate::files::read_bounded(path, crate::files::CONFIG_CAP, crate::files::Named::Config)
                .map_err(|message| ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message,
                })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: format!("not UTF-8 text (at byte {})", e.utf8_error().valid_up_to()),
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text; the error names the line and setting.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            let msg = e.message().trim().to_string();
            match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            }
        })?;
        config.json_field_overrides()?;
        if let Some(at) = &config.summary.send_at
            && parse_time(at).is_none()
        {
            return Err(format!(
                "summary.send_at: {at:?} is not a time; write it as HH:MM, such as \"07:00\""
            ));
        }
        ranges::check(&config, text)?;
        let mut config = config;
        config.text = text.to_owned();
        config.tables = text
            .lines()
            .enumerate()
            .filter_map(|(n, l)| {
                let l = l.trim();
                let name = l.strip_prefix('[')?.split(']').next()?;
                (!l.starts_with("[[")).then(|| (name.trim().replace(['"', ' '], ""), n + 1))
            })
            .collect();
        Ok(config)
    }

    /// The line of `key` in `[table]`, else of the table's header.
    pub fn setting_line(&self, table: &str, key: &str) -> Option<usize> {
        ranges::setting_line(&self.text, table, key).or_else(|| self.table_line(table))
    }

    /// The line of a `[table]` header (`channels.ops`), if the file has one.
    pub fn table_line(&self, table: &str) -> Option<usize> {
        self.tables
            .iter()
            .find(|(t, _)| t == table)
            .map(|&(_, l)| l)
    }

    /// `[format.json_fields]` as (field, path) pairs.
    pub fn json_field_overrides(&self) -> Result<Vec<(Field, String)>, String> {
        self.format
            .json_fields
            .iter()
            .map(|(name, path)| {
                let field = match name.as_str() {
                    "client" => Field::Client,
                    "user" => Field::User,
                    "time" => Field::TimeIso8601,
                    "request" => Field::Request,
                    "method" => Field::Method,
                    "uri" => Field::Target,
                    "path" => Field::Path,
                    "query" => Field::Query,
                    "status" => Field::Status,
                    "bytes" => Field::Bytes,
                    "referer" => Field::Referer,
                    "user_agent" => Field::UserAgent,
                    "request_time" => Field::RequestTime,
                    "key" => Field::Key,
                    "authorization" => Field::Authorization,
                    "forwarded_for" => Field::ForwardedFor,
                    "real_ip" => Field::RealIp,
                    other => {
                        return Err(format!(
                            "format.json_fields.{other}: unknown field; use one of client, user, time, request, method, uri, path, query, status, bytes, referer, user_agent, request_time, key, authorization, forwarded_for, real_ip"
                        ));
                    }
                };
                Ok((field, path.clone()))
            })
            .collect()
    }
}

fn parse_time(hh_mm: &str) -> Option<chrono::NaiveTime> {
    chrono::NaiveTime::parse_from_str(hh_mm, "%H:%M").ok()
}

impl SummaryConfig {
    /// When `watch` sends the summary: `send_at` (checked when the file is
    /// read), 07:00 by default.
    pub fn send_time(&self) -> chrono::NaiveTime {
        self.send_at
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(chrono::NaiveTime::from_hms_opt(7, 0, 0).unwrap_or_default())
    }
}

/// Reads a duration: a number and a unit, `250ms`, `1s`, `2m`, `2h`, `7d`
/// (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, such as 250ms or 2s"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(std::time::Duration::from_secs(n.saturating_mul(3_600))),
        "d" => Ok(std::time::Duration::from_secs(n.saturating_mul(86_400))),
        _ => Err(format!("{s:?}: the unit must be ms, s, m, h or d")),
    }
}

/// A duration setting, written as for [`parse_duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dur(pub std::time::Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// The default configuration file: `$XDG_CONFIG_HOME/keywatch/config.toml`,
/// `~/.config/keywatch/config.toml`, or `/etc/keywatch/config.toml` for root.
pub fn default_path() -> Option<PathBuf> {
    if is_root() {
        return Some(PathBuf::from("/etc/keywatch/config.toml"));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("keywatch").join("config.toml"))
}

/// The default state directory: `$XDG_STATE_HOME/keywatch`,
/// `~/.local/state/keywatch`, or `/var/lib/keywatch` for root.
pub fn default_state_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/keywatch");
    }
    std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("keywatch")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // The owner of a fresh /proc/self is the effective user.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_settings_name_the_line() {
        let err = Config::parse("timezone = \"UTC\"\n[keys]\nprefixs = [\"x\"]\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        assert!(err.contains("prefixs"), "{err}");
    }

    #[test]
    fn json_fields_are_checked() {
        let err = Config::parse("[format.json_fields]\nkee = \"x\"\n").unwrap_err();
        assert!(err.contains("format.json_fields.kee"), "{err}");
    }
}
