//! A call that starts on the relay moves to the direct path once it opens; a dead direct
//! path is noticed within 5 s and the call falls back to the relay (or fails cleanly with no
//! relay); keep-alives hold NAT bindings through long silences. All on virtual time.

use std::time::{Duration, Instant};

use nat::holepunch::{FailReason, PathPair, PunchEvent};
use nat::path::PathKind;
use nat::sim::{NatConfig, SimPunch, SimSide, TwoPeers};
use netsim::ImpairmentConfig;

fn network() -> ImpairmentConfig {
    ImpairmentConfig {
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(5),
        ..ImpairmentConfig::default()
    }
}

fn nat(config: fn(std::net::IpAddr) -> NatConfig) -> SimSide {
    SimSide::Behind(config("203.0.113.1".parse().expect("ip")))
}

fn selections(peer: &SimPunch) -> Vec<(Instant, PathPair)> {
    peer.events
        .iter()
        .filter_map(|(t, e)| match e {
            PunchEvent::Connected { pair } | PunchEvent::PathChanged { pair } => Some((*t, *pair)),
            PunchEvent::Failed { .. } => None,
        })
        .collect()
}

fn failed(peer: &SimPunch) -> Option<(Instant, FailReason)> {
    peer.events.iter().find_map(|(t, e)| match e {
        PunchEvent::Failed { reason } => Some((*t, *reason)),
        _ => None,
    })
}

#[test]
fn call_starts_on_relay_and_moves_to_direct_when_it_opens() {
    let side = nat(NatConfig::port_restricted_cone);
    let mut peers = TwoPeers::new(&side, &side, true, network(), 11, |_| {});
    // The direct path is blocked at first (say, a firewall rule being updated).
    peers.world.set_cut(peers.b_public, true);
    peers.run_for(Duration::from_secs(3));
    for peer in [&peers.a, &peers.b] {
        let first = selections(peer);
        assert_eq!(first.len(), 1, "{:?}", peer.events);
        assert_eq!(first[0].1.kind(), PathKind::Relay);
    }
    let opened_at = peers.now;
    peers.world.set_cut(peers.b_public, false);
    peers.run_for(Duration::from_secs(30));
    for peer in [&peers.a, &peers.b] {
        let path = selections(peer);
        let (switched_at, pair) = *path.last().expect("selected");
        assert_eq!(pair.kind(), PathKind::Direct, "{:?}", peer.events);
        assert!(switched_at > opened_at);
        assert!(matches!(
            peer.events.last(),
            Some((_, PunchEvent::PathChanged { .. }))
        ));
        assert!(failed(peer).is_none());
    }
}

#[test]
fn dead_direct_path_falls_back_to_relay_within_5_s_and_recovers() {
    let side = nat(NatConfig::full_cone);
    let mut peers = TwoPeers::new(&side, &side, true, network(), 12, |_| {});
    peers.run_for(Duration::from_secs(20));
    for peer in [&peers.a, &peers.b] {
        assert_eq!(
            peer.agent.selected_pair().map(|p| p.kind()),
            Some(PathKind::Direct)
        );
    }
    let cut_at = peers.now;
    peers.world.set_cut(peers.a_public, true);
    peers.run_for(Duration::from_secs(8));
    for peer in [&peers.a, &peers.b] {
        let (at, pair) = *selections(peer).last().expect("selected");
        assert_eq!(pair.kind(), PathKind::Relay, "{:?}", peer.events);
        assert!(
            at - cut_at <= Duration::from_secs(5),
            "noticed after {:?}",
            at - cut_at
        );
        assert!(failed(peer).is_none());
    }
    // The direct path comes back: rechecks find it and the call moves back.
    peers.world.set_cut(peers.a_public, false);
    peers.run_for(Duration::from_secs(30));
    for peer in [&peers.a, &peers.b] {
        assert_eq!(
            peer.agent.selected_pair().map(|p| p.kind()),
            Some(PathKind::Direct)
        );
    }
}

#[test]
fn dead_path_without_relay_fails_within_5_s() {
    let side = nat(NatConfig::restricted_cone);
    let mut peers = TwoPeers::new(&side, &side, false, network(), 13, |_| {});
    peers.run_for(Duration::from_secs(5));
    assert!(peers.a.agent.selected_pair().is_some());
    let cut_at = peers.now;
    peers.world.set_cut(peers.b_public, true);
    peers.run_for(Duration::from_secs(10));
    for peer in [&peers.a, &peers.b] {
        let (at, reason) = failed(peer).expect("failed");
        assert_eq!(reason, FailReason::AllPathsDead);
        assert!(
            at - cut_at <= Duration::from_secs(5),
            "noticed after {:?}",
            at - cut_at
        );
    }
}

fn short_lived_bindings(config: fn(std::net::IpAddr) -> NatConfig) -> SimSide {
    let mut config = config("203.0.113.1".parse().expect("ip"));
    config.mapping_lifetime = Duration::from_secs(30);
    SimSide::Behind(config)
}

#[test]
fn keepalives_hold_nat_bindings_through_ten_silent_minutes() {
    let a = short_lived_bindings(NatConfig::symmetric);
    let b = short_lived_bindings(NatConfig::restricted_cone);
    let mut peers = TwoPeers::new(&a, &b, false, network(), 14, |_| {});
    peers.run_for(Duration::from_secs(600));
    for peer in [&peers.a, &peers.b] {
        assert_eq!(
            selections(peer).len(),
            1,
            "one path all along: {:?}",
            peer.events
        );
        assert!(failed(peer).is_none());
        assert_eq!(
            peer.agent.selected_pair().map(|p| p.kind()),
            Some(PathKind::Direct)
        );
    }
}

#[test]
fn without_keepalives_the_same_bindings_expire() {
    let a = short_lived_bindings(NatConfig::symmetric);
    let b = short_lived_bindings(NatConfig::restricted_cone);
    let mut peers = TwoPeers::new(&a, &b, false, network(), 14, |config| {
        config.consent_interval = Duration::from_secs(60);
        config.keepalive_interval = Duration::from_secs(60);
        config.dead_after = Duration::from_secs(100);
    });
    peers.run_for(Duration::from_secs(600));
    let disturbed = [&peers.a, &peers.b]
        .iter()
        .any(|peer| selections(peer).len() > 1 || failed(peer).is_some());
    assert!(
        disturbed,
        "the NAT forgot the binding: the path had to change or fail"
    );
}
