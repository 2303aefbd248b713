//! Secret key files: one line of base64url, mode 0600, created atomically on first use.
//!
//! A key file readable by group or others, or owned by another user, is refused rather than
//! silently fixed: the key may already have leaked, and the operator should decide what to
//! do. The file is opened once, without following a symlink, and its mode and owner are
//! checked on the open handle the key is then read from, so swapping the file between the
//! check and the read changes nothing.

use proto::SecretKey;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Longer files are refused unread: a key is 43 characters and a newline.
const MAX_KEY_FILE_BYTES: u64 = 1024;

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
    #[error(
        "key file {path} belongs to user {owner_uid}, not to us (user {our_uid}); \
         check who created it before using it"
    )]
    WrongOwner {
        path: PathBuf,
        owner_uid: u32,
        our_uid: u32,
    },
    #[error("key file {path} is not a regular file (a symlink, directory or device)")]
    NotARegularFile { path: PathBuf },
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
    match create_exclusive(path, &key, |from, to| fs::hard_link(from, to)) {
        Ok(()) => Ok(key),
        // Another process created it between our read and our write: its key wins.
        Err(KeyFileError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
            load_secret_key(path)
        }
        Err(error) => Err(error),
    }
}

/// Loads the key at `path`, refusing a symlink, a file that group or others can access, and
/// a file owned by another user.
pub fn load_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    let not_regular = || KeyFileError::NotARegularFile {
        path: path.to_owned(),
    };
    let mut file = fs::OpenOptions::new()
        .read(true)
        // NONBLOCK keeps a FIFO planted at `path` from blocking the open; it changes
        // nothing for a regular file.
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|source| {
            // O_NOFOLLOW fails with ELOOP when the last component is a symlink.
            if source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                not_regular()
            } else {
                io_error(path)(source)
            }
        })?;
    let metadata = file.metadata().map_err(io_error(path))?;
    if !metadata.file_type().is_file() {
        return Err(not_regular());
    }
    check_ownership(path, metadata.mode(), metadata.uid(), our_uid())?;
    if metadata.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyFileError::Malformed {
            path: path.to_owned(),
            reason: format!("{} bytes is far too long for a key", metadata.len()),
        });
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    // The file may grow after the fstat; never read more than the limit.
    (&mut file)
        .take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyFileError::Malformed {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })?;
    SecretKey::from_text(text).map_err(|e| KeyFileError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn our_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn check_ownership(
    path: &Path,
    mode: u32,
    owner_uid: u32,
    our_uid: u32,
) -> Result<(), KeyFileError> {
    let mode = mode & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    if owner_uid != our_uid {
        return Err(KeyFileError::WrongOwner {
            path: path.to_owned(),
            owner_uid,
            our_uid,
        });
    }
    Ok(())
}

/// Writes `key` to a temporary file (mode 0600) in the same directory, then `link`s it into
/// place; linking fails instead of overwriting if `path` appeared meanwhile. Where hard
/// links are not allowed (some network and FAT file systems), a rename that refuses to
/// replace (`RENAME_NOREPLACE`) moves it into place instead, and where that is not
/// supported either, the key is written straight into `path` created with `O_EXCL`. The
/// temporary file is removed on every path out of here.
fn create_exclusive(
    path: &Path,
    key: &SecretKey,
    link: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> Result<(), KeyFileError> {
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
        write_new_key_file(&temp, key)?;
        match link(&temp, path) {
            Ok(()) => {}
            Err(error) if links_unsupported(&error) => {
                match rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &temp,
                    rustix::fs::CWD,
                    path,
                    rustix::fs::RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => {}
                    Err(errno)
                        if errno == rustix::io::Errno::INVAL
                            || errno == rustix::io::Errno::NOSYS
                            || errno == rustix::io::Errno::OPNOTSUPP =>
                    {
                        write_new_key_file(path, key)?;
                    }
                    Err(errno) => return Err(io_error(path)(errno.into())),
                }
            }
            Err(error) => return Err(io_error(path)(error)),
        }
        if let Ok(dir_handle) = fs::File::open(dir) {
            // Makes the new directory entry durable; failure only risks losing a fresh key.
            let _ = dir_handle.sync_all();
        }
        Ok(())
    })();
    // Best effort: after a successful rename the temporary name no longer exists.
    let _ = fs::remove_file(&temp);
    result
}

/// Whether a hard link failed because the file system does not allow one here.
fn links_unsupported(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
    ) || error.raw_os_error() == Some(rustix::io::Errno::MLINK.raw_os_error())
}

/// Creates `path` (which must not exist) with mode 0600 and writes `key` to it durably; on
/// failure after creating it, removes it again.
fn write_new_key_file(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    let written = file
        .write_all(key.to_text().as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(error) = written {
        let _ = fs::remove_file(path);
        return Err(io_error(path)(error));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn entries(dir: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_symlink_to_a_valid_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.key");
        load_or_create_secret_key(&real).expect("create");
        let link = dir.path().join("device.key");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let error = load_secret_key(&link).expect_err("must not follow the symlink");
        assert!(
            matches!(error, KeyFileError::NotARegularFile { .. }),
            "{error}"
        );
        let error = load_or_create_secret_key(&link).expect_err("nor replace it");
        assert!(
            matches!(error, KeyFileError::NotARegularFile { .. }),
            "{error}"
        );
    }

    #[test]
    fn a_fifo_or_directory_in_place_of_the_key_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo.key");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .expect("mkfifo");
        let error = load_secret_key(&fifo).expect_err("a FIFO is no key");
        assert!(
            matches!(error, KeyFileError::NotARegularFile { .. }),
            "{error}"
        );
        let sub = dir.path().join("dir.key");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&sub)
            .expect("mkdir");
        let error = load_secret_key(&sub).expect_err("a directory is no key");
        assert!(
            matches!(error, KeyFileError::NotARegularFile { .. }),
            "{error}"
        );
    }

    #[test]
    fn a_key_owned_by_another_user_is_refused() {
        let path = Path::new("device.key");
        let error = check_ownership(path, 0o100600, 1234, 1000).expect_err("other owner");
        assert!(
            matches!(
                error,
                KeyFileError::WrongOwner {
                    owner_uid: 1234,
                    our_uid: 1000,
                    ..
                }
            ),
            "{error}"
        );
        assert!(check_ownership(path, 0o100600, 1000, 1000).is_ok());
        assert!(matches!(
            check_ownership(path, 0o100640, 1000, 1000),
            Err(KeyFileError::Permissions { mode: 0o640, .. })
        ));
        // With the privilege to give a file away (root in CI containers), check a real one.
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("device.key");
        load_or_create_secret_key(&real).expect("create");
        let other = rustix::fs::Uid::from_raw(our_uid().wrapping_add(4242));
        if rustix::fs::chown(&real, Some(other), None).is_ok() {
            let error = load_secret_key(&real).expect_err("given away");
            assert!(matches!(error, KeyFileError::WrongOwner { .. }), "{error}");
        }
    }

    #[test]
    fn without_hard_links_the_key_is_renamed_into_place_without_replacing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device.key");
        let no_links = |_: &Path, _: &Path| Err(io::Error::from(io::ErrorKind::PermissionDenied));
        let key = SecretKey::generate();
        create_exclusive(&path, &key, no_links).expect("create without hard links");
        assert_eq!(load_secret_key(&path).expect("load").public(), key.public());
        assert_eq!(
            fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
            0o600
        );
        let error = create_exclusive(&path, &SecretKey::generate(), no_links)
            .expect_err("must not replace an existing key");
        assert!(
            matches!(&error, KeyFileError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists),
            "{error}"
        );
        assert_eq!(load_secret_key(&path).expect("load").public(), key.public());
        assert_eq!(
            entries(dir.path()),
            vec![std::ffi::OsString::from("device.key")]
        );
    }

    #[test]
    fn a_failed_creation_leaves_no_temporary_secret_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device.key");
        let broken = |_: &Path, _: &Path| Err(io::Error::other("disk on fire"));
        create_exclusive(&path, &SecretKey::generate(), broken).expect_err("link fails");
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    }

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
