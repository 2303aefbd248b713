//! A supernode records a call invitation and delivers it again once the call is long over.
//! The envelope still opens (the caller really sealed it) and the call core, whose memory of
//! the ended call is gone, would ring again; the [`ReplayGuard`] the shell runs every opened
//! envelope through refuses it, with bounded memory, for as long as the caller's credential
//! inside could make it open at all.

mod call_sim;

use call_sim::{WALL, credential, user};
use client_core::call::{CallConfig, CallEvent, Calls};
use client_core::chat::DeviceCrypto;
use client_core::guard::{ReplayGuard, Replayed};
use proto::credential::DEFAULT_CREDENTIAL_LIFETIME;
use proto::peer::{MediaParams, open_peer_message};
use proto::{CallId, SecretKey, UnixTime};
use std::time::{Duration, Instant};

struct Callee {
    key: SecretKey,
    calls: Calls,
    guard: Option<ReplayGuard>,
    authority: proto::PublicKey,
}

impl Callee {
    /// What the app's engine does with a routed payload: open it, drop replays, hand it to
    /// the call core. True when the payload got to the core.
    fn routed(&mut self, now: Instant, wall: UnixTime, payload: &[u8]) -> bool {
        let (sender, message) =
            open_peer_message(&self.key, &self.authority, wall, payload).expect("opens");
        if let Some(guard) = self.guard.as_mut()
            && guard.check(wall, payload, sender.expires_at) == Err(Replayed)
        {
            return false;
        }
        let _ = self.calls.handle_message(now, wall, &sender, message);
        true
    }

    fn rings(&mut self) -> usize {
        std::iter::from_fn(|| self.calls.poll_event())
            .filter(|e| matches!(e, CallEvent::Incoming { .. }))
            .count()
    }
}

/// Bob rings for alice's invitation, declines, and the supernode replays the invitation a
/// minute later; how many times bob rang.
fn replayed_invitation_rings(guarded: bool) -> usize {
    let authority = SecretKey::generate();
    let alice_key = SecretKey::generate();
    let bob_key = SecretKey::generate();
    let mut alice = Calls::new(
        DeviceCrypto::new(
            alice_key.clone(),
            credential(&authority, "alice", &alice_key),
            authority.public(),
        )
        .expect("crypto"),
        CallConfig::default(),
    );
    let mut bob = Callee {
        key: bob_key.clone(),
        calls: Calls::new(
            DeviceCrypto::new(
                bob_key.clone(),
                credential(&authority, "bob", &bob_key),
                authority.public(),
            )
            .expect("crypto"),
            CallConfig::default(),
        ),
        guard: guarded.then(ReplayGuard::default),
        authority: authority.public(),
    };
    let start = Instant::now();
    let call_id = CallId([3; 16]);
    alice
        .dial(
            start,
            call_id,
            user("bob"),
            vec![bob_key.public()],
            MediaParams::default(),
        )
        .expect("dial");
    let recorded = alice.poll_transmit().expect("the invitation").payload;

    assert!(bob.routed(start, WALL, &recorded));
    let mut rang = bob.rings();
    bob.calls.decline(start, call_id).expect("decline");
    // Long after the call: its tombstone is gone.
    let later = start + CallConfig::default().tombstone_for + Duration::from_secs(30);
    bob.calls.handle_timeout(later);
    bob.rings();
    bob.routed(
        later,
        WALL.saturating_add(Duration::from_secs(60)),
        &recorded,
    );
    rang += bob.rings();
    rang
}

#[test]
fn a_replayed_invitation_does_not_ring_again() {
    // Why the guard is there: without it the old invitation rings a second time.
    assert_eq!(replayed_invitation_rings(false), 2);
    assert_eq!(replayed_invitation_rings(true), 1);
}

#[test]
fn the_guard_remembers_an_envelope_as_long_as_it_could_open() {
    let mut guard = ReplayGuard::new(8);
    let expires = WALL.saturating_add(DEFAULT_CREDENTIAL_LIFETIME);
    assert_eq!(guard.check(WALL, b"sealed invitation", expires), Ok(()));
    let just_before = expires.saturating_sub(Duration::from_secs(1));
    assert_eq!(
        guard.check(just_before, b"sealed invitation", expires),
        Err(Replayed)
    );
    // At expiry the envelope no longer opens (its credential is expired), so the guard
    // lets go of it and its memory stays bounded by what could still be replayed.
    assert_eq!(guard.check(expires, b"other", expires), Ok(()));
    assert!(guard.is_empty());
}
