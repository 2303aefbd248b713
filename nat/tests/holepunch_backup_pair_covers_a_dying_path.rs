//! While the selected direct pair's consent answers are overdue, `HolePunch::backup_pair`
//! names the relay pair (so the shell can send media on both) well before the direct pair
//! is declared dead; a healthy pair has no backup. Virtual time.

use std::time::Duration;

use nat::path::PathKind;
use nat::sim::{NatConfig, SimSide, TwoPeers};
use netsim::ImpairmentConfig;

#[test]
fn backup_pair_is_the_relay_while_the_direct_pair_goes_quiet() {
    let network = ImpairmentConfig {
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(5),
        ..ImpairmentConfig::default()
    };
    let side = SimSide::Behind(NatConfig::full_cone("203.0.113.1".parse().expect("ip")));
    let mut peers = TwoPeers::new(&side, &side, true, network, 21, |_| {});
    peers.run_for(Duration::from_secs(20));
    for peer in [&peers.a, &peers.b] {
        assert_eq!(
            peer.agent.selected_pair().map(|p| p.kind()),
            Some(PathKind::Direct)
        );
        assert_eq!(
            peer.agent.backup_pair(peers.now),
            None,
            "healthy: no backup"
        );
    }

    let cut_at = peers.now;
    peers.world.set_cut(peers.a_public, true);
    let mut backup_from = None;
    let mut switched_at = None;
    while peers.now - cut_at < Duration::from_secs(8) && switched_at.is_none() {
        peers.run_for(Duration::from_millis(50));
        let agent = &peers.a.agent;
        if agent.selected_pair().map(|p| p.kind()) == Some(PathKind::Relay) {
            switched_at = Some(peers.now - cut_at);
        } else if backup_from.is_none()
            && let Some(backup) = agent.backup_pair(peers.now)
        {
            assert_eq!(backup.kind(), PathKind::Relay);
            backup_from = Some(peers.now - cut_at);
        }
    }
    let backup_from = backup_from.expect("a backup while the direct pair was dying");
    let switched_at = switched_at.expect("fell back to the relay");
    assert!(
        backup_from <= Duration::from_millis(2100) && backup_from < switched_at,
        "backup after {backup_from:?}, switch after {switched_at:?}"
    );
    assert_eq!(
        peers.a.agent.backup_pair(peers.now),
        None,
        "the relay answers: no backup"
    );
}
