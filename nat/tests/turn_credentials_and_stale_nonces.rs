//! Long-term credentials with time-limited REST-style usernames: wrong or expired
//! credentials fail, stale nonces are renewed transparently, responses are signed.

mod turn_support;

use std::time::Duration;

use nat::turn::client::{ClientError, ClientEvent};
use nat::turn::credentials;
use nat::turn::wire::TurnAttribute;
use stun_codec::rfc5389::attributes::Nonce;
use stun_codec::rfc5766::attributes::RequestedTransport;
use stun_codec::rfc5766::methods::ALLOCATE;
use turn_support::{EPOCH_UNIX, SECRET, World, addr, raw, test_config};

#[test]
fn wrong_password_is_refused() {
    let mut w = World::new(test_config());
    let good = credentials::mint(SECRET, "alice", EPOCH_UNIX, 600);
    let c = w.add_client_with(addr("192.0.2.10:5000"), &good.username, "not-the-password");
    let now = w.now;
    w.client(c).allocate(now).expect("starts");
    w.pump();
    assert_eq!(
        w.events(c),
        vec![ClientEvent::AllocationFailed(ClientError::Unauthorized)]
    );
    assert_eq!(w.server.stats().allocations, 0);
}

#[test]
fn credentials_minted_with_another_secret_are_refused() {
    let mut w = World::new(test_config());
    let forged = credentials::mint(b"guessed", "alice", EPOCH_UNIX, 600);
    let c = w.add_client_with(addr("192.0.2.10:5000"), &forged.username, &forged.password);
    let now = w.now;
    w.client(c).allocate(now).expect("starts");
    w.pump();
    assert_eq!(
        w.events(c),
        vec![ClientEvent::AllocationFailed(ClientError::Unauthorized)]
    );
}

#[test]
fn expired_credentials_are_refused() {
    let mut w = World::new(test_config());
    let old = credentials::mint(SECRET, "alice", EPOCH_UNIX - 7200, 3600);
    let c = w.add_client_with(addr("192.0.2.10:5000"), &old.username, &old.password);
    let now = w.now;
    w.client(c).allocate(now).expect("starts");
    w.pump();
    assert_eq!(
        w.events(c),
        vec![ClientEvent::AllocationFailed(ClientError::Unauthorized)]
    );
}

#[test]
fn stale_nonce_is_renewed_without_the_application_noticing() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    w.allocated(c);
    // The nonce from the challenge at 0 s expires at 600 s (the server's nonce lifetime).
    w.advance(Duration::from_secs(700));
    assert!(
        w.events(c)
            .iter()
            .all(|e| matches!(e, ClientEvent::Refreshed { .. }))
    );
    let failures_before = w.server.stats().auth_failures;
    let peer = addr("203.0.113.5:1").ip();
    let now = w.now;
    w.client(c).create_permission(now, peer).expect("allocated");
    w.pump();
    assert_eq!(w.events(c), vec![ClientEvent::PermissionCreated { peer }]);
    assert_eq!(
        w.server.stats().auth_failures,
        failures_before + 1,
        "exactly one 438, then success"
    );
}

#[test]
fn nonce_from_another_address_is_stale() {
    let mut w = World::new(test_config());
    let c = credentials::mint(SECRET, "bob", EPOCH_UNIX, 600);
    let nonce = raw::nonce(&mut w, addr("192.0.2.20:6000"));
    let req = raw::signed(
        ALLOCATE,
        1,
        vec![TurnAttribute::from(RequestedTransport::new(17))],
        &c.username,
        &c.password,
        &nonce,
    );
    let reply = raw::exchange(&mut w, addr("192.0.2.99:6000"), &req).expect("answered");
    assert_eq!(nat::turn::wire::error_code(&reply), Some(438));
    assert!(reply.get_attribute::<Nonce>().is_some());
}

#[test]
fn successful_responses_carry_message_integrity() {
    let mut w = World::new(test_config());
    let from = addr("192.0.2.20:6000");
    let c = credentials::mint(SECRET, "bob", EPOCH_UNIX, 600);
    let nonce = raw::nonce(&mut w, from);
    let req = raw::signed(
        ALLOCATE,
        1,
        vec![TurnAttribute::from(RequestedTransport::new(17))],
        &c.username,
        &c.password,
        &nonce,
    );
    w.raw_to_server(from, &req);
    let (_, reply) = w.raw_inbox.pop_back().expect("answered");
    let decoded = nat::stun::decode(&reply).expect("valid STUN");
    assert_eq!(
        decoded.message().class(),
        stun_codec::MessageClass::SuccessResponse
    );
    let key = nat::stun::IntegrityKey::long_term(&c.username, turn_support::REALM, &c.password);
    assert_eq!(decoded.verify_integrity(&key), Ok(()));
    let wrong = nat::stun::IntegrityKey::long_term(&c.username, turn_support::REALM, "nope");
    assert!(decoded.verify_integrity(&wrong).is_err());
}

#[test]
fn credentials_verify_like_coturn_rest_api() {
    let c = credentials::mint(b"north", "carol", 1_700_000_000, 3600);
    assert_eq!(c.username, "1700003600:carol");
    let v = credentials::verify(b"north", &c.username, &c.password, 1_700_000_100).expect("valid");
    assert_eq!(v.user, "carol");
}
