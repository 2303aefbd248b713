//! STUN, NAT behaviour discovery, hole punching, path selection, and TURN client and server
//! cores, all sans-IO: no sockets, no clock, no tokio. Callers feed datagrams and the time in
//! (`handle_*`) and drain what to send and what happened (`poll_*`).
//!
//! - [`stun`]: the STUN codec every other module uses, and the Binding server core.
//! - [`discovery`]: RFC 5780 NAT behaviour discovery (`peerphone netcheck`).
//! - [`holepunch`]: ICE-like connectivity checks between two peers.
//! - [`path`]: which working path carries a call (direct over relay).
//! - [`turn`]: TURN relay client and server cores.
//! - `sim` (feature `sim`): a model of NAT boxes for virtual-time tests.
//!
//! Does not: open sockets, resolve names, read clocks or carry media.

use std::net::SocketAddr;

pub mod discovery;
pub mod holepunch;
pub mod path;
#[cfg(feature = "sim")]
pub mod sim;
pub mod stun;
pub mod turn;

/// A datagram to send from this host's UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// How to send it: straight from the socket, or through a TURN allocation.
    pub via: Via,
    /// Where it goes.
    pub destination: SocketAddr,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// The local side a datagram leaves from or arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Via {
    /// The host's UDP socket.
    Direct,
    /// The TURN allocation whose relayed transport address is `relayed`: the shell wraps
    /// the datagram in a Send indication or ChannelData for the TURN server.
    Relay {
        /// The allocation's relayed transport address.
        relayed: SocketAddr,
    },
}
