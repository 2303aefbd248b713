//! Media packet format (the plaintext view; [`crate::secure`] encrypts the payload).
//!
//! ```text
//! 0        1        2                 6                 10
//! +--------+--------+-----------------+-----------------+---------------- - -
//! | ver=1  | flags  | sequence (u32)  | timestamp (u32) | payload
//! +--------+--------+-----------------+-----------------+---------------- - -
//! ```
//! All integers are big-endian. The sequence number counts packets (keep-alives
//! included) and never wraps within a call (50 packets/s for 2.7 years). The timestamp
//! counts 48 kHz samples of the sender's media clock and keeps running through hold, so
//! the receiver places a talk burst after a pause correctly. Flags: [`Flags::KEEP_ALIVE`]
//! (no audio), [`Flags::HOLD`] (the sender has put the call on hold), [`Flags::FEC`] (the
//! Opus payload carries in-band FEC for the previous frame).
//!
//! Decoding never panics: anything shorter than the header or with another version is
//! a typed [`PacketError`].

use thiserror::Error;

/// Wire format version carried in the first byte.
pub const VERSION: u8 = 1;
/// Bytes of header before the payload.
pub const HEADER_LEN: usize = 10;

/// Packet flags (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(u8);

impl Flags {
    /// No audio: sent once every 3 s on hold so NAT bindings and liveness survive.
    pub const KEEP_ALIVE: Flags = Flags(0x01);
    /// The sender has put the call on hold.
    pub const HOLD: Flags = Flags(0x02);
    /// The Opus payload carries in-band FEC for the previous frame.
    pub const FEC: Flags = Flags(0x04);
    /// Bits this version defines; others are ignored on receipt (append-only wire).
    const KNOWN: u8 = 0x07;

    /// The empty set.
    pub const fn empty() -> Self {
        Flags(0)
    }
    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Builds from raw bits, dropping unknown ones.
    pub const fn from_bits_truncate(bits: u8) -> Self {
        Flags(bits & Self::KNOWN)
    }
    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union.
    #[must_use]
    pub const fn with(self, other: Flags) -> Self {
        Flags(self.0 | other.0)
    }
}

/// The fixed header of a media packet; authenticated but not encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketHeader {
    /// Packet counter, +1 for every packet the sender emits.
    pub sequence: u32,
    /// 48 kHz sample clock of the first sample in the packet (wraps after ~24.8 h).
    pub timestamp: u32,
    /// Packet flags.
    pub flags: Flags,
}

impl PacketHeader {
    /// The header's wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = VERSION;
        out[1] = self.flags.bits();
        out[2..6].copy_from_slice(&self.sequence.to_be_bytes());
        out[6..10].copy_from_slice(&self.timestamp.to_be_bytes());
        out
    }

    /// Parses the header at the start of `bytes`; returns it and the rest.
    pub fn decode(bytes: &[u8]) -> Result<(PacketHeader, &[u8]), PacketError> {
        let Some((head, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(PacketError::Truncated { len: bytes.len() });
        };
        if head[0] != VERSION {
            return Err(PacketError::UnknownVersion { version: head[0] });
        }
        let sequence = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
        let timestamp = u32::from_be_bytes([head[6], head[7], head[8], head[9]]);
        Ok((
            PacketHeader {
                sequence,
                timestamp,
                flags: Flags::from_bits_truncate(head[1]),
            },
            rest,
        ))
    }
}

/// A decoded (plaintext) media packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaPacket {
    /// The header.
    pub header: PacketHeader,
    /// The Opus packet (empty for keep-alives).
    pub payload: Vec<u8>,
}

impl MediaPacket {
    /// The wire bytes of the plaintext packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses a plaintext packet. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<MediaPacket, PacketError> {
        let (header, payload) = PacketHeader::decode(bytes)?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(PacketError::TooLarge { len: payload.len() });
        }
        Ok(MediaPacket {
            header,
            payload: payload.to_vec(),
        })
    }
}

/// Largest payload accepted (one Opus frame is at most 1275 bytes; the rest is the
/// authentication tag and room for a future extension).
pub const MAX_PAYLOAD_BYTES: usize = 1400;

/// Why bytes are not a media packet. The peer (or the network) is to blame for all of them.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than the fixed header.
    #[error("packet of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// A version this code does not speak.
    #[error("unknown media packet version {version}")]
    UnknownVersion {
        /// The version byte.
        version: u8,
    },
    /// Payload larger than any packet this pipeline sends.
    #[error("payload of {len} bytes exceeds the limit")]
    TooLarge {
        /// Payload bytes.
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let p = MediaPacket {
            header: PacketHeader {
                sequence: 0xdead_beef,
                timestamp: 960 * 7,
                flags: Flags::HOLD.with(Flags::KEEP_ALIVE),
            },
            payload: vec![1, 2, 3],
        };
        assert_eq!(MediaPacket::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn short_and_foreign_packets_are_typed_errors() {
        assert_eq!(
            MediaPacket::decode(&[1, 0, 0]),
            Err(PacketError::Truncated { len: 3 })
        );
        assert_eq!(
            MediaPacket::decode(&[9; 12]),
            Err(PacketError::UnknownVersion { version: 9 })
        );
        let big = [&[VERSION, 0][..], &[0u8; 8], &[0u8; MAX_PAYLOAD_BYTES + 1]].concat();
        assert!(matches!(
            MediaPacket::decode(&big),
            Err(PacketError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = MediaPacket::decode(&bytes);
        }

        #[test]
        fn decode_inverts_encode(seq: u32, ts: u32, flags in 0u8..8, payload in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let p = MediaPacket { header: PacketHeader { sequence: seq, timestamp: ts, flags: Flags::from_bits_truncate(flags) }, payload };
            prop_assert_eq!(MediaPacket::decode(&p.encode()), Ok(p));
        }
    }
}
