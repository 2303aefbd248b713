//! `nat::turn::client` in stream mode against a real coturn (`turnserver`, Debian package
//! coturn) listening on TCP only: allocate over the TCP connection, bind a channel, relay
//! odd-sized datagrams both ways to a UDP peer (the padding of ChannelData on a stream must
//! match coturn's). Skipped, with a message, when `turnserver` is not installed.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nat::turn::client::{ClientConfig, ClientEvent, TurnClient};
use nat::turn::credentials;

const SECRET: &str = "coturn-tcp-test-secret";
const REALM: &str = "peerphone.test";

fn which(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
}

/// Kills coturn when the test ends, whatever happens.
struct Coturn {
    child: Child,
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_coturn() -> (Coturn, SocketAddr) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let min_port = 20_000 + (port % 20_000);
    let log = dir.path().join("turn.log");
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--listening-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            "--relay-ip=127.0.0.1",
            &format!("--min-port={min_port}"),
            &format!("--max-port={}", min_port + 200),
            "--use-auth-secret",
            &format!("--static-auth-secret={SECRET}"),
            &format!("--realm={REALM}"),
            "--allow-loopback-peers",
            "--no-tls",
            "--no-dtls",
            "--no-udp",
            "--no-cli",
            "--simple-log",
            &format!("--log-file={}", log.display()),
            &format!("--pidfile={}", dir.path().join("turn.pid").display()),
            &format!("--userdb={}", dir.path().join("turndb").display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver starts");
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    (
        Coturn {
            child,
            _dir: dir,
            log,
        },
        server,
    )
}

/// Connects once coturn listens (it takes a moment to open its sockets).
fn connect(server: SocketAddr, coturn: &Coturn) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(stream) = TcpStream::connect(server) {
            return stream;
        }
        assert!(
            Instant::now() < deadline,
            "coturn did not listen within 15 s; log:\n{}",
            std::fs::read_to_string(&coturn.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `client` on `stream` until `done` accepts an event or 10 s pass.
fn drive(
    client: &mut TurnClient,
    stream: &mut TcpStream,
    done: impl Fn(&ClientEvent) -> bool,
) -> Option<ClientEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut buf = [0u8; 1500];
    loop {
        while let Some(t) = client.poll_transmit() {
            stream.write_all(&t.payload).expect("write");
        }
        while let Some(e) = client.poll_event() {
            if done(&e) {
                return Some(e);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => client
                .handle_stream_bytes(Instant::now(), &buf[..n])
                .expect("coturn frames its stream"),
            Err(_) => client.handle_timeout(Instant::now()),
        }
    }
}

#[test]
fn stream_client_relays_through_coturn_over_tcp() {
    if !which("turnserver") {
        eprintln!("SKIPPED: `turnserver` (Debian package coturn) is not installed");
        return;
    }
    let (coturn, server) = start_coturn();
    let log = || std::fs::read_to_string(&coturn.log).unwrap_or_default();
    let mut stream = connect(server, &coturn);
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let creds = credentials::mint(SECRET.as_bytes(), "alice", now_unix, 600);
    let mut client = TurnClient::new(
        ClientConfig::new(server, creds.username, creds.password).over_stream(),
        [9; 32],
    );
    client.allocate(Instant::now()).expect("idle");
    let allocated = drive(&mut client, &mut stream, |e| {
        matches!(
            e,
            ClientEvent::Allocated { .. } | ClientEvent::AllocationFailed(_)
        )
    });
    let Some(ClientEvent::Allocated { relayed, .. }) = allocated else {
        panic!("no allocation over TCP: {allocated:?}\n{}", log());
    };
    assert_eq!(relayed.ip(), server.ip());

    let peer = UdpSocket::bind("127.0.0.1:0").expect("peer socket");
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let peer_addr = peer.local_addr().expect("addr");
    client
        .bind_channel(Instant::now(), peer_addr)
        .expect("allocated");
    let bound = drive(&mut client, &mut stream, |e| {
        matches!(
            e,
            ClientEvent::ChannelBound { .. } | ClientEvent::ChannelBindFailed { .. }
        )
    });
    assert!(
        matches!(bound, Some(ClientEvent::ChannelBound { .. })),
        "{bound:?}\n{}",
        log()
    );
    let mut buf = [0u8; 1500];
    for len in [1usize, 2, 3, 5, 160, 161, 1201] {
        let media: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
        client.send_to(peer_addr, &media).expect("allocated");
        while let Some(t) = client.poll_transmit() {
            stream.write_all(&t.payload).expect("write");
        }
        let (n, from) = peer.recv_from(&mut buf).expect("peer receives");
        assert_eq!((from, &buf[..n]), (relayed, &media[..]), "{}", log());
        peer.send_to(&media, relayed).expect("send");
        let got = drive(&mut client, &mut stream, |e| {
            matches!(e, ClientEvent::Data { .. })
        });
        assert_eq!(
            got,
            Some(ClientEvent::Data {
                peer: peer_addr,
                payload: media
            }),
            "{}",
            log()
        );
    }
}
