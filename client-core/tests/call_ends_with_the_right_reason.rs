//! Calls that do not connect end with the reason CONTRACT.md names: declined, busy, hang-up
//! before an answer, ring timeout, unreachable, and `failed` with an identity error when a
//! supernode substitutes keys or credentials.

mod call_sim;

use call_sim::{Sim, end_reason, lossy, user};
use client_core::call::CallEvent;
use netsim::ImpairmentConfig;
use proto::peer::MediaParams;
use proto::{CallId, PublicKey, SecretKey};
use std::time::Duration;

fn dial(sim: &mut Sim, from: PublicKey, to: &str, devices: Vec<PublicKey>, call: CallId) {
    let now = sim.now;
    sim.calls(from)
        .dial(now, call, user(to), devices, MediaParams::default())
        .expect("dial");
}

#[test]
fn a_decline_on_one_device_ends_the_call_everywhere() {
    let mut sim = Sim::new(lossy(), 1);
    let alice = sim.add_device("alice");
    let (b1, b2) = (sim.add_device("bob"), sim.add_device("bob"));
    let call = CallId([1; 16]);
    dial(&mut sim, alice, "bob", vec![b1, b2], call);
    sim.run_for(Duration::from_secs(3));
    let now = sim.now;
    sim.calls(b1).decline(now, call).expect("decline");
    sim.run_for(Duration::from_secs(5));
    assert_eq!(end_reason(sim.ended(alice)), Some("declined"));
    assert_eq!(end_reason(sim.ended(b1)), Some("declined"));
    assert_eq!(end_reason(sim.ended(b2)), Some("answered_elsewhere"));
    assert!(sim.media_keys(alice).is_none());
}

#[test]
fn a_device_already_in_a_call_answers_busy() {
    let mut sim = Sim::new(lossy(), 2);
    let alice = sim.add_device("alice");
    let bob = sim.add_device("bob");
    let carol = sim.add_device("carol");
    let first = CallId([1; 16]);
    dial(&mut sim, carol, "bob", vec![bob], first);
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    sim.calls(bob).accept(now, first).expect("accept");
    sim.run_for(Duration::from_secs(3));
    assert!(sim.calls(bob).in_call());

    let second = CallId([2; 16]);
    dial(&mut sim, alice, "bob", vec![bob], second);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(end_reason(sim.ended(alice)), Some("busy"));
    assert!(
        !sim.events(bob)
            .iter()
            .any(|(_, e)| matches!(e, CallEvent::Incoming { call_id, .. } if *call_id == second)),
        "a busy device does not ring"
    );
    assert!(sim.ended(bob).is_none(), "the first call goes on");
}

#[test]
fn a_cancel_before_the_answer_stops_every_device_ringing() {
    let mut sim = Sim::new(lossy(), 3);
    let alice = sim.add_device("alice");
    let (b1, b2) = (sim.add_device("bob"), sim.add_device("bob"));
    let call = CallId([3; 16]);
    dial(&mut sim, alice, "bob", vec![b1, b2], call);
    sim.run_for(Duration::from_secs(3));
    let now = sim.now;
    sim.calls(alice).hangup(now, call).expect("cancel");
    sim.run_for(Duration::from_secs(15));
    assert_eq!(end_reason(sim.ended(alice)), Some("hangup"));
    assert_eq!(end_reason(sim.ended(b1)), Some("hangup"));
    assert_eq!(end_reason(sim.ended(b2)), Some("hangup"));
}

#[test]
fn nobody_answering_for_a_minute_is_a_timeout_on_both_sides() {
    let mut sim = Sim::new(lossy(), 4);
    let alice = sim.add_device("alice");
    let bob = sim.add_device("bob");
    let call = CallId([4; 16]);
    let dialed_at = sim.now;
    dial(&mut sim, alice, "bob", vec![bob], call);
    sim.run_for(Duration::from_secs(59));
    assert!(sim.ended(alice).is_none(), "still ringing at 59 s");
    sim.run_for(Duration::from_secs(10));
    let (at, _) = sim
        .events(alice)
        .iter()
        .find(|(_, e)| matches!(e, CallEvent::Ended { .. }))
        .expect("ended");
    assert_eq!(*at - dialed_at, Duration::from_secs(60));
    assert_eq!(end_reason(sim.ended(alice)), Some("timeout"));
    assert_eq!(end_reason(sim.ended(bob)), Some("timeout"));
}

#[test]
fn offline_or_silent_devices_make_the_call_unreachable() {
    // Every device offline: the router says so, and the call ends at once.
    let mut sim = Sim::new(ImpairmentConfig::default(), 5);
    let alice = sim.add_device("alice");
    let bob = sim.add_device("bob");
    sim.device(bob).online = false;
    dial(&mut sim, alice, "bob", vec![bob], CallId([5; 16]));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(end_reason(sim.ended(alice)), Some("unreachable"));

    // A device that never answers (its invitations vanish): unreachable after 10 s.
    let mut sim = Sim::new(ImpairmentConfig::default(), 6);
    let alice = sim.add_device("alice");
    let ghost = SecretKey::generate().public();
    let bob = sim.add_device("bob");
    sim.redirect.insert(ghost, bob);
    sim.device(bob).online = true;
    let dialed_at = sim.now;
    // Bob cannot open what is sealed to another key: nothing comes back.
    dial(&mut sim, alice, "bob", vec![ghost], CallId([6; 16]));
    sim.run_for(Duration::from_secs(20));
    let (at, e) = sim
        .events(alice)
        .iter()
        .find(|(_, e)| matches!(e, CallEvent::Ended { .. }))
        .expect("ended");
    assert_eq!(end_reason(Some(e)), Some("unreachable"));
    assert_eq!(*at - dialed_at, Duration::from_secs(10));

    // No known device at all.
    let now = sim.now;
    sim.calls(alice)
        .dial(
            now,
            CallId([7; 16]),
            user("bob"),
            vec![],
            MediaParams::default(),
        )
        .expect("dial");
    sim.run_for(Duration::from_millis(1));
    let reasons: Vec<_> = sim
        .events(alice)
        .iter()
        .filter(|(_, e)| matches!(e, CallEvent::Ended { .. }))
        .map(|(_, e)| end_reason(Some(e)))
        .collect();
    assert_eq!(reasons, vec![Some("unreachable"), Some("unreachable")]);
}

fn identity_failure(sim: &Sim, device: PublicKey) -> String {
    match sim.ended(device) {
        Some(CallEvent::Ended {
            reason,
            error: Some(error),
            ..
        }) => {
            assert_eq!(reason.as_str(), "failed");
            assert!(error.is_identity());
            error.to_string()
        }
        other => panic!("expected an identity failure, got {other:?}"),
    }
}

#[test]
fn a_supernode_that_swaps_in_another_users_key_fails_the_call_with_an_identity_error() {
    let mut sim = Sim::new(lossy(), 7);
    let alice = sim.add_device("alice");
    let _bob = sim.add_device("bob");
    // The supernode answers alice's lookup of bob with mallory's device key; mallory's
    // device answers with her own valid credential.
    let mallory = sim.add_device("mallory");
    let call = CallId([8; 16]);
    dial(&mut sim, alice, "bob", vec![mallory], call);
    sim.run_for(Duration::from_secs(5));
    let message = identity_failure(&sim, alice);
    assert!(message.starts_with("identity"), "{message}");
    assert!(
        message.contains("identity could not be verified"),
        "{message}"
    );
    assert!(
        sim.media_keys(alice).is_none(),
        "no media keys for a middleman"
    );
    assert!(!sim.names(alice).contains(&"ringing"));
}

#[test]
fn a_forged_credential_or_a_substituted_device_fails_the_call_with_an_identity_error() {
    // A device claiming to be bob, certified by a rogue authority.
    let mut sim = Sim::new(lossy(), 8);
    let alice = sim.add_device("alice");
    let rogue = SecretKey::generate();
    let fake_bob = sim.add_device_certified_by("bob", &rogue);
    dial(&mut sim, alice, "bob", vec![fake_bob], CallId([9; 16]));
    sim.run_for(Duration::from_secs(5));
    let message = identity_failure(&sim, alice);
    assert!(message.contains("not signed by the trusted"), "{message}");

    // The supernode redirects what alice sealed to bob's real key to ... bob's other
    // device, which cannot open it; and hands alice the key of a bob device while routing to
    // another: the answering device must be the invited one.
    let mut sim = Sim::new(lossy(), 9);
    let alice = sim.add_device("alice");
    let bob_real = sim.add_device("bob");
    let bob_other = sim.add_device("bob");
    // Payloads alice seals to bob_other are re-addressed to bob_real's queue; bob_real
    // cannot open them, so the middle gains nothing and the call stays unreachable.
    sim.redirect.insert(bob_other, bob_real);
    dial(&mut sim, alice, "bob", vec![bob_other], CallId([10; 16]));
    sim.run_for(Duration::from_secs(15));
    assert_eq!(end_reason(sim.ended(alice)), Some("unreachable"));
    assert!(sim.media_keys(alice).is_none());
    assert!(sim.media_keys(bob_real).is_none());
}

#[test]
fn a_callee_refuses_an_invitation_relayed_under_another_identity() {
    use client_core::call::{CallConfig, CallFailure, CallInputError, Calls};
    use client_core::chat::DeviceCrypto;
    use proto::peer::{PeerToPeer, open_peer_message, seal_peer_message};

    let authority = SecretKey::generate();
    let device = |name: &str| {
        let key = SecretKey::generate();
        let cred = call_sim::credential(&authority, name, &key);
        (key, cred)
    };
    let (alice_key, alice_cred) = device("alice");
    let (bob_key, bob_cred) = device("bob");
    let (mallory_key, mallory_cred) = device("mallory");
    let mut alice = Calls::new(
        DeviceCrypto::new(alice_key, alice_cred, authority.public()).expect("crypto"),
        CallConfig::default(),
    );
    let mut bob = Calls::new(
        DeviceCrypto::new(bob_key.clone(), bob_cred, authority.public()).expect("crypto"),
        CallConfig::default(),
    );
    let now = std::time::Instant::now();
    // Alice was handed mallory's key for bob; mallory opens the invitation and re-seals
    // alice's offer to bob under her own identity.
    alice
        .dial(
            now,
            CallId([12; 16]),
            user("bob"),
            vec![mallory_key.public()],
            MediaParams::default(),
        )
        .expect("dial");
    let invite = alice.poll_transmit().expect("invite");
    let (_, message) = open_peer_message(
        &mallory_key,
        &authority.public(),
        call_sim::WALL,
        &invite.payload,
    )
    .expect("mallory opens what was sealed to her");
    assert!(matches!(message, PeerToPeer::CallInvite { .. }));
    let relayed =
        seal_peer_message(&mallory_key, &mallory_cred, &bob_key.public(), &message).expect("seal");
    let refused = bob.handle_routed(now, call_sim::WALL, mallory_key.public(), &relayed);
    assert!(
        matches!(
            refused,
            Err(CallInputError::Identity(
                CallFailure::DeviceSubstituted { .. }
            ))
        ),
        "{refused:?}"
    );
    assert!(bob.poll_event().is_none(), "bob's device does not ring");
    assert!(!bob.in_call());
}
