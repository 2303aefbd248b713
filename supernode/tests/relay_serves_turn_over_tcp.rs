//! TURN over TCP on the relay's port, for clients whose UDP is blocked: a `nat::turn` client
//! in stream mode allocates and relays both ways to a UDP peer, and coturn's standard
//! client (`turnutils_uclient -t`) relays through it without loss (skipped, with a message,
//! when the coturn tools are not installed).

mod turn_stream_support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nat::turn::client::{ClientConfig, ClientEvent, TurnClient};
use nat::turn::credentials;
use supernode::relay::{RelayConfig, TcpRelayServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

const SECRET: &[u8] = b"tcp-relay-test-secret";

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

async fn start(ports: std::ops::RangeInclusive<u16>, secret: &[u8]) -> TcpRelayServer {
    let mut config = RelayConfig::new("127.0.0.1:0".parse().expect("addr"), secret);
    config.relay_ports = ports;
    config.allow_relay_to = vec!["127.0.0.0/8".parse().expect("cidr")];
    TcpRelayServer::start(config).await.expect("relay starts")
}

/// Drives `client` on `stream` until `done` accepts an event (returned) or 10 s pass,
/// with 7-byte reads: messages arrive cut across reads.
async fn drive(
    client: &mut TurnClient,
    stream: &mut TcpStream,
    done: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    turn_stream_support::drive(client, stream, 7, Duration::from_secs(10), done).await
}

#[tokio::test]
async fn a_stream_client_relays_both_ways_and_its_allocation_ends_with_the_connection() {
    let relay = start(53000..=53099, SECRET).await;
    let server = relay.listen_addr();
    let creds = credentials::mint(SECRET, "alice", now_unix(), 600);
    let mut client = TurnClient::new(
        ClientConfig::new(server, creds.username, creds.password).over_stream(),
        rand::random(),
    );
    let mut stream = TcpStream::connect(server).await.expect("connects");
    client.allocate(Instant::now()).expect("idle");
    let ClientEvent::Allocated { relayed, .. } = drive(&mut client, &mut stream, |e| {
        matches!(
            e,
            ClientEvent::Allocated { .. } | ClientEvent::AllocationFailed(_)
        )
    })
    .await
    else {
        panic!("allocation failed");
    };
    assert!((53000..=53099).contains(&relayed.port()), "{relayed}");

    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer socket");
    let peer_addr = peer.local_addr().expect("addr");
    client
        .bind_channel(Instant::now(), peer_addr)
        .expect("allocated");
    drive(&mut client, &mut stream, |e| {
        matches!(e, ClientEvent::ChannelBound { .. })
    })
    .await;

    let mut buf = vec![0u8; 2048];
    for len in [1usize, 3, 161, 1201] {
        let media: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        client.send_to(peer_addr, &media).expect("allocated");
        while let Some(t) = client.poll_transmit() {
            stream.write_all(&t.payload).await.expect("write");
        }
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .expect("the peer gets the datagram")
            .expect("recv");
        assert_eq!((from, &buf[..n]), (relayed, &media[..]));
        peer.send_to(&media, relayed).await.expect("send");
        let got = drive(&mut client, &mut stream, |e| {
            matches!(e, ClientEvent::Data { .. })
        })
        .await;
        assert_eq!(
            got,
            ClientEvent::Data {
                peer: peer_addr,
                payload: media
            }
        );
    }

    // Closing the connection frees the allocation: its relay port is closed.
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::UdpSocket::bind(relayed).is_err() {
        assert!(
            Instant::now() < deadline,
            "relay port {relayed} still open 5 s after the connection closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn a_frame_longer_than_the_limit_or_of_no_known_kind_closes_the_connection() {
    let relay = start(53200..=53209, SECRET).await;
    for garbage in [
        // ChannelData announcing 20,000 bytes: refused from its header.
        vec![0x40, 0x00, 0x4E, 0x20],
        // Neither STUN nor ChannelData (a TLS record would start 0x16 and frame as STUN).
        vec![0xC0, 0x00, 0x00, 0x04],
    ] {
        let mut stream = TcpStream::connect(relay.listen_addr())
            .await
            .expect("connects");
        stream.write_all(&garbage).await.expect("write");
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the relay closes the connection at once");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "closed, not answered: {read:?}"
        );
    }
    relay.shutdown().await;
}

/// What a port shared by the TLS session and TURN needs: peek at the first 8 bytes of each
/// accepted connection and hand TURN to the relay, the rest elsewhere.
#[tokio::test]
async fn a_shared_port_hands_turn_connections_to_the_relay_and_keeps_the_rest() {
    let relay = start(53300..=53309, SECRET).await;
    let shared = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = shared.local_addr().expect("addr");
    let demux = async move {
        loop {
            let (mut stream, remote) = shared.accept().await.expect("accept");
            let mut prefix = [0u8; 8];
            let verdict = loop {
                let n = stream.peek(&mut prefix).await.expect("peek");
                match nat::turn::stream::starts_like_turn(&prefix[..n]) {
                    Some(verdict) => break verdict,
                    None => tokio::task::yield_now().await,
                }
            };
            if verdict {
                assert!(relay.serve_stream(stream, remote).await, "relay running");
            } else {
                // Stands in for the TLS session: it sees its bytes unread.
                let mut first = [0u8; 1];
                stream.read_exact(&mut first).await.expect("read");
                stream.write_all(&first).await.expect("echo");
            }
        }
    };
    let demux = tokio::spawn(demux);

    let mut other = TcpStream::connect(port).await.expect("connects");
    other
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .await
        .expect("write");
    let mut echoed = [0u8; 1];
    other.read_exact(&mut echoed).await.expect("answer");
    assert_eq!(
        echoed,
        [0x16],
        "the non-TURN side got the connection untouched"
    );

    let creds = credentials::mint(SECRET, "carol", now_unix(), 600);
    let mut client = TurnClient::new(
        ClientConfig::new(port, creds.username, creds.password).over_stream(),
        rand::random(),
    );
    let mut stream = TcpStream::connect(port).await.expect("connects");
    client.allocate(Instant::now()).expect("idle");
    let allocated = drive(&mut client, &mut stream, |e| {
        matches!(
            e,
            ClientEvent::Allocated { .. } | ClientEvent::AllocationFailed(_)
        )
    })
    .await;
    assert!(
        matches!(allocated, ClientEvent::Allocated { .. }),
        "{allocated:?}"
    );
    demux.abort();
}

fn which(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
}

/// Kills a helper process when the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnutils_uclient_relays_over_tcp_without_loss() {
    if !which("turnutils_uclient") || !which("turnutils_peer") {
        eprintln!(
            "SKIPPED: turnutils_uclient/turnutils_peer (Debian package coturn) not installed"
        );
        return;
    }
    let secret = "uclient-tcp-secret";
    let relay = start(53100..=53199, secret.as_bytes()).await;
    let server = relay.listen_addr();
    let peer_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a: SocketAddr| a.port())
        .expect("a free port");
    let _peer = Reaped(
        Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer starts"),
    );
    let (clients, messages) = (2u64, 40u64);
    let uclient = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args([
                "60",
                "turnutils_uclient",
                "-t",
                "-p",
                &server.port().to_string(),
                "-e",
                "127.0.0.1",
                "-r",
                &peer_port.to_string(),
                "-W",
                secret,
                "-u",
                "uclient",
                "-c",
                "-m",
                &clients.to_string(),
                "-n",
                &messages.to_string(),
                "-l",
                "161",
                "127.0.0.1",
            ])
            .output()
            .expect("turnutils_uclient runs")
    });
    let output = tokio::time::timeout(Duration::from_secs(90), uclient)
        .await
        .expect("uclient finishes")
        .expect("blocking task");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "uclient failed:\n{text}");
    let lost = text
        .lines()
        .find(|l| l.contains("Total lost packets"))
        .and_then(|l| l.split("Total lost packets").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(lost, Some(0), "loss reported:\n{text}");
    let received = text
        .lines()
        .rev()
        .find(|l| l.contains("tot_recv_msgs=") && !l.contains("msz="))
        .and_then(|l| l.split("tot_recv_msgs=").nth(1))
        .and_then(|a| a.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(received, Some(clients * messages), "{text}");
    relay.shutdown().await;
}
