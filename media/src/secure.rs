//! End-to-end encryption of media packets: ChaCha20-Poly1305 with a replay window.
//!
//! Each direction of a call has its own 32-byte key, derived by the caller (the calls
//! layer runs the key agreement; only the two callers know the keys, so supernodes and
//! relays forward ciphertext they cannot read or forge). The 96-bit nonce is
//! `direction (1 byte) || 0 0 0 || sequence (u64, big-endian)`: the sequence number is
//! unique per packet and [`PacketSealer`] refuses to reuse one, so a nonce never repeats
//! under a key. The packet header plus the call id are the associated data, so a header
//! cannot be edited and a packet cannot be replayed into another call.
//!
//! [`PacketOpener`] rejects packets it has already accepted and packets older than its
//! [`REPLAY_WINDOW_PACKETS`]-packet sliding window, with a typed [`OpenError`].
//!
//! Not here: key agreement, key rotation, packet loss or ordering (the jitter buffer
//! reorders).

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use thiserror::Error;

use crate::packet::{MAX_PAYLOAD_BYTES, MediaPacket, PacketError, PacketHeader};

/// Bytes the authentication tag adds to every packet.
pub const TAG_LEN: usize = 16;
/// Packets behind the newest accepted one that can still be accepted once.
pub const REPLAY_WINDOW_PACKETS: u32 = 1024;
/// Longest call id accepted (bytes).
pub const MAX_CALL_ID_LEN: usize = 64;

/// Which way a packet travels; part of the nonce so the two directions never share a
/// nonce space even if a caller ever derived the same key for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the caller (who dialled) to the callee.
    CallerToCallee,
    /// From the callee to the caller.
    CalleeToCaller,
}

impl Direction {
    fn byte(self) -> u8 {
        match self {
            Direction::CallerToCallee => 0x01,
            Direction::CalleeToCaller => 0x02,
        }
    }
}

/// Why a packet could not be sealed.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// The sequence number is not above the last one sealed; sealing it would reuse a
    /// nonce.
    #[error("sequence {sequence} was not above the last sealed sequence")]
    SequenceReused {
        /// The refused sequence number.
        sequence: u32,
    },
    /// The payload is larger than the packet format allows.
    #[error("payload of {len} bytes is too large")]
    TooLarge {
        /// Payload bytes.
        len: usize,
    },
}

/// Why a received packet was dropped. The sender or the network is to blame.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not a media packet at all.
    #[error("malformed packet: {0}")]
    Malformed(#[from] PacketError),
    /// Too short to hold the authentication tag.
    #[error("packet has no room for an authentication tag")]
    MissingTag,
    /// Authentication failed: tampered, wrong key, or from another call or direction.
    #[error("packet failed authentication")]
    Authentication,
    /// Already accepted once.
    #[error("sequence {sequence} was already received (replay)")]
    Replayed {
        /// The replayed sequence number.
        sequence: u32,
    },
    /// Older than the replay window can tell apart from a replay.
    #[error("sequence {sequence} is older than the replay window")]
    TooOld {
        /// The stale sequence number.
        sequence: u32,
    },
}

fn nonce(direction: Direction, sequence: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[0] = direction.byte();
    n[4..].copy_from_slice(&u64::from(sequence).to_be_bytes());
    Nonce::from(n)
}

fn associated_data(call_id: &[u8], header: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(1 + call_id.len() + header.len());
    // The length prefix keeps (call id, header) pairs unambiguous.
    ad.push(call_id.len() as u8);
    ad.extend_from_slice(call_id);
    ad.extend_from_slice(header);
    ad
}

fn clip_call_id(call_id: &[u8]) -> Vec<u8> {
    call_id[..call_id.len().min(MAX_CALL_ID_LEN)].to_vec()
}

/// Encrypts outgoing packets of one direction of one call.
pub struct PacketSealer {
    cipher: ChaCha20Poly1305,
    call_id: Vec<u8>,
    direction: Direction,
    last_sequence: Option<u32>,
}

impl std::fmt::Debug for PacketSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketSealer")
            .field("direction", &self.direction)
            .field("last_sequence", &self.last_sequence)
            .finish_non_exhaustive()
    }
}

impl PacketSealer {
    /// A sealer for packets travelling in `direction` under `key`. Call ids longer than
    /// [`MAX_CALL_ID_LEN`] bytes are cut to that length.
    pub fn new(key: [u8; 32], call_id: &[u8], direction: Direction) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&Key::from(key)),
            call_id: clip_call_id(call_id),
            direction,
            last_sequence: None,
        }
    }

    /// Encrypts `payload` under `header`; returns the wire bytes.
    pub fn seal(&mut self, header: PacketHeader, payload: &[u8]) -> Result<Vec<u8>, SealError> {
        if self
            .last_sequence
            .is_some_and(|last| header.sequence <= last)
        {
            return Err(SealError::SequenceReused {
                sequence: header.sequence,
            });
        }
        if payload.len() + TAG_LEN > MAX_PAYLOAD_BYTES {
            return Err(SealError::TooLarge { len: payload.len() });
        }
        let head = header.encode();
        let ad = associated_data(&self.call_id, &head);
        let mut body = Vec::with_capacity(head.len() + payload.len() + TAG_LEN);
        body.extend_from_slice(payload);
        self.cipher
            .encrypt_in_place(&nonce(self.direction, header.sequence), &ad, &mut body)
            .map_err(|_| SealError::TooLarge { len: payload.len() })?;
        self.last_sequence = Some(header.sequence);
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(&head);
        out.extend_from_slice(&body);
        Ok(out)
    }
}

/// Decrypts and de-duplicates incoming packets of one direction of one call.
pub struct PacketOpener {
    cipher: ChaCha20Poly1305,
    call_id: Vec<u8>,
    direction: Direction,
    window: ReplayWindow,
}

impl std::fmt::Debug for PacketOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketOpener")
            .field("direction", &self.direction)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl PacketOpener {
    /// An opener for packets travelling in `direction` under `key`.
    pub fn new(key: [u8; 32], call_id: &[u8], direction: Direction) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&Key::from(key)),
            call_id: clip_call_id(call_id),
            direction,
            window: ReplayWindow::default(),
        }
    }

    /// Authenticates, decrypts and replay-checks one datagram. Never panics.
    pub fn open(&mut self, bytes: &[u8]) -> Result<MediaPacket, OpenError> {
        let (header, body) = PacketHeader::decode(bytes)?;
        if body.len() > MAX_PAYLOAD_BYTES {
            return Err(PacketError::TooLarge { len: body.len() }.into());
        }
        if body.len() < TAG_LEN {
            return Err(OpenError::MissingTag);
        }
        // Cheap check first so floods of replays cost no decryption; the window only
        // moves after authentication, so forged packets cannot shift it.
        self.window.check(header.sequence)?;
        let ad = associated_data(&self.call_id, &bytes[..crate::packet::HEADER_LEN]);
        let mut payload = body.to_vec();
        self.cipher
            .decrypt_in_place(&nonce(self.direction, header.sequence), &ad, &mut payload)
            .map_err(|_| OpenError::Authentication)?;
        self.window.accept(header.sequence);
        Ok(MediaPacket { header, payload })
    }
}

/// Sliding bitmap of the last [`REPLAY_WINDOW_PACKETS`] sequence numbers (RFC 4303 §3.4.3
/// style).
#[derive(Debug, Clone, Default)]
struct ReplayWindow {
    highest: Option<u32>,
    /// Bit `i` of the bitmap is set when `highest - i` was accepted.
    bits: [u64; (REPLAY_WINDOW_PACKETS / 64) as usize],
}

impl ReplayWindow {
    fn check(&self, sequence: u32) -> Result<(), OpenError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if sequence > highest {
            return Ok(());
        }
        let age = highest - sequence;
        if age >= REPLAY_WINDOW_PACKETS {
            return Err(OpenError::TooOld { sequence });
        }
        if self.bit(age) {
            Err(OpenError::Replayed { sequence })
        } else {
            Ok(())
        }
    }

    fn accept(&mut self, sequence: u32) {
        match self.highest {
            None => {
                self.highest = Some(sequence);
                self.bits = Default::default();
                self.set_bit(0);
            }
            Some(highest) if sequence > highest => {
                self.shift((sequence - highest).min(REPLAY_WINDOW_PACKETS));
                self.highest = Some(sequence);
                self.set_bit(0);
            }
            Some(highest) => {
                let age = highest - sequence;
                if age < REPLAY_WINDOW_PACKETS {
                    self.set_bit(age);
                }
            }
        }
    }

    fn bit(&self, age: u32) -> bool {
        self.bits[(age / 64) as usize] & (1 << (age % 64)) != 0
    }

    fn set_bit(&mut self, age: u32) {
        self.bits[(age / 64) as usize] |= 1 << (age % 64);
    }

    /// Ages every entry by `by` packets.
    fn shift(&mut self, by: u32) {
        if by >= REPLAY_WINDOW_PACKETS {
            self.bits = Default::default();
            return;
        }
        let words = (by / 64) as usize;
        let bits = by % 64;
        let n = self.bits.len();
        for i in (0..n).rev() {
            let src = i.checked_sub(words);
            let lo = src.map_or(0, |s| self.bits[s]);
            let carry = src
                .and_then(|s| s.checked_sub(1))
                .map_or(0, |s| self.bits[s]);
            self.bits[i] = if bits == 0 {
                lo
            } else {
                (lo << bits) | (carry >> (64 - bits))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Flags;
    use proptest::prelude::*;

    fn header(sequence: u32) -> PacketHeader {
        PacketHeader {
            sequence,
            timestamp: sequence.wrapping_mul(960),
            flags: Flags::empty(),
        }
    }

    #[test]
    fn window_accepts_reordered_packets_once() {
        let mut w = ReplayWindow::default();
        for s in [5u32, 3, 4, 100, 6, 99] {
            assert_eq!(w.check(s), Ok(()), "first sight of {s}");
            w.accept(s);
        }
        for s in [5u32, 3, 4, 100, 6, 99] {
            assert_eq!(w.check(s), Err(OpenError::Replayed { sequence: s }));
        }
        assert_eq!(w.check(98), Ok(()));
        w.accept(2000);
        assert_eq!(w.check(100), Err(OpenError::TooOld { sequence: 100 }));
        assert_eq!(w.check(2000 - 1023), Ok(()));
        assert_eq!(w.check(2000), Err(OpenError::Replayed { sequence: 2000 }));
    }

    #[test]
    fn sealer_refuses_to_reuse_a_sequence() {
        let mut s = PacketSealer::new([7; 32], b"call", Direction::CallerToCallee);
        s.seal(header(10), b"x").expect("first");
        assert_eq!(
            s.seal(header(10), b"y"),
            Err(SealError::SequenceReused { sequence: 10 })
        );
        assert_eq!(
            s.seal(header(9), b"y"),
            Err(SealError::SequenceReused { sequence: 9 })
        );
    }

    #[test]
    fn wrong_direction_or_call_fails_authentication() {
        let mut s = PacketSealer::new([7; 32], b"call-1", Direction::CallerToCallee);
        let wire = s.seal(header(1), b"hello").expect("seal");
        let mut wrong_dir = PacketOpener::new([7; 32], b"call-1", Direction::CalleeToCaller);
        assert_eq!(wrong_dir.open(&wire), Err(OpenError::Authentication));
        let mut wrong_call = PacketOpener::new([7; 32], b"call-2", Direction::CallerToCallee);
        assert_eq!(wrong_call.open(&wire), Err(OpenError::Authentication));
        let mut right = PacketOpener::new([7; 32], b"call-1", Direction::CallerToCallee);
        assert_eq!(right.open(&wire).expect("open").payload, b"hello");
    }

    proptest! {
        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let mut o = PacketOpener::new([1; 32], b"c", Direction::CallerToCallee);
            let _ = o.open(&bytes);
        }

        #[test]
        fn window_matches_a_set_model(seqs in proptest::collection::vec(0u32..3000, 1..300)) {
            let mut w = ReplayWindow::default();
            let mut seen = std::collections::BTreeSet::new();
            let mut highest: Option<u32> = None;
            for s in seqs {
                let expected = if seen.contains(&s) && highest.is_some_and(|h| h - s < REPLAY_WINDOW_PACKETS) {
                    Err(OpenError::Replayed { sequence: s })
                } else if highest.is_some_and(|h| s <= h && h - s >= REPLAY_WINDOW_PACKETS) {
                    Err(OpenError::TooOld { sequence: s })
                } else {
                    Ok(())
                };
                prop_assert_eq!(w.check(s), expected);
                if expected.is_ok() {
                    w.accept(s);
                    seen.insert(s);
                    highest = Some(highest.map_or(s, |h| h.max(s)));
                }
            }
        }
    }
}
