//! Defences against what an untrusted supernode can still do to routed messages once the
//! end-to-end checks ([`proto::e2e`]) have made forging and reading them impossible:
//!
//! - [`ReplayGuard`]: a supernode (or anyone on the path) can record a sealed envelope and
//!   deliver it again later; it still opens, because the sender really sealed it. The guard
//!   remembers a digest of every envelope that opened until the sender's credential inside
//!   it expires (after which the envelope no longer opens at all), so a replayed call
//!   invitation does not ring again once the call's own memory of it is gone. Senders seal
//!   every transmission afresh, so byte-identical copies are only ever replays or duplicates
//!   of something already handled.
//! - [`ForgeryAlarms`]: tells the user about forged envelopes (a supernode swapping keys)
//!   at most once per claimed sender per interval, so a supernode cannot flood the user with
//!   alarms.
//!
//! Memory is bounded in both: entries beyond the capacity push out the oldest.
//!
//! What it does not do: verify anything (open the envelope first), keep state across
//! restarts (a restarted device rings for a replayed invitation at most once more while
//! the invitation's credential is valid; the call then fails its handshake confirmation).

use proto::e2e::E2eError;
use proto::peer::PeerEnvelopeError;
use proto::{CredentialError, UnixTime, UserName};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How many envelopes a [`ReplayGuard`] remembers by default: far more than a device gets
/// within a credential's lifetime in normal use, about 6 MB at most (two indexes of
/// 40-byte entries).
pub const DEFAULT_REPLAY_CAPACITY: usize = 50_000;

/// True when an envelope failed to open because of a forgery: a sender credential the
/// authority never signed, or a real credential with someone else's signature under it. Such
/// an envelope can only come from someone substituting keys on the way (an honest sender's
/// envelopes never fail this way); an expired credential or an undecryptable envelope is
/// not counted.
pub fn is_forged(error: &PeerEnvelopeError) -> bool {
    matches!(
        error,
        PeerEnvelopeError::E2e(
            E2eError::BadSignature
                | E2eError::Identity(
                    CredentialError::BadSignature
                        | CredentialError::Malformed
                        | CredentialError::WrongKey { .. }
                )
        )
    )
}

/// The envelope was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the envelope was delivered before (replayed)")]
pub struct Replayed;

/// Remembers the envelopes that opened, until they could no longer open. See the module docs.
#[derive(Debug)]
pub struct ReplayGuard {
    seen: HashMap<[u8; 32], UnixTime>,
    by_expiry: BTreeSet<(UnixTime, [u8; 32])>,
    capacity: usize,
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            by_expiry: BTreeSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Checks an envelope (the exact routed payload) that opened at `wall`, sealed under a
    /// sender credential that expires at `valid_until`; records it when new.
    pub fn check(
        &mut self,
        wall: UnixTime,
        payload: &[u8],
        valid_until: UnixTime,
    ) -> Result<(), Replayed> {
        self.forget_expired(wall);
        let digest: [u8; 32] = Sha256::digest(payload).into();
        if self.seen.contains_key(&digest) {
            return Err(Replayed);
        }
        if valid_until <= wall {
            // It could not have opened; nothing to remember.
            return Ok(());
        }
        while self.seen.len() >= self.capacity {
            let Some((_, oldest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.seen.remove(&oldest);
        }
        self.seen.insert(digest, valid_until);
        self.by_expiry.insert((valid_until, digest));
        Ok(())
    }

    /// Envelopes remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn forget_expired(&mut self, wall: UnixTime) {
        while let Some(&(expiry, digest)) = self.by_expiry.first() {
            if expiry > wall {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&digest);
        }
    }
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CAPACITY)
    }
}

/// Says when to tell the user about a forged envelope claiming to come from a user. See the
/// module docs.
#[derive(Debug)]
pub struct ForgeryAlarms {
    last: BTreeMap<UserName, Instant>,
    every: Duration,
    capacity: usize,
}

impl ForgeryAlarms {
    /// At most one alarm per claimed sender per `every`, for up to `capacity` senders.
    pub fn new(every: Duration, capacity: usize) -> Self {
        Self {
            last: BTreeMap::new(),
            every,
            capacity: capacity.max(1),
        }
    }

    /// A forged envelope claiming to come from `from` arrived at `now`: whether to tell the
    /// user.
    pub fn should_tell(&mut self, now: Instant, from: &UserName) -> bool {
        if let Some(at) = self.last.get(from)
            && now.saturating_duration_since(*at) < self.every
        {
            return false;
        }
        if !self.last.contains_key(from) && self.last.len() >= self.capacity {
            let oldest = self
                .last
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(user, _)| user.clone());
            if let Some(oldest) = oldest {
                self.last.remove(&oldest);
            }
        }
        self.last.insert(from.clone(), now);
        true
    }
}

impl Default for ForgeryAlarms {
    fn default() -> Self {
        Self::new(Duration::from_secs(60), 256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_envelope_is_refused_until_its_credential_expires() {
        let mut guard = ReplayGuard::new(100);
        let t = UnixTime::from_secs;
        assert_eq!(guard.check(t(100), b"invite", t(200)), Ok(()));
        assert_eq!(guard.check(t(150), b"invite", t(200)), Err(Replayed));
        assert_eq!(guard.check(t(150), b"another", t(300)), Ok(()));
        assert_eq!(guard.len(), 2);
        // Past its credential's expiry the envelope no longer opens, so it is forgotten.
        assert_eq!(guard.check(t(250), b"third", t(400)), Ok(()));
        assert_eq!(guard.len(), 2);
        assert_eq!(guard.check(t(260), b"another", t(300)), Err(Replayed));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let mut guard = ReplayGuard::new(64);
        let t = UnixTime::from_secs;
        for i in 0u32..10_000 {
            assert_eq!(
                guard.check(t(10), &i.to_be_bytes(), t(1_000 + u64::from(i))),
                Ok(())
            );
            assert!(guard.len() <= 64);
        }
        // The newest are the ones remembered.
        assert_eq!(
            guard.check(t(10), &9_999u32.to_be_bytes(), t(10_999)),
            Err(Replayed)
        );
    }

    #[test]
    fn forgery_alarms_are_rate_limited_per_sender_and_bounded() {
        let mut alarms = ForgeryAlarms::new(Duration::from_secs(60), 2);
        let start = Instant::now();
        let user = |n: &str| UserName::new(n).expect("valid");
        assert!(alarms.should_tell(start, &user("alice")));
        assert!(!alarms.should_tell(start + Duration::from_secs(59), &user("alice")));
        assert!(alarms.should_tell(start + Duration::from_secs(1), &user("bob")));
        assert!(alarms.should_tell(start + Duration::from_secs(2), &user("carol")));
        assert!(alarms.last.len() <= 2);
        assert!(alarms.should_tell(start + Duration::from_secs(61), &user("alice")));
    }
}
