//! STUN and hole-punching datagrams leave from, and arrive at, the QUIC endpoint's own port
//! while QUIC keeps working on it.

mod common;

use common::*;
use transport::{Endpoint, FrameLimits, PeerPolicy, ServerOptions, Tuning};

/// A STUN Binding request header with a transaction id (RFC 8489 §5).
fn stun_like(id: u8) -> Vec<u8> {
    let mut packet = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    packet.extend_from_slice(&[id; 12]);
    packet
}

#[tokio::test]
async fn raw_datagrams_and_quic_share_one_port() {
    let server_key = key();
    let (server, server_raw) =
        Endpoint::bind_with_raw(loopback(), &server_key, Some(ServerOptions::default()))
            .expect("bind server");
    let mut events = serve(FrameLimits::default(), {
        let server = server.clone();
        move || {
            let server = server.clone();
            async move { server.accept().await }
        }
    });
    let (client, client_raw) =
        Endpoint::bind_with_raw(loopback(), &key(), None).expect("bind client");
    let server_addr = server.local_addr().expect("addr");
    let client_addr = client.local_addr().expect("addr");
    assert_eq!(client_raw.local_addr().expect("addr"), client_addr);

    // A STUN server sees requests coming from the QUIC port, and its answers come back raw.
    let stun = tokio::net::UdpSocket::bind(loopback()).await.expect("bind");
    client_raw
        .send_to(&stun_like(1), stun.local_addr().expect("addr"))
        .await
        .expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(PROMPTLY, stun.recv_from(&mut buf))
        .await
        .expect("arrives")
        .expect("recv");
    assert_eq!(&buf[..n], stun_like(1).as_slice());
    assert_eq!(from, client_addr, "raw datagrams leave from the QUIC port");
    stun.send_to(&stun_like(2), client_addr)
        .await
        .expect("reply");
    let (reply, reply_from) = tokio::time::timeout(PROMPTLY, client_raw.recv_from())
        .await
        .expect("arrives")
        .expect("socket open");
    assert_eq!(reply, stun_like(2));
    assert_eq!(reply_from, stun.local_addr().expect("addr"));

    // QUIC between the two shared sockets, with a hole-punching probe the other way.
    let conn = client
        .connect(
            server_addr,
            PeerPolicy::Key(server_key.public()),
            &Tuning::client(),
        )
        .await
        .expect("connect");
    assert!(matches!(
        next_event(&mut events).await,
        ServerEvent::Connected(_)
    ));
    server_raw
        .send_to(&stun_like(3), client_addr)
        .await
        .expect("probe");
    let (probe, probe_from) = tokio::time::timeout(PROMPTLY, client_raw.recv_from())
        .await
        .expect("arrives")
        .expect("socket open");
    assert_eq!(probe, stun_like(3));
    assert_eq!(probe_from, server_addr);
    let reply: Response = transport::request(
        &conn,
        &Request::Echo("after raw".into()),
        FrameLimits::default(),
    )
    .await
    .expect("echo");
    assert_eq!(reply, Response::Echo("after raw".into()));
}
