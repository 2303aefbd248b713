//! Message kinds on the wire: the variant index postcard writes first, read before decoding
//! so that a kind this build does not know is told apart from a malformed message.
//!
//! Every direction's message enum is append-only: explicit discriminants equal to their
//! position, never reordered or reused.

use crate::frame::FrameError;

/// A frame body that is not a message of the expected direction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A kind this build does not know (the peer is newer): answer with a typed error.
    #[error("unknown message kind {0}")]
    UnknownKind(u32),
    /// A known kind whose fields do not decode, or trailing bytes.
    #[error(transparent)]
    Malformed(FrameError),
}

impl From<FrameError> for DecodeError {
    fn from(e: FrameError) -> Self {
        Self::Malformed(e)
    }
}

/// Reads postcard's varint variant index without decoding the rest.
pub fn leading_kind(body: &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for (i, byte) in body.iter().take(5).enumerate() {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Decodes a body of a message enum that knows `kinds` kinds.
pub fn decode_kinded<T: serde::de::DeserializeOwned>(
    body: &[u8],
    kinds: u32,
) -> Result<T, DecodeError> {
    match leading_kind(body) {
        Some(kind) if kind >= kinds => Err(DecodeError::UnknownKind(kind)),
        _ => crate::frame::decode_body(body).map_err(DecodeError::Malformed),
    }
}

/// Implements `KINDS`, `name()`, `decode()` and `encode_frame()` for a message enum.
macro_rules! wire_kinds {
    ($ty:ident, $count:expr, [$($variant:ident),* $(,)?]) => {
        impl $ty {
            /// How many message kinds this build knows.
            pub const KINDS: u32 = $count;

            /// The kind's name, for logs and metrics.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => stringify!($variant),)*
                }
            }

            /// Decodes one frame body; unknown kinds are told apart from malformed ones.
            pub fn decode(body: &[u8]) -> Result<Self, $crate::kind::DecodeError> {
                $crate::kind::decode_kinded(body, Self::KINDS)
            }

            /// Encodes as one length-prefixed frame.
            pub fn encode_frame(&self) -> Result<Vec<u8>, $crate::frame::FrameError> {
                $crate::frame::encode(self, $crate::frame::DEFAULT_MAX_FRAME)
            }
        }
    };
}
pub(crate) use wire_kinds;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_kind_reads_postcard_varints() {
        assert_eq!(leading_kind(&[]), None);
        assert_eq!(leading_kind(&[5, 0xff]), Some(5));
        assert_eq!(leading_kind(&[0x80, 0x01]), Some(128));
        assert_eq!(leading_kind(&[0x80; 6]), None);
    }
}
