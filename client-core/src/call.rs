//! Call signalling: one device's calls, as caller and as callee, over sealed routed
//! messages ([`PeerToPeer`] call variants).
//!
//! [`Calls`] holds one leg per (call, peer user). A leg is a state machine:
//! - **Caller**: [`Calls::dial`] seals a `CallInvite` (with its own [`Handshake`] offer) to
//!   every device of the callee and resends it every second until that device rings. The
//!   first `CallRinging` (the handshake answer, checked against the authority, the invited
//!   device key and the dialed user) gives [`CallEvent::Ringing`]. The first `CallAccept`
//!   wins: that device gets `CallConfirm`, the others `CallCancel { AnsweredElsewhere }`.
//!   No ringing within [`CallConfig::unreachable_after`] ends it `unreachable`; no answer
//!   within [`CallConfig::ring_timeout`] ends it `timeout`; every device busy ends it `busy`;
//!   a decline ends it `declined`.
//! - **Callee**: every device of the user rings ([`CallEvent::Incoming`]); a device already in
//!   a call answers `CallDecline { Busy }` by itself. [`Calls::accept`] sends `CallAccept`
//!   until the caller's `CallConfirm` arrives; the confirmation is checked before media keys
//!   are released. A device told `AnsweredElsewhere` stops ringing.
//! - **Both**: [`CallEvent::MediaKeys`] carries the [`SessionKeys`] for the media path once
//!   each side verified the other. Hold and resume in both directions, mute (local only),
//!   hang-up, hole-punching candidates passed through. Anything that fails identity checks
//!   (a supernode substituting keys or credentials) ends the call `failed` with a
//!   [`CallFailure`] whose message starts with "identity".
//! - **Conference**: the initiator adds participants with [`Calls::add_participant`] (a further
//!   leg of the same call id listing the members, up to [`MAX_CONFERENCE`] people); mixing is
//!   the media layer's job.
//!
//! Routed messages can be lost (a supernode dies mid-route), so every message that drives the
//! state is repeated until the peer's next message shows it arrived, and an ended leg keeps a
//! tombstone that answers stragglers with its final message.
//!
//! Sans-IO: after every call, drain [`Calls::poll_transmit`] (route each with
//! `ClientToSupernode::Route` and report its `RouteStatus` through
//! [`Calls::handle_route_status`]), then [`Calls::poll_event`], then arm a timer for
//! [`Calls::poll_timeout`]. Wall-clock time (`wall`) is an input for credential checks.
//!
//! What it does not do: no media, no hole punching (it only carries `Candidates`), no
//! device discovery (the shell passes the callee's device keys, from credentials it
//! verified or from any untrusted source: the handshake catches substitutes).

use crate::chat::{DeviceCrypto, PeerCrypto as _, PeerTransmit};
use proto::e2e::{E2eError, Handshake, HandshakeMessage, Role, SessionKeys};
use proto::peer::{
    CancelReason, Candidate, DeclineReason, MAX_CANDIDATES, MAX_CONFERENCE, MediaParams,
    PeerEnvelopeError, PeerToPeer,
};
use proto::supernode::RouteOutcome;
use proto::{CallId, Credential, PublicKey, Signature, UnixTime, UserName};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Tunables.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// The caller gives up when nobody answers this long after dialing (`timeout`).
    pub ring_timeout: Duration,
    /// The caller gives up when no device rings this long after dialing (`unreachable`).
    pub unreachable_after: Duration,
    /// Unanswered invitations and acceptances are resent this often.
    pub retransmit_interval: Duration,
    /// A ringing device repeats `CallRinging` this often, so a lost cancel is noticed.
    pub ring_refresh: Duration,
    /// A callee that accepted waits this long for the caller's confirmation.
    pub confirm_timeout: Duration,
    /// How many times hang-up, hold and resume are sent (they have no answer).
    pub repeat_count: u32,
    /// How long an ended leg answers stragglers.
    pub tombstone_for: Duration,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            ring_timeout: Duration::from_secs(60),
            unreachable_after: Duration::from_secs(10),
            retransmit_interval: Duration::from_secs(1),
            ring_refresh: Duration::from_secs(5),
            confirm_timeout: Duration::from_secs(10),
            repeat_count: 3,
            tombstone_for: Duration::from_secs(30),
        }
    }
}

/// Why a call ended (CONTRACT.md's `call_ended.reason`, plus `answered_elsewhere` for a
/// device whose call another device of the same user took). Serialised as [`Self::as_str`]
/// spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Hangup,
    Declined,
    Busy,
    Timeout,
    Unreachable,
    Failed,
    AnsweredElsewhere,
}

impl EndReason {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hangup => "hangup",
            Self::Declined => "declined",
            Self::Busy => "busy",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Failed => "failed",
            Self::AnsweredElsewhere => "answered_elsewhere",
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The peer's credential, signature or key did not verify, or it is not who was dialed.
    #[error("identity check failed: {0}")]
    Identity(#[from] E2eError),
    /// The device that answered is not the device that was invited: its key was substituted.
    #[error(
        "identity check failed: the answering device {answered:?} is not the invited device {invited:?}"
    )]
    DeviceSubstituted {
        invited: PublicKey,
        answered: PublicKey,
    },
    /// The caller never confirmed the answer.
    #[error("the caller did not confirm the answer in time")]
    NoConfirm,
}

impl CallFailure {
    pub fn is_identity(&self) -> bool {
        !matches!(self, Self::NoConfirm)
    }

    /// The sentence to show a person: an identity failure says whose key failed and why.
    pub fn describe(&self, peer: &UserName) -> String {
        match self {
            Self::Identity(error) => format!(
                "identity check failed: {peer}'s key is not the one the login server \
                 certified ({error})"
            ),
            Self::DeviceSubstituted { .. } => {
                let detail = self.to_string();
                let detail = detail
                    .strip_prefix("identity check failed: ")
                    .unwrap_or(&detail);
                format!(
                    "identity check failed: {peer}'s key is not the one the login server \
                     certified ({detail})"
                )
            }
            Self::NoConfirm => self.to_string(),
        }
    }
}

/// A request the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no such call")]
    UnknownCall,
    #[error("the call is not in a state that allows this")]
    WrongState,
    #[error("a call with this id and peer exists")]
    Exists,
    #[error("a conference holds at most {MAX_CONFERENCE} participants")]
    ConferenceFull,
    #[error("too many candidates")]
    TooManyCandidates,
}

/// Why an incoming message was refused (log it; nothing else to do).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallInputError {
    #[error(transparent)]
    Envelope(#[from] PeerEnvelopeError),
    #[error("not a call message")]
    NotCall,
    #[error("no such call")]
    UnknownCall,
    #[error("invitation refused: {0}")]
    Identity(CallFailure),
}

/// Which side of a leg this device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRole {
    Caller,
    Callee,
}

/// What happened, for the shell (CONTRACT.md events in brackets).
#[derive(Debug, Clone)]
pub enum CallEvent {
    /// [`call_incoming`] This device rings.
    Incoming {
        call_id: CallId,
        from: UserName,
        device: PublicKey,
        media: MediaParams,
        /// The other members when this is an invitation into a conference.
        conference: Vec<UserName>,
    },
    /// [`call_ringing`] A device of the callee rings; `setup` is the time since dialing.
    Ringing {
        call_id: CallId,
        peer: UserName,
        setup: Duration,
    },
    /// The verified session keys for the media path with `device`.
    MediaKeys {
        call_id: CallId,
        peer: UserName,
        device: PublicKey,
        keys: SessionKeys,
    },
    /// [`call_connected`] Both sides verified each other; `setup` is the time since dialing
    /// (caller) or since accepting (callee).
    Connected {
        call_id: CallId,
        peer: UserName,
        device: PublicKey,
        role: CallRole,
        media: MediaParams,
        setup: Duration,
    },
    /// [`call_held`] By us (`by_peer: false`) or by the peer.
    Held {
        call_id: CallId,
        peer: UserName,
        by_peer: bool,
    },
    /// [`call_resumed`]
    Resumed {
        call_id: CallId,
        peer: UserName,
        by_peer: bool,
    },
    /// The microphone of this call is muted or not (never told to the peer).
    Muted { call_id: CallId, muted: bool },
    /// The peer's hole-punching candidates, from `device` (before the answer, each ringing
    /// device of the callee may send its own).
    Candidates {
        call_id: CallId,
        peer: UserName,
        device: PublicKey,
        ufrag: String,
        password: String,
        candidates: Vec<Candidate>,
    },
    /// [`call_ended`] `duration` counts from connection, when it connected.
    Ended {
        call_id: CallId,
        peer: UserName,
        reason: EndReason,
        error: Option<CallFailure>,
        duration: Option<Duration>,
    },
}

#[derive(Debug)]
struct Repeat {
    device: PublicKey,
    message: PeerToPeer,
    next_at: Instant,
    interval: Duration,
    remaining: u32,
}

enum DeviceStatus {
    Invited,
    Ringing {
        keys: Box<SessionKeys>,
        confirm: Signature,
    },
    Declined(DeclineReason),
    Gone,
}

struct Invited {
    handshake: Handshake,
    status: DeviceStatus,
}

enum LegState {
    Inviting {
        devices: BTreeMap<PublicKey, Invited>,
        rang: bool,
        ring_deadline: Instant,
        unreachable_deadline: Instant,
    },
    Ringing {
        device: PublicKey,
        handshake: Box<Handshake>,
        keys: Box<SessionKeys>,
        answer: Box<HandshakeMessage>,
        deadline: Instant,
    },
    Accepting {
        device: PublicKey,
        handshake: Box<Handshake>,
        keys: Box<SessionKeys>,
        answer: Box<HandshakeMessage>,
        accepted_at: Instant,
        deadline: Instant,
    },
    Connected {
        device: PublicKey,
        /// The caller's confirmation, resent on a repeated `CallAccept`.
        confirm: Option<Signature>,
        /// What to answer the callee's other devices.
        others: BTreeMap<PublicKey, PeerToPeer>,
        connected_at: Instant,
        held_local: bool,
        held_remote: bool,
    },
    Ended {
        replies: BTreeMap<PublicKey, PeerToPeer>,
        until: Instant,
    },
}

struct Leg {
    role: CallRole,
    media: MediaParams,
    conference: Vec<UserName>,
    started: Instant,
    state: LegState,
    repeats: Vec<Repeat>,
}

impl Leg {
    fn is_live(&self) -> bool {
        !matches!(self.state, LegState::Ended { .. })
    }

    fn stop_repeats_to(&mut self, device: &PublicKey) {
        self.repeats.retain(|r| &r.device != device);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let state = match &self.state {
            LegState::Inviting {
                rang,
                ring_deadline,
                unreachable_deadline,
                ..
            } => Some(if *rang {
                *ring_deadline
            } else {
                (*ring_deadline).min(*unreachable_deadline)
            }),
            LegState::Ringing { deadline, .. } | LegState::Accepting { deadline, .. } => {
                Some(*deadline)
            }
            LegState::Connected { .. } => None,
            LegState::Ended { until, .. } => Some(*until),
        };
        self.repeats.iter().map(|r| r.next_at).chain(state).min()
    }
}

type LegKey = (CallId, UserName);

/// One device's calls; see the module docs.
pub struct Calls {
    crypto: DeviceCrypto,
    config: CallConfig,
    legs: BTreeMap<LegKey, Leg>,
    /// Route tokens of invitations, to notice offline devices.
    invite_tokens: BTreeMap<u64, (LegKey, PublicKey)>,
    /// Tokens of recent transmits that end a leg (hang-up, cancel, decline).
    ending_tokens: BTreeSet<u64>,
    next_token: u64,
    transmits: VecDeque<PeerTransmit>,
    events: VecDeque<CallEvent>,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Calls({} legs)", self.legs.len())
    }
}

const MAX_INVITE_TOKENS: usize = 1024;
/// Leg-ending transmits remembered for [`Calls::ends_a_leg`]; the shell asks right away.
const MAX_ENDING_TOKENS: usize = 64;

impl Calls {
    pub fn new(crypto: DeviceCrypto, config: CallConfig) -> Self {
        Self {
            crypto,
            config,
            legs: BTreeMap::new(),
            invite_tokens: BTreeMap::new(),
            ending_tokens: BTreeSet::new(),
            next_token: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Presents a refreshed credential in later handshakes.
    pub fn crypto_mut(&mut self) -> &mut DeviceCrypto {
        &mut self.crypto
    }

    /// The people in a call besides this device's user: the peers of its live legs, plus
    /// the members an invitation into a conference listed.
    pub fn members(&self, call_id: CallId) -> Vec<UserName> {
        let mut members: Vec<UserName> = Vec::new();
        for ((id, peer), leg) in &self.legs {
            if *id != call_id || !leg.is_live() {
                continue;
            }
            members.push(peer.clone());
            members.extend(leg.conference.iter().cloned());
        }
        members.retain(|m| m != self.crypto.local_user());
        members.sort();
        members.dedup();
        members
    }

    /// True while any call on this device is not over (a new invitation gets `Busy`).
    pub fn in_call(&self) -> bool {
        self.legs.values().any(Leg::is_live)
    }

    /// Calls `callee` on each of `devices`. `call_id` should be fresh random.
    pub fn dial(
        &mut self,
        now: Instant,
        call_id: CallId,
        callee: UserName,
        devices: Vec<PublicKey>,
        media: MediaParams,
    ) -> Result<(), CallError> {
        if self.legs.contains_key(&(call_id, callee.clone())) {
            return Err(CallError::Exists);
        }
        self.invite(now, call_id, callee, devices, media, Vec::new());
        Ok(())
    }

    /// Adds `user` to a call this device started (a conference): a further leg of the same
    /// call id whose invitation lists the members.
    pub fn add_participant(
        &mut self,
        now: Instant,
        call_id: CallId,
        user: UserName,
        devices: Vec<PublicKey>,
    ) -> Result<(), CallError> {
        let legs: Vec<(&LegKey, &Leg)> = self
            .legs
            .iter()
            .filter(|((id, _), leg)| *id == call_id && leg.is_live())
            .collect();
        if legs.is_empty() {
            return Err(CallError::UnknownCall);
        }
        if legs.iter().any(|(_, leg)| leg.role != CallRole::Caller) {
            return Err(CallError::WrongState);
        }
        if !legs
            .iter()
            .any(|(_, leg)| matches!(leg.state, LegState::Connected { .. }))
        {
            return Err(CallError::WrongState);
        }
        if self.legs.contains_key(&(call_id, user.clone())) {
            return Err(CallError::Exists);
        }
        let media = legs[0].1.media;
        let mut members = vec![self.crypto.local_user().clone()];
        members.extend(legs.iter().map(|((_, peer), _)| peer.clone()));
        if members.len() + 1 > MAX_CONFERENCE {
            return Err(CallError::ConferenceFull);
        }
        self.invite(now, call_id, user, devices, media, members);
        Ok(())
    }

    /// Answers a ringing call on this device.
    pub fn accept(&mut self, now: Instant, call_id: CallId) -> Result<(), CallError> {
        let key = self
            .find(call_id, |leg| matches!(leg.state, LegState::Ringing { .. }))
            .ok_or(CallError::WrongState)?;
        let leg = self.legs.get_mut(&key).ok_or(CallError::UnknownCall)?;
        let state = std::mem::replace(
            &mut leg.state,
            LegState::Ended {
                replies: BTreeMap::new(),
                until: now,
            },
        );
        let LegState::Ringing {
            device,
            handshake,
            keys,
            answer,
            ..
        } = state
        else {
            leg.state = state;
            return Err(CallError::WrongState);
        };
        leg.repeats.clear();
        leg.state = LegState::Accepting {
            device,
            handshake,
            keys,
            answer,
            accepted_at: now,
            deadline: now + self.config.confirm_timeout,
        };
        let interval = self.config.retransmit_interval;
        let count = repeats_within(self.config.confirm_timeout, interval);
        self.send_repeated(
            now,
            &key,
            device,
            PeerToPeer::CallAccept { call_id },
            interval,
            count,
        );
        Ok(())
    }

    /// Refuses a ringing call on this device.
    pub fn decline(&mut self, now: Instant, call_id: CallId) -> Result<(), CallError> {
        let key = self
            .find(call_id, |leg| matches!(leg.state, LegState::Ringing { .. }))
            .ok_or(CallError::WrongState)?;
        let device = match self.legs.get(&key).map(|l| &l.state) {
            Some(LegState::Ringing { device, .. }) => *device,
            _ => return Err(CallError::WrongState),
        };
        let decline = PeerToPeer::CallDecline {
            call_id,
            reason: DeclineReason::Declined,
        };
        self.send(&key, device, &decline);
        self.end(
            now,
            &key,
            EndReason::Declined,
            None,
            BTreeMap::from([(device, decline)]),
        );
        Ok(())
    }

    /// Hangs up every leg of the call (cancels it when not yet answered, declines it when
    /// ringing here).
    pub fn hangup(&mut self, now: Instant, call_id: CallId) -> Result<(), CallError> {
        let keys: Vec<LegKey> = self
            .legs
            .iter()
            .filter(|((id, _), leg)| *id == call_id && leg.is_live())
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return Err(CallError::UnknownCall);
        }
        for key in keys {
            let ringing_here = matches!(
                self.legs.get(&key).map(|l| &l.state),
                Some(LegState::Ringing { .. })
            );
            if ringing_here {
                self.decline(now, call_id)?;
                continue;
            }
            self.end_actively(now, &key, EndReason::Hangup, None, CancelReason::Hangup);
        }
        Ok(())
    }

    /// Hangs up one leg of a call: a conference host drops a participant (or a participant
    /// whose media failed) while the other legs go on. Like [`Calls::hangup`] for that leg
    /// alone.
    pub fn hangup_leg(
        &mut self,
        now: Instant,
        call_id: CallId,
        peer: &UserName,
    ) -> Result<(), CallError> {
        let key = (call_id, peer.clone());
        let ringing_here = match self.legs.get(&key) {
            Some(leg) if leg.is_live() => matches!(leg.state, LegState::Ringing { .. }),
            _ => return Err(CallError::UnknownCall),
        };
        if ringing_here {
            return self.decline(now, call_id);
        }
        self.end_actively(now, &key, EndReason::Hangup, None, CancelReason::Hangup);
        Ok(())
    }

    /// Puts the call on hold (`hold: true`) or takes it off.
    pub fn set_hold(&mut self, now: Instant, call_id: CallId, hold: bool) -> Result<(), CallError> {
        let keys = self.connected_legs(call_id)?;
        let interval = self.config.retransmit_interval;
        let count = self.config.repeat_count;
        for key in keys {
            let Some(leg) = self.legs.get_mut(&key) else {
                continue;
            };
            let LegState::Connected {
                device, held_local, ..
            } = &mut leg.state
            else {
                continue;
            };
            if *held_local == hold {
                continue;
            }
            *held_local = hold;
            let device = *device;
            // A pending hold must not overtake the resume that follows it, and vice versa.
            leg.repeats.retain(|r| {
                !matches!(
                    r.message,
                    PeerToPeer::CallHold { .. } | PeerToPeer::CallResume { .. }
                )
            });
            let message = if hold {
                PeerToPeer::CallHold { call_id }
            } else {
                PeerToPeer::CallResume { call_id }
            };
            self.send_repeated(now, &key, device, message, interval, count);
            let peer = key.1.clone();
            self.events.push_back(if hold {
                CallEvent::Held {
                    call_id,
                    peer,
                    by_peer: false,
                }
            } else {
                CallEvent::Resumed {
                    call_id,
                    peer,
                    by_peer: false,
                }
            });
        }
        Ok(())
    }

    /// Mutes or unmutes the microphone of a call: local only, the peer is not told.
    pub fn set_muted(&mut self, call_id: CallId, muted: bool) -> Result<(), CallError> {
        self.connected_legs(call_id)?;
        self.events.push_back(CallEvent::Muted { call_id, muted });
        Ok(())
    }

    /// Sends hole-punching candidates to the peer's device in this call (known once it
    /// answered, or from the invitation on the callee's side).
    pub fn send_candidates(
        &mut self,
        call_id: CallId,
        peer: &UserName,
        ufrag: String,
        password: String,
        candidates: Vec<Candidate>,
    ) -> Result<(), CallError> {
        if candidates.len() > MAX_CANDIDATES {
            return Err(CallError::TooManyCandidates);
        }
        let key = (call_id, peer.clone());
        let device = match self.legs.get(&key).map(|l| &l.state) {
            Some(
                LegState::Ringing { device, .. }
                | LegState::Accepting { device, .. }
                | LegState::Connected { device, .. },
            ) => *device,
            Some(_) => return Err(CallError::WrongState),
            None => return Err(CallError::UnknownCall),
        };
        let message = PeerToPeer::Candidates {
            call_id,
            ufrag,
            password,
            candidates,
        };
        self.send(&key, device, &message);
        Ok(())
    }

    /// The supernode's `RouteStatus` for a transmit's token: an invitation to an offline
    /// device stops waiting for it.
    pub fn handle_route_status(&mut self, now: Instant, token: u64, outcome: RouteOutcome) {
        let Some((key, device)) = self.invite_tokens.remove(&token) else {
            return;
        };
        if outcome != RouteOutcome::Offline {
            return;
        }
        let Some(leg) = self.legs.get_mut(&key) else {
            return;
        };
        if let LegState::Inviting { devices, .. } = &mut leg.state
            && let Some(invited) = devices.get_mut(&device)
            && matches!(invited.status, DeviceStatus::Invited)
        {
            invited.status = DeviceStatus::Gone;
            leg.stop_repeats_to(&device);
            self.check_all_refused(now, &key);
        }
    }

    /// Opens a `Routed` payload and handles it when it is call signalling. Chat messages come
    /// back as `Err(NotCall)`: open once with [`DeviceCrypto`] and dispatch by
    /// [`PeerToPeer::call_id`] when both cores run.
    ///
    /// `from_device` is the `Routed` message's (unverified) sender device: when an envelope
    /// from a device this side invited fails its identity checks, that call fails with the
    /// identity error instead of waiting to time out.
    pub fn handle_routed(
        &mut self,
        now: Instant,
        wall: UnixTime,
        from_device: PublicKey,
        payload: &[u8],
    ) -> Result<(), CallInputError> {
        match self.crypto.open(wall, payload) {
            Ok((sender, message)) => self.handle_message(now, wall, &sender, message),
            Err(error) => {
                self.handle_open_failure(now, from_device, &error);
                Err(error.into())
            }
        }
    }

    /// An envelope routed from `from_device` did not open. Identity failures (a forged or
    /// expired credential, a bad signature) from a device of a call being set up fail that
    /// call; anything else is ignored.
    pub fn handle_open_failure(
        &mut self,
        now: Instant,
        from_device: PublicKey,
        error: &PeerEnvelopeError,
    ) {
        let PeerEnvelopeError::E2e(e2e @ (E2eError::Identity(_) | E2eError::BadSignature)) = error
        else {
            return;
        };
        let key = self.legs.iter().find_map(|(key, leg)| match &leg.state {
            LegState::Inviting { devices, .. } if devices.contains_key(&from_device) => {
                Some(key.clone())
            }
            _ => None,
        });
        if let Some(key) = key {
            self.end_actively(
                now,
                &key,
                EndReason::Failed,
                Some(CallFailure::Identity(e2e.clone())),
                CancelReason::Hangup,
            );
        }
    }

    /// An envelope the supernode says came from the user `from` was forged (see
    /// `guard::is_forged`): a supernode swapping the sender's key, possibly in the routing
    /// fields too. A call being set up with `from` (inviting, ringing here, or waiting for
    /// the caller's confirmation) fails with the identity error instead of waiting to time
    /// out. `from` is the supernode's unverified claim, but only a supernode on the path can
    /// make it, and it could end the setup by dropping messages anyway. A connected call is
    /// left alone: its media and control no longer need that supernode.
    pub fn handle_forged_from(&mut self, now: Instant, from: &UserName, error: &PeerEnvelopeError) {
        let PeerEnvelopeError::E2e(e2e @ (E2eError::Identity(_) | E2eError::BadSignature)) = error
        else {
            return;
        };
        let keys: Vec<LegKey> = self
            .legs
            .iter()
            .filter(|(key, leg)| {
                &key.1 == from
                    && matches!(
                        leg.state,
                        LegState::Inviting { .. }
                            | LegState::Ringing { .. }
                            | LegState::Accepting { .. }
                    )
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.end_actively(
                now,
                &key,
                EndReason::Failed,
                Some(CallFailure::Identity(e2e.clone())),
                CancelReason::Hangup,
            );
        }
    }

    /// Handles an opened message from a verified sender.
    pub fn handle_message(
        &mut self,
        now: Instant,
        wall: UnixTime,
        sender: &Credential,
        message: PeerToPeer,
    ) -> Result<(), CallInputError> {
        let call_id = message.call_id().ok_or(CallInputError::NotCall)?;
        let mut key = (call_id, sender.user.clone());
        let device = sender.device_key;
        if !self.legs.contains_key(&key) {
            // A device we invited answering as someone else: its key was substituted.
            let invited = self.legs.iter().find_map(|(k, leg)| match &leg.state {
                LegState::Inviting { devices, .. }
                    if k.0 == call_id && devices.contains_key(&device) =>
                {
                    Some(k.clone())
                }
                _ => None,
            });
            if let Some(invited) = invited {
                if !matches!(message, PeerToPeer::CallRinging { .. }) {
                    let failure = CallFailure::Identity(E2eError::UnexpectedPeer {
                        expected: invited.1.clone(),
                        actual: sender.user.clone(),
                    });
                    self.end_actively(
                        now,
                        &invited,
                        EndReason::Failed,
                        Some(failure),
                        CancelReason::Hangup,
                    );
                    return Ok(());
                }
                key = invited;
            }
        }
        let Some(leg) = self.legs.get_mut(&key) else {
            return match message {
                PeerToPeer::CallInvite {
                    offer,
                    media,
                    conference,
                    ..
                } => self.incoming(now, wall, sender, call_id, &offer, media, conference),
                _ => Err(CallInputError::UnknownCall),
            };
        };
        let terminal = matches!(
            message,
            PeerToPeer::CallCancel { .. }
                | PeerToPeer::CallDecline { .. }
                | PeerToPeer::CallHangup { .. }
        );
        match &mut leg.state {
            LegState::Ended { replies, .. } => {
                if terminal {
                    leg.stop_repeats_to(&device);
                } else if let Some(reply) = replies.get(&device).cloned() {
                    self.send(&key, device, &reply);
                }
            }
            LegState::Inviting { .. } => self.caller_inviting(now, wall, &key, device, message),
            LegState::Ringing { device: from, .. } | LegState::Accepting { device: from, .. } => {
                if *from != device {
                    return Err(CallInputError::UnknownCall);
                }
                self.callee_answering(now, &key, device, message);
            }
            LegState::Connected { .. } => self.connected(now, &key, device, message),
        }
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let keys: Vec<LegKey> = self.legs.keys().cloned().collect();
        for key in keys {
            let mut due = Vec::new();
            if let Some(leg) = self.legs.get_mut(&key) {
                for repeat in &mut leg.repeats {
                    if repeat.next_at <= now {
                        due.push((repeat.device, repeat.message.clone()));
                        repeat.remaining = repeat.remaining.saturating_sub(1);
                        repeat.next_at = now + repeat.interval;
                    }
                }
                leg.repeats.retain(|r| r.remaining > 0);
            }
            for (device, message) in due {
                let is_invite = matches!(message, PeerToPeer::CallInvite { .. });
                let token = self.send(&key, device, &message);
                if is_invite {
                    self.track_invite(token, &key, device);
                }
            }
            self.state_timeout(now, &key);
        }
    }

    /// Whether the transmit with this token ends a leg (a hang-up, cancel or decline):
    /// messages that are safe to deliver twice and in any order, so a shell may send them
    /// over a second path too (the call's media path, when the supernodes are slow to
    /// notice a dead link). Answers for the most recent transmits only.
    pub fn ends_a_leg(&self, token: u64) -> bool {
        self.ending_tokens.contains(&token)
    }

    pub fn poll_transmit(&mut self) -> Option<PeerTransmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.legs.values().filter_map(Leg::next_deadline).min()
    }

    fn find(&self, call_id: CallId, pred: impl Fn(&Leg) -> bool) -> Option<LegKey> {
        self.legs
            .iter()
            .find(|((id, _), leg)| *id == call_id && pred(leg))
            .map(|(k, _)| k.clone())
    }

    fn connected_legs(&self, call_id: CallId) -> Result<Vec<LegKey>, CallError> {
        let keys: Vec<LegKey> = self
            .legs
            .iter()
            .filter(|((id, _), leg)| {
                *id == call_id && matches!(leg.state, LegState::Connected { .. })
            })
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            Err(CallError::WrongState)
        } else {
            Ok(keys)
        }
    }

    fn invite(
        &mut self,
        now: Instant,
        call_id: CallId,
        callee: UserName,
        devices: Vec<PublicKey>,
        media: MediaParams,
        conference: Vec<UserName>,
    ) {
        let key = (call_id, callee);
        let mut devices = devices;
        devices.sort();
        devices.dedup();
        devices.truncate(proto::supernode::MAX_DEVICES_PER_USER);
        let mut invited = BTreeMap::new();
        let mut invites = Vec::new();
        for device in &devices {
            let mut handshake = Handshake::new(
                Role::Initiator,
                &call_id.0,
                self.crypto.key().clone(),
                self.crypto.credential().clone(),
            );
            let offer = handshake.offer();
            invites.push((
                *device,
                PeerToPeer::CallInvite {
                    call_id,
                    offer,
                    media,
                    conference: conference.clone(),
                },
            ));
            invited.insert(
                *device,
                Invited {
                    handshake,
                    status: DeviceStatus::Invited,
                },
            );
        }
        self.legs.insert(
            key.clone(),
            Leg {
                role: CallRole::Caller,
                media,
                conference,
                started: now,
                state: LegState::Inviting {
                    devices: invited,
                    rang: false,
                    ring_deadline: now + self.config.ring_timeout,
                    unreachable_deadline: now + self.config.unreachable_after,
                },
                repeats: Vec::new(),
            },
        );
        if devices.is_empty() {
            self.end(now, &key, EndReason::Unreachable, None, BTreeMap::new());
            return;
        }
        let interval = self.config.retransmit_interval;
        let count = repeats_within(self.config.ring_timeout, interval);
        for (device, message) in invites {
            let token = self.send_repeated(now, &key, device, message, interval, count);
            self.track_invite(token, &key, device);
        }
    }

    fn track_invite(&mut self, token: Option<u64>, key: &LegKey, device: PublicKey) {
        if let Some(token) = token {
            self.invite_tokens.insert(token, (key.clone(), device));
            while self.invite_tokens.len() > MAX_INVITE_TOKENS {
                self.invite_tokens.pop_first();
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn incoming(
        &mut self,
        now: Instant,
        wall: UnixTime,
        sender: &Credential,
        call_id: CallId,
        offer: &HandshakeMessage,
        media: MediaParams,
        conference: Vec<UserName>,
    ) -> Result<(), CallInputError> {
        let key = (call_id, sender.user.clone());
        let device = sender.device_key;
        if self.in_call() {
            let decline = PeerToPeer::CallDecline {
                call_id,
                reason: DeclineReason::Busy,
            };
            self.send(&key, device, &decline);
            self.legs.insert(
                key,
                Leg {
                    role: CallRole::Callee,
                    media,
                    conference,
                    started: now,
                    state: LegState::Ended {
                        replies: BTreeMap::from([(device, decline)]),
                        until: now + self.config.tombstone_for,
                    },
                    repeats: Vec::new(),
                },
            );
            return Ok(());
        }
        let mut handshake = Handshake::new(
            Role::Responder,
            &call_id.0,
            self.crypto.key().clone(),
            self.crypto.credential().clone(),
        );
        let (answer, keys) = handshake
            .answer(self.crypto.authority(), wall, offer)
            .map_err(|e| CallInputError::Identity(e.into()))?;
        // The envelope's sealer and the handshake's initiator must be the same device.
        if keys.peer.device_key != device {
            return Err(CallInputError::Identity(CallFailure::DeviceSubstituted {
                invited: device,
                answered: keys.peer.device_key,
            }));
        }
        let ringing = PeerToPeer::CallRinging {
            call_id,
            answer: answer.clone(),
        };
        self.legs.insert(
            key.clone(),
            Leg {
                role: CallRole::Callee,
                media,
                conference: conference.clone(),
                started: now,
                state: LegState::Ringing {
                    device,
                    handshake: Box::new(handshake),
                    keys: Box::new(keys),
                    answer: Box::new(answer),
                    deadline: now + self.config.ring_timeout + self.config.ring_refresh,
                },
                repeats: Vec::new(),
            },
        );
        let interval = self.config.ring_refresh;
        let count = repeats_within(self.config.ring_timeout, interval);
        self.send_repeated(now, &key, device, ringing, interval, count);
        self.events.push_back(CallEvent::Incoming {
            call_id,
            from: key.1.clone(),
            device,
            media,
            conference,
        });
        Ok(())
    }

    fn caller_inviting(
        &mut self,
        now: Instant,
        wall: UnixTime,
        key: &LegKey,
        device: PublicKey,
        message: PeerToPeer,
    ) {
        let authority = *self.crypto.authority();
        let Some(leg) = self.legs.get_mut(key) else {
            return;
        };
        let started = leg.started;
        let LegState::Inviting { devices, rang, .. } = &mut leg.state else {
            return;
        };
        let Some(invited) = devices.get_mut(&device) else {
            return;
        };
        match message {
            PeerToPeer::CallRinging { answer, .. } => {
                if !matches!(invited.status, DeviceStatus::Invited | DeviceStatus::Gone) {
                    return;
                }
                let checked = invited
                    .handshake
                    .finish(&authority, wall, &answer)
                    .map_err(CallFailure::from)
                    .and_then(|(confirm, keys)| {
                        if keys.peer.device_key != device {
                            return Err(CallFailure::DeviceSubstituted {
                                invited: device,
                                answered: keys.peer.device_key,
                            });
                        }
                        keys.ensure_peer(&key.1)?;
                        Ok((confirm, keys))
                    });
                match checked {
                    Ok((confirm, keys)) => {
                        invited.status = DeviceStatus::Ringing {
                            keys: Box::new(keys),
                            confirm,
                        };
                        leg.repeats.retain(|r| {
                            !(r.device == device
                                && matches!(r.message, PeerToPeer::CallInvite { .. }))
                        });
                        if !*rang {
                            *rang = true;
                            self.events.push_back(CallEvent::Ringing {
                                call_id: key.0,
                                peer: key.1.clone(),
                                setup: now.saturating_duration_since(started),
                            });
                        }
                    }
                    Err(failure) => {
                        self.end_actively(
                            now,
                            key,
                            EndReason::Failed,
                            Some(failure),
                            CancelReason::Hangup,
                        );
                    }
                }
            }
            PeerToPeer::CallAccept { call_id } => {
                let DeviceStatus::Ringing { keys, confirm } =
                    std::mem::replace(&mut invited.status, DeviceStatus::Gone)
                else {
                    return;
                };
                let mut others = BTreeMap::new();
                let cancel = PeerToPeer::CallCancel {
                    call_id,
                    reason: CancelReason::AnsweredElsewhere,
                };
                let mut to_cancel = Vec::new();
                for (other, invited) in devices.iter() {
                    if *other == device {
                        continue;
                    }
                    others.insert(*other, cancel.clone());
                    if matches!(
                        invited.status,
                        DeviceStatus::Invited | DeviceStatus::Ringing { .. }
                    ) {
                        to_cancel.push(*other);
                    }
                }
                let media = leg.media;
                leg.repeats.clear();
                leg.state = LegState::Connected {
                    device,
                    confirm: Some(confirm),
                    others,
                    connected_at: now,
                    held_local: false,
                    held_remote: false,
                };
                self.send(key, device, &PeerToPeer::CallConfirm { call_id, confirm });
                for other in to_cancel {
                    self.send(key, other, &cancel);
                }
                self.events.push_back(CallEvent::MediaKeys {
                    call_id,
                    peer: key.1.clone(),
                    device,
                    keys: *keys,
                });
                self.events.push_back(CallEvent::Connected {
                    call_id,
                    peer: key.1.clone(),
                    device,
                    role: CallRole::Caller,
                    media,
                    setup: now.saturating_duration_since(started),
                });
            }
            PeerToPeer::CallDecline { call_id, reason } => {
                invited.status = DeviceStatus::Declined(reason);
                leg.stop_repeats_to(&device);
                if reason == DeclineReason::Declined {
                    let replies = self.cancel_others(key, device, call_id);
                    self.end(now, key, EndReason::Declined, None, replies);
                } else {
                    self.check_all_refused(now, key);
                }
            }
            // Early candidates from a ringing (verified) device, so hole punching can start
            // before the answer.
            PeerToPeer::Candidates {
                call_id,
                ufrag,
                password,
                candidates,
            } if matches!(invited.status, DeviceStatus::Ringing { .. }) => {
                self.events.push_back(CallEvent::Candidates {
                    call_id,
                    peer: key.1.clone(),
                    device,
                    ufrag,
                    password,
                    candidates,
                });
            }
            _ => {}
        }
    }

    /// Cancels every device still invited or ringing except `except`; returns the replies
    /// for the tombstone.
    fn cancel_others(
        &mut self,
        key: &LegKey,
        except: PublicKey,
        call_id: CallId,
    ) -> BTreeMap<PublicKey, PeerToPeer> {
        let cancel = PeerToPeer::CallCancel {
            call_id,
            reason: CancelReason::AnsweredElsewhere,
        };
        let pending: Vec<PublicKey> = match self.legs.get(key).map(|l| &l.state) {
            Some(LegState::Inviting { devices, .. }) => devices
                .iter()
                .filter(|(d, i)| {
                    **d != except
                        && matches!(
                            i.status,
                            DeviceStatus::Invited | DeviceStatus::Ringing { .. }
                        )
                })
                .map(|(d, _)| *d)
                .collect(),
            _ => Vec::new(),
        };
        let mut replies = BTreeMap::new();
        for device in pending {
            self.send(key, device, &cancel);
            replies.insert(device, cancel.clone());
        }
        replies
    }

    /// Ends an inviting leg when no device can still answer.
    fn check_all_refused(&mut self, now: Instant, key: &LegKey) {
        let Some(LegState::Inviting { devices, .. }) = self.legs.get(key).map(|l| &l.state) else {
            return;
        };
        let open = devices.values().any(|i| {
            matches!(
                i.status,
                DeviceStatus::Invited | DeviceStatus::Ringing { .. }
            )
        });
        if open {
            return;
        }
        let busy = devices
            .values()
            .any(|i| matches!(i.status, DeviceStatus::Declined(DeclineReason::Busy)));
        let reason = if busy {
            EndReason::Busy
        } else {
            EndReason::Unreachable
        };
        self.end(now, key, reason, None, BTreeMap::new());
    }

    fn callee_answering(
        &mut self,
        now: Instant,
        key: &LegKey,
        device: PublicKey,
        message: PeerToPeer,
    ) {
        let Some(leg) = self.legs.get_mut(key) else {
            return;
        };
        match message {
            PeerToPeer::CallInvite { call_id, .. } => {
                let answer = match &leg.state {
                    LegState::Ringing { answer, .. } | LegState::Accepting { answer, .. } => {
                        (**answer).clone()
                    }
                    _ => return,
                };
                self.send(key, device, &PeerToPeer::CallRinging { call_id, answer });
            }
            PeerToPeer::CallCancel { reason, .. } => {
                let reason = match reason {
                    CancelReason::Hangup => EndReason::Hangup,
                    CancelReason::AnsweredElsewhere => EndReason::AnsweredElsewhere,
                    CancelReason::Timeout => EndReason::Timeout,
                };
                self.end(now, key, reason, None, BTreeMap::new());
            }
            PeerToPeer::CallConfirm { call_id, confirm } => {
                let state = std::mem::replace(
                    &mut leg.state,
                    LegState::Ended {
                        replies: BTreeMap::new(),
                        until: now,
                    },
                );
                let LegState::Accepting {
                    handshake,
                    keys,
                    accepted_at,
                    ..
                } = state
                else {
                    leg.state = state;
                    return;
                };
                if let Err(e) = handshake.check_confirm(&keys, &confirm) {
                    let hangup = PeerToPeer::CallHangup { call_id };
                    self.send(key, device, &hangup);
                    self.end(
                        now,
                        key,
                        EndReason::Failed,
                        Some(e.into()),
                        BTreeMap::from([(device, hangup)]),
                    );
                    return;
                }
                leg.repeats.clear();
                let media = leg.media;
                leg.state = LegState::Connected {
                    device,
                    confirm: None,
                    others: BTreeMap::new(),
                    connected_at: now,
                    held_local: false,
                    held_remote: false,
                };
                self.events.push_back(CallEvent::MediaKeys {
                    call_id,
                    peer: key.1.clone(),
                    device,
                    keys: *keys,
                });
                self.events.push_back(CallEvent::Connected {
                    call_id,
                    peer: key.1.clone(),
                    device,
                    role: CallRole::Callee,
                    media,
                    setup: now.saturating_duration_since(accepted_at),
                });
            }
            PeerToPeer::Candidates {
                call_id,
                ufrag,
                password,
                candidates,
            } => self.events.push_back(CallEvent::Candidates {
                call_id,
                peer: key.1.clone(),
                device,
                ufrag,
                password,
                candidates,
            }),
            _ => {}
        }
    }

    fn connected(&mut self, now: Instant, key: &LegKey, device: PublicKey, message: PeerToPeer) {
        let Some(leg) = self.legs.get_mut(key) else {
            return;
        };
        let LegState::Connected {
            device: peer_device,
            confirm,
            others,
            held_remote,
            ..
        } = &mut leg.state
        else {
            return;
        };
        let call_id = key.0;
        let peer = key.1.clone();
        if device != *peer_device {
            let reply = others.get(&device).cloned();
            if let Some(reply) = reply
                && !matches!(
                    message,
                    PeerToPeer::CallCancel { .. }
                        | PeerToPeer::CallDecline { .. }
                        | PeerToPeer::CallHangup { .. }
                )
            {
                self.send(key, device, &reply);
            }
            return;
        }
        match message {
            PeerToPeer::CallAccept { .. } => {
                if let Some(confirm) = *confirm {
                    self.send(key, device, &PeerToPeer::CallConfirm { call_id, confirm });
                }
            }
            PeerToPeer::CallConfirm { .. } => {
                // The confirmation arrived: the callee stops repeating its acceptance.
                leg.repeats
                    .retain(|r| !matches!(r.message, PeerToPeer::CallAccept { .. }));
            }
            PeerToPeer::CallHold { .. } if !*held_remote => {
                *held_remote = true;
                self.events.push_back(CallEvent::Held {
                    call_id,
                    peer,
                    by_peer: true,
                });
            }
            PeerToPeer::CallResume { .. } if *held_remote => {
                *held_remote = false;
                self.events.push_back(CallEvent::Resumed {
                    call_id,
                    peer,
                    by_peer: true,
                });
            }
            PeerToPeer::CallHangup { .. } | PeerToPeer::CallCancel { .. } => {
                let hangup = PeerToPeer::CallHangup { call_id };
                // One answer, so the peer stops repeating its hang-up.
                self.send(key, device, &hangup);
                self.end(
                    now,
                    key,
                    EndReason::Hangup,
                    None,
                    BTreeMap::from([(device, hangup)]),
                );
            }
            PeerToPeer::Candidates {
                ufrag,
                password,
                candidates,
                ..
            } => self.events.push_back(CallEvent::Candidates {
                call_id,
                peer,
                device,
                ufrag,
                password,
                candidates,
            }),
            _ => {}
        }
    }

    fn state_timeout(&mut self, now: Instant, key: &LegKey) {
        let Some(leg) = self.legs.get(key) else {
            return;
        };
        match &leg.state {
            LegState::Inviting {
                rang,
                ring_deadline,
                unreachable_deadline,
                ..
            } => {
                if now >= *ring_deadline {
                    self.end_actively(now, key, EndReason::Timeout, None, CancelReason::Timeout);
                } else if !*rang && now >= *unreachable_deadline {
                    self.end_actively(
                        now,
                        key,
                        EndReason::Unreachable,
                        None,
                        CancelReason::Timeout,
                    );
                }
            }
            LegState::Ringing { deadline, .. } if now >= *deadline => {
                self.end(now, key, EndReason::Timeout, None, BTreeMap::new());
            }
            LegState::Accepting {
                deadline, device, ..
            } if now >= *deadline => {
                let device = *device;
                let hangup = PeerToPeer::CallHangup { call_id: key.0 };
                self.send(key, device, &hangup);
                self.end(
                    now,
                    key,
                    EndReason::Failed,
                    Some(CallFailure::NoConfirm),
                    BTreeMap::from([(device, hangup)]),
                );
            }
            LegState::Ended { until, .. } if now >= *until => {
                self.legs.remove(key);
            }
            _ => {}
        }
    }

    /// Ends a leg this side decides to end: cancels pending invitations, or hangs up on the
    /// connected device, repeating the final message a few times.
    fn end_actively(
        &mut self,
        now: Instant,
        key: &LegKey,
        reason: EndReason,
        error: Option<CallFailure>,
        cancel_reason: CancelReason,
    ) {
        let call_id = key.0;
        let targets: Vec<(PublicKey, PeerToPeer)> = match self.legs.get(key).map(|l| &l.state) {
            Some(LegState::Inviting { devices, .. }) => devices
                .iter()
                .filter(|(_, i)| {
                    matches!(
                        i.status,
                        DeviceStatus::Invited | DeviceStatus::Ringing { .. }
                    )
                })
                .map(|(d, _)| {
                    (
                        *d,
                        PeerToPeer::CallCancel {
                            call_id,
                            reason: cancel_reason,
                        },
                    )
                })
                .collect(),
            Some(LegState::Accepting { device, .. }) | Some(LegState::Connected { device, .. }) => {
                vec![(*device, PeerToPeer::CallHangup { call_id })]
            }
            Some(LegState::Ringing { device, .. }) => vec![(
                *device,
                PeerToPeer::CallDecline {
                    call_id,
                    reason: DeclineReason::Declined,
                },
            )],
            _ => return,
        };
        let replies: BTreeMap<PublicKey, PeerToPeer> = targets.iter().cloned().collect();
        self.end(now, key, reason, error, replies);
        let interval = self.config.retransmit_interval;
        let count = self.config.repeat_count;
        for (device, message) in targets {
            self.send_repeated(now, key, device, message, interval, count);
        }
    }

    fn end(
        &mut self,
        now: Instant,
        key: &LegKey,
        reason: EndReason,
        error: Option<CallFailure>,
        replies: BTreeMap<PublicKey, PeerToPeer>,
    ) {
        let until = now + self.config.tombstone_for;
        let Some(leg) = self.legs.get_mut(key) else {
            return;
        };
        let duration = match &leg.state {
            LegState::Connected { connected_at, .. } => {
                Some(now.saturating_duration_since(*connected_at))
            }
            LegState::Ended { .. } => return,
            _ => None,
        };
        leg.repeats.clear();
        leg.state = LegState::Ended { replies, until };
        self.events.push_back(CallEvent::Ended {
            call_id: key.0,
            peer: key.1.clone(),
            reason,
            error,
            duration,
        });
    }

    /// Seals and queues one message; `None` when sealing failed (nothing to send).
    fn send(&mut self, key: &LegKey, device: PublicKey, message: &PeerToPeer) -> Option<u64> {
        let payload = self.crypto.seal(&device, message).ok()?;
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        if matches!(
            message,
            PeerToPeer::CallHangup { .. }
                | PeerToPeer::CallCancel { .. }
                | PeerToPeer::CallDecline { .. }
        ) {
            self.ending_tokens.insert(token);
            while self.ending_tokens.len() > MAX_ENDING_TOKENS {
                self.ending_tokens.pop_first();
            }
        }
        self.transmits.push_back(PeerTransmit {
            token,
            to: key.1.clone(),
            to_device: device,
            payload,
        });
        Some(token)
    }

    /// Sends now and `count - 1` more times, `interval` apart, unless cancelled.
    fn send_repeated(
        &mut self,
        now: Instant,
        key: &LegKey,
        device: PublicKey,
        message: PeerToPeer,
        interval: Duration,
        count: u32,
    ) -> Option<u64> {
        let token = self.send(key, device, &message);
        if count > 1
            && let Some(leg) = self.legs.get_mut(key)
        {
            leg.repeats.push(Repeat {
                device,
                message,
                next_at: now + interval,
                interval,
                remaining: count - 1,
            });
        }
        token
    }
}

fn repeats_within(total: Duration, interval: Duration) -> u32 {
    if interval.is_zero() {
        return 1;
    }
    u32::try_from(total.as_millis() / interval.as_millis().max(1))
        .unwrap_or(u32::MAX)
        .max(1)
}
