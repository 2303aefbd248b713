//! The relay ports of one TURN owner task: binds them from the port pool, runs a reader per
//! port that forwards what peers send into the owner's inbox, sends from them, and frees
//! them. Shared by the UDP relay ([`super::task`]) and TURN over TCP ([`super::tcp`]).
//!
//! Does not: log or count (the owners decide what is worth a log line or a metric), or
//! decide which allocation gets a port (the TURN core does).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use nat::turn::server::AllocationId;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::RelayConfig;
use super::ports::PortPool;

/// Largest datagram a relay port reads from a peer: jumbo-frame sized, so a thousand
/// allocations cost 9 MB of buffers rather than 64 MB. Longer datagrams are truncated,
/// which no real-time media sender produces (they stay under the path MTU).
const MAX_PEER_DATAGRAM_BYTES: usize = 9_216;

/// A datagram a peer sent to the relay port of `allocation`.
pub(super) struct PeerDatagram {
    pub(super) allocation: AllocationId,
    pub(super) from: SocketAddr,
    pub(super) payload: Vec<u8>,
}

/// Wraps a [`PeerDatagram`] into the owner's inbox message.
pub(super) type RelayMessage<M> = fn(PeerDatagram) -> M;

struct RelayPort {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
    port: u16,
}

/// Every open relay port of one owner, by allocation.
pub(super) struct RelayPorts<M> {
    relays: HashMap<AllocationId, RelayPort>,
    pool: PortPool,
    bind_ip: IpAddr,
    advertised_ip: IpAddr,
    buffer_bytes: usize,
    inbox: mpsc::Sender<M>,
    message: RelayMessage<M>,
}

impl<M: Send + 'static> RelayPorts<M> {
    /// Ports come from `config.relay_ports`, bound on `bind_ip` with
    /// `config.socket_buffer_bytes` of buffers; peers reach them at `advertised_ip`.
    pub(super) fn new(
        config: &RelayConfig,
        bind_ip: IpAddr,
        advertised_ip: IpAddr,
        inbox: mpsc::Sender<M>,
        message: RelayMessage<M>,
    ) -> Self {
        Self {
            relays: HashMap::new(),
            pool: PortPool::new(config.relay_ports.clone()),
            bind_ip,
            advertised_ip,
            buffer_bytes: config.socket_buffer_bytes,
            inbox,
            message,
        }
    }

    /// Binds a relay port for `allocation` and starts its reader; the relayed address to
    /// hand the TURN core, or `None` when no port of the range was free. The owner tells the
    /// core either way, after its own log line, so the lines keep their order.
    pub(super) fn open(&mut self, allocation: AllocationId, even_port: bool) -> Option<SocketAddr> {
        let (socket, port) = self
            .pool
            .bind(self.bind_ip, even_port, self.buffer_bytes)
            .and_then(|std| {
                let port = std.local_addr().ok()?.port();
                Some((UdpSocket::from_std(std).ok()?, port))
            })?;
        let socket = Arc::new(socket);
        let reader =
            spawn_relay_reader(allocation, socket.clone(), self.inbox.clone(), self.message);
        self.relays.insert(
            allocation,
            RelayPort {
                socket,
                reader,
                port,
            },
        );
        Some(SocketAddr::new(self.advertised_ip, port))
    }

    /// Closes `allocation`'s relay port and returns it to the pool; the port closed, if any.
    pub(super) fn close(&mut self, allocation: AllocationId) -> Option<u16> {
        let relay = self.relays.remove(&allocation)?;
        relay.reader.abort();
        self.pool.release(relay.port);
        Some(relay.port)
    }

    /// Sends `payload` from `allocation`'s relay port to `to`; `false` only when the kernel
    /// refused it (an unknown allocation is not an error: its port closed meanwhile).
    pub(super) fn send(&self, allocation: AllocationId, to: SocketAddr, payload: &[u8]) -> bool {
        match self.relays.get(&allocation) {
            Some(relay) => relay.socket.try_send_to(payload, to).is_ok(),
            None => true,
        }
    }

    /// Stops every reader; on shutdown, when the owner drops the sockets with itself.
    pub(super) fn stop_all(&mut self) {
        for (_, relay) in self.relays.drain() {
            relay.reader.abort();
        }
    }
}

fn spawn_relay_reader<M: Send + 'static>(
    allocation: AllocationId,
    socket: Arc<UdpSocket>,
    inbox: mpsc::Sender<M>,
    message: RelayMessage<M>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_PEER_DATAGRAM_BYTES];
        loop {
            let (n, from) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                // ICMP errors from earlier sends surface here on Linux; keep reading.
                Err(_) => continue,
            };
            if inbox
                .send(message(PeerDatagram {
                    allocation,
                    from,
                    payload: buf[..n].to_vec(),
                }))
                .await
                .is_err()
            {
                return;
            }
        }
    })
}
