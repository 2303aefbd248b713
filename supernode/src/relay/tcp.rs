//! TURN over TCP for clients whose UDP is blocked (RFC 8656 §3.1: client to server over a
//! stream, the relayed side UDP as always).
//!
//! Listens on the TCP port of the `--turn-listen` address (TURN's registered port serves
//! both transports), and serves connections the `--tcp-listen` port found to be TURN
//! ([`TcpRelayHandle::serve_stream`]): a firewall that lets only that one port through
//! (443, say) still gets the relay. One owner task runs its own [`TurnServer`] core and every relay
//! port's socket; each connection has a reader task, which cuts the stream into messages
//! ([`nat::turn::stream::StreamDecoder`]) and forwards them to the owner's bounded inbox,
//! and a writer task fed through a bounded queue. The core sees each message as a
//! datagram from the connection's remote address; what it sends back is padded to 4
//! bytes. A closed connection frees its allocation.
//!
//! Limits: at most [`MAX_CONNECTIONS`] connections, [`MAX_CONNECTIONS_PER_IP`] from one
//! address; a connection silent for
//! [`IDLE_TIMEOUT`] is closed (clients refresh permissions every 4 minutes); messages
//! longer than [`MAX_FRAME_BYTES`] close the connection; a client that does not read has
//! its newest messages dropped once [`WRITE_QUEUE_FRAMES`] are waiting (media is worthless
//! late).
//!
//! Does not: TLS (the payload is the call's end-to-end sealed media; TLS on the
//! `--tcp-listen` port is the session's), share allocation quotas with the UDP relay (each
//! core counts its own), STUN Binding, or TCP relaying (RFC 6062).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use nat::turn::server::{AllocationId, ServerCommand, TurnServer};
use nat::turn::stream::{StreamDecoder, pad_for_stream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::config::RelayConfig;
use super::relay_ports::{PeerDatagram, RelayPorts};
use super::task::{RelayError, advertised_ip, turn_core};

/// Connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 4096;
/// Connections from one IP address at once (a NAT may hide many clients behind one).
pub const MAX_CONNECTIONS_PER_IP: usize = 64;
/// A connection that sends nothing this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest message a client may send: a 9 KiB datagram in a Send indication, and spare.
pub const MAX_FRAME_BYTES: usize = 10 * 1024;
/// Messages waiting for a slow client before newer ones are dropped.
pub const WRITE_QUEUE_FRAMES: usize = 256;
/// Bytes read from a connection at once.
const READ_CHUNK_BYTES: usize = 4096;

enum Inbound {
    Connected {
        remote: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
        reader: JoinHandle<()>,
    },
    Frame {
        from: SocketAddr,
        payload: Vec<u8>,
    },
    Gone {
        from: SocketAddr,
    },
    Relay(PeerDatagram),
    Shutdown,
}

/// A running TURN-over-TCP listener. Dropping it stops the service.
#[derive(Debug)]
pub struct TcpRelayServer {
    listen_addr: SocketAddr,
    inbox: mpsc::Sender<Inbound>,
    /// `None` without a listener of its own.
    accept: Option<JoinHandle<()>>,
    owner: JoinHandle<()>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inbound")
    }
}

impl TcpRelayServer {
    /// Listens on `config.listen` over TCP and starts the owner task on the current runtime.
    pub async fn start(config: RelayConfig) -> Result<Self, RelayError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| RelayError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let listen_addr = listener.local_addr().map_err(|source| RelayError::Bind {
            addr: config.listen,
            source,
        })?;
        Self::run(&config, listen_addr, Some(listener))
    }

    /// Serves only connections handed over ([`TcpRelayHandle::serve_stream`]), with no
    /// listener of its own: for a shared port when `config.listen`'s TCP side cannot be
    /// bound. Relay ports bind to `config.listen`'s IP.
    pub fn start_without_listener(config: RelayConfig) -> Result<Self, RelayError> {
        Self::run(&config, config.listen, None)
    }

    fn run(
        config: &RelayConfig,
        listen_addr: SocketAddr,
        listener: Option<TcpListener>,
    ) -> Result<Self, RelayError> {
        let advertised_ip = advertised_ip(config, listen_addr)?;
        let turn = turn_core(
            config,
            vec![listen_addr.ip(), advertised_ip],
            Instant::now(),
        )?;
        let (inbox_tx, inbox_rx) = mpsc::channel(config.inbox_capacity.max(16));
        let owner = Owner {
            turn,
            conns: HashMap::new(),
            per_ip: HashMap::new(),
            relays: RelayPorts::new(
                config,
                listen_addr.ip(),
                advertised_ip,
                inbox_tx.clone(),
                Inbound::Relay,
            ),
        };
        info!(%listen_addr, %advertised_ip, listening = listener.is_some(), "TURN over TCP");
        let owner = tokio::spawn(owner.run(inbox_rx));
        let accept = listener.map(|listener| tokio::spawn(accept_loop(listener, inbox_tx.clone())));
        Ok(Self {
            listen_addr,
            inbox: inbox_tx,
            accept,
            owner,
        })
    }

    /// As [`TcpRelayServer::start`], but a failure (the TCP port is taken) only costs the
    /// TCP service: it is logged and `None` returned.
    pub async fn start_or_warn(config: RelayConfig) -> Option<Self> {
        let listen = config.listen;
        match Self::start(config).await {
            Ok(server) => Some(server),
            Err(error) => {
                warn!(%listen, %error, "no TURN over TCP");
                None
            }
        }
    }

    /// Serves a TCP connection another listener accepted (one that shares a port with
    /// other protocols and found TURN on it, see [`nat::turn::stream::starts_like_turn`]).
    /// `false` when the relay has stopped.
    pub async fn serve_stream(&self, stream: TcpStream, remote: SocketAddr) -> bool {
        hand_over(&self.inbox, stream, remote).await
    }

    /// A handle other listeners keep to hand TURN connections over; it does not keep the
    /// relay running.
    pub fn handle(&self) -> TcpRelayHandle {
        TcpRelayHandle {
            inbox: self.inbox.downgrade(),
        }
    }

    /// Whether it accepts connections on [`TcpRelayServer::listen_addr`] itself.
    pub fn is_listening(&self) -> bool {
        self.accept.is_some()
    }

    /// The bound TCP address (without a listener: the address relay ports bind to).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Stops accepting, closes every connection and relay port, and waits for the owner.
    pub async fn shutdown(mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        let _ = self.inbox.send(Inbound::Shutdown).await;
        let _ = (&mut self.owner).await;
    }
}

/// Hands connections accepted elsewhere to a [`TcpRelayServer`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct TcpRelayHandle {
    inbox: mpsc::WeakSender<Inbound>,
}

impl TcpRelayHandle {
    /// As [`TcpRelayServer::serve_stream`]; `false` when the relay has stopped (the
    /// connection is then closed).
    pub async fn serve_stream(&self, stream: TcpStream, remote: SocketAddr) -> bool {
        match self.inbox.upgrade() {
            Some(inbox) => hand_over(&inbox, stream, remote).await,
            None => false,
        }
    }
}

impl Drop for TcpRelayServer {
    fn drop(&mut self) {
        if let Some(accept) = &self.accept {
            accept.abort();
        }
        self.owner.abort();
    }
}

async fn accept_loop(listener: TcpListener, inbox: mpsc::Sender<Inbound>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and similar: back off instead of spinning.
                warn!(%error, "accepting a TURN TCP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !hand_over(&inbox, stream, remote).await {
            return;
        }
    }
}

/// Starts the reader and writer of an accepted connection and tells the owner; `false`
/// once the owner is gone.
async fn hand_over(inbox: &mpsc::Sender<Inbound>, stream: TcpStream, remote: SocketAddr) -> bool {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let (writer_tx, writer_rx) = mpsc::channel(WRITE_QUEUE_FRAMES);
    tokio::spawn(write_loop(write, writer_rx));
    let reader = tokio::spawn(read_loop(read, remote, inbox.clone()));
    let connected = Inbound::Connected {
        remote,
        writer: writer_tx,
        reader,
    };
    inbox.send(connected).await.is_ok()
}

async fn read_loop(
    mut read: tokio::net::tcp::OwnedReadHalf,
    from: SocketAddr,
    inbox: mpsc::Sender<Inbound>,
) {
    let mut decoder = StreamDecoder::new(MAX_FRAME_BYTES);
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let n = match tokio::time::timeout(IDLE_TIMEOUT, read.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        let mut frames = Vec::new();
        if let Err(error) = decoder.decode(&buf[..n], |f| frames.push(f.to_vec())) {
            debug!(%error, "closing a TURN TCP connection");
            break;
        }
        for payload in frames {
            if inbox.send(Inbound::Frame { from, payload }).await.is_err() {
                return;
            }
        }
    }
    let _ = inbox.send(Inbound::Gone { from }).await;
}

async fn write_loop(
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
) {
    while let Some(bytes) = queue.recv().await {
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

struct Connection {
    writer: mpsc::Sender<Vec<u8>>,
    reader: JoinHandle<()>,
}

struct Owner {
    turn: TurnServer,
    conns: HashMap<SocketAddr, Connection>,
    per_ip: HashMap<IpAddr, usize>,
    relays: RelayPorts<Inbound>,
}

impl Owner {
    async fn run(mut self, mut inbox: mpsc::Receiver<Inbound>) {
        loop {
            let deadline = self.turn.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                message = inbox.recv() => {
                    let Some(message) = message else { break };
                    if !self.inbound(message) {
                        break;
                    }
                }
                () = sleep_until(deadline) => self.turn.handle_timeout(Instant::now()),
            }
            self.flush();
        }
        for (_, conn) in self.conns.drain() {
            conn.reader.abort();
        }
        self.relays.stop_all();
    }

    /// Returns `false` on shutdown.
    fn inbound(&mut self, message: Inbound) -> bool {
        let now = Instant::now();
        match message {
            Inbound::Connected {
                remote,
                writer,
                reader,
            } => {
                let from_ip = self.per_ip.get(&remote.ip()).copied().unwrap_or(0);
                if self.conns.len() >= MAX_CONNECTIONS || from_ip >= MAX_CONNECTIONS_PER_IP {
                    debug!("TURN TCP connection refused: too many");
                    reader.abort();
                    return true;
                }
                match self.conns.insert(remote, Connection { writer, reader }) {
                    Some(old) => old.reader.abort(),
                    None => *self.per_ip.entry(remote.ip()).or_insert(0) += 1,
                }
                metrics::gauge!("turn_tcp_connections").set(self.conns.len() as f64);
            }
            Inbound::Frame { from, payload } => {
                if self.conns.contains_key(&from) {
                    self.turn.handle_listen_datagram(now, from, &payload);
                }
            }
            Inbound::Gone { from } => {
                if let Some(conn) = self.conns.remove(&from) {
                    conn.reader.abort();
                    if let Some(n) = self.per_ip.get_mut(&from.ip()) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.per_ip.remove(&from.ip());
                        }
                    }
                }
                metrics::gauge!("turn_tcp_connections").set(self.conns.len() as f64);
                self.turn.handle_client_gone(now, from);
            }
            Inbound::Relay(d) => {
                self.turn
                    .handle_relay_datagram(now, d.allocation, d.from, &d.payload)
            }
            Inbound::Shutdown => return false,
        }
        true
    }

    fn flush(&mut self) {
        while let Some(command) = self.turn.poll_command() {
            match command {
                ServerCommand::SendFromListen { to, mut payload } => {
                    if let Some(conn) = self.conns.get(&to) {
                        pad_for_stream(&mut payload);
                        // Full: the client is not reading; late media is worthless.
                        let _ = conn.writer.try_send(payload);
                    }
                }
                ServerCommand::SendFromRelay {
                    allocation,
                    to,
                    payload,
                } => {
                    let _ = self.relays.send(allocation, to, &payload);
                }
                ServerCommand::OpenRelayPort {
                    allocation,
                    even_port,
                } => self.open(allocation, even_port),
                ServerCommand::CloseRelayPort { allocation } => {
                    let _ = self.relays.close(allocation);
                }
            }
        }
    }

    fn open(&mut self, allocation: AllocationId, even_port: bool) {
        let now = Instant::now();
        match self.relays.open(allocation, even_port) {
            Some(relayed) => self.turn.handle_relay_port_opened(now, allocation, relayed),
            None => {
                warn!(allocation = allocation.0, "no relay port free");
                self.turn.handle_relay_port_failed(now, allocation);
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
