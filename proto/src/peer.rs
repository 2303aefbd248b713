//! What one user's device says to another's: call signalling and chat.
//!
//! [`PeerToPeer`] messages never travel in the clear. They are sealed to the recipient
//! device ([`crate::e2e::seal`]) and routed through supernodes, or sent inside an
//! established end-to-end session (direct or relayed). Supernodes see only the routing
//! fields of the envelope around them.
//!
//! A call: the caller sends `CallInvite` (with its handshake offer) to every device of the
//! callee; each device that rings answers `CallRinging` (with its handshake answer); the
//! device that is picked up sends `CallAccept`; the caller sends `CallConfirm` (completing the
//! handshake) to that device and `CallCancel { AnsweredElsewhere }` to the others. Either
//! side may then exchange `Candidates` for hole punching, `CallHold` / `CallResume`, and end
//! with `CallHangup`.

use crate::e2e::HandshakeMessage;
use crate::keys::Signature;
use crate::kind::wire_kinds;
use crate::names::{CallId, MessageId, UserName};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The most characters of one chat message's text.
pub const MAX_CHAT_CHARS: usize = 4000;
/// The most candidates one message carries.
pub const MAX_CANDIDATES: usize = 16;
/// The most participants of a conference, the host included.
pub const MAX_CONFERENCE: usize = 5;
/// The most ids one receipt acknowledges.
pub const MAX_RECEIPT_IDS: usize = 256;

/// The audio a caller proposes; the callee uses it or declines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaParams {
    /// Opus at 48 kHz, mono.
    pub frame_millis: u8,
    /// Target bitrate.
    pub bitrate_bps: u32,
    /// In-band FEC enabled on the sender.
    pub fec: bool,
    /// Deep redundancy (DRED) enabled on the sender.
    pub dred: bool,
}

impl Default for MediaParams {
    fn default() -> Self {
        Self {
            frame_millis: 20,
            bitrate_bps: 28_000,
            fec: true,
            dred: false,
        }
    }
}

/// How a candidate address was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum CandidateKind {
    /// An address of the device's own interface.
    Host = 0,
    /// The public address a STUN server saw.
    ServerReflexive = 1,
    /// An address on a TURN relay.
    Relayed = 2,
}

/// A transport address the peer may be reached at, for hole punching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Candidate {
    pub kind: CandidateKind,
    pub addr: SocketAddr,
    pub priority: u32,
}

/// Why a call was not taken or ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum DeclineReason {
    /// The user declined.
    Declined = 0,
    /// Already in a call.
    Busy = 1,
    /// The device cannot take calls (no audio device, incompatible media).
    Unavailable = 2,
}

/// Why a caller withdrew an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum CancelReason {
    /// The caller hung up before an answer.
    Hangup = 0,
    /// Another of the callee's devices answered.
    AnsweredElsewhere = 1,
    /// Nobody answered in time.
    Timeout = 2,
}

/// One chat message as the sender wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Unique end to end: the unit of de-duplication.
    pub id: MessageId,
    /// Milliseconds since the Unix epoch on the sender's clock.
    pub sent_at_millis: u64,
    /// Per conversation, per sending device: receivers order by it and detect gaps.
    pub seq: u64,
    pub text: String,
}

impl ChatMessage {
    /// Checks the bounds a receiver enforces.
    pub fn validate(&self) -> Result<(), PeerMessageError> {
        if self.text.chars().count() > MAX_CHAT_CHARS {
            return Err(PeerMessageError::TooLong);
        }
        Ok(())
    }
}

/// A peer message broke a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerMessageError {
    #[error("message text is longer than {MAX_CHAT_CHARS} characters")]
    TooLong,
    #[error("too many items in one message")]
    TooMany,
}

/// Device-to-device messages, end-to-end encrypted. Append-only: explicit discriminants
/// equal to position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u32)]
pub enum PeerToPeer {
    /// Invites the device to a call and opens the end-to-end handshake.
    CallInvite {
        call_id: CallId,
        offer: HandshakeMessage,
        media: MediaParams,
        /// Everyone already in the call when this is a conference invitation.
        conference: Vec<UserName>,
    } = 0,
    /// The device is ringing; completes the handshake on the callee's side.
    CallRinging {
        call_id: CallId,
        answer: HandshakeMessage,
    } = 1,
    /// The user picked up on this device.
    CallAccept { call_id: CallId } = 2,
    /// The caller's handshake confirmation, sent to the device that answered.
    CallConfirm { call_id: CallId, confirm: Signature } = 3,
    /// The callee will not take the call.
    CallDecline {
        call_id: CallId,
        reason: DeclineReason,
    } = 4,
    /// The caller withdraws the invitation.
    CallCancel {
        call_id: CallId,
        reason: CancelReason,
    } = 5,
    /// Either side ends an established call.
    CallHangup { call_id: CallId } = 6,
    /// The sender put the call on hold: expect one keep-alive every 3 s.
    CallHold { call_id: CallId } = 7,
    /// The sender took the call off hold.
    CallResume { call_id: CallId } = 8,
    /// Addresses for hole punching, with the short-term STUN credentials of the checks.
    Candidates {
        call_id: CallId,
        ufrag: String,
        password: String,
        candidates: Vec<Candidate>,
    } = 9,
    /// A chat message.
    Chat(ChatMessage) = 10,
    /// The listed messages arrived on the sending device (delivery receipts).
    ChatDelivered { ids: Vec<MessageId> } = 11,
}

wire_kinds!(
    PeerToPeer,
    12,
    [
        CallInvite,
        CallRinging,
        CallAccept,
        CallConfirm,
        CallDecline,
        CallCancel,
        CallHangup,
        CallHold,
        CallResume,
        Candidates,
        Chat,
        ChatDelivered,
    ]
);

impl PeerToPeer {
    /// Checks the bounds a receiver enforces beyond decoding.
    pub fn validate(&self) -> Result<(), PeerMessageError> {
        match self {
            Self::Chat(message) => message.validate(),
            Self::ChatDelivered { ids } if ids.len() > MAX_RECEIPT_IDS => {
                Err(PeerMessageError::TooMany)
            }
            Self::Candidates { candidates, .. } if candidates.len() > MAX_CANDIDATES => {
                Err(PeerMessageError::TooMany)
            }
            Self::CallInvite { conference, .. } if conference.len() >= MAX_CONFERENCE => {
                Err(PeerMessageError::TooMany)
            }
            _ => Ok(()),
        }
    }

    /// The call this message belongs to, if any.
    pub fn call_id(&self) -> Option<CallId> {
        match self {
            Self::CallInvite { call_id, .. }
            | Self::CallRinging { call_id, .. }
            | Self::CallAccept { call_id }
            | Self::CallConfirm { call_id, .. }
            | Self::CallDecline { call_id, .. }
            | Self::CallCancel { call_id, .. }
            | Self::CallHangup { call_id }
            | Self::CallHold { call_id }
            | Self::CallResume { call_id }
            | Self::Candidates { call_id, .. } => Some(*call_id),
            Self::Chat(_) | Self::ChatDelivered { .. } => None,
        }
    }
}

/// The context every device-to-device envelope is sealed under, routed or stored offline.
pub const PEER_CONTEXT: &[u8] = b"peerphone/v1/peer-to-peer";

/// The most device copies one offline bundle carries.
pub const MAX_OFFLINE_COPIES: usize = crate::supernode::MAX_DEVICES_PER_USER;

/// A routed payload or offline bundle could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerEnvelopeError {
    /// The bytes are not an envelope (or bundle of envelopes).
    #[error("not a sealed envelope")]
    Malformed,
    /// No copy in an offline bundle is sealed to this device.
    #[error("no copy of the message is sealed to this device")]
    NotForUs,
    /// The envelope failed end-to-end checks (decryption, identity).
    #[error(transparent)]
    E2e(#[from] crate::e2e::E2eError),
    /// The inner message does not decode.
    #[error("peer message does not decode: {0}")]
    Decode(crate::kind::DecodeError),
    /// The inner message breaks a bound.
    #[error(transparent)]
    Bounds(#[from] PeerMessageError),
    /// The sealed message is larger than a routed payload may be.
    #[error("sealed message of {0} bytes is too large")]
    TooLarge(usize),
}

/// Seals one message to one device; the bytes are a `Route` payload
/// (`postcard(SealedEnvelope)` over `postcard(PeerToPeer)`).
pub fn seal_peer_message(
    sender_key: &crate::keys::SecretKey,
    sender_credential: &crate::credential::SignedCredential,
    recipient: &crate::keys::PublicKey,
    message: &PeerToPeer,
) -> Result<Vec<u8>, PeerEnvelopeError> {
    let body = postcard::to_allocvec(message).map_err(|_| PeerEnvelopeError::Malformed)?;
    let envelope = crate::e2e::seal(
        sender_key,
        sender_credential,
        recipient,
        PEER_CONTEXT,
        &body,
    )?;
    let bytes = postcard::to_allocvec(&envelope).map_err(|_| PeerEnvelopeError::Malformed)?;
    if bytes.len() > crate::supernode::MAX_ROUTE_PAYLOAD {
        return Err(PeerEnvelopeError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Opens a `Routed` payload sealed to this device: verifies the sender's credential against
/// the authority at `now`, decodes and bounds-checks the message. The returned credential
/// is the only trustworthy sender identity (the supernode's `from` fields are not).
pub fn open_peer_message(
    recipient_key: &crate::keys::SecretKey,
    authority: &crate::keys::PublicKey,
    now: crate::time::UnixTime,
    payload: &[u8],
) -> Result<(crate::credential::Credential, PeerToPeer), PeerEnvelopeError> {
    if payload.len() > crate::supernode::MAX_ROUTE_PAYLOAD {
        return Err(PeerEnvelopeError::TooLarge(payload.len()));
    }
    let envelope: crate::e2e::SealedEnvelope =
        crate::frame::decode_body(payload).map_err(|_| PeerEnvelopeError::Malformed)?;
    open_envelope(recipient_key, authority, now, &envelope)
}

fn open_envelope(
    recipient_key: &crate::keys::SecretKey,
    authority: &crate::keys::PublicKey,
    now: crate::time::UnixTime,
    envelope: &crate::e2e::SealedEnvelope,
) -> Result<(crate::credential::Credential, PeerToPeer), PeerEnvelopeError> {
    let opened = crate::e2e::open(recipient_key, authority, now, PEER_CONTEXT, envelope)?;
    let message = PeerToPeer::decode(&opened.payload).map_err(PeerEnvelopeError::Decode)?;
    message.validate()?;
    Ok((opened.sender, message))
}

/// Bundles the copies of one message sealed to each of the recipient's devices, for the
/// offline mailbox (`Envelope::sealed`): the mailbox keeps one envelope per message id, and
/// whichever device logs in next picks its own copy. Copies that would not fit in
/// [`crate::login::MAX_SEALED_BYTES`] are left out (earlier recipients first).
pub fn seal_offline_bundle(
    sender_key: &crate::keys::SecretKey,
    sender_credential: &crate::credential::SignedCredential,
    recipients: &[crate::keys::PublicKey],
    message: &PeerToPeer,
) -> Result<Vec<u8>, PeerEnvelopeError> {
    let body = postcard::to_allocvec(message).map_err(|_| PeerEnvelopeError::Malformed)?;
    let mut copies: Vec<crate::e2e::SealedEnvelope> = Vec::new();
    let mut bytes = postcard::to_allocvec(&copies).map_err(|_| PeerEnvelopeError::Malformed)?;
    for recipient in recipients.iter().take(MAX_OFFLINE_COPIES) {
        let envelope = crate::e2e::seal(
            sender_key,
            sender_credential,
            recipient,
            PEER_CONTEXT,
            &body,
        )?;
        copies.push(envelope);
        let candidate = postcard::to_allocvec(&copies).map_err(|_| PeerEnvelopeError::Malformed)?;
        if candidate.len() > crate::login::MAX_SEALED_BYTES {
            copies.pop();
            break;
        }
        bytes = candidate;
    }
    if copies.is_empty() {
        return Err(PeerEnvelopeError::TooLarge(body.len()));
    }
    Ok(bytes)
}

/// Opens this device's copy in an offline bundle (see [`seal_offline_bundle`]).
pub fn open_offline_bundle(
    recipient_key: &crate::keys::SecretKey,
    authority: &crate::keys::PublicKey,
    now: crate::time::UnixTime,
    sealed: &[u8],
) -> Result<(crate::credential::Credential, PeerToPeer), PeerEnvelopeError> {
    if sealed.len() > crate::login::MAX_SEALED_BYTES {
        return Err(PeerEnvelopeError::TooLarge(sealed.len()));
    }
    let copies: Vec<crate::e2e::SealedEnvelope> =
        crate::frame::decode_body(sealed).map_err(|_| PeerEnvelopeError::Malformed)?;
    if copies.len() > MAX_OFFLINE_COPIES {
        return Err(PeerEnvelopeError::Malformed);
    }
    let me = recipient_key.public();
    let copy = copies
        .iter()
        .find(|c| c.recipient == me)
        .ok_or(PeerEnvelopeError::NotForUs)?;
    open_envelope(recipient_key, authority, now, copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{Credential, SignedCredential};
    use crate::e2e::{Handshake, Role};
    use crate::keys::SecretKey;
    use crate::kind::DecodeError;
    use crate::names::DisplayName;
    use crate::time::UnixTime;

    fn handshake_message() -> HandshakeMessage {
        let key = SecretKey::from_bytes(&[1; 32]);
        let claims = Credential {
            serial: 1,
            user: UserName::new("alice").expect("valid"),
            display_name: DisplayName::default(),
            device_key: key.public(),
            issued_at: UnixTime::from_secs(0),
            expires_at: UnixTime::from_secs(10),
        };
        let credential = SignedCredential::issue(&claims, &SecretKey::from_bytes(&[2; 32]));
        Handshake::new(Role::Initiator, b"x", key, credential).offer()
    }

    fn samples() -> Vec<PeerToPeer> {
        let call_id = CallId([3; 16]);
        let hs = handshake_message();
        vec![
            PeerToPeer::CallInvite {
                call_id,
                offer: hs.clone(),
                media: MediaParams::default(),
                conference: vec![],
            },
            PeerToPeer::CallRinging {
                call_id,
                answer: hs.clone(),
            },
            PeerToPeer::CallAccept { call_id },
            PeerToPeer::CallConfirm {
                call_id,
                confirm: hs.signature,
            },
            PeerToPeer::CallDecline {
                call_id,
                reason: DeclineReason::Busy,
            },
            PeerToPeer::CallCancel {
                call_id,
                reason: CancelReason::AnsweredElsewhere,
            },
            PeerToPeer::CallHangup { call_id },
            PeerToPeer::CallHold { call_id },
            PeerToPeer::CallResume { call_id },
            PeerToPeer::Candidates {
                call_id,
                ufrag: "u".into(),
                password: "p".into(),
                candidates: vec![Candidate {
                    kind: CandidateKind::ServerReflexive,
                    addr: "203.0.113.5:4000".parse().expect("addr"),
                    priority: 100,
                }],
            },
            PeerToPeer::Chat(ChatMessage {
                id: MessageId([4; 16]),
                sent_at_millis: 1,
                seq: 2,
                text: "hi".into(),
            }),
            PeerToPeer::ChatDelivered {
                ids: vec![MessageId([4; 16])],
            },
        ]
    }

    #[test]
    fn wire_kinds_are_pinned_to_their_discriminants() {
        let samples = samples();
        assert_eq!(samples.len() as u32, PeerToPeer::KINDS);
        for (i, message) in samples.into_iter().enumerate() {
            let bytes = postcard::to_allocvec(&message).expect("encode");
            assert_eq!(
                crate::kind::leading_kind(&bytes),
                Some(i as u32),
                "{}",
                message.name()
            );
            assert_eq!(PeerToPeer::decode(&bytes).expect("decode"), message);
        }
    }

    #[test]
    fn unknown_kinds_and_bounds_are_typed_errors() {
        assert_eq!(PeerToPeer::decode(&[40]), Err(DecodeError::UnknownKind(40)));
        assert!(matches!(
            PeerToPeer::decode(&[10]),
            Err(DecodeError::Malformed(_))
        ));
        let long = PeerToPeer::Chat(ChatMessage {
            id: MessageId([0; 16]),
            sent_at_millis: 0,
            seq: 0,
            text: "é".repeat(MAX_CHAT_CHARS + 1),
        });
        assert_eq!(long.validate(), Err(PeerMessageError::TooLong));
        let many = PeerToPeer::ChatDelivered {
            ids: vec![MessageId([0; 16]); MAX_RECEIPT_IDS + 1],
        };
        assert_eq!(many.validate(), Err(PeerMessageError::TooMany));
    }

    fn device(authority: &SecretKey, name: &str) -> (SecretKey, SignedCredential) {
        let key = SecretKey::generate();
        let claims = Credential {
            serial: 7,
            user: UserName::new(name).expect("valid"),
            display_name: DisplayName::default(),
            device_key: key.public(),
            issued_at: UnixTime::from_secs(100),
            expires_at: UnixTime::from_secs(10_000),
        };
        let credential = SignedCredential::issue(&claims, authority);
        (key, credential)
    }

    #[test]
    fn routed_and_offline_envelopes_round_trip_and_refuse_corruption() {
        let authority = SecretKey::generate();
        let (alice_key, alice_cred) = device(&authority, "alice");
        let (bob1, _) = device(&authority, "bob");
        let (bob2, _) = device(&authority, "bob");
        let now = UnixTime::from_secs(500);
        let message = PeerToPeer::Chat(ChatMessage {
            id: MessageId([9; 16]),
            sent_at_millis: 5,
            seq: 0,
            text: "hello".into(),
        });
        let payload =
            seal_peer_message(&alice_key, &alice_cred, &bob1.public(), &message).expect("seal");
        let (sender, opened) =
            open_peer_message(&bob1, &authority.public(), now, &payload).expect("open");
        assert_eq!(sender.user.as_str(), "alice");
        assert_eq!(opened, message);
        assert_eq!(
            open_peer_message(&bob2, &authority.public(), now, &payload),
            Err(PeerEnvelopeError::E2e(crate::e2e::E2eError::WrongContext))
        );
        let bundle = seal_offline_bundle(
            &alice_key,
            &alice_cred,
            &[bob1.public(), bob2.public()],
            &message,
        )
        .expect("bundle");
        for bob in [&bob1, &bob2] {
            let (_, opened) =
                open_offline_bundle(bob, &authority.public(), now, &bundle).expect("open");
            assert_eq!(opened, message);
        }
        assert_eq!(
            open_offline_bundle(&alice_key, &authority.public(), now, &bundle),
            Err(PeerEnvelopeError::NotForUs)
        );
        // Every truncation and single-byte corruption is an error, never a panic.
        for i in 0..payload.len() {
            assert!(open_peer_message(&bob1, &authority.public(), now, &payload[..i]).is_err());
            let mut bad = payload.clone();
            bad[i] ^= 0x41;
            assert!(open_peer_message(&bob1, &authority.public(), now, &bad).is_err());
        }
        for i in (0..bundle.len()).step_by(7) {
            let mut bad = bundle.clone();
            bad[i] ^= 0x41;
            let _ = open_offline_bundle(&bob1, &authority.public(), now, &bad);
        }
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_open(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let key = SecretKey::from_bytes(&[5; 32]);
            let authority = SecretKey::from_bytes(&[6; 32]).public();
            proptest::prop_assert!(open_peer_message(&key, &authority, UnixTime::from_secs(1), &bytes).is_err());
            proptest::prop_assert!(open_offline_bundle(&key, &authority, UnixTime::from_secs(1), &bytes).is_err());
        }
    }
}
