//! Loopback latency of the transport: handshakes and request round trips over QUIC and
//! TLS-over-TCP, against plain TCP (no TLS, no multiplexing) as the baseline measured in
//! the same run. Prints a Markdown table.
//!
//! `cargo bench -p transport --bench loopback`

use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;
use transport::{Conn, Endpoint, FrameLimits, PeerPolicy, ServerOptions, TcpListener, Tuning};

const HANDSHAKES: usize = 200;
const REQUESTS: usize = 2000;

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99))
}

async fn serve_echo(conn: Conn) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            while let Ok(Some(message)) =
                transport::read_frame::<_, Vec<u8>>(&mut recv, 65536).await
            {
                if transport::write_frame(&mut send, &message).await.is_err() {
                    break;
                }
            }
            let _ = send.shutdown().await;
        });
    }
}

async fn requests(conn: &Conn) -> Vec<Duration> {
    let payload = vec![7u8; 64];
    let mut samples = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let start = Instant::now();
        let reply: Vec<u8> = transport::request(conn, &payload, FrameLimits::default())
            .await
            .expect("request");
        samples.push(start.elapsed());
        assert_eq!(reply.len(), payload.len());
    }
    samples
}

async fn plain_tcp() -> (Vec<Duration>, Vec<Duration>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut recv, mut send) = stream.split();
                while let Ok(Some(message)) =
                    transport::read_frame::<_, Vec<u8>>(&mut recv, 65536).await
                {
                    if transport::write_frame(&mut send, &message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut connects = Vec::new();
    for _ in 0..HANDSHAKES {
        let start = Instant::now();
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        connects.push(start.elapsed());
        drop(stream);
    }
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let payload = vec![7u8; 64];
    let mut rtts = Vec::new();
    for _ in 0..REQUESTS {
        let start = Instant::now();
        transport::write_frame(&mut stream, &payload)
            .await
            .expect("write");
        let reply: Vec<u8> = transport::read_frame(&mut stream, 65536)
            .await
            .expect("read")
            .expect("reply");
        rtts.push(start.elapsed());
        assert_eq!(reply.len(), payload.len());
    }
    (connects, rtts)
}

#[tokio::main]
async fn main() {
    let server_key = proto::SecretKey::generate();
    let client_key = proto::SecretKey::generate();
    let policy = PeerPolicy::Key(server_key.public());
    let tuning = Tuning::client();

    let quic_server = Endpoint::bind(
        "127.0.0.1:0".parse().expect("addr"),
        &server_key,
        Some(ServerOptions::default()),
    )
    .expect("bind");
    let quic_addr = quic_server.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Some(incoming) = quic_server.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.complete().await {
                    serve_echo(conn).await;
                }
            });
        }
    });
    let tcp_server = TcpListener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        &server_key,
        ServerOptions::default(),
    )
    .await
    .expect("bind");
    let tcp_addr = tcp_server.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Some(incoming) = tcp_server.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.complete().await {
                    serve_echo(conn).await;
                }
            });
        }
    });

    let client =
        Endpoint::bind("127.0.0.1:0".parse().expect("addr"), &client_key, None).expect("bind");
    let mut quic_handshakes = Vec::new();
    for _ in 0..HANDSHAKES {
        let start = Instant::now();
        let conn = client
            .connect(quic_addr, policy, &tuning)
            .await
            .expect("connect");
        quic_handshakes.push(start.elapsed());
        conn.close(0, "");
    }
    let mut tcp_handshakes = Vec::new();
    for _ in 0..HANDSHAKES {
        let start = Instant::now();
        let conn = transport::connect_tcp(tcp_addr, &client_key, policy, &tuning)
            .await
            .expect("connect");
        tcp_handshakes.push(start.elapsed());
        conn.close(0, "");
    }
    let quic_conn = client
        .connect(quic_addr, policy, &tuning)
        .await
        .expect("connect");
    let quic_rtts = requests(&quic_conn).await;
    let tcp_conn = transport::connect_tcp(tcp_addr, &client_key, policy, &tuning)
        .await
        .expect("connect");
    let tcp_rtts = requests(&tcp_conn).await;
    let (plain_connects, plain_rtts) = plain_tcp().await;

    println!(
        "| measurement (loopback, {HANDSHAKES} handshakes, {REQUESTS} requests of 64 B) | p50 ms | p99 ms |"
    );
    println!("| --- | ---: | ---: |");
    for (name, samples) in [
        ("baseline: plain TCP connect", plain_connects),
        (
            "QUIC handshake (mutual TLS 1.3, Ed25519 raw keys)",
            quic_handshakes,
        ),
        ("TCP + TLS 1.3 + yamux handshake", tcp_handshakes),
        (
            "baseline: plain TCP framed echo, one connection",
            plain_rtts,
        ),
        (
            "QUIC request (new stream, frame, finish, response)",
            quic_rtts,
        ),
        (
            "TCP+TLS+yamux request (new stream, frame, finish, response)",
            tcp_rtts,
        ),
    ] {
        let (p50, p99) = percentiles(samples);
        println!("| {name} | {p50:.3} | {p99:.3} |");
    }
}
