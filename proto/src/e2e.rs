//! End-to-end encryption between users' devices. Supernodes, relays and the login server
//! carry only what this module produces and can read none of it.
//!
//! Two tools:
//! - [`seal`] / [`open`]: a one-shot envelope to one device (offline chat in the mailbox,
//!   a call invitation routed through supernodes). An ephemeral X25519 key agrees a fresh
//!   key with the recipient's identity key; inside, the sender's credential and signature
//!   bind the envelope to the sender's identity, the recipient's key and the context.
//! - [`Handshake`]: a live session between two devices (a call or a chat session). Each
//!   side sends a fresh X25519 key with its credential and a signature over the transcript;
//!   both derive one key per direction. A supernode that swaps keys or credentials makes
//!   the handshake fail with [`E2eError::Identity`].
//!
//! The identity checks go through the authority key ([`SignedCredential::verify_for_key`]):
//! a peer is who the login server says the key belongs to.

use crate::credential::{Credential, CredentialError, SignedCredential};
use crate::keys::{PublicKey, SecretKey, Signature, SigningDomain};
use crate::time::UnixTime;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Largest payload an envelope carries (bounds memory on decode).
pub const MAX_SEALED_PAYLOAD: usize = 48 * 1024;

/// Why an end-to-end operation failed, by who is to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eError {
    /// The bytes are not an envelope or handshake message.
    #[error("malformed end-to-end message")]
    Malformed,
    /// Decryption failed: tampered with, or not for us.
    #[error("end-to-end message does not decrypt (tampered with, or not for this device)")]
    Decrypt,
    /// The peer's identity could not be verified: a wrong, expired or forged credential, or
    /// a signature that does not match it. A supernode swapping keys ends up here.
    #[error("peer identity could not be verified: {0}")]
    Identity(#[from] CredentialError),
    /// The signature over the transcript is wrong.
    #[error("peer identity could not be verified: bad signature")]
    BadSignature,
    /// The peer proved an identity, but not the one we meant to talk to.
    #[error("peer identity could not be verified: the peer is not the user we meant to reach")]
    UnexpectedPeer {
        expected: crate::names::UserName,
        actual: crate::names::UserName,
    },
    /// Our own handshake message came back to us.
    #[error("peer identity could not be verified: our own message was reflected")]
    Reflected,
    /// A Diffie-Hellman input was a low-order point.
    #[error("peer sent a weak key")]
    WeakKey,
    /// The message was for another context (another call, another recipient).
    #[error("end-to-end message belongs to another context")]
    WrongContext,
}

/// An envelope sealed to one device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedEnvelope {
    /// The recipient device (so a multi-device user's client picks its copy).
    pub recipient: PublicKey,
    ephemeral: [u8; 32],
    #[serde(with = "serde_bytes")]
    ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SealedEnvelope(to {:?}, {} bytes)",
            self.recipient,
            self.ciphertext.len()
        )
    }
}

#[derive(Serialize, Deserialize)]
struct SealedInner {
    sender: SignedCredential,
    signature: Signature,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

/// What [`open`] found inside an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender, as certified by the authority.
    pub sender: Credential,
    pub payload: Vec<u8>,
}

fn seal_key(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &PublicKey) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"peerphone/v1/seal"), shared);
    let mut info = Vec::with_capacity(64);
    info.extend_from_slice(ephemeral);
    info.extend_from_slice(recipient.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand(&info, key.as_mut())
        .expect("invariant: 32 bytes is a valid HKDF-SHA256 output length");
    key
}

fn seal_statement(
    recipient: &PublicKey,
    ephemeral: &[u8; 32],
    context: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(recipient.as_bytes());
    h.update(ephemeral);
    h.update((context.len() as u64).to_be_bytes());
    h.update(context);
    h.update(payload);
    h.finalize().to_vec()
}

/// Seals `payload` to `recipient`'s device, signed by the sender's device key.
///
/// `context` (for example `b"chat"` or a call id) is authenticated but not sent; the
/// recipient must pass the same context to [`open`].
pub fn seal(
    sender_key: &SecretKey,
    sender_credential: &SignedCredential,
    recipient: &PublicKey,
    context: &[u8],
    payload: &[u8],
) -> Result<SealedEnvelope, E2eError> {
    if payload.len() > MAX_SEALED_PAYLOAD {
        return Err(E2eError::Malformed);
    }
    let ephemeral_secret = x25519_dalek::StaticSecret::random_from_rng(&mut rand::rng());
    let ephemeral = x25519_dalek::PublicKey::from(&ephemeral_secret).to_bytes();
    let shared = ephemeral_secret.diffie_hellman(&recipient.to_x25519());
    if !shared.was_contributory() {
        return Err(E2eError::WeakKey);
    }
    let key = seal_key(shared.as_bytes(), &ephemeral, recipient);
    let signature = sender_key.sign(
        SigningDomain::DeviceStatement,
        &seal_statement(recipient, &ephemeral, context, payload),
    );
    let inner = SealedInner {
        sender: sender_credential.clone(),
        signature,
        payload: payload.to_vec(),
    };
    let plaintext = Zeroizing::new(postcard::to_allocvec(&inner).map_err(|_| E2eError::Malformed)?);
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    // The key is fresh for every envelope, so a fixed nonce is safe.
    let ciphertext = cipher
        .encrypt(
            &Nonce::default(),
            Payload {
                msg: &plaintext,
                aad: context,
            },
        )
        .map_err(|_| E2eError::Malformed)?;
    Ok(SealedEnvelope {
        recipient: *recipient,
        ephemeral,
        ciphertext,
    })
}

/// Opens an envelope sealed to `recipient_key`, verifying the sender's credential against the
/// authority at `now` and the sender's signature over the contents.
pub fn open(
    recipient_key: &SecretKey,
    authority: &PublicKey,
    now: UnixTime,
    context: &[u8],
    envelope: &SealedEnvelope,
) -> Result<Opened, E2eError> {
    let recipient = recipient_key.public();
    if envelope.recipient != recipient {
        return Err(E2eError::WrongContext);
    }
    if envelope.ciphertext.len() > MAX_SEALED_PAYLOAD + 4096 {
        return Err(E2eError::Malformed);
    }
    let shared = recipient_key
        .to_x25519()
        .diffie_hellman(&x25519_dalek::PublicKey::from(envelope.ephemeral));
    if !shared.was_contributory() {
        return Err(E2eError::WeakKey);
    }
    let key = seal_key(shared.as_bytes(), &envelope.ephemeral, &recipient);
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(
                &Nonce::default(),
                Payload {
                    msg: &envelope.ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| E2eError::Decrypt)?,
    );
    let inner: SealedInner = postcard::from_bytes(&plaintext).map_err(|_| E2eError::Malformed)?;
    let sender = inner.sender.verify(authority, now)?;
    sender
        .device_key
        .verify(
            SigningDomain::DeviceStatement,
            &seal_statement(&recipient, &envelope.ephemeral, context, &inner.payload),
            &inner.signature,
        )
        .map_err(|_| E2eError::BadSignature)?;
    Ok(Opened {
        sender,
        payload: inner.payload,
    })
}

/// One side's handshake message: its credential, a fresh X25519 key and a signature.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeMessage {
    pub credential: SignedCredential,
    pub ephemeral: [u8; 32],
    /// Signs the transcript so far (see [`Handshake`]).
    pub signature: Signature,
}

impl std::fmt::Debug for HandshakeMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HandshakeMessage({:?})", self.credential)
    }
}

/// Which side of a session we are; each direction gets its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

/// The keys of an established end-to-end session.
#[derive(Clone)]
pub struct SessionKeys {
    /// The verified peer.
    pub peer: Credential,
    /// Encrypts what we send.
    pub send_key: Zeroizing<[u8; 32]>,
    /// Decrypts what we receive.
    pub recv_key: Zeroizing<[u8; 32]>,
    /// A hash of the whole transcript: both sides hold the same value; show it to people as
    /// a safety number, and use it as a session id.
    pub transcript_hash: [u8; 32],
}

impl SessionKeys {
    /// Checks that the verified peer is the user we dialed or expected: a middleman holding a
    /// valid credential of its own gets this far and no further.
    pub fn ensure_peer(&self, expected: &crate::names::UserName) -> Result<(), E2eError> {
        if &self.peer.user == expected {
            Ok(())
        } else {
            Err(E2eError::UnexpectedPeer {
                expected: expected.clone(),
                actual: self.peer.user.clone(),
            })
        }
    }
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKeys(peer {})", self.peer.user)
    }
}

/// A two-message authenticated key exchange (SIGMA-style) for a live session.
///
/// The initiator sends `offer = {cred_i, e_i, sig_i(ctx, e_i)}`; the responder answers with
/// `answer = {cred_r, e_r, sig_r(ctx, e_i, e_r, cred_i, cred_r)}` and the initiator finishes with a
/// `confirm` signature over the full transcript, which the responder checks before trusting
/// the initiator's identity. Keys come from HKDF over X25519(e_i, e_r) and the transcript,
/// so a replayed offer yields keys its replayer cannot compute.
pub struct Handshake {
    role: Role,
    context: Vec<u8>,
    our_key: SecretKey,
    our_credential: SignedCredential,
    ephemeral: x25519_dalek::StaticSecret,
    ephemeral_public: [u8; 32],
    offer: Option<HandshakeMessage>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handshake({:?})", self.role)
    }
}

fn transcript(context: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"peerphone/v1/session");
    h.update((context.len() as u64).to_be_bytes());
    h.update(context);
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

impl Handshake {
    /// Starts a handshake. `context` binds it to one purpose (for example the call id).
    pub fn new(
        role: Role,
        context: &[u8],
        our_key: SecretKey,
        our_credential: SignedCredential,
    ) -> Self {
        let ephemeral = x25519_dalek::StaticSecret::random_from_rng(&mut rand::rng());
        let ephemeral_public = x25519_dalek::PublicKey::from(&ephemeral).to_bytes();
        Self {
            role,
            context: context.to_vec(),
            our_key,
            our_credential,
            ephemeral,
            ephemeral_public,
            offer: None,
        }
    }

    /// The initiator's first message.
    pub fn offer(&mut self) -> HandshakeMessage {
        let t = transcript(&self.context, &[&self.ephemeral_public]);
        let message = HandshakeMessage {
            credential: self.our_credential.clone(),
            ephemeral: self.ephemeral_public,
            signature: self.our_key.sign(SigningDomain::PeerHandshake, &t),
        };
        self.offer = Some(message.clone());
        message
    }

    /// Responder: checks the offer's credential and signature, answers, and derives the keys.
    /// The initiator's identity is provisional until [`Handshake::check_confirm`] passes: an
    /// offer can be replayed by anyone who saw it, so do not trust (or send media with) these
    /// keys before the confirmation verifies.
    pub fn answer(
        &mut self,
        authority: &PublicKey,
        now: UnixTime,
        offer: &HandshakeMessage,
    ) -> Result<(HandshakeMessage, SessionKeys), E2eError> {
        let peer = offer.credential.verify(authority, now)?;
        if peer.device_key == self.our_key.public() {
            return Err(E2eError::Reflected);
        }
        let t_offer = transcript(&self.context, &[&offer.ephemeral]);
        peer.device_key
            .verify(SigningDomain::PeerHandshake, &t_offer, &offer.signature)
            .map_err(|_| E2eError::BadSignature)?;
        let t_answer = self.answer_transcript(offer, &self.ephemeral_public, &self.our_credential);
        let answer = HandshakeMessage {
            credential: self.our_credential.clone(),
            ephemeral: self.ephemeral_public,
            signature: self.our_key.sign(SigningDomain::PeerHandshake, &t_answer),
        };
        let keys = self.derive(
            peer,
            &offer.ephemeral,
            &offer.ephemeral,
            &self.ephemeral_public,
            &t_answer,
        )?;
        self.offer = Some(offer.clone());
        Ok((answer, keys))
    }

    /// Initiator: checks the answer and derives the keys; returns the confirmation signature
    /// to send back.
    pub fn finish(
        &mut self,
        authority: &PublicKey,
        now: UnixTime,
        answer: &HandshakeMessage,
    ) -> Result<(Signature, SessionKeys), E2eError> {
        let offer = self.offer.clone().ok_or(E2eError::WrongContext)?;
        let peer = answer.credential.verify(authority, now)?;
        if peer.device_key == self.our_key.public() {
            return Err(E2eError::Reflected);
        }
        let t_answer = self.answer_transcript(&offer, &answer.ephemeral, &answer.credential);
        peer.device_key
            .verify(SigningDomain::PeerHandshake, &t_answer, &answer.signature)
            .map_err(|_| E2eError::BadSignature)?;
        let keys = self.derive(
            peer,
            &answer.ephemeral,
            &self.ephemeral_public,
            &answer.ephemeral,
            &t_answer,
        )?;
        let confirm = self
            .our_key
            .sign(SigningDomain::PeerHandshake, &confirm_transcript(&t_answer));
        Ok((confirm, keys))
    }

    /// Responder: checks the initiator's confirmation against the session it derived.
    pub fn check_confirm(&self, keys: &SessionKeys, confirm: &Signature) -> Result<(), E2eError> {
        keys.peer
            .device_key
            .verify(
                SigningDomain::PeerHandshake,
                &confirm_transcript(&keys.transcript_hash),
                confirm,
            )
            .map_err(|_| E2eError::BadSignature)
    }

    /// The transcript both sides sign and derive keys from. It binds both ephemeral keys and
    /// *both* credentials: were the responder's credential left out, a user could relay
    /// someone else's answer under their own name (identity misbinding).
    fn answer_transcript(
        &self,
        offer: &HandshakeMessage,
        responder_ephemeral: &[u8; 32],
        responder_credential: &SignedCredential,
    ) -> [u8; 32] {
        transcript(
            &self.context,
            &[
                &offer.ephemeral,
                responder_ephemeral,
                &offer.credential.to_bytes(),
                &responder_credential.to_bytes(),
            ],
        )
    }

    fn derive(
        &self,
        peer: Credential,
        peer_ephemeral: &[u8; 32],
        initiator_ephemeral: &[u8; 32],
        responder_ephemeral: &[u8; 32],
        transcript_hash: &[u8; 32],
    ) -> Result<SessionKeys, E2eError> {
        let shared = self
            .ephemeral
            .diffie_hellman(&x25519_dalek::PublicKey::from(*peer_ephemeral));
        if !shared.was_contributory() {
            return Err(E2eError::WeakKey);
        }
        let hk = Hkdf::<Sha256>::new(Some(transcript_hash), shared.as_bytes());
        let mut okm = Zeroizing::new([0u8; 64]);
        let mut info = b"peerphone/v1/session-keys".to_vec();
        info.extend_from_slice(initiator_ephemeral);
        info.extend_from_slice(responder_ephemeral);
        hk.expand(&info, okm.as_mut())
            .expect("invariant: 64 bytes is a valid HKDF-SHA256 output length");
        let mut i2r = Zeroizing::new([0u8; 32]);
        let mut r2i = Zeroizing::new([0u8; 32]);
        i2r.copy_from_slice(&okm[..32]);
        r2i.copy_from_slice(&okm[32..]);
        let (send_key, recv_key) = match self.role {
            Role::Initiator => (i2r, r2i),
            Role::Responder => (r2i, i2r),
        };
        Ok(SessionKeys {
            peer,
            send_key,
            recv_key,
            transcript_hash: *transcript_hash,
        })
    }
}

fn confirm_transcript(transcript_hash: &[u8; 32]) -> Vec<u8> {
    let mut out = b"confirm".to_vec();
    out.extend_from_slice(transcript_hash);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::DEFAULT_CREDENTIAL_LIFETIME;
    use crate::names::{DisplayName, UserName};

    struct Party {
        key: SecretKey,
        credential: SignedCredential,
    }

    fn party(authority: &SecretKey, name: &str, now: UnixTime) -> Party {
        let key = SecretKey::generate();
        let claims = Credential {
            serial: 1,
            user: UserName::new(name).expect("valid"),
            display_name: DisplayName::default(),
            device_key: key.public(),
            issued_at: now,
            expires_at: now.saturating_add(DEFAULT_CREDENTIAL_LIFETIME),
        };
        Party {
            credential: SignedCredential::issue(&claims, authority),
            key,
        }
    }

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    #[test]
    fn sealed_envelopes_open_only_for_their_recipient() {
        let authority = SecretKey::generate();
        let alice = party(&authority, "alice", NOW);
        let bob = party(&authority, "bob", NOW);
        let env = seal(
            &alice.key,
            &alice.credential,
            &bob.key.public(),
            b"chat",
            b"hi bob",
        )
        .expect("seal");
        let bytes = postcard::to_allocvec(&env).expect("encode");
        assert!(
            !bytes.windows(6).any(|w| w == b"hi bob"),
            "plaintext leaked"
        );
        let opened = open(&bob.key, &authority.public(), NOW, b"chat", &env).expect("open");
        assert_eq!(opened.payload, b"hi bob");
        assert_eq!(opened.sender.user.as_str(), "alice");
        assert_eq!(
            open(&alice.key, &authority.public(), NOW, b"chat", &env),
            Err(E2eError::WrongContext)
        );
        assert_eq!(
            open(&bob.key, &authority.public(), NOW, b"call", &env),
            Err(E2eError::Decrypt)
        );
    }

    #[test]
    fn tampered_envelopes_are_refused() {
        let authority = SecretKey::generate();
        let alice = party(&authority, "alice", NOW);
        let bob = party(&authority, "bob", NOW);
        let env = seal(
            &alice.key,
            &alice.credential,
            &bob.key.public(),
            b"chat",
            b"hello",
        )
        .expect("seal");
        for i in 0..env.ciphertext.len() {
            let mut bad = env.clone();
            bad.ciphertext[i] ^= 0x80;
            assert_eq!(
                open(&bob.key, &authority.public(), NOW, b"chat", &bad),
                Err(E2eError::Decrypt)
            );
        }
    }

    #[test]
    fn an_envelope_from_an_uncertified_sender_is_refused() {
        let authority = SecretKey::generate();
        let rogue_authority = SecretKey::generate();
        let mallory = party(&rogue_authority, "alice", NOW);
        let bob = party(&authority, "bob", NOW);
        let env = seal(
            &mallory.key,
            &mallory.credential,
            &bob.key.public(),
            b"chat",
            b"x",
        )
        .expect("seal");
        assert_eq!(
            open(&bob.key, &authority.public(), NOW, b"chat", &env),
            Err(E2eError::Identity(CredentialError::BadSignature))
        );
    }

    #[test]
    fn both_sides_of_a_handshake_derive_matching_keys() {
        let authority = SecretKey::generate();
        let alice = party(&authority, "alice", NOW);
        let bob = party(&authority, "bob", NOW);
        let mut init = Handshake::new(
            Role::Initiator,
            b"call-1",
            alice.key.clone(),
            alice.credential.clone(),
        );
        let mut resp = Handshake::new(
            Role::Responder,
            b"call-1",
            bob.key.clone(),
            bob.credential.clone(),
        );
        let offer = init.offer();
        let (answer, bob_keys) = resp
            .answer(&authority.public(), NOW, &offer)
            .expect("answer");
        let (confirm, alice_keys) = init
            .finish(&authority.public(), NOW, &answer)
            .expect("finish");
        resp.check_confirm(&bob_keys, &confirm).expect("confirm");
        assert_eq!(*alice_keys.send_key, *bob_keys.recv_key);
        assert_eq!(*alice_keys.recv_key, *bob_keys.send_key);
        assert_ne!(*alice_keys.send_key, *alice_keys.recv_key);
        assert_eq!(alice_keys.transcript_hash, bob_keys.transcript_hash);
        assert_eq!(alice_keys.peer.user.as_str(), "bob");
        assert_eq!(bob_keys.peer.user.as_str(), "alice");
    }

    #[test]
    fn a_key_swapping_middleman_makes_the_handshake_fail() {
        let authority = SecretKey::generate();
        let alice = party(&authority, "alice", NOW);
        let bob = party(&authority, "bob", NOW);
        let mallory = party(&authority, "mallory", NOW);
        let mut init = Handshake::new(
            Role::Initiator,
            b"call-1",
            alice.key.clone(),
            alice.credential.clone(),
        );
        let mut resp = Handshake::new(
            Role::Responder,
            b"call-1",
            bob.key.clone(),
            bob.credential.clone(),
        );
        let offer = init.offer();
        // Mallory replaces Alice's ephemeral key with her own: the signature no longer matches.
        let mut swapped = offer.clone();
        swapped.ephemeral = x25519_dalek::PublicKey::from(
            &x25519_dalek::StaticSecret::random_from_rng(&mut rand::rng()),
        )
        .to_bytes();
        assert_eq!(
            resp.answer(&authority.public(), NOW, &swapped).err(),
            Some(E2eError::BadSignature)
        );
        // Mallory substitutes her own credential and signature under Bob's name: the user
        // in the verified credential is mallory, which the caller compares with whom it dialed.
        let (answer, _) = resp
            .answer(&authority.public(), NOW, &offer)
            .expect("answer");
        let mut forged = answer.clone();
        forged.credential = mallory.credential.clone();
        assert_eq!(
            init.finish(&authority.public(), NOW, &forged).err(),
            Some(E2eError::BadSignature)
        );
        // Mallory answers with her own valid credential: the handshake completes, but not as bob.
        let mut mitm = Handshake::new(
            Role::Responder,
            b"call-1",
            mallory.key.clone(),
            mallory.credential.clone(),
        );
        let (answer, _) = mitm
            .answer(&authority.public(), NOW, &offer)
            .expect("answer");
        let (_, keys) = init
            .finish(&authority.public(), NOW, &answer)
            .expect("finish");
        assert!(matches!(
            keys.ensure_peer(&UserName::new("bob").expect("valid")),
            Err(E2eError::UnexpectedPeer { .. })
        ));
        // Identity misbinding: Alice calls Mallory; Mallory forwards Alice's offer to Bob and
        // relays Bob's answer to Alice under her own credential, re-signing the transcript
        // she can compute. Because the transcript binds the responder's credential, Alice and
        // Bob end up with different transcripts, so Bob's check of Alice's confirmation fails
        // and their keys differ.
        let mut alice_calls_mallory = Handshake::new(
            Role::Initiator,
            b"call-3",
            alice.key.clone(),
            alice.credential.clone(),
        );
        let offer = alice_calls_mallory.offer();
        let mut bob_side = Handshake::new(
            Role::Responder,
            b"call-3",
            bob.key.clone(),
            bob.credential.clone(),
        );
        let (bob_answer, bob_keys) = bob_side
            .answer(&authority.public(), NOW, &offer)
            .expect("answer");
        let relayed_transcript = transcript(
            b"call-3",
            &[
                &offer.ephemeral,
                &bob_answer.ephemeral,
                &offer.credential.to_bytes(),
                &mallory.credential.to_bytes(),
            ],
        );
        let relayed = HandshakeMessage {
            credential: mallory.credential.clone(),
            ephemeral: bob_answer.ephemeral,
            signature: mallory
                .key
                .sign(SigningDomain::PeerHandshake, &relayed_transcript),
        };
        let (confirm, alice_keys) = alice_calls_mallory
            .finish(&authority.public(), NOW, &relayed)
            .expect("mallory's own credential verifies");
        assert_eq!(alice_keys.peer.user.as_str(), "mallory");
        assert_ne!(
            *alice_keys.send_key, *bob_keys.recv_key,
            "keys must not match Bob's"
        );
        assert_eq!(
            bob_side.check_confirm(&bob_keys, &confirm),
            Err(E2eError::BadSignature)
        );
        // A reflected offer is refused.
        let mut alice_again = Handshake::new(
            Role::Responder,
            b"call-1",
            alice.key.clone(),
            alice.credential.clone(),
        );
        assert_eq!(
            alice_again.answer(&authority.public(), NOW, &offer).err(),
            Some(E2eError::Reflected)
        );
        // A different call context does not verify either.
        let mut other = Handshake::new(
            Role::Responder,
            b"call-2",
            bob.key.clone(),
            bob.credential.clone(),
        );
        assert_eq!(
            other.answer(&authority.public(), NOW, &offer).err(),
            Some(E2eError::BadSignature)
        );
    }
}
