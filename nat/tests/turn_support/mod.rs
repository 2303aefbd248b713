//! A virtual-time world for TURN tests: one `TurnServer`, its simulated shell (relay ports
//! that open instantly), `TurnClient`s, and raw peers, all exchanging datagrams without
//! sockets or a clock.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nat::turn::client::{ClientConfig, ClientEvent, TurnClient};
use nat::turn::credentials;
use nat::turn::server::{AllocationId, ServerCommand, ServerConfig, TurnServer};

pub const SECRET: &[u8] = b"test-shared-secret";
pub const REALM: &str = "peerphone.test";
pub const EPOCH_UNIX: u64 = 1_800_000_000;

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

pub fn server_addr() -> SocketAddr {
    addr("198.51.100.1:3478")
}

/// A config that lets the relay reach the documentation range the peers live in.
pub fn test_config() -> ServerConfig {
    let mut config = ServerConfig::new(REALM, SECRET.to_vec());
    config.peer_policy = nat::turn::PeerPolicy::new(
        vec!["203.0.113.0/24".parse().expect("cidr")],
        vec![server_addr().ip()],
    );
    config
}

/// A datagram a peer received from a relay port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDatagram {
    pub from_relay: SocketAddr,
    pub to_peer: SocketAddr,
    pub payload: Vec<u8>,
}

pub struct World {
    pub now: Instant,
    pub server: TurnServer,
    pub relay_ports: BTreeMap<AllocationId, SocketAddr>,
    pub closed_ports: Vec<AllocationId>,
    pub clients: Vec<(SocketAddr, TurnClient)>,
    pub client_events: Vec<Vec<ClientEvent>>,
    /// Raw datagrams the server sent to addresses that are not `TurnClient`s.
    pub raw_inbox: VecDeque<(SocketAddr, Vec<u8>)>,
    pub peer_inbox: VecDeque<PeerDatagram>,
    /// When set, the next this-many client transmits are lost.
    pub drop_client_transmits: usize,
    /// When true, relay ports fail to open.
    pub fail_port_open: bool,
    next_port: u16,
}

impl World {
    pub fn new(config: ServerConfig) -> Self {
        let now = Instant::now();
        let server = TurnServer::new(config, now, EPOCH_UNIX, [7; 32]).expect("valid config");
        Self {
            now,
            server,
            relay_ports: BTreeMap::new(),
            closed_ports: Vec::new(),
            clients: Vec::new(),
            client_events: Vec::new(),
            raw_inbox: VecDeque::new(),
            peer_inbox: VecDeque::new(),
            drop_client_transmits: 0,
            fail_port_open: false,
            next_port: 49152,
        }
    }

    pub fn now_unix(&self) -> u64 {
        EPOCH_UNIX
    }

    /// Adds a client with credentials minted for `user`; returns its index.
    pub fn add_client(&mut self, local: SocketAddr, user: &str) -> usize {
        let c = credentials::mint(SECRET, user, EPOCH_UNIX, 86_400);
        self.add_client_with(local, &c.username, &c.password)
    }

    pub fn add_client_with(&mut self, local: SocketAddr, username: &str, password: &str) -> usize {
        let config = ClientConfig::new(server_addr(), username, password);
        let seed = [self.clients.len() as u8 + 1; 32];
        self.clients.push((local, TurnClient::new(config, seed)));
        self.client_events.push(Vec::new());
        self.clients.len() - 1
    }

    pub fn client(&mut self, i: usize) -> &mut TurnClient {
        &mut self.clients[i].1
    }

    /// Runs until no datagram is in flight.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                while let Some(t) = self.clients[i].1.poll_transmit() {
                    moved = true;
                    assert_eq!(t.destination, server_addr());
                    if self.drop_client_transmits > 0 {
                        self.drop_client_transmits -= 1;
                        continue;
                    }
                    let from = self.clients[i].0;
                    self.server
                        .handle_listen_datagram(self.now, from, &t.payload);
                }
                while let Some(e) = self.clients[i].1.poll_event() {
                    self.client_events[i].push(e);
                }
            }
            while let Some(cmd) = self.server.poll_command() {
                moved = true;
                self.command(cmd);
            }
            if !moved {
                return;
            }
        }
        panic!("the world never went quiet");
    }

    fn command(&mut self, cmd: ServerCommand) {
        match cmd {
            ServerCommand::OpenRelayPort {
                allocation,
                even_port,
            } => {
                if self.fail_port_open {
                    self.server.handle_relay_port_failed(self.now, allocation);
                    return;
                }
                self.next_port += 1;
                if even_port && self.next_port % 2 == 1 {
                    self.next_port += 1;
                }
                let relay = SocketAddr::new(server_addr().ip(), self.next_port);
                self.relay_ports.insert(allocation, relay);
                self.server
                    .handle_relay_port_opened(self.now, allocation, relay);
            }
            ServerCommand::CloseRelayPort { allocation } => {
                self.relay_ports.remove(&allocation);
                self.closed_ports.push(allocation);
            }
            ServerCommand::SendFromListen { to, payload } => {
                if let Some(i) = self.clients.iter().position(|(a, _)| *a == to) {
                    let now = self.now;
                    let consumed = self.clients[i]
                        .1
                        .handle_datagram(now, server_addr(), &payload);
                    assert!(consumed, "client ignored a datagram from its server");
                } else {
                    self.raw_inbox.push_back((to, payload));
                }
            }
            ServerCommand::SendFromRelay {
                allocation,
                to,
                payload,
            } => {
                let from_relay = self.relay_ports[&allocation];
                self.peer_inbox.push_back(PeerDatagram {
                    from_relay,
                    to_peer: to,
                    payload,
                });
            }
        }
    }

    /// A peer sends `payload` to a relayed address.
    pub fn peer_sends(&mut self, peer: SocketAddr, relay: SocketAddr, payload: &[u8]) {
        let allocation = self
            .relay_ports
            .iter()
            .find(|(_, a)| **a == relay)
            .map(|(id, _)| *id);
        if let Some(id) = allocation {
            self.server
                .handle_relay_datagram(self.now, id, peer, payload);
        }
        self.pump();
    }

    /// A raw datagram to the server's listening socket.
    pub fn raw_to_server(&mut self, from: SocketAddr, payload: &[u8]) {
        self.server.handle_listen_datagram(self.now, from, payload);
        self.pump();
    }

    /// Advances virtual time by `by`, firing every timer on the way.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            let next = self
                .clients
                .iter()
                .filter_map(|(_, c)| c.poll_timeout())
                .chain(self.server.poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for (_, c) in &mut self.clients {
                        c.handle_timeout(now);
                    }
                    self.server.handle_timeout(now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
        self.pump();
    }

    pub fn events(&mut self, i: usize) -> Vec<ClientEvent> {
        std::mem::take(&mut self.client_events[i])
    }

    /// Allocates for client `i` and returns the relayed address.
    pub fn allocated(&mut self, i: usize) -> SocketAddr {
        let now = self.now;
        self.client(i).allocate(now).expect("allocate starts");
        self.pump();
        let events = self.events(i);
        match events.as_slice() {
            [ClientEvent::Allocated { relayed, .. }] => *relayed,
            other => panic!("expected Allocated, got {other:?}"),
        }
    }

    /// Takes what peers received.
    pub fn peer_received(&mut self) -> Vec<PeerDatagram> {
        self.peer_inbox.drain(..).collect()
    }
}

/// Hand-built requests, for cases `TurnClient` never produces.
pub mod raw {
    use super::*;
    use nat::turn::wire::{self, TurnAttribute, TurnDatagram, TurnMessage};
    use stun_codec::rfc5389::attributes::{Nonce, Realm, Software, Username};
    use stun_codec::{MessageClass, Method, TransactionId};

    pub fn decode(bytes: &[u8]) -> TurnMessage {
        match wire::decode_datagram(bytes).expect("server sent valid TURN") {
            TurnDatagram::Stun(m) => m.into_message(),
            TurnDatagram::ChannelData { .. } => panic!("expected STUN"),
        }
    }

    /// Sends an unauthenticated request and returns the server's NONCE.
    pub fn nonce(w: &mut World, from: SocketAddr) -> Nonce {
        let mut m = TurnMessage::new(
            MessageClass::Request,
            stun_codec::rfc5766::methods::ALLOCATE,
            TransactionId::new([9; 12]),
        );
        // Long enough that the challenge may be larger than a bare header.
        m.add_attribute(Software::new("x".repeat(120)).expect("software"));
        let bytes = wire::encode_stun(m, None).expect("encodes");
        w.raw_to_server(from, &bytes);
        let (_, reply) = w.raw_inbox.pop_back().expect("challenge");
        decode(&reply)
            .get_attribute::<Nonce>()
            .cloned()
            .expect("challenge carries NONCE")
    }

    /// An authenticated request of `method` with `attributes`, signed for `user`.
    pub fn signed(
        method: Method,
        id: u8,
        attributes: Vec<TurnAttribute>,
        username: &str,
        password: &str,
        nonce: &Nonce,
    ) -> Vec<u8> {
        let mut m = TurnMessage::new(MessageClass::Request, method, TransactionId::new([id; 12]));
        for a in attributes {
            m.add_attribute(a);
        }
        let username = Username::new(username.to_owned()).expect("username");
        let realm = Realm::new(REALM.to_owned()).expect("realm");
        m.add_attribute(username.clone());
        m.add_attribute(realm.clone());
        m.add_attribute(nonce.clone());
        let key = nat::stun::IntegrityKey::long_term(username.name(), realm.text(), password);
        wire::encode_stun(m, Some(&key)).expect("encodes")
    }

    /// Sends `bytes` from `from` and returns the single reply.
    pub fn exchange(w: &mut World, from: SocketAddr, bytes: &[u8]) -> Option<TurnMessage> {
        w.raw_to_server(from, bytes);
        w.raw_inbox.pop_back().map(|(_, b)| decode(&b))
    }
}

/// Credentials for `user` valid for a day from the world's epoch.
pub fn credentials_for(user: &str) -> credentials::TurnCredentials {
    credentials::mint(SECRET, user, EPOCH_UNIX, 86_400)
}
