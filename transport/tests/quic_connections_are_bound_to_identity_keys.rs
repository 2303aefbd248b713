//! Mutual TLS over QUIC: both sides prove their Ed25519 keys, pinned keys are enforced, and
//! peers without an Ed25519 key are refused.

mod common;

use common::*;
use std::sync::Arc;
use transport::{
    ConnKind, ConnectError, Endpoint, FrameLimits, IdentityError, PeerPolicy, ServerOptions, Tuning,
};

fn server(identity: &proto::SecretKey, policy: PeerPolicy) -> Endpoint {
    let options = ServerOptions {
        policy,
        ..ServerOptions::default()
    };
    Endpoint::bind(loopback(), identity, Some(options)).expect("bind server")
}

fn serve_echo(endpoint: &Endpoint) -> tokio::sync::mpsc::Receiver<ServerEvent> {
    let endpoint = endpoint.clone();
    serve(FrameLimits::default(), move || {
        let endpoint = endpoint.clone();
        async move { endpoint.accept().await }
    })
}

#[tokio::test]
async fn mutual_tls_proves_both_keys() {
    let server_key = key();
    let client_key = key();
    let server = server(&server_key, PeerPolicy::AnyKey);
    let mut events = serve_echo(&server);
    let client = Endpoint::bind(loopback(), &client_key, None).expect("bind client");

    let conn = client
        .connect(
            server.local_addr().expect("addr"),
            PeerPolicy::Key(server_key.public()),
            &Tuning::client(),
        )
        .await
        .expect("connect");
    assert_eq!(conn.peer_key(), server_key.public());
    assert_eq!(conn.kind(), ConnKind::Quic);
    assert_eq!(
        transport::peer_key(conn.as_quic().expect("quic")),
        Some(server_key.public())
    );
    match next_event(&mut events).await {
        ServerEvent::Connected(key) => assert_eq!(key, client_key.public()),
        other => panic!("unexpected {other:?}"),
    }
    let seen: Response = transport::request(&conn, &Request::WhoAmI, FrameLimits::default())
        .await
        .expect("request");
    assert_eq!(seen, Response::Key(client_key.public()));
}

#[tokio::test]
async fn one_endpoint_both_accepts_and_dials() {
    let a_key = key();
    let b_key = key();
    let a = server(&a_key, PeerPolicy::AnyKey);
    let b = server(&b_key, PeerPolicy::AnyKey);
    let mut a_events = serve_echo(&a);
    let mut b_events = serve_echo(&b);
    let a_addr = a.local_addr().expect("addr");
    let b_addr = b.local_addr().expect("addr");
    let to_b = a
        .connect(b_addr, PeerPolicy::Key(b_key.public()), &Tuning::client())
        .await
        .expect("a dials b");
    let to_a = b
        .connect(a_addr, PeerPolicy::Key(a_key.public()), &Tuning::client())
        .await
        .expect("b dials a");
    assert!(
        matches!(next_event(&mut a_events).await, ServerEvent::Connected(k) if k == b_key.public())
    );
    assert!(
        matches!(next_event(&mut b_events).await, ServerEvent::Connected(k) if k == a_key.public())
    );
    for conn in [to_a, to_b] {
        let reply: Response =
            transport::request(&conn, &Request::Echo("hi".into()), FrameLimits::default())
                .await
                .expect("echo");
        assert_eq!(reply, Response::Echo("hi".into()));
    }
}

#[tokio::test]
async fn dialing_a_server_with_another_key_fails_with_an_identity_error() {
    let server_key = key();
    let expected = key().public();
    let server = server(&server_key, PeerPolicy::AnyKey);
    let mut events = serve_echo(&server);
    let client = Endpoint::bind(loopback(), &key(), None).expect("bind client");
    let error = client
        .connect(
            server.local_addr().expect("addr"),
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
            assert_eq!(actual, server_key.public());
        }
        other => panic!("expected an identity error, got {other}"),
    }
    assert!(error_text_names_both_keys(expected, server_key.public()));
    assert!(matches!(
        next_event(&mut events).await,
        ServerEvent::HandshakeFailed(_)
    ));
}

fn error_text_names_both_keys(expected: proto::PublicKey, actual: proto::PublicKey) -> bool {
    let text = ConnectError::PeerIdentity(IdentityError::WrongKey { expected, actual }).to_string();
    text.contains(&expected.to_string()) && text.contains(&actual.to_string())
}

#[tokio::test]
async fn a_server_pinning_a_client_key_refuses_other_clients() {
    let server_key = key();
    let allowed = key();
    let server = server(&server_key, PeerPolicy::Key(allowed.public()));
    let mut events = serve_echo(&server);
    let addr = server.local_addr().expect("addr");

    let stranger = Endpoint::bind(loopback(), &key(), None).expect("bind");
    let result = stranger
        .connect(
            addr,
            PeerPolicy::Key(server_key.public()),
            &Tuning::client(),
        )
        .await;
    // TLS 1.3 clients finish before the server has judged their key, so the refusal may
    // arrive as a failed handshake or as the connection closing right after.
    if let Ok(conn) = result {
        let closed = tokio::time::timeout(PROMPTLY, conn.closed())
            .await
            .expect("refused connection must close");
        assert!(!closed.to_string().is_empty());
    }
    assert!(matches!(
        next_event(&mut events).await,
        ServerEvent::HandshakeFailed(_)
    ));

    let friend = Endpoint::bind(loopback(), &allowed, None).expect("bind");
    friend
        .connect(
            addr,
            PeerPolicy::Key(server_key.public()),
            &Tuning::client(),
        )
        .await
        .expect("allowed client connects");
    assert!(
        matches!(next_event(&mut events).await, ServerEvent::Connected(k) if k == allowed.public())
    );
}

async fn raw_quinn_attempt(config: rustls::ClientConfig, addr: std::net::SocketAddr) {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).expect("quic tls");
    let mut endpoint = quinn::Endpoint::client(loopback()).expect("bind");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connecting = endpoint.connect(addr, "127.0.0.1").expect("connect");
    match tokio::time::timeout(PROMPTLY, connecting)
        .await
        .expect("handshake ends")
    {
        Err(_) => {}
        Ok(conn) => {
            let reason = tokio::time::timeout(PROMPTLY, conn.closed())
                .await
                .expect("server must close the connection");
            assert!(
                !matches!(reason, quinn::ConnectionError::LocallyClosed),
                "{reason}"
            );
        }
    }
}

#[tokio::test]
async fn a_client_without_a_key_is_refused() {
    let server = server(&key(), PeerPolicy::AnyKey);
    let mut events = serve_echo(&server);
    raw_quinn_attempt(client_without_key(), server.local_addr().expect("addr")).await;
    assert!(matches!(
        next_event(&mut events).await,
        ServerEvent::HandshakeFailed(_)
    ));
}

#[tokio::test]
async fn a_client_with_a_non_ed25519_key_is_refused() {
    let server = server(&key(), PeerPolicy::AnyKey);
    let mut events = serve_echo(&server);
    raw_quinn_attempt(client_with_ecdsa_key(), server.local_addr().expect("addr")).await;
    match next_event(&mut events).await {
        ServerEvent::HandshakeFailed(reason) => {
            assert!(reason.contains("Ed25519"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn raw_quinn_server(tls: rustls::ServerConfig) -> std::net::SocketAddr {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("tls");
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let server = quinn::Endpoint::server(config, loopback()).expect("bind");
    let addr = server.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                let _ = incoming.await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_server_with_a_non_ed25519_key_is_refused() {
    let addr = raw_quinn_server(server_with_ecdsa_key());
    let client = Endpoint::bind(loopback(), &key(), None).expect("bind");
    let error = client
        .connect(addr, PeerPolicy::AnyKey, &Tuning::client())
        .await
        .expect_err("must refuse");
    assert!(
        matches!(error, ConnectError::PeerIdentity(IdentityError::NotEd25519)),
        "{error}"
    );
}

#[tokio::test]
async fn a_client_claiming_a_key_it_does_not_hold_is_refused() {
    let victim = key();
    let server = server(&key(), PeerPolicy::Key(victim.public()));
    let mut events = serve_echo(&server);
    raw_quinn_attempt(
        impostor_client(victim.public()),
        server.local_addr().expect("addr"),
    )
    .await;
    match next_event(&mut events).await {
        ServerEvent::HandshakeFailed(reason) => {
            assert!(reason.contains("BadSignature"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_server_claiming_a_key_it_does_not_hold_is_refused() {
    let victim = key();
    let addr = raw_quinn_server(impostor_server(victim.public()));
    let client = Endpoint::bind(loopback(), &key(), None).expect("bind");
    let error = client
        .connect(addr, PeerPolicy::Key(victim.public()), &Tuning::client())
        .await
        .expect_err("the handshake signature must not verify");
    match &error {
        ConnectError::Handshake(reason) => assert!(reason.contains("BadSignature"), "{reason}"),
        other => panic!("expected a bad handshake signature, got {other}"),
    }
}
