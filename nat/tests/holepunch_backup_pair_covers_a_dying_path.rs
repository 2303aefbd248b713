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

/// A call's media arrives every 20 ms on the selected pair; when it stops (the path died
/// both ways), the relay carries a copy after about `media_silence_backup`, long before the
/// consent answers are overdue. A held peer's sparse keep-alives never raise that alarm.
#[test]
fn backup_pair_follows_within_a_tenth_of_a_second_when_steady_media_stops() {
    let side = SimSide::Behind(NatConfig::full_cone("203.0.113.1".parse().expect("ip")));
    let mut peers = TwoPeers::new(&side, &side, true, ImpairmentConfig::default(), 22, |_| {});
    peers.run_for(Duration::from_secs(10));
    let selected = peers.a.agent.selected_pair().expect("a path");
    assert_eq!(selected.kind(), PathKind::Direct);
    let frame = Duration::from_millis(20);

    // Held: a keep-alive every 3 s is not a steady stream, whatever the gaps.
    for _ in 0..3 {
        peers
            .a
            .agent
            .note_media(peers.now, selected.via, selected.remote);
        for _ in 0..150 {
            peers.run_for(frame);
            assert_eq!(peers.a.agent.backup_pair(peers.now), None, "held: no alarm");
        }
    }

    // Talking: a frame every 20 ms, then nothing.
    for _ in 0..50 {
        peers
            .a
            .agent
            .note_media(peers.now, selected.via, selected.remote);
        peers.run_for(frame);
        assert_eq!(peers.a.agent.backup_pair(peers.now), None, "media flows");
    }
    let stopped_at = peers.now;
    peers.world.set_cut(peers.a_public, true);
    let mut backup_after = None;
    while backup_after.is_none() && peers.now - stopped_at < Duration::from_secs(3) {
        peers.run_for(Duration::from_millis(10));
        if let Some(backup) = peers.a.agent.backup_pair(peers.now) {
            assert_eq!(backup.kind(), PathKind::Relay);
            backup_after = Some(peers.now - stopped_at);
        }
    }
    let backup_after = backup_after.expect("a backup once media stopped");
    assert!(
        backup_after <= Duration::from_millis(130),
        "the relay carried a copy only after {backup_after:?}"
    );
}
