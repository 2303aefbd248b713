//! Peerphone login server: accounts, credentials, buddy lists, offline mailbox, supernode
//! admission and the signed supernode directory.
//!
//! - [`core`]: pure decisions (throttling on virtual time, supernode admission).
//! - [`storage`]: the database (SQLite or PostgreSQL through sqlx), the only state.
//! - [`password`]: argon2id hashing off the runtime, with a concurrency limit.
//! - [`service`]: [`LoginService`], one decoded request in, one typed answer out.
//! - [`shell`]: the QUIC and TLS-over-TCP listener, metrics endpoint and housekeeping.
//! - [`client`]: [`client::LoginConnection`], for devices and supernodes.
//! - [`LoginServer`]: everything started together, as the binary and tests run it.
//!
//! What it does not do: it never sees chat or call content (offline envelopes are sealed
//! end to end), keeps no per-process state other processes would need (several processes
//! may share one PostgreSQL database), and does not relay media.

pub mod client;
pub mod config;
pub mod core;
pub mod password;
pub mod service;
pub mod shell;
pub mod storage;

pub use config::ServerConfig;
pub use service::{LoginService, Peer, ServiceConfig};
pub use storage::Store;

use proto::PublicKey;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often expired envelopes, credentials and throttle records are purged.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

/// The login server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    KeyFile(#[from] transport::KeyFileError),
    #[error(transparent)]
    Store(#[from] storage::StoreError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("{0}")]
    Service(String),
}

/// The authority key of `data_dir`, created (mode 0600) when missing.
pub fn authority_key(data_dir: &Path) -> Result<proto::SecretKey, StartError> {
    create_data_dir(data_dir)?;
    Ok(transport::load_or_create_secret_key(
        &data_dir.join("authority.key"),
    )?)
}

fn create_data_dir(data_dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|source| StartError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })
}

/// The database URL: `--database`, else SQLite in the data directory.
pub fn database_url(config: &ServerConfig) -> String {
    config
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", config.data_dir.join("login.db").display()))
}

/// A running login server.
pub struct LoginServer {
    quic_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    service: LoginService,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LoginServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginServer")
            .field("quic_addr", &self.quic_addr)
            .field("authority", &self.service.authority_key())
            .finish_non_exhaustive()
    }
}

/// How many ephemeral UDP ports to try when the TCP listener must share the QUIC port
/// and another socket holds that port number over TCP.
const SHARED_PORT_ATTEMPTS: usize = 32;

/// Binds the QUIC endpoint and, per `config.tcp_listen`, the TCP (TLS) listener.
///
/// With an ephemeral QUIC port (`:0`) and the TCP listener on the same port, the port the
/// kernel picked for UDP can be in use over TCP (by another listener or an outgoing
/// connection); then another UDP port is tried. A fixed port that is taken is an error.
async fn bind_listeners(
    config: &ServerConfig,
    authority: &proto::SecretKey,
    options: &transport::ServerOptions,
) -> Result<
    (
        transport::Endpoint,
        SocketAddr,
        Option<transport::TcpListener>,
    ),
    StartError,
> {
    let bind_error = |addr: SocketAddr| {
        move |e: transport::ConnectError| StartError::Bind {
            addr,
            reason: e.to_string(),
        }
    };
    let retry_shared_port =
        config.listen.port() == 0 && matches!(config.tcp_listen, config::TcpListen::SameAsQuic);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let endpoint = transport::Endpoint::bind(config.listen, authority, Some(options.clone()))
            .map_err(bind_error(config.listen))?;
        let quic_addr = endpoint
            .local_addr()
            .map_err(|e| bind_error(config.listen)(e.into()))?;
        let tcp_addr = match config.tcp_listen {
            config::TcpListen::Off => return Ok((endpoint, quic_addr, None)),
            config::TcpListen::SameAsQuic => quic_addr,
            config::TcpListen::At(addr) => addr,
        };
        match transport::TcpListener::bind(tcp_addr, authority, options.clone()).await {
            Ok(tcp) => return Ok((endpoint, quic_addr, Some(tcp))),
            Err(transport::ConnectError::Io(e))
                if retry_shared_port
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < SHARED_PORT_ATTEMPTS =>
            {
                tracing::debug!(
                    port = quic_addr.port(),
                    "TCP side of the QUIC port is taken; trying another port"
                );
            }
            Err(e) => return Err(bind_error(tcp_addr)(e)),
        }
    }
}

impl LoginServer {
    /// Opens the data directory and database, binds the listeners and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Self, StartError> {
        let authority = authority_key(&config.data_dir)?;
        let store = Store::open(&database_url(&config)).await?;
        let service = LoginService::new(store, authority.clone(), config.service.clone())
            .map_err(|e| StartError::Service(e.to_string()))?;
        let options = transport::ServerOptions {
            policy: transport::PeerPolicy::AnyKey,
            tuning: transport::Tuning::server(),
            // One budget shared by the QUIC and TCP listeners.
            connections: transport::ConnectionLimiter::new(config.limits.max_connections)
                .with_max_per_ip(config.limits.max_connections_per_ip),
        };
        let (endpoint, quic_addr, tcp) = bind_listeners(&config, &authority, &options).await?;
        let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut metrics_addr = None;
        if let Some(addr) = config.metrics_listen {
            let handle = shell::metrics_http::install_recorder().map_err(StartError::Metrics)?;
            let listener = shell::metrics_http::bind(addr)
                .await
                .map_err(|e| StartError::Bind {
                    addr,
                    reason: e.to_string(),
                })?;
            metrics_addr = listener.local_addr().ok();
            tasks.push(tokio::spawn(shell::metrics_http::serve(
                listener,
                handle,
                shutdown_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(shell::server::serve(
            endpoint,
            tcp,
            service.clone(),
            config.limits.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(housekeeping(service.clone(), shutdown_rx)));
        tracing::info!(quic = %quic_addr, authority = %service.authority_key(), "login server listening");
        Ok(Self {
            quic_addr,
            tcp_addr,
            metrics_addr,
            service,
            shutdown,
            tasks,
        })
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The TCP (TLS) listener's address, when it runs.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn authority_key(&self) -> PublicKey {
        self.service.authority_key()
    }

    pub fn service(&self) -> &LoginService {
        &self.service
    }

    /// Stops accepting, lets requests in flight finish (bounded), closes the database.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(4), task).await;
        }
        self.service.store().close().await;
    }
}

async fn housekeeping(service: LoginService, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = service.housekeeping().await {
                    tracing::warn!(error = %e, "housekeeping failed");
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}
