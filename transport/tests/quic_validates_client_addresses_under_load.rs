//! Under load, a QUIC server answers unvalidated clients with a Retry before they take a
//! connection slot, so spoofed Initials cannot fill the slots.

mod common;

use common::*;
use transport::{ConnectionLimiter, Endpoint, FrameLimits, PeerPolicy, ServerOptions, Tuning};

fn server(connections: ConnectionLimiter) -> (Endpoint, proto::PublicKey) {
    let identity = key();
    let options = ServerOptions {
        connections,
        ..ServerOptions::default()
    };
    let server = Endpoint::bind(loopback(), &identity, Some(options)).expect("bind");
    let _events = serve(FrameLimits::default(), {
        let server = server.clone();
        move || {
            let server = server.clone();
            async move { server.accept().await }
        }
    });
    (server, identity.public())
}

async fn dial_and_echo(server: &Endpoint, key_of_server: proto::PublicKey) -> transport::Conn {
    let conn = Endpoint::bind(loopback(), &key(), None)
        .expect("bind client")
        .connect(
            server.local_addr().expect("addr"),
            PeerPolicy::Key(key_of_server),
            &Tuning::client(),
        )
        .await
        .expect("connect");
    let response: Response = transport::request(
        &conn,
        &Request::Echo("validated".into()),
        FrameLimits::default(),
    )
    .await
    .expect("echo");
    assert_eq!(response, Response::Echo("validated".into()));
    conn
}

#[tokio::test]
async fn a_client_is_retried_then_served_when_validation_is_always_on() {
    let (server, server_key) = server(ConnectionLimiter::new(100).with_address_validation_above(0));
    let _conn = dial_and_echo(&server, server_key).await;
    assert_eq!(server.retries_sent(), 1);
}

#[tokio::test]
async fn an_idle_server_skips_the_retry_round_trip() {
    let (server, server_key) = server(ConnectionLimiter::default());
    let _conn = dial_and_echo(&server, server_key).await;
    assert_eq!(server.retries_sent(), 0);
}

#[tokio::test]
async fn retries_start_once_a_quarter_of_the_slots_are_taken() {
    let (server, server_key) = server(ConnectionLimiter::new(8));
    let _first = dial_and_echo(&server, server_key).await;
    let _second = dial_and_echo(&server, server_key).await;
    assert_eq!(server.retries_sent(), 0);
    let _third = dial_and_echo(&server, server_key).await;
    assert_eq!(server.retries_sent(), 1);
}
