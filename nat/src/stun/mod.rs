//! STUN (RFC 8489) message codec shared by discovery, hole punching and TURN.
//!
//! Wraps `stun_codec` 0.4 with:
//! - one attribute set, [`Attribute`]: RFC 5389/8489, RFC 5780 (with this crate's own
//!   [`attributes::ChangeRequest`], because `stun_codec`'s reads the wrong bits), RFC 5766/8656
//!   (TURN) and RFC 8445 (ICE) attributes, plus [`attributes::Nomination`];
//! - [`decode`], which checks the header, the attribute framing and FINGERPRINT on the raw
//!   bytes and keeps what MESSAGE-INTEGRITY covers so [`Decoded::verify_integrity`] can check it
//!   with a short-term or long-term [`IntegrityKey`];
//! - [`encode`], which appends MESSAGE-INTEGRITY and FINGERPRINT computed over the final bytes;
//! - [`is_stun`], the first-bytes check that lets STUN share a UDP socket with QUIC.
//!
//! MESSAGE-INTEGRITY and FINGERPRINT never appear in a [`Message`]: they are handled here on
//! the raw bytes, which avoids `stun_codec` re-encoding a decoded message to check them.
//! Not done: MESSAGE-INTEGRITY-SHA256, SASLprep/OpaqueString of passwords (passwords are used
//! as their UTF-8 bytes), USERHASH.
//!
//! [`server`] is the sans-IO Binding server core (RFC 8489 + RFC 5780).

mod codec;
mod extra_attributes;
pub mod server;

pub use codec::{
    DecodeError, Decoded, EncodeError, IntegrityError, IntegrityKey, decode, encode, is_stun,
};
pub use stun_codec::{AttributeType, MessageClass, Method, RawAttribute, TransactionId};

use stun_codec::rfc5245::attributes::{IceControlled, IceControlling, Priority, UseCandidate};
use stun_codec::rfc5389::attributes::{
    AlternateServer, ErrorCode, MappedAddress, Nonce, Realm, Software, UnknownAttributes, Username,
    XorMappedAddress, XorMappedAddress2,
};
use stun_codec::rfc5766::attributes::{
    ChannelNumber, Data, DontFragment, EvenPort, Lifetime, RequestedTransport, ReservationToken,
    XorPeerAddress, XorRelayAddress,
};
use stun_codec::rfc5780::attributes::{OtherAddress, ResponseOrigin, ResponsePort};
use stun_codec::rfc8656::attributes::{AdditionalAddressFamily, RequestedAddressFamily};

use extra_attributes::{ChangeRequest, Nomination};

/// The STUN magic cookie (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN header.
pub const HEADER_BYTES: usize = 20;

/// Every attribute type this crate's STUN users read or write.
pub mod attributes {
    pub use super::extra_attributes::{ChangeRequest, Nomination};
    pub use stun_codec::rfc5245::attributes::{
        IceControlled, IceControlling, Priority, UseCandidate,
    };
    pub use stun_codec::rfc5389::attributes::{
        AlternateServer, ErrorCode, MappedAddress, Nonce, Realm, Software, UnknownAttributes,
        Username, XorMappedAddress, XorMappedAddress2,
    };
    pub use stun_codec::rfc5766::attributes::{
        ChannelNumber, Data, DontFragment, EvenPort, Lifetime, RequestedTransport,
        ReservationToken, XorPeerAddress, XorRelayAddress,
    };
    pub use stun_codec::rfc5780::attributes::{OtherAddress, ResponseOrigin, ResponsePort};
    pub use stun_codec::rfc8656::attributes::{
        AdditionalAddressFamily, AddressFamily, RequestedAddressFamily,
    };
}

/// STUN and TURN methods.
pub mod methods {
    pub use stun_codec::rfc5389::methods::BINDING;
    pub use stun_codec::rfc5766::methods::{
        ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, DATA, REFRESH, SEND,
    };
}

/// Error codes of RFC 5389/8489 and RFC 5766/8656, convertible into
/// [`attributes::ErrorCode`].
pub mod errors {
    pub use stun_codec::rfc5389::errors::{
        BadRequest, ServerError, StaleNonce, TryAlternate, Unauthorized, UnknownAttribute,
    };
    pub use stun_codec::rfc5766::errors::{
        AllocationMismatch, AllocationQuotaReached, Forbidden, InsufficientCapacity,
        UnsupportedTransportProtocol, WrongCredentials,
    };
    pub use stun_codec::rfc8656::errors::{AddressFamilyNotSupported, PeerAddressFamilyMismatch};
}

stun_codec::define_attribute_enums!(
    Attribute,
    AttributeDecoder,
    AttributeEncoder,
    [
        MappedAddress,
        Username,
        ErrorCode,
        UnknownAttributes,
        Realm,
        Nonce,
        XorMappedAddress,
        XorMappedAddress2,
        Software,
        AlternateServer,
        ChangeRequest,
        ResponseOrigin,
        ResponsePort,
        OtherAddress,
        ChannelNumber,
        Lifetime,
        XorPeerAddress,
        Data,
        XorRelayAddress,
        EvenPort,
        RequestedTransport,
        DontFragment,
        ReservationToken,
        RequestedAddressFamily,
        AdditionalAddressFamily,
        Priority,
        UseCandidate,
        IceControlled,
        IceControlling,
        Nomination
    ]
);

/// A STUN message over [`Attribute`] (never holding MESSAGE-INTEGRITY or FINGERPRINT).
pub type Message = stun_codec::Message<Attribute>;

/// A fresh transaction ID from `rng` (RFC 8489 §6: uniformly random, 96 bits).
pub fn new_transaction_id(rng: &mut impl rand::Rng) -> TransactionId {
    let mut id = [0u8; 12];
    rng.fill_bytes(&mut id);
    TransactionId::new(id)
}

/// A Binding request with no attributes.
pub fn binding_request(transaction_id: TransactionId) -> Message {
    Message::new(MessageClass::Request, methods::BINDING, transaction_id)
}

/// An error response to `request` (same method and transaction) carrying `error`.
pub fn error_response(request: &Message, error: impl Into<attributes::ErrorCode>) -> Message {
    let mut response = Message::new(
        MessageClass::ErrorResponse,
        request.method(),
        request.transaction_id(),
    );
    response.add_attribute(error.into());
    response
}
