//! `peerphone netcheck`: classifies this host's NAT against a supernode's STUN service.
//!
//! Fetches the signed supernode directory from the login server (no login needed), checks
//! it against the authority key, picks the first admitted supernode that runs STUN/TURN
//! (another one, when listed, stands in for the mapping test if the first has no
//! `--alternate-addr`), and runs [`nat::discovery::NatDiscovery`] (RFC 5780) on one UDP
//! socket. Prints one object `{udp, public_addr, mapping, filtering, hairpin, nat_type,
//! supernode_rtt_ms}` (plus `stun_server`) with `--json`, a short report otherwise.
//!
//! The directory comes over QUIC, or over TLS/TCP when UDP is blocked (the login
//! connection falls back by itself); STUN then gets no answer and the report says
//! `udp: false`, `nat_type: udp-blocked`.
//!
//! Does not: test IPv6 separately or measure binding lifetimes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use nat::discovery::{
    DiscoveryConfig, DiscoveryEvent, NatBehavior, NatDiscovery, NatReport, NatType,
    RetransmitPolicy,
};
use proto::UnixTime;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::cli::{CliError, Context};
use crate::login_client;

/// How long reaching the login server for the directory may take.
const DIRECTORY_TIMEOUT: Duration = Duration::from_secs(15);
/// Bounds discovery even if the core's own timers misbehave.
const DISCOVERY_LIMIT: Duration = Duration::from_secs(60);

/// Requests expected to be answered: 5 sends at 0, 0.5, 1.5, 3.5 and 7.5 s, then 4 s more,
/// so a host whose UDP is blocked hears its verdict after 11.5 s rather than RFC 8489's
/// 39.5 s; five sends still get through heavy loss.
const ANSWERED_RETRANSMIT: RetransmitPolicy = RetransmitPolicy {
    initial_rto: Duration::from_millis(500),
    max_transmissions: 5,
    last_wait_multiplier: 8,
};

/// Why discovery could not run.
#[derive(Debug, thiserror::Error)]
pub enum NetcheckError {
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("NAT discovery did not finish within {0:?}")]
    Timeout(Duration),
}

/// Runs RFC 5780 discovery against the STUN server `server` from a fresh UDP socket;
/// `secondary` is another STUN server for the mapping test when `server` has no alternate
/// address.
pub async fn discover(
    server: SocketAddr,
    secondary: Option<SocketAddr>,
) -> Result<NatReport, NetcheckError> {
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = UdpSocket::bind(bind).await?;
    let local = socket.local_addr()?;
    let ip = if local.ip().is_unspecified() {
        route_source(server).unwrap_or(local.ip())
    } else {
        local.ip()
    };
    let mut config = DiscoveryConfig::new(server, vec![SocketAddr::new(ip, local.port())]);
    config.secondary_server = secondary.filter(|s| *s != server);
    config.retransmit = ANSWERED_RETRANSMIT;
    run_discovery(&socket, config).await
}

async fn run_discovery(
    socket: &UdpSocket,
    config: DiscoveryConfig,
) -> Result<NatReport, NetcheckError> {
    let started = Instant::now();
    let limit = started + DISCOVERY_LIMIT;
    let mut discovery = NatDiscovery::new(config, started.into_std(), rand::random());
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(transmit) = discovery.poll_transmit() {
            // An unreachable destination is a result (UDP blocked), not an error.
            let _ = socket
                .send_to(&transmit.payload, transmit.destination)
                .await;
        }
        if let Some(DiscoveryEvent::Finished(report)) = discovery.poll_event() {
            return Ok(report);
        }
        let wake = discovery
            .poll_timeout()
            .map_or(limit, Instant::from_std)
            .min(limit);
        if Instant::now() >= limit {
            return Err(NetcheckError::Timeout(DISCOVERY_LIMIT));
        }
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                // ICMP errors surface as receive errors; the timers decide.
                if let Ok((len, from)) = received {
                    discovery.handle_datagram(Instant::now().into_std(), from, &buf[..len]);
                }
            }
            () = tokio::time::sleep_until(wake) => {
                discovery.handle_timeout(Instant::now().into_std());
            }
        }
    }
}

/// The source address the kernel picks towards `to` (nothing is sent).
fn route_source(to: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if to.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(to).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The STUN servers of the admitted supernodes, from the login server's signed directory.
pub async fn stun_servers(ctx: &Context) -> Result<Vec<SocketAddr>, CliError> {
    let (target, _) = login_client::resolve_target(
        &ctx.profile,
        ctx.options.login_server,
        ctx.options.authority_key,
    )?;
    let fetch = async {
        let conn = login_client::connect(&ctx.profile, &target).await?;
        let directory = conn.directory().await;
        conn.close();
        directory.map_err(login_client::FlowError::from)
    };
    let signed = tokio::time::timeout(DIRECTORY_TIMEOUT, fetch)
        .await
        .map_err(|_| login_client::FlowError::Unreachable {
            addr: target.addr,
            reason: format!("no answer within {} s", DIRECTORY_TIMEOUT.as_secs()),
        })??;
    let directory = signed
        .verify(&target.authority, UnixTime::from_system(SystemTime::now()))
        .map_err(|e| CliError::Other(format!("supernode directory refused: {e}")))?;
    Ok(directory
        .entries
        .iter()
        .filter_map(|entry| entry.addrs.turn)
        .collect())
}

/// `peerphone netcheck`.
pub async fn run(ctx: &Context) -> Result<(), CliError> {
    let servers = stun_servers(ctx).await?;
    let Some(&server) = servers.first() else {
        return Err(CliError::Other(
            "no supernode with a STUN service is admitted; cannot check the NAT".into(),
        ));
    };
    let secondary = servers.iter().copied().find(|s| s.ip() != server.ip());
    let report = discover(server, secondary)
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    ctx.out.event(report_json(&report, server), || {
        report_text(&report, server)
    });
    Ok(())
}

/// The `--json` object: CONTRACT's fields plus the STUN server asked.
pub fn report_json(report: &NatReport, server: SocketAddr) -> serde_json::Value {
    serde_json::json!({
        "udp": report.udp,
        "public_addr": report.public_addr,
        "mapping": behavior_name(report.mapping),
        "filtering": behavior_name(report.filtering),
        "hairpin": report.hairpin,
        "nat_type": nat_type_name(report.nat_type),
        "supernode_rtt_ms": report.supernode_rtt_ms,
        "stun_server": server,
    })
}

/// The human-readable report.
pub fn report_text(report: &NatReport, server: SocketAddr) -> String {
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let mut lines = vec![format!("NAT check against supernode STUN {server}")];
    if !report.udp {
        lines.push("  UDP:         blocked (no answer from the supernode)".into());
        lines.push(format!("  NAT type:    {}", nat_type_name(report.nat_type)));
        return lines.join("\n");
    }
    lines.push("  UDP:         works".into());
    lines.push(format!(
        "  public addr: {}",
        report
            .public_addr
            .map_or_else(|| "unknown".to_string(), |a| a.to_string())
    ));
    lines.push(format!("  NAT type:    {}", nat_type_name(report.nat_type)));
    lines.push(format!("  mapping:     {}", behavior_name(report.mapping)));
    lines.push(format!(
        "  filtering:   {}",
        behavior_name(report.filtering)
    ));
    lines.push(format!("  hairpin:     {}", yes_no(report.hairpin)));
    lines.push(format!(
        "  supernode RTT: {}",
        report
            .supernode_rtt_ms
            .map_or_else(|| "unknown".to_string(), |ms| format!("{ms:.1} ms"))
    ));
    lines.join("\n")
}

/// CONTRACT's spelling of a behaviour.
pub fn behavior_name(behavior: NatBehavior) -> &'static str {
    match behavior {
        NatBehavior::EndpointIndependent => "endpoint-independent",
        NatBehavior::AddressDependent => "address-dependent",
        NatBehavior::AddressAndPortDependent => "address-and-port-dependent",
        NatBehavior::Unknown => "unknown",
    }
}

/// CONTRACT's spelling of a NAT type.
pub fn nat_type_name(nat_type: NatType) -> &'static str {
    match nat_type {
        NatType::Open => "open",
        NatType::FullCone => "full-cone",
        NatType::RestrictedCone => "restricted-cone",
        NatType::PortRestrictedCone => "port-restricted-cone",
        NatType::Symmetric => "symmetric",
        NatType::UdpBlocked => "udp-blocked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_serde_spelling_of_the_nat_crate() {
        for behavior in [
            NatBehavior::EndpointIndependent,
            NatBehavior::AddressDependent,
            NatBehavior::AddressAndPortDependent,
            NatBehavior::Unknown,
        ] {
            assert_eq!(
                serde_json::to_value(behavior).expect("serialize"),
                serde_json::Value::from(behavior_name(behavior))
            );
        }
        for nat_type in [
            NatType::Open,
            NatType::FullCone,
            NatType::RestrictedCone,
            NatType::PortRestrictedCone,
            NatType::Symmetric,
            NatType::UdpBlocked,
        ] {
            assert_eq!(
                serde_json::to_value(nat_type).expect("serialize"),
                serde_json::Value::from(nat_type_name(nat_type))
            );
        }
    }

    #[test]
    fn json_report_has_the_contract_fields() {
        let report = NatReport {
            udp: true,
            public_addr: Some("198.51.100.4:4000".parse().expect("addr")),
            mapping: NatBehavior::EndpointIndependent,
            filtering: NatBehavior::AddressAndPortDependent,
            hairpin: Some(false),
            nat_type: NatType::PortRestrictedCone,
            supernode_rtt_ms: Some(12.5),
        };
        let server: SocketAddr = "203.0.113.10:3478".parse().expect("addr");
        let json = report_json(&report, server);
        assert_eq!(json["udp"], true);
        assert_eq!(json["public_addr"], "198.51.100.4:4000");
        assert_eq!(json["mapping"], "endpoint-independent");
        assert_eq!(json["filtering"], "address-and-port-dependent");
        assert_eq!(json["hairpin"], false);
        assert_eq!(json["nat_type"], "port-restricted-cone");
        assert_eq!(json["supernode_rtt_ms"], 12.5);
        let text = report_text(&report, server);
        assert!(text.contains("port-restricted-cone"), "{text}");
    }
}
