//! Bytes on the wire of TURN over UDP: STUN messages (through `stun_codec`) and ChannelData.
//!
//! Parses a datagram once at the edge into [`TurnDatagram`]; builds the messages both the
//! server and the client send. Does not judge credentials or state; see `server` and `client`.

use std::net::SocketAddr;

use stun_codec::rfc5389::attributes::ErrorCode;
use stun_codec::rfc5766::attributes::{Data, XorPeerAddress};
use stun_codec::{MessageClass, Method, TransactionId};

use crate::stun::{self, Decoded, IntegrityKey};

pub use crate::stun::Attribute as TurnAttribute;

/// A STUN message carrying the attributes TURN uses (MESSAGE-INTEGRITY and FINGERPRINT are
/// handled on the raw bytes by [`crate::stun`], never held in the message).
pub type TurnMessage = crate::stun::Message;

/// Lowest channel number a client may bind (RFC 8656 §12).
pub const CHANNEL_MIN: u16 = 0x4000;
/// Highest channel number a client may bind (RFC 8656 §12).
pub const CHANNEL_MAX: u16 = 0x4FFF;
/// Highest channel number of RFC 5766, which clients such as `turnutils_uclient` still
/// use; servers accept it, clients here bind only up to [`CHANNEL_MAX`].
pub const CHANNEL_MAX_RFC5766: u16 = 0x7FFF;
/// Size of the ChannelData header (channel number and length).
pub const CHANNEL_DATA_HEADER_BYTES: usize = 4;
/// The STUN magic cookie (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// REQUESTED-TRANSPORT protocol number of UDP.
pub const PROTOCOL_UDP: u8 = 17;

/// One TURN datagram, parsed.
#[derive(Debug)]
pub enum TurnDatagram<'a> {
    /// A STUN message (request, indication or response), FINGERPRINT checked,
    /// MESSAGE-INTEGRITY not yet.
    Stun(Box<StunMessage<'a>>),
    /// A ChannelData message.
    ChannelData {
        /// Channel number, 0x4000..=0x7FFF.
        channel: u16,
        /// Application data, without the header and any padding.
        data: &'a [u8],
    },
}

/// Why bytes are not a TURN datagram.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than any TURN message.
    #[error("datagram too short ({0} bytes)")]
    TooShort(usize),
    /// The first two bits say neither STUN (00) nor ChannelData (01).
    #[error("first byte {0:#04x} starts neither STUN nor ChannelData")]
    UnknownKind(u8),
    /// ChannelData with a number outside 0x4000..=0x7FFF.
    #[error("channel number {0:#06x} outside 0x4000..=0x7FFF")]
    BadChannel(u16),
    /// ChannelData whose length field runs past the datagram.
    #[error("ChannelData length {declared} exceeds the {available} bytes present")]
    ChannelDataTruncated {
        /// Length field.
        declared: usize,
        /// Bytes after the header.
        available: usize,
    },
    /// STUN framing is broken (no magic cookie, bad length, bad attribute, bad FINGERPRINT).
    #[error(transparent)]
    Stun(#[from] stun::DecodeError),
}

/// Parses one UDP datagram received by a TURN server or client.
///
/// Never panics; every byte string is either a [`TurnDatagram`] or a [`DecodeError`].
pub fn decode_datagram(bytes: &[u8]) -> Result<TurnDatagram<'_>, DecodeError> {
    let first = *bytes.first().ok_or(DecodeError::TooShort(0))?;
    match first >> 6 {
        0b01 => decode_channel_data(bytes)
            .map(|(channel, data)| TurnDatagram::ChannelData { channel, data }),
        0b00 => decode_stun(bytes).map(|m| TurnDatagram::Stun(Box::new(m))),
        _ => Err(DecodeError::UnknownKind(first)),
    }
}

/// A STUN message with what TURN needs beside [`Decoded`]: the raw bytes, for
/// MESSAGE-INTEGRITY, and the CHANNEL-NUMBER over the whole RFC 5766 range.
#[derive(Debug)]
pub struct StunMessage<'a> {
    decoded: Decoded,
    raw: &'a [u8],
    channel_number: Option<u16>,
}

impl StunMessage<'_> {
    /// The message (without MESSAGE-INTEGRITY and FINGERPRINT).
    pub fn message(&self) -> &TurnMessage {
        self.decoded.message()
    }

    /// Takes the message out.
    pub fn into_message(self) -> TurnMessage {
        self.decoded.into_message()
    }

    /// The codec's view, for the checks it offers (unknown attributes, …).
    pub fn decoded(&self) -> &Decoded {
        &self.decoded
    }

    /// CHANNEL-NUMBER, 0x4000..=0x7FFF. (The message itself holds 0x4000 in its place when
    /// the number is above 0x4FFF, which `stun_codec` refuses to decode.)
    pub fn channel_number(&self) -> Option<u16> {
        self.channel_number
    }

    /// Whether MESSAGE-INTEGRITY is present.
    pub fn has_integrity(&self) -> bool {
        self.decoded.has_integrity()
    }

    /// Checks MESSAGE-INTEGRITY over the bytes as received, in constant time.
    pub fn verify_integrity(&self, key: &IntegrityKey) -> bool {
        verify_integrity_raw(self.raw, key)
    }
}

const ATTR_CHANNEL_NUMBER: u16 = 0x000C;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;

/// Offsets of each attribute's header in a STUN message already framed by `stun::decode`
/// (or by the caller), stopping at the first inconsistency.
fn attribute_offsets(bytes: &[u8]) -> impl Iterator<Item = (u16, usize, usize)> + '_ {
    let mut offset = 20;
    std::iter::from_fn(move || {
        let header = bytes.get(offset..offset + 4)?;
        let attr_type = u16::from_be_bytes([header[0], header[1]]);
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let at = offset;
        offset += 4 + length.div_ceil(4) * 4;
        (offset <= bytes.len()).then_some((attr_type, at, length))
    })
}

/// MESSAGE-INTEGRITY (RFC 8489 §14.5) over the received bytes.
fn verify_integrity_raw(bytes: &[u8], key: &IntegrityKey) -> bool {
    use hmac::{Hmac, KeyInit, Mac};
    let Some((_, at, 20)) = attribute_offsets(bytes).find(|(t, _, _)| *t == ATTR_MESSAGE_INTEGRITY)
    else {
        return false;
    };
    let Some(tag) = bytes.get(at + 4..at + 24) else {
        return false;
    };
    let Ok(covered_len) = u16::try_from(at + 24 - 20) else {
        return false;
    };
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key.as_bytes())
        .expect("invariant: HMAC accepts keys of any length");
    mac.update(&bytes[..2]);
    mac.update(&covered_len.to_be_bytes());
    mac.update(&bytes[4..at]);
    mac.verify_slice(tag).is_ok()
}

/// RFC 8489 §14.7: CRC-32 of the message up to FINGERPRINT, XOR "STUN".
const FINGERPRINT_XOR: u32 = 0x5354_554e;
const ATTR_FINGERPRINT: u16 = 0x8028;

/// Checks FINGERPRINT of `original` and rewrites it in `copy` (same length, edited).
fn refingerprint(original: &[u8], copy: &mut [u8]) -> Result<(), DecodeError> {
    let Some((_, at, 4)) = attribute_offsets(original).find(|(t, _, _)| *t == ATTR_FINGERPRINT)
    else {
        return Ok(());
    };
    let carried = u32::from_be_bytes([
        original[at + 4],
        original[at + 5],
        original[at + 6],
        original[at + 7],
    ]);
    let computed = crc32fast::hash(&original[..at]) ^ FINGERPRINT_XOR;
    if carried != computed {
        return Err(DecodeError::Stun(stun::DecodeError::BadFingerprint {
            carried,
            computed,
        }));
    }
    let fresh = crc32fast::hash(&copy[..at]) ^ FINGERPRINT_XOR;
    copy[at + 4..at + 8].copy_from_slice(&fresh.to_be_bytes());
    Ok(())
}

/// Parses a STUN message received by a TURN server or client.
pub fn decode_stun(bytes: &[u8]) -> Result<StunMessage<'_>, DecodeError> {
    let channel = attribute_offsets(bytes)
        .find(|(t, _, len)| *t == ATTR_CHANNEL_NUMBER && *len == 4)
        .map(|(_, at, _)| (at, u16::from_be_bytes([bytes[at + 4], bytes[at + 5]])));
    let decoded = match channel {
        Some((at, number)) if number > CHANNEL_MAX && number <= CHANNEL_MAX_RFC5766 => {
            // stun_codec refuses RFC 5766's upper channels; decode a copy holding a number
            // it accepts and keep the real one aside. Integrity is checked on the original.
            let mut copy = bytes.to_vec();
            copy[at + 4..at + 6].copy_from_slice(&CHANNEL_MIN.to_be_bytes());
            refingerprint(bytes, &mut copy)?;
            stun::decode(&copy)
        }
        _ => stun::decode(bytes),
    }?;
    Ok(StunMessage {
        decoded,
        raw: bytes,
        channel_number: channel.map(|(_, n)| n),
    })
}

/// Parses a ChannelData message: `(channel number, data)`.
///
/// Padding after the data (mandatory over TCP, optional over UDP) is ignored.
pub fn decode_channel_data(bytes: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    if bytes.len() < CHANNEL_DATA_HEADER_BYTES {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    let channel = u16::from_be_bytes([bytes[0], bytes[1]]);
    if !(CHANNEL_MIN..=CHANNEL_MAX_RFC5766).contains(&channel) {
        return Err(DecodeError::BadChannel(channel));
    }
    let declared = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let rest = &bytes[CHANNEL_DATA_HEADER_BYTES..];
    let data = rest
        .get(..declared)
        .ok_or(DecodeError::ChannelDataTruncated {
            declared,
            available: rest.len(),
        })?;
    Ok((channel, data))
}

/// Writes a ChannelData message into `out` (cleared first).
///
/// Returns `false` (writing nothing) when `data` does not fit the 16-bit length field.
pub fn encode_channel_data(channel: u16, data: &[u8], out: &mut Vec<u8>) -> bool {
    let Ok(len) = u16::try_from(data.len()) else {
        return false;
    };
    out.clear();
    out.reserve(CHANNEL_DATA_HEADER_BYTES + data.len());
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    true
}

/// Serialises a STUN message with FINGERPRINT, and MESSAGE-INTEGRITY when `key` is given.
pub fn encode_stun(
    message: TurnMessage,
    key: Option<&IntegrityKey>,
) -> Result<Vec<u8>, stun::EncodeError> {
    stun::encode(message, key, true)
}

/// Builds an error response to `request` with `code` and a reason phrase.
pub fn error_response(request: &TurnMessage, code: u16, reason: &str) -> TurnMessage {
    let mut response = TurnMessage::new(
        MessageClass::ErrorResponse,
        request.method(),
        request.transaction_id(),
    );
    if let Ok(error) = ErrorCode::new(code, reason.to_owned()) {
        response.add_attribute(error);
    }
    response
}

/// Builds a Data indication (server to client) carrying `data` from `peer`.
pub fn data_indication(
    transaction_id: TransactionId,
    peer: SocketAddr,
    data: &[u8],
) -> Option<TurnMessage> {
    let mut message = TurnMessage::new(
        MessageClass::Indication,
        stun_codec::rfc5766::methods::DATA,
        transaction_id,
    );
    message.add_attribute(XorPeerAddress::new(peer));
    message.add_attribute(Data::new(data.to_vec()).ok()?);
    Some(message)
}

/// Builds a Send indication (client to server) carrying `data` for `peer`.
pub fn send_indication(
    transaction_id: TransactionId,
    peer: SocketAddr,
    data: &[u8],
) -> Option<TurnMessage> {
    let mut message = TurnMessage::new(
        MessageClass::Indication,
        stun_codec::rfc5766::methods::SEND,
        transaction_id,
    );
    message.add_attribute(XorPeerAddress::new(peer));
    message.add_attribute(Data::new(data.to_vec()).ok()?);
    Some(message)
}

/// The error code of an error response, if any.
pub fn error_code(message: &TurnMessage) -> Option<u16> {
    message.get_attribute::<ErrorCode>().map(ErrorCode::code)
}

/// The STUN method of a message, for logs and metrics.
pub fn method_name(method: Method) -> &'static str {
    match method.as_u16() {
        0x001 => "binding",
        0x003 => "allocate",
        0x004 => "refresh",
        0x006 => "send",
        0x007 => "data",
        0x008 => "create-permission",
        0x009 => "channel-bind",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_round_trips_and_rejects_truncation() {
        let mut out = Vec::new();
        assert!(encode_channel_data(0x4001, b"hello", &mut out));
        assert_eq!(decode_channel_data(&out), Ok((0x4001, &b"hello"[..])));
        assert_eq!(
            decode_channel_data(&out[..6]),
            Err(DecodeError::ChannelDataTruncated {
                declared: 5,
                available: 2
            })
        );
        out[0] = 0x70;
        assert_eq!(decode_channel_data(&out), Ok((0x7001, &b"hello"[..])));
        out[0] = 0x80;
        assert_eq!(
            decode_channel_data(&out),
            Err(DecodeError::BadChannel(0x8001))
        );
    }

    #[test]
    fn send_indication_round_trips() {
        let peer: SocketAddr = "203.0.113.9:4000".parse().expect("test addr");
        let m = send_indication(TransactionId::new([7; 12]), peer, b"abc").expect("fits");
        let bytes = encode_stun(m, None).expect("encodes");
        let TurnDatagram::Stun(m) = decode_datagram(&bytes).expect("decodes") else {
            panic!("not STUN");
        };
        let m = m.message();
        assert_eq!(
            m.get_attribute::<XorPeerAddress>()
                .map(XorPeerAddress::address),
            Some(peer)
        );
        assert_eq!(m.get_attribute::<Data>().map(Data::data), Some(&b"abc"[..]));
    }
}
