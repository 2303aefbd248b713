//! `connect_with_tcp_fallback`: QUIC when it answers, TLS-over-TCP on the same address when
//! UDP gets nowhere, and never a fallback on a wrong key.

mod common;

use common::*;
use transport::{
    ConnKind, ConnectError, Endpoint, IdentityError, PeerPolicy, ServerOptions, TcpListener, Tuning,
};

/// A TCP listener, and on the same port either a QUIC endpoint or a UDP socket that
/// swallows everything (UDP "blocked").
async fn server(
    identity: &proto::SecretKey,
    quic: bool,
) -> (std::net::SocketAddr, Vec<Box<dyn std::any::Any + Send>>) {
    let listener = TcpListener::bind(loopback(), identity, ServerOptions::default())
        .await
        .expect("bind tcp");
    let addr = listener.local_addr().expect("addr");
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    tokio::spawn(async move {
        while let Some(incoming) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.complete().await {
                    let _ = conn.closed().await;
                }
            });
        }
    });
    if quic {
        let endpoint = Endpoint::bind(addr, identity, Some(ServerOptions::default()))
            .expect("bind quic on the same port");
        let accepting = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.complete().await {
                        let _ = conn.closed().await;
                    }
                });
            }
        });
        keep.push(Box::new(endpoint));
    } else {
        keep.push(Box::new(std::net::UdpSocket::bind(addr).expect("bind udp")));
    }
    (addr, keep)
}

async fn dial(
    addr: std::net::SocketAddr,
    policy: PeerPolicy,
) -> Result<transport::Conn, ConnectError> {
    let client = Endpoint::bind(loopback(), &key(), None).expect("bind");
    tokio::time::timeout(
        PROMPTLY,
        client.connect_with_tcp_fallback(addr, policy, &Tuning::client()),
    )
    .await
    .expect("dial ends")
}

#[tokio::test]
async fn quic_is_used_when_it_answers() {
    let identity = key();
    let (addr, _keep) = server(&identity, true).await;
    let conn = dial(addr, PeerPolicy::Key(identity.public()))
        .await
        .expect("connect");
    assert_eq!(conn.kind(), ConnKind::Quic);
    assert_eq!(conn.peer_key(), identity.public());
}

#[tokio::test]
async fn tcp_is_used_when_udp_gets_no_answer() {
    let identity = key();
    let (addr, _keep) = server(&identity, false).await;
    let conn = dial(addr, PeerPolicy::Key(identity.public()))
        .await
        .expect("connect");
    assert_eq!(conn.kind(), ConnKind::Tcp);
    assert_eq!(conn.peer_key(), identity.public());
}

#[tokio::test]
async fn a_wrong_key_over_tcp_is_an_identity_error_not_a_retry() {
    let identity = key();
    let (addr, _keep) = server(&identity, false).await;
    let expected = key().public();
    let error = dial(addr, PeerPolicy::Key(expected))
        .await
        .expect_err("must refuse");
    assert!(
        matches!(
            error,
            ConnectError::PeerIdentity(IdentityError::WrongKey { .. })
        ),
        "{error}"
    );
}
