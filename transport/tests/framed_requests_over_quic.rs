//! Framed request/response over QUIC, and a server that survives misbehaving streams.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use transport::{Conn, Endpoint, FrameIoError, FrameLimits, PeerPolicy, ServerOptions, Tuning};

struct Fixture {
    server: Endpoint,
    events: tokio::sync::mpsc::Receiver<ServerEvent>,
    server_key: proto::PublicKey,
}

fn fixture(limits: FrameLimits) -> Fixture {
    let identity = key();
    let server =
        Endpoint::bind(loopback(), &identity, Some(ServerOptions::default())).expect("bind server");
    let accepting = server.clone();
    let events = serve(limits, move || {
        let endpoint = accepting.clone();
        async move { endpoint.accept().await }
    });
    Fixture {
        server,
        events,
        server_key: identity.public(),
    }
}

async fn dial(fixture: &Fixture) -> Conn {
    let client = Endpoint::bind(loopback(), &key(), None).expect("bind client");
    client
        .connect(
            fixture.server.local_addr().expect("addr"),
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
async fn requests_and_streams_of_responses_round_trip() {
    let fixture = fixture(FrameLimits::default());
    let conn = dial(&fixture).await;
    assert_eq!(echo(&conn, "hello").await, Response::Echo("hello".into()));
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

    // Many requests in parallel on one connection.
    let replies = futures_join(&conn, 50).await;
    assert_eq!(
        replies,
        (0..50)
            .map(|i| Response::Echo(i.to_string()))
            .collect::<Vec<_>>()
    );
}

async fn futures_join(conn: &Conn, n: usize) -> Vec<Response> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move { echo(&conn, &i.to_string()).await })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn an_oversized_length_prefix_closes_that_stream_and_the_server_keeps_serving() {
    let mut fixture = fixture(FrameLimits::new(1024));
    let conn = dial(&fixture).await;
    assert!(matches!(
        next_event(&mut fixture.events).await,
        ServerEvent::Connected(_)
    ));

    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    send.write_all(&u32::MAX.to_be_bytes())
        .await
        .expect("write header");
    match next_event(&mut fixture.events).await {
        ServerEvent::StreamFailed(FrameIoError::TooLarge { max: 1024, .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    // The server gave up on that stream: the client reads its end without any response.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PROMPTLY, recv.read_to_end(&mut rest))
        .await
        .expect("stream must end");
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");

    // Same connection, new stream; and a brand new connection: both served.
    assert_eq!(
        echo(&conn, "still here").await,
        Response::Echo("still here".into())
    );
    let other = dial(&fixture).await;
    assert_eq!(
        echo(&other, "me too").await,
        Response::Echo("me too".into())
    );
}

#[tokio::test]
async fn a_peer_that_stalls_mid_frame_is_dropped() {
    let limits = FrameLimits {
        max_len: 1024,
        mid_frame_timeout: Duration::from_millis(300),
        ..FrameLimits::default()
    };
    let mut fixture = fixture(limits);
    let conn = dial(&fixture).await;
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
    match next_event(&mut fixture.events).await {
        ServerEvent::StreamFailed(FrameIoError::Stalled(_)) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(echo(&conn, "next").await, Response::Echo("next".into()));
}

#[tokio::test]
async fn a_request_the_server_never_answers_times_out_with_a_typed_error() {
    let identity = key();
    let server =
        Endpoint::bind(loopback(), &identity, Some(ServerOptions::default())).expect("bind server");
    let accepting = server.clone();
    // Accepts connections and streams, reads the request, and never answers.
    tokio::spawn(async move {
        let incoming = accepting.accept().await.expect("incoming");
        let conn = incoming.complete().await.expect("handshake");
        let mut held = Vec::new();
        while let Ok((send, mut recv)) = conn.accept_bi().await {
            let mut request = Vec::new();
            let _ = recv.read_to_end(&mut request).await;
            held.push((send, recv));
        }
    });
    let client = Endpoint::bind(loopback(), &key(), None).expect("bind client");
    let conn = client
        .connect(
            server.local_addr().expect("addr"),
            PeerPolicy::Key(identity.public()),
            &Tuning::client(),
        )
        .await
        .expect("connect");
    let response_timeout = Duration::from_millis(300);
    let limits = FrameLimits {
        response_timeout,
        ..FrameLimits::default()
    };
    let result = tokio::time::timeout(
        PROMPTLY,
        transport::request::<_, Response>(&conn, &Request::Echo("hello?".into()), limits),
    )
    .await
    .expect("request() must give up by itself");
    match result {
        Err(transport::RequestError::TimedOut(after)) => assert_eq!(after, response_timeout),
        other => panic!("expected a response timeout, got {other:?}"),
    }
    assert_eq!(
        FrameLimits::default().response_timeout,
        Duration::from_secs(30)
    );
}
