//! QUIC endpoints: one UDP socket that both accepts and dials.

use crate::conn::Conn;
use crate::limits::{ConnectionLimiter, ConnectionPermit};
use crate::tcp;
use crate::tls::{self, IdentityError, PeerPolicy, RefusalSlot};
use crate::tuning::Tuning;
use proto::SecretKey;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a QUIC dial may go unanswered before
/// [`Endpoint::connect_with_tcp_fallback`] also tries TCP.
pub const TCP_FALLBACK_DELAY: Duration = Duration::from_secs(1);

/// How an endpoint or TCP listener accepts connections.
///
/// Clones share [`ServerOptions::connections`]: give clones of one `ServerOptions` to a
/// server's [`Endpoint`] and [`crate::TcpListener`] and both draw on one connection budget.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Which client keys the TLS handshake accepts; usually [`PeerPolicy::AnyKey`], with the
    /// key then checked against a credential or directory entry.
    pub policy: PeerPolicy,
    pub tuning: Tuning,
    /// Caps on open connections (established or in handshake), server-wide and per source
    /// address; attempts beyond them are refused at once.
    pub connections: ConnectionLimiter,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            policy: PeerPolicy::AnyKey,
            tuning: Tuning::server(),
            connections: ConnectionLimiter::default(),
        }
    }
}

/// A connection could not be established.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("peer is not who we expected: {0}")]
    PeerIdentity(#[from] IdentityError),
    #[error("handshake timed out")]
    TimedOut,
    #[error("peer refused the connection: {0}")]
    Refused(String),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("network error: {0}")]
    Io(#[from] io::Error),
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

impl From<rustls::Error> for ConnectError {
    fn from(error: rustls::Error) -> Self {
        Self::Config(error.to_string())
    }
}

impl ConnectError {
    fn from_quinn(error: quinn::ConnectionError, slot: Option<&RefusalSlot>) -> Self {
        if let Some(identity) = slot.and_then(RefusalSlot::take) {
            return Self::PeerIdentity(identity);
        }
        match error {
            quinn::ConnectionError::TimedOut => Self::TimedOut,
            quinn::ConnectionError::ConnectionClosed(close) => Self::Refused(close.to_string()),
            quinn::ConnectionError::ApplicationClosed(close) => Self::Refused(close.to_string()),
            quinn::ConnectionError::Reset => Self::Refused("connection reset".to_owned()),
            other => Self::Handshake(other.to_string()),
        }
    }
}

/// A QUIC endpoint bound to one UDP socket, holding our identity key.
///
/// Dials with [`Endpoint::connect`]; when built with [`ServerOptions`], also accepts with
/// [`Endpoint::accept`]. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    identity: Arc<SecretKey>,
    server: Option<ServerOptions>,
    retries_sent: Arc<AtomicU64>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.inner.local_addr().ok())
            .field("identity", &self.identity.public())
            .field("accepts", &self.server.is_some())
            .finish()
    }
}

fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    // STUN and QUIC share sockets; STUN is told apart by its first two bits being zero,
    // which QUIC never sends only if the fixed bit is not greased (RFC 9287).
    config.grease_quic_bit(false);
    config
}

fn quinn_server_config(
    identity: &SecretKey,
    options: &ServerOptions,
) -> Result<quinn::ServerConfig, ConnectError> {
    let tls = tls::server_config(identity, options.policy)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(options.tuning.quinn_transport());
    config.max_incoming(options.connections.max_connections());
    Ok(config)
}

impl Endpoint {
    /// Binds a UDP socket at `addr`. With `server`, the endpoint also accepts connections.
    pub fn bind(
        addr: SocketAddr,
        identity: &SecretKey,
        server: Option<ServerOptions>,
    ) -> Result<Self, ConnectError> {
        Self::from_socket(std::net::UdpSocket::bind(addr)?, identity, server)
    }

    /// Uses an already bound UDP socket (one shared with STUN, for instance).
    pub fn from_socket(
        socket: std::net::UdpSocket,
        identity: &SecretKey,
        server: Option<ServerOptions>,
    ) -> Result<Self, ConnectError> {
        let server_config = server
            .as_ref()
            .map(|options| quinn_server_config(identity, options))
            .transpose()?;
        let inner = quinn::Endpoint::new(
            endpoint_config(),
            server_config,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        Ok(Self {
            inner,
            identity: Arc::new(identity.clone()),
            server,
            retries_sent: Arc::default(),
        })
    }

    /// Uses a custom socket, for instance one that hands STUN packets to someone else and
    /// everything else to QUIC.
    pub fn from_abstract_socket(
        socket: Arc<dyn quinn::AsyncUdpSocket>,
        identity: &SecretKey,
        server: Option<ServerOptions>,
    ) -> Result<Self, ConnectError> {
        let server_config = server
            .as_ref()
            .map(|options| quinn_server_config(identity, options))
            .transpose()?;
        let inner = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config(),
            server_config,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        Ok(Self {
            inner,
            identity: Arc::new(identity.clone()),
            server,
            retries_sent: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Our identity key's public half.
    pub fn identity(&self) -> proto::PublicKey {
        self.identity.public()
    }

    /// Dials `addr`, presenting our identity key and checking the server's key against
    /// `policy`. A wrong server key fails with [`ConnectError::PeerIdentity`].
    ///
    /// In TLS 1.3 the server judges our key after we consider the handshake done, so a
    /// server refusing *us* shows up as the connection closing right after (the first
    /// request fails with a [`crate::ConnError`]), not as an error here.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        policy: PeerPolicy,
        tuning: &Tuning,
    ) -> Result<Conn, ConnectError> {
        let (tls, slot) = tls::client_config_with_slot(&self.identity, policy)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(tuning.quinn_transport());
        // Names are not checked (keys are); an IP address keeps rustls from sending SNI.
        let server_name = addr.ip().to_string();
        let connecting = self
            .inner
            .connect_with(config, addr, &server_name)
            .map_err(|e| ConnectError::Handshake(e.to_string()))?;
        let connection = match tokio::time::timeout(tuning.handshake_timeout, connecting).await {
            Err(_) => return Err(ConnectError::TimedOut),
            Ok(Err(error)) => return Err(ConnectError::from_quinn(error, Some(&slot))),
            Ok(Ok(connection)) => connection,
        };
        let key = tls::peer_key(&connection).ok_or(IdentityError::NotEd25519)?;
        Ok(Conn::quic(connection, key))
    }

    /// Dials `addr` over QUIC and, if QUIC has not connected within [`TCP_FALLBACK_DELAY`]
    /// (UDP blocked or lossy), also over TCP to the same address; the first to connect wins.
    /// An identity error from either attempt is returned at once: a wrong key is not a
    /// reason to try another transport.
    pub async fn connect_with_tcp_fallback(
        &self,
        addr: SocketAddr,
        policy: PeerPolicy,
        tuning: &Tuning,
    ) -> Result<Conn, ConnectError> {
        let quic = self.connect(addr, policy, tuning);
        tokio::pin!(quic);
        match tokio::time::timeout(TCP_FALLBACK_DELAY, &mut quic).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(error @ ConnectError::PeerIdentity(_))) => return Err(error),
            Ok(Err(error)) => {
                tracing::debug!(%error, "QUIC failed; trying TCP");
                return tcp::connect_tcp(addr, &self.identity, policy, tuning).await;
            }
            Err(_) => tracing::debug!("QUIC is slow; racing TCP"),
        }
        let tcp = tcp::connect_tcp(addr, &self.identity, policy, tuning);
        tokio::pin!(tcp);
        tokio::select! {
            result = &mut quic => match result {
                Ok(conn) => Ok(conn),
                Err(error @ ConnectError::PeerIdentity(_)) => Err(error),
                Err(_) => tcp.await,
            },
            result = &mut tcp => match result {
                Ok(conn) => Ok(conn),
                Err(error @ ConnectError::PeerIdentity(_)) => Err(error),
                Err(_) => quic.await,
            },
        }
    }

    /// The next connection attempt; `None` once the endpoint is closed or does not accept.
    /// Attempts beyond [`ServerOptions::connections`] are refused here and never returned.
    /// Complete each attempt in its own task so slow handshakes do not hold up the others.
    pub async fn accept(&self) -> Option<Incoming> {
        let options = self.server.as_ref()?;
        loop {
            let incoming = self.inner.accept().await?;
            let ip = incoming.remote_address().ip();
            // A Retry costs the client a round trip but proves it receives at the address it
            // claims, so spoofed Initials cannot take slots (RFC 9000 §8.1.2).
            if !incoming.remote_address_validated()
                && incoming.may_retry()
                && options.connections.wants_address_validation(ip)
            {
                if incoming.retry().is_ok() {
                    self.retries_sent.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            let permit = match options.connections.try_acquire(ip) {
                Ok(permit) => permit,
                Err(refusal) => {
                    tracing::debug!(%refusal, "refusing a QUIC connection");
                    incoming.refuse();
                    continue;
                }
            };
            return Some(Incoming {
                inner: IncomingInner::Quic(Box::new(incoming), permit),
                handshake_timeout: options.tuning.handshake_timeout,
            });
        }
    }

    /// Connection attempts answered with a QUIC Retry to validate the client's address
    /// (see [`ConnectionLimiter::with_address_validation_above`]).
    pub fn retries_sent(&self) -> u64 {
        self.retries_sent.load(Ordering::Relaxed)
    }

    /// Connections currently open (including handshakes in progress and connections we
    /// dialed). [`ConnectionLimiter::open_connections`] counts only accepted ones, on every
    /// listener sharing the limiter.
    pub fn open_connections(&self) -> usize {
        self.inner.open_connections()
    }

    /// Closes every connection with `code` and `reason`, and stops accepting.
    pub fn close(&self, code: u32, reason: &str) {
        self.inner.close(code.into(), reason.as_bytes());
    }

    /// Waits until every connection has been closed and its peer told.
    pub async fn wait_idle(&self) {
        self.inner.wait_idle().await;
    }

    /// The quinn endpoint underneath, for what this crate does not wrap.
    pub fn quinn(&self) -> &quinn::Endpoint {
        &self.inner
    }
}

pub(crate) enum IncomingInner {
    Quic(Box<quinn::Incoming>, ConnectionPermit),
    Tcp(tcp::PendingTcp),
}

/// A connection attempt accepted by an [`Endpoint`] or a [`crate::TcpListener`], not yet
/// authenticated.
pub struct Incoming {
    pub(crate) inner: IncomingInner,
    pub(crate) handshake_timeout: Duration,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("remote_address", &self.remote_address())
            .finish()
    }
}

impl Incoming {
    pub fn remote_address(&self) -> SocketAddr {
        match &self.inner {
            IncomingInner::Quic(incoming, _) => incoming.remote_address(),
            IncomingInner::Tcp(pending) => pending.remote_address(),
        }
    }

    /// Runs the handshake. On success the peer has proved its key (see
    /// [`Conn::peer_key`]), which the server policy allowed.
    pub async fn complete(self) -> Result<Conn, ConnectError> {
        let timeout = self.handshake_timeout;
        let handshake = async move {
            match self.inner {
                IncomingInner::Quic(incoming, permit) => {
                    let connecting = incoming
                        .accept()
                        .map_err(|e| ConnectError::from_quinn(e, None))?;
                    let connection = connecting
                        .await
                        .map_err(|e| ConnectError::from_quinn(e, None))?;
                    let key = tls::peer_key(&connection).ok_or(IdentityError::NotEd25519)?;
                    Ok(Conn::quic(connection, key).holding(permit))
                }
                IncomingInner::Tcp(pending) => pending.complete().await,
            }
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .unwrap_or(Err(ConnectError::TimedOut))
    }

    /// Refuses the attempt without a handshake.
    pub fn refuse(self) {
        match self.inner {
            IncomingInner::Quic(incoming, _) => incoming.refuse(),
            IncomingInner::Tcp(pending) => pending.refuse(),
        }
    }
}
