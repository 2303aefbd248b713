//! Drives a stream-mode `TurnClient` over a TCP connection to a supernode's relay, for the
//! TURN-over-TCP tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use nat::turn::client::{ClientEvent, TurnClient};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Runs `client` on `stream` until `done` accepts an event (returned); panics after
/// `within` or when the relay closes the connection. Reads at most `read_bytes` at a time
/// (a small size makes messages arrive cut across reads).
pub async fn drive(
    client: &mut TurnClient,
    stream: &mut TcpStream,
    read_bytes: usize,
    within: Duration,
    done: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; read_bytes];
    loop {
        while let Some(t) = client.poll_transmit() {
            stream.write_all(&t.payload).await.expect("write");
        }
        while let Some(e) = client.poll_event() {
            if done(&e) {
                return e;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no matching event within {within:?}"
        );
        let wait = client
            .poll_timeout()
            .map_or(Duration::from_millis(200), |at| {
                at.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_millis(200));
        if let Ok(read) = tokio::time::timeout(wait, stream.read(&mut buf)).await {
            let n = read.expect("read");
            assert!(n > 0, "the relay closed the TURN connection");
            client
                .handle_stream_bytes(Instant::now(), &buf[..n])
                .expect("the relay frames its stream");
        }
        client.handle_timeout(Instant::now());
    }
}
