//! When host candidates are off, two media paths connect through a supernode's TURN relay
//! (`supernode::relay::RelayServer`, with loopback opened as `--allow-relay-to 127.0.0.0/8`
//! does), report `relay`, and carry datagrams both ways.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use app::events::PathKind;
use app::media_path::{MediaPath, PathConfig, TurnServer};
use proto::peer::CandidateKind;
use supernode::relay::{RelayConfig, RelayServer};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);
const SECRET: &[u8] = b"relay test secret";

fn turn_for(relay: &RelayServer, user: &str) -> TurnServer {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let creds = nat::turn::mint(SECRET, user, now_unix, 600);
    let addr = relay.listen_addr();
    TurnServer::new(
        vec![format!("turn:{addr}?transport=udp"), format!("stun:{addr}")],
        creds.username,
        creds.password,
    )
}

#[tokio::test]
async fn paths_without_host_candidates_connect_through_the_relay() {
    let mut relay_config = RelayConfig::new("127.0.0.1:0".parse().expect("addr"), SECRET);
    relay_config.allow_relay_to = vec!["127.0.0.0/8".parse().expect("cidr")];
    relay_config.socket_buffer_bytes = 0;
    let relay = RelayServer::start(relay_config)
        .await
        .expect("relay starts");

    let config = |user: &str| PathConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        host_candidates: false,
        turn: Some(turn_for(&relay, user)),
        ..PathConfig::default()
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

    let mut a = alice
        .start(
            true,
            bob_offer.ufrag.clone(),
            bob_offer.password.clone(),
            bob_offer.candidates.clone(),
        )
        .expect("start alice");
    let mut b = bob
        .start(
            false,
            alice_offer.ufrag.clone(),
            alice_offer.password.clone(),
            alice_offer.candidates.clone(),
        )
        .expect("start bob");

    for path in [&mut a.path, &mut b.path] {
        let kind = timeout(LIMIT, path.wait_for(Option::is_some))
            .await
            .expect("connects within the limit")
            .expect("alive")
            .expect("some");
        assert_eq!(kind, PathKind::Relay);
    }

    for n in 0..20u32 {
        a.outgoing
            .send(format!("alice {n}").into_bytes())
            .await
            .expect("alive");
        b.outgoing
            .send(format!("bob {n}").into_bytes())
            .await
            .expect("alive");
    }
    for n in 0..20u32 {
        let at_bob = timeout(LIMIT, b.incoming.recv())
            .await
            .expect("within the limit")
            .expect("alive");
        assert_eq!(at_bob, format!("alice {n}").into_bytes());
        let at_alice = timeout(LIMIT, a.incoming.recv())
            .await
            .expect("within the limit")
            .expect("alive");
        assert_eq!(at_alice, format!("bob {n}").into_bytes());
    }
    // Fresh credentials (the supernode's expire) are taken while the call runs.
    let fresh = turn_for(&relay, "alice");
    alice
        .update_turn_credentials(fresh.username, fresh.password)
        .expect("path running");
    a.outgoing
        .send(b"still here".to_vec())
        .await
        .expect("alive");
    let at_bob = timeout(LIMIT, b.incoming.recv())
        .await
        .expect("within the limit")
        .expect("alive");
    assert_eq!(at_bob, b"still here");

    let stats = relay.stats().await.expect("relay running");
    assert_eq!(stats.turn.allocations_granted, 2);
    assert!(
        stats.turn.packets_to_peers >= 41,
        "the media went through the relay: {stats:?}"
    );
    drop((alice, bob, a, b));
    relay.shutdown().await;
}
