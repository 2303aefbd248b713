//! Requests the server must refuse get the RFC 8656 error codes, and a retransmitted
//! Allocate gets the same answer instead of a second allocation.

mod turn_support;

use nat::turn::wire::{self, TurnAttribute};
use stun_codec::rfc5766::attributes::{Lifetime, RequestedTransport};
use stun_codec::rfc5766::methods::{ALLOCATE, CREATE_PERMISSION, REFRESH};
use stun_codec::rfc8656::attributes::{AddressFamily, RequestedAddressFamily};
use turn_support::{World, addr, credentials_for, raw, test_config};

fn code(
    w: &mut World,
    from: &str,
    user: &str,
    method: stun_codec::Method,
    id: u8,
    attrs: Vec<TurnAttribute>,
) -> Option<u16> {
    let from = addr(from);
    let c = credentials_for(user);
    let nonce = raw::nonce(w, from);
    let req = raw::signed(method, id, attrs, &c.username, &c.password, &nonce);
    let reply = raw::exchange(w, from, &req).expect("answered");
    wire::error_code(&reply)
}

#[test]
fn allocate_without_requested_transport_is_a_bad_request() {
    let mut w = World::new(test_config());
    assert_eq!(
        code(&mut w, "192.0.2.1:1", "a", ALLOCATE, 1, vec![]),
        Some(400)
    );
}

#[test]
fn tcp_relaying_is_unsupported() {
    let mut w = World::new(test_config());
    let attrs = vec![RequestedTransport::new(6).into()];
    assert_eq!(
        code(&mut w, "192.0.2.1:1", "a", ALLOCATE, 1, attrs),
        Some(442)
    );
}

#[test]
fn ipv6_relayed_addresses_are_unsupported() {
    let mut w = World::new(test_config());
    let attrs = vec![
        RequestedTransport::new(17).into(),
        RequestedAddressFamily::new(AddressFamily::V6).into(),
    ];
    assert_eq!(
        code(&mut w, "192.0.2.1:1", "a", ALLOCATE, 1, attrs),
        Some(440)
    );
}

#[test]
fn refresh_and_permission_without_allocation_are_mismatches() {
    let mut w = World::new(test_config());
    let refresh = vec![Lifetime::from_u32(600).into()];
    assert_eq!(
        code(&mut w, "192.0.2.1:1", "a", REFRESH, 1, refresh),
        Some(437)
    );
    let perm =
        vec![stun_codec::rfc5766::attributes::XorPeerAddress::new(addr("203.0.113.1:1")).into()];
    assert_eq!(
        code(&mut w, "192.0.2.1:1", "a", CREATE_PERMISSION, 2, perm),
        Some(437)
    );
}

#[test]
fn another_user_cannot_touch_an_allocation() {
    let mut w = World::new(test_config());
    let alloc = vec![RequestedTransport::new(17).into()];
    assert_eq!(
        code(&mut w, "192.0.2.1:1", "alice", ALLOCATE, 1, alloc),
        None
    );
    let refresh = vec![Lifetime::from_u32(600).into()];
    assert_eq!(
        code(&mut w, "192.0.2.1:1", "bob", REFRESH, 2, refresh),
        Some(441)
    );
    assert_eq!(w.server.stats().allocations, 1);
}

#[test]
fn retransmitted_allocate_gets_the_same_answer() {
    let mut w = World::new(test_config());
    let from = addr("192.0.2.1:1");
    let c = credentials_for("alice");
    let nonce = raw::nonce(&mut w, from);
    let req = raw::signed(
        ALLOCATE,
        1,
        vec![RequestedTransport::new(17).into()],
        &c.username,
        &c.password,
        &nonce,
    );
    w.raw_to_server(from, &req);
    let first = w.raw_inbox.pop_back().expect("answered").1;
    w.raw_to_server(from, &req);
    let second = w.raw_inbox.pop_back().expect("answered again").1;
    assert_eq!(first, second);
    assert_eq!(w.server.stats().allocations, 1);
    // A new transaction from the same 5-tuple is a mismatch.
    let again = raw::signed(
        ALLOCATE,
        2,
        vec![RequestedTransport::new(17).into()],
        &c.username,
        &c.password,
        &nonce,
    );
    let reply = raw::exchange(&mut w, from, &again).expect("answered");
    assert_eq!(wire::error_code(&reply), Some(437));
}
