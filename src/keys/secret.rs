//! The per-install secret under which key ids are computed: from the
//! environment, from a configured file, or generated once in the state
//! directory (0600, written without following symlinks).

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::files::{self, Named, SECRET_CAP};
use crate::state::StateDir;

/// The environment variable that gives the key-id secret directly.
pub const SECRET_ENV: &str = "KEYWATCH_KEY_SECRET";
/// The file in the state directory that holds a generated secret.
pub const SECRET_FILE: &str = "key-secret";

/// Problems with the key-id secret.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error(
        "{SECRET_ENV} is shorter than 16 characters; use a long random value (for example `openssl rand -hex 32`)"
    )]
    EnvTooShort,
    #[error("key secret file: {0}")]
    ReadFile(String),
    #[error("key secret file {path} holds fewer than 16 characters; put a long random value in it")]
    FileTooShort { path: PathBuf },
    #[error(
        "cannot create the key secret in {path}: {source}; pass --state DIR with a writable directory or set {SECRET_ENV}"
    )]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    State(#[from] crate::state::StateError),
}

/// The per-install secret under which key ids are computed.
pub struct KeySecret(pub(super) Vec<u8>);

impl KeySecret {
    pub fn from_bytes(b: &[u8]) -> Self {
        KeySecret(b.to_vec())
    }

    /// The secret from `KEYWATCH_KEY_SECRET`, else from `file`, else from the
    /// state directory (generated there on first use, mode 0600).
    pub fn load(
        env: Option<&str>,
        file: Option<&Path>,
        state_dir: &Path,
    ) -> Result<Self, SecretError> {
        if let Some(v) = env {
            let v = v.trim();
            return if v.len() < 16 {
                Err(SecretError::EnvTooShort)
            } else {
                Ok(KeySecret(v.as_bytes().to_vec()))
            };
        }
        if let Some(path) = file {
            return read_secret(path);
        }
        let state = StateDir::open(state_dir)?;
        let path = state.path().join(SECRET_FILE);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => return read_secret(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SecretError::Create { path, source }),
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| SecretError::Create {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        files::write_private(state.path(), SECRET_FILE, hex.as_bytes())
            .map_err(|source| SecretError::Create { path, source })?;
        Ok(KeySecret(hex.into_bytes()))
    }
}

/// Reads a secret file: a regular file only its owner may read, of at most
/// [`SECRET_CAP`] bytes, with at least 16 characters.
fn read_secret(path: &Path) -> Result<KeySecret, SecretError> {
    let text =
        files::read_bounded(path, SECRET_CAP, Named::Secret).map_err(SecretError::ReadFile)?;
    let trimmed = text.trim_ascii();
    if trimmed.len() < 16 {
        return Err(SecretError::FileTooShort {
            path: path.to_path_buf(),
        });
    }
    Ok(KeySecret(trimmed.to_vec()))
}
