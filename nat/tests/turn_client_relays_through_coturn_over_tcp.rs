//! `nat::turn::client` in stream mode against a real coturn (`turnserver`, Debian package
//! coturn) listening on TCP only: allocate over the TCP connection, bind a channel, relay
//! odd-sized datagrams both ways to a UDP peer (the padding of ChannelData on a stream must
//! match coturn's). Skipped, with a message, when `turnserver` is not installed.

mod coturn_support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nat::turn::client::{ClientConfig, ClientEvent, TurnClient};
use nat::turn::credentials;

use coturn_support::{Coturn, Listen};

const SECRET: &str = "coturn-tcp-test-secret";
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
            coturn.log_text()
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
    if !coturn_support::installed() {
        eprintln!("SKIPPED: `turnserver` (Debian package coturn) is not installed");
        return;
    }
    let coturn = Coturn::start(SECRET, Listen::Tcp);
    let server = coturn.addr;
    let log = || coturn.log_text();
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
