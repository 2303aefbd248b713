//! A supernode swaps the callee's key in everything the callee sends back: it re-seals the
//! answer under a credential it forged (the callee's name, its own key, signed by a key of
//! its own) and names its own key as the sending device in the routing fields. The caller
//! cannot open the answer, cannot tie it to an invited device, and still ends the call at
//! once as an identity failure, saying whose key failed, with no media keys.

mod call_sim;

use call_sim::{WALL, credential, user};
use client_core::call::{CallConfig, CallEvent, Calls};
use client_core::chat::DeviceCrypto;
use client_core::guard::is_forged;
use proto::peer::{MediaParams, PeerToPeer, open_peer_message, seal_peer_message};
use proto::{CallId, SecretKey};
use std::time::Instant;

#[test]
fn an_answer_under_a_swapped_key_fails_the_call_with_an_identity_error() {
    let authority = SecretKey::generate();
    let alice_key = SecretKey::generate();
    let bob_key = SecretKey::generate();
    let crypto = |key: &SecretKey, name: &str| {
        DeviceCrypto::new(
            key.clone(),
            credential(&authority, name, key),
            authority.public(),
        )
        .expect("crypto")
    };
    let mut alice = Calls::new(crypto(&alice_key, "alice"), CallConfig::default());
    let mut bob = Calls::new(crypto(&bob_key, "bob"), CallConfig::default());
    let now = Instant::now();
    let call_id = CallId([5; 16]);
    alice
        .dial(
            now,
            call_id,
            user("bob"),
            vec![bob_key.public()],
            MediaParams::default(),
        )
        .expect("dial");
    let invite = alice.poll_transmit().expect("invite");
    bob.handle_routed(now, WALL, alice_key.public(), &invite.payload)
        .expect("bob opens the real invitation");
    let ringing = bob.poll_transmit().expect("bob's answer");
    assert!(
        open_peer_message(&alice_key, &authority.public(), WALL, &ringing.payload)
            .is_ok_and(|(_, m)| matches!(m, PeerToPeer::CallRinging { .. })),
        "the real answer would have opened"
    );

    // The supernode's substitute.
    let evil = SecretKey::generate();
    let rogue = SecretKey::generate();
    let forged = seal_peer_message(
        &evil,
        &credential(&rogue, "bob", &evil),
        &alice_key.public(),
        &PeerToPeer::CallAccept { call_id },
    )
    .expect("seal");
    // What the app's engine does with a routed payload that does not open.
    let error = open_peer_message(&alice_key, &authority.public(), WALL, &forged)
        .expect_err("a forgery does not open");
    assert!(is_forged(&error), "{error}");
    alice.handle_open_failure(now, evil.public(), &error);
    assert!(
        std::iter::from_fn(|| alice.poll_event()).next().is_none(),
        "the routing names no invited device: nothing to tie it to by key"
    );
    alice.handle_forged_from(now, &user("bob"), &error);

    let events: Vec<CallEvent> = std::iter::from_fn(|| alice.poll_event()).collect();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, CallEvent::MediaKeys { .. } | CallEvent::Connected { .. })),
        "{events:?}"
    );
    let Some(CallEvent::Ended {
        reason,
        error: Some(failure),
        ..
    }) = events.last()
    else {
        panic!("the call ended: {events:?}");
    };
    assert_eq!(reason.as_str(), "failed");
    assert!(failure.is_identity());
    let told = failure.describe(&user("bob"));
    assert!(
        told.starts_with(
            "identity check failed: bob's key is not the one the login server certified"
        ),
        "{told}"
    );
    // A forgery from someone the call is not with ends nothing.
    let mut carol_call = Calls::new(crypto(&alice_key, "alice"), CallConfig::default());
    carol_call
        .dial(
            now,
            CallId([6; 16]),
            user("carol"),
            vec![SecretKey::generate().public()],
            MediaParams::default(),
        )
        .expect("dial");
    carol_call.handle_forged_from(now, &user("bob"), &error);
    assert!(
        !std::iter::from_fn(|| carol_call.poll_event())
            .any(|e| matches!(e, CallEvent::Ended { .. }))
    );
}

/// The callee answered and waits for the caller's confirmation; the supernode swaps the
/// caller's key in it. The callee fails the call as an identity error at once (not "the
/// caller did not confirm" seconds later) and never gets media keys.
#[test]
fn a_confirmation_under_a_swapped_key_fails_the_callee_at_once() {
    let authority = SecretKey::generate();
    let alice_key = SecretKey::generate();
    let bob_key = SecretKey::generate();
    let crypto = |key: &SecretKey, name: &str| {
        DeviceCrypto::new(
            key.clone(),
            credential(&authority, name, key),
            authority.public(),
        )
        .expect("crypto")
    };
    let mut alice = Calls::new(crypto(&alice_key, "alice"), CallConfig::default());
    let mut bob = Calls::new(crypto(&bob_key, "bob"), CallConfig::default());
    let now = Instant::now();
    let call_id = CallId([7; 16]);
    alice
        .dial(
            now,
            call_id,
            user("bob"),
            vec![bob_key.public()],
            MediaParams::default(),
        )
        .expect("dial");
    let invite = alice.poll_transmit().expect("invite");
    bob.handle_routed(now, WALL, alice_key.public(), &invite.payload)
        .expect("opens");
    bob.accept(now, call_id).expect("accept");
    while bob.poll_transmit().is_some() {}
    while bob.poll_event().is_some() {}

    let evil = SecretKey::generate();
    let forged = seal_peer_message(
        &evil,
        &credential(&SecretKey::generate(), "alice", &evil),
        &bob_key.public(),
        &PeerToPeer::CallCancel {
            call_id,
            reason: proto::peer::CancelReason::Hangup,
        },
    )
    .expect("seal");
    let error = bob
        .handle_routed(now, WALL, evil.public(), &forged)
        .expect_err("a forgery does not open");
    assert!(error.to_string().contains("identity"), "{error}");
    let client_core::call::CallInputError::Envelope(envelope_error) = error else {
        panic!("an envelope error: {error}");
    };
    bob.handle_forged_from(now, &user("alice"), &envelope_error);
    let events: Vec<CallEvent> = std::iter::from_fn(|| bob.poll_event()).collect();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, CallEvent::MediaKeys { .. } | CallEvent::Connected { .. })),
        "{events:?}"
    );
    match events.last() {
        Some(CallEvent::Ended {
            reason,
            error: Some(failure),
            ..
        }) => {
            assert_eq!(reason.as_str(), "failed");
            assert!(failure.is_identity(), "{failure}");
            assert!(
                failure
                    .describe(&user("alice"))
                    .starts_with("identity check failed: alice's key"),
                "{failure}"
            );
        }
        other => panic!("the callee's call ended as an identity failure: {other:?}"),
    }
}
