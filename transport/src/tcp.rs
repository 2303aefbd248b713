//! The same service over TLS-over-TCP, for clients whose UDP is blocked.
//!
//! A TCP connection carries TLS 1.3 with exactly the verifiers, keys and ALPN of the QUIC
//! path, and inside it yamux (the multiplexer libp2p uses) provides the bidirectional
//! streams [`crate::Conn`] exposes. yamux was chosen over a home-made framing because flow
//! control per stream, half-close and stream resets are already right there.
//!
//! Differences from QUIC that callers may notice:
//! - no datagrams ([`crate::Conn::as_quic`] is `None`), and close codes do not travel;
//! - yamux gives every stream a fixed 256 KiB receive window and counts the streams of both
//!   directions together, so a connection carries at most [`YAMUX_MAX_STREAMS`] (8) streams
//!   and buffers at most 8 × 256 KiB = 2 MiB of unread data, whatever
//!   [`Tuning::max_concurrent_bi_streams`] says. Each side opens at most half of them
//!   ([`YAMUX_MAX_OUTBOUND_STREAMS`]); further [`crate::Conn::open_bi`] calls wait for one
//!   to end. A peer that opens more than 8 streams has its connection ended by yamux, and
//!   since yamux has no stream credit, a peer that keeps opening streams while we still
//!   hold the ones it dropped can hit that too;
//! - liveness comes from TCP keep-alive probes and `TCP_USER_TIMEOUT`, set so a dead peer
//!   is noticed after about [`Tuning::idle_timeout`].
//!
//! A port may carry another protocol beside the TLS session (a supernode's TURN over TCP):
//! [`Incoming::sort_by_first_bytes`] peeks at each connection's first bytes and keeps the
//! TLS attempts, handing the others back raw.

use crate::conn::{Conn, ConnError, RecvStream, SendStream};
use crate::limits::{ConnectionLimiter, ConnectionPermit};
use crate::quic::{ConnectError, Incoming, IncomingInner, ServerOptions};
use crate::tls::{self, IdentityError, PeerPolicy};
use crate::tuning::Tuning;
use proto::{PublicKey, SecretKey};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt as _, TokioAsyncReadCompatExt as _};
use tokio_util::sync::CancellationToken;

/// yamux's fixed initial window per stream.
const YAMUX_STREAM_WINDOW_BYTES: usize = 256 * 1024;

/// Streams of both directions together that one TCP connection may carry. yamux requires
/// the connection window to hold a full stream window per stream, so this bounds what one
/// connection makes us buffer: 8 × 256 KiB = 2 MiB. Both ends must agree on it, since
/// yamux ends the connection when the peer opens one too many: it is a constant, not
/// tuning.
pub const YAMUX_MAX_STREAMS: usize = 8;

/// Streams one side opens at once: half of [`YAMUX_MAX_STREAMS`], so the two sides'
/// streams together never exceed it.
pub const YAMUX_MAX_OUTBOUND_STREAMS: usize = YAMUX_MAX_STREAMS / 2;

/// The connection receive window yamux gets: exactly one stream window per stream.
const YAMUX_CONNECTION_WINDOW_BYTES: usize = YAMUX_MAX_STREAMS * YAMUX_STREAM_WINDOW_BYTES;

type TlsStream = tokio_rustls::TlsStream<TcpStream>;

type Opener = oneshot::Sender<Result<yamux::Stream, ConnError>>;

/// Accepts TLS-over-TCP connections.
pub struct TcpListener {
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tuning: Tuning,
    connections: ConnectionLimiter,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("local_addr", &self.listener.local_addr().ok())
            .finish()
    }
}

impl TcpListener {
    /// Listens on `addr` with our identity key; `options` as for [`crate::Endpoint::bind`].
    pub async fn bind(
        addr: SocketAddr,
        identity: &SecretKey,
        options: ServerOptions,
    ) -> Result<Self, ConnectError> {
        let tls = tls::server_config(identity, options.policy)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(tls),
            tuning: options.tuning,
            connections: options.connections,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection attempt. Attempts beyond [`ServerOptions::connections`] are
    /// closed at once and never returned. Complete each attempt in its own task.
    pub async fn accept(&self) -> Option<Incoming> {
        loop {
            let (stream, remote) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(%error, "accepting a TCP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let permit = match self.connections.try_acquire(remote.ip()) {
                Ok(permit) => permit,
                Err(refusal) => {
                    tracing::debug!(%refusal, "refusing a TCP connection");
                    continue;
                }
            };
            return Some(Incoming {
                inner: IncomingInner::Tcp(PendingTcp {
                    stream,
                    remote,
                    acceptor: self.acceptor.clone(),
                    tuning: self.tuning.clone(),
                    permit,
                }),
                handshake_timeout: self.tuning.handshake_timeout,
            });
        }
    }
}

/// Dials `addr` over TCP and TLS, presenting `identity` and checking the server's key
/// against `policy`; the TCP counterpart of [`crate::Endpoint::connect`].
pub async fn connect_tcp(
    addr: SocketAddr,
    identity: &SecretKey,
    policy: PeerPolicy,
    tuning: &Tuning,
) -> Result<Conn, ConnectError> {
    let (config, slot) = tls::client_config_with_slot(identity, policy)?;
    let handshake = async {
        let stream = TcpStream::connect(addr).await?;
        configure_socket(&stream, tuning)?;
        let server_name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, stream)
            .await
            .map_err(|error| match slot.take() {
                Some(identity) => ConnectError::PeerIdentity(identity),
                None => handshake_error(error),
            })?;
        let key = authenticated_key(
            tls.get_ref().1.alpn_protocol(),
            tls.get_ref().1.peer_certificates(),
        )?;
        let connection = TcpConn::start(
            tokio_rustls::TlsStream::Client(tls),
            yamux::Mode::Client,
            tuning,
            None,
        );
        Ok(Conn::tcp(connection, key, addr))
    };
    tokio::time::timeout(tuning.handshake_timeout, handshake)
        .await
        .unwrap_or(Err(ConnectError::TimedOut))
}

fn handshake_error(error: io::Error) -> ConnectError {
    match error.kind() {
        io::ErrorKind::TimedOut => ConnectError::TimedOut,
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {
            ConnectError::Refused(error.to_string())
        }
        _ => ConnectError::Handshake(error.to_string()),
    }
}

/// The peer's key once the handshake is done, and a check that ALPN was agreed (rustls
/// lets a TCP client that offers no ALPN through).
fn authenticated_key(
    alpn: Option<&[u8]>,
    certificates: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Result<PublicKey, ConnectError> {
    if alpn != Some(tls::ALPN) {
        return Err(ConnectError::Handshake(
            "peer did not negotiate ALPN peerphone/1".into(),
        ));
    }
    certificates
        .and_then(tls::key_from_certificates)
        .ok_or(ConnectError::PeerIdentity(IdentityError::NotEd25519))
}

/// Keep-alive probes every `keep_alive_interval` once idle, and enough of them that a dead
/// peer is given up after about `idle_timeout`; `TCP_USER_TIMEOUT` does the same for data
/// that is never acknowledged.
fn configure_socket(stream: &TcpStream, tuning: &Tuning) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let idle = tuning.idle_timeout.max(Duration::from_secs(1));
    let probe_every = tuning
        .keep_alive_interval
        .unwrap_or(idle / 3)
        .clamp(Duration::from_secs(1), idle);
    let probes = (idle.as_secs() / probe_every.as_secs().max(1))
        .saturating_sub(1)
        .clamp(1, 255) as u32;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(probe_every)
        .with_interval(probe_every)
        .with_retries(probes);
    let socket = socket2::SockRef::from(stream);
    socket.set_tcp_keepalive(&keepalive)?;
    socket.set_tcp_user_timeout(Some(idle))?;
    Ok(())
}

/// A TCP connection accepted but not yet authenticated.
pub(crate) struct PendingTcp {
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    tuning: Tuning,
    permit: ConnectionPermit,
}

impl PendingTcp {
    pub(crate) fn remote_address(&self) -> SocketAddr {
        self.remote
    }

    pub(crate) fn refuse(self) {}

    pub(crate) async fn complete(self) -> Result<Conn, ConnectError> {
        configure_socket(&self.stream, &self.tuning)?;
        let tls = self
            .acceptor
            .accept(self.stream)
            .await
            .map_err(handshake_error)?;
        let key = authenticated_key(
            tls.get_ref().1.alpn_protocol(),
            tls.get_ref().1.peer_certificates(),
        )?;
        let connection = TcpConn::start(
            tokio_rustls::TlsStream::Server(tls),
            yamux::Mode::Server,
            &self.tuning,
            Some(self.permit),
        );
        Ok(Conn::tcp(connection, key, self.remote))
    }
}

/// Bytes [`Incoming::sort_by_first_bytes`] looks at, at most.
pub const SORT_PREFIX_BYTES: usize = 16;

/// Longest pause between two looks at a connection whose first bytes are still incomplete
/// (a peeked socket stays readable, so waiting for more bytes means polling).
const SORT_PEEK_BACKOFF_MAX: Duration = Duration::from_millis(50);

/// What the first bytes of a connection on a shared TCP port said it is.
#[derive(Debug)]
pub enum Sorted {
    /// A TLS ClientHello (or a QUIC attempt, which needs no sorting): complete it as usual,
    /// within what is left of the handshake timeout.
    Tls(Incoming),
    /// Another protocol, claimed by the caller's check: the raw stream with nothing read
    /// from it. The listener's connection slot is released: the new owner applies its own
    /// limits.
    Claimed {
        stream: TcpStream,
        remote: SocketAddr,
    },
}

/// Why a connection was closed while its first bytes were being sorted.
#[derive(Debug, thiserror::Error)]
pub enum SortError {
    #[error("the first bytes did not arrive within the handshake timeout")]
    TimedOut,
    #[error("the first bytes are neither TLS nor a claimed protocol")]
    Unrecognised,
    #[error("the peer closed before sending enough to tell its protocol")]
    Closed,
    #[error("reading the first bytes failed: {0}")]
    Io(#[from] io::Error),
}

/// A TLS connection opens with a handshake record (content type 22) of TLS major version 3.
fn starts_like_tls(prefix: &[u8]) -> Option<bool> {
    match prefix {
        [] | [0x16] => None,
        [0x16, 0x03, ..] => Some(true),
        _ => Some(false),
    }
}

impl Incoming {
    /// Tells a TLS attempt on a TCP port shared with another protocol from that protocol,
    /// by peeking at (never reading) its first bytes: a TLS ClientHello stays a
    /// [`Sorted::Tls`]; a connection `claim` accepts is handed back raw; anything else is
    /// closed. `claim` sees up to [`SORT_PREFIX_BYTES`] bytes and answers `None` while it
    /// needs more. The wait counts against the handshake timeout, so sorting plus the TLS
    /// handshake together take no longer than an unsorted handshake may. Call it in the
    /// connection's own task: it waits for the peer.
    pub async fn sort_by_first_bytes(
        self,
        claim: impl Fn(&[u8]) -> Option<bool>,
    ) -> Result<Sorted, SortError> {
        let started = tokio::time::Instant::now();
        let Incoming {
            inner,
            handshake_timeout,
        } = self;
        let pending = match inner {
            IncomingInner::Tcp(pending) => pending,
            quic @ IncomingInner::Quic(..) => {
                return Ok(Sorted::Tls(Incoming {
                    inner: quic,
                    handshake_timeout,
                }));
            }
        };
        let claimed = tokio::time::timeout(handshake_timeout, sort_prefix(&pending.stream, claim))
            .await
            .unwrap_or(Err(SortError::TimedOut))?;
        if claimed {
            return Ok(Sorted::Claimed {
                stream: pending.stream,
                remote: pending.remote,
            });
        }
        Ok(Sorted::Tls(Incoming {
            inner: IncomingInner::Tcp(pending),
            handshake_timeout: handshake_timeout.saturating_sub(started.elapsed()),
        }))
    }
}

/// `Ok(true)` when `claim` takes the connection, `Ok(false)` for TLS.
async fn sort_prefix(
    stream: &TcpStream,
    claim: impl Fn(&[u8]) -> Option<bool>,
) -> Result<bool, SortError> {
    let mut prefix = [0u8; SORT_PREFIX_BYTES];
    let mut backoff = Duration::from_millis(1);
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut prefix).await?;
        if n == 0 {
            return Err(SortError::Closed);
        }
        let bytes = &prefix[..n];
        match (starts_like_tls(bytes), claim(bytes)) {
            (Some(true), _) => return Ok(false),
            (_, Some(true)) => return Ok(true),
            (Some(false), Some(false)) => return Err(SortError::Unrecognised),
            _ if n == SORT_PREFIX_BYTES => return Err(SortError::Unrecognised),
            _ => {}
        }
        // More bytes are needed; peek returns at once while any are queued.
        if n > seen {
            seen = n;
            backoff = Duration::from_millis(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(SORT_PEEK_BACKOFF_MAX);
    }
}

fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    // In this order: yamux asserts after each call that the window covers a full stream
    // window per stream.
    config.set_max_num_streams(YAMUX_MAX_STREAMS);
    config.set_max_connection_receive_window(Some(YAMUX_CONNECTION_WINDOW_BYTES));
    config
}

/// A multiplexed TLS-over-TCP connection: a handle to the task that drives yamux.
#[derive(Clone)]
pub(crate) struct TcpConn {
    shared: Arc<Shared>,
}

struct Shared {
    openers: mpsc::Sender<Opener>,
    inbound: Mutex<mpsc::Receiver<yamux::Stream>>,
    outbound_slots: Arc<Semaphore>,
    close: CancellationToken,
    ended: watch::Receiver<Option<ConnError>>,
}

impl TcpConn {
    fn start(
        io: TlsStream,
        mode: yamux::Mode,
        tuning: &Tuning,
        connection_permit: Option<ConnectionPermit>,
    ) -> Self {
        let per_direction =
            (tuning.max_concurrent_bi_streams as usize).clamp(1, YAMUX_MAX_OUTBOUND_STREAMS);
        let connection = yamux::Connection::new(io.compat(), yamux_config(), mode);
        let (openers, opener_rx) = mpsc::channel(per_direction);
        let (inbound_tx, inbound) = mpsc::channel(YAMUX_MAX_STREAMS);
        let (ended_tx, ended) = watch::channel(None);
        let close = CancellationToken::new();
        let driver = Driver {
            connection,
            openers: opener_rx,
            pending: None,
            inbound: inbound_tx,
            cancelled: Box::pin(close.clone().cancelled_owned()),
            closing: None,
        };
        tokio::spawn(async move {
            let reason = driver.await;
            tracing::debug!(%reason, "TCP connection ended");
            let _ = ended_tx.send(Some(reason));
            drop(connection_permit);
        });
        Self {
            shared: Arc::new(Shared {
                openers,
                inbound: Mutex::new(inbound),
                outbound_slots: Arc::new(Semaphore::new(per_direction)),
                close,
                ended,
            }),
        }
    }

    fn end_reason(&self) -> ConnError {
        self.shared
            .ended
            .borrow()
            .clone()
            .unwrap_or(ConnError::ClosedLocally)
    }

    fn wrap(
        &self,
        stream: yamux::Stream,
        permit: Option<OwnedSemaphorePermit>,
    ) -> (SendStream, RecvStream) {
        let stream = MuxStream {
            inner: stream.compat(),
            _permit: permit,
            _keep_driver: self.shared.openers.clone(),
        };
        let (recv, send) = tokio::io::split(stream);
        (Box::new(send), Box::new(recv))
    }

    pub(crate) async fn open_bi(&self) -> Result<(SendStream, RecvStream), ConnError> {
        if self.shared.ended.borrow().is_some() {
            return Err(self.end_reason());
        }
        let mut ended = self.shared.ended.clone();
        let permit = tokio::select! {
            permit = self.shared.outbound_slots.clone().acquire_owned() => {
                permit.map_err(|_| self.end_reason())?
            }
            _ = ended.wait_for(Option::is_some) => return Err(self.end_reason()),
        };
        let (reply, answer) = oneshot::channel();
        self.shared
            .openers
            .send(reply)
            .await
            .map_err(|_| self.end_reason())?;
        let stream = answer.await.map_err(|_| self.end_reason())??;
        Ok(self.wrap(stream, Some(permit)))
    }

    pub(crate) async fn accept_bi(&self) -> Result<(SendStream, RecvStream), ConnError> {
        let mut inbound = self.shared.inbound.lock().await;
        match inbound.recv().await {
            Some(stream) => Ok(self.wrap(stream, None)),
            None => Err(self.end_reason()),
        }
    }

    pub(crate) fn close(&self) {
        self.shared.close.cancel();
    }

    pub(crate) async fn closed(&self) -> ConnError {
        let mut ended = self.shared.ended.clone();
        let _ = ended.wait_for(Option::is_some).await;
        self.end_reason()
    }
}

/// One yamux stream as tokio IO. Holds an opener sender so the driver keeps running while
/// any stream is alive, even after every [`TcpConn`] handle is gone.
struct MuxStream {
    inner: Compat<yamux::Stream>,
    _permit: Option<OwnedSemaphorePermit>,
    _keep_driver: mpsc::Sender<Opener>,
}

impl AsyncRead for MuxStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn conn_error(error: yamux::ConnectionError) -> ConnError {
    match error {
        yamux::ConnectionError::Io(e) if e.kind() == io::ErrorKind::TimedOut => ConnError::TimedOut,
        yamux::ConnectionError::Closed => ConnError::ClosedByPeer {
            code: 0,
            reason: "connection closed".into(),
        },
        other => ConnError::Failed(other.to_string()),
    }
}

/// Drives one yamux connection: hands out outbound streams on request, queues inbound
/// streams for `accept_bi`, and closes on request or when nothing refers to it any more.
/// Resolves to why the connection ended.
struct Driver {
    connection: yamux::Connection<Compat<TlsStream>>,
    openers: mpsc::Receiver<Opener>,
    pending: Option<Opener>,
    inbound: mpsc::Sender<yamux::Stream>,
    cancelled: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    /// Set once closing has begun: the reason to report when it completes.
    closing: Option<ConnError>,
}

impl std::future::Future for Driver {
    type Output = ConnError;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ConnError> {
        let this = &mut *self;
        if this.closing.is_none() && this.cancelled.as_mut().poll(cx).is_ready() {
            this.closing = Some(ConnError::ClosedLocally);
        }
        while this.closing.is_none() {
            if this.pending.is_none() {
                match this.openers.poll_recv(cx) {
                    Poll::Ready(Some(opener)) => this.pending = Some(opener),
                    Poll::Ready(None) => {
                        this.closing = Some(ConnError::ClosedLocally);
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            match this.connection.poll_new_outbound(cx) {
                Poll::Ready(Ok(stream)) => {
                    if let Some(opener) = this.pending.take() {
                        // A caller that gave up simply drops the stream.
                        let _ = opener.send(Ok(stream));
                    }
                }
                // Our own streams are capped below the limit, but streams the peer opened
                // count too: wait for one to end (its removal wakes this task through
                // the connection) rather than fail the connection.
                Poll::Ready(Err(yamux::ConnectionError::TooManyStreams)) => break,
                Poll::Ready(Err(error)) => {
                    let error = conn_error(error);
                    if let Some(opener) = this.pending.take() {
                        let _ = opener.send(Err(error.clone()));
                    }
                    return Poll::Ready(error);
                }
                Poll::Pending => break,
            }
        }
        if let Some(reason) = &this.closing {
            if let Some(opener) = this.pending.take() {
                let _ = opener.send(Err(reason.clone()));
            }
            return match this.connection.poll_close(cx) {
                Poll::Ready(_) => Poll::Ready(reason.clone()),
                Poll::Pending => Poll::Pending,
            };
        }
        loop {
            match this.connection.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    if this.inbound.try_send(stream).is_err() {
                        tracing::debug!("dropping an inbound stream: nobody is accepting");
                    }
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(conn_error(error)),
                Poll::Ready(None) => {
                    return Poll::Ready(ConnError::ClosedByPeer {
                        code: 0,
                        reason: "connection closed".into(),
                    });
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_record_header_is_told_from_other_first_bytes() {
        assert_eq!(starts_like_tls(&[]), None);
        assert_eq!(
            starts_like_tls(&[0x16]),
            None,
            "one byte could still be TLS"
        );
        assert_eq!(starts_like_tls(&[0x16, 0x03, 0x01]), Some(true));
        assert_eq!(starts_like_tls(&[0x16, 0x02]), Some(false));
        // A STUN Allocate request starts 0x00 0x03.
        assert_eq!(starts_like_tls(&[0x00, 0x03, 0x00, 0x00]), Some(false));
        assert_eq!(starts_like_tls(b"GET / HTTP/1.1"), Some(false));
    }

    #[test]
    fn one_tcp_connection_buffers_at_most_2_mib() {
        const { assert!(YAMUX_CONNECTION_WINDOW_BYTES <= 2 * 1024 * 1024) };
        const { assert!(YAMUX_MAX_OUTBOUND_STREAMS * 2 <= YAMUX_MAX_STREAMS) };
        // yamux panics on a window below one stream window per stream.
        let _config = yamux_config();
    }
}
