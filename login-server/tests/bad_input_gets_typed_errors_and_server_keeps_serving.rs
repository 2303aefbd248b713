//! Malformed frames, oversized fields, unknown kinds, version mismatches, stalled clients
//! and connection floods get typed errors; the server keeps serving everyone else.

mod support;
use proto::login::{ClientToLogin, LoginError, LoginToClient, Role, StreamHello};
use std::time::Duration;
use support::*;

fn hello() -> Vec<u8> {
    proto::frame::encode(&StreamHello::new(Role::Client), 1024).expect("encode")
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn error_of(answer: &[u8]) -> LoginError {
    match decode_answer(answer) {
        LoginToClient::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_requests_get_typed_errors_and_closed_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), None);
    cfg.limits.request_read_timeout = Duration::from_millis(500);
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    let device = Device::new();
    let conn = raw_conn(&device, &server).await;

    // Unknown message kind.
    let mut bytes = hello();
    bytes.extend(framed(&[200, 1]));
    let answer = raw_exchange(&conn, &bytes).await;
    assert_eq!(error_of(&answer), LoginError::UnknownKind { kind: 200 });

    // Malformed body.
    let mut bytes = hello();
    bytes.extend(framed(&[0, 0xff, 0xff]));
    assert_eq!(
        error_of(&raw_exchange(&conn, &bytes).await),
        LoginError::Malformed
    );

    // Oversized frame announced: refused before the body is read.
    let mut bytes = hello();
    bytes.extend(u32::MAX.to_be_bytes());
    assert_eq!(
        error_of(&raw_exchange(&conn, &bytes).await),
        LoginError::TooLarge
    );

    // Oversized field (a sealed envelope far over the limit, inside a legal frame).
    let mut bytes = hello();
    let huge = vec![b'x'; 2000];
    bytes.extend(framed(
        &postcard::to_allocvec(&(1u8, "alice", String::from_utf8(huge).expect("utf8")))
            .expect("encode"),
    ));
    assert_eq!(
        error_of(&raw_exchange(&conn, &bytes).await),
        LoginError::Malformed
    );

    // Another protocol version.
    let mut bytes = proto::frame::encode(
        &StreamHello {
            protocol_version: 99,
            role: Role::Client,
        },
        1024,
    )
    .expect("encode");
    bytes.extend(framed(&[5]));
    assert_eq!(
        error_of(&raw_exchange(&conn, &bytes).await),
        LoginError::VersionMismatch {
            client: 99,
            server: proto::PROTOCOL_VERSION
        }
    );

    // A client that stalls mid-frame is answered with Timeout.
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        let mut bytes = hello();
        bytes.extend(100u32.to_be_bytes());
        bytes.extend([1, 2, 3]);
        send.write_all(&bytes).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(&mut answer))
            .await
            .expect("the server answers the stall")
            .expect("read");
        assert_eq!(error_of(&answer), LoginError::Timeout);
    }

    // The same connection, and the server, still serve proper requests.
    let answer = raw_exchange(&conn, &client_frames(&ClientToLogin::FetchDirectory)).await;
    assert!(matches!(
        decode_answer(&answer),
        LoginToClient::Directory(_)
    ));
    let other = Device::new().connect(&server).await;
    other
        .register(
            &user("grace"),
            &display("Grace"),
            &password("grace's password"),
        )
        .await
        .expect("others are served");
    server.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_connections_is_refused_beyond_the_limit_and_service_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), None);
    cfg.limits.max_connections = 8;
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    let mut held = Vec::new();
    let mut refused = 0;
    // QUIC only, so every attempt meets the limit on the same transport.
    for _ in 0..16 {
        let device = Device::new();
        let attempt = tokio::time::timeout(
            Duration::from_secs(15),
            device.endpoint.connect(
                server.quic_addr(),
                transport::PeerPolicy::Key(server.authority_key()),
                &transport::Tuning::client(),
            ),
        )
        .await;
        match attempt {
            Ok(Ok(conn)) => {
                let conn = login_server::client::LoginConnection::from_conn(conn);
                match conn.directory().await {
                    Ok(_) => held.push((device, conn)),
                    Err(_) => refused += 1,
                }
            }
            _ => refused += 1,
        }
    }
    assert!(held.len() <= 8, "{} connections held", held.len());
    assert!(refused >= 8, "{refused} refused");
    for (_, conn) in &held {
        conn.close();
    }
    drop(held);
    // Once the flood is gone, a new client is served.
    let mut served = false;
    for _ in 0..50 {
        let device = Device::new();
        if let Ok(conn) = login_server::client::LoginConnection::connect(
            &device.endpoint,
            server.quic_addr(),
            server.authority_key(),
        )
        .await
            && conn.directory().await.is_ok()
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the server serves again after the flood");
    server.shutdown().await;
}
