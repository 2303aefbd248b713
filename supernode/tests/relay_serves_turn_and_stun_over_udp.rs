//! The relay shell on real loopback sockets: STUN Binding answers, a `nat::turn` client
//! allocates from the configured port range and relays both ways, and without an
//! allowlist the relay refuses to reach loopback peers.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nat::turn::client::{ClientConfig, ClientError, ClientEvent, TurnClient};
use nat::turn::credentials;
use supernode::relay::{RelayConfig, RelayServer};
use tokio::net::UdpSocket;

const SECRET: &[u8] = b"relay-test-secret";

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

async fn start(allow_loopback: bool, ports: std::ops::RangeInclusive<u16>) -> RelayServer {
    let mut config = RelayConfig::new("127.0.0.1:0".parse().expect("addr"), SECRET);
    config.relay_ports = ports;
    if allow_loopback {
        config.allow_relay_to = vec!["127.0.0.0/8".parse().expect("cidr")];
    }
    RelayServer::start(config).await.expect("relay starts")
}

/// Drives `client` on `socket` until `done` accepts an event (returned) or 10 s pass.
async fn drive(
    client: &mut TurnClient,
    socket: &UdpSocket,
    done: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(t) = client.poll_transmit() {
            socket
                .send_to(&t.payload, t.destination)
                .await
                .expect("send");
        }
        while let Some(e) = client.poll_event() {
            if done(&e) {
                return e;
            }
        }
        assert!(Instant::now() < deadline, "no matching event within 10 s");
        let wait = client
            .poll_timeout()
            .map_or(Duration::from_millis(50), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_millis(50));
        match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                client.handle_datagram(Instant::now(), from, &buf[..n]);
            }
            _ => client.handle_timeout(Instant::now()),
        }
    }
}

async fn allocated_client(server: SocketAddr, user: &str) -> (TurnClient, UdpSocket, SocketAddr) {
    let creds = credentials::mint(SECRET, user, now_unix(), 600);
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let mut client = TurnClient::new(
        ClientConfig::new(server, creds.username, creds.password),
        [5; 32],
    );
    client.allocate(Instant::now()).expect("starts");
    let event = drive(&mut client, &socket, |_| true).await;
    let ClientEvent::Allocated { relayed, .. } = event else {
        panic!("expected Allocated, got {event:?}");
    };
    (client, socket, relayed)
}

#[tokio::test]
async fn stun_binding_reports_the_mapped_address() {
    let relay = start(false, 53000..=53099).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let id = nat::stun::TransactionId::new([3; 12]);
    let request = nat::stun::encode(nat::stun::binding_request(id), None, true).expect("encodes");
    socket
        .send_to(&request, relay.listen_addr())
        .await
        .expect("send");
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("answered")
        .expect("recv");
    let response = nat::stun::decode(&buf[..n]).expect("valid STUN");
    let mapped = response
        .message()
        .get_attribute::<nat::stun::attributes::XorMappedAddress>()
        .map(|a| a.address());
    assert_eq!(mapped, socket.local_addr().ok());
    assert_eq!(response.message().transaction_id(), id);
    relay.shutdown().await;
}

#[tokio::test]
async fn turn_client_relays_both_ways_through_the_shell() {
    let relay = start(true, 53100..=53199).await;
    let (mut client, socket, relayed) = allocated_client(relay.listen_addr(), "alice").await;
    assert!((53100..=53199).contains(&relayed.port()), "{relayed}");
    assert_eq!(relayed.ip(), relay.listen_addr().ip());

    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    let peer_addr = peer.local_addr().expect("addr");
    client
        .bind_channel(Instant::now(), peer_addr)
        .expect("allocated");
    let bound = drive(&mut client, &socket, |_| true).await;
    assert!(
        matches!(bound, ClientEvent::ChannelBound { .. }),
        "{bound:?}"
    );

    for i in 0..50u8 {
        client.send_to(peer_addr, &[i; 64]).expect("allocated");
    }
    while let Some(t) = client.poll_transmit() {
        socket
            .send_to(&t.payload, t.destination)
            .await
            .expect("send");
    }
    let mut buf = [0u8; 256];
    for i in 0..50u8 {
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .expect("peer receives")
            .expect("recv");
        assert_eq!(from, relayed);
        assert_eq!(&buf[..n], &[i; 64][..]);
    }
    peer.send_to(b"pong", relayed).await.expect("peer sends");
    let data = drive(&mut client, &socket, |e| {
        matches!(e, ClientEvent::Data { .. })
    })
    .await;
    assert_eq!(
        data,
        ClientEvent::Data {
            peer: peer_addr,
            payload: b"pong".to_vec()
        }
    );
    let stats = relay.stats().await.expect("running");
    assert_eq!(stats.turn.packets_to_peers, 50);
    assert_eq!(stats.turn.packets_to_clients, 1);

    client.release(Instant::now()).expect("allocated");
    let released = drive(&mut client, &socket, |_| true).await;
    assert_eq!(released, ClientEvent::Released);
    assert_eq!(relay.stats().await.expect("running").turn.allocations, 0);
    relay.shutdown().await;
}

#[tokio::test]
async fn loopback_peers_are_refused_without_an_allowlist() {
    let relay = start(false, 53200..=53299).await;
    let (mut client, socket, _) = allocated_client(relay.listen_addr(), "mallory").await;
    client
        .create_permission(Instant::now(), "127.0.0.1".parse().expect("ip"))
        .expect("allocated");
    let refused = drive(&mut client, &socket, |_| true).await;
    assert!(
        matches!(
            refused,
            ClientEvent::PermissionFailed {
                error: ClientError::Rejected { code: 403, .. },
                ..
            }
        ),
        "{refused:?}"
    );
    relay.shutdown().await;
}
