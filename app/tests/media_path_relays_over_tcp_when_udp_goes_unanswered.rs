//! A media path whose UDP to the relay goes unanswered (as behind a router that drops
//! outbound UDP) allocates its relayed candidate over TCP (`turn:…?transport=tcp`,
//! `supernode::relay::TcpRelayServer`) and carries datagrams both ways with a peer that
//! relays over UDP. On loopback, the "blocked" UDP relay is a socket that never answers.

mod media_path_support;

use std::time::Instant;

use app::events::PathKind;
use app::media_path::{MediaPath, PathConfig, TCP_FALLBACK_AFTER, TurnServer};
use media_path_support::{
    loopback_config, loopback_relay_config, receive, start_pair, turn_credentials, wait_for_path,
};
use proto::peer::CandidateKind;
use supernode::relay::{RelayConfig, RelayServer, TcpRelayServer};

const SECRET: &[u8] = b"tcp relay test secret";

fn creds(user: &str) -> nat::turn::TurnCredentials {
    turn_credentials(SECRET, user)
}

fn relay_config(ports: std::ops::RangeInclusive<u16>) -> RelayConfig {
    let mut config = loopback_relay_config(SECRET);
    config.relay_ports = ports;
    config
}

#[tokio::test]
async fn a_path_whose_udp_goes_unanswered_relays_over_tcp() {
    let udp_relay = RelayServer::start(relay_config(54000..=54099))
        .await
        .expect("UDP relay starts");
    let tcp_relay = TcpRelayServer::start(relay_config(54100..=54199))
        .await
        .expect("TCP relay starts");
    // Swallows alice's UDP TURN requests without a word (no ICMP either).
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead = black_hole.local_addr().expect("addr");

    let alice_creds = creds("alice");
    let alice_turn = TurnServer::new(
        vec![
            format!("turn:{dead}?transport=udp"),
            format!("turn:{}?transport=tcp", tcp_relay.listen_addr()),
        ],
        alice_creds.username,
        alice_creds.password,
    );
    let bob_creds = creds("bob");
    let bob_turn = TurnServer::new(
        vec![format!("turn:{}?transport=udp", udp_relay.listen_addr())],
        bob_creds.username,
        bob_creds.password,
    );
    let config = |turn: TurnServer| PathConfig {
        host_candidates: false,
        turn: Some(turn),
        ..loopback_config()
    };
    let gathering = Instant::now();
    let (mut alice, alice_offer) = MediaPath::bind(config(alice_turn))
        .await
        .expect("alice gathers a relayed candidate over TCP");
    let gather_time = gathering.elapsed();
    assert!(
        gather_time >= TCP_FALLBACK_AFTER && gather_time < TCP_FALLBACK_AFTER * 3,
        "TCP tried after {TCP_FALLBACK_AFTER:?} of UDP silence, then done: {gather_time:?}"
    );
    let (mut bob, bob_offer) = MediaPath::bind(config(bob_turn)).await.expect("bob");
    assert_eq!(
        alice_offer
            .candidates
            .iter()
            .map(|c| (c.kind, c.addr.port() / 100))
            .collect::<Vec<_>>(),
        vec![(CandidateKind::Relayed, 541)],
        "alice's only candidate is on the TCP relay's ports: {alice_offer:?}"
    );

    let (mut a, mut b) = start_pair(&mut alice, &alice_offer, &mut bob, &bob_offer);
    for path in [&mut a.path, &mut b.path] {
        assert_eq!(wait_for_path(path).await, PathKind::Relay);
    }
    // Odd sizes: ChannelData on the stream is padded, the padding must not reach media.
    for n in 0..20u32 {
        let from_alice = vec![n as u8; 37 + n as usize];
        let from_bob = vec![!n as u8; 161 + n as usize];
        a.outgoing.send(from_alice.clone()).await.expect("alive");
        b.outgoing.send(from_bob.clone()).await.expect("alive");
        assert_eq!(receive(&mut b).await, from_alice);
        assert_eq!(receive(&mut a).await, from_bob);
    }
    let mut probe = [0u8; 1];
    black_hole.set_nonblocking(true).expect("nonblocking");
    assert!(
        black_hole.recv_from(&mut probe).is_ok(),
        "alice did try UDP first"
    );
    drop((a, b, alice, bob));
    tcp_relay.shutdown().await;
    udp_relay.shutdown().await;
}
