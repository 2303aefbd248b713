//! Raw-bytes framing, MESSAGE-INTEGRITY and FINGERPRINT around `stun_codec`.

use bytecodec::{DecodeExt, EncodeExt};
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use stun_codec::{MessageDecoder, MessageEncoder};

use super::{AttributeType, HEADER_BYTES, MAGIC_COOKIE, Message};

const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_FINGERPRINT: u16 = 0x8028;
const MESSAGE_INTEGRITY_BYTES: usize = 20;
const FINGERPRINT_BYTES: usize = 4;
const ATTR_HEADER_BYTES: usize = 4;
/// RFC 8489 §14.7: the CRC-32 is XOR'ed with "STUN".
const FINGERPRINT_XOR: u32 = 0x5354_554e;
const MAX_BODY_BYTES: usize = 0xFFFF;

/// Whether a datagram starting with `bytes` is a STUN message: the first two bits are zero
/// and the magic cookie is in place (RFC 8489 §5). QUIC packets always set one of the two
/// top bits (with QUIC-bit greasing off), ChannelData starts with 0b01, so the three can
/// share one UDP socket.
pub fn is_stun(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_BYTES && bytes[0] & 0xC0 == 0 && bytes[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// Why bytes are not an acceptable STUN message. The sender is to blame in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a STUN header.
    #[error("truncated STUN message: {actual} bytes, at least {HEADER_BYTES} needed")]
    Truncated {
        /// Bytes received.
        actual: usize,
    },
    /// The first two bits are not zero or the magic cookie is wrong.
    #[error("not a STUN message")]
    NotStun,
    /// The header's length is not a multiple of four.
    #[error("STUN length {declared} is not a multiple of 4")]
    UnalignedLength {
        /// The length the header declares.
        declared: usize,
    },
    /// The header's length disagrees with the datagram's.
    #[error("STUN header declares {declared} body bytes, datagram has {actual}")]
    LengthMismatch {
        /// The length the header declares.
        declared: usize,
        /// The body bytes present.
        actual: usize,
    },
    /// An attribute runs past the end of the message.
    #[error("STUN attribute 0x{attr_type:04x} runs past the end of the message")]
    AttributeOverrun {
        /// The attribute's type.
        attr_type: u16,
    },
    /// MESSAGE-INTEGRITY or FINGERPRINT has the wrong length.
    #[error("STUN attribute 0x{attr_type:04x} has length {length}")]
    BadAttributeLength {
        /// The attribute's type.
        attr_type: u16,
        /// Its declared length.
        length: usize,
    },
    /// Something follows FINGERPRINT, which must be last (RFC 8489 §14.7).
    #[error("STUN attribute after FINGERPRINT")]
    AttributeAfterFingerprint,
    /// FINGERPRINT does not match the message.
    #[error("bad STUN FINGERPRINT: carried 0x{carried:08x}, computed 0x{computed:08x}")]
    BadFingerprint {
        /// The value in the message.
        carried: u32,
        /// The value computed over the message.
        computed: u32,
    },
    /// A known attribute's value is malformed (`stun_codec` rejected it).
    #[error("malformed STUN attribute: {reason}")]
    MalformedAttribute {
        /// `stun_codec`'s error kind.
        reason: String,
    },
}

/// Why MESSAGE-INTEGRITY does not vouch for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    /// The message carries no MESSAGE-INTEGRITY.
    #[error("STUN message has no MESSAGE-INTEGRITY")]
    Missing,
    /// The HMAC does not match this key.
    #[error("STUN MESSAGE-INTEGRITY does not match")]
    Mismatch,
}

/// Why a message could not be encoded. The caller is to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// `stun_codec` refused an attribute value.
    #[error("cannot encode STUN message: {reason}")]
    Codec {
        /// `stun_codec`'s error kind.
        reason: String,
    },
    /// The encoded message would exceed the 16-bit length field.
    #[error("STUN message too large: {body_bytes} body bytes")]
    TooLarge {
        /// The body size that was refused.
        body_bytes: usize,
    },
}

/// Key of MESSAGE-INTEGRITY (RFC 8489 §9.1.1, §9.2.2).
#[derive(Clone, PartialEq, Eq)]
pub struct IntegrityKey(Vec<u8>);

impl std::fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntegrityKey(..)")
    }
}

impl IntegrityKey {
    /// Short-term credential (ICE checks): the password itself.
    pub fn short_term(password: &str) -> Self {
        IntegrityKey(password.as_bytes().to_vec())
    }

    /// Long-term credential (TURN): MD5(username ":" realm ":" password).
    pub fn long_term(username: &str, realm: &str, password: &str) -> Self {
        let mut md5 = Md5::new();
        md5.update(username.as_bytes());
        md5.update(b":");
        md5.update(realm.as_bytes());
        md5.update(b":");
        md5.update(password.as_bytes());
        IntegrityKey(md5.finalize().to_vec())
    }

    /// A key given as raw bytes (e.g. a stored long-term key).
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Self {
        IntegrityKey(key.into())
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn hmac_sha1(&self, covered: &[u8]) -> Hmac<Sha1> {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.0)
            .expect("invariant: HMAC accepts keys of any length");
        mac.update(covered);
        mac
    }
}

#[derive(Debug, Clone)]
struct IntegrityCheck {
    tag: [u8; MESSAGE_INTEGRITY_BYTES],
    /// The message up to MESSAGE-INTEGRITY, with the header length adjusted to end right
    /// after it (RFC 8489 §14.5).
    covered: Vec<u8>,
}

/// A decoded STUN message with its MESSAGE-INTEGRITY (unchecked until
/// [`Decoded::verify_integrity`]) and FINGERPRINT (already checked) status.
#[derive(Debug, Clone)]
pub struct Decoded {
    message: Message,
    integrity: Option<IntegrityCheck>,
    fingerprint: bool,
    wire_bytes: usize,
}

impl Decoded {
    /// The message, without MESSAGE-INTEGRITY and FINGERPRINT and without attributes that
    /// followed MESSAGE-INTEGRITY (which RFC 8489 §14.5 says to ignore).
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Takes the message out.
    pub fn into_message(self) -> Message {
        self.message
    }

    /// Whether MESSAGE-INTEGRITY is present (not whether it is valid).
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether a (valid) FINGERPRINT was present.
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint
    }

    /// Size of the datagram this was decoded from.
    pub fn wire_bytes(&self) -> usize {
        self.wire_bytes
    }

    /// Checks MESSAGE-INTEGRITY with `key`, in constant time.
    pub fn verify_integrity(&self, key: &IntegrityKey) -> Result<(), IntegrityError> {
        let check = self.integrity.as_ref().ok_or(IntegrityError::Missing)?;
        key.hmac_sha1(&check.covered)
            .verify_slice(&check.tag)
            .map_err(|_| IntegrityError::Mismatch)
    }

    /// Comprehension-required attributes (type < 0x8000) this codec does not know; a server
    /// answers a request carrying any with 420 and UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1).
    pub fn unknown_comprehension_required(&self) -> Vec<AttributeType> {
        self.message
            .unknown_attributes()
            .map(stun_codec::Attribute::get_type)
            .filter(|t| t.is_comprehension_required())
            .collect()
    }
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn set_length(bytes: &mut [u8], body_bytes: usize) {
    // Callers bound body_bytes by MAX_BODY_BYTES before calling.
    let len = u16::try_from(body_bytes).unwrap_or(u16::MAX);
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
}

fn fingerprint_of(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) ^ FINGERPRINT_XOR
}

/// The STUN message type field (RFC 8489 §5): method bits M0-M3, C0, M4-M6, C1, M7-M11.
fn message_type(class: super::MessageClass, method: super::Method) -> u16 {
    let class = match class {
        super::MessageClass::Request => 0b00,
        super::MessageClass::Indication => 0b01,
        super::MessageClass::SuccessResponse => 0b10,
        super::MessageClass::ErrorResponse => 0b11,
    };
    let method = method.as_u16();
    (method & 0x000f)
        | ((class & 0b01) << 4)
        | ((method & 0x0070) << 1)
        | ((class & 0b10) << 7)
        | ((method & 0x0f80) << 2)
}

/// Decodes one STUN message occupying the whole of `bytes`.
///
/// Checks the header, the attribute framing and FINGERPRINT; never panics on any input.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if bytes.len() < HEADER_BYTES {
        return Err(DecodeError::Truncated {
            actual: bytes.len(),
        });
    }
    if !is_stun(bytes) {
        return Err(DecodeError::NotStun);
    }
    let declared = usize::from(read_u16(bytes, 2));
    if declared % 4 != 0 {
        return Err(DecodeError::UnalignedLength { declared });
    }
    let actual = bytes.len() - HEADER_BYTES;
    if declared != actual {
        return Err(DecodeError::LengthMismatch { declared, actual });
    }

    let mut integrity_at = None;
    let mut fingerprint_at = None;
    let mut offset = HEADER_BYTES;
    while offset < bytes.len() {
        if bytes.len() - offset < ATTR_HEADER_BYTES {
            return Err(DecodeError::AttributeOverrun { attr_type: 0 });
        }
        let attr_type = read_u16(bytes, offset);
        let length = usize::from(read_u16(bytes, offset + 2));
        let padded = length.div_ceil(4) * 4;
        let end = offset + ATTR_HEADER_BYTES + padded;
        if end > bytes.len() {
            return Err(DecodeError::AttributeOverrun { attr_type });
        }
        if fingerprint_at.is_some() {
            return Err(DecodeError::AttributeAfterFingerprint);
        }
        match attr_type {
            ATTR_MESSAGE_INTEGRITY if integrity_at.is_none() && fingerprint_at.is_none() => {
                if length != MESSAGE_INTEGRITY_BYTES {
                    return Err(DecodeError::BadAttributeLength { attr_type, length });
                }
                integrity_at = Some(offset);
            }
            ATTR_FINGERPRINT => {
                if length != FINGERPRINT_BYTES {
                    return Err(DecodeError::BadAttributeLength { attr_type, length });
                }
                fingerprint_at = Some(offset);
            }
            _ => {}
        }
        offset = end;
    }

    if let Some(at) = fingerprint_at {
        let carried =
            u32::from_be_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let computed = fingerprint_of(&bytes[..at]);
        if carried != computed {
            return Err(DecodeError::BadFingerprint { carried, computed });
        }
    }

    let integrity = integrity_at.map(|at| {
        let mut covered = bytes[..at].to_vec();
        set_length(
            &mut covered,
            at + ATTR_HEADER_BYTES + MESSAGE_INTEGRITY_BYTES - HEADER_BYTES,
        );
        let mut tag = [0u8; MESSAGE_INTEGRITY_BYTES];
        tag.copy_from_slice(&bytes[at + ATTR_HEADER_BYTES..at + ATTR_HEADER_BYTES + 20]);
        IntegrityCheck { tag, covered }
    });

    let body_end = integrity_at.or(fingerprint_at).unwrap_or(bytes.len());
    let mut body = bytes[..body_end].to_vec();
    set_length(&mut body, body_end - HEADER_BYTES);
    let message = MessageDecoder::<super::Attribute>::new()
        .decode_from_bytes(&body)
        .map_err(|e| DecodeError::MalformedAttribute {
            reason: format!("{:?}", e.kind()),
        })?
        .map_err(|broken| DecodeError::MalformedAttribute {
            reason: format!("{:?}", broken.error().kind()),
        })?;

    Ok(Decoded {
        message,
        integrity,
        fingerprint: fingerprint_at.is_some(),
        wire_bytes: bytes.len(),
    })
}

/// Encodes `message`, then appends MESSAGE-INTEGRITY (when `integrity` is given) and
/// FINGERPRINT (when `fingerprint`), each computed over the bytes before it.
pub fn encode(
    message: Message,
    integrity: Option<&IntegrityKey>,
    fingerprint: bool,
) -> Result<Vec<u8>, EncodeError> {
    let message_type = message_type(message.class(), message.method());
    let mut bytes = MessageEncoder::<super::Attribute>::new()
        .encode_into_bytes(message)
        .map_err(|e| EncodeError::Codec {
            reason: format!("{:?}", e.kind()),
        })?;
    // stun_codec 0.4 shifts method bits 4..12 to the wrong places (harmless for the
    // standard methods, all below 0x10); write the type field per RFC 8489 §5.
    bytes[0..2].copy_from_slice(&message_type.to_be_bytes());
    let mut extra = 0;
    if integrity.is_some() {
        extra += ATTR_HEADER_BYTES + MESSAGE_INTEGRITY_BYTES;
    }
    if fingerprint {
        extra += ATTR_HEADER_BYTES + FINGERPRINT_BYTES;
    }
    let body_bytes = bytes.len() - HEADER_BYTES + extra;
    if body_bytes > MAX_BODY_BYTES {
        return Err(EncodeError::TooLarge { body_bytes });
    }
    if let Some(key) = integrity {
        let body = bytes.len() - HEADER_BYTES + ATTR_HEADER_BYTES + MESSAGE_INTEGRITY_BYTES;
        set_length(&mut bytes, body);
        let tag = key.hmac_sha1(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
        bytes.extend_from_slice(&(MESSAGE_INTEGRITY_BYTES as u16).to_be_bytes());
        bytes.extend_from_slice(&tag);
    }
    if fingerprint {
        let body = bytes.len() - HEADER_BYTES + ATTR_HEADER_BYTES + FINGERPRINT_BYTES;
        set_length(&mut bytes, body);
        let crc = fingerprint_of(&bytes);
        bytes.extend_from_slice(&ATTR_FINGERPRINT.to_be_bytes());
        bytes.extend_from_slice(&(FINGERPRINT_BYTES as u16).to_be_bytes());
        bytes.extend_from_slice(&crc.to_be_bytes());
    }
    Ok(bytes)
}
