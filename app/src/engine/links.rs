//! The engine's connections: one QUIC (or TCP fallback) session per supernode that homing
//! talks to, and a lazily (re)opened connection to the login server.
//!
//! Each supernode link is a task that owns its connection: it writes the frames the engine
//! hands it (bounded queue) and reports every decoded message, or the link's end, back to the
//! engine's network inbox. Nothing here decides anything; the engine feeds all of it to the
//! sans-IO cores.

use login_server::client::{ClientError, LoginConnection};
use proto::PublicKey;
use proto::supernode::{ClientToSupernode, SupernodeContact, SupernodeToClient};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tracing::debug;
use transport::{Endpoint, PeerPolicy, Tuning};

use crate::login_client::LoginTarget;

/// Frames queued for one supernode before the link drops further ones (homing and the
/// cores retransmit what matters).
const LINK_QUEUE: usize = 256;

/// What the link tasks report to the engine.
#[derive(Debug)]
pub(crate) enum LinkInput {
    Message {
        from: PublicKey,
        message: SupernodeToClient,
    },
    /// The link could not be opened or ended; `generation` tells an old link's end apart
    /// from the current one's.
    Ended { key: PublicKey, generation: u64 },
    /// The link's QUIC connection is up and both ends exported this park key from it
    /// (reported before any of its messages).
    ParkKey {
        key: PublicKey,
        generation: u64,
        park_key: proto::park::ParkKey,
    },
    /// A park datagram (heartbeat answer or wake) on the endpoint's socket.
    Datagram {
        from: std::net::SocketAddr,
        datagram: Vec<u8>,
    },
}

/// The engine's handle on one supernode link.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) generation: u64,
    tx: mpsc::Sender<ClientToSupernode>,
}

impl Link {
    /// Queues a message; false when the queue is full or the link is gone.
    pub(crate) fn send(&self, message: ClientToSupernode) -> bool {
        self.tx.try_send(message).is_ok()
    }
}

/// Opens a link to `to` in a task. Dropping the returned [`Link`] flushes what is queued and
/// closes the connection.
pub(crate) fn open_link(
    endpoint: &Endpoint,
    to: SupernodeContact,
    generation: u64,
    inbox: mpsc::Sender<LinkInput>,
) -> Link {
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    let endpoint = endpoint.clone();
    tokio::spawn(async move {
        run_link(endpoint, to, generation, rx, inbox.clone()).await;
        let _ = inbox
            .send(LinkInput::Ended {
                key: to.key,
                generation,
            })
            .await;
    });
    Link { generation, tx }
}

async fn run_link(
    endpoint: Endpoint,
    to: SupernodeContact,
    generation: u64,
    mut rx: mpsc::Receiver<ClientToSupernode>,
    inbox: mpsc::Sender<LinkInput>,
) {
    let conn = match endpoint
        .connect_with_tcp_fallback(to.addr, PeerPolicy::Key(to.key), &Tuning::client())
        .await
    {
        Ok(conn) => conn,
        Err(error) => {
            debug!(%error, supernode = ?to, "cannot connect");
            return;
        }
    };
    if let Some(park_key) = conn.export_keying_material(proto::park::PARK_EXPORTER_LABEL) {
        let input = LinkInput::ParkKey {
            key: to.key,
            generation,
            park_key: proto::park::ParkKey::from_exporter(park_key),
        };
        if inbox.send(input).await.is_err() {
            return;
        }
    }
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(streams) => streams,
        Err(error) => {
            debug!(%error, "cannot open the session stream");
            return;
        }
    };
    let from = to.key;
    let reader = async {
        loop {
            match read_body(&mut recv).await {
                Ok(Some(body)) => match SupernodeToClient::decode(&body) {
                    Ok(message) => {
                        if inbox
                            .send(LinkInput::Message { from, message })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    // A newer supernode's message kind: skip it, the session goes on.
                    Err(error) => debug!(%error, "undecodable message from a supernode"),
                },
                Ok(None) => return,
                Err(error) => {
                    debug!(%error, "supernode session ended");
                    return;
                }
            }
        }
    };
    let writer = async {
        while let Some(message) = rx.recv().await {
            let frame = match message.encode_frame() {
                Ok(frame) => frame,
                Err(error) => {
                    debug!(%error, "cannot encode a message");
                    continue;
                }
            };
            if send.write_all(&frame).await.is_err() {
                return false;
            }
        }
        true
    };
    tokio::pin!(reader);
    tokio::select! {
        () = &mut reader => {}
        clean = writer => {
            if clean {
                // The engine let go of the link: what was queued is written; say goodbye
                // at the stream level and give the frames a moment to leave.
                let _ = send.shutdown().await;
                let _ = tokio::time::timeout(Duration::from_millis(300), &mut reader).await;
            }
        }
    }
    conn.close(0, "done");
}

/// Hands the park datagrams arriving on the endpoint's socket to the engine until the
/// socket closes or the engine goes.
pub(crate) async fn forward_park_datagrams(
    raw: std::sync::Arc<transport::RawUdp>,
    inbox: mpsc::Sender<LinkInput>,
) {
    while let Some((datagram, from)) = raw.recv_from().await {
        if proto::park::is_park_datagram(&datagram)
            && inbox
                .send(LinkInput::Datagram { from, datagram })
                .await
                .is_err()
        {
            return;
        }
    }
}

/// Reads one frame body; `Ok(None)` at a clean end of stream.
async fn read_body<R: tokio::io::AsyncRead + Unpin>(
    recv: &mut R,
) -> Result<Option<Vec<u8>>, String> {
    let mut header = [0u8; proto::frame::HEADER_LEN];
    match recv.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let len = proto::frame::body_len(header, proto::frame::DEFAULT_MAX_FRAME)
        .map_err(|e| e.to_string())?;
    // Grows with what arrives rather than trusting the announced length.
    let mut body = Vec::with_capacity(len.min(4096));
    let n = (&mut *recv)
        .take(len as u64)
        .read_to_end(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    if n != len {
        return Err("stream ends mid-frame".into());
    }
    Ok(Some(body))
}

/// The login server, dialed on first use and again after a failure. Cheap to clone; the
/// request tasks share one connection.
#[derive(Debug, Clone)]
pub(crate) struct LoginLink {
    endpoint: Endpoint,
    target: LoginTarget,
    conn: Arc<Mutex<Option<LoginConnection>>>,
}

impl LoginLink {
    pub(crate) fn new(endpoint: Endpoint, target: LoginTarget) -> Self {
        Self {
            endpoint,
            target,
            conn: Arc::new(Mutex::new(None)),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<LoginConnection>> {
        // The slot holds a plain value: a panic elsewhere cannot leave it inconsistent.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared connection, dialed when there is none. The lock is never held across
    /// the dial, so closing never waits for an unreachable server.
    async fn connection(&self) -> Result<LoginConnection, ClientError> {
        if let Some(conn) = self.slot().as_ref() {
            return Ok(conn.clone());
        }
        let conn =
            LoginConnection::connect(&self.endpoint, self.target.addr, self.target.authority)
                .await?;
        let mut slot = self.slot();
        if let Some(existing) = slot.as_ref() {
            conn.close();
            return Ok(existing.clone());
        }
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one request; a transport failure drops the connection so the next request
    /// dials again.
    pub(crate) async fn run<T, F, Fut>(&self, request: F) -> Result<T, ClientError>
    where
        F: FnOnce(LoginConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let conn = self.connection().await?;
        let result = request(conn).await;
        if let Err(
            ClientError::Connection(_) | ClientError::TimedOut(_) | ClientError::Unreachable { .. },
        ) = &result
            && let Some(conn) = self.slot().take()
        {
            conn.close();
        }
        result
    }

    pub(crate) fn close(&self) {
        if let Some(conn) = self.slot().take() {
            conn.close();
        }
    }
}
