//! Two peers behind simulated NATs run hole punching at once on virtual time, with an
//! (ideal) relay candidate each: the call takes the direct path wherever hole punching can
//! work (a public side; both sides mapping endpoint-independently; one symmetric side
//! against an endpoint-independent mapping with filtering no stricter than
//! address-dependent) and the relay otherwise; without relays, impossible pairs fail.

use std::time::{Duration, Instant};

use nat::discovery::NatBehavior;
use nat::holepunch::{FailReason, PunchEvent};
use nat::path::PathKind;
use nat::sim::{NatConfig, SimPunch, SimSide, TwoPeers};
use netsim::{ImpairmentConfig, LossModel};

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

fn sim_side(side: &Side) -> SimSide {
    match side {
        Side::Public => SimSide::Public,
        Side::Behind(config) => SimSide::Behind(config.clone()),
    }
}

fn setup(a: &Side, b: &Side, relays: bool, network: ImpairmentConfig, seed: u64) -> TwoPeers {
    TwoPeers::new(&sim_side(a), &sim_side(b), relays, network, seed, |_| {})
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
                (connected - peers.start) < Duration::from_secs(2),
                "{label}: connect took {:?}",
                (connected - peers.start)
            );
            let direct =
                direct_since(&peers.a).map(|t| format!("{} ms", (t - peers.start).as_millis()));
            table.push_str(&format!(
                "| {} | {} | {:?} | {} ms | {} |\n",
                a_side.name(),
                b_side.name(),
                expected,
                (connected - peers.start).as_millis(),
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
