//! The login server's configuration: command-line flags and a TOML file with a key for
//! every flag (flags win), resolved into a [`ServerConfig`].

use crate::core::admission::{AdmissionPolicy, AdmissionRule};
use crate::service::ServiceConfig;
use crate::shell::server::ListenerLimits;
use proto::PublicKey;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything [`crate::LoginServer::start`] needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tcp_listen: TcpListen,
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://...`; `None`: SQLite in the data directory.
    pub database: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub service: ServiceConfig,
    pub limits: ListenerLimits,
}

impl ServerConfig {
    /// A server on `listen` keeping its data in `data_dir`, with default policies.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen,
            tcp_listen: TcpListen::SameAsQuic,
            data_dir: data_dir.into(),
            database: None,
            metrics_listen: None,
            service: ServiceConfig::default(),
            limits: ListenerLimits::default(),
        }
    }

    /// For local and test networks: loopback addresses allowed, supernodes admitted openly.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::new(SocketAddr::from(([127, 0, 0, 1], 0)), data_dir);
        config.service.admission.allow_loopback = true;
        config.service.admission.rule = AdmissionRule::Open { max_per_ip: 64 };
        config.service.registrations_per_hour = 1000;
        config
    }
}

/// Where the TCP (TLS) listener runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpListen {
    Off,
    /// The address and port the QUIC endpoint bound (UDP and TCP ports are separate).
    SameAsQuic,
    At(SocketAddr),
}

/// The TOML configuration file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub tcp_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: Option<String>,
    pub credential_lifetime_secs: Option<u64>,
    pub registrations_per_hour: Option<u32>,
    pub max_connections: Option<usize>,
    pub admission: Option<AdmissionFile>,
}

/// `[admission]` in the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdmissionFile {
    /// `open` (default) or `allowlist`.
    pub policy: Option<String>,
    pub max_per_ip: Option<usize>,
    /// Supernode public keys (base64url) for the `allowlist` policy.
    #[serde(default)]
    pub allowlist: Vec<String>,
    pub allow_loopback: Option<bool>,
}

/// The configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Applies the file's admission and policy keys to `config`.
    pub fn apply_policies(&self, config: &mut ServerConfig) -> Result<(), ConfigError> {
        if let Some(secs) = self.credential_lifetime_secs {
            if secs == 0 {
                return Err(ConfigError::Invalid(
                    "credential-lifetime-secs must be positive".into(),
                ));
            }
            config.service.credential_lifetime = Duration::from_secs(secs);
        }
        if let Some(n) = self.registrations_per_hour {
            config.service.registrations_per_hour = n;
        }
        if let Some(n) = self.max_connections {
            config.limits.max_connections = n;
        }
        if let Some(admission) = &self.admission {
            config.service.admission = admission.policy()?;
        }
        Ok(())
    }
}

impl AdmissionFile {
    fn policy(&self) -> Result<AdmissionPolicy, ConfigError> {
        let rule = match self.policy.as_deref().unwrap_or("open") {
            "open" => AdmissionRule::Open {
                max_per_ip: self.max_per_ip.unwrap_or(2),
            },
            "allowlist" => AdmissionRule::Allowlist(
                self.allowlist
                    .iter()
                    .map(|k| {
                        k.parse::<PublicKey>()
                            .map_err(|e| ConfigError::Invalid(format!("allowlist key {k}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(ConfigError::Invalid(format!(
                    "admission policy must be `open` or `allowlist`, not `{other}`"
                )));
            }
        };
        Ok(AdmissionPolicy {
            rule,
            allow_loopback: self.allow_loopback.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_sets_admission_and_limits() {
        let key = proto::SecretKey::generate().public();
        let file: FileConfig = toml::from_str(&format!(
            "listen = \"127.0.0.1:7400\"\nregistrations-per-hour = 3\n\
             [admission]\npolicy = \"allowlist\"\nallowlist = [\"{key}\"]\nallow-loopback = true\n"
        ))
        .expect("parse");
        let mut config = ServerConfig::new("0.0.0.0:7400".parse().expect("addr"), "/tmp/x");
        file.apply_policies(&mut config).expect("valid");
        assert_eq!(config.service.registrations_per_hour, 3);
        assert!(config.service.admission.allow_loopback);
        assert_eq!(
            config.service.admission.rule,
            AdmissionRule::Allowlist([key].into_iter().collect())
        );
        assert!(toml::from_str::<FileConfig>("nonsense = 1").is_err());
    }
}
