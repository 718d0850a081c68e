//! The state directory: private to its owner, and written by one keywatch at
//! a time.
//!
//! It holds the key-id secret and the store, so it is created 0700 with
//! every file in it 0600, whatever the umask. A directory that is a symlink,
//! that its group or others may write to, or that another user owns is
//! refused: whoever can write there can swap the store or the secret. Files
//! with looser modes (left by an older keywatch or a copy) are tightened,
//! and the command says so once.
//!
//! Writers (`watch`, `scan --alert`, `summary --send`) hold an advisory lock
//! (`flock` on [`LOCK_FILE`], which also names the holder's pid), so two
//! daemons never count the same lines twice. Readers (`status`, `summary`,
//! `alerts`) take no lock and open the store read-only.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::files::{NO_FOLLOW, PRIVATE_DIR, PRIVATE_FILE, euid};

/// The lock file writers hold; it holds the pid of the one holding it.
pub const LOCK_FILE: &str = "keywatch.lock";

/// The names keywatch reads and writes in the state directory: none of them
/// may be a symlink (anything else there is left alone, and never followed).
const OWN_FILES: [&str; 6] = [
    crate::store::DB_FILE,
    "keywatch.db-wal",
    "keywatch.db-shm",
    "keywatch.db-journal",
    crate::keys::SECRET_FILE,
    LOCK_FILE,
];

#[derive(Debug, Error)]
pub enum StateError {
    #[error(
        "state directory {0} is a symbolic link; point --state (or state_dir) at the real directory"
    )]
    Symlink(PathBuf),
    #[error(
        "state directory {0} exists but is not a directory; point --state (or state_dir) elsewhere"
    )]
    NotDirectory(PathBuf),
    #[error(
        "state directory {path} belongs to user {owner}, not to this user ({me}); run keywatch as its owner, or `chown {me} {path}`"
    )]
    Foreign { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "state directory {path} may be written by its group or others (mode {mode:04o}); run `chmod 700 {path}`"
    )]
    Writable { path: PathBuf, mode: u32 },
    #[error("{path} in the state directory is a symbolic link; remove it (keywatch makes it anew)")]
    FileSymlink { path: PathBuf },
    #[error(
        "another keywatch (pid {pid}) is writing to {path}; stop it first, or give this one its own --state"
    )]
    Locked { path: PathBuf, pid: String },
    #[error("state directory {path}: {what}: {source}; check its permissions or pass --state DIR")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

/// A checked state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    path: PathBuf,
}

/// Held by the one writer of a state directory; released when dropped (or
/// when the process ends, however it ends).
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl StateDir {
    /// Creates the directory (0700) if needed, or checks the one there, and
    /// tightens the modes of the files in it.
    pub fn open(path: &Path) -> Result<StateDir, StateError> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| StateError::Io {
                        path: path.to_path_buf(),
                        what: "creating its parent",
                        source,
                    })?;
                }
                match std::fs::DirBuilder::new().mode(PRIVATE_DIR).create(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(source) => {
                        return Err(StateError::Io {
                            path: path.to_path_buf(),
                            what: "creating it",
                            source,
                        });
                    }
                }
            }
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_path_buf(),
                    what: "reading it",
                    source,
                });
            }
        }
        let dir = StateDir {
            path: path.to_path_buf(),
        };
        dir.check()?;
        Ok(dir)
    }

    /// Checks an existing directory without creating anything (for readers
    /// and `check`); `None` when there is none yet.
    pub fn existing(path: &Path) -> Result<Option<StateDir>, StateError> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io {
                path: path.to_path_buf(),
                what: "reading it",
                source,
            }),
            Ok(_) => {
                let dir = StateDir {
                    path: path.to_path_buf(),
                };
                match dir.verify() {
                    // Root may read the state of the user keywatch runs as.
                    Err(StateError::Foreign { .. }) if euid() == 0 => {}
                    Err(e) => return Err(e),
                    Ok(_) => {}
                }
                Ok(Some(dir))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The refusals, without changing anything.
    fn verify(&self) -> Result<std::fs::Metadata, StateError> {
        let path = &self.path;
        let meta = std::fs::symlink_metadata(path).map_err(|source| StateError::Io {
            path: path.clone(),
            what: "reading it",
            source,
        })?;
        if meta.file_type().is_symlink() {
            return Err(StateError::Symlink(path.clone()));
        }
        if !meta.is_dir() {
            return Err(StateError::NotDirectory(path.clone()));
        }
        let me = euid();
        if meta.uid() != me {
            return Err(StateError::Foreign {
                path: path.clone(),
                owner: meta.uid(),
                me,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(StateError::Writable {
                path: path.clone(),
                mode,
            });
        }
        for name in OWN_FILES {
            let file = path.join(name);
            if std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(StateError::FileSymlink { path: file });
            }
        }
        Ok(meta)
    }

    /// [`StateDir::verify`], then modes tightened: the directory to 0700,
    /// every file to 0600.
    fn check(&self) -> Result<(), StateError> {
        let meta = self.verify()?;
        let mut tightened = Vec::new();
        if meta.mode() & 0o077 != 0 {
            set_mode(&self.path, PRIVATE_DIR)?;
            tightened.push(format!(
                "{} ({:04o})",
                self.path.display(),
                meta.mode() & 0o7777
            ));
        } else if meta.mode() & 0o700 != 0o700 {
            // A umask that took the owner's own bits away.
            set_mode(&self.path, PRIVATE_DIR)?;
        }
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                let Ok(m) = entry.metadata() else { continue };
                if m.is_file() && m.mode() & 0o077 != 0 {
                    set_mode(&entry.path(), PRIVATE_FILE)?;
                    tightened.push(format!(
                        "{} ({:04o})",
                        entry.path().display(),
                        m.mode() & 0o7777
                    ));
                }
            }
        }
        if !tightened.is_empty() {
            eprintln!(
                "keywatch: made private to their owner (0700 directory, 0600 files): {}",
                tightened.join(", ")
            );
        }
        Ok(())
    }

    /// Takes the writer's lock, or says who holds it.
    pub fn lock(&self) -> Result<WriterLock, StateError> {
        let path = self.path.join(LOCK_FILE);
        let io = |what: &'static str| {
            let dir = self.path.clone();
            move |source| StateError::Io {
                path: dir,
                what,
                source,
            }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE)
            .custom_flags(NO_FOLLOW)
            .open(&path)
            .map_err(io("opening its lock file"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(StateError::Locked {
                    path: self.path.clone(),
                    pid: if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                        "unknown".into()
                    } else {
                        pid.to_owned()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking it")(e)),
        }
        file.set_len(0).map_err(io("writing its lock file"))?;
        file.rewind().map_err(io("writing its lock file"))?;
        writeln!(file, "{}", std::process::id()).map_err(io("writing its lock file"))?;
        Ok(WriterLock { _file: file })
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StateError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        StateError::Io {
            path: path.to_path_buf(),
            what: "tightening its mode",
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_told_who_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("s")).unwrap();
        let held = state.lock().unwrap();
        let err = state.lock().unwrap_err().to_string();
        assert!(
            err.contains(&format!("another keywatch (pid {})", std::process::id())),
            "{err}"
        );
        drop(held);
        state.lock().unwrap();
    }

    #[test]
    fn loose_and_linked_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = StateDir::open(&open).unwrap_err().to_string();
        assert!(err.contains("chmod 700"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        assert!(matches!(StateDir::open(&link), Err(StateError::Symlink(_))));
        // Merely readable by others: tightened, not refused.
        let loose = dir.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(loose.join("keywatch.db"), "").unwrap();
        std::fs::set_permissions(
            loose.join("keywatch.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        StateDir::open(&loose).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&loose), 0o700);
        assert_eq!(mode(&loose.join("keywatch.db")), 0o600);
    }
}
