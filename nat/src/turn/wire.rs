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
    Stun(Box<Decoded>),
    /// A ChannelData message.
    ChannelData {
        /// Channel number, 0x4000..=0x4FFF.
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
    /// ChannelData with a number outside 0x4000..=0x4FFF.
    #[error("channel number {0:#06x} outside 0x4000..=0x4FFF")]
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
        0b00 => stun::decode(bytes)
            .map(|m| TurnDatagram::Stun(Box::new(m)))
            .map_err(DecodeError::Stun),
        _ => Err(DecodeError::UnknownKind(first)),
    }
}

/// Parses a ChannelData message: `(channel number, data)`.
///
/// Padding after the data (mandatory over TCP, optional over UDP) is ignored.
pub fn decode_channel_data(bytes: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    if bytes.len() < CHANNEL_DATA_HEADER_BYTES {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    let channel = u16::from_be_bytes([bytes[0], bytes[1]]);
    if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) {
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
        out[0] = 0x50;
        assert_eq!(
            decode_channel_data(&out),
            Err(DecodeError::BadChannel(0x5001))
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
