//! The datagram path a call's media takes between two devices: one UDP socket per call,
//! direct when hole punching opens a pair, through a TURN relay otherwise.
//!
//! A tokio shell around the sans-IO cores of the `nat` crate:
//! - gathering ([`MediaPath::bind`]): host candidates (the socket's interface addresses),
//!   a server-reflexive candidate (a STUN Binding to the home supernode, driven by
//!   [`nat::discovery::NatDiscovery`] in its mapped-address-only mode) and a relayed
//!   candidate (an allocation on the supernode's relay, [`nat::turn::client::TurnClient`]);
//! - connectivity ([`MediaPath::start`]): [`nat::holepunch::HolePunch`] runs the checks on
//!   every pair, nominates the pair [`nat::path::select_path`] prefers (direct over relay),
//!   moves from the relay to a direct pair when one opens and back when it dies (sending
//!   media on the fallback pair too once the peer's steady media stops arriving on the
//!   selected pair for 100 ms or its consent answers are overdue,
//!   [`nat::holepunch::HolePunch::backup_pair`]), and keeps the NAT bindings open with
//!   consent checks and keep-alives;
//! - media: datagrams from [`PathChannels::outgoing`] leave on the selected pair (straight
//!   from the socket, or as ChannelData/Send indications through the allocation); datagrams
//!   that are neither STUN nor from the TURN server reach [`PathChannels::incoming`].
//!
//! One task owns the socket and every state machine; the [`MediaPath`] handle talks to it
//! through a bounded command channel. The task ends, closing `incoming` and the `path`
//! watch and releasing the allocation, when the handle or the `incoming` receiver is
//! dropped, or when no pair works (the connect timeout passed without one, or every working
//! pair died).
//!
//! Media is accepted only from the remote side of a candidate pair (a signalled candidate,
//! or a peer-reflexive address whose check passed MESSAGE-INTEGRITY), so strangers cannot
//! fill the call's channel.
//!
//! When UDP to the relay goes unanswered for [`TCP_FALLBACK_AFTER`] (outbound UDP blocked)
//! or the UDP allocation fails, and the server offers `turn:IP:PORT?transport=tcp`, the
//! relayed candidate is allocated over TCP instead (RFC 8656 §3.1; the relayed side stays
//! UDP), trying each TCP URL in the server's order until one connects and allocates (a
//! supernode lists its `--tcp-listen` port first, then the TURN port): the TURN client runs in stream mode, a reader task feeds it what the connection
//! delivers and a writer task sends what it queues. Media on that path is the same sealed
//! datagrams, now carried in ChannelData on the stream.
//!
//! Does not: decrypt or authenticate media (the media layer seals each datagram end to
//! end), carry signalling (candidates travel in
//! `proto::peer::PeerToPeer::Candidates`), resolve host names in TURN URLs, run TLS to the
//! relay (`turns:`), or gather IPv6 host candidates on its own.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nat::discovery::{DiscoveryConfig, DiscoveryEvent, NatDiscovery, RetransmitPolicy};
use nat::holepunch::{
    Candidate as NatCandidate, CandidateKind as NatCandidateKind, HolePunch, HolePunchConfig,
    IceCredentials, PathPair, PunchEvent, Role,
};
use nat::turn::client::{ClientConfig, ClientEvent, TurnClient, TurnTransport};
use nat::{Transmit, Via};
use proto::peer::{Candidate, CandidateKind};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::events::PathKind;

/// Largest datagram the path reads; media stays far below (about 1200 bytes).
const RECV_BUFFER_BYTES: usize = 4096;
/// Depth of the media channels: about 1 s of 20 ms frames, then the oldest wait.
const MEDIA_CHANNEL_DEPTH: usize = 64;
/// Depth of the command channel from the handle.
const COMMAND_CHANNEL_DEPTH: usize = 32;
/// Candidates kept from `add_remote_candidates` before `start`.
const MAX_PENDING_REMOTE: usize = 32;
/// Peer IPs given a TURN permission per call: as many as the hole puncher keeps remote
/// candidates. Each permission is refreshed for the whole call, so a peer trickling
/// candidates must not make the client ask the relay for an unbounded set.
const MAX_PERMITTED_PEERS: usize = 32;
/// How long the UDP allocation may go unanswered before the relay is tried over TCP: two
/// sends (RTO 500 ms) lost means UDP to the relay is most likely blocked.
pub const TCP_FALLBACK_AFTER: Duration = Duration::from_secs(1);
/// Longest wait for the relay's TCP handshake.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Messages queued for the relay's TCP connection before newer ones are dropped (late
/// audio is worthless).
const TCP_WRITE_QUEUE: usize = 128;
/// Bytes read from the relay's TCP connection at once.
const TCP_READ_CHUNK_BYTES: usize = 4096;
/// How long [`MediaPath::close`] waits for the relay allocation's release to leave.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// A TURN server and the long-term credentials minted for it (the supernode's
/// `TurnCredentials`: `urls` like `turn:IP:PORT?transport=udp`).
#[derive(Clone, PartialEq, Eq)]
pub struct TurnServer {
    pub urls: Vec<String>,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

impl TurnServer {
    pub fn new(
        urls: Vec<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            urls,
            username: username.into(),
            password: password.into(),
        }
    }

    /// The UDP address of the first `turn:` URL with a literal IP (`turns:` and TCP are not
    /// spoken here).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.urls.iter().find_map(|url| parse_turn_url(url))
    }

    /// The TCP address of the first `turn:IP:PORT?transport=tcp` URL.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.urls.iter().find_map(|url| parse_turn_tcp_url(url))
    }

    /// The TCP addresses of every `turn:IP:PORT?transport=tcp` URL, in the server's order,
    /// without repeats.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs = Vec::new();
        for addr in self.urls.iter().filter_map(|url| parse_turn_tcp_url(url)) {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }
}

/// `turn:IP:PORT?transport=tcp` into its address; `None` for anything else.
pub fn parse_turn_tcp_url(url: &str) -> Option<SocketAddr> {
    let (addr, query) = url.strip_prefix("turn:")?.split_once('?')?;
    query
        .split('&')
        .any(|kv| kv == "transport=tcp")
        .then(|| addr.parse().ok())
        .flatten()
}

/// `turn:IP:PORT[?transport=udp]` (or `turn:[V6]:PORT`) into its address; `None` for
/// other schemes, TCP transport, host names or a missing port.
pub fn parse_turn_url(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("turn:")?;
    let (addr, query) = match rest.split_once('?') {
        Some((addr, query)) => (addr, Some(query)),
        None => (rest, None),
    };
    if let Some(query) = query
        && query
            .split('&')
            .any(|kv| kv.starts_with("transport=") && kv != "transport=udp")
    {
        return None;
    }
    addr.parse().ok()
}

/// Set to `1`, every call's media goes through the TURN relay: no host or
/// server-reflexive candidates are offered (tests of a relay such as coturn; users who
/// would rather not show their addresses to the peer).
pub const RELAY_ONLY_ENV: &str = "PEERPHONE_RELAY_ONLY";

fn relay_only_forced() -> bool {
    std::env::var_os(RELAY_ONLY_ENV).is_some_and(|v| v == "1")
}

/// How a call's path gathers candidates.
#[derive(Debug, Clone)]
pub struct PathConfig {
    /// Where the call's socket binds. Default `0.0.0.0:0`.
    pub bind: SocketAddr,
    /// Offer host candidates (and accept peer-reflexive checks on the socket). Turning it
    /// off (with no `stun_server`) forces every pair through the relay.
    pub host_candidates: bool,
    /// The host candidates' IPs; empty: the bound IP, else the IPs that route towards the
    /// configured servers and the Internet (and loopback when a server is on loopback).
    pub host_ips: Vec<IpAddr>,
    /// The home supernode's STUN address (its `--turn-listen`), for the server-reflexive
    /// candidate.
    pub stun_server: Option<SocketAddr>,
    /// The home supernode's relay and credentials, for the relayed candidate.
    pub turn: Option<TurnServer>,
    /// How long gathering may take; missing answers leave their candidate out.
    pub gather_timeout: Duration,
    /// Give up when no pair works this long after the last remote candidate arrived.
    pub connect_timeout: Duration,
}

impl Default for PathConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            host_candidates: true,
            host_ips: Vec::new(),
            stun_server: None,
            turn: None,
            gather_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// What to signal to the peer (`PeerToPeer::Candidates`).
#[derive(Clone, PartialEq, Eq)]
pub struct LocalCandidates {
    pub ufrag: String,
    pub password: String,
    pub candidates: Vec<Candidate>,
}

impl std::fmt::Debug for LocalCandidates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCandidates")
            .field("ufrag", &self.ufrag)
            .field("candidates", &self.candidates)
            .finish_non_exhaustive()
    }
}

/// The running path, as the call sees it.
#[derive(Debug)]
pub struct PathChannels {
    /// Sealed media datagrams to send to the peer; dropped while no pair is selected.
    pub outgoing: mpsc::Sender<Vec<u8>>,
    /// Media datagrams from the peer. `None` from `recv` means the path is gone.
    pub incoming: mpsc::Receiver<Vec<u8>>,
    /// The selected path: `None` until the first pair works. Its sender is dropped when
    /// the path is gone.
    pub path: watch::Receiver<Option<PathKind>>,
}

/// Why the path cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("cannot bind the call's UDP socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "no address to carry the call's audio: host addresses are off (relay only) and the \
         relay gave no allocation; check the network connection and the supernode's TURN service"
    )]
    NoCandidates,
    #[error("the path was already started")]
    AlreadyStarted,
    #[error("the path has stopped")]
    Stopped,
    #[error("too many candidates queued")]
    Busy,
}

enum Command {
    AddRemote(Vec<NatCandidate>),
    TurnCredentials { username: String, password: String },
}

/// One call's media path. Keep it for the whole call: dropping it stops the path, and
/// [`MediaPath::close`] also waits until its relay allocation is given back.
#[derive(Debug)]
pub struct MediaPath {
    local: IceCredentials,
    candidates: Vec<NatCandidate>,
    connect_timeout: Duration,
    idle: Option<Idle>,
    pending_remote: Vec<NatCandidate>,
    commands: Option<mpsc::Sender<Command>>,
    /// The started path's task; it releases the allocation when `commands` closes.
    task: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
}

/// What [`MediaPath::bind`] hands to the task [`MediaPath::start`] spawns.
#[derive(Debug)]
struct Idle {
    socket: UdpSocket,
    turn: Option<Relay>,
}

#[derive(Debug)]
struct Relay {
    client: TurnClient,
    relayed: SocketAddr,
    /// `Some` when the client reaches the server over TCP.
    stream: Option<StreamLink>,
}

impl Relay {
    /// Sends what the TURN client queued: on the call's socket, or the TCP connection.
    async fn flush(&mut self, socket: &UdpSocket) {
        while let Some(t) = self.client.poll_transmit() {
            match &self.stream {
                // Full: the connection is not keeping up; requests time out, media is late.
                Some(link) => {
                    let _ = link.writer.try_send(t.payload);
                }
                None => {
                    let _ = socket.send_to(&t.payload, t.destination).await;
                }
            }
        }
    }
}

/// A TCP connection to the TURN server, driven by a reader and a writer task.
#[derive(Debug)]
struct StreamLink {
    writer: mpsc::Sender<Vec<u8>>,
    /// What the connection delivered, in read-sized chunks; closed when it ends.
    received: mpsc::Receiver<Vec<u8>>,
    tasks: [JoinHandle<()>; 2],
}

impl StreamLink {
    async fn connect(server: SocketAddr) -> std::io::Result<Self> {
        let stream = tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(server))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        stream.set_nodelay(true)?;
        let (mut read, mut write) = stream.into_split();
        let (writer, mut queue) = mpsc::channel::<Vec<u8>>(TCP_WRITE_QUEUE);
        let (deliver, received) = mpsc::channel(MEDIA_CHANNEL_DEPTH);
        let writing = tokio::spawn(async move {
            while let Some(bytes) = queue.recv().await {
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let reading = tokio::spawn(async move {
            let mut buf = vec![0u8; TCP_READ_CHUNK_BYTES];
            while let Ok(n) = read.read(&mut buf).await {
                if n == 0 || deliver.send(buf[..n].to_vec()).await.is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            writer,
            received,
            tasks: [writing, reading],
        })
    }
}

impl Drop for StreamLink {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The next chunk from the relay's TCP connection, `None` once it closed; never ready
/// without a TCP relay.
async fn stream_chunk(relay: &mut Option<Relay>) -> Option<Vec<u8>> {
    match relay.as_mut().and_then(|r| r.stream.as_mut()) {
        Some(link) => link.received.recv().await,
        None => std::future::pending().await,
    }
}

impl MediaPath {
    /// Binds the call's socket and gathers host, server-reflexive and relayed candidates.
    pub async fn bind(mut config: PathConfig) -> Result<(MediaPath, LocalCandidates), PathError> {
        if relay_only_forced() {
            config.host_candidates = false;
            config.stun_server = None;
        }
        let socket = UdpSocket::bind(config.bind)
            .await
            .map_err(|source| PathError::Bind {
                addr: config.bind,
                source,
            })?;
        let local_addr = socket.local_addr().map_err(|source| PathError::Bind {
            addr: config.bind,
            source,
        })?;
        let turn_server = config.turn.as_ref().and_then(TurnServer::udp_addr);
        if config.turn.is_some() && turn_server.is_none() {
            warn!("no usable turn: URL among the TURN server's URLs; no relayed candidate");
        }

        let mut candidates = Vec::new();
        let mut host_addrs = Vec::new();
        if config.host_candidates {
            let ips = if config.host_ips.is_empty() {
                auto_host_ips(local_addr, [config.stun_server, turn_server])
            } else {
                config.host_ips.clone()
            };
            for (index, ip) in ips.into_iter().enumerate() {
                let addr = SocketAddr::new(ip, local_addr.port());
                if host_addrs.contains(&addr) {
                    continue;
                }
                host_addrs.push(addr);
                let preference = 65535u16.saturating_sub(u16::try_from(index).unwrap_or(u16::MAX));
                candidates.push(NatCandidate::new(NatCandidateKind::Host, addr, preference));
            }
        }

        let gathered = gather(&socket, &config, turn_server, &host_addrs).await;
        let mut reflexive = gathered.mapped;
        if reflexive.is_none() && config.host_candidates {
            reflexive = gathered.turn.as_ref().and_then(|(_, mapped)| *mapped);
        }
        if let Some(mapped) = reflexive
            && (config.host_candidates || config.stun_server.is_some())
            && !host_addrs.contains(&mapped)
        {
            candidates.push(NatCandidate::server_reflexive(mapped));
        }
        let turn = gathered.turn.map(|(relay, _)| relay);
        if let Some(relay) = &turn {
            candidates.push(NatCandidate::relayed(relay.relayed));
        }
        if candidates.is_empty() {
            return Err(PathError::NoCandidates);
        }
        let local = IceCredentials::random(&mut rand::rng());
        let signalled = LocalCandidates {
            ufrag: local.ufrag.clone(),
            password: local.pwd.clone(),
            candidates: candidates.iter().filter_map(to_proto).collect(),
        };
        debug!(candidates = candidates.len(), "media path gathered");
        Ok((
            MediaPath {
                local,
                candidates,
                connect_timeout: config.connect_timeout,
                idle: Some(Idle { socket, turn }),
                pending_remote: Vec::new(),
                commands: None,
                task: None,
                local_addr,
            },
            signalled,
        ))
    }

    /// Stops the path and gives its relay allocation back (a Refresh with lifetime 0),
    /// waiting at most half a second for that to leave: a process that exits right after
    /// a call must not leave the allocation to expire on the TURN server (coturn keeps an
    /// abandoned one for its whole lifetime). A dropped path releases too, but nothing
    /// waits for it.
    pub async fn close(mut self) {
        self.commands = None;
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(CLOSE_WAIT, task).await;
        } else if let Some(Idle {
            socket,
            turn: Some(mut relay),
        }) = self.idle.take()
        {
            // Gathered but never started (the call ended first).
            if relay.client.release(Instant::now().into_std()).is_ok() {
                let _ = tokio::time::timeout(CLOSE_WAIT, relay.flush(&socket)).await;
            }
        }
    }

    /// The call socket's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts connectivity checks with the peer's credentials and candidates. The caller
    /// (`controlling`) nominates; both sides must agree on who that is.
    pub fn start(
        &mut self,
        controlling: bool,
        remote_ufrag: String,
        remote_password: String,
        remote_candidates: Vec<Candidate>,
    ) -> Result<PathChannels, PathError> {
        let idle = self.idle.take().ok_or(PathError::AlreadyStarted)?;
        let role = if controlling {
            Role::Controlling
        } else {
            Role::Controlled
        };
        let remote = IceCredentials {
            ufrag: remote_ufrag,
            pwd: remote_password,
        };
        let mut config = HolePunchConfig::new(role, rand::random(), self.local.clone(), remote);
        config.connect_timeout = self.connect_timeout;
        let now = Instant::now().into_std();
        let mut punch = HolePunch::new(config, now, rand::random());
        for candidate in &self.candidates {
            punch.add_local_candidate(*candidate);
        }
        let (out_tx, out_rx) = mpsc::channel(MEDIA_CHANNEL_DEPTH);
        let (in_tx, in_rx) = mpsc::channel(MEDIA_CHANNEL_DEPTH);
        let (path_tx, path_rx) = watch::channel(None);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CHANNEL_DEPTH);
        let mut driver = Driver {
            socket: idle.socket,
            relay: idle.turn,
            punch,
            direct_checks: self.candidates.iter().any(|c| c.via() == Via::Direct),
            incoming: in_tx,
            path: path_tx,
            selected: None,
            permitted: BTreeSet::new(),
        };
        let remote: Vec<NatCandidate> = self
            .pending_remote
            .drain(..)
            .chain(remote_candidates.iter().map(from_proto))
            .collect();
        driver.add_remote(now, remote);
        self.task = Some(tokio::spawn(driver.run(out_rx, cmd_rx)));
        self.commands = Some(cmd_tx);
        Ok(PathChannels {
            outgoing: out_tx,
            incoming: in_rx,
            path: path_rx,
        })
    }

    /// Hands fresh TURN credentials (for the same user) to the relay allocation: the
    /// supernode's expire (`ttl_s`), and a refresh signed with expired ones loses the
    /// allocation. Call it before `ttl_s` runs out on calls that may last longer.
    pub fn update_turn_credentials(
        &mut self,
        username: String,
        password: String,
    ) -> Result<(), PathError> {
        if let Some(idle) = self.idle.as_mut() {
            if let Some(relay) = idle.turn.as_mut() {
                relay.client.set_credentials(username, password);
            }
            return Ok(());
        }
        let Some(commands) = &self.commands else {
            return Err(PathError::Stopped);
        };
        commands
            .try_send(Command::TurnCredentials { username, password })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PathError::Busy,
                mpsc::error::TrySendError::Closed(_) => PathError::Stopped,
            })
    }

    /// Adds candidates the peer trickled after its first offer.
    pub fn add_remote_candidates(&mut self, candidates: Vec<Candidate>) -> Result<(), PathError> {
        let candidates: Vec<NatCandidate> = candidates.iter().map(from_proto).collect();
        match &self.commands {
            None => {
                if self.pending_remote.len() + candidates.len() > MAX_PENDING_REMOTE {
                    return Err(PathError::Busy);
                }
                self.pending_remote.extend(candidates);
                Ok(())
            }
            Some(commands) => {
                commands
                    .try_send(Command::AddRemote(candidates))
                    .map_err(|e| match e {
                        mpsc::error::TrySendError::Full(_) => PathError::Busy,
                        mpsc::error::TrySendError::Closed(_) => PathError::Stopped,
                    })
            }
        }
    }
}

/// The IPs of host candidates when the configuration names none.
fn auto_host_ips(local: SocketAddr, servers: [Option<SocketAddr>; 2]) -> Vec<IpAddr> {
    if !local.ip().is_unspecified() {
        return vec![local.ip()];
    }
    let v4 = local.is_ipv4();
    let mut ips: Vec<IpAddr> = Vec::new();
    for server in servers.into_iter().flatten() {
        if let Some(ip) = route_source(server)
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    // The documentation address is never sent to: connecting only asks for the route.
    let internet: SocketAddr = if v4 {
        SocketAddr::from(([192, 0, 2, 1], 9))
    } else {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 9))
    };
    if let Some(ip) = route_source(internet)
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    if ips.is_empty() {
        ips.push(if v4 {
            IpAddr::from(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        });
    }
    ips
}

/// The source address the kernel picks towards `to` (nothing is sent).
fn route_source(to: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if to.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(to).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

struct Gathered {
    mapped: Option<SocketAddr>,
    turn: Option<(Relay, Option<SocketAddr>)>,
}

/// Runs the STUN Binding and the TURN allocation side by side on the call's socket until
/// both finished or `gather_timeout` passed. When the UDP allocation stays unanswered for
/// [`TCP_FALLBACK_AFTER`] or fails, allocates over TCP instead (if the server offers it).
async fn gather(
    socket: &UdpSocket,
    config: &PathConfig,
    turn_server: Option<SocketAddr>,
    host_addrs: &[SocketAddr],
) -> Gathered {
    let started = Instant::now();
    let deadline = started + config.gather_timeout;
    let mut discovery = config.stun_server.map(|server| {
        let mut discovery_config =
            DiscoveryConfig::mapped_address_only(server, host_addrs.to_vec());
        discovery_config.retransmit = RetransmitPolicy {
            initial_rto: Duration::from_millis(200),
            max_transmissions: 5,
            last_wait_multiplier: 4,
        };
        NatDiscovery::new(discovery_config, started.into_std(), rand::random())
    });
    let mut mapped = None;
    let mut turn = match (turn_server, &config.turn) {
        (Some(server), Some(creds)) => {
            let client_config = ClientConfig::new(server, &creds.username, &creds.password);
            let mut client = TurnClient::new(client_config, rand::random());
            match client.allocate(started.into_std()) {
                Ok(()) => Some(client),
                Err(e) => {
                    warn!(error = %e, "cannot start a TURN allocation");
                    None
                }
            }
        }
        _ => None,
    };
    let tcp_servers = config
        .turn
        .as_ref()
        .map(TurnServer::tcp_addrs)
        .unwrap_or_default();
    // Index of the next TCP URL to try; all tried once it reaches the end.
    let mut tcp_next = 0usize;
    let mut tcp: Option<(TurnClient, StreamLink)> = None;
    let mut tcp_allocated: Option<SocketAddr> = None;
    let mut udp_answered = false;
    let mut allocated: Option<(SocketAddr, Option<SocketAddr>)> = None;
    let mut buf = vec![0u8; RECV_BUFFER_BYTES];
    loop {
        if let Some(d) = discovery.as_mut() {
            while let Some(t) = d.poll_transmit() {
                let _ = socket.send_to(&t.payload, t.destination).await;
            }
            if let Some(DiscoveryEvent::Finished(report)) = d.poll_event() {
                mapped = report.public_addr;
                discovery = None;
            }
        }
        if let Some(client) = turn.as_mut() {
            while let Some(t) = client.poll_transmit() {
                let _ = socket.send_to(&t.payload, t.destination).await;
            }
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::Allocated {
                        relayed, mapped, ..
                    } => allocated = Some((relayed, mapped)),
                    ClientEvent::AllocationFailed(e) => {
                        warn!(error = %e, "TURN allocation over UDP failed");
                    }
                    _ => {}
                }
            }
            if allocated.is_none()
                && client.relayed_addr().is_none()
                && client.poll_timeout().is_none()
            {
                turn = None;
            }
        }
        let udp_stalled =
            turn.is_none() || (!udp_answered && Instant::now() >= started + TCP_FALLBACK_AFTER);
        // Each TCP URL in turn, until one connects and allocates.
        while tcp.is_none()
            && tcp_allocated.is_none()
            && allocated.is_none()
            && udp_stalled
            && Instant::now() < deadline
            && let (Some(&server), Some(creds)) = (tcp_servers.get(tcp_next), &config.turn)
        {
            tcp_next += 1;
            tcp = start_tcp_allocation(server, creds).await;
        }
        let mut tcp_failed = false;
        if let Some((client, link)) = tcp.as_mut() {
            while let Some(t) = client.poll_transmit() {
                let _ = link.writer.try_send(t.payload);
            }
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::Allocated { relayed, .. } => tcp_allocated = Some(relayed),
                    ClientEvent::AllocationFailed(e) => {
                        warn!(error = %e, "TURN allocation over TCP failed");
                        tcp_failed = true;
                    }
                    _ => {}
                }
            }
        }
        if tcp_failed {
            tcp = None;
        }
        // A TCP allocation means UDP went unanswered: the server-reflexive candidate
        // would not come either.
        if allocated.is_some() || tcp_allocated.is_some() {
            if discovery.is_none() || tcp_allocated.is_some() {
                break;
            }
        } else if discovery.is_none()
            && turn.is_none()
            && tcp.is_none()
            && tcp_next >= tcp_servers.len()
        {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let mut wake = deadline;
        if let Some(at) = discovery.as_ref().and_then(NatDiscovery::poll_timeout) {
            wake = wake.min(Instant::from_std(at));
        }
        if let Some(at) = turn.as_ref().and_then(TurnClient::poll_timeout) {
            wake = wake.min(Instant::from_std(at));
        }
        if let Some(at) = tcp.as_ref().and_then(|(c, _)| c.poll_timeout()) {
            wake = wake.min(Instant::from_std(at));
        }
        if tcp.is_none() && tcp_next < tcp_servers.len() && allocated.is_none() && !udp_answered {
            wake = wake.min(started + TCP_FALLBACK_AFTER);
        }
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                let now = Instant::now().into_std();
                let bytes = &buf[..len];
                let ours = discovery.as_mut().is_some_and(|d| d.handle_datagram(now, from, bytes));
                if !ours && let Some(client) = turn.as_mut() {
                    udp_answered |= client.handle_datagram(now, from, bytes);
                }
            }
            chunk = tcp_chunk(&mut tcp) => {
                let now = Instant::now().into_std();
                let handled = match (chunk, tcp.as_mut()) {
                    (Some(bytes), Some((client, _))) => client.handle_stream_bytes(now, &bytes),
                    _ => Err(nat::turn::client::ClientError::NotAllocated),
                };
                if let Err(e) = handled {
                    warn!(error = %e, "TURN connection over TCP ended");
                    tcp = None;
                }
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now().into_std();
                if let Some(d) = discovery.as_mut() {
                    d.handle_timeout(now);
                }
                if let Some(client) = turn.as_mut() {
                    client.handle_timeout(now);
                }
                if let Some((client, _)) = tcp.as_mut() {
                    client.handle_timeout(now);
                }
            }
        }
    }
    let turn = match (turn, allocated, tcp, tcp_allocated) {
        (Some(client), Some((relayed, mapped)), _, _) => Some((
            Relay {
                client,
                relayed,
                stream: None,
            },
            mapped,
        )),
        // The TCP connection's mapped address says nothing about UDP: no srflx from it.
        (_, _, Some((client, link)), Some(relayed)) => Some((
            Relay {
                client,
                relayed,
                stream: Some(link),
            },
            None,
        )),
        _ => None,
    };
    Gathered { mapped, turn }
}

/// Connects to the relay over TCP and starts an allocation there.
async fn start_tcp_allocation(
    server: SocketAddr,
    creds: &TurnServer,
) -> Option<(TurnClient, StreamLink)> {
    let link = match StreamLink::connect(server).await {
        Ok(link) => link,
        Err(e) => {
            warn!(error = %e, "cannot reach the TURN server over TCP");
            return None;
        }
    };
    let config = ClientConfig::new(server, &creds.username, &creds.password).over_stream();
    let mut client = TurnClient::new(config, rand::random());
    match client.allocate(Instant::now().into_std()) {
        Ok(()) => {
            debug!("TURN allocation over TCP started");
            Some((client, link))
        }
        Err(e) => {
            warn!(error = %e, "cannot start a TURN allocation over TCP");
            None
        }
    }
}

/// The next chunk from a gathering TCP connection; `None` once it closed.
async fn tcp_chunk(tcp: &mut Option<(TurnClient, StreamLink)>) -> Option<Vec<u8>> {
    match tcp.as_mut() {
        Some((_, link)) => link.received.recv().await,
        None => std::future::pending().await,
    }
}

/// The task that owns the call's socket and state machines.
struct Driver {
    socket: UdpSocket,
    relay: Option<Relay>,
    punch: HolePunch,
    /// Whether checks may arrive straight on the socket (a host or server-reflexive
    /// candidate was offered); a relay-only path ignores them.
    direct_checks: bool,
    incoming: mpsc::Sender<Vec<u8>>,
    path: watch::Sender<Option<PathKind>>,
    selected: Option<PathPair>,
    /// Peer IPs with a TURN permission (requested).
    permitted: BTreeSet<IpAddr>,
}

impl Driver {
    fn add_remote(&mut self, now: std::time::Instant, candidates: Vec<NatCandidate>) {
        for candidate in candidates {
            if let Some(relay) = self.relay.as_mut()
                && admit_permission(&mut self.permitted, candidate.addr.ip())
            {
                // Relayed checks to this peer, and its checks to our relayed address,
                // need a permission on our allocation.
                if let Err(e) = relay.client.create_permission(now, candidate.addr.ip()) {
                    debug!(error = %e, "TURN permission not requested");
                }
            }
            self.punch.add_remote_candidate(now, candidate);
        }
    }

    async fn run(
        mut self,
        mut outgoing: mpsc::Receiver<Vec<u8>>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut buf = vec![0u8; RECV_BUFFER_BYTES];
        let mut outgoing_open = true;
        loop {
            if !self.flush().await {
                break;
            }
            let wake = self.poll_timeout();
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => {
                    match received {
                        Ok((len, from)) => self.handle_datagram(from, &buf[..len]),
                        // ICMP errors (port unreachable) surface here; timers decide.
                        Err(e) => debug!(error = %e, "recv on the call socket"),
                    }
                }
                chunk = stream_chunk(&mut self.relay) => {
                    let now = Instant::now().into_std();
                    let handled = match (chunk, self.relay.as_mut()) {
                        (Some(bytes), Some(relay)) => relay.client.handle_stream_bytes(now, &bytes),
                        _ => Err(nat::turn::client::ClientError::NotAllocated),
                    };
                    if let Err(e) = handled {
                        warn!(error = %e, "TURN connection over TCP lost");
                        self.relay = None;
                    }
                }
                media = outgoing.recv(), if outgoing_open => {
                    match media {
                        Some(media) => self.send_media(media).await,
                        None => outgoing_open = false,
                    }
                }
                command = commands.recv() => {
                    match command {
                        Some(Command::AddRemote(candidates)) => {
                            self.add_remote(Instant::now().into_std(), candidates);
                        }
                        Some(Command::TurnCredentials { username, password }) => {
                            if let Some(relay) = self.relay.as_mut() {
                                relay.client.set_credentials(username, password);
                            }
                        }
                        None => break,
                    }
                }
                () = sleep_until(wake) => {
                    let now = Instant::now().into_std();
                    self.punch.handle_timeout(now);
                    if let Some(relay) = self.relay.as_mut()
                        && relay.client.poll_timeout().is_some_and(|t| t <= now)
                    {
                        relay.client.handle_timeout(now);
                    }
                }
            }
        }
        self.release().await;
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let punch = self.punch.poll_timeout();
        let turn = self.relay.as_ref().and_then(|r| r.client.poll_timeout());
        [punch, turn]
            .into_iter()
            .flatten()
            .min()
            .map(Instant::from_std)
    }

    fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        let now = Instant::now().into_std();
        if let Some(relay) = self.relay.as_mut()
            && relay.client.transport() == TurnTransport::Udp
            && from == relay.client.server()
            && relay.client.handle_datagram(now, from, bytes)
        {
            return;
        }
        if nat::stun::is_stun(bytes) {
            if self.direct_checks {
                self.punch.handle_datagram(now, from, bytes);
            }
            return;
        }
        if self.punch.knows_remote(Via::Direct, from) {
            self.punch.note_media(now, Via::Direct, from);
            self.deliver(bytes.to_vec());
        }
    }

    fn deliver(&mut self, media: Vec<u8>) {
        // A full channel means the call is not keeping up: late audio is worthless.
        let _ = self.incoming.try_send(media);
    }

    async fn send_media(&mut self, media: Vec<u8>) {
        let Some(pair) = self.selected else {
            return;
        };
        // While the selected pair looks like it is dying, the fallback carries a copy.
        let backup = self.punch.backup_pair(Instant::now().into_std());
        for pair in std::iter::once(pair).chain(backup) {
            match pair.via {
                Via::Direct => {
                    let _ = self.socket.send_to(&media, pair.remote).await;
                }
                Via::Relay { .. } => {
                    if let Some(relay) = self.relay.as_mut() {
                        let _ = relay.client.send_to(pair.remote, &media);
                    }
                }
            }
        }
    }

    /// Sends what the cores queued and handles their events; `false` when the path is over.
    async fn flush(&mut self) -> bool {
        let now = Instant::now().into_std();
        while let Some(transmit) = self.punch.poll_transmit() {
            self.send_transmit(transmit).await;
        }
        let mut lost_relay = false;
        if let Some(relay) = self.relay.as_mut() {
            let relayed = relay.relayed;
            while let Some(event) = relay.client.poll_event() {
                match event {
                    ClientEvent::Data { peer, payload } => {
                        if nat::stun::is_stun(&payload) {
                            self.punch
                                .handle_relayed_datagram(now, relayed, peer, &payload);
                        } else if self.punch.knows_remote(Via::Relay { relayed }, peer) {
                            self.punch.note_media(now, Via::Relay { relayed }, peer);
                            let _ = self.incoming.try_send(payload);
                        }
                    }
                    ClientEvent::AllocationLost(e) => {
                        warn!(error = %e, "TURN allocation lost");
                        lost_relay = true;
                    }
                    other => debug!(?other, "TURN client"),
                }
            }
            // Answers to relayed checks just handled go out through the allocation.
            while let Some(transmit) = self.punch.poll_transmit() {
                if let Transmit {
                    via: Via::Relay { .. },
                    destination,
                    payload,
                } = &transmit
                {
                    let _ = relay.client.send_to(*destination, payload);
                } else {
                    let _ = self
                        .socket
                        .send_to(&transmit.payload, transmit.destination)
                        .await;
                }
            }
            relay.flush(&self.socket).await;
        }
        if lost_relay {
            self.relay = None;
        }
        while let Some(event) = self.punch.poll_event() {
            match event {
                PunchEvent::Connected { pair } | PunchEvent::PathChanged { pair } => {
                    self.select(now, pair);
                }
                PunchEvent::Failed { reason } => {
                    debug!(?reason, "media path failed");
                    return false;
                }
            }
        }
        // Channel binds and refreshes queued by `select`.
        if let Some(relay) = self.relay.as_mut() {
            relay.flush(&self.socket).await;
        }
        // Nobody listens any more: the call is over.
        !self.incoming.is_closed()
    }

    fn select(&mut self, now: std::time::Instant, pair: PathPair) {
        self.selected = Some(pair);
        let kind = match pair.kind() {
            nat::path::PathKind::Direct => PathKind::Direct,
            nat::path::PathKind::Relay => PathKind::Relay,
        };
        debug!(?kind, "media path selected");
        self.path.send_replace(Some(kind));
        if let (Via::Relay { .. }, Some(relay)) = (pair.via, self.relay.as_mut())
            && relay.client.channel(pair.remote).is_none()
        {
            // ChannelData costs 4 bytes per datagram instead of a Send indication's 36.
            let _ = relay.client.bind_channel(now, pair.remote);
        }
    }

    async fn send_transmit(&mut self, transmit: Transmit) {
        match transmit.via {
            Via::Direct => {
                let _ = self
                    .socket
                    .send_to(&transmit.payload, transmit.destination)
                    .await;
            }
            Via::Relay { .. } => {
                if let Some(relay) = self.relay.as_mut() {
                    // A refused send is a lost check; retransmissions cover it.
                    let _ = relay
                        .client
                        .send_to(transmit.destination, &transmit.payload);
                }
            }
        }
    }

    /// Gives the allocation back (best effort: one Refresh with lifetime 0).
    async fn release(&mut self) {
        if let Some(relay) = self.relay.as_mut() {
            let now = Instant::now().into_std();
            if relay.client.release(now).is_ok() {
                relay.flush(&self.socket).await;
            }
        }
    }
}

/// Records `ip` as permitted; `false` when it already was or the per-call cap is reached.
fn admit_permission(permitted: &mut BTreeSet<IpAddr>, ip: IpAddr) -> bool {
    if permitted.len() >= MAX_PERMITTED_PEERS && !permitted.contains(&ip) {
        return false;
    }
    permitted.insert(ip)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn to_proto(candidate: &NatCandidate) -> Option<Candidate> {
    let kind = match candidate.kind {
        NatCandidateKind::Host => CandidateKind::Host,
        NatCandidateKind::ServerReflexive => CandidateKind::ServerReflexive,
        NatCandidateKind::Relayed => CandidateKind::Relayed,
        NatCandidateKind::PeerReflexive => return None,
    };
    Some(Candidate {
        kind,
        addr: candidate.addr,
        priority: candidate.priority,
    })
}

fn from_proto(candidate: &Candidate) -> NatCandidate {
    let kind = match candidate.kind {
        CandidateKind::Host => NatCandidateKind::Host,
        CandidateKind::ServerReflexive => NatCandidateKind::ServerReflexive,
        CandidateKind::Relayed => NatCandidateKind::Relayed,
    };
    NatCandidate {
        kind,
        addr: candidate.addr,
        priority: candidate.priority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_urls_parse_to_udp_addresses() {
        assert_eq!(
            parse_turn_url("turn:192.0.2.1:3478?transport=udp"),
            Some("192.0.2.1:3478".parse().expect("addr"))
        );
        assert_eq!(
            parse_turn_url("turn:[2001:db8::1]:3478"),
            Some("[2001:db8::1]:3478".parse().expect("addr"))
        );
        assert_eq!(parse_turn_url("turn:192.0.2.1:3478?transport=tcp"), None);
        assert_eq!(parse_turn_url("stun:192.0.2.1:3478"), None);
        assert_eq!(parse_turn_url("turn:relay.example:3478"), None);
        assert_eq!(parse_turn_url("turns:192.0.2.1:5349"), None);
    }

    #[test]
    fn turn_tcp_urls_parse_to_tcp_addresses() {
        assert_eq!(
            parse_turn_tcp_url("turn:192.0.2.1:3478?transport=tcp"),
            Some("192.0.2.1:3478".parse().expect("addr"))
        );
        assert_eq!(
            parse_turn_tcp_url("turn:192.0.2.1:3478?transport=udp"),
            None
        );
        assert_eq!(parse_turn_tcp_url("turn:192.0.2.1:3478"), None);
        assert_eq!(
            parse_turn_tcp_url("turns:192.0.2.1:443?transport=tcp"),
            None
        );
        assert_eq!(
            parse_turn_tcp_url("turn:relay.example:3478?transport=tcp"),
            None
        );
        let server = TurnServer::new(
            vec![
                "turn:192.0.2.1:3478?transport=udp".into(),
                "turn:192.0.2.1:3478?transport=tcp".into(),
            ],
            "u",
            "p",
        );
        assert_eq!(server.udp_addr(), server.tcp_addr());
    }

    #[test]
    fn a_peer_trickling_candidates_gets_a_bounded_set_of_turn_permissions() {
        let mut permitted = BTreeSet::new();
        let mut admitted = 0;
        for i in 0..10_000u32 {
            let ip = IpAddr::from(Ipv4Addr::from(0x0a00_0000 + i));
            if admit_permission(&mut permitted, ip) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, MAX_PERMITTED_PEERS);
        assert_eq!(permitted.len(), MAX_PERMITTED_PEERS);
        let first = IpAddr::from(Ipv4Addr::from(0x0a00_0000));
        assert!(
            !admit_permission(&mut permitted, first),
            "asked once per IP"
        );
    }

    #[tokio::test]
    async fn a_path_with_nothing_to_offer_says_what_to_check() {
        let config = PathConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            host_candidates: false,
            ..PathConfig::default()
        };
        let error = MediaPath::bind(config).await.expect_err("no candidates");
        assert!(matches!(error, PathError::NoCandidates), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("relay"), "{message}");
        assert!(message.contains("check"), "{message}");
    }

    #[test]
    fn candidates_round_trip_through_the_wire_form() {
        let addr: SocketAddr = "198.51.100.7:4000".parse().expect("addr");
        for candidate in [
            NatCandidate::host(addr),
            NatCandidate::server_reflexive(addr),
            NatCandidate::relayed(addr),
        ] {
            let wire = to_proto(&candidate).expect("signalled kind");
            assert_eq!(from_proto(&wire), candidate);
        }
        let prflx = NatCandidate::new(NatCandidateKind::PeerReflexive, addr, 1);
        assert_eq!(to_proto(&prflx), None);
    }
}
