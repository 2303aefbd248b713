//! Plain simultaneous UDP hole punching between two clients behind lab NATs: each learns
//! its mapped address from a public reflector, both send to the other's mapped address at
//! once, and each answers wherever the other's datagrams really come from. It must work
//! between endpoint-independent mappings and fail where a symmetric NAT meets a filter that
//! depends on the port. Root only (prints SKIP otherwise).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lab::agent::{Agent, SocketId};
use lab::{Behind, Lab, NatKind};
use support::{ANSWER_TIMEOUT, Reflector, agent_binary};

const ROUNDS: u32 = 12;
const ROUND_WAIT: Duration = Duration::from_millis(300);

struct Peer {
    agent: Agent,
    sock: SocketId,
    target: SocketAddr,
    heard_from_peer: bool,
}

impl Peer {
    /// Receives everything that arrives within `wait`; a datagram from the peer moves the
    /// target to its real source (a peer-reflexive address, as ICE learns it).
    fn listen(&mut self, wait: Duration, reflector_ip: std::net::IpAddr) {
        let mut left = wait;
        let start = std::time::Instant::now();
        while let Some((from, data)) = self.agent.recv(self.sock, left).expect("recv") {
            if from.ip() != reflector_ip && data == "punch" {
                self.target = from;
                self.heard_from_peer = true;
            }
            left = wait.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
        }
    }
}

fn punch(a: Behind, b: Behind) -> bool {
    let mut lab = Lab::new("punch").expect("lab");
    let reflector = Reflector::start(&mut lab);
    let reflector_ip = reflector.addr(0).ip();
    let alice = lab.client("alice", a).expect("alice");
    let bob = lab.client("bob", b).expect("bob");
    let mut peers = [&alice, &bob].map(|client| {
        let mut agent = Agent::start(&client.host, agent_binary()).expect("agent");
        let (sock, _) = agent
            .bind("0.0.0.0:0".parse().expect("addr"))
            .expect("bind");
        let mapped = agent
            .reflect_via(sock, reflector.addr(0), 3, ANSWER_TIMEOUT)
            .expect("reflect")
            .expect("reflector answers")
            .seen_from;
        Peer {
            agent,
            sock,
            target: mapped,
            heard_from_peer: false,
        }
    });
    // Exchange mapped addresses, as the supernodes would.
    let (alice_mapped, bob_mapped) = (peers[0].target, peers[1].target);
    peers[0].target = bob_mapped;
    peers[1].target = alice_mapped;
    for _ in 0..ROUNDS {
        for peer in peers.iter_mut() {
            peer.agent
                .send(peer.sock, peer.target, "punch")
                .expect("send");
        }
        for peer in peers.iter_mut() {
            peer.listen(ROUND_WAIT, reflector_ip);
        }
        if peers.iter().all(|p| p.heard_from_peer) {
            break;
        }
    }
    let worked = peers.iter().all(|p| p.heard_from_peer);
    eprintln!("punch {a:?} + {b:?}: {worked}");
    drop(peers);
    lab.teardown().expect("teardown");
    worked
}

#[test]
fn punching_works_between_full_cones() {
    if !lab::require_root("udp_hole_punching::full_cones") {
        return;
    }
    assert!(punch(
        Behind::Nat(NatKind::FullCone),
        Behind::Nat(NatKind::FullCone)
    ));
}

#[test]
fn punching_works_between_port_restricted_cones() {
    if !lab::require_root("udp_hole_punching::port_restricted") {
        return;
    }
    assert!(punch(
        Behind::Nat(NatKind::PortRestricted),
        Behind::Nat(NatKind::PortRestricted)
    ));
}

#[test]
fn punching_works_from_symmetric_to_address_restricted() {
    if !lab::require_root("udp_hole_punching::symmetric_to_address_restricted") {
        return;
    }
    assert!(punch(
        Behind::Nat(NatKind::Symmetric),
        Behind::Nat(NatKind::AddressRestricted)
    ));
}

#[test]
fn punching_fails_between_symmetric_nats() {
    if !lab::require_root("udp_hole_punching::symmetric") {
        return;
    }
    assert!(!punch(
        Behind::Nat(NatKind::Symmetric),
        Behind::Nat(NatKind::Symmetric)
    ));
}

#[test]
fn punching_fails_from_symmetric_to_port_restricted() {
    if !lab::require_root("udp_hole_punching::symmetric_to_port_restricted") {
        return;
    }
    assert!(!punch(
        Behind::Nat(NatKind::Symmetric),
        Behind::Nat(NatKind::PortRestricted)
    ));
}

#[test]
fn punching_works_from_double_nat_to_port_restricted() {
    if !lab::require_root("udp_hole_punching::double_nat") {
        return;
    }
    let double = Behind::DoubleNat {
        outer: NatKind::PortRestricted,
        inner: NatKind::PortRestricted,
    };
    assert!(punch(double, Behind::Nat(NatKind::PortRestricted)));
}
