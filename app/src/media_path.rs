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
//!   media on the fallback pair too while the selected pair's consent answers are overdue,
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
//! Does not: decrypt or authenticate media (the media layer seals each datagram end to
//! end), carry signalling (candidates travel in
//! `proto::peer::PeerToPeer::Candidates`), resolve host names in TURN URLs, use TCP/TLS to
//! the relay, or gather IPv6 host candidates on its own.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nat::discovery::{DiscoveryConfig, DiscoveryEvent, NatDiscovery, RetransmitPolicy};
use nat::holepunch::{
    Candidate as NatCandidate, CandidateKind as NatCandidateKind, HolePunch, HolePunchConfig,
    IceCredentials, PathPair, PunchEvent, Role,
};
use nat::turn::client::{ClientConfig, ClientEvent, TurnClient};
use nat::{Transmit, Via};
use proto::peer::{Candidate, CandidateKind};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
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

/// One call's media path. Keep it for the whole call: dropping it stops the path.
#[derive(Debug)]
pub struct MediaPath {
    local: IceCredentials,
    candidates: Vec<NatCandidate>,
    connect_timeout: Duration,
    idle: Option<Idle>,
    pending_remote: Vec<NatCandidate>,
    commands: Option<mpsc::Sender<Command>>,
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
}

impl MediaPath {
    /// Binds the call's socket and gathers host, server-reflexive and relayed candidates.
    pub async fn bind(config: PathConfig) -> Result<(MediaPath, LocalCandidates), PathError> {
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
                local_addr,
            },
            signalled,
        ))
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
        tokio::spawn(driver.run(out_rx, cmd_rx));
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
/// both finished or `gather_timeout` passed.
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
                        warn!(error = %e, "TURN allocation failed; no relayed candidate");
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
        let turn_done = turn.is_none() || allocated.is_some();
        if discovery.is_none() && turn_done {
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
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                let now = Instant::now().into_std();
                let bytes = &buf[..len];
                let ours = discovery.as_mut().is_some_and(|d| d.handle_datagram(now, from, bytes));
                if !ours && let Some(client) = turn.as_mut() {
                    client.handle_datagram(now, from, bytes);
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
            }
        }
    }
    let turn = match (turn, allocated) {
        (Some(client), Some((relayed, mapped))) => Some((Relay { client, relayed }, mapped)),
        _ => None,
    };
    Gathered { mapped, turn }
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
            while let Some(t) = relay.client.poll_transmit() {
                let _ = self.socket.send_to(&t.payload, t.destination).await;
            }
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
            while let Some(t) = relay.client.poll_transmit() {
                let _ = self.socket.send_to(&t.payload, t.destination).await;
            }
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
                while let Some(t) = relay.client.poll_transmit() {
                    let _ = self.socket.send_to(&t.payload, t.destination).await;
                }
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
