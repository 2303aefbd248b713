//! One TCP port shared by the TLS session and another protocol: each accepted connection is
//! sorted by its first bytes in its own task; TLS completes as usual, the claimed protocol
//! gets its stream untouched, anything else is closed, and a silent client only costs its
//! own task until the handshake timeout.

mod common;

use common::{key, loopback};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use transport::{PeerPolicy, ServerOptions, SortError, Sorted, TcpListener, Tuning};

/// Stands in for TURN: claims connections that start with "TURN".
fn claim(prefix: &[u8]) -> Option<bool> {
    let wanted = b"TURN";
    let n = prefix.len().min(wanted.len());
    if prefix[..n] != wanted[..n] {
        Some(false)
    } else if n < wanted.len() {
        None
    } else {
        Some(true)
    }
}

const WAIT: Duration = Duration::from_secs(10);

async fn listener(handshake_timeout: Duration) -> (TcpListener, proto::PublicKey) {
    let identity = key();
    let mut options = ServerOptions::default();
    options.tuning.handshake_timeout = handshake_timeout;
    let listener = TcpListener::bind(loopback(), &identity, options)
        .await
        .expect("bind");
    (listener, identity.public())
}

/// Accepts forever, sorting each connection in its own task; reports every outcome.
fn serve(listener: TcpListener) -> tokio::sync::mpsc::Receiver<Result<&'static str, SortError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(incoming) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome = match incoming.sort_by_first_bytes(claim).await {
                    Ok(Sorted::Tls(incoming)) => {
                        let conn = incoming.complete().await.expect("TLS handshake");
                        let (mut send, mut recv) = conn.accept_bi().await.expect("stream");
                        let mut byte = [0u8; 1];
                        recv.read_exact(&mut byte).await.expect("read");
                        send.write_all(&byte).await.expect("echo");
                        send.flush().await.expect("flush");
                        // Keep the connection until the client has read the echo.
                        let _ = recv.read(&mut byte).await;
                        Ok("tls")
                    }
                    Ok(Sorted::Claimed { mut stream, .. }) => {
                        let mut all = [0u8; 6];
                        stream.read_exact(&mut all).await.expect("read");
                        assert_eq!(&all, b"TURN!?", "nothing was consumed by the sorting");
                        stream.write_all(b"ok").await.expect("answer");
                        Ok("claimed")
                    }
                    Err(error) => Err(error),
                };
                let _ = tx.send(outcome).await;
            });
        }
    });
    rx
}

async fn tls_echo(addr: std::net::SocketAddr, server: proto::PublicKey) {
    let conn = transport::connect_tcp(addr, &key(), PeerPolicy::Key(server), &Tuning::client())
        .await
        .expect("TLS over the shared port");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(&[42]).await.expect("write");
    send.flush().await.expect("flush");
    let mut byte = [0u8; 1];
    tokio::time::timeout(WAIT, recv.read_exact(&mut byte))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(byte, [42]);
}

#[tokio::test]
async fn tls_and_a_claimed_protocol_share_a_port_and_garbage_is_closed() {
    let (listener, server) = listener(Duration::from_secs(10)).await;
    let addr = listener.local_addr().expect("addr");
    let mut outcomes = serve(listener);

    tls_echo(addr, server).await;

    // The claimed protocol's prefix arrives in two pieces.
    let mut claimed = TcpStream::connect(addr).await.expect("connect");
    claimed.write_all(b"TU").await.expect("write");
    tokio::task::yield_now().await;
    claimed.write_all(b"RN!?").await.expect("write");
    let mut answer = [0u8; 2];
    tokio::time::timeout(WAIT, claimed.read_exact(&mut answer))
        .await
        .expect("answer in time")
        .expect("answer");
    assert_eq!(&answer, b"ok");

    let mut garbage = TcpStream::connect(addr).await.expect("connect");
    garbage
        .write_all(b"GET / HTTP/1.1\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, garbage.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");

    let mut seen = Vec::new();
    for _ in 0..3 {
        let outcome = tokio::time::timeout(WAIT, outcomes.recv())
            .await
            .expect("outcome in time")
            .expect("server running");
        seen.push(match outcome {
            Ok(kind) => kind.to_string(),
            Err(SortError::Unrecognised) => "unrecognised".to_string(),
            Err(other) => format!("unexpected: {other}"),
        });
    }
    seen.sort();
    assert_eq!(seen, ["claimed", "tls", "unrecognised"]);
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_others_and_is_dropped_at_the_handshake_timeout() {
    let (listener, server) = listener(Duration::from_millis(2000)).await;
    let addr = listener.local_addr().expect("addr");
    let mut outcomes = serve(listener);

    let mut silent = TcpStream::connect(addr).await.expect("connect");
    // A lone 0x16 could still become TLS: the sorter must wait, not decide.
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(&[0x16]).await.expect("write");

    tls_echo(addr, server).await;
    let first = tokio::time::timeout(WAIT, outcomes.recv())
        .await
        .expect("outcome in time")
        .expect("server running");
    assert!(
        matches!(first, Ok("tls")),
        "the TLS client was served first: {first:?}"
    );

    for _ in 0..2 {
        let outcome = tokio::time::timeout(WAIT, outcomes.recv())
            .await
            .expect("outcome in time")
            .expect("server running");
        assert!(matches!(outcome, Err(SortError::TimedOut)), "{outcome:?}");
    }
    let mut buf = [0u8; 1];
    for stream in [&mut silent, &mut half] {
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
    }
}
