//! The TLS-over-TCP fallback: same identities, same verifiers, same framed requests.

mod common;

use common::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use transport::{
    Conn, ConnKind, ConnectError, FrameIoError, FrameLimits, IdentityError, PeerPolicy,
    ServerOptions, TcpListener, Tuning,
};

struct Fixture {
    addr: std::net::SocketAddr,
    events: tokio::sync::mpsc::Receiver<ServerEvent>,
    server_key: proto::PublicKey,
}

async fn fixture_with(options: ServerOptions, limits: FrameLimits) -> Fixture {
    let identity = key();
    let listener = Arc::new(
        TcpListener::bind(loopback(), &identity, options)
            .await
            .expect("bind"),
    );
    let addr = listener.local_addr().expect("addr");
    let events = serve(limits, move || {
        let listener = listener.clone();
        async move { listener.accept().await }
    });
    Fixture {
        addr,
        events,
        server_key: identity.public(),
    }
}

async fn fixture(limits: FrameLimits) -> Fixture {
    fixture_with(ServerOptions::default(), limits).await
}

async fn dial_as(fixture: &Fixture, identity: &proto::SecretKey) -> Conn {
    transport::connect_tcp(
        fixture.addr,
        identity,
        PeerPolicy::Key(fixture.server_key),
        &Tuning::client(),
    )
    .await
    .expect("connect")
}

async fn echo(conn: &Conn, text: &str) -> Response {
    transport::request(conn, &Request::Echo(text.into()), FrameLimits::default())
        .await
        .expect("echo")
}

#[tokio::test]
async fn mutual_tls_over_tcp_proves_both_keys_and_serves_requests() {
    let mut fixture = fixture(FrameLimits::default()).await;
    let client_key = key();
    let conn = dial_as(&fixture, &client_key).await;
    assert_eq!(conn.kind(), ConnKind::Tcp);
    assert_eq!(conn.peer_key(), fixture.server_key);
    assert!(conn.as_quic().is_none());
    assert!(
        matches!(next_event(&mut fixture.events).await, ServerEvent::Connected(k) if k == client_key.public())
    );
    let seen: Response = transport::request(&conn, &Request::WhoAmI, FrameLimits::default())
        .await
        .expect("request");
    assert_eq!(seen, Response::Key(client_key.public()));

    let big = "z".repeat(60_000);
    assert_eq!(echo(&conn, &big).await, Response::Echo(big));
    let mut responses = transport::request_stream(
        &conn,
        &Request::Repeat {
            text: "tick".into(),
            count: 5,
        },
        FrameLimits::default(),
    )
    .await
    .expect("request");
    let mut got = Vec::new();
    while let Some(r) = responses.next::<Response>().await.expect("response") {
        got.push(r);
    }
    let expected: Vec<_> = (0..5)
        .map(|i| Response::Echo(format!("tick {i}")))
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn more_parallel_requests_than_the_stream_limit_wait_instead_of_failing() {
    let fixture = fixture(FrameLimits::default()).await;
    let conn = dial_as(&fixture, &key()).await;
    let n = Tuning::client().max_concurrent_bi_streams as usize * 3;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move { echo(&conn, &i.to_string()).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.expect("task"), Response::Echo(i.to_string()));
    }
    assert_eq!(echo(&conn, "after").await, Response::Echo("after".into()));
}

#[tokio::test]
async fn dialing_over_tcp_a_server_with_another_key_fails_with_an_identity_error() {
    let fixture = fixture(FrameLimits::default()).await;
    let expected = key().public();
    let error = transport::connect_tcp(
        fixture.addr,
        &key(),
        PeerPolicy::Key(expected),
        &Tuning::client(),
    )
    .await
    .expect_err("must refuse an impostor");
    match error {
        ConnectError::PeerIdentity(IdentityError::WrongKey {
            expected: e,
            actual,
        }) => {
            assert_eq!(e, expected);
            assert_eq!(actual, fixture.server_key);
        }
        other => panic!("expected an identity error, got {other}"),
    }
}

async fn raw_tls_attempt(config: rustls::ClientConfig, addr: std::net::SocketAddr) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    if let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
    {
        // TLS 1.3 clients finish before the server judges them; the refusal then arrives
        // as an alert or end of stream on the first read.
        let _ = tls.write_all(&[0, 0, 0, 1, 0]).await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(PROMPTLY, tls.read(&mut buf))
            .await
            .expect("server must end the connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}

#[tokio::test]
async fn a_tcp_client_without_a_key_is_refused() {
    let mut fixture = fixture(FrameLimits::default()).await;
    raw_tls_attempt(client_without_key(), fixture.addr).await;
    assert!(matches!(
        next_event(&mut fixture.events).await,
        ServerEvent::HandshakeFailed(_)
    ));
}

#[tokio::test]
async fn a_tcp_client_with_a_non_ed25519_key_is_refused() {
    let mut fixture = fixture(FrameLimits::default()).await;
    raw_tls_attempt(client_with_ecdsa_key(), fixture.addr).await;
    match next_event(&mut fixture.events).await {
        ServerEvent::HandshakeFailed(reason) => assert!(reason.contains("Ed25519"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_tcp_client_claiming_a_key_it_does_not_hold_is_refused() {
    let victim = key();
    let mut fixture = fixture_with(
        ServerOptions {
            policy: PeerPolicy::Key(victim.public()),
            ..ServerOptions::default()
        },
        FrameLimits::default(),
    )
    .await;
    raw_tls_attempt(impostor_client(victim.public()), fixture.addr).await;
    match next_event(&mut fixture.events).await {
        ServerEvent::HandshakeFailed(reason) => {
            assert!(reason.contains("BadSignature"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_tcp_client_without_alpn_is_refused() {
    let mut fixture = fixture(FrameLimits::default()).await;
    let identity = key();
    let mut config =
        (*transport::tls::client_config(&identity, PeerPolicy::AnyKey).expect("config")).clone();
    config.alpn_protocols.clear();
    raw_tls_attempt(config, fixture.addr).await;
    match next_event(&mut fixture.events).await {
        ServerEvent::HandshakeFailed(reason) => assert!(reason.contains("ALPN"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn over_tcp_an_oversized_length_prefix_closes_that_stream_and_the_server_keeps_serving() {
    let mut fixture = fixture(FrameLimits::new(1024)).await;
    let conn = dial_as(&fixture, &key()).await;
    assert!(matches!(
        next_event(&mut fixture.events).await,
        ServerEvent::Connected(_)
    ));
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    send.write_all(&u32::MAX.to_be_bytes())
        .await
        .expect("write header");
    send.flush().await.expect("flush");
    match next_event(&mut fixture.events).await {
        ServerEvent::StreamFailed(FrameIoError::TooLarge { max: 1024, .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PROMPTLY, recv.read_to_end(&mut rest))
        .await
        .expect("stream must end");
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
    assert_eq!(
        echo(&conn, "still here").await,
        Response::Echo("still here".into())
    );
    let other = dial_as(&fixture, &key()).await;
    assert_eq!(
        echo(&other, "me too").await,
        Response::Echo("me too".into())
    );
}

#[tokio::test]
async fn over_tcp_a_peer_that_stalls_mid_frame_is_dropped() {
    let limits = FrameLimits {
        max_len: 1024,
        mid_frame_timeout: Duration::from_millis(300),
        ..FrameLimits::default()
    };
    let mut fixture = fixture(limits).await;
    let conn = dial_as(&fixture, &key()).await;
    assert!(matches!(
        next_event(&mut fixture.events).await,
        ServerEvent::Connected(_)
    ));
    let (mut send, _recv) = conn.open_bi().await.expect("open");
    let frame =
        proto::frame::encode(&Request::Echo("never finished".into()), 1024).expect("encode");
    send.write_all(&frame[..frame.len() - 3])
        .await
        .expect("write part");
    send.flush().await.expect("flush");
    match next_event(&mut fixture.events).await {
        ServerEvent::StreamFailed(FrameIoError::Stalled(_)) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(echo(&conn, "next").await, Response::Echo("next".into()));
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_over_tcp() {
    let mut fixture = fixture_with(
        ServerOptions {
            connections: transport::ConnectionLimiter::new(1),
            ..ServerOptions::default()
        },
        FrameLimits::default(),
    )
    .await;
    let first = dial_as(&fixture, &key()).await;
    assert!(matches!(
        next_event(&mut fixture.events).await,
        ServerEvent::Connected(_)
    ));
    let second = transport::connect_tcp(
        fixture.addr,
        &key(),
        PeerPolicy::Key(fixture.server_key),
        &Tuning::client(),
    )
    .await;
    assert!(second.is_err(), "a second connection must be refused");
    assert_eq!(echo(&first, "first").await, Response::Echo("first".into()));
}

#[tokio::test]
async fn a_tcp_client_that_never_starts_its_handshake_is_dropped() {
    let mut options = ServerOptions::default();
    options.tuning.handshake_timeout = Duration::from_millis(300);
    let mut fixture = fixture_with(options, FrameLimits::default()).await;
    let mut silent = tokio::net::TcpStream::connect(fixture.addr)
        .await
        .expect("tcp");
    match next_event(&mut fixture.events).await {
        ServerEvent::HandshakeFailed(reason) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(PROMPTLY, silent.read(&mut buf))
        .await
        .expect("server closes the socket");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let conn = dial_as(&fixture, &key()).await;
    assert_eq!(
        echo(&conn, "others fine").await,
        Response::Echo("others fine".into())
    );
}
