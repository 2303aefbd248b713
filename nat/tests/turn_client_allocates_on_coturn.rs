//! `nat::turn::client` against a real coturn (`turnserver`, Debian package coturn) on
//! loopback with REST-API shared-secret auth: allocate, bind a channel, relay both ways.
//! Skipped, with a message, when `turnserver` is not installed.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nat::turn::client::{ClientConfig, ClientEvent, TurnClient};
use nat::turn::credentials;

const SECRET: &str = "coturn-test-secret";
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

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start_coturn() -> (Coturn, SocketAddr) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_udp_port();
    // A relay range unlikely to collide with other tests: derived from the listen port.
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
            "--no-tcp",
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
    let coturn = Coturn {
        child,
        _dir: dir,
        log,
    };
    wait_until_answering(server, &coturn.log);
    (coturn, server)
}

/// Sends STUN Binding requests until coturn answers (it takes a moment to open sockets).
fn wait_until_answering(server: SocketAddr, log: &Path) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let request = nat::stun::encode(
        nat::stun::binding_request(nat::stun::TransactionId::new([1; 12])),
        None,
        false,
    )
    .expect("encodes");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let _ = socket.send_to(&request, server);
        if socket.recv_from(&mut buf).is_ok() {
            return;
        }
    }
    panic!(
        "coturn did not answer within 15 s; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Runs `client` on `socket` until `done` accepts an event or the timeout passes.
fn drive(
    client: &mut TurnClient,
    socket: &UdpSocket,
    events: &mut Vec<ClientEvent>,
    timeout: Duration,
    done: impl Fn(&ClientEvent) -> bool,
) -> Option<ClientEvent> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    loop {
        while let Some(t) = client.poll_transmit() {
            socket.send_to(&t.payload, t.destination).expect("send");
        }
        while let Some(e) = client.poll_event() {
            if done(&e) {
                return Some(e);
            }
            events.push(e);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let wake = client.poll_timeout().unwrap_or(deadline).min(deadline);
        let wait = wake
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        socket.set_read_timeout(Some(wait)).expect("timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                client.handle_datagram(Instant::now(), from, &buf[..n]);
            }
            Err(_) => client.handle_timeout(Instant::now()),
        }
    }
}

#[test]
fn turn_client_relays_through_coturn() {
    if !which("turnserver") {
        eprintln!("SKIPPED: `turnserver` (Debian package coturn) is not installed");
        return;
    }
    let (coturn, server) = start_coturn();
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let creds = credentials::mint(SECRET.as_bytes(), "alice", now_unix, 600);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    let mut client = TurnClient::new(
        ClientConfig::new(server, creds.username, creds.password),
        [42; 32],
    );
    let peer = UdpSocket::bind("127.0.0.1:0").expect("peer socket");
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let peer_addr = peer.local_addr().expect("addr");
    let mut events = Vec::new();
    let log = || std::fs::read_to_string(&coturn.log).unwrap_or_default();

    client.allocate(Instant::now()).expect("starts");
    let allocated = drive(
        &mut client,
        &socket,
        &mut events,
        Duration::from_secs(10),
        |e| !matches!(e, ClientEvent::Refreshed { .. }),
    );
    let Some(ClientEvent::Allocated {
        relayed, mapped, ..
    }) = allocated
    else {
        panic!("no allocation: {allocated:?} {events:?}\n{}", log());
    };
    assert_eq!(relayed.ip(), server.ip());
    assert_eq!(mapped, Some(socket.local_addr().expect("addr")));

    // Send indication path, with a permission only.
    client
        .create_permission(Instant::now(), peer_addr.ip())
        .expect("allocated");
    let created = drive(
        &mut client,
        &socket,
        &mut events,
        Duration::from_secs(5),
        |e| {
            matches!(
                e,
                ClientEvent::PermissionCreated { .. } | ClientEvent::PermissionFailed { .. }
            )
        },
    );
    assert!(
        matches!(created, Some(ClientEvent::PermissionCreated { .. })),
        "{created:?}\n{}",
        log()
    );
    client
        .send_to(peer_addr, b"via send indication")
        .expect("allocated");
    drive(
        &mut client,
        &socket,
        &mut events,
        Duration::from_millis(10),
        |_| false,
    );
    let mut buf = [0u8; 1500];
    let (n, from) = peer.recv_from(&mut buf).expect("peer receives");
    assert_eq!(&buf[..n], b"via send indication");
    assert_eq!(from, relayed);

    // Data indication back (no channel yet).
    peer.send_to(b"via data indication", relayed)
        .expect("peer sends");
    let data = drive(
        &mut client,
        &socket,
        &mut events,
        Duration::from_secs(5),
        |e| matches!(e, ClientEvent::Data { .. }),
    );
    assert_eq!(
        data,
        Some(ClientEvent::Data {
            peer: peer_addr,
            payload: b"via data indication".to_vec()
        })
    );

    // Channel path both ways.
    let channel = client
        .bind_channel(Instant::now(), peer_addr)
        .expect("allocated");
    let bound = drive(
        &mut client,
        &socket,
        &mut events,
        Duration::from_secs(5),
        |e| {
            matches!(
                e,
                ClientEvent::ChannelBound { .. } | ClientEvent::ChannelBindFailed { .. }
            )
        },
    );
    assert_eq!(
        bound,
        Some(ClientEvent::ChannelBound {
            peer: peer_addr,
            channel
        })
    );
    for i in 0..20u8 {
        client.send_to(peer_addr, &[i; 100]).expect("allocated");
    }
    drive(
        &mut client,
        &socket,
        &mut events,
        Duration::from_millis(10),
        |_| false,
    );
    for i in 0..20u8 {
        let (n, from) = peer.recv_from(&mut buf).expect("peer receives");
        assert_eq!(from, relayed);
        assert_eq!(&buf[..n], &[i; 100][..]);
    }
    peer.send_to(b"over the channel", relayed)
        .expect("peer sends");
    let data = drive(
        &mut client,
        &socket,
        &mut events,
        Duration::from_secs(5),
        |e| matches!(e, ClientEvent::Data { .. }),
    );
    assert_eq!(
        data,
        Some(ClientEvent::Data {
            peer: peer_addr,
            payload: b"over the channel".to_vec()
        })
    );

    client.release(Instant::now()).expect("allocated");
    let released = drive(
        &mut client,
        &socket,
        &mut events,
        Duration::from_secs(5),
        |e| matches!(e, ClientEvent::Released),
    );
    assert_eq!(released, Some(ClientEvent::Released));
}
