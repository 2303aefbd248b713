//! Allocate through the 401 nonce exchange, keep the allocation alive by refreshing,
//! release it, and let the server expire an abandoned one.

mod turn_support;

use std::time::Duration;

use nat::turn::client::{ClientError, ClientEvent};
use turn_support::{World, addr, server_addr, test_config};

#[test]
fn client_allocates_after_the_nonce_challenge() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    let relayed = w.allocated(c);
    assert_eq!(relayed.ip(), server_addr().ip());
    assert_eq!(w.client(c).relayed_addr(), Some(relayed));
    assert_eq!(w.client(c).mapped_addr(), Some(addr("192.0.2.10:5000")));
    assert_eq!(w.server.stats().allocations, 1);
    assert_eq!(w.server.stats().allocations_granted, 1);
    // Exactly one challenge: the unauthenticated first try.
    assert_eq!(w.server.stats().auth_failures, 1);
}

#[test]
fn allocation_survives_an_hour_by_refreshing() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    w.allocated(c);
    w.advance(Duration::from_secs(3600));
    let refreshes = w
        .events(c)
        .iter()
        .filter(|e| matches!(e, ClientEvent::Refreshed { .. }))
        .count();
    // 600 s lifetime refreshed at three quarters: every 450 s.
    assert_eq!(refreshes, 8);
    assert_eq!(w.server.stats().allocations, 1);
    assert!(w.closed_ports.is_empty());
}

#[test]
fn release_closes_the_relay_port() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    w.allocated(c);
    let now = w.now;
    w.client(c).release(now).expect("allocated");
    w.pump();
    assert_eq!(w.events(c), vec![ClientEvent::Released]);
    assert_eq!(w.server.stats().allocations, 0);
    assert_eq!(w.closed_ports.len(), 1);
    assert!(w.relay_ports.is_empty());
}

#[test]
fn server_expires_an_allocation_nobody_refreshes() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    w.allocated(c);
    // The client vanishes: its datagrams no longer arrive.
    w.drop_client_transmits = usize::MAX;
    w.advance(Duration::from_secs(599));
    assert_eq!(w.server.stats().allocations, 1);
    w.advance(Duration::from_secs(3));
    assert_eq!(w.server.stats().allocations, 0);
    assert_eq!(w.closed_ports.len(), 1);
}

#[test]
fn lost_requests_are_retransmitted() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    w.drop_client_transmits = 2;
    let now = w.now;
    w.client(c).allocate(now).expect("starts");
    w.pump();
    assert!(w.events(c).is_empty());
    w.advance(Duration::from_secs(2));
    assert!(matches!(
        w.events(c).as_slice(),
        [ClientEvent::Allocated { .. }]
    ));
}

#[test]
fn unanswered_allocate_fails_with_timeout() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    w.drop_client_transmits = usize::MAX;
    let now = w.now;
    w.client(c).allocate(now).expect("starts");
    w.advance(Duration::from_secs(30));
    assert!(w.events(c).is_empty(), "gave up too early");
    w.advance(Duration::from_secs(20));
    assert_eq!(
        w.events(c),
        vec![ClientEvent::AllocationFailed(ClientError::Timeout)]
    );
}

#[test]
fn relay_port_failure_answers_insufficient_capacity() {
    let mut w = World::new(test_config());
    w.fail_port_open = true;
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    let now = w.now;
    w.client(c).allocate(now).expect("starts");
    w.pump();
    assert!(matches!(
        w.events(c).as_slice(),
        [ClientEvent::AllocationFailed(ClientError::Rejected {
            code: 508,
            ..
        })]
    ));
    assert_eq!(w.server.stats().allocations, 0);
}

#[test]
fn second_allocate_from_the_same_address_is_a_mismatch() {
    let mut w = World::new(test_config());
    let a = w.add_client(addr("192.0.2.10:5000"), "alice");
    w.allocated(a);
    // A second client object on the same 5-tuple.
    let b = w.add_client(addr("192.0.2.10:5000"), "alice");
    let now = w.now;
    w.client(b).allocate(now).expect("starts");
    w.pump();
    // Responses go to the first client object registered for the address; it ignores
    // unknown transactions, so look at the server: still one allocation.
    assert_eq!(w.server.stats().allocations, 1);
}
