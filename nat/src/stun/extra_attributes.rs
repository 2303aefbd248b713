//! STUN attributes that `stun_codec` 0.4 lacks or gets wrong.
//!
//! - [`ChangeRequest`] (RFC 5780 §7.2): `stun_codec`'s own version reads the flags from the
//!   wrong bits (0x2/0x1 instead of 0x4/0x2), so a decoded message no longer re-encodes to the
//!   bytes that MESSAGE-INTEGRITY or FINGERPRINT covered.
//! - [`Nomination`]: the renomination counter (type 0xC001, comprehension-optional) that lets
//!   the controlling agent move a running session to a better pair (see `holepunch`).

use bytecodec::fixnum::{U32beDecoder, U32beEncoder};
use bytecodec::{ByteCount, Decode, Encode, Eos, ErrorKind, Result, SizedEncode, TryTaggedDecode};
use stun_codec::{Attribute, AttributeType};

/// `CHANGE-REQUEST` (RFC 5780 §7.2): asks the server to answer from another IP and/or port.
///
/// Wire value: a 32-bit word whose bit 0x4 is "change IP" and bit 0x2 is "change port".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChangeRequest {
    change_ip: bool,
    change_port: bool,
}

impl ChangeRequest {
    /// The attribute type.
    pub const CODEPOINT: u16 = 0x0003;
    const CHANGE_IP_BIT: u32 = 0x4;
    const CHANGE_PORT_BIT: u32 = 0x2;

    /// A request to change the IP address and/or the port of the response's source.
    pub fn new(change_ip: bool, change_port: bool) -> Self {
        ChangeRequest {
            change_ip,
            change_port,
        }
    }

    /// Whether the response should come from the server's other IP address.
    pub fn change_ip(&self) -> bool {
        self.change_ip
    }

    /// Whether the response should come from the server's other port.
    pub fn change_port(&self) -> bool {
        self.change_port
    }

    /// The 32-bit wire value.
    pub fn to_bits(self) -> u32 {
        let mut bits = 0;
        if self.change_ip {
            bits |= Self::CHANGE_IP_BIT;
        }
        if self.change_port {
            bits |= Self::CHANGE_PORT_BIT;
        }
        bits
    }

    /// Reads the wire value; other bits are reserved and ignored (RFC 5780 §7.2).
    pub fn from_bits(bits: u32) -> Self {
        ChangeRequest {
            change_ip: bits & Self::CHANGE_IP_BIT != 0,
            change_port: bits & Self::CHANGE_PORT_BIT != 0,
        }
    }
}

impl Attribute for ChangeRequest {
    type Decoder = ChangeRequestDecoder;
    type Encoder = ChangeRequestEncoder;

    fn get_type(&self) -> AttributeType {
        AttributeType::new(Self::CODEPOINT)
    }
}

/// Decoder of [`ChangeRequest`].
#[derive(Debug, Default)]
pub struct ChangeRequestDecoder(U32beDecoder);

impl Decode for ChangeRequestDecoder {
    type Item = ChangeRequest;

    fn decode(&mut self, buf: &[u8], eos: Eos) -> Result<usize> {
        self.0.decode(buf, eos)
    }

    fn finish_decoding(&mut self) -> Result<Self::Item> {
        self.0.finish_decoding().map(ChangeRequest::from_bits)
    }

    fn requiring_bytes(&self) -> ByteCount {
        self.0.requiring_bytes()
    }

    fn is_idle(&self) -> bool {
        self.0.is_idle()
    }
}

impl TryTaggedDecode for ChangeRequestDecoder {
    type Tag = AttributeType;

    fn try_start_decoding(&mut self, tag: Self::Tag) -> Result<bool> {
        Ok(tag.as_u16() == ChangeRequest::CODEPOINT)
    }
}

/// Encoder of [`ChangeRequest`].
#[derive(Debug, Default)]
pub struct ChangeRequestEncoder(U32beEncoder);

impl Encode for ChangeRequestEncoder {
    type Item = ChangeRequest;

    fn encode(&mut self, buf: &mut [u8], eos: Eos) -> Result<usize> {
        self.0.encode(buf, eos)
    }

    fn start_encoding(&mut self, item: Self::Item) -> Result<()> {
        if !self.0.is_idle() {
            return Err(ErrorKind::EncoderFull.into());
        }
        self.0.start_encoding(item.to_bits())
    }

    fn requiring_bytes(&self) -> ByteCount {
        self.0.requiring_bytes()
    }

    fn is_idle(&self) -> bool {
        self.0.is_idle()
    }
}

impl SizedEncode for ChangeRequestEncoder {
    fn exact_requiring_bytes(&self) -> u64 {
        self.0.exact_requiring_bytes()
    }
}

/// `NOMINATION` (type 0xC001): a counter the controlling agent raises each time it nominates
/// a pair, so that the controlled agent follows the latest nomination even when checks
/// arrive out of order. Comprehension-optional: agents that do not know it ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Nomination(u32);

impl Nomination {
    /// The attribute type.
    pub const CODEPOINT: u16 = 0xC001;

    /// A nomination with this sequence number.
    pub fn new(value: u32) -> Self {
        Nomination(value)
    }

    /// The sequence number.
    pub fn value(self) -> u32 {
        self.0
    }
}

impl Attribute for Nomination {
    type Decoder = NominationDecoder;
    type Encoder = NominationEncoder;

    fn get_type(&self) -> AttributeType {
        AttributeType::new(Self::CODEPOINT)
    }
}

/// Decoder of [`Nomination`].
#[derive(Debug, Default)]
pub struct NominationDecoder(U32beDecoder);

impl Decode for NominationDecoder {
    type Item = Nomination;

    fn decode(&mut self, buf: &[u8], eos: Eos) -> Result<usize> {
        self.0.decode(buf, eos)
    }

    fn finish_decoding(&mut self) -> Result<Self::Item> {
        self.0.finish_decoding().map(Nomination)
    }

    fn requiring_bytes(&self) -> ByteCount {
        self.0.requiring_bytes()
    }

    fn is_idle(&self) -> bool {
        self.0.is_idle()
    }
}

impl TryTaggedDecode for NominationDecoder {
    type Tag = AttributeType;

    fn try_start_decoding(&mut self, tag: Self::Tag) -> Result<bool> {
        Ok(tag.as_u16() == Nomination::CODEPOINT)
    }
}

/// Encoder of [`Nomination`].
#[derive(Debug, Default)]
pub struct NominationEncoder(U32beEncoder);

impl Encode for NominationEncoder {
    type Item = Nomination;

    fn encode(&mut self, buf: &mut [u8], eos: Eos) -> Result<usize> {
        self.0.encode(buf, eos)
    }

    fn start_encoding(&mut self, item: Self::Item) -> Result<()> {
        if !self.0.is_idle() {
            return Err(ErrorKind::EncoderFull.into());
        }
        self.0.start_encoding(item.0)
    }

    fn requiring_bytes(&self) -> ByteCount {
        self.0.requiring_bytes()
    }

    fn is_idle(&self) -> bool {
        self.0.is_idle()
    }
}

impl SizedEncode for NominationEncoder {
    fn exact_requiring_bytes(&self) -> u64 {
        self.0.exact_requiring_bytes()
    }
}
