//! Connection admission shared by a server's listeners: a cap on open connections for the
//! whole server, a cap per source address, and when QUIC should validate addresses first.
//!
//! One [`ConnectionLimiter`] is meant to be shared by every listener of a server (its QUIC
//! [`crate::Endpoint`] and its [`crate::TcpListener`]); clones share the same counts, and
//! so do clones of the [`crate::ServerOptions`] holding it.
//!
//! Per-address counting groups IPv6 sources by their /64 prefix (one subscriber usually
//! holds a whole /64, so counting single addresses would not cap anything) and treats
//! IPv4-mapped IPv6 addresses as IPv4. Loopback sources are exempt from the per-address cap
//! by default, so tests and local tools may open many connections from 127.0.0.1; they still
//! count towards the server-wide cap.
//!
//! A slot is taken when an attempt is accepted (before its handshake) and freed when the
//! handshake fails or the connection ends: over TCP when the connection closes, over QUIC
//! when the last [`crate::Conn`] clone of it is dropped, so a server must not keep handles
//! to dead connections around.
//!
//! What it does not do: it does not rate-limit connection attempts or handshakes, and it
//! only counts connections accepted through this crate's listeners, not ones we dial.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

/// The default cap on connections open at once, server-wide.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The default cap on connections open at once from one source address (IPv6: one /64).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 16;

/// Caps on open connections, shared by every listener it is given to. Cheap to clone; clones
/// share the counts.
#[derive(Clone)]
pub struct ConnectionLimiter {
    settings: Settings,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    max_connections: usize,
    max_per_ip: usize,
    exempt_loopback: bool,
    validate_above: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only sources with at least one open connection; entries go when they reach zero, so
    /// the map never holds more entries than there are open connections.
    per_source: HashMap<Source, usize>,
}

/// What the per-address cap counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => Self::V6Prefix(prefix_64(v6)),
            },
        }
    }
}

fn prefix_64(ip: Ipv6Addr) -> [u8; 8] {
    let octets = ip.octets();
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&octets[..8]);
    prefix
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("the server has {0} connections open, its limit")]
    ServerFull(usize),
    #[error("this source address has {0} connections open, its limit")]
    SourceFull(usize),
}

impl std::fmt::Debug for ConnectionLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimiter")
            .field("max_connections", &self.settings.max_connections)
            .field("max_per_ip", &self.settings.max_per_ip)
            .field("exempt_loopback", &self.settings.exempt_loopback)
            .field("validate_above", &self.settings.validate_above)
            .field("open", &self.open_connections())
            .finish()
    }
}

impl Default for ConnectionLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CONNECTIONS)
    }
}

impl ConnectionLimiter {
    /// At most `max_connections` open at once (at least one), at most
    /// [`DEFAULT_MAX_CONNECTIONS_PER_IP`] of them from one non-loopback source, and QUIC
    /// address validation once a quarter of the connections are in use.
    pub fn new(max_connections: usize) -> Self {
        let max_connections = max_connections.max(1);
        Self {
            settings: Settings {
                max_connections,
                max_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
                exempt_loopback: true,
                validate_above: max_connections / 4,
            },
            counts: Arc::default(),
        }
    }

    /// Caps connections from one source address (IPv6: one /64) at `max_per_ip` (at least
    /// one).
    pub fn with_max_per_ip(mut self, max_per_ip: usize) -> Self {
        self.settings.max_per_ip = max_per_ip.max(1);
        self
    }

    /// Whether loopback sources escape the per-address cap (they do by default).
    pub fn with_loopback_exempt(mut self, exempt: bool) -> Self {
        self.settings.exempt_loopback = exempt;
        self
    }

    /// QUIC clients whose address is not yet validated are sent a Retry (one extra round
    /// trip, proving they receive at the address they claim) once `open` connections or
    /// more are open server-wide, or once their source has half its per-address allowance
    /// open. Zero validates every QUIC client.
    pub fn with_address_validation_above(mut self, open: usize) -> Self {
        self.settings.validate_above = open;
        self
    }

    /// The server-wide cap.
    pub fn max_connections(&self) -> usize {
        self.settings.max_connections
    }

    /// The per-address cap.
    pub fn max_connections_per_ip(&self) -> usize {
        self.settings.max_per_ip
    }

    /// Connections open now (including handshakes in progress) on every listener sharing
    /// this limiter.
    pub fn open_connections(&self) -> usize {
        self.counts().total
    }

    /// Connections open now from `ip`'s source (IPv6: its /64).
    pub fn open_connections_from(&self, ip: IpAddr) -> usize {
        self.counts()
            .per_source
            .get(&Source::of(ip))
            .copied()
            .unwrap_or(0)
    }

    /// Whether a QUIC attempt from `ip` whose address is not validated should be retried
    /// before it takes a slot.
    pub fn wants_address_validation(&self, ip: IpAddr) -> bool {
        let counts = self.counts();
        if counts.total >= self.settings.validate_above {
            return true;
        }
        let from_source = counts.per_source.get(&Source::of(ip)).copied().unwrap_or(0);
        !self.is_exempt(ip) && from_source * 2 >= self.settings.max_per_ip
    }

    /// Takes a slot for a connection from `ip`; the slot is free again when the permit is
    /// dropped.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionPermit, AdmissionError> {
        let source = Source::of(ip);
        let mut counts = self.counts();
        if counts.total >= self.settings.max_connections {
            return Err(AdmissionError::ServerFull(counts.total));
        }
        let from_source = counts.per_source.get(&source).copied().unwrap_or(0);
        if !self.is_exempt(ip) && from_source >= self.settings.max_per_ip {
            return Err(AdmissionError::SourceFull(from_source));
        }
        counts.total += 1;
        *counts.per_source.entry(source).or_insert(0) += 1;
        Ok(ConnectionPermit {
            counts: self.counts.clone(),
            source,
        })
    }

    fn is_exempt(&self, ip: IpAddr) -> bool {
        self.settings.exempt_loopback && is_loopback(ip)
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked: every update is one step.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One admitted connection's slot in a [`ConnectionLimiter`]; dropping it frees the slot.
pub struct ConnectionPermit {
    counts: Arc<Mutex<Counts>>,
    source: Source,
}

impl std::fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionPermit").finish_non_exhaustive()
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(from_source) = counts.per_source.get_mut(&self.source) {
            *from_source = from_source.saturating_sub(1);
            if *from_source == 0 {
                counts.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn the_server_wide_cap_is_shared_by_every_clone() {
        let quic = ConnectionLimiter::new(3);
        let tcp = quic.clone();
        let a = quic.try_acquire(ip("192.0.2.1")).expect("first");
        let _b = tcp.try_acquire(ip("192.0.2.2")).expect("second");
        let _c = quic.try_acquire(ip("192.0.2.3")).expect("third");
        assert_eq!(
            tcp.try_acquire(ip("192.0.2.4")).map(drop),
            Err(AdmissionError::ServerFull(3))
        );
        drop(a);
        assert_eq!(tcp.open_connections(), 2);
        let _d = tcp.try_acquire(ip("192.0.2.4")).expect("a slot was freed");
    }

    #[test]
    fn one_source_gets_at_most_its_share_and_ipv6_counts_by_slash_64() {
        let limiter = ConnectionLimiter::new(100).with_max_per_ip(2);
        let _a = limiter.try_acquire(ip("2001:db8:1:2::1")).expect("first");
        let _b = limiter
            .try_acquire(ip("2001:db8:1:2::ffff"))
            .expect("second");
        assert_eq!(
            limiter.try_acquire(ip("2001:db8:1:2:abcd::7")).map(drop),
            Err(AdmissionError::SourceFull(2))
        );
        let _other_prefix = limiter
            .try_acquire(ip("2001:db8:1:3::1"))
            .expect("another /64");
        let _v4 = limiter.try_acquire(ip("198.51.100.7")).expect("v4");
        let _mapped = limiter.try_acquire(ip("::ffff:198.51.100.7")).expect("v4");
        assert_eq!(
            limiter.try_acquire(ip("198.51.100.7")).map(drop),
            Err(AdmissionError::SourceFull(2))
        );
    }

    #[test]
    fn loopback_is_exempt_from_the_per_address_cap_unless_configured_otherwise() {
        let exempt = ConnectionLimiter::new(100).with_max_per_ip(1);
        let held: Vec<_> = (0..50)
            .map(|_| exempt.try_acquire(ip("127.0.0.1")).expect("loopback"))
            .collect();
        assert_eq!(exempt.open_connections(), 50);
        drop(held);
        let capped = ConnectionLimiter::new(100)
            .with_max_per_ip(1)
            .with_loopback_exempt(false);
        let _one = capped.try_acquire(ip("::1")).expect("first");
        assert!(capped.try_acquire(ip("::1")).is_err());
    }

    #[test]
    fn dropped_permits_leave_no_per_source_entries_behind() {
        let limiter = ConnectionLimiter::new(10_000);
        for i in 0..=255u8 {
            drop(
                limiter
                    .try_acquire(IpAddr::from([10, 0, 0, i]))
                    .expect("slot"),
            );
        }
        assert_eq!(limiter.open_connections(), 0);
        assert!(limiter.counts().per_source.is_empty());
    }

    #[test]
    fn address_validation_starts_under_load_or_when_one_source_holds_many() {
        let limiter = ConnectionLimiter::new(8).with_max_per_ip(4);
        assert_eq!(limiter.settings.validate_above, 2);
        assert!(!limiter.wants_address_validation(ip("192.0.2.1")));
        let _a = limiter.try_acquire(ip("192.0.2.1")).expect("slot");
        assert!(!limiter.wants_address_validation(ip("192.0.2.9")));
        let _b = limiter.try_acquire(ip("192.0.2.1")).expect("slot");
        // Two of eight open: a quarter.
        assert!(limiter.wants_address_validation(ip("192.0.2.9")));

        let roomy = ConnectionLimiter::new(1000).with_max_per_ip(4);
        let _c = roomy.try_acquire(ip("192.0.2.1")).expect("slot");
        let _d = roomy.try_acquire(ip("192.0.2.1")).expect("slot");
        assert!(roomy.wants_address_validation(ip("192.0.2.1")));
        assert!(!roomy.wants_address_validation(ip("192.0.2.2")));
        assert!(
            ConnectionLimiter::new(1000)
                .with_address_validation_above(0)
                .wants_address_validation(ip("192.0.2.3"))
        );
    }
}
