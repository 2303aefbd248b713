//! What the relay shell is told at start-up.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use nat::turn::Cidr;

/// Configuration of a [`super::RelayServer`]; [`RelayConfig::new`] fills safe defaults.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `--turn-listen`: STUN and TURN over UDP.
    pub listen: SocketAddr,
    /// `--alternate-addr`: a second IP and port of this host for RFC 5780 (STUN only).
    pub alternate: Option<SocketAddr>,
    /// The IP put in XOR-RELAYED-ADDRESS (`--public-addr`'s IP). Default: the listen IP, or
    /// when that is unspecified, the IP of the interface that routes to the Internet.
    pub advertised_ip: Option<IpAddr>,
    /// `--relay-ports`: UDP ports of relay allocations.
    pub relay_ports: RangeInclusive<u16>,
    /// `--allow-relay-to`: ranges the relay may reach although the default policy refuses
    /// them (loopback, private, link-local, CGNAT, documentation, …).
    pub allow_relay_to: Vec<Cidr>,
    /// REALM of the long-term credentials. Keep it at most 4 characters: the relay never
    /// answers an unauthenticated request with more bytes than it had, and a challenge
    /// (ERROR-CODE, REALM, 12-character NONCE) with a 4-character realm is 52 bytes, the
    /// size of the smallest Allocate standard clients such as `turnutils_uclient` send.
    pub realm: String,
    /// Secret shared with whoever mints the TURN credentials (the supernode itself).
    pub shared_secret: Vec<u8>,
    /// Allocations across all users.
    pub max_allocations_total: usize,
    /// Allocations per user.
    pub max_allocations_per_user: usize,
    /// Sustained relayed bytes per second per allocation.
    pub bandwidth_cap_bytes_per_s: u64,
    /// Depth of the owner task's inbox (datagrams from relay ports waiting to be handled).
    pub inbox_capacity: usize,
    /// Kernel receive and send buffer of each socket, in bytes (0 keeps the default).
    pub socket_buffer_bytes: usize,
}

impl RelayConfig {
    /// Defaults: relay ports 49152-65535, realm `peer`, quotas of
    /// [`nat::turn::server::ServerConfig::new`].
    pub fn new(listen: SocketAddr, shared_secret: impl Into<Vec<u8>>) -> Self {
        let core = nat::turn::server::ServerConfig::new("peerphone", Vec::new());
        Self {
            listen,
            alternate: None,
            advertised_ip: None,
            relay_ports: 49152..=65535,
            allow_relay_to: Vec::new(),
            realm: "peer".to_owned(),
            shared_secret: shared_secret.into(),
            max_allocations_total: core.max_allocations_total,
            max_allocations_per_user: core.max_allocations_per_user,
            bandwidth_cap_bytes_per_s: core.bandwidth_cap_bytes_per_s,
            inbox_capacity: 8192,
            socket_buffer_bytes: 4 * 1024 * 1024,
        }
    }
}

/// `--relay-ports` is not `LOW-HIGH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("relay port range must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535, got {0:?}")]
pub struct PortRangeError(String);

/// Parses `LOW-HIGH` (e.g. `49152-65535`).
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, PortRangeError> {
    let err = || PortRangeError(s.to_owned());
    let (low, high) = s.split_once('-').ok_or_else(err)?;
    let low: u16 = low.trim().parse().map_err(|_| err())?;
    let high: u16 = high.trim().parse().map_err(|_| err())?;
    if low == 0 || low > high {
        return Err(err());
    }
    Ok(low..=high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_port_range("49152-65535"), Ok(49152..=65535));
        assert_eq!(parse_port_range("5000-5000"), Ok(5000..=5000));
        assert!(parse_port_range("6000-5000").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("5000").is_err());
        assert!(parse_port_range("a-b").is_err());
    }
}
