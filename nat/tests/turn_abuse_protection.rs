//! The relay refuses internal peers, enforces quotas and bandwidth caps, and never lets an
//! unauthenticated request draw a larger or unbounded stream of answers.

mod turn_support;

use std::time::Duration;

use nat::turn::client::{ClientError, ClientEvent};
use nat::turn::server::ServerConfig;
use nat::turn::wire::{self, TurnMessage};
use stun_codec::rfc5389::attributes::Software;
use stun_codec::rfc5766::attributes::RequestedTransport;
use stun_codec::{MessageClass, TransactionId};
use turn_support::{REALM, SECRET, World, addr, server_addr, test_config};

fn permission_error(w: &mut World, c: usize, peer: &str) -> Option<u16> {
    let ip = addr(peer).ip();
    let now = w.now;
    w.client(c).create_permission(now, ip).expect("allocated");
    w.pump();
    match w.events(c).as_slice() {
        [ClientEvent::PermissionCreated { .. }] => None,
        [
            ClientEvent::PermissionFailed {
                error: ClientError::Rejected { code, .. },
                ..
            },
        ] => Some(*code),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn internal_and_own_addresses_are_forbidden_in_every_spelling() {
    let mut config = ServerConfig::new(REALM, SECRET.to_vec());
    config.peer_policy = nat::turn::PeerPolicy::new(vec![], vec![server_addr().ip()]);
    let mut w = World::new(config);
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    w.allocated(c);
    for peer in [
        "127.0.0.1:1",
        "10.0.0.1:1",
        "172.20.0.1:1",
        "192.168.0.1:1",
        "169.254.169.254:80",
        "100.64.0.1:1",
        "224.0.0.1:1",
        "0.0.0.0:1",
        "255.255.255.255:1",
        "198.51.100.1:1",
    ] {
        assert_eq!(permission_error(&mut w, c, peer), Some(403), "{peer}");
    }
    // IPv6 forms carrying internal IPv4 addresses cannot reach an IPv4 relay anyway (443),
    // and the policy itself refuses them (unit-tested in policy.rs).
    assert_eq!(
        permission_error(&mut w, c, "[::ffff:127.0.0.1]:1"),
        Some(443)
    );
    assert_eq!(permission_error(&mut w, c, "8.8.8.8:53"), None);
    assert!(w.server.stats().refused_peers >= 10);
}

#[test]
fn allowlist_opens_a_refused_range() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    w.allocated(c);
    assert_eq!(permission_error(&mut w, c, "203.0.113.77:1"), None);
    assert_eq!(permission_error(&mut w, c, "192.0.2.77:1"), Some(403));
}

#[test]
fn send_indication_to_a_forbidden_peer_is_dropped() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    w.allocated(c);
    w.client(c)
        .send_to(addr("127.0.0.1:22"), b"attack")
        .expect("allocated");
    w.pump();
    assert!(w.peer_received().is_empty());
    assert_eq!(w.server.stats().refused_peers, 1);
}

#[test]
fn per_user_quota_answers_486() {
    let mut config = test_config();
    config.max_allocations_per_user = 2;
    let mut w = World::new(config);
    for port in [5000, 5001] {
        let c = w.add_client(addr(&format!("192.0.2.10:{port}")), "alice");
        w.allocated(c);
    }
    let third = w.add_client(addr("192.0.2.10:5002"), "alice");
    let now = w.now;
    w.client(third).allocate(now).expect("starts");
    w.pump();
    assert!(matches!(
        w.events(third).as_slice(),
        [ClientEvent::AllocationFailed(ClientError::Rejected {
            code: 486,
            ..
        })]
    ));
    // Another user is not affected.
    let bob = w.add_client(addr("192.0.2.11:5000"), "bob");
    w.allocated(bob);
}

#[test]
fn total_quota_answers_508() {
    let mut config = test_config();
    config.max_allocations_total = 3;
    let mut w = World::new(config);
    for i in 0..3 {
        let c = w.add_client(addr(&format!("192.0.2.{}:5000", 10 + i)), &format!("u{i}"));
        w.allocated(c);
    }
    let late = w.add_client(addr("192.0.2.50:5000"), "late");
    let now = w.now;
    w.client(late).allocate(now).expect("starts");
    w.pump();
    assert!(matches!(
        w.events(late).as_slice(),
        [ClientEvent::AllocationFailed(ClientError::Rejected {
            code: 508,
            ..
        })]
    ));
}

#[test]
fn bandwidth_cap_drops_what_exceeds_the_bucket() {
    let mut config = test_config();
    config.bandwidth_cap_bytes_per_s = 10_000;
    config.bandwidth_burst_bytes = 10_000;
    let mut w = World::new(config);
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    let relayed = w.allocated(c);
    let peer = addr("203.0.113.5:7000");
    let now = w.now;
    w.client(c).bind_channel(now, peer).expect("allocated");
    w.pump();
    let chunk = [0u8; 1000];
    for _ in 0..30 {
        w.client(c).send_to(peer, &chunk).expect("allocated");
    }
    w.pump();
    // The burst (10 kB) passes, the rest is dropped.
    assert_eq!(w.peer_received().len(), 10);
    assert_eq!(w.server.stats().dropped_bandwidth, 20);
    // One second later the bucket has refilled 10 kB, shared by both directions.
    w.advance(Duration::from_secs(1));
    for _ in 0..6 {
        w.peer_sends(peer, relayed, &chunk);
        w.client(c).send_to(peer, &chunk).expect("allocated");
    }
    w.pump();
    let delivered_to_peer = w.peer_received().len();
    let delivered_to_client = w
        .events(c)
        .iter()
        .filter(|e| matches!(e, ClientEvent::Data { .. }))
        .count();
    assert_eq!(delivered_to_peer + delivered_to_client, 10);
}

fn bare_allocate(id: u8, software_chars: usize) -> Vec<u8> {
    let mut m = TurnMessage::new(
        MessageClass::Request,
        stun_codec::rfc5766::methods::ALLOCATE,
        TransactionId::new([id; 12]),
    );
    m.add_attribute(RequestedTransport::new(17));
    if software_chars > 0 {
        m.add_attribute(Software::new("y".repeat(software_chars)).expect("software"));
    }
    nat::stun::encode(m, None, false).expect("encodes")
}

#[test]
fn unauthenticated_answers_are_never_larger_than_the_request() {
    let mut w = World::new(test_config());
    for chars in [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 100, 120] {
        let req = bare_allocate(1, chars);
        w.raw_to_server(addr("192.0.2.30:4000"), &req);
        if let Some((_, reply)) = w.raw_inbox.pop_back() {
            assert!(
                reply.len() <= req.len(),
                "{} byte answer to {} byte request",
                reply.len(),
                req.len()
            );
        }
    }
    // A request long enough gets the full challenge.
    let req = bare_allocate(2, 120);
    w.raw_to_server(addr("192.0.2.30:4000"), &req);
    let (_, reply) = w.raw_inbox.pop_back().expect("answered");
    let reply = turn_support::raw::decode(&reply);
    assert_eq!(wire::error_code(&reply), Some(401));
    // A 28-byte request draws nothing.
    let req = bare_allocate(3, 0);
    assert_eq!(req.len(), 28);
    w.raw_to_server(addr("192.0.2.30:4000"), &req);
    assert!(w.raw_inbox.is_empty());
}

#[test]
fn unauthenticated_answers_are_rate_limited() {
    let mut config = test_config();
    config.unauthenticated_responses_per_s = 10;
    config.unauthenticated_burst = 5;
    let mut w = World::new(config);
    let req = bare_allocate(1, 120);
    for _ in 0..100 {
        w.raw_to_server(addr("192.0.2.30:4000"), &req);
    }
    assert_eq!(w.raw_inbox.len(), 5);
    w.raw_inbox.clear();
    w.advance(Duration::from_secs(1));
    for _ in 0..100 {
        w.raw_to_server(addr("192.0.2.31:4000"), &req);
    }
    assert_eq!(w.raw_inbox.len(), 5, "refilled to the burst, no more");
    assert!(w.server.stats().unanswered_unauthenticated >= 190);
}

#[test]
fn garbage_on_the_listen_socket_is_counted_and_ignored() {
    let mut w = World::new(test_config());
    w.raw_to_server(addr("192.0.2.30:4000"), &[0xff; 64]);
    w.raw_to_server(addr("192.0.2.30:4000"), &[0x40, 0x00, 0xff, 0xff, 1, 2]);
    w.raw_to_server(addr("192.0.2.30:4000"), &[]);
    assert!(w.raw_inbox.is_empty());
    assert_eq!(w.server.stats().malformed, 3);
}
