//! RFC 5780 discovery, run against the STUN server core through simulated NATs on virtual
//! time, names every NAT behaviour correctly, detects hairpinning and blocked UDP, and
//! survives loss thanks to retransmissions.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use nat::discovery::{DiscoveryConfig, NatBehavior, NatDiscovery, NatReport, NatType};
use nat::sim::{NatConfig, SimAgent, SimDiscovery, SimStunServer, World};
use nat::stun::server::{ServerConfig, StunServer};
use netsim::{ImpairmentConfig, LossModel};

const SERVER: &str = "198.51.100.1:3478";
const SERVER_ALT: &str = "198.51.100.2:3479";
const CLIENT_PRIVATE: &str = "100.64.0.2:5000";
const NAT_PUBLIC_IP: &str = "203.0.113.10";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn internet(delay_millis: u64, loss_pct: f64) -> ImpairmentConfig {
    ImpairmentConfig {
        delay: Duration::from_millis(delay_millis),
        loss: if loss_pct > 0.0 {
            LossModel::Bernoulli { loss_pct }
        } else {
            LossModel::None
        },
        ..ImpairmentConfig::default()
    }
}

/// Runs discovery for a client behind `nat` (or public when `None`); returns the report
/// and the virtual time it took.
fn discover(
    nat: Option<NatConfig>,
    with_alternate: bool,
    network: ImpairmentConfig,
    seed: u64,
) -> (NatReport, Duration) {
    let mut world = World::new(network, seed);
    let client = match &nat {
        Some(_) => addr(CLIENT_PRIVATE),
        None => addr("203.0.113.50:5000"),
    };
    let nat_id = nat.map(|config| world.add_nat(config, seed));
    world.add_socket(client, nat_id);
    let mut server_config = ServerConfig::new(addr(SERVER));
    if with_alternate {
        server_config = server_config.with_alternate(addr(SERVER_ALT));
    }
    let mut server = SimStunServer {
        server: StunServer::new(server_config).expect("config"),
    };
    for socket in server.sockets() {
        world.add_socket(socket, None);
    }
    let start = Instant::now();
    let mut client_agent = SimDiscovery {
        socket: client,
        discovery: NatDiscovery::new(
            DiscoveryConfig::new(addr(SERVER), vec![client]),
            start,
            [seed as u8; 32],
        ),
    };
    let mut now = start;
    let deadline = start + Duration::from_secs(120);
    while !client_agent.discovery.is_finished() && now < deadline {
        let next = world.step(now, &mut [&mut client_agent, &mut server]);
        match next {
            Some(next) => now = next.max(now),
            None => break,
        }
    }
    let report = client_agent.discovery.report().expect("finished").clone();
    (report, now - start)
}

fn nat_ip() -> IpAddr {
    ip(NAT_PUBLIC_IP)
}

#[test]
fn full_cone_is_named_full_cone() {
    let (report, _) = discover(
        Some(NatConfig::full_cone(nat_ip())),
        true,
        internet(20, 0.0),
        1,
    );
    assert!(report.udp);
    assert_eq!(report.mapping, NatBehavior::EndpointIndependent);
    assert_eq!(report.filtering, NatBehavior::EndpointIndependent);
    assert_eq!(report.nat_type, NatType::FullCone);
    assert_eq!(report.public_addr.map(|a| a.ip()), Some(nat_ip()));
    let rtt = report.supernode_rtt_ms.expect("rtt");
    assert!((39.0..=41.0).contains(&rtt), "two 20 ms hops, got {rtt}");
}

#[test]
fn restricted_cone_is_named_restricted_cone() {
    let (report, _) = discover(
        Some(NatConfig::restricted_cone(nat_ip())),
        true,
        internet(20, 0.0),
        2,
    );
    assert_eq!(report.mapping, NatBehavior::EndpointIndependent);
    assert_eq!(report.filtering, NatBehavior::AddressDependent);
    assert_eq!(report.nat_type, NatType::RestrictedCone);
}

#[test]
fn port_restricted_cone_is_named_port_restricted_cone() {
    let (report, elapsed) = discover(
        Some(NatConfig::port_restricted_cone(nat_ip())),
        true,
        internet(20, 0.0),
        3,
    );
    assert_eq!(report.mapping, NatBehavior::EndpointIndependent);
    assert_eq!(report.filtering, NatBehavior::AddressAndPortDependent);
    assert_eq!(report.nat_type, NatType::PortRestrictedCone);
    assert!(
        elapsed < Duration::from_secs(10),
        "negative tests are short: {elapsed:?}"
    );
}

#[test]
fn random_port_symmetric_nat_is_named_symmetric() {
    let (report, _) = discover(
        Some(NatConfig::symmetric(nat_ip())),
        true,
        internet(20, 0.0),
        4,
    );
    assert_eq!(report.mapping, NatBehavior::AddressAndPortDependent);
    assert_eq!(report.filtering, NatBehavior::AddressAndPortDependent);
    assert_eq!(report.nat_type, NatType::Symmetric);
}

#[test]
fn address_dependent_mapping_is_told_from_address_and_port_dependent() {
    let config = NatConfig::new(
        nat_ip(),
        NatBehavior::AddressDependent,
        NatBehavior::AddressDependent,
    );
    let (report, _) = discover(Some(config), true, internet(20, 0.0), 5);
    assert_eq!(report.mapping, NatBehavior::AddressDependent);
    assert_eq!(report.filtering, NatBehavior::AddressDependent);
    assert_eq!(report.nat_type, NatType::Symmetric);
}

#[test]
fn public_host_is_open() {
    let (report, _) = discover(None, true, internet(20, 0.0), 6);
    assert_eq!(report.public_addr, Some(addr("203.0.113.50:5000")));
    assert_eq!(report.mapping, NatBehavior::EndpointIndependent);
    assert_eq!(report.filtering, NatBehavior::EndpointIndependent);
    assert_eq!(report.nat_type, NatType::Open);
}

#[test]
fn hairpinning_is_detected_both_ways() {
    let mut config = NatConfig::full_cone(nat_ip());
    config.hairpin = true;
    let (report, _) = discover(Some(config.clone()), true, internet(10, 0.0), 7);
    assert_eq!(report.hairpin, Some(true));
    config.hairpin = false;
    let (report, _) = discover(Some(config), true, internet(10, 0.0), 7);
    assert_eq!(report.hairpin, Some(false));
}

#[test]
fn blocked_udp_is_reported_after_rfc8489_retransmissions() {
    // 100% loss: the server never hears us.
    let (report, elapsed) = discover(
        Some(NatConfig::full_cone(nat_ip())),
        true,
        internet(10, 100.0),
        8,
    );
    assert!(!report.udp);
    assert_eq!(report.nat_type, NatType::UdpBlocked);
    assert_eq!(report.public_addr, None);
    // Rc = 7, RTO 500 ms, Rm = 16: 0.5+1+2+4+8+16 s then 8 s of waiting.
    assert_eq!(elapsed, Duration::from_millis(39_500));
}

#[test]
fn classification_survives_heavy_loss() {
    for seed in 0..8 {
        let (report, _) = discover(
            Some(NatConfig::restricted_cone(nat_ip())),
            true,
            internet(30, 20.0),
            100 + seed,
        );
        assert!(report.udp, "seed {seed}");
        assert_eq!(
            report.mapping,
            NatBehavior::EndpointIndependent,
            "seed {seed}"
        );
        assert_eq!(
            report.public_addr.map(|a| a.ip()),
            Some(nat_ip()),
            "seed {seed}"
        );
    }
}

#[test]
fn server_without_alternate_leaves_filtering_unknown() {
    let (report, _) = discover(
        Some(NatConfig::full_cone(nat_ip())),
        false,
        internet(10, 0.0),
        9,
    );
    assert!(report.udp);
    assert_eq!(report.filtering, NatBehavior::Unknown);
    assert_eq!(report.mapping, NatBehavior::Unknown);
}

#[test]
fn report_serializes_with_contract_field_names_and_kebab_case() {
    let (report, _) = discover(
        Some(NatConfig::port_restricted_cone(nat_ip())),
        true,
        internet(20, 0.0),
        10,
    );
    let json = serde_json::to_value(&report).expect("serializes");
    let object = json.as_object().expect("object");
    let mut keys: Vec<_> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "filtering",
            "hairpin",
            "mapping",
            "nat_type",
            "public_addr",
            "supernode_rtt_ms",
            "udp"
        ]
    );
    assert_eq!(object["mapping"], "endpoint-independent");
    assert_eq!(object["filtering"], "address-and-port-dependent");
    assert_eq!(object["nat_type"], "port-restricted-cone");
    assert_eq!(object["public_addr"], format!("{NAT_PUBLIC_IP}:5000"));
    let back: NatReport = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, report);
}

#[test]
fn mapped_address_only_takes_one_round_trip() {
    let mut world = World::new(internet(15, 0.0), 11);
    let nat_id = world.add_nat(NatConfig::symmetric(nat_ip()), 11);
    world.add_socket(addr(CLIENT_PRIVATE), Some(nat_id));
    let mut server = SimStunServer {
        server: StunServer::new(ServerConfig::new(addr(SERVER)).with_alternate(addr(SERVER_ALT)))
            .expect("config"),
    };
    for socket in server.sockets() {
        world.add_socket(socket, None);
    }
    let start = Instant::now();
    let config = DiscoveryConfig::mapped_address_only(addr(SERVER), vec![addr(CLIENT_PRIVATE)]);
    let mut client = SimDiscovery {
        socket: addr(CLIENT_PRIVATE),
        discovery: NatDiscovery::new(config, start, [11; 32]),
    };
    let mut now = start;
    while !client.discovery.is_finished() {
        match world.step(now, &mut [&mut client, &mut server]) {
            Some(next) => now = next.max(now),
            None => break,
        }
    }
    let report = client.discovery.report().expect("finished");
    assert_eq!(now - start, Duration::from_millis(30));
    assert_eq!(report.public_addr.map(|a| a.ip()), Some(nat_ip()));
    assert_eq!(report.supernode_rtt_ms, Some(30.0));
    assert_eq!(report.mapping, NatBehavior::Unknown);
    assert_eq!(report.filtering, NatBehavior::Unknown);
    assert_eq!(report.hairpin, None);
}
