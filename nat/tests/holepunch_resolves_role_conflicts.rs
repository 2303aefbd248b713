//! Both peers believing they control the session (a signalling race) still converge: the
//! ICE tie-breakers decide, one side yields, and both select the same direct pair.

use std::time::Duration;

use nat::holepunch::{PunchEvent, Role};
use nat::path::PathKind;
use nat::sim::{NatConfig, SimSide, TwoPeers};
use netsim::ImpairmentConfig;

#[test]
fn two_controlling_peers_converge_on_one_pair() {
    let side = SimSide::Behind(NatConfig::restricted_cone(
        "203.0.113.1".parse().expect("ip"),
    ));
    let network = ImpairmentConfig {
        delay: Duration::from_millis(20),
        ..ImpairmentConfig::default()
    };
    let mut peers = TwoPeers::new(&side, &side, true, network, 21, |config| {
        config.role = Role::Controlling;
    });
    peers.run_for(Duration::from_secs(10));
    // A's tie-breaker (7) beats B's (3): B yields.
    assert_eq!(peers.a.agent.role(), Role::Controlling);
    assert_eq!(peers.b.agent.role(), Role::Controlled);
    let a = peers.a.agent.selected_pair().expect("A connected");
    let b = peers.b.agent.selected_pair().expect("B connected");
    assert_eq!(a.kind(), PathKind::Direct);
    assert_eq!(b.kind(), PathKind::Direct);
    for peer in [&peers.a, &peers.b] {
        assert!(
            !peer
                .events
                .iter()
                .any(|(_, e)| matches!(e, PunchEvent::Failed { .. }))
        );
    }
}
