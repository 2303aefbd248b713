//! Measures every lab NAT with plain UDP against a public reflector (two addresses, two
//! ports) and checks that its mapping and filtering are the RFC 4787 behaviours it is named
//! for. Root only (prints SKIP otherwise).

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lab::agent::Agent;
use lab::{Behind, Lab, NatKind};
use support::{ANSWER_TIMEOUT, Reflector, agent_binary, received_marker};

#[derive(Debug, PartialEq, Eq)]
struct Measured {
    udp: bool,
    mapping: &'static str,
    filtering: &'static str,
    public_ip: Option<IpAddr>,
}

fn measure(behind: Behind, label: &str) -> Measured {
    let mut lab = Lab::new(label).expect("lab");
    let mut reflector = Reflector::start(&mut lab);
    let client = lab.client("client", behind).expect("client");
    let mut agent = Agent::start(&client.host, agent_binary()).expect("client agent");
    let any: SocketAddr = "0.0.0.0:0".parse().expect("address");

    // Mapping (RFC 5780 §4.3): one socket, three destinations.
    let (sock, _) = agent.bind(any).expect("bind");
    let probe = |agent: &mut Agent, index: usize, reflector: &Reflector| {
        agent
            .reflect_via(sock, reflector.addr(index), 3, ANSWER_TIMEOUT)
            .expect("reflect")
            .map(|r| r.seen_from)
    };
    let Some(m1) = probe(&mut agent, 0, &reflector) else {
        return Measured {
            udp: false,
            mapping: "unknown",
            filtering: "unknown",
            public_ip: None,
        };
    };
    let m2 = probe(&mut agent, 2, &reflector).expect("answer from A2:P1");
    let m3 = probe(&mut agent, 3, &reflector).expect("answer from A2:P2");
    let mapping = if m1 == m2 {
        "endpoint-independent"
    } else if m2 == m3 {
        "address-dependent"
    } else {
        "address-and-port-dependent"
    };

    // Filtering (RFC 5780 §4.4): a fresh socket that has talked to A1:P1 only, then
    // unsolicited datagrams from A2:P2 and A1:P2 to its mapping.
    let (fresh, _) = agent.bind(any).expect("bind");
    let mapped = agent
        .reflect_via(fresh, reflector.addr(0), 3, ANSWER_TIMEOUT)
        .expect("reflect")
        .expect("answer from A1:P1")
        .seen_from;
    let unsolicited = |reflector: &mut Reflector, agent: &mut Agent, index: usize, marker| {
        let from_sock = reflector.sockets[index].0;
        reflector
            .agent
            .send(from_sock, mapped, marker)
            .expect("unsolicited send");
        received_marker(agent, fresh, marker)
    };
    let filtering =
        if unsolicited(&mut reflector, &mut agent, 3, "from-other-ip-and-port").is_some() {
            "endpoint-independent"
        } else if unsolicited(&mut reflector, &mut agent, 1, "from-other-port").is_some() {
            "address-dependent"
        } else {
            "address-and-port-dependent"
        };
    let measured = Measured {
        udp: true,
        mapping,
        filtering,
        public_ip: Some(m1.ip()),
    };
    if let Some(router) = client.routers.first() {
        assert_eq!(
            measured.public_ip,
            Some(IpAddr::V4(router.wan_ip())),
            "mapped to the outer router's public address"
        );
    }
    eprintln!("measured {label}: {measured:?}");
    lab.teardown().expect("teardown");
    measured
}

fn check_kind(kind: NatKind) {
    if !lab::require_root(&format!(
        "lab_nats_map_and_filter_as_named::{}",
        kind.name()
    )) {
        return;
    }
    let measured = measure(Behind::Nat(kind), kind.name());
    assert_eq!(
        (measured.udp, measured.mapping, measured.filtering),
        (
            kind != NatKind::UdpBlocked,
            kind.mapping(),
            kind.filtering()
        ),
        "{kind:?}"
    );
}

#[test]
fn full_cone_is_endpoint_independent_both_ways() {
    check_kind(NatKind::FullCone);
}

#[test]
fn address_restricted_filters_by_address_only() {
    check_kind(NatKind::AddressRestricted);
}

#[test]
fn port_restricted_filters_by_address_and_port() {
    check_kind(NatKind::PortRestricted);
}

#[test]
fn symmetric_maps_per_destination() {
    check_kind(NatKind::Symmetric);
}

#[test]
fn udp_blocked_passes_no_udp_but_tcp() {
    if !lab::require_root("lab_nats_map_and_filter_as_named::udp_blocked") {
        return;
    }
    check_kind(NatKind::UdpBlocked);
    let mut lab = Lab::new("udp-blocked-tcp").expect("lab");
    let server = lab.public_host("server", 1).expect("server");
    let mut server_agent = Agent::start(&server, agent_binary()).expect("agent");
    let listen = SocketAddr::new(IpAddr::V4(server.ip()), 443);
    server_agent.tcp_reflect(listen).expect("tcp reflect");
    let client = lab
        .client("client", Behind::Nat(NatKind::UdpBlocked))
        .expect("client");
    let mut agent = Agent::start(&client.host, agent_binary()).expect("agent");
    let seen = agent
        .tcp_connect(listen, Duration::from_secs(5))
        .expect("agent call")
        .expect("TCP passes a UDP-blocking NAT");
    let reflection = lab::agent::Reflection::parse(&seen).expect("reflection");
    assert_eq!(reflection.seen_from.ip(), IpAddr::V4(client.public_ip()));
}

#[test]
fn double_nat_behaves_as_its_stricter_router() {
    if !lab::require_root("lab_nats_map_and_filter_as_named::double_nat") {
        return;
    }
    let measured = measure(
        Behind::DoubleNat {
            outer: NatKind::PortRestricted,
            inner: NatKind::FullCone,
        },
        "double",
    );
    assert_eq!(
        (measured.mapping, measured.filtering),
        ("endpoint-independent", "address-and-port-dependent")
    );
}

#[test]
fn public_host_is_open() {
    if !lab::require_root("lab_nats_map_and_filter_as_named::public") {
        return;
    }
    let measured = measure(Behind::Public, "public");
    assert_eq!(
        (measured.mapping, measured.filtering),
        ("endpoint-independent", "endpoint-independent")
    );
}
