//! CHANGE-REQUEST uses the RFC 5780 bits and survives MESSAGE-INTEGRITY and FINGERPRINT; the
//! decoder returns typed errors, never panics, on random and mutated bytes.

use nat::stun::attributes::{ChangeRequest, Software, XorMappedAddress};
use nat::stun::{IntegrityKey, TransactionId, binding_request, decode, encode};
use proptest::prelude::*;

#[test]
fn change_request_uses_rfc5780_bits_and_survives_integrity_and_fingerprint() {
    let key = IntegrityKey::short_term("secret");
    for (ip, port, bits) in [
        (true, false, 4u8),
        (false, true, 2),
        (true, true, 6),
        (false, false, 0),
    ] {
        let mut request = binding_request(TransactionId::new([7; 12]));
        request.add_attribute(ChangeRequest::new(ip, port));
        let bytes = encode(request, Some(&key), true).expect("encode");
        // Header (20) then CHANGE-REQUEST: type 0x0003, length 4, value.
        assert_eq!(&bytes[20..28], &[0, 3, 0, 4, 0, 0, 0, bits]);
        let decoded = decode(&bytes).expect("decode");
        decoded.verify_integrity(&key).expect("integrity");
        assert!(decoded.has_fingerprint());
        let change = decoded
            .message()
            .get_attribute::<ChangeRequest>()
            .expect("attribute");
        assert_eq!((change.change_ip(), change.change_port()), (ip, port));
    }
}

#[test]
fn reserved_change_request_bits_are_ignored() {
    assert_eq!(
        ChangeRequest::from_bits(0xffff_fff9),
        ChangeRequest::new(false, false)
    );
    assert_eq!(
        ChangeRequest::from_bits(0x0000_0005),
        ChangeRequest::new(true, false)
    );
}

#[test]
fn methods_above_0x0f_reencode_to_the_same_type_field() {
    // Found by the nat_stun fuzz target: type 0x1400 is a Request of method 0x500.
    let input = [
        0x14, 0x00, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 0x0a, 0xe4, 0x19, 0xde, 0x12, 0xa4, 0xe4,
        0xe4, 0xe4, 0xe4, 0x14, 0xe4,
    ];
    let decoded = decode(&input).expect("valid header");
    assert_eq!(decoded.message().method().as_u16(), 0x500);
    let bytes = encode(decoded.into_message(), None, false).expect("encode");
    assert_eq!(bytes, input);
    for method in [0x001u16, 0x00f, 0x010, 0x07f, 0x080, 0xfff] {
        let message = nat::stun::Message::new(
            nat::stun::MessageClass::ErrorResponse,
            nat::stun::Method::new(method).expect("12-bit method"),
            TransactionId::new([2; 12]),
        );
        let decoded = decode(&encode(message, None, true).expect("encode")).expect("decode");
        assert_eq!(decoded.message().method().as_u16(), method);
        assert_eq!(
            decoded.message().class(),
            nat::stun::MessageClass::ErrorResponse
        );
    }
}

fn valid_message() -> Vec<u8> {
    let mut message = binding_request(TransactionId::new([1; 12]));
    message.add_attribute(Software::new("peerphone".to_owned()).expect("short"));
    message.add_attribute(XorMappedAddress::new(
        "203.0.113.9:4242".parse().expect("addr"),
    ));
    message.add_attribute(ChangeRequest::new(true, true));
    encode(message, Some(&IntegrityKey::short_term("pw")), true).expect("encode")
}

/// Every attribute type the codec knows, plus MESSAGE-INTEGRITY and FINGERPRINT.
const KNOWN_TYPES: [u16; 32] = [
    0x0001, 0x0003, 0x0006, 0x0008, 0x0009, 0x000A, 0x000C, 0x000D, 0x0012, 0x0013, 0x0014, 0x0015,
    0x0016, 0x0017, 0x0018, 0x0019, 0x001A, 0x0020, 0x0022, 0x0024, 0x0025, 0x0027, 0x8000, 0x8020,
    0x8022, 0x8023, 0x8028, 0x8029, 0x802A, 0x802B, 0x802C, 0xC001,
];

fn known_attribute() -> impl Strategy<Value = Vec<u8>> {
    (
        0..KNOWN_TYPES.len(),
        proptest::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(i, value)| {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&KNOWN_TYPES[i].to_be_bytes());
            bytes.extend_from_slice(&(value.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&value);
            bytes.resize(bytes.len().div_ceil(4) * 4, 0);
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn known_attributes_with_random_values_never_panic(
        attributes in proptest::collection::vec(known_attribute(), 0..6),
        class_bits in 0u16..4,
    ) {
        let body: Vec<u8> = attributes.concat();
        let message_type = 0x0001 | ((class_bits & 1) << 4) | ((class_bits & 2) << 7);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&message_type.to_be_bytes());
        bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&0x2112_A442u32.to_be_bytes());
        bytes.extend_from_slice(&[9; 12]);
        bytes.extend_from_slice(&body);
        if let Ok(decoded) = decode(&bytes) {
            let _ = decoded.verify_integrity(&IntegrityKey::short_term("pw"));
            // Whatever decodes re-encodes and decodes again.
            let again = encode(decoded.into_message(), None, true).expect("re-encode");
            prop_assert!(decode(&again).is_ok());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        body_words in proptest::collection::vec(any::<u32>(), 0..40),
        message_type in 0u16..0x3fff,
    ) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&message_type.to_be_bytes());
        bytes.extend_from_slice(&((body_words.len() * 4) as u16).to_be_bytes());
        bytes.extend_from_slice(&0x2112_A442u32.to_be_bytes());
        bytes.extend_from_slice(&[9; 12]);
        for word in &body_words {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        if let Ok(decoded) = decode(&bytes) {
            let _ = decoded.verify_integrity(&IntegrityKey::short_term("pw"));
            let _ = decoded.unknown_comprehension_required();
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic_nor_pass_integrity(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let original = valid_message();
        let mut bytes = original.clone();
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        if cut % 3 == 0 {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        if bytes != original {
            let accepted = decode(&bytes)
                .map(|d| d.has_fingerprint()
                    && d.verify_integrity(&IntegrityKey::short_term("pw")).is_ok())
                .unwrap_or(false);
            prop_assert!(!accepted);
        }
    }
}
