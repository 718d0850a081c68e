//! Files keywatch reads and writes on its own behalf, done the careful way.
//!
//! - [`write_private`] writes a file only its owner can read, never through a
//!   symlink: a fresh temporary name in the same directory opened with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW` and mode 0600, written, synced, renamed
//!   over the target (a rename replaces a planted symlink instead of
//!   following it), and the directory synced.
//! - [`read_bounded`] reads a file the configuration names (a `file:` secret,
//!   `ids_file`, `ca_file`, `key_secret_file`): a regular file only, never more
//!   than a cap, and for secrets only when no one else may read it (as ssh
//!   refuses a private key others can read).
//!
//! std has `O_EXCL` (`create_new`) but no `O_NOFOLLOW`; that flag, the
//! effective user id and the umask come from rustix (already in the build
//! through clap), so none of this needs `unsafe`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of every file keywatch writes.
pub const PRIVATE_FILE: u32 = 0o600;
/// The mode of the state directory.
pub const PRIVATE_DIR: u32 = 0o700;

/// The largest file a `file:` secret or `key_secret_file` may be.
pub const SECRET_CAP: u64 = 64 * 1024;
/// The largest `ids_file` (about 3.9 million key ids).
pub const LIST_CAP: u64 = 64 * 1024 * 1024;
/// The largest `ca_file`.
pub const PEM_CAP: u64 = 4 * 1024 * 1024;
/// The largest configuration file.
pub const CONFIG_CAP: u64 = 4 * 1024 * 1024;

/// The open flags of every file keywatch opens in its state directory:
/// never through a symlink, never inherited by a child process.
pub const NO_FOLLOW: i32 =
    (rustix::fs::OFlags::NOFOLLOW.bits() | rustix::fs::OFlags::CLOEXEC.bits()) as i32;

/// The effective user id of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Makes every file and directory this process creates private to its
/// owner, whatever umask it was started with (modes are also set exactly
/// where files are made; this covers what libraries create).
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Opens `path` for reading without following a symlink at its last component.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(NO_FOLLOW)
        .open(path)
}

/// Creates `dir/name` with exactly `content`, mode 0600, atomically and
/// without following symlinks (see the module documentation).
pub fn write_private(dir: &Path, name: &str, content: &[u8]) -> io::Result<()> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE)
            .custom_flags(NO_FOLLOW)
            .open(&tmp)?;
        // The umask may have taken bits away, never added any; set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))?;
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` empty with mode 0600 if it does not exist, never through a
/// symlink; an existing regular file is left as it is.
pub fn create_private(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .custom_flags(NO_FOLLOW)
        .open(path)
    {
        Ok(f) => f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a file named in the configuration is, for the checks it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named {
    /// A secret: refused when its group or others may read it.
    Secret,
    /// Not secret (a list of key ids, CA certificates): any mode.
    Public,
    /// The configuration file: any mode, and `/dev/null` (or a pipe) too,
    /// still bounded by the cap.
    Config,
}

/// Reads a file the configuration names, at most `cap` bytes. The error says
/// what is wrong and how to fix it, and never holds any of the content.
pub fn read_bounded(path: &Path, cap: u64, kind: Named) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let mut f = File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() && kind != Named::Config {
        return Err(format!(
            "{shown} is not a regular file; point the setting at a file"
        ));
    }
    if kind == Named::Secret && meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{shown} holds a secret but its group or others may read it (mode {:04o}); run `chmod 600 {shown}`",
            meta.mode() & 0o7777
        ));
    }
    if meta.len() > cap {
        return Err(format!(
            "{shown} is {} bytes, more than the {cap} this setting reads; check that it is the right file",
            meta.len()
        ));
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&mut f)
        .take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if buf.len() as u64 > cap {
        return Err(format!(
            "{shown} grew past the {cap} bytes this setting reads; check that it is the right file"
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_writes_replace_a_planted_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("secret")).unwrap();
        write_private(dir.path(), "secret", b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        let meta = std::fs::symlink_metadata(dir.path().join("secret")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o777, 0o600);
    }

    #[test]
    fn bounded_reads_refuse_devices_big_files_and_readable_secrets() {
        let err = read_bounded(Path::new("/dev/zero"), 10, Named::Public).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "0123456789abc").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_bounded(&p, 100, Named::Secret).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!err.contains("0123456789"), "{err}");
        let err = read_bounded(&p, 5, Named::Public).unwrap_err();
        assert!(err.contains("more than the 5"), "{err}");
        assert_eq!(
            read_bounded(&p, 100, Named::Public).unwrap(),
            b"0123456789abc"
        );
    }
}
