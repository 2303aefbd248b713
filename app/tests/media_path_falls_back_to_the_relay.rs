//! When host candidates are off, two media paths connect through a supernode's TURN relay
//! (`supernode::relay::RelayServer`, with loopback opened as `--allow-relay-to 127.0.0.0/8`
//! does), report `relay`, and carry datagrams both ways.

mod media_path_support;

use app::events::PathKind;
use app::media_path::{MediaPath, PathConfig, TurnServer};
use media_path_support::{
    exchange_both_ways, loopback_config, loopback_relay_config, receive, start_pair,
    turn_credentials, wait_for_path,
};
use proto::peer::CandidateKind;
use supernode::relay::RelayServer;

const SECRET: &[u8] = b"relay test secret";

fn turn_for(relay: &RelayServer, user: &str) -> TurnServer {
    let creds = turn_credentials(SECRET, user);
    let addr = relay.listen_addr();
    TurnServer::new(
        vec![format!("turn:{addr}?transport=udp"), format!("stun:{addr}")],
        creds.username,
        creds.password,
    )
}

#[tokio::test]
async fn paths_without_host_candidates_connect_through_the_relay() {
    let relay = RelayServer::start(loopback_relay_config(SECRET))
        .await
        .expect("relay starts");

    let config = |user: &str| PathConfig {
        host_candidates: false,
        turn: Some(turn_for(&relay, user)),
        ..loopback_config()
    };
    let (mut alice, alice_offer) = MediaPath::bind(config("alice")).await.expect("bind alice");
    let (mut bob, bob_offer) = MediaPath::bind(config("bob")).await.expect("bind bob");
    for offer in [&alice_offer, &bob_offer] {
        assert_eq!(
            offer.candidates.iter().map(|c| c.kind).collect::<Vec<_>>(),
            vec![CandidateKind::Relayed],
            "only a relayed candidate is offered: {offer:?}"
        );
        assert_eq!(offer.candidates[0].addr.ip(), relay.listen_addr().ip());
    }

    let (mut a, mut b) = start_pair(&mut alice, &alice_offer, &mut bob, &bob_offer);
    for path in [&mut a.path, &mut b.path] {
        assert_eq!(wait_for_path(path).await, PathKind::Relay);
    }

    exchange_both_ways(&mut a, &mut b, 20).await;
    // Fresh credentials (the supernode's expire) are taken while the call runs.
    let fresh = turn_for(&relay, "alice");
    alice
        .update_turn_credentials(fresh.username, fresh.password)
        .expect("path running");
    a.outgoing
        .send(b"still here".to_vec())
        .await
        .expect("alive");
    assert_eq!(receive(&mut b).await, b"still here");

    let stats = relay.stats().await.expect("relay running");
    assert_eq!(stats.turn.allocations_granted, 2);
    assert!(
        stats.turn.packets_to_peers >= 41,
        "the media went through the relay: {stats:?}"
    );
    drop((alice, bob, a, b));
    relay.shutdown().await;
}
