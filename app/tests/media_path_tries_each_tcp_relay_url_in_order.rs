//! A media path whose UDP to the relay goes unanswered tries each `turn:…?transport=tcp`
//! URL in the server's order until one connects and allocates: a supernode lists its
//! `--tcp-listen` port first and its TURN port second, and a firewall may pass only one.
//! Here the first URL's port refuses the connection, the second accepts and hangs up, and
//! the third is a working relay.

mod media_path_support;

use std::time::Duration;

use app::media_path::{MediaPath, PathConfig, TurnServer};
use media_path_support::{loopback_config, loopback_relay_config, turn_credentials};
use proto::peer::CandidateKind;
use supernode::relay::TcpRelayServer;

const SECRET: &[u8] = b"tcp relay order test secret";

#[tokio::test]
async fn the_first_tcp_relay_url_that_works_is_used() {
    let mut relay_config = loopback_relay_config(SECRET);
    relay_config.relay_ports = 54300..=54399;
    let tcp_relay = TcpRelayServer::start(relay_config)
        .await
        .expect("TCP relay starts");
    // Nothing listens there any more: refused.
    let refused = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    // Accepts and hangs up at once, as a port that speaks something else would.
    let hang_up = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hang_up_addr = hang_up.local_addr().expect("addr");
    let hang_ups = tokio::spawn(async move {
        let mut accepted = 0u32;
        while let Ok((stream, _)) = hang_up.accept().await {
            drop(stream);
            accepted += 1;
        }
        accepted
    });
    // Swallows the UDP TURN requests without a word.
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead = black_hole.local_addr().expect("addr");

    let creds = turn_credentials(SECRET, "alice");
    let turn = TurnServer::new(
        vec![
            format!("turn:{dead}?transport=udp"),
            format!("turn:{refused}?transport=tcp"),
            format!("turn:{hang_up_addr}?transport=tcp"),
            format!("turn:{}?transport=tcp", tcp_relay.listen_addr()),
        ],
        creds.username,
        creds.password,
    );
    let config = PathConfig {
        host_candidates: false,
        turn: Some(turn),
        gather_timeout: Duration::from_secs(10),
        ..loopback_config()
    };
    let (_path, offer) = MediaPath::bind(config)
        .await
        .expect("a relayed candidate over the third TCP URL");
    assert_eq!(
        offer
            .candidates
            .iter()
            .map(|c| (c.kind, c.addr.port() / 100))
            .collect::<Vec<_>>(),
        vec![(CandidateKind::Relayed, 543)],
        "the only candidate is on the working TCP relay's ports: {offer:?}"
    );
    hang_ups.abort();
    tcp_relay.shutdown().await;
}
