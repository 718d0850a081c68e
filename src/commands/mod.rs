//! The commands behind the CLI, and what they share: loading the
//! configuration and building the [`Engine`](crate::pipeline::Engine).

pub mod alerts;
pub mod check;
pub mod scan;
pub mod silence;
pub mod status;
pub mod summary;
pub mod watch;

use std::path::{Path, PathBuf};

use crate::config::{self, Config};
use crate::format::{self, LogFormat};
use crate::keys::{Extractor, KeySecret, KeySources, SecretError};
use crate::state::{StateDir, StateError, WriterLock};
use crate::zone::Zone;

/// Why a command failed, and so which exit status it ends with.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or configuration: exit status 2.
    Usage(String),
    /// An input or output could not be read or written: exit status 1.
    Io(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Io(_) => 1,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Io(m) => m,
        }
    }
}

/// Options every command takes.
#[derive(Clone, Debug, Default)]
pub struct Common {
    pub config: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub timezone: Option<String>,
}

/// The configuration and the settings derived from it.
pub struct Setup {
    pub config: Config,
    /// The configuration file read, if any.
    pub config_path: Option<PathBuf>,
    pub zone: Zone,
    pub state_dir: PathBuf,
}

impl Setup {
    pub fn load(common: &Common) -> Result<Setup, Failure> {
        let config_path = common
            .config
            .clone()
            .or_else(|| config::default_path().filter(|p| p.exists()));
        let config = match &common.config {
            Some(p) => Config::load(p, true),
            None => {
                config::default_path().map_or(Ok(Config::default()), |p| Config::load(&p, false))
            }
        }
        .map_err(|e| match e {
            config::ConfigError::Read {
                ref source,
                ref path,
            } if source.kind() == std::io::ErrorKind::NotFound => Failure::Usage(format!(
                "config file {}: not found; create it or leave out --config",
                path.display()
            )),
            config::ConfigError::Read { .. } => Failure::Io(e.to_string()),
            config::ConfigError::Invalid { .. } => Failure::Usage(e.to_string()),
        })?;
        let tz = common.timezone.clone().or_else(|| config.timezone.clone());
        let zone = match tz {
            Some(t) => Zone::parse(&t).map_err(|e| {
                Failure::Usage(if common.timezone.is_some() {
                    format!("--timezone: {e}")
                } else {
                    format!("timezone setting: {e}")
                })
            })?,
            None => Zone::local(),
        };
        let state_dir = common
            .state
            .clone()
            .or_else(|| config.state_dir.clone())
            .unwrap_or_else(config::default_state_dir);
        Ok(Setup {
            config,
            config_path,
            zone,
            state_dir,
        })
    }

    /// The alert channels, resolved (secrets read); an error names the file,
    /// line and setting.
    pub fn channels(&self) -> Result<Vec<crate::alert::channels::Channel>, Failure> {
        crate::alert::channels::channels(&self.config).map_err(|e| {
            Failure::Usage(match &self.config_path {
                Some(p) => format!("config file {}: {e}", p.display()),
                None => e,
            })
        })
    }

    /// Where keys come from: the defaults, the config, then `--key-field`.
    pub fn key_sources(&self, key_fields: &[String]) -> KeySources {
        let mut s = KeySources::default();
        let k = &self.config.keys;
        if let Some(f) = &k.fields {
            s.fields = f.clone();
        }
        if !key_fields.is_empty() {
            s.fields = key_fields.to_vec();
        }
        s.fields = s
            .fields
            .iter()
            .map(|f| f.trim_start_matches('$').to_string())
            .collect();
        if let Some(a) = k.authorization {
            s.authorization = a;
        }
        if let Some(r) = k.remote_user {
            s.remote_user = r;
        }
        if let Some(q) = &k.query_params {
            s.query_params = q.iter().map(|n| normalized(n)).collect();
        }
        s.query_params
            .extend(k.extra_query_params.iter().map(|n| normalized(n)));
        s.prefixes = k.prefixes.clone();
        s.logged_prefix_length = k.logged_prefix_length;
        s
    }

    pub fn extractor(&self, sources: KeySources) -> Result<Extractor, Failure> {
        let env = std::env::var(crate::keys::SECRET_ENV).ok();
        let secret = KeySecret::load(
            env.as_deref(),
            self.config.keys.key_secret_file.as_deref(),
            &self.state_dir,
        )
        .map_err(|e| match e {
            SecretError::Create { .. } => Failure::Io(e.to_string()),
            SecretError::State(s) => state_failure(s),
            _ => Failure::Usage(e.to_string()),
        })?;
        self.extractor_with(&secret, sources)
    }

    /// The extractor for a given key-id secret: key names and revoked keys
    /// (inline and from `ids_file`) checked and loaded.
    pub fn extractor_with(
        &self,
        secret: &KeySecret,
        sources: KeySources,
    ) -> Result<Extractor, Failure> {
        let mut ex = Extractor::new(secret, sources, &self.config.keys.names)
            .map_err(|e| Failure::Usage(format!("config: {e}")))?;
        let revoked = &self.config.rules.revoked_key_in_use;
        let mut ids = revoked.ids.clone();
        if let Some(file) = &revoked.ids_file {
            let bytes = crate::files::read_bounded(
                file,
                crate::files::LIST_CAP,
                crate::files::Named::Public,
            )
            .map_err(|e| Failure::Usage(format!("rules.revoked_key_in_use.ids_file: {e}")))?;
            let text = String::from_utf8_lossy(&bytes);
            for (n, line) in text.lines().enumerate() {
                let id = line.split('#').next().unwrap_or("").trim();
                if !id.is_empty() {
                    if id.parse::<crate::keys::KeyId>().is_err() {
                        // Never echoed: a raw key listed by mistake would be shown.
                        return Err(Failure::Usage(format!(
                            "rules.revoked_key_in_use.ids_file {} line {}: not a key id (16 hex characters, as keywatch prints them); list key ids, never the keys themselves",
                            file.display(),
                            n + 1
                        )));
                    }
                    ids.push(id.to_string());
                }
            }
        }
        ex.set_revoked(&ids, &revoked.prefixes)
            .map_err(|e| Failure::Usage(format!("rules.revoked_key_in_use.ids: {e}")))?;
        Ok(ex)
    }

    /// The format named on the command line or in the config, compiled.
    pub fn log_format(
        &self,
        arg: Option<&str>,
        sources: &KeySources,
    ) -> Result<Option<LogFormat>, Failure> {
        let (spec, from) = match (arg, &self.config.format.log_format) {
            (Some(a), _) => (a, "--log-format"),
            (None, Some(c)) => (c.as_str(), "format.log_format setting"),
            (None, None) => return Ok(None),
        };
        let overrides = self.config.json_field_overrides().map_err(Failure::Usage)?;
        if spec.trim() == "json" && !overrides.is_empty() {
            return Ok(Some(LogFormat::Json(format::json::JsonFormat::generic(
                &overrides,
                &sources.fields,
            ))));
        }
        format::compile(spec, &sources.fields)
            .map(Some)
            .map_err(|e| {
                Failure::Usage(format!(
                    "{from}: {e} (presets: {})",
                    format::presets::NAMES.join(", ")
                ))
            })
    }
}

fn normalized(name: &str) -> String {
    let mut buf = [0u8; 64];
    crate::url::normalize_name(name.as_bytes(), &mut buf)
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_else(|| name.to_ascii_lowercase())
}

/// A state directory that cannot be used: exit status 2 when it is a
/// setting to fix (refused, locked), 1 when the disk failed.
pub fn state_failure(e: StateError) -> Failure {
    match e {
        StateError::Io { .. } => Failure::Io(e.to_string()),
        _ => Failure::Usage(e.to_string()),
    }
}

/// The state directory exists (made 0700 if not) and may be used.
pub fn ensure_dir(p: &Path) -> Result<StateDir, Failure> {
    StateDir::open(p).map_err(state_failure)
}

impl Setup {
    /// The state directory, checked, with its writer's lock held: the one
    /// process that counts into the store and delivers from it.
    pub fn lock_state(&self) -> Result<(StateDir, WriterLock), Failure> {
        let dir = ensure_dir(&self.state_dir)?;
        let lock = dir.lock().map_err(state_failure)?;
        Ok((dir, lock))
    }
}
