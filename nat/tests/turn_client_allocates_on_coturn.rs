//! `nat::turn::client` against a real coturn (`turnserver`, Debian package coturn) on
//! loopback with REST-API shared-secret auth: allocate, bind a channel, relay both ways.
//! Skipped, with a message, when `turnserver` is not installed.

mod coturn_support;

use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nat::turn::client::{ClientConfig, ClientEvent, TurnClient};
use nat::turn::credentials;

use coturn_support::{Coturn, Listen};

const SECRET: &str = "coturn-test-secret";
/// Sends STUN Binding requests until coturn answers (it takes a moment to open sockets).
fn wait_until_answering(coturn: &Coturn) {
    let server = coturn.addr;
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
        coturn.log_text()
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
    if !coturn_support::installed() {
        eprintln!("SKIPPED: `turnserver` (Debian package coturn) is not installed");
        return;
    }
    let coturn = Coturn::start(SECRET, Listen::Udp);
    wait_until_answering(&coturn);
    let server = coturn.addr;
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
    let log = || coturn.log_text();

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
