//! Two peers behind simulated NATs run hole punching at once on virtual time, with an
//! (ideal) relay candidate each: the call takes the direct path wherever hole punching can
//! work (a public side; both sides mapping endpoint-independently; one symmetric side
//! against an endpoint-independent mapping with filtering no stricter than
//! address-dependent) and the relay otherwise; without relays, impossible pairs fail.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nat::discovery::{DiscoveryConfig, NatBehavior, NatDiscovery, RetransmitPolicy};
use nat::holepunch::{
    Candidate, FailReason, HolePunch, HolePunchConfig, IceCredentials, PunchEvent, Role,
};
use nat::path::PathKind;
use nat::sim::{NatConfig, SimDiscovery, SimPunch, SimStunServer, World};
use nat::stun::server::{ServerConfig, StunServer};
use netsim::{ImpairmentConfig, LossModel};
use rand::SeedableRng;
use rand::rngs::StdRng;

const STUN_SERVER: &str = "198.51.100.1:3478";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

#[derive(Debug, Clone)]
enum Side {
    Public,
    Behind(NatConfig),
}

impl Side {
    fn name(&self) -> &'static str {
        match self {
            Side::Public => "public",
            Side::Behind(c) => match (c.mapping, c.filtering) {
                (NatBehavior::EndpointIndependent, NatBehavior::EndpointIndependent) => "full-cone",
                (NatBehavior::EndpointIndependent, NatBehavior::AddressDependent) => "restricted",
                (NatBehavior::EndpointIndependent, _) => "port-restricted",
                _ => "symmetric",
            },
        }
    }

    fn endpoint_independent_mapping(&self) -> bool {
        match self {
            Side::Public => true,
            Side::Behind(c) => c.mapping == NatBehavior::EndpointIndependent,
        }
    }

    fn lenient_filtering(&self) -> bool {
        match self {
            Side::Public => true,
            Side::Behind(c) => matches!(
                c.filtering,
                NatBehavior::EndpointIndependent | NatBehavior::AddressDependent
            ),
        }
    }
}

/// The NAT traversal issue's matrix, stated on the simulated NATs' configuration.
fn punchable(a: &Side, b: &Side) -> bool {
    if matches!(a, Side::Public) || matches!(b, Side::Public) {
        return true;
    }
    match (
        a.endpoint_independent_mapping(),
        b.endpoint_independent_mapping(),
    ) {
        (true, true) => true,
        (true, false) => a.lenient_filtering(),
        (false, true) => b.lenient_filtering(),
        (false, false) => false,
    }
}

fn sides() -> Vec<Side> {
    vec![
        Side::Public,
        Side::Behind(NatConfig::full_cone("203.0.113.1".parse().expect("ip"))),
        Side::Behind(NatConfig::restricted_cone(
            "203.0.113.1".parse().expect("ip"),
        )),
        Side::Behind(NatConfig::port_restricted_cone(
            "203.0.113.1".parse().expect("ip"),
        )),
        Side::Behind(NatConfig::symmetric("203.0.113.1".parse().expect("ip"))),
    ]
}

struct Peers {
    world: World,
    a: SimPunch,
    b: SimPunch,
    start: Instant,
    now: Instant,
}

impl Peers {
    fn run_until(&mut self, until: Instant) {
        while self.now < until {
            let next = self.world.step(self.now, &mut [&mut self.a, &mut self.b]);
            self.now = match next {
                Some(next) if next > self.now => next.min(until),
                Some(_) => self.now + Duration::from_micros(1),
                None => until,
            };
        }
        self.world.step(self.now, &mut [&mut self.a, &mut self.b]);
    }

    fn elapsed(&self, at: Instant) -> Duration {
        at - self.start
    }
}

/// Places a peer: returns its host socket after registering it (and its NAT) in `world`.
fn place(world: &mut World, side: &Side, index: u8, seed: u64) -> SocketAddr {
    match side {
        Side::Public => {
            let socket = addr(&format!("203.0.113.{}:5000", 100 + index));
            world.add_socket(socket, None);
            socket
        }
        Side::Behind(config) => {
            let mut config = config.clone();
            config.public_ip = format!("203.0.113.{}", 10 + index).parse().expect("ip");
            let nat = world.add_nat(config, seed + u64::from(index));
            let socket = addr(&format!("100.64.{index}.2:5000"));
            world.add_socket(socket, Some(nat));
            socket
        }
    }
}

/// Learns the server-reflexive address of `socket` with one Binding transaction.
fn server_reflexive(world: &mut World, socket: SocketAddr, start: Instant, seed: u8) -> SocketAddr {
    let mut server = SimStunServer {
        server: StunServer::new(ServerConfig::new(addr(STUN_SERVER))).expect("config"),
    };
    let mut config = DiscoveryConfig::new(addr(STUN_SERVER), vec![socket]);
    config.negative_retransmit = RetransmitPolicy {
        initial_rto: Duration::from_millis(100),
        max_transmissions: 1,
        last_wait_multiplier: 1,
    };
    let mut client = SimDiscovery {
        socket,
        discovery: NatDiscovery::new(config, start, [seed; 32]),
    };
    let mut now = start;
    while !client.discovery.is_finished() {
        match world.step(now, &mut [&mut client, &mut server]) {
            Some(next) => now = next.max(now),
            None => break,
        }
    }
    client
        .discovery
        .report()
        .and_then(|r| r.public_addr)
        .expect("STUN answered")
}

fn setup(
    a_side: &Side,
    b_side: &Side,
    relays: bool,
    network: ImpairmentConfig,
    seed: u64,
) -> Peers {
    let mut world = World::new(network, seed);
    world.add_socket(addr(STUN_SERVER), None);
    let start = Instant::now();
    let a_socket = place(&mut world, a_side, 1, seed);
    let b_socket = place(&mut world, b_side, 2, seed);
    let a_srflx = server_reflexive(&mut world, a_socket, start, 1);
    let b_srflx = server_reflexive(&mut world, b_socket, start, 2);
    let (a_relay, b_relay) = if relays {
        let (a, b) = (addr("198.51.100.200:40001"), addr("198.51.100.200:40002"));
        world.add_socket(a, None);
        world.add_socket(b, None);
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let a_credentials = IceCredentials::random(&mut rng);
    let b_credentials = IceCredentials::random(&mut rng);
    // Signalling takes a moment: both sides start together, 1 s after start.
    let t0 = start + Duration::from_secs(1);
    let mut a = HolePunch::new(
        HolePunchConfig::new(
            Role::Controlling,
            7,
            a_credentials.clone(),
            b_credentials.clone(),
        ),
        t0,
        [seed as u8; 32],
    );
    let mut b = HolePunch::new(
        HolePunchConfig::new(Role::Controlled, 3, b_credentials, a_credentials),
        t0,
        [seed as u8 ^ 0xff; 32],
    );
    let candidates = |socket: SocketAddr, srflx: SocketAddr, relay: Option<SocketAddr>| {
        let mut list = vec![Candidate::host(socket)];
        if srflx != socket {
            list.push(Candidate::server_reflexive(srflx));
        }
        list.extend(relay.map(Candidate::relayed));
        list
    };
    let a_candidates = candidates(a_socket, a_srflx, a_relay);
    let b_candidates = candidates(b_socket, b_srflx, b_relay);
    for c in &a_candidates {
        a.add_local_candidate(*c);
        b.add_remote_candidate(t0, *c);
    }
    for c in &b_candidates {
        b.add_local_candidate(*c);
        a.add_remote_candidate(t0, *c);
    }
    Peers {
        world,
        a: SimPunch::new(a_socket, a_relay, a),
        b: SimPunch::new(b_socket, b_relay, b),
        start: t0,
        now: t0,
    }
}

fn first_connected(peer: &SimPunch) -> Option<Instant> {
    peer.events
        .iter()
        .find(|(_, e)| matches!(e, PunchEvent::Connected { .. }))
        .map(|(t, _)| *t)
}

fn direct_since(peer: &SimPunch) -> Option<Instant> {
    peer.events
        .iter()
        .find(|(_, e)| match e {
            PunchEvent::Connected { pair } | PunchEvent::PathChanged { pair } => {
                pair.kind() == PathKind::Direct
            }
            PunchEvent::Failed { .. } => false,
        })
        .map(|(t, _)| *t)
}

fn lossless() -> ImpairmentConfig {
    ImpairmentConfig {
        delay: Duration::from_millis(25),
        jitter: Duration::from_millis(5),
        ..ImpairmentConfig::default()
    }
}

#[test]
fn matrix_direct_where_punchable_relay_otherwise() {
    let sides = sides();
    let mut table =
        String::from("| A | B | path | connected after | direct after |\n|---|---|---|---|---|\n");
    for (i, a_side) in sides.iter().enumerate() {
        for b_side in &sides[i..] {
            let mut peers = setup(a_side, b_side, true, lossless(), 40 + i as u64);
            let end = peers.start + Duration::from_secs(30);
            peers.run_until(end);
            let expected = if punchable(a_side, b_side) {
                PathKind::Direct
            } else {
                PathKind::Relay
            };
            let label = format!("{} vs {}", a_side.name(), b_side.name());
            for peer in [&peers.a, &peers.b] {
                let selected = peer
                    .agent
                    .selected_pair()
                    .unwrap_or_else(|| panic!("{label}: connected"));
                assert_eq!(selected.kind(), expected, "{label}: {:?}", peer.events);
                assert!(
                    !peer
                        .events
                        .iter()
                        .any(|(_, e)| matches!(e, PunchEvent::Failed { .. })),
                    "{label}"
                );
            }
            assert_eq!(
                peers.a.agent.selected_pair().map(|p| p.kind()),
                peers.b.agent.selected_pair().map(|p| p.kind()),
                "{label}: both ends agree"
            );
            let connected = first_connected(&peers.a).expect("connected");
            assert!(
                peers.elapsed(connected) < Duration::from_secs(2),
                "{label}: connect took {:?}",
                peers.elapsed(connected)
            );
            let direct =
                direct_since(&peers.a).map(|t| format!("{} ms", peers.elapsed(t).as_millis()));
            table.push_str(&format!(
                "| {} | {} | {:?} | {} ms | {} |\n",
                a_side.name(),
                b_side.name(),
                expected,
                peers.elapsed(connected).as_millis(),
                direct.unwrap_or_else(|| "-".into())
            ));
        }
    }
    eprintln!("{table}");
}

#[test]
fn without_relays_unpunchable_pairs_fail_and_punchable_pairs_connect() {
    let nat =
        |c: fn(std::net::IpAddr) -> NatConfig| Side::Behind(c("203.0.113.1".parse().expect("ip")));
    let cases = [
        (nat(NatConfig::symmetric), nat(NatConfig::symmetric), false),
        (
            nat(NatConfig::symmetric),
            nat(NatConfig::port_restricted_cone),
            false,
        ),
        (
            nat(NatConfig::symmetric),
            nat(NatConfig::restricted_cone),
            true,
        ),
        (
            nat(NatConfig::port_restricted_cone),
            nat(NatConfig::port_restricted_cone),
            true,
        ),
    ];
    for (seed, (a_side, b_side, works)) in cases.iter().enumerate() {
        let mut peers = setup(a_side, b_side, false, lossless(), 70 + seed as u64);
        peers.run_until(peers.start + Duration::from_secs(40));
        let label = format!("{} vs {}", a_side.name(), b_side.name());
        for peer in [&peers.a, &peers.b] {
            let failed = peer.events.iter().any(|(_, e)| {
                *e == PunchEvent::Failed {
                    reason: FailReason::NoWorkingPair,
                }
            });
            assert_eq!(failed, !works, "{label}: {:?}", peer.events);
            assert_eq!(peer.agent.selected_pair().is_some(), *works, "{label}");
        }
    }
}

#[test]
fn direct_path_opens_through_loss_and_jitter() {
    let network = ImpairmentConfig {
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(20),
        loss: LossModel::Bernoulli { loss_pct: 15.0 },
        ..ImpairmentConfig::default()
    };
    let a_side = Side::Behind(NatConfig::symmetric("203.0.113.1".parse().expect("ip")));
    let b_side = Side::Behind(NatConfig::restricted_cone(
        "203.0.113.1".parse().expect("ip"),
    ));
    for seed in 0..6 {
        let mut peers = setup(&a_side, &b_side, true, network.clone(), 200 + seed);
        peers.run_until(peers.start + Duration::from_secs(30));
        for peer in [&peers.a, &peers.b] {
            let selected = peer.agent.selected_pair().expect("connected");
            assert_eq!(
                selected.kind(),
                PathKind::Direct,
                "seed {seed}: {:?}",
                peer.events
            );
        }
    }
}
