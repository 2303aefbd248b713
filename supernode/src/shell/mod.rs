//! The supernode's IO: QUIC (and TCP) listeners, client sessions, mesh links, the
//! login-server link, metrics, and the STUN/TURN relay.
//!
//! One task owns the [`crate::core::Supernode`]; every other task talks to it through its
//! bounded inbox ([`Input`]) and receives work through bounded per-connection queues. A
//! client whose queue is full is disconnected (it re-homes) rather than buffered without
//! bound; a mesh message to a peer whose queue is full is dropped and counted.
//!
//! What it does not do: protocol decisions (the core's) or TURN (the relay module's).

mod heap;
pub mod login;
mod metrics_http;

use crate::core::{ClientId, Command, Config as CoreConfig, Supernode};
use login::{LoginClientError, LoginLink};
use proto::PublicKey;
use proto::directory::{Directory, SupernodeAddrs};
use proto::login::{LoginError, UserInfo};
use proto::supernode::{
    ClientToSupernode, DecodeError, SupernodeContact, SupernodeToClient, SupernodeToSupernode,
};
use proto::{SignedCredential, UnixTime, UserName};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use transport::{Conn, Endpoint, PeerPolicy, ServerOptions, TcpListener, Tuning};

/// A TURN REST shared secret; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSecret(pub Vec<u8>);

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(..)")
    }
}

/// Everything the shell needs to run.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    pub login_server: SocketAddr,
    pub authority: PublicKey,
    pub listen: SocketAddr,
    /// `None`: no TCP listener.
    pub tcp_listen: Option<SocketAddr>,
    /// `None`: no STUN/TURN relay.
    pub turn_listen: Option<SocketAddr>,
    pub public_addr: Option<SocketAddr>,
    pub alternate_addr: Option<SocketAddr>,
    pub relay_ports: Option<std::ops::RangeInclusive<u16>>,
    pub allow_relay_to: Vec<nat::turn::Cidr>,
    /// `--turn-url`: the TURN/STUN URLs handed to clients with their credentials (an
    /// external server such as coturn). Empty: the built-in relay's own URLs.
    pub turn_urls: Vec<String>,
    /// `--turn-secret-file`: the TURN REST shared secret credentials are minted with (and the
    /// built-in relay checks), shared with an external TURN server (coturn's
    /// `--static-auth-secret`). `None`: a secret kept in the data directory.
    pub turn_secret: Option<TurnSecret>,
    pub data_dir: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    pub core: CoreConfig,
    /// How often revocations are polled (at most 30 s).
    pub revocation_poll: Duration,
    /// How often the directory is fetched.
    pub directory_poll: Duration,
    pub heartbeat: Duration,
    /// Client connections accepted at once (beyond the core's session capacity, so that
    /// `Busy` answers can still be given).
    pub max_connections: usize,
}

impl ShellConfig {
    pub fn new(login_server: SocketAddr, authority: PublicKey, data_dir: PathBuf) -> Self {
        Self {
            login_server,
            authority,
            listen: SocketAddr::from(([0, 0, 0, 0], 7500)),
            tcp_listen: None,
            turn_listen: None,
            public_addr: None,
            alternate_addr: None,
            relay_ports: None,
            allow_relay_to: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            data_dir,
            metrics_listen: None,
            core: CoreConfig::default(),
            revocation_poll: Duration::from_secs(15),
            directory_poll: Duration::from_secs(5),
            heartbeat: Duration::from_secs(proto::login::SUPERNODE_HEARTBEAT_SECS),
            max_connections: 25_000,
        }
    }
}

/// The supernode could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file: {0}")]
    Key(#[from] transport::KeyFileError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("relay: {0}")]
    Relay(String),
}

/// What other tasks tell the core task.
enum Input {
    ClientConnected {
        id: ClientId,
        device: PublicKey,
        conn: Conn,
        out: mpsc::Sender<ClientOut>,
    },
    ClientMessage {
        id: ClientId,
        message: ClientToSupernode,
    },
    ClientGarbage {
        id: ClientId,
        error: DecodeError,
    },
    ClientDisconnected {
        id: ClientId,
    },
    Mesh {
        from: PublicKey,
        message: SupernodeToSupernode,
    },
    MeshUnreachable {
        peer: PublicKey,
    },
    LoginUser {
        request_id: u64,
        info: Option<UserInfo>,
    },
    LoginUsers {
        request_id: u64,
        users: Vec<UserInfo>,
    },
    LoginFailed {
        request_id: u64,
    },
    Directory(Directory),
    Revocations(Vec<u64>),
    Shutdown,
}

/// What the core sends one client's writer task. Boxed so that each client's queue
/// (whose first block of 32 slots is allocated up front) costs 32 pointers, not 32
/// messages, while the client sits idle.
enum ClientOut {
    Message(Box<SupernodeToClient>),
    Close,
}

enum LoginRequest {
    Lookup {
        request_id: u64,
        user: UserName,
    },
    Search {
        request_id: u64,
        prefix: String,
        limit: u16,
    },
    Homed {
        credential: SignedCredential,
    },
}

const CORE_INBOX: usize = 8192;
/// How often the core task hands freed heap back to the system when connections closed
/// (most of them parked): once more after the closing stops, for connections still
/// draining at the first trim.
const TRIM_INTERVAL: Duration = Duration::from_secs(10);
/// Raw datagrams (parked clients' heartbeats) the core task takes per wake-up.
const RAW_BATCH: usize = 256;
const CLIENT_QUEUE: usize = 256;
const MESH_QUEUE: usize = 4096;
const LOGIN_QUEUE: usize = 1024;
const LOGIN_CONCURRENCY: usize = 64;
/// Undecodable frames a client may send before it is disconnected.
const MAX_GARBAGE: u32 = 16;
/// Handshakes a mesh link tries before its peer is reported unreachable.
const MESH_CONNECT_ATTEMPTS: u32 = 2;
/// How long a new connection may take to open its stream and send its first frame.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(10);
/// How long a supernode the directory does not list yet may wait to be listed.
const MESH_ADMISSION_WAIT: Duration = Duration::from_secs(10);
/// Directory fetches asked for by unknown supernodes are at least this far apart.
const MIN_DIRECTORY_REFRESH: Duration = Duration::from_secs(1);

/// A running supernode.
pub struct RunningSupernode {
    key: PublicKey,
    quic_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    turn_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    inbox: mpsc::Sender<Input>,
    core_task: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    endpoint: Endpoint,
    relay: Option<crate::relay::RelayServer>,
    tcp_relay: Option<crate::relay::TcpRelayServer>,
    metrics_stop: watch::Sender<bool>,
    stats: watch::Receiver<crate::core::Stats>,
}

impl std::fmt::Debug for RunningSupernode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSupernode")
            .field("key", &self.key)
            .field("quic_addr", &self.quic_addr)
            .finish()
    }
}

fn wall_now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

/// The address other hosts use to reach `listen`: the configured public address, or the
/// listen address with an unspecified IP replaced by the one that routes to `toward`.
fn advertised(listen: SocketAddr, public: Option<SocketAddr>, toward: SocketAddr) -> SocketAddr {
    if let Some(public) = public {
        return public;
    }
    if !listen.ip().is_unspecified() {
        return listen;
    }
    let ip = std::net::UdpSocket::bind(SocketAddr::new(
        if toward.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        },
        0,
    ))
    .and_then(|s| {
        s.connect(toward)?;
        s.local_addr()
    })
    .map(|a| a.ip())
    .unwrap_or(listen.ip());
    SocketAddr::new(ip, listen.port())
}

impl RunningSupernode {
    /// Binds every listener, starts the tasks and begins admission at the login server.
    pub async fn start(config: ShellConfig) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let key = transport::load_or_create_secret_key(&config.data_dir.join("supernode.key"))?;
        let turn_secret = match &config.turn_secret {
            Some(secret) => secret.0.clone(),
            None => load_or_create_turn_secret(&config.data_dir)?,
        };
        let options = ServerOptions {
            policy: PeerPolicy::AnyKey,
            // Clients keep their NAT bindings alive themselves; see the preset and
            // docs/bench/supernode.md for what each of its settings saves per idle client.
            tuning: Tuning::signalling_server(),
            connections: transport::ConnectionLimiter::new(config.max_connections),
        };
        // The raw side of the QUIC socket carries parked clients' heartbeats and wakes.
        let (endpoint, raw) = Endpoint::bind_with_raw(config.listen, &key, Some(options.clone()))
            .map_err(|e| StartError::Listen {
            addr: config.listen,
            reason: e.to_string(),
        })?;
        let raw = Arc::new(raw);
        let quic_addr = endpoint.local_addr().map_err(|e| StartError::Listen {
            addr: config.listen,
            reason: e.to_string(),
        })?;
        let tcp = match config.tcp_listen {
            Some(addr) => Some(TcpListener::bind(addr, &key, options).await.map_err(|e| {
                StartError::Listen {
                    addr,
                    reason: e.to_string(),
                }
            })?),
            None => None,
        };
        let tcp_addr = tcp.as_ref().and_then(|t| t.local_addr().ok());
        let relay = match config.turn_listen {
            Some(listen) => {
                let mut relay_config = crate::relay::RelayConfig::new(listen, turn_secret.clone());
                relay_config.alternate = config.alternate_addr;
                relay_config.advertised_ip = config.public_addr.map(|a| a.ip());
                if let Some(ports) = config.relay_ports.clone() {
                    relay_config.relay_ports = ports;
                }
                relay_config.allow_relay_to = config.allow_relay_to.clone();
                Some(
                    crate::relay::RelayServer::start(relay_config)
                        .await
                        .map_err(|e| StartError::Relay(e.to_string()))?,
                )
            }
            None => None,
        };
        let turn_addr = relay.as_ref().map(crate::relay::RelayServer::listen_addr);
        // TURN over TCP on the relay's port, for clients whose UDP is blocked.
        let tcp_relay = match turn_addr {
            Some(udp) => {
                let mut relay_config = crate::relay::RelayConfig::new(udp, turn_secret.clone());
                relay_config.advertised_ip = config.public_addr.map(|a| a.ip());
                if let Some(ports) = config.relay_ports.clone() {
                    relay_config.relay_ports = ports;
                }
                relay_config.allow_relay_to = config.allow_relay_to.clone();
                match crate::relay::TcpRelayServer::start_or_warn(relay_config.clone()).await {
                    Some(server) => Some(server),
                    // The TURN port's TCP side is taken: the shared port still serves TURN.
                    None if tcp_addr.is_some() => {
                        crate::relay::TcpRelayServer::start_without_listener(relay_config).ok()
                    }
                    None => None,
                }
            }
            None => None,
        };
        let (metrics_stop, metrics_stop_rx) = watch::channel(false);
        let metrics_addr = match config.metrics_listen {
            Some(addr) => {
                let handle = metrics_http::install_recorder().map_err(StartError::Metrics)?;
                let listener =
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| StartError::Listen {
                            addr,
                            reason: e.to_string(),
                        })?;
                let bound = listener.local_addr().ok();
                tokio::spawn(metrics_http::serve(listener, handle, metrics_stop_rx));
                bound
            }
            None => None,
        };

        let public_quic = advertised(quic_addr, config.public_addr, config.login_server);
        let me = SupernodeContact {
            key: key.public(),
            addr: public_quic,
        };
        let addrs = SupernodeAddrs {
            quic: public_quic,
            turn: turn_addr.map(|t| {
                advertised(
                    t,
                    config
                        .public_addr
                        .map(|p| SocketAddr::new(p.ip(), t.port())),
                    config.login_server,
                )
            }),
            tcp: tcp_addr.map(|t| {
                advertised(
                    t,
                    config
                        .public_addr
                        .map(|p| SocketAddr::new(p.ip(), t.port())),
                    config.login_server,
                )
            }),
        };
        let mut core_config = config.core.clone();
        let turn_urls = if config.turn_urls.is_empty() {
            addrs
                .turn
                .map(|turn| vec![format!("turn:{turn}?transport=udp"), format!("stun:{turn}")])
                .unwrap_or_default()
        } else {
            config.turn_urls.clone()
        };
        if !turn_urls.is_empty() {
            core_config.turn = Some(crate::core::TurnService {
                shared_secret: turn_secret.clone(),
                urls: turn_urls,
                ttl: Duration::from_secs(600),
            });
        }
        if let (Some(tcp), Some(turn)) = (&tcp_relay, core_config.turn.as_mut()) {
            let port = tcp.listen_addr().port();
            let public = config.public_addr.map(|p| SocketAddr::new(p.ip(), port));
            let addr = advertised(tcp.listen_addr(), public, config.login_server);
            // Only beside the built-in relay's own URL, not an external server's.
            if turn.urls.contains(&format!("turn:{addr}?transport=udp")) {
                // The session's TCP port first: a client whose UDP is blocked has just
                // reached it, where a firewall may stop the TURN port. The TURN port stays
                // for standard TURN clients and as a second try.
                if let Some(shared) = addrs.tcp {
                    turn.urls.push(format!("turn:{shared}?transport=tcp"));
                }
                if tcp.is_listening() {
                    turn.urls.push(format!("turn:{addr}?transport=tcp"));
                }
            }
        }
        let now = Instant::now();
        let seed = u64::from_le_bytes(
            key.public().as_bytes()[..8]
                .try_into()
                .expect("invariant: a key has at least 8 bytes"),
        ) ^ wall_now().as_secs();
        let core = Supernode::new(core_config, me, config.authority, now, wall_now(), seed);
        let (inbox_tx, inbox_rx) = mpsc::channel(CORE_INBOX);
        let (login_tx, login_rx) = mpsc::channel(LOGIN_QUEUE);
        let (members_tx, members_rx) = watch::channel(Arc::new(BTreeSet::new()));
        let (homed_tx, homed_rx) = watch::channel(0u32);
        let (stats_tx, stats_rx) = watch::channel(crate::core::Stats::default());
        let (refresh_tx, refresh_rx) = mpsc::channel(1);
        let core_task = tokio::spawn(core_loop(
            core,
            inbox_rx,
            login_tx,
            CoreLinks {
                endpoint: endpoint.clone(),
                raw: raw.clone(),
            },
            inbox_tx.clone(),
            Published {
                homed: homed_tx,
                stats: stats_tx,
            },
        ));
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(login_loop(
            endpoint.clone(),
            config.clone(),
            addrs,
            inbox_tx.clone(),
            members_tx,
            homed_rx,
            LoginInputs {
                requests: login_rx,
                refresh: refresh_rx,
            },
        )));
        let next_id = Arc::new(std::sync::atomic::AtomicU64::new(1));
        {
            let endpoint = endpoint.clone();
            let inbox = inbox_tx.clone();
            let members = members_rx.clone();
            let refresh = refresh_tx.clone();
            let next_id = next_id.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(incoming) = endpoint.accept().await {
                    tokio::spawn(serve_incoming(
                        Box::new(incoming),
                        inbox.clone(),
                        members.clone(),
                        refresh.clone(),
                        next_id.clone(),
                    ));
                }
            }));
        }
        if let Some(tcp) = tcp {
            let inbox = inbox_tx.clone();
            let members = members_rx.clone();
            let turn = tcp_relay.as_ref().map(crate::relay::TcpRelayServer::handle);
            tasks.push(tokio::spawn(async move {
                while let Some(incoming) = tcp.accept().await {
                    let (inbox, members, refresh, next_id, turn) = (
                        inbox.clone(),
                        members.clone(),
                        refresh_tx.clone(),
                        next_id.clone(),
                        turn.clone(),
                    );
                    // Boxed for the same reason as in `serve_incoming`.
                    let incoming = Box::new(incoming);
                    tokio::spawn(async move {
                        let incoming = match turn {
                            Some(turn) => match Box::pin(sort_shared_tcp(incoming, turn)).await {
                                Some(incoming) => incoming,
                                None => return,
                            },
                            None => incoming,
                        };
                        serve_incoming(incoming, inbox, members, refresh, next_id).await;
                    });
                }
            }));
        }
        info!(key = %key.public(), %quic_addr, ?tcp_addr, ?turn_addr, "supernode started");
        Ok(Self {
            key: key.public(),
            quic_addr,
            tcp_addr,
            turn_addr,
            metrics_addr,
            inbox: inbox_tx,
            core_task,
            tasks,
            endpoint,
            relay,
            metrics_stop,
            tcp_relay,
            stats: stats_rx,
        })
    }

    pub fn key(&self) -> PublicKey {
        self.key
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn turn_addr(&self) -> Option<SocketAddr> {
        self.turn_addr
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The core's counters as of the last metrics tick (once a second).
    pub fn stats(&self) -> crate::core::Stats {
        self.stats.borrow().clone()
    }

    /// Says goodbye to clients and mesh peers, then stops everything (bounded by 4 s).
    pub async fn shutdown(self) {
        let _ = self.inbox.send(Input::Shutdown).await;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.core_task).await;
        for task in &self.tasks {
            task.abort();
        }
        if let Some(relay) = self.relay {
            let _ = tokio::time::timeout(Duration::from_millis(500), relay.shutdown()).await;
        }
        if let Some(tcp_relay) = self.tcp_relay {
            let _ = tokio::time::timeout(Duration::from_millis(500), tcp_relay.shutdown()).await;
        }
        let _ = self.metrics_stop.send(true);
        self.endpoint.close(0, "shutting down");
        let _ = tokio::time::timeout(Duration::from_millis(500), self.endpoint.wait_idle()).await;
    }
}

fn load_or_create_turn_secret(dir: &std::path::Path) -> Result<Vec<u8>, StartError> {
    // The TURN REST secret is derived from a key file so it survives restarts and is
    // created with the same care (mode 0600) as the identity key.
    let key = transport::load_or_create_secret_key(&dir.join("turn-secret.key"))?;
    Ok(key.to_bytes().to_vec())
}

/// What the core task publishes every second.
struct Published {
    /// Homed sessions, for the login server's heartbeat.
    homed: watch::Sender<u32>,
    stats: watch::Sender<crate::core::Stats>,
}

/// The sockets the core task sends on.
struct CoreLinks {
    endpoint: Endpoint,
    raw: Arc<transport::RawUdp>,
}

async fn core_loop(
    mut core: Supernode,
    mut inbox: mpsc::Receiver<Input>,
    login: mpsc::Sender<LoginRequest>,
    links_out: CoreLinks,
    inbox_tx: mpsc::Sender<Input>,
    published: Published,
) {
    let CoreLinks { endpoint, raw } = links_out;
    let Published {
        homed,
        stats: stats_out,
    } = published;
    let mut clients: HashMap<ClientId, (Conn, mpsc::Sender<ClientOut>, u32)> = HashMap::new();
    let mut links: HashMap<PublicKey, mpsc::Sender<SupernodeToSupernode>> = HashMap::new();
    let mut metrics_tick = tokio::time::interval(Duration::from_secs(1));
    let mut shutting_down = false;
    let mut raw_batch = Vec::with_capacity(RAW_BATCH);
    let mut raw_open = true;
    let mut live_peak = 0usize;
    let mut trim_again = false;
    let mut trim_tick = tokio::time::interval(TRIM_INTERVAL);
    loop {
        let timer = core
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1));
        tokio::select! {
            input = inbox.recv() => {
                let now = Instant::now();
                let Some(input) = input else { break };
                match input {
                    Input::ClientConnected { id, device, conn, out } => {
                        let park_key = conn.export_keying_material(proto::park::PARK_EXPORTER_LABEL);
                        let addr = conn.remote_address();
                        clients.insert(id, (conn, out, 0));
                        core.handle_client_connected(now, id, device);
                        if let Some(key) = park_key {
                            core.handle_client_park_link(id, proto::park::ParkKey::from_exporter(key), addr);
                        }
                    }
                    Input::ClientMessage { id, message } => core.handle_client_message(now, id, message),
                    Input::ClientGarbage { id, error } => {
                        let too_much = clients.get_mut(&id).is_some_and(|c| {
                            c.2 += 1;
                            c.2 > MAX_GARBAGE
                        });
                        core.handle_client_garbage(now, id, error.code());
                        if too_much && let Some((conn, _, _)) = clients.get(&id) {
                            conn.close(2, "malformed messages");
                        }
                    }
                    Input::ClientDisconnected { id } => {
                        clients.remove(&id);
                        core.handle_client_disconnected(now, id);
                    }
                    Input::Mesh { from, message } => core.handle_supernode_message(now, from, message),
                    Input::MeshUnreachable { peer } => {
                        links.remove(&peer);
                        core.handle_supernode_unreachable(now, peer);
                    }
                    Input::LoginUser { request_id, info } => core.handle_login_user(now, request_id, info),
                    Input::LoginUsers { request_id, users } => core.handle_login_users(now, request_id, users),
                    Input::LoginFailed { request_id } => core.handle_login_failed(now, request_id),
                    Input::Directory(directory) => core.handle_directory(now, &directory),
                    Input::Revocations(serials) => core.handle_revocations(now, serials),
                    Input::Shutdown => {
                        core.shutdown(now);
                        shutting_down = true;
                    }
                }
            }
            // Parked clients' heartbeats come straight from the raw queue, every waiting one
            // per wake-up; their answers go out in the one pass over the commands below.
            received = raw.recv_many(&mut raw_batch, RAW_BATCH), if raw_open => {
                raw_open = received > 0;
                let now = Instant::now();
                for (datagram, from) in raw_batch.drain(..) {
                    if proto::park::is_park_datagram(&datagram) {
                        core.handle_park_datagram(now, from, &datagram);
                    }
                }
            }
            _ = tokio::time::sleep_until(timer) => core.handle_timeout(Instant::now()),
            _ = trim_tick.tick() => {
                let closed = live_peak > clients.len();
                if closed || trim_again {
                    heap::release_free_memory();
                }
                trim_again = closed;
                live_peak = clients.len();
            }
            _ = metrics_tick.tick() => {
                live_peak = live_peak.max(clients.len());
                let stats = core.stats();
                metrics_http::publish(&stats);
                let _ = homed.send(u32::try_from(stats.sessions).unwrap_or(u32::MAX));
                stats_out.send_replace(stats);
            }
        }
        while let Some(command) = core.poll_command() {
            match command {
                Command::SendToClient { client, message } => {
                    if let Some((conn, out, _)) = clients.get(&client)
                        && out.try_send(ClientOut::Message(Box::new(message))).is_err()
                    {
                        // A client that does not read its messages is cut off; it re-homes.
                        metrics::counter!("supernode_slow_clients_total").increment(1);
                        conn.close(3, "too slow");
                    }
                }
                Command::CloseClient { client } => {
                    if let Some((conn, out, _)) = clients.remove(&client)
                        && out.try_send(ClientOut::Close).is_err()
                    {
                        conn.close(0, "closed");
                    }
                }
                Command::SendToSupernode { to, message } => {
                    let link = links
                        .entry(to.key)
                        .or_insert_with(|| spawn_mesh_link(&endpoint, to, inbox_tx.clone()));
                    match link.try_send(message) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            metrics::counter!("supernode_mesh_dropped_total").increment(1);
                        }
                        Err(mpsc::error::TrySendError::Closed(message)) => {
                            let link = spawn_mesh_link(&endpoint, to, inbox_tx.clone());
                            let _ = link.try_send(message);
                            links.insert(to.key, link);
                        }
                    }
                }
                Command::LookupAtLoginServer { request_id, user } => {
                    if login
                        .try_send(LoginRequest::Lookup { request_id, user })
                        .is_err()
                    {
                        core.handle_login_failed(Instant::now(), request_id);
                    }
                }
                Command::SearchAtLoginServer {
                    request_id,
                    prefix,
                    limit,
                } => {
                    if login
                        .try_send(LoginRequest::Search {
                            request_id,
                            prefix,
                            limit,
                        })
                        .is_err()
                    {
                        core.handle_login_failed(Instant::now(), request_id);
                    }
                }
                Command::ReportHomed { credential } => {
                    let _ = login.try_send(LoginRequest::Homed { credential });
                }
                Command::ParkClient { client } => {
                    // `Parked` is queued ahead of the close; the session stays in the core.
                    if let Some((conn, out, _)) = clients.remove(&client)
                        && out.try_send(ClientOut::Close).is_err()
                    {
                        conn.close(0, "parked");
                    }
                }
                Command::SendDatagram { to, datagram } => {
                    // A full socket buffer drops it; heartbeats and wakes are retried.
                    let _ = raw.try_send_to(&datagram, to);
                }
            }
        }
        if shutting_down {
            // Give the writers a moment to flush the goodbyes.
            drop(links);
            tokio::time::sleep(Duration::from_millis(300)).await;
            for (conn, _, _) in clients.values() {
                conn.close(0, "shutting down");
            }
            break;
        }
    }
}

fn spawn_mesh_link(
    endpoint: &Endpoint,
    peer: SupernodeContact,
    inbox: mpsc::Sender<Input>,
) -> mpsc::Sender<SupernodeToSupernode> {
    let (tx, mut rx) = mpsc::channel::<SupernodeToSupernode>(MESH_QUEUE);
    let endpoint = endpoint.clone();
    tokio::spawn(async move {
        let tuning = Tuning {
            handshake_timeout: Duration::from_secs(3),
            ..Tuning::server()
        };
        let result = async {
            let mut attempts = 1;
            let conn = loop {
                match endpoint
                    .connect(peer.addr, PeerPolicy::Key(peer.key), &tuning)
                    .await
                {
                    Ok(conn) => break conn,
                    // One slow handshake (a loaded host) should not cost the queued
                    // messages; a peer that is really gone fails the second time too.
                    Err(error) if attempts < MESH_CONNECT_ATTEMPTS => {
                        debug!(peer = %peer.key.fingerprint(), %error, "mesh connect failed; retrying");
                        attempts += 1;
                    }
                    Err(error) => return Err(error.to_string()),
                }
            };
            let (mut send, _recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            write_message(
                &mut send,
                &SupernodeToSupernode::Hello {
                    version: proto::PROTOCOL_VERSION,
                },
            )
            .await?;
            while let Some(message) = rx.recv().await {
                write_message(&mut send, &message).await?;
            }
            Ok::<(), String>(())
        }
        .await;
        if let Err(error) = result {
            debug!(peer = %peer.key.fingerprint(), %error, "mesh link failed");
            let _ = inbox.send(Input::MeshUnreachable { peer: peer.key }).await;
        }
    });
    tx
}

async fn write_message<W: AsyncWrite + Unpin, T: serde::Serialize>(
    send: &mut W,
    message: &T,
) -> Result<(), String> {
    let frame = proto::frame::encode(message, proto::frame::DEFAULT_MAX_FRAME)
        .map_err(|e| e.to_string())?;
    send.write_all(&frame).await.map_err(|e| e.to_string())
}

/// Reads one frame body; `Ok(None)` at a clean end of stream.
async fn read_body<R: AsyncRead + Unpin>(recv: &mut R) -> Result<Option<Vec<u8>>, String> {
    let mut header = [0u8; proto::frame::HEADER_LEN];
    match recv.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let len = proto::frame::body_len(header, proto::frame::DEFAULT_MAX_FRAME)
        .map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    // A peer that stalls mid-frame holds one frame of memory until the idle timeout.
    recv.read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(body))
}

/// The peer that opened a connection, as far as its first frame and the directory tell.
enum Opener {
    /// A directory member: a mesh link, with the stream it opened first when that had to
    /// be read to tell.
    Member {
        first_stream: Option<transport::RecvStream>,
    },
    /// Anyone else: a client, whose first message has been read.
    Client {
        send: transport::SendStream,
        recv: transport::RecvStream,
        first: Vec<u8>,
    },
}

/// Tells a mesh link from a client. A member of the directory this supernode holds is a
/// mesh peer. Anyone else is a client, unless its first frame is a supernode's `Hello`:
/// then it is a supernode admitted after this one last fetched the directory (the newcomer
/// knows this supernode from the directory it got at admission and connects at once). The
/// directory is fetched again and the connection waits, bounded, for the newcomer to be
/// listed; taking its link for a client would lose everything sent over it.
async fn identify(
    conn: &Conn,
    members: &mut watch::Receiver<Arc<BTreeSet<PublicKey>>>,
    refresh: &mpsc::Sender<()>,
) -> Option<Opener> {
    let peer = conn.peer_key();
    if members.borrow().contains(&peer) {
        return Some(Opener::Member { first_stream: None });
    }
    let Ok(Ok((send, mut recv))) = tokio::time::timeout(FIRST_FRAME_WAIT, conn.accept_bi()).await
    else {
        conn.close(1, "no session stream");
        return None;
    };
    let Ok(Ok(Some(first))) = tokio::time::timeout(FIRST_FRAME_WAIT, read_body(&mut recv)).await
    else {
        conn.close(1, "no first message");
        return None;
    };
    let mesh_hello = ClientToSupernode::decode(&first).is_err()
        && matches!(
            SupernodeToSupernode::decode(&first),
            Ok(SupernodeToSupernode::Hello { .. })
        );
    if !mesh_hello {
        return Some(Opener::Client { send, recv, first });
    }
    let _ = refresh.try_send(());
    let listed =
        tokio::time::timeout(MESH_ADMISSION_WAIT, members.wait_for(|m| m.contains(&peer))).await;
    if matches!(listed, Ok(Ok(_))) {
        Some(Opener::Member {
            first_stream: Some(recv),
        })
    } else {
        debug!(peer = %peer.fingerprint(), "a supernode the directory does not list");
        conn.close(4, "not in the directory");
        None
    }
}

/// The `--tcp-listen` port carries the TLS session and TURN over TCP: sorts one connection
/// by its first bytes (bounded by the handshake timeout; run in the connection's own task,
/// so a silent client holds up nobody else) and hands TURN to the relay. `Some` for a TLS
/// attempt, to be completed as a session.
async fn sort_shared_tcp(
    incoming: Box<transport::Incoming>,
    turn: crate::relay::TcpRelayHandle,
) -> Option<Box<transport::Incoming>> {
    match incoming
        .sort_by_first_bytes(nat::turn::stream::starts_like_turn)
        .await
    {
        Ok(transport::Sorted::Tls(incoming)) => Some(Box::new(incoming)),
        Ok(transport::Sorted::Claimed { stream, remote }) => {
            if !turn.serve_stream(stream, remote).await {
                debug!("TURN connection on the TCP session port closed: relay stopped");
            }
            None
        }
        Err(error) => {
            debug!(%error, "closing a connection on the TCP session port");
            None
        }
    }
}

/// `incoming` is boxed because an async fn keeps room for its arguments for as long as it
/// runs, and this one runs as long as the session.
async fn serve_incoming(
    incoming: Box<transport::Incoming>,
    inbox: mpsc::Sender<Input>,
    mut members: watch::Receiver<Arc<BTreeSet<PublicKey>>>,
    refresh: mpsc::Sender<()>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
) {
    // The handshake and the identification are boxed: a task's future is as large as its
    // largest await point, and every idle client's task would otherwise carry room for
    // these two for the life of its session.
    let conn = match Box::pin(incoming.complete()).await {
        Ok(conn) => conn,
        Err(error) => {
            debug!(%error, "handshake failed");
            return;
        }
    };
    let peer = conn.peer_key();
    match Box::pin(identify(&conn, &mut members, &refresh)).await {
        None => {}
        Some(Opener::Member { first_stream }) => {
            if let Some(recv) = first_stream {
                tokio::spawn(forward_mesh_stream(recv, peer, inbox.clone()));
            }
            serve_mesh_peer(conn, peer, inbox).await;
        }
        Some(Opener::Client { send, recv, first }) => {
            let id = ClientId(next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            serve_client(conn, id, inbox, send, recv, first).await;
        }
    }
}

async fn serve_mesh_peer(conn: Conn, peer: PublicKey, inbox: mpsc::Sender<Input>) {
    while let Ok((_send, recv)) = conn.accept_bi().await {
        tokio::spawn(forward_mesh_stream(recv, peer, inbox.clone()));
    }
}

async fn forward_mesh_stream(
    mut recv: transport::RecvStream,
    peer: PublicKey,
    inbox: mpsc::Sender<Input>,
) {
    while let Ok(Some(body)) = read_body(&mut recv).await {
        match SupernodeToSupernode::decode(&body) {
            Ok(message) => {
                if inbox
                    .send(Input::Mesh {
                        from: peer,
                        message,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(error) => debug!(%error, "undecodable mesh message"),
        }
    }
}

async fn serve_client(
    conn: Conn,
    id: ClientId,
    inbox: mpsc::Sender<Input>,
    mut send: transport::SendStream,
    mut recv: transport::RecvStream,
    first: Vec<u8>,
) {
    let (out_tx, mut out_rx) = mpsc::channel(CLIENT_QUEUE);
    // Reserving before building an input keeps inputs out of the task's future (see
    // serve_incoming).
    let Ok(permit) = inbox.reserve().await else {
        return;
    };
    permit.send(Input::ClientConnected {
        id,
        device: conn.peer_key(),
        conn: conn.clone(),
        out: out_tx,
    });
    let writer_conn = conn.clone();
    let writer = tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            match out {
                ClientOut::Message(message) => {
                    if write_message(&mut send, &message).await.is_err() {
                        break;
                    }
                }
                ClientOut::Close => {
                    let _ = send.shutdown().await;
                    Box::pin(tokio::time::sleep(Duration::from_millis(200))).await;
                    writer_conn.close(0, "closed");
                    break;
                }
            }
        }
    });
    let mut body = Some(first);
    while let Some(frame) = body.take() {
        let Ok(permit) = inbox.reserve().await else {
            break;
        };
        permit.send(match ClientToSupernode::decode(&frame) {
            Ok(message) => Input::ClientMessage { id, message },
            Err(error) => Input::ClientGarbage { id, error },
        });
        body = read_body(&mut recv).await.ok().flatten();
    }
    if let Ok(permit) = inbox.reserve().await {
        permit.send(Input::ClientDisconnected { id });
    }
    writer.abort();
}

async fn login_loop(
    endpoint: Endpoint,
    config: ShellConfig,
    addrs: SupernodeAddrs,
    inbox: mpsc::Sender<Input>,
    members: watch::Sender<Arc<BTreeSet<PublicKey>>>,
    homed: watch::Receiver<u32>,
    inputs: LoginInputs,
) {
    let LoginInputs {
        mut requests,
        mut refresh,
    } = inputs;
    let mut link: Option<LoginLink> = None;
    let mut admitted = false;
    let mut retry = Duration::from_millis(500);
    let mut directory_version = 0u64;
    let mut revocation_version = 0u64;
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    let mut directory_tick = tokio::time::interval(config.directory_poll);
    let mut revocation_tick =
        tokio::time::interval(config.revocation_poll.min(Duration::from_secs(30)));
    let concurrency = Arc::new(Semaphore::new(LOGIN_CONCURRENCY));

    let directory_file = config.data_dir.join("directory.bin");
    let directories = DirectorySink {
        authority: config.authority,
        file: &directory_file,
        inbox: &inbox,
        members: &members,
    };

    // The last directory this supernode verified lets it rejoin the mesh while the login
    // server is still unreachable (it is refused once expired).
    if let Ok(bytes) = std::fs::read(&directory_file)
        && let Ok(signed) = proto::directory::SignedDirectory::from_bytes(&bytes)
    {
        directories.apply(signed, &mut directory_version).await;
    }
    // Any fetch counts towards the spacing of fetches asked for by unknown supernodes.
    let mut last_fetch = tokio::time::Instant::now();
    let mut refresh_wanted = false;
    loop {
        if link.as_ref().is_none_or(|l| !l.is_open()) {
            admitted = false;
            match LoginLink::connect(&endpoint, config.login_server, config.authority).await {
                Ok(l) => link = Some(l),
                Err(error) => {
                    warn!(%error, "login server unreachable; retrying");
                    fail_pending(&mut requests, &inbox);
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
        }
        let Some(current) = link.clone() else {
            continue;
        };
        if !admitted {
            match current.admit(addrs.clone()).await {
                Ok(directory) => {
                    info!("admitted by the login server");
                    admitted = true;
                    retry = Duration::from_millis(500);
                    directories.apply(directory, &mut directory_version).await;
                    last_fetch = tokio::time::Instant::now();
                }
                Err(error) => {
                    warn!(%error, "admission failed; retrying");
                    if matches!(
                        error,
                        LoginClientError::Connection(_) | LoginClientError::TimedOut
                    ) {
                        link = None;
                    }
                    fail_pending(&mut requests, &inbox);
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
        }
        tokio::select! {
            _ = heartbeat.tick() => {
                let homed_users = *homed.borrow();
                match current.heartbeat(homed_users).await {
                    Ok(()) => {}
                    Err(LoginClientError::Server(LoginError::NotAdmitted(_))) => admitted = false,
                    Err(error) => {
                        warn!(%error, "heartbeat failed");
                        link = None;
                    }
                }
            }
            _ = directory_tick.tick() => {
                last_fetch = tokio::time::Instant::now();
                match current.directory().await {
                    Ok(signed) => directories.apply(signed, &mut directory_version).await,
                    Err(error) => debug!(%error, "directory fetch failed"),
                }
            }
            Some(()) = refresh.recv() => refresh_wanted = true,
            _ = tokio::time::sleep_until(last_fetch + MIN_DIRECTORY_REFRESH), if refresh_wanted => {
                refresh_wanted = false;
                last_fetch = tokio::time::Instant::now();
                match current.directory().await {
                    Ok(signed) => directories.apply(signed, &mut directory_version).await,
                    Err(error) => debug!(%error, "directory fetch failed"),
                }
            }
            _ = revocation_tick.tick() => {
                match current.revocations(revocation_version).await {
                    Ok(Some(signed)) => match signed.verify(&config.authority) {
                        Ok(list) if list.version >= revocation_version => {
                            revocation_version = list.version;
                            let serials = list.revoked.iter().map(|(s, _)| *s).collect();
                            let _ = inbox.send(Input::Revocations(serials)).await;
                        }
                        Ok(_) => {}
                        Err(error) => warn!(%error, "refusing a revocation list"),
                    },
                    Ok(None) => {}
                    Err(error) => debug!(%error, "revocation poll failed"),
                }
            }
            request = requests.recv() => {
                let Some(request) = request else { return };
                let Ok(permit) = concurrency.clone().acquire_owned().await else { return };
                let current = current.clone();
                let inbox = inbox.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let input = match request {
                        LoginRequest::Lookup { request_id, user } => match current.lookup(&user).await {
                            Ok(info) => Some(Input::LoginUser { request_id, info }),
                            Err(_) => Some(Input::LoginFailed { request_id }),
                        },
                        LoginRequest::Search { request_id, prefix, limit } => {
                            match current.search(&prefix, limit).await {
                                Ok(users) => Some(Input::LoginUsers { request_id, users }),
                                Err(_) => Some(Input::LoginFailed { request_id }),
                            }
                        }
                        LoginRequest::Homed { credential } => {
                            if let Err(error) = current.user_homed(&credential).await {
                                debug!(%error, "homing report failed");
                            }
                            None
                        }
                    };
                    if let Some(input) = input {
                        let _ = inbox.send(input).await;
                    }
                });
            }
        }
    }
}

/// What the login task is asked to do.
struct LoginInputs {
    /// Look-ups and reports for the login server, from the core.
    requests: mpsc::Receiver<LoginRequest>,
    /// Fetch the directory soon: a supernode it may not list yet connected.
    refresh: mpsc::Receiver<()>,
}

/// Where verified directories go: the core, the accept path's member set, the data dir.
struct DirectorySink<'a> {
    authority: PublicKey,
    file: &'a std::path::Path,
    inbox: &'a mpsc::Sender<Input>,
    members: &'a watch::Sender<Arc<BTreeSet<PublicKey>>>,
}

impl DirectorySink<'_> {
    /// Verifies `signed` and, when it is not older than `version`, hands it on.
    async fn apply(&self, signed: proto::directory::SignedDirectory, version: &mut u64) {
        let directory = match signed.verify(&self.authority, wall_now()) {
            Ok(directory) if directory.version >= *version => directory,
            Ok(_) => return,
            Err(error) => {
                warn!(%error, "refusing a directory");
                return;
            }
        };
        if directory.version > *version
            && let Err(error) = std::fs::write(self.file, signed.to_bytes())
        {
            debug!(%error, "cannot store the directory");
        }
        let keys: BTreeSet<PublicKey> = directory.entries.iter().map(|e| e.key).collect();
        // The core learns the members before the accept path does: a newcomer's link is
        // served as a mesh link only once the member set lists it, so its first message
        // reaches a core that already accepts messages from it. Waiting for room in the
        // inbox (never dropping) keeps the core from missing a directory it would then
        // not see again until a newer version.
        let new_version = directory.version;
        if self.inbox.send(Input::Directory(directory)).await.is_err() {
            return;
        }
        *version = new_version;
        self.members.send_replace(Arc::new(keys));
    }
}

/// While the login server is unreachable, lookups fail at once instead of waiting.
fn fail_pending(requests: &mut mpsc::Receiver<LoginRequest>, inbox: &mpsc::Sender<Input>) {
    while let Ok(request) = requests.try_recv() {
        let request_id = match request {
            LoginRequest::Lookup { request_id, .. } | LoginRequest::Search { request_id, .. } => {
                request_id
            }
            LoginRequest::Homed { .. } => continue,
        };
        let _ = inbox.try_send(Input::LoginFailed { request_id });
    }
}
