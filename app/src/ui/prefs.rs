//! The person's preferences ([`Prefs`]: noise suppression, echo cancellation, text size),
//! kept in the profile directory as `ui-settings.toml`, next to the profile's own
//! `profile.toml`.
//!
//! What it does not do: apply them (the model applies the text size; the backend hands
//! [`Prefs::capture`] to the engine, whose calls clean the microphone accordingly).

use super::model::Prefs;
use std::path::{Path, PathBuf};

impl Prefs {
    /// The sound-processing switches as the calls' capture processing.
    pub fn capture(&self) -> crate::call_media::CaptureOptions {
        crate::call_media::CaptureOptions {
            noise_suppression: self.noise_suppression,
            echo_cancellation: self.echo_cancellation,
        }
    }
}

/// The file's name in the profile directory.
pub const FILE_NAME: &str = "ui-settings.toml";

/// Reading or writing the preferences failed.
#[derive(Debug, thiserror::Error)]
pub enum PrefsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

/// The remembered preferences; the defaults when none are stored.
pub fn load(profile_dir: &Path) -> Result<Prefs, PrefsError> {
    let path = profile_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut prefs: Prefs = toml::from_str(&text).map_err(|e| PrefsError::Malformed {
                path,
                reason: e.to_string(),
            })?;
            prefs.text_scale = Prefs::clamp_text_scale(prefs.text_scale);
            Ok(prefs)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Prefs::default()),
        Err(source) => Err(PrefsError::Io { path, source }),
    }
}

/// Remembers `prefs` (written to a temporary file and renamed, so a crash never leaves
/// half a file).
pub fn save(profile_dir: &Path, prefs: &Prefs) -> Result<(), PrefsError> {
    let path = profile_dir.join(FILE_NAME);
    let text = toml::to_string(prefs).map_err(|e| PrefsError::Malformed {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| PrefsError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferences_survive_a_restart_and_default_when_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()).expect("load"), Prefs::default());
        let prefs = Prefs {
            noise_suppression: false,
            echo_cancellation: true,
            text_scale: 1.5,
        };
        save(dir.path(), &prefs).expect("save");
        assert_eq!(load(dir.path()).expect("load"), prefs);
    }

    #[test]
    fn an_out_of_range_text_size_is_clamped_and_a_broken_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), "text-scale = 40.0\n").expect("write");
        let prefs = load(dir.path()).expect("load");
        assert_eq!(prefs.text_scale, 2.0);
        assert!(prefs.noise_suppression, "missing keys take their defaults");
        std::fs::write(dir.path().join(FILE_NAME), "text-scale = \"big\"\n").expect("write");
        assert!(matches!(
            load(dir.path()),
            Err(PrefsError::Malformed { .. })
        ));
    }
}
