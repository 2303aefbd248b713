//! Secret key files: one line of base64url, mode 0600, created atomically on first use.
//!
//! A key file readable by group or others is refused rather than silently fixed: the key
//! may already have leaked, and the operator should decide what to do.

use proto::SecretKey;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// A key file could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "key file {path} is accessible by group or others (mode {mode:o}); \
         run `chmod 600 {path}` if it has not leaked, or remove it to create a new key"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads the key at `path`, or creates a new one there (and the parent directory, mode
/// 0700) when the file does not exist.
pub fn load_or_create_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    match load_secret_key(path) {
        Err(KeyFileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let key = SecretKey::generate();
    match create_exclusive(path, &key) {
        Ok(()) => Ok(key),
        // Another process created it between our read and our write: its key wins.
        Err(KeyFileError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
            load_secret_key(path)
        }
        Err(error) => Err(error),
    }
}

/// Loads the key at `path`, refusing a file that group or others can access.
pub fn load_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    let metadata = fs::metadata(path).map_err(io_error(path))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    if metadata.len() > 1024 {
        return Err(KeyFileError::Malformed {
            path: path.to_owned(),
            reason: format!("{} bytes is far too long for a key", metadata.len()),
        });
    }
    let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(|source| {
        if source.kind() == io::ErrorKind::InvalidData {
            KeyFileError::Malformed {
                path: path.to_owned(),
                reason: "not UTF-8 text".into(),
            }
        } else {
            io_error(path)(source)
        }
    })?);
    SecretKey::from_text(&text).map_err(|e| KeyFileError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Writes `key` to a temporary file (mode 0600) in the same directory, then links it into
/// place; linking fails instead of overwriting if `path` appeared meanwhile.
fn create_exclusive(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let temp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        SecretKey::generate().public().fingerprint()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_error(&temp))?;
        file.write_all(key.to_text().as_bytes())
            .map_err(io_error(&temp))?;
        file.sync_all().map_err(io_error(&temp))?;
        fs::hard_link(&temp, path).map_err(io_error(path))?;
        if let Ok(dir_handle) = fs::File::open(dir) {
            // Makes the new directory entry durable; failure only risks losing a fresh key.
            let _ = dir_handle.sync_all();
        }
        Ok(())
    })();
    let _ = fs::remove_file(&temp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_with_mode_0600_and_then_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("profile/sub/device.key");
        let created = load_or_create_secret_key(&path).expect("create");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let parent_mode = fs::metadata(path.parent().expect("parent"))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(parent_mode & 0o077, 0, "parent dir mode {parent_mode:o}");
        let reloaded = load_or_create_secret_key(&path).expect("reload");
        assert_eq!(created.public(), reloaded.public());
        let leftovers: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("device.key")]);
    }

    #[test]
    fn a_key_readable_by_others_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device.key");
        let key = load_or_create_secret_key(&path).expect("create");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = load_or_create_secret_key(&path).expect_err("must refuse");
        assert!(
            matches!(error, KeyFileError::Permissions { mode: 0o644, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"));
        // The key was not replaced by a new one.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let again = load_or_create_secret_key(&path).expect("load");
        assert_eq!(again.public(), key.public());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(
            load_secret_key(&path),
            Err(KeyFileError::Permissions { .. })
        ));
    }

    #[test]
    fn a_malformed_key_file_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        for contents in [&b"not a key\n"[..], b"", &[0xff, 0xfe, 0x00], &[b'A'; 2000]] {
            let path = dir.path().join("device.key");
            fs::write(&path, contents).expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
            let error = load_or_create_secret_key(&path).expect_err("must refuse");
            assert!(matches!(error, KeyFileError::Malformed { .. }), "{error}");
            assert_eq!(fs::read(&path).expect("read"), contents);
        }
    }

    #[test]
    fn processes_racing_to_create_a_key_all_end_up_with_the_same_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("profile/device.key");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || load_or_create_secret_key(&path).map(|k| k.public()))
            })
            .collect();
        let keys: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("key"))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
        assert_eq!(load_secret_key(&path).expect("load").public(), keys[0]);
    }
}
