//! A blocking shell around `nat::discovery` (RFC 5780 NAT behaviour discovery) on one real
//! UDP socket: what `netcheck-probe` runs, and a reference for the app's `netcheck`.
//!
//! Does not: pick the STUN server (the caller passes a supernode's `--turn-listen`
//! address), or share its socket with other traffic.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use nat::discovery::{DiscoveryConfig, DiscoveryEvent, NatDiscovery, NatReport};

use crate::LabError;

/// The source address the kernel would use towards `server` (no packet is sent).
pub fn route_source(server: SocketAddr) -> Result<IpAddr, LabError> {
    let probe = UdpSocket::bind("0.0.0.0:0")?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}

/// A discovery configuration for `socket` against `server`, with the socket's own
/// address (the routed source address when it is bound to 0.0.0.0) as the local address.
pub fn config_for(socket: &UdpSocket, server: SocketAddr) -> Result<DiscoveryConfig, LabError> {
    let local = socket.local_addr()?;
    let ip = if local.ip().is_unspecified() {
        route_source(server)?
    } else {
        local.ip()
    };
    Ok(DiscoveryConfig::new(
        server,
        vec![SocketAddr::new(ip, local.port())],
    ))
}

/// Runs discovery on `socket` until it reports, or errors after `limit`.
pub fn discover(
    socket: &UdpSocket,
    config: DiscoveryConfig,
    limit: Duration,
) -> Result<NatReport, LabError> {
    let started = Instant::now();
    let mut discovery = NatDiscovery::new(config, started, rand::random());
    let mut buf = [0u8; 1500];
    loop {
        while let Some(transmit) = discovery.poll_transmit() {
            // Unreachable destinations are a result (UDP blocked), not an error.
            let _ = socket.send_to(&transmit.payload, transmit.destination);
        }
        if let Some(DiscoveryEvent::Finished(report)) = discovery.poll_event() {
            return Ok(report);
        }
        let now = Instant::now();
        if now.duration_since(started) > limit {
            return Err(LabError::Timeout {
                after: limit,
                what: "NAT discovery".into(),
            });
        }
        let Some(due) = discovery.poll_timeout() else {
            return Err(LabError::Agent("discovery stalled without a timer".into()));
        };
        if due <= now {
            discovery.handle_timeout(now);
            continue;
        }
        socket.set_read_timeout(Some(due - now))?;
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                discovery.handle_datagram(Instant::now(), from, &buf[..len]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                discovery.handle_timeout(Instant::now());
            }
            // ICMP errors may surface as refused/unreachable: the timers decide.
            Err(_) => {}
        }
    }
}
