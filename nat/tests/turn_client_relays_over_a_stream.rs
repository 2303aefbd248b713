//! The TURN client over a byte stream (TCP/TLS to the server, RFC 8656 §3.1) against the
//! server core: the stream is cut into random read sizes, ChannelData arrives padded,
//! requests are sent once, and a closed connection takes its allocation with it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nat::turn::client::{ClientConfig, ClientEvent, TurnClient, TurnTransport};
use nat::turn::credentials;
use nat::turn::server::{ServerCommand, ServerConfig, TurnServer};
use nat::turn::stream::{StreamDecoder, pad_for_stream};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};

const SECRET: &[u8] = b"stream-secret";
const EPOCH_UNIX: u64 = 1_800_000_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// One client on one "TCP connection" to the server core, with a peer on the relay.
struct Link {
    now: Instant,
    server: TurnServer,
    client: TurnClient,
    /// The connection's remote address as the server sees it.
    conn: SocketAddr,
    server_framer: StreamDecoder,
    to_server: VecDeque<u8>,
    to_client: VecDeque<u8>,
    relay: Option<(nat::turn::server::AllocationId, SocketAddr)>,
    closed: Vec<nat::turn::server::AllocationId>,
    peer_got: Vec<(SocketAddr, Vec<u8>)>,
    rng: StdRng,
    client_sends: usize,
}

impl Link {
    fn new() -> Self {
        let now = Instant::now();
        let mut config = ServerConfig::new("test", SECRET.to_vec());
        config.peer_policy =
            nat::turn::PeerPolicy::new(vec!["203.0.113.0/24".parse().expect("cidr")], vec![]);
        let server = TurnServer::new(config, now, EPOCH_UNIX, [1; 32]).expect("config");
        let creds = credentials::mint(SECRET, "alice", EPOCH_UNIX, 600);
        let server_addr = addr("198.51.100.1:3478");
        let client_config =
            ClientConfig::new(server_addr, creds.username, creds.password).over_stream();
        assert_eq!(client_config.transport, TurnTransport::Stream);
        Self {
            now,
            server,
            client: TurnClient::new(client_config, [2; 32]),
            conn: addr("192.0.2.10:40000"),
            server_framer: StreamDecoder::new(4096),
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            relay: None,
            closed: Vec::new(),
            peer_got: Vec::new(),
            rng: StdRng::seed_from_u64(7),
            client_sends: 0,
        }
    }

    /// Moves bytes both ways in random chunk sizes until nothing is left.
    fn pump(&mut self) -> Vec<ClientEvent> {
        let mut events = Vec::new();
        loop {
            while let Some(t) = self.client.poll_transmit() {
                assert_eq!(t.payload.len() % 4, 0, "stream messages are 4-byte aligned");
                self.client_sends += 1;
                self.to_server.extend(t.payload);
            }
            let mut moved = false;
            if !self.to_server.is_empty() {
                let n = self.rng.random_range(1..=self.to_server.len().min(97));
                let chunk: Vec<u8> = self.to_server.drain(..n).collect();
                let mut frames = Vec::new();
                self.server_framer
                    .decode(&chunk, |f| frames.push(f.to_vec()))
                    .expect("client frames its stream");
                for f in frames {
                    self.server.handle_listen_datagram(self.now, self.conn, &f);
                }
                moved = true;
            }
            self.server_commands();
            if !self.to_client.is_empty() {
                let n = self.rng.random_range(1..=self.to_client.len().min(97));
                let chunk: Vec<u8> = self.to_client.drain(..n).collect();
                self.client
                    .handle_stream_bytes(self.now, &chunk)
                    .expect("server frames its stream");
                moved = true;
            }
            events.extend(std::iter::from_fn(|| self.client.poll_event()));
            if !moved {
                return events;
            }
        }
    }

    fn server_commands(&mut self) {
        while let Some(command) = self.server.poll_command() {
            match command {
                ServerCommand::SendFromListen { to, mut payload } => {
                    assert_eq!(to, self.conn);
                    pad_for_stream(&mut payload);
                    self.to_client.extend(payload);
                }
                ServerCommand::OpenRelayPort { allocation, .. } => {
                    let relayed = addr("198.51.100.1:50000");
                    self.relay = Some((allocation, relayed));
                    self.server
                        .handle_relay_port_opened(self.now, allocation, relayed);
                }
                ServerCommand::SendFromRelay { to, payload, .. } => {
                    self.peer_got.push((to, payload));
                }
                ServerCommand::CloseRelayPort { allocation } => self.closed.push(allocation),
            }
        }
    }
}

#[test]
fn a_stream_client_allocates_binds_a_channel_and_relays_both_ways() {
    let mut link = Link::new();
    let now = link.now;
    link.client.allocate(now).expect("idle");
    let events = link.pump();
    let Some(ClientEvent::Allocated { relayed, .. }) = events.first() else {
        panic!("no allocation: {events:?}");
    };
    let relayed = *relayed;
    assert_eq!(Some(relayed), link.relay.map(|r| r.1));

    let peer = addr("203.0.113.5:7000");
    let channel = link.client.bind_channel(now, peer).expect("allocated");
    assert_eq!(
        link.pump(),
        vec![ClientEvent::ChannelBound { peer, channel }]
    );
    // Odd lengths make the padding matter in both directions.
    for len in [1usize, 5, 7, 160, 1203] {
        let media: Vec<u8> = (0..len).map(|i| i as u8).collect();
        link.client.send_to(peer, &media).expect("allocated");
        link.pump();
        assert_eq!(link.peer_got.pop(), Some((peer, media.clone())));
        let (allocation, _) = link.relay.expect("open");
        link.server
            .handle_relay_datagram(now, allocation, peer, &media);
        link.server_commands();
        assert_eq!(
            link.pump(),
            vec![ClientEvent::Data {
                peer,
                payload: media
            }]
        );
    }
}

#[test]
fn a_stream_client_sends_each_request_once_and_times_out_after_39_5_s() {
    let mut link = Link::new();
    let now = link.now;
    link.client.allocate(now).expect("idle");
    // The server never reads: only the first send leaves.
    let first = link.client.poll_transmit().expect("allocate");
    assert_eq!(first.payload.len() % 4, 0);
    let deadline = link.client.poll_timeout().expect("a timeout");
    assert_eq!(deadline - now, Duration::from_millis(39_500));
    link.client.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(
        link.client.poll_transmit(),
        None,
        "no retransmission on a stream"
    );
    link.client.handle_timeout(deadline);
    assert_eq!(link.client.poll_transmit(), None);
    assert!(matches!(
        link.client.poll_event(),
        Some(ClientEvent::AllocationFailed(_))
    ));
}

#[test]
fn a_closed_connection_frees_its_allocation_and_a_broken_stream_is_reported() {
    let mut link = Link::new();
    let now = link.now;
    link.client.allocate(now).expect("idle");
    link.pump();
    let (allocation, _) = link.relay.expect("allocated");
    assert_eq!(link.server.stats().allocations, 1);
    link.server.handle_client_gone(now, link.conn);
    link.server_commands();
    assert_eq!(link.closed, vec![allocation]);
    assert_eq!(link.server.stats().allocations, 0);

    // Bytes that frame as nothing TURN knows break the client's stream for good.
    assert!(
        link.client
            .handle_stream_bytes(now, &[0xFF, 0, 0, 0])
            .is_err()
    );
    let valid_header = [0x40, 0x00, 0x00, 0x00];
    assert!(link.client.handle_stream_bytes(now, &valid_header).is_err());
    let mut udp = TurnClient::new(
        ClientConfig::new(addr("198.51.100.1:3478"), "u", "p"),
        [0; 32],
    );
    assert!(
        udp.handle_stream_bytes(now, &valid_header).is_err(),
        "not a stream client"
    );
}
