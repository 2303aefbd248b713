//! One authenticated connection, over QUIC or over TLS-over-TCP, with the same stream API.

use crate::limits::ConnectionPermit;
use crate::tcp::TcpConn;
use proto::PublicKey;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// The sending half of a bidirectional stream. `shutdown()` (from `AsyncWriteExt`) finishes
/// it: the peer then reads a clean end of stream.
pub type SendStream = Box<dyn AsyncWrite + Send + Unpin>;

/// The receiving half of a bidirectional stream.
pub type RecvStream = Box<dyn AsyncRead + Send + Unpin>;

/// Which transport carries a [`Conn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    Quic,
    Tcp,
}

/// A connection ended or could not open a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    #[error("peer stopped responding (idle timeout)")]
    TimedOut,
    #[error("peer closed the connection (code {code}): {reason}")]
    ClosedByPeer { code: u64, reason: String },
    #[error("connection closed locally")]
    ClosedLocally,
    #[error("connection failed: {0}")]
    Failed(String),
}

impl From<quinn::ConnectionError> for ConnError {
    fn from(error: quinn::ConnectionError) -> Self {
        match error {
            quinn::ConnectionError::ApplicationClosed(close) => Self::ClosedByPeer {
                code: close.error_code.into_inner(),
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            quinn::ConnectionError::LocallyClosed => Self::ClosedLocally,
            quinn::ConnectionError::TimedOut => Self::TimedOut,
            other => Self::Failed(other.to_string()),
        }
    }
}

#[derive(Clone)]
enum Inner {
    Quic(quinn::Connection),
    Tcp(TcpConn),
}

/// An authenticated connection: the peer proved [`Conn::peer_key`] in a TLS 1.3 handshake.
///
/// Cheap to clone; all clones share the connection. Streams opened by the peer become
/// visible to [`Conn::accept_bi`] once the peer has written to them.
#[derive(Clone)]
pub struct Conn {
    inner: Inner,
    peer_key: PublicKey,
    remote_address: SocketAddr,
    /// An accepted QUIC connection's slot in the server's limiter, freed when the last
    /// clone goes: quinn closes a connection once nothing refers to it.
    _permit: Option<Arc<ConnectionPermit>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("kind", &self.kind())
            .field("peer_key", &self.peer_key)
            .field("remote_address", &self.remote_address)
            .finish()
    }
}

impl Conn {
    pub(crate) fn quic(connection: quinn::Connection, peer_key: PublicKey) -> Self {
        let remote_address = connection.remote_address();
        Self {
            inner: Inner::Quic(connection),
            peer_key,
            remote_address,
            _permit: None,
        }
    }

    pub(crate) fn holding(mut self, permit: ConnectionPermit) -> Self {
        self._permit = Some(Arc::new(permit));
        self
    }

    pub(crate) fn tcp(connection: TcpConn, peer_key: PublicKey, remote: SocketAddr) -> Self {
        Self {
            inner: Inner::Tcp(connection),
            peer_key,
            remote_address: remote,
            _permit: None,
        }
    }

    /// The Ed25519 key the peer proved in the handshake.
    pub fn peer_key(&self) -> PublicKey {
        self.peer_key
    }

    pub fn remote_address(&self) -> SocketAddr {
        match &self.inner {
            // QUIC connections migrate; report where the peer is now.
            Inner::Quic(connection) => connection.remote_address(),
            Inner::Tcp(_) => self.remote_address,
        }
    }

    pub fn kind(&self) -> ConnKind {
        match self.inner {
            Inner::Quic(_) => ConnKind::Quic,
            Inner::Tcp(_) => ConnKind::Tcp,
        }
    }

    /// The QUIC connection underneath, for datagrams and statistics; `None` over TCP.
    pub fn as_quic(&self) -> Option<&quinn::Connection> {
        match &self.inner {
            Inner::Quic(connection) => Some(connection),
            Inner::Tcp(_) => None,
        }
    }

    /// 32 bytes from the TLS keying-material exporter (RFC 8446 §7.5) with `label` and an
    /// empty context: the same on both ends of this connection and nowhere else. `None`
    /// over TCP (parked sessions, its one user, need the QUIC socket anyway).
    pub fn export_keying_material(&self, label: &[u8]) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        self.as_quic()?
            .export_keying_material(&mut out, label, &[])
            .ok()?;
        Some(out)
    }

    /// Opens a bidirectional stream. Waits while the peer's stream limit is reached.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), ConnError> {
        match &self.inner {
            Inner::Quic(connection) => {
                let (send, recv) = connection.open_bi().await?;
                Ok((Box::new(send), Box::new(recv)))
            }
            Inner::Tcp(connection) => connection.open_bi().await,
        }
    }

    /// The next bidirectional stream the peer opened; an error once the connection ends.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), ConnError> {
        match &self.inner {
            Inner::Quic(connection) => {
                let (send, recv) = connection.accept_bi().await?;
                Ok((Box::new(send), Box::new(recv)))
            }
            Inner::Tcp(connection) => connection.accept_bi().await,
        }
    }

    /// Closes the connection at once; streams are abandoned. Over QUIC the peer sees
    /// `code` and `reason`; over TCP it sees the connection end.
    pub fn close(&self, code: u32, reason: &str) {
        match &self.inner {
            Inner::Quic(connection) => connection.close(code.into(), reason.as_bytes()),
            Inner::Tcp(connection) => connection.close(),
        }
    }

    /// Waits until the connection ends and says why.
    pub async fn closed(&self) -> ConnError {
        match &self.inner {
            Inner::Quic(connection) => connection.closed().await.into(),
            Inner::Tcp(connection) => connection.closed().await,
        }
    }
}
