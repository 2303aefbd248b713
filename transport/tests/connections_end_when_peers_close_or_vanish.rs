//! Liveness and limits: closing is seen by the peer, a vanished peer is noticed through the
//! idle timeout, and connections beyond the server's limit are refused.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use transport::{
    Conn, ConnError, ConnectError, Endpoint, FrameLimits, PeerPolicy, ServerOptions, TcpListener,
    Tuning,
};

async fn accept_one(incoming: Option<transport::Incoming>) -> Conn {
    incoming
        .expect("an incoming connection")
        .complete()
        .await
        .expect("handshake")
}

/// A connected pair over QUIC (client side first) and the server endpoint.
async fn quic_pair(client_tuning: &Tuning) -> (Conn, Conn, Endpoint) {
    let server_key = key();
    let server =
        Endpoint::bind(loopback(), &server_key, Some(ServerOptions::default())).expect("bind");
    let client = Endpoint::bind(loopback(), &key(), None).expect("bind");
    let addr = server.local_addr().expect("addr");
    let (client_conn, server_conn) = tokio::join!(
        client.connect(addr, PeerPolicy::Key(server_key.public()), client_tuning),
        async { accept_one(server.accept().await).await }
    );
    (client_conn.expect("connect"), server_conn, server)
}

async fn tcp_pair() -> (Conn, Conn) {
    let server_key = key();
    let listener = TcpListener::bind(loopback(), &server_key, ServerOptions::default())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client_key = key();
    let tuning = Tuning::client();
    let (client_conn, server_conn) = tokio::join!(
        transport::connect_tcp(
            addr,
            &client_key,
            PeerPolicy::Key(server_key.public()),
            &tuning
        ),
        async { accept_one(listener.accept().await).await }
    );
    (client_conn.expect("connect"), server_conn)
}

async fn closed_within_bound(conn: &Conn) -> ConnError {
    tokio::time::timeout(PROMPTLY, conn.closed())
        .await
        .expect("connection must end")
}

#[tokio::test]
async fn closing_a_quic_connection_is_seen_by_the_peer_with_code_and_reason() {
    let (client, server, _endpoint) = quic_pair(&Tuning::client()).await;
    client.close(7, "shutting down");
    assert_eq!(
        closed_within_bound(&server).await,
        ConnError::ClosedByPeer {
            code: 7,
            reason: "shutting down".into()
        }
    );
    assert_eq!(closed_within_bound(&client).await, ConnError::ClosedLocally);
    assert!(server.accept_bi().await.is_err());
}

#[tokio::test]
async fn closing_a_tcp_connection_is_seen_by_the_peer() {
    let (client, server) = tcp_pair().await;
    client.close(7, "shutting down");
    assert!(matches!(
        closed_within_bound(&server).await,
        ConnError::ClosedByPeer { .. }
    ));
    assert_eq!(closed_within_bound(&client).await, ConnError::ClosedLocally);
    assert!(server.accept_bi().await.is_err());
    assert!(client.open_bi().await.is_err());
}

#[tokio::test]
async fn dropping_every_handle_closes_a_tcp_connection() {
    let (client, server) = tcp_pair().await;
    drop(client);
    assert!(matches!(
        closed_within_bound(&server).await,
        ConnError::ClosedByPeer { .. }
    ));
}

/// Forwards UDP between a client and `server` until told to drop everything.
async fn udp_relay(
    server: std::net::SocketAddr,
    blackhole: Arc<AtomicBool>,
) -> std::net::SocketAddr {
    let socket = Arc::new(tokio::net::UdpSocket::bind(loopback()).await.expect("bind"));
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut client = None;
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if blackhole.load(Ordering::SeqCst) {
                continue;
            }
            let to = if from == server {
                match client {
                    Some(c) => c,
                    None => continue,
                }
            } else {
                client = Some(from);
                server
            };
            let _ = socket.send_to(&buf[..n], to).await;
        }
    });
    addr
}

#[tokio::test]
async fn a_vanished_server_is_noticed_through_the_idle_timeout() {
    let server_key = key();
    let server =
        Endpoint::bind(loopback(), &server_key, Some(ServerOptions::default())).expect("bind");
    let mut events = serve(FrameLimits::default(), {
        let server = server.clone();
        move || {
            let server = server.clone();
            async move { server.accept().await }
        }
    });
    let blackhole = Arc::new(AtomicBool::new(false));
    let relay = udp_relay(server.local_addr().expect("addr"), blackhole.clone()).await;
    let tuning = Tuning {
        keep_alive_interval: Some(Duration::from_millis(200)),
        idle_timeout: Duration::from_secs(1),
        ..Tuning::client()
    };
    let client = Endpoint::bind(loopback(), &key(), None).expect("bind");
    let conn = client
        .connect(relay, PeerPolicy::Key(server_key.public()), &tuning)
        .await
        .expect("connect through relay");
    assert!(matches!(
        next_event(&mut events).await,
        ServerEvent::Connected(_)
    ));
    let reply: Response =
        transport::request(&conn, &Request::Echo("ping".into()), FrameLimits::default())
            .await
            .expect("echo");
    assert_eq!(reply, Response::Echo("ping".into()));

    blackhole.store(true, Ordering::SeqCst);
    assert_eq!(closed_within_bound(&conn).await, ConnError::TimedOut);
}

#[tokio::test]
async fn quic_connections_beyond_the_limit_are_refused() {
    let server_key = key();
    let options = ServerOptions {
        connections: transport::ConnectionLimiter::new(1),
        ..ServerOptions::default()
    };
    let server = Endpoint::bind(loopback(), &server_key, Some(options)).expect("bind");
    let mut events = serve(FrameLimits::default(), {
        let server = server.clone();
        move || {
            let server = server.clone();
            async move { server.accept().await }
        }
    });
    let addr = server.local_addr().expect("addr");
    let policy = PeerPolicy::Key(server_key.public());
    let first = Endpoint::bind(loopback(), &key(), None)
        .expect("bind")
        .connect(addr, policy, &Tuning::client())
        .await
        .expect("first connects");
    assert!(matches!(
        next_event(&mut events).await,
        ServerEvent::Connected(_)
    ));
    let second = Endpoint::bind(loopback(), &key(), None)
        .expect("bind")
        .connect(addr, policy, &Tuning::client())
        .await;
    assert!(
        matches!(second, Err(ConnectError::Refused(_))),
        "{second:?}"
    );
    let reply: Response = transport::request(
        &first,
        &Request::Echo("first".into()),
        FrameLimits::default(),
    )
    .await
    .expect("echo");
    assert_eq!(reply, Response::Echo("first".into()));
}

#[tokio::test]
async fn quic_connections_carry_datagrams_for_media() {
    let (client, server, _endpoint) = quic_pair(&Tuning::client()).await;
    let client = client.as_quic().expect("quic").clone();
    let server = server.as_quic().expect("quic").clone();
    let max = client.max_datagram_size().expect("datagrams are enabled");
    assert!(max >= 1000, "room for an Opus packet: {max}");
    let payload = bytes::Bytes::from(vec![42u8; 160]);
    // Datagrams may be lost even on loopback; keep sending until one arrives.
    let receiving = tokio::spawn(async move { server.read_datagram().await });
    let received = tokio::time::timeout(PROMPTLY, async {
        loop {
            client.send_datagram(payload.clone()).expect("send");
            if receiving.is_finished() {
                break receiving.await.expect("task").expect("datagram");
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a datagram arrives");
    assert_eq!(received, payload);
}
