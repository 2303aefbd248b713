//! The user's profile directory: the device identity key, the remembered login server,
//! authority key and user, and the current credential.
//!
//! Layout (directory mode 0700, secrets 0600):
//! - `device.key`: this device's Ed25519 identity key, created on first use;
//! - `profile.toml`: `login-server`, `authority-key`, `user`;
//! - `credential`: the last credential the login server issued (postcard bytes);
//! - `peerphone.lock`: held (an OS advisory lock, with the holder's pid inside) by the one
//!   process that runs this device on the network ([`Profile::lock`]): two processes acting
//!   as one device would interleave the chat sequence numbers and outbox and fight over the
//!   supernode session. The kernel drops the lock when the process dies, however it dies.
//!
//! What it does not do: no network; contacts and history live elsewhere.

use proto::{PublicKey, SecretKey, SignedCredential, UnixTime, UserName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

/// A profile file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile settings {path} are malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(transparent)]
    Key(#[from] transport::KeyFileError),
    #[error("no profile directory could be determined; pass --profile DIR")]
    NoDefaultDir,
    /// Another process holds the profile's lock.
    #[error("profile {} is in use by another peerphone process ({})", .dir.display(), pid_text(*.pid))]
    InUse { dir: PathBuf, pid: Option<u32> },
}

fn pid_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_owned(),
    }
}

/// The profile's lock, held until the last clone of it is dropped (or the process ends).
#[derive(Debug)]
pub struct ProfileLock {
    /// Keeps the advisory lock: it belongs to this open file.
    _file: std::fs::File,
    dir: PathBuf,
}

impl ProfileLock {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Locks this process already holds, by canonical profile directory: a second engine in the
/// same process (the desktop app logging in again while the old session winds down) shares
/// the lock instead of failing against itself (advisory locks are per open file, not per
/// process).
static HELD_LOCKS: std::sync::Mutex<BTreeMap<PathBuf, Weak<ProfileLock>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// What the profile remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    pub login_server: Option<SocketAddr>,
    pub authority_key: Option<PublicKey>,
    pub user: Option<UserName>,
    /// The microphone calls use (a device id); `None` follows the system default.
    #[serde(default)]
    pub input_device: Option<String>,
    /// The speaker calls use (a device id); `None` follows the system default.
    #[serde(default)]
    pub output_device: Option<String>,
}

/// An opened profile directory.
#[derive(Debug, Clone)]
pub struct Profile {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProfileError + '_ {
    move |source| ProfileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The platform's data directory for Peerphone.
pub fn default_dir() -> Result<PathBuf, ProfileError> {
    directories::ProjectDirs::from("", "", "peerphone")
        .map(|d| d.data_dir().to_owned())
        .ok_or(ProfileError::NoDefaultDir)
}

/// Writes `bytes` to `path` atomically with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ProfileError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

impl Profile {
    /// Opens `dir`, creating it (mode 0700) when missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ProfileError> {
        let dir = dir.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir))?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Claims the profile for this process until the returned lock is dropped: fails with
    /// [`ProfileError::InUse`] (naming the holder's pid) while another process holds it.
    /// Clones of one process's lock are shared.
    pub fn lock(&self) -> Result<Arc<ProfileLock>, ProfileError> {
        let dir = std::fs::canonicalize(&self.dir).map_err(io_err(&self.dir))?;
        // A poisoned registry only means another thread panicked while holding it; the map
        // itself is always consistent.
        let mut held = HELD_LOCKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = held.get(&dir).and_then(Weak::upgrade) {
            return Ok(lock);
        }
        let path = dir.join("peerphone.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(ProfileError::InUse { dir, pid });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
        // The pid is only for the message another process prints; the lock is the file's.
        file.set_len(0).map_err(io_err(&path))?;
        file.rewind().map_err(io_err(&path))?;
        writeln!(file, "{}", std::process::id()).map_err(io_err(&path))?;
        let lock = Arc::new(ProfileLock {
            _file: file,
            dir: dir.clone(),
        });
        held.insert(dir, Arc::downgrade(&lock));
        Ok(lock)
    }

    /// This device's identity key, created on first use (file mode 0600).
    pub fn device_key(&self) -> Result<SecretKey, ProfileError> {
        Ok(transport::load_or_create_secret_key(
            &self.dir.join("device.key"),
        )?)
    }

    pub fn settings(&self) -> Result<Settings, ProfileError> {
        let path = self.dir.join("profile.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ProfileError::Malformed {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn save_settings(&self, settings: &Settings) -> Result<(), ProfileError> {
        let path = self.dir.join("profile.toml");
        let text = toml::to_string(settings).map_err(|e| ProfileError::Malformed {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_private(&path, text.as_bytes())
    }

    /// The stored credential, if any (not checked).
    pub fn credential(&self) -> Result<Option<SignedCredential>, ProfileError> {
        let path = self.dir.join("credential");
        match std::fs::read(&path) {
            Ok(bytes) => SignedCredential::from_bytes(&bytes).map(Some).map_err(|e| {
                ProfileError::Malformed {
                    path,
                    reason: e.to_string(),
                }
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn save_credential(&self, credential: &SignedCredential) -> Result<(), ProfileError> {
        write_private(&self.dir.join("credential"), &credential.to_bytes())
    }

    /// The stored credential when it is valid for `user` on this device at `now` under
    /// `authority`, and not about to expire (within `margin`).
    pub fn valid_credential(
        &self,
        authority: &PublicKey,
        user: &UserName,
        now: UnixTime,
        margin: std::time::Duration,
    ) -> Result<Option<SignedCredential>, ProfileError> {
        let Some(credential) = self.credential()? else {
            return Ok(None);
        };
        let device = self.device_key()?.public();
        Ok(
            match credential.verify_for_key(authority, now.saturating_add(margin), &device) {
                Ok(claims) if &claims.user == user => Some(credential),
                _ => None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn settings_and_keys_persist_privately() {
        let dir = tempfile::tempdir().expect("tempdir");
        let profile = Profile::open(dir.path().join("p")).expect("open");
        assert_eq!(profile.settings().expect("read"), Settings::default());
        let key = profile.device_key().expect("key");
        assert_eq!(profile.device_key().expect("key").public(), key.public());
        let mode = std::fs::metadata(profile.dir().join("device.key"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let settings = Settings {
            login_server: Some("127.0.0.1:7400".parse().expect("addr")),
            authority_key: Some(SecretKey::generate().public()),
            user: Some(UserName::new("alice").expect("valid")),
            input_device: Some("alsa:hw:CARD=USB,DEV=0".into()),
            output_device: None,
        };
        profile.save_settings(&settings).expect("save");
        assert_eq!(profile.settings().expect("read"), settings);
        assert_eq!(profile.credential().expect("read"), None);
    }

    #[test]
    fn one_process_shares_its_lock_and_releases_it_with_the_last_clone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let profile = Profile::open(dir.path().join("p")).expect("open");
        let first = profile.lock().expect("lock");
        let again = Profile::open(dir.path().join("p"))
            .expect("open")
            .lock()
            .expect("the same process shares its lock");
        assert!(Arc::ptr_eq(&first, &again));
        let pid: u32 = std::fs::read_to_string(dir.path().join("p/peerphone.lock"))
            .expect("read")
            .trim()
            .parse()
            .expect("a pid");
        assert_eq!(pid, std::process::id());
        // Another open file of the lock (as another process would have) is refused while
        // the lock is held and gets it once the last clone is gone.
        let other = std::fs::File::open(dir.path().join("p/peerphone.lock")).expect("open");
        assert!(matches!(
            other.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(first);
        assert!(matches!(
            other.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(again);
        other.try_lock().expect("released with the last clone");
    }
}
