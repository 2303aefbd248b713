//! The listener (QUIC, and TLS-over-TCP for clients whose UDP is blocked): accepts
//! connections (TLS identity = the authority key), serves each bidirectional stream as one
//! request, and shuts down cleanly.
//!
//! Bounds on what a peer can make us hold: a connection limit (QUIC and TCP together, and
//! per source address), 32 streams per connection (flow control), a global limit of requests in flight
//! (answered with `Busy` beyond it, without reading the request), frames of at most
//! [`MAX_LOGIN_FRAME`] bytes and [`REQUEST_READ_TIMEOUT`] to send a whole request.

use crate::service::{LoginService, Peer, client_request_kind, supernode_request_kind};
use proto::frame::{self, HEADER_LEN};
use proto::login::{
    self, LoginError, LoginToClient, LoginToSupernode, MAX_LOGIN_FRAME,
    MAX_LOGIN_TO_SUPERNODE_FRAME, Role,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument as _;

/// A peer must deliver its hello and request within this time after opening the stream.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers are written within this time, or the stream is dropped.
const RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits of the listener.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Connections open at once, QUIC and TCP together.
    pub max_connections: usize,
    /// Connections open at once from one source address (IPv6: one /64); loopback is
    /// exempt.
    pub max_connections_per_ip: usize,
    pub max_requests_in_flight: usize,
    pub request_read_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 16,
            max_requests_in_flight: 1024,
            request_read_timeout: REQUEST_READ_TIMEOUT,
        }
    }
}

/// Serves `endpoint` until `shutdown` turns true; then closes every connection and waits
/// (bounded) for requests in flight.
pub async fn serve(
    endpoint: transport::Endpoint,
    tcp: Option<transport::TcpListener>,
    service: LoginService,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let in_flight = Arc::new(Semaphore::new(limits.max_requests_in_flight.max(1)));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = accept_any(&endpoint, tcp.as_ref()) => {
                let Some(incoming) = incoming else { break };
                let service = service.clone();
                let in_flight = in_flight.clone();
                let limits = limits.clone();
                let shutdown = shutdown.clone();
                let remote = incoming.remote_address();
                // Addresses are personal data: the span only shows at DEBUG.
                let span = tracing::debug_span!("connection", %remote);
                connections.spawn(async move {
                    match incoming.complete().await {
                        Ok(conn) => serve_connection(conn, service, in_flight, limits, shutdown).await,
                        Err(e) => tracing::debug!(error = %e, "handshake failed"),
                    }
                }.instrument(span));
                metrics::gauge!("login_connections").set(endpoint.open_connections() as f64);
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                metrics::gauge!("login_connections").set(endpoint.open_connections() as f64);
            }
            _ = shutdown.changed() => break,
        }
    }
    // Let requests in flight finish (their answers may be durable writes the client waits
    // for), then close.
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(3), drain).await;
    endpoint.close(0, "login server shutting down");
    connections.abort_all();
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

/// The next connection attempt on QUIC or TCP.
async fn accept_any(
    endpoint: &transport::Endpoint,
    tcp: Option<&transport::TcpListener>,
) -> Option<transport::Incoming> {
    let tcp_accept = async {
        match tcp {
            Some(listener) => listener.accept().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        incoming = endpoint.accept() => incoming,
        incoming = tcp_accept => incoming,
    }
}

async fn serve_connection(
    conn: transport::Conn,
    service: LoginService,
    in_flight: Arc<Semaphore>,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = Peer {
        key: conn.peer_key(),
        addr: conn.remote_address(),
    };
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => {
                let Ok((send, recv)) = accepted else { break };
                let service = service.clone();
                let permit = in_flight.clone().try_acquire_owned();
                let timeout = limits.request_read_timeout;
                streams.spawn(async move {
                    match permit {
                        Ok(_permit) => serve_stream(&service, &peer, send, recv, timeout).await,
                        Err(_) => {
                            metrics::counter!("login_busy_total").increment(1);
                            let busy = LoginToClient::Error(LoginError::Busy { retry_after_secs: 1 });
                            respond(send, &busy, MAX_LOGIN_FRAME).await;
                        }
                    }
                });
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    // Finish what was accepted; new streams are no longer taken.
    let drain = async { while streams.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(3), drain).await;
    conn.close(0, "bye");
}

/// How reading a request failed.
enum ReadError {
    /// The peer closed the stream before sending anything: nothing to answer.
    Closed,
    Answer(LoginError),
}

/// Reads one frame body of at most `max_len` bytes.
async fn read_body<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    max_len: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match reader.read(&mut header[filled..]).await {
            Ok(0) if filled == 0 => return Err(ReadError::Closed),
            Ok(0) => return Err(ReadError::Answer(LoginError::Malformed)),
            Ok(n) => filled += n,
            Err(_) => return Err(ReadError::Closed),
        }
    }
    let len =
        frame::body_len(header, max_len).map_err(|_| ReadError::Answer(LoginError::TooLarge))?;
    // Grow with the bytes that actually arrive: announcing a large frame and sending
    // nothing must not cost the announced size in memory.
    let mut body = Vec::with_capacity(len.min(4096));
    match (&mut *reader).take(len as u64).read_to_end(&mut body).await {
        Ok(n) if n == len => Ok(body),
        Ok(_) => Err(ReadError::Answer(LoginError::Malformed)),
        Err(_) => Err(ReadError::Closed),
    }
}

/// One decoded request.
enum Request {
    Client(login::ClientToLogin),
    Supernode(login::SupernodeToLogin),
}

async fn read_request<R: AsyncRead + Unpin + ?Sized>(recv: &mut R) -> Result<Request, ReadError> {
    let hello = read_body(recv, MAX_LOGIN_FRAME).await?;
    let hello = login::decode_stream_hello(&hello).map_err(|e| ReadError::Answer(e.into()))?;
    if hello.protocol_version != proto::PROTOCOL_VERSION {
        return Err(ReadError::Answer(LoginError::VersionMismatch {
            client: hello.protocol_version,
            server: proto::PROTOCOL_VERSION,
        }));
    }
    let body = read_body(recv, MAX_LOGIN_FRAME).await?;
    match hello.role {
        Role::Client => login::decode_client_to_login(&body).map(Request::Client),
        Role::Supernode => login::decode_supernode_to_login(&body).map(Request::Supernode),
    }
    .map_err(|e| ReadError::Answer(e.into()))
}

async fn respond<W, T>(mut send: W, message: &T, max_len: usize)
where
    W: AsyncWrite + Unpin,
    T: serde::Serialize,
{
    let write = async {
        let bytes = match frame::encode(message, max_len) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "answer does not fit a frame");
                frame::encode(&LoginToClient::Error(LoginError::Internal), MAX_LOGIN_FRAME)
                    .map_err(std::io::Error::other)?
            }
        };
        send.write_all(&bytes).await?;
        send.shutdown().await
    };
    if let Ok(Err(e)) | Err(e) = tokio::time::timeout(RESPONSE_WRITE_TIMEOUT, write)
        .await
        .map_err(std::io::Error::other)
    {
        tracing::debug!(error = %e, "could not deliver an answer");
    }
}

/// Serves one stream: hello, request, answer, finish.
pub async fn serve_stream<W, R>(
    service: &LoginService,
    peer: &Peer,
    send: W,
    mut recv: R,
    read_timeout: Duration,
) where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let request = match tokio::time::timeout(read_timeout, read_request(&mut recv)).await {
        Err(_) => Err(ReadError::Answer(LoginError::Timeout)),
        Ok(result) => result,
    };
    let started = Instant::now();
    match request {
        Err(ReadError::Closed) => {}
        Err(ReadError::Answer(error)) => {
            metrics::counter!("login_bad_requests_total").increment(1);
            tracing::debug!(peer = %peer.addr, %error, "refused a request");
            // A client-shaped error: both answer enums start with `Error`, so either
            // role decodes it.
            respond(send, &LoginToClient::Error(error), MAX_LOGIN_FRAME).await;
        }
        Ok(Request::Client(request)) => {
            let kind = client_request_kind(&request);
            let answer = service.handle_client(peer, request).await;
            record(kind, started, matches!(answer, LoginToClient::Error(_)));
            respond(send, &answer, MAX_LOGIN_FRAME).await;
        }
        Ok(Request::Supernode(request)) => {
            let kind = supernode_request_kind(&request);
            let answer = service.handle_supernode(peer, request).await;
            record(kind, started, matches!(answer, LoginToSupernode::Error(_)));
            respond(send, &answer, MAX_LOGIN_TO_SUPERNODE_FRAME).await;
        }
    }
}

fn record(kind: &'static str, started: Instant, failed: bool) {
    metrics::histogram!("login_request_seconds", "kind" => kind)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("login_requests_total", "kind" => kind, "result" => if failed { "error" } else { "ok" })
        .increment(1);
}
