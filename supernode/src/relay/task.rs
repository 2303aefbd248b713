//! The owner task: runs the TURN and STUN cores on real sockets.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nat::stun::server::{LocalSocket, Outcome, ServerConfig as StunConfig, StunServer};
use nat::turn::PeerPolicy;
use nat::turn::server::{AllocationId, ServerCommand, ServerConfig, ServerStats, TurnServer};
use rand::Rng as _;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::config::RelayConfig;
use super::relay_ports::{PeerDatagram, RelayPorts};

/// Largest datagram read on the listening socket.
const MAX_DATAGRAM_BYTES: usize = 65_535;
/// The listening socket carries every client's ChannelData (50,000 datagrams per second at a
/// thousand calls), so it gets this many times the per-socket buffer: a few milliseconds
/// in which the owner task is not scheduled must not overflow it. Memory is only used
/// while datagrams wait.
const LISTEN_BUFFER_FACTOR: usize = 8;
/// Datagrams handled per wake-up before timers and other inputs get a turn.
const BATCH: usize = 256;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The configuration is unusable.
    #[error("bad relay configuration: {0}")]
    Config(String),
}

/// Counters of the running relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// The TURN core's counters.
    pub turn: ServerStats,
    /// STUN Binding requests answered.
    pub binding_answered: u64,
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
}

enum Inbound {
    /// A peer sent a datagram to a relay port.
    Relay(PeerDatagram),
    /// A datagram on one of the RFC 5780 extra sockets.
    Stun {
        local: LocalSocket,
        from: SocketAddr,
        payload: Vec<u8>,
    },
    Stats(oneshot::Sender<RelayStats>),
    Shutdown,
}

/// A running STUN/TURN relay. Dropping it stops the service.
#[derive(Debug)]
pub struct RelayServer {
    listen_addr: SocketAddr,
    inbox: mpsc::Sender<Inbound>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inbound")
    }
}

pub(super) fn set_buffers(socket: &StdUdpSocket, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let s = socket2::SockRef::from(socket);
    // Best effort: the kernel caps these at net.core.rmem_max / wmem_max; with CAP_NET_ADMIN
    // the FORCE variants go past the cap. Linux reports twice what was set (its
    // bookkeeping overhead), so a report below `bytes` means the cap applied.
    let _ = s.set_recv_buffer_size(bytes);
    if s.recv_buffer_size().is_ok_and(|got| got < bytes) {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(socket, bytes);
    }
    let _ = s.set_send_buffer_size(bytes);
    if s.send_buffer_size().is_ok_and(|got| got < bytes) {
        let _ = rustix::net::sockopt::set_socket_send_buffer_size_force(socket, bytes);
    }
}

fn bind_udp(addr: SocketAddr, buffer_bytes: usize) -> Result<UdpSocket, RelayError> {
    let err = |source| RelayError::Bind { addr, source };
    let socket = StdUdpSocket::bind(addr).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    set_buffers(&socket, buffer_bytes);
    UdpSocket::from_std(socket).map_err(err)
}

/// The IP relay ports are advertised on: the configured one, else the listening one, else
/// the one this host uses towards the Internet.
pub(super) fn advertised_ip(
    config: &RelayConfig,
    listen_addr: SocketAddr,
) -> Result<IpAddr, RelayError> {
    match config.advertised_ip {
        Some(ip) => Ok(ip),
        None if !listen_addr.ip().is_unspecified() => Ok(listen_addr.ip()),
        None => outbound_ip(listen_addr.is_ipv4()).ok_or_else(|| {
            RelayError::Config("cannot tell this host's address; set advertised_ip".into())
        }),
    }
}

/// A TURN core for `config` that refuses to relay to this server's `own` addresses
/// (unspecified ones are left out).
pub(super) fn turn_core(
    config: &RelayConfig,
    mut own: Vec<IpAddr>,
    now: Instant,
) -> Result<TurnServer, RelayError> {
    own.retain(|ip| !ip.is_unspecified());
    let mut core_config = ServerConfig::new(config.realm.clone(), config.shared_secret.clone());
    core_config.peer_policy = PeerPolicy::new(config.allow_relay_to.clone(), own);
    core_config.max_allocations_total = config.max_allocations_total;
    core_config.max_allocations_per_user = config.max_allocations_per_user;
    core_config.bandwidth_cap_bytes_per_s = config.bandwidth_cap_bytes_per_s;
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    TurnServer::new(core_config, now, now_unix, seed).map_err(|e| RelayError::Config(e.to_string()))
}

/// The IP this host uses towards the Internet, found without sending anything.
fn outbound_ip(v4: bool) -> Option<IpAddr> {
    let (bind, probe) = if v4 {
        ("0.0.0.0:0", "192.0.2.1:9")
    } else {
        ("[::]:0", "[2001:db8::1]:9")
    };
    let socket = StdUdpSocket::bind(bind).ok()?;
    socket.connect(probe).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

impl RelayServer {
    /// Binds the sockets and starts the owner task on the current tokio runtime.
    pub async fn start(config: RelayConfig) -> Result<Self, RelayError> {
        let listen = bind_udp(
            config.listen,
            config
                .socket_buffer_bytes
                .saturating_mul(LISTEN_BUFFER_FACTOR),
        )?;
        let listen_addr = listen.local_addr().map_err(|source| RelayError::Bind {
            addr: config.listen,
            source,
        })?;
        let advertised_ip = advertised_ip(&config, listen_addr)?;
        let mut own = vec![listen_addr.ip(), advertised_ip];
        own.extend(config.alternate.map(|a| a.ip()));
        let turn = turn_core(&config, own, Instant::now())?;

        let primary = SocketAddr::new(advertised_ip, listen_addr.port());
        let mut stun_config = StunConfig::new(primary);
        let (inbox_tx, inbox_rx) = mpsc::channel(config.inbox_capacity.max(16));
        let mut extra = HashMap::new();
        if let Some(alt) = config.alternate {
            stun_config = stun_config.with_alternate(alt);
            let stun = StunServer::new(stun_config.clone())
                .map_err(|e| RelayError::Config(e.to_string()))?;
            for (local, addr) in stun.sockets() {
                if local == LocalSocket::Primary {
                    continue;
                }
                // The advertised addresses may be public ones; bind the same ports locally.
                let bind_ip = if addr.ip() == advertised_ip {
                    listen_addr.ip()
                } else {
                    addr.ip()
                };
                let socket = Arc::new(bind_udp(
                    SocketAddr::new(bind_ip, addr.port()),
                    config.socket_buffer_bytes,
                )?);
                spawn_stun_reader(local, socket.clone(), inbox_tx.clone());
                extra.insert(local, socket);
            }
        }
        let stun = StunServer::new(stun_config).map_err(|e| RelayError::Config(e.to_string()))?;

        let owner = Owner {
            turn,
            stun,
            listen: Arc::new(listen),
            extra,
            relays: RelayPorts::new(
                &config,
                listen_addr.ip(),
                advertised_ip,
                inbox_tx.clone(),
                Inbound::Relay,
            ),
            binding_answered: 0,
            send_errors: 0,
        };
        info!(%listen_addr, %advertised_ip, "STUN/TURN relay listening");
        let task = tokio::spawn(owner.run(inbox_rx));
        Ok(Self {
            listen_addr,
            inbox: inbox_tx,
            task: Some(task),
        })
    }

    /// The bound `--turn-listen` address (with the real port when 0 was asked for).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Current counters; `None` once the relay stopped.
    pub async fn stats(&self) -> Option<RelayStats> {
        let (tx, rx) = oneshot::channel();
        self.inbox.send(Inbound::Stats(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Stops the relay, closing every socket, and waits for the owner task.
    pub async fn shutdown(mut self) {
        let _ = self.inbox.send(Inbound::Shutdown).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RelayServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Owner {
    turn: TurnServer,
    stun: StunServer,
    listen: Arc<UdpSocket>,
    extra: HashMap<LocalSocket, Arc<UdpSocket>>,
    relays: RelayPorts<Inbound>,
    binding_answered: u64,
    send_errors: u64,
}

fn spawn_stun_reader(local: LocalSocket, socket: Arc<UdpSocket>, inbox: mpsc::Sender<Inbound>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let msg = Inbound::Stun {
                local,
                from,
                payload: buf[..n].to_vec(),
            };
            if inbox.send(msg).await.is_err() {
                return;
            }
        }
    });
}

impl Owner {
    async fn run(mut self, mut inbox: mpsc::Receiver<Inbound>) {
        let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
        let listen = self.listen.clone();
        let mut metrics_tick = tokio::time::interval(std::time::Duration::from_secs(1));
        metrics_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.turn.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                received = listen.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received {
                        self.listen_datagram(from, &buf[..n]);
                    }
                    for _ in 0..BATCH {
                        match listen.try_recv_from(&mut buf) {
                            Ok((n, from)) => self.listen_datagram(from, &buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => continue,
                        }
                    }
                }
                message = inbox.recv() => {
                    let Some(message) = message else { return };
                    if !self.inbound(message) {
                        return;
                    }
                    for _ in 0..BATCH {
                        match inbox.try_recv() {
                            Ok(m) => {
                                if !self.inbound(m) {
                                    return;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                                () = sleep_until(deadline) => {
                    self.turn.handle_timeout(Instant::now());
                    self.flush();
                }
                _ = metrics_tick.tick() => self.export_metrics(),
            }
        }
    }

    fn export_metrics(&self) {
        let s = self.turn.stats();
        metrics::gauge!("turn_allocations").set(s.allocations as f64);
        metrics::counter!("turn_allocations_granted_total").absolute(s.allocations_granted);
        metrics::counter!("turn_packets_to_peers_total").absolute(s.packets_to_peers);
        metrics::counter!("turn_packets_to_clients_total").absolute(s.packets_to_clients);
        metrics::counter!("turn_relayed_bytes_total").absolute(s.relayed_bytes);
        metrics::counter!("turn_malformed_total").absolute(s.malformed);
        metrics::counter!("turn_dropped_no_permission_total").absolute(s.dropped_no_permission);
        metrics::counter!("turn_dropped_bandwidth_total").absolute(s.dropped_bandwidth);
        metrics::counter!("turn_refused_peers_total").absolute(s.refused_peers);
        metrics::counter!("turn_unanswered_unauthenticated_total")
            .absolute(s.unanswered_unauthenticated);
        metrics::counter!("turn_auth_failures_total").absolute(s.auth_failures);
        metrics::counter!("stun_binding_answered_total").absolute(self.binding_answered);
        metrics::counter!("turn_send_errors_total").absolute(self.send_errors);
    }

    fn listen_datagram(&mut self, from: SocketAddr, payload: &[u8]) {
        let now = Instant::now();
        // ChannelData (first bits 01) is the hot path: straight to TURN.
        if payload.first().is_some_and(|b| b >> 6 == 0b01) {
            self.turn.handle_listen_datagram(now, from, payload);
        } else {
            match self
                .stun
                .handle_datagram(now, LocalSocket::Primary, from, payload)
            {
                Outcome::NotBinding => self.turn.handle_listen_datagram(now, from, payload),
                Outcome::Answered => self.flush_stun(),
                Outcome::Dropped(_) => {}
            }
        }
        self.flush();
    }

    /// Returns `false` on shutdown.
    fn inbound(&mut self, message: Inbound) -> bool {
        match message {
            Inbound::Relay(d) => {
                self.turn
                    .handle_relay_datagram(Instant::now(), d.allocation, d.from, &d.payload);
                self.flush();
            }
            Inbound::Stun {
                local,
                from,
                payload,
            } => {
                if self
                    .stun
                    .handle_datagram(Instant::now(), local, from, &payload)
                    == Outcome::Answered
                {
                    self.flush_stun();
                }
            }
            Inbound::Stats(reply) => {
                let _ = reply.send(RelayStats {
                    turn: self.turn.stats(),
                    binding_answered: self.binding_answered,
                    send_errors: self.send_errors,
                });
            }
            Inbound::Shutdown => {
                self.relays.stop_all();
                return false;
            }
        }
        true
    }

    fn flush_stun(&mut self) {
        while let Some(t) = self.stun.poll_transmit() {
            let socket = match t.from {
                LocalSocket::Primary => Some(&self.listen),
                other => self.extra.get(&other),
            };
            if let Some(socket) = socket {
                self.binding_answered += 1;
                if socket.try_send_to(&t.payload, t.destination).is_err() {
                    self.send_errors += 1;
                }
            }
        }
    }

    fn flush(&mut self) {
        while let Some(command) = self.turn.poll_command() {
            match command {
                ServerCommand::SendFromListen { to, payload } => {
                    if self.listen.try_send_to(&payload, to).is_err() {
                        self.send_errors += 1;
                    }
                }
                ServerCommand::SendFromRelay {
                    allocation,
                    to,
                    payload,
                } => {
                    if !self.relays.send(allocation, to, &payload) {
                        self.send_errors += 1;
                    }
                }
                ServerCommand::OpenRelayPort {
                    allocation,
                    even_port,
                } => self.open(allocation, even_port),
                ServerCommand::CloseRelayPort { allocation } => {
                    if let Some(port) = self.relays.close(allocation) {
                        debug!(allocation = allocation.0, port, "relay port closed");
                    }
                }
            }
        }
    }

    fn open(&mut self, allocation: AllocationId, even_port: bool) {
        let now = Instant::now();
        let Some(relayed) = self.relays.open(allocation, even_port) else {
            warn!(allocation = allocation.0, "no relay port free");
            self.turn.handle_relay_port_failed(now, allocation);
            return;
        };
        debug!(
            allocation = allocation.0,
            port = relayed.port(),
            "relay port open"
        );
        self.turn.handle_relay_port_opened(now, allocation, relayed);
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_go_past_the_sysctl_cap_when_the_process_may() {
        let wanted = 32 * 1024 * 1024;
        let socket = StdUdpSocket::bind("127.0.0.1:0").expect("bind");
        set_buffers(&socket, wanted);
        let s = socket2::SockRef::from(&socket);
        let got = s.recv_buffer_size().expect("SO_RCVBUF");
        let scratch = StdUdpSocket::bind("127.0.0.1:0").expect("bind");
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&scratch, wanted).is_ok() {
            assert!(got >= wanted, "asked {wanted}, got {got}");
        } else {
            // Without CAP_NET_ADMIN the cap applies; the plain option still took effect.
            assert!(got > 0);
        }
        assert!(s.send_buffer_size().expect("SO_SNDBUF") > 0);
    }
}
