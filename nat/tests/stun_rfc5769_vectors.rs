//! RFC 5769 test vectors: decode, check MESSAGE-INTEGRITY and FINGERPRINT, re-encode to the
//! same bytes, and reject corrupted copies with typed errors.

use nat::stun::attributes::{
    IceControlled, IceControlling, Nonce, Priority, Realm, Software, Username, XorMappedAddress,
};
use nat::stun::{DecodeError, IntegrityError, IntegrityKey, MessageClass, decode, encode, is_stun};

const SHORT_TERM_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";

/// RFC 5769 §2.1.
const SAMPLE_REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
];

/// RFC 5769 §2.2.
const SAMPLE_IPV4_RESPONSE: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
];

/// RFC 5769 §2.3.
const SAMPLE_IPV6_RESPONSE: [u8; 92] = [
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
];

/// RFC 5769 §2.4 (long-term credentials; no FINGERPRINT).
const SAMPLE_LONG_TERM_REQUEST: [u8; 116] = [
    0x00, 0x01, 0x00, 0x60, 0x21, 0x12, 0xa4, 0x42, 0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0,
    0x29, 0xda, 0x41, 0x2e, 0x00, 0x06, 0x00, 0x12, 0xe3, 0x83, 0x9e, 0xe3, 0x83, 0x88, 0xe3, 0x83,
    0xaa, 0xe3, 0x83, 0x83, 0xe3, 0x82, 0xaf, 0xe3, 0x82, 0xb9, 0x00, 0x00, 0x00, 0x15, 0x00, 0x1c,
    0x66, 0x2f, 0x2f, 0x34, 0x39, 0x39, 0x6b, 0x39, 0x35, 0x34, 0x64, 0x36, 0x4f, 0x4c, 0x33, 0x34,
    0x6f, 0x4c, 0x39, 0x46, 0x53, 0x54, 0x76, 0x79, 0x36, 0x34, 0x73, 0x41, 0x00, 0x14, 0x00, 0x0b,
    0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x6f, 0x72, 0x67, 0x00, 0x00, 0x08, 0x00, 0x14,
    0xf6, 0x70, 0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e, 0x02, 0xb8, 0xe0, 0x71, 0x2e, 0x85, 0xc9, 0xa2,
    0x8c, 0xa8, 0x96, 0x66,
];

/// "マトリックス" (RFC 5769 §2.4).
const LONG_TERM_USERNAME: &str = "\u{30de}\u{30c8}\u{30ea}\u{30c3}\u{30af}\u{30b9}";
/// The SASLprep'd form of "The<U+00AD>M<U+00AA>tr<U+2168>" (RFC 5769 §2.4).
const LONG_TERM_PASSWORD: &str = "TheMatrIX";

fn long_term_key() -> IntegrityKey {
    IntegrityKey::long_term(LONG_TERM_USERNAME, "example.org", LONG_TERM_PASSWORD)
}

#[test]
fn sample_request_decodes_and_verifies() {
    let decoded = decode(&SAMPLE_REQUEST).expect("valid vector");
    let message = decoded.message();
    assert_eq!(message.class(), MessageClass::Request);
    assert_eq!(message.method(), nat::stun::methods::BINDING);
    let software = message.get_attribute::<Software>().expect("SOFTWARE");
    assert_eq!(software.description(), "STUN test client");
    assert_eq!(
        message
            .get_attribute::<Priority>()
            .expect("PRIORITY")
            .prio(),
        0x6e00_01ff
    );
    assert_eq!(
        message
            .get_attribute::<IceControlled>()
            .expect("ICE-CONTROLLED")
            .prio(),
        0x932f_f9b1_5126_3b36
    );
    assert!(message.get_attribute::<IceControlling>().is_none());
    assert_eq!(
        message
            .get_attribute::<Username>()
            .expect("USERNAME")
            .name(),
        "evtj:h6vY"
    );
    assert!(decoded.has_fingerprint());
    assert!(decoded.has_integrity());
    decoded
        .verify_integrity(&IntegrityKey::short_term(SHORT_TERM_PASSWORD))
        .expect("right password");
    assert_eq!(
        decoded.verify_integrity(&IntegrityKey::short_term("VOkJxbRl1RmTxUk/WvJxBT")),
        Err(IntegrityError::Mismatch)
    );
}

#[test]
fn ipv4_response_decodes_and_verifies() {
    let decoded = decode(&SAMPLE_IPV4_RESPONSE).expect("valid vector");
    assert_eq!(decoded.message().class(), MessageClass::SuccessResponse);
    let mapped = decoded
        .message()
        .get_attribute::<XorMappedAddress>()
        .expect("mapped");
    assert_eq!(mapped.address(), "192.0.2.1:32853".parse().expect("addr"));
    decoded
        .verify_integrity(&IntegrityKey::short_term(SHORT_TERM_PASSWORD))
        .expect("right password");
}

#[test]
fn ipv6_response_decodes_and_verifies() {
    let decoded = decode(&SAMPLE_IPV6_RESPONSE).expect("valid vector");
    let mapped = decoded
        .message()
        .get_attribute::<XorMappedAddress>()
        .expect("mapped");
    assert_eq!(
        mapped.address(),
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .expect("addr")
    );
    decoded
        .verify_integrity(&IntegrityKey::short_term(SHORT_TERM_PASSWORD))
        .expect("right password");
}

#[test]
fn long_term_request_decodes_and_verifies() {
    let decoded = decode(&SAMPLE_LONG_TERM_REQUEST).expect("valid vector");
    let message = decoded.message();
    assert_eq!(
        message
            .get_attribute::<Username>()
            .expect("USERNAME")
            .name(),
        LONG_TERM_USERNAME
    );
    assert_eq!(
        message.get_attribute::<Realm>().expect("REALM").text(),
        "example.org"
    );
    assert_eq!(
        message.get_attribute::<Nonce>().expect("NONCE").value(),
        "f//499k954d6OL34oL9FSTvy64sA"
    );
    assert!(!decoded.has_fingerprint());
    decoded
        .verify_integrity(&long_term_key())
        .expect("right password");
    let wrong = IntegrityKey::long_term(LONG_TERM_USERNAME, "example.org", "TheMatrix");
    assert_eq!(
        decoded.verify_integrity(&wrong),
        Err(IntegrityError::Mismatch)
    );
}

#[test]
fn vectors_reencode_to_identical_bytes() {
    let short = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
    for vector in [
        &SAMPLE_REQUEST[..],
        &SAMPLE_IPV4_RESPONSE,
        &SAMPLE_IPV6_RESPONSE,
    ] {
        let decoded = decode(vector).expect("valid vector");
        let bytes = encode(decoded.into_message(), Some(&short), true).expect("encode");
        assert_eq!(bytes, vector);
    }
    let decoded = decode(&SAMPLE_LONG_TERM_REQUEST).expect("valid vector");
    let bytes = encode(decoded.into_message(), Some(&long_term_key()), false).expect("encode");
    assert_eq!(bytes, SAMPLE_LONG_TERM_REQUEST);
}

/// Whether a (possibly corrupted) copy would be accepted as authentic by a receiver that
/// requires FINGERPRINT when the original had one (as ICE does, RFC 8445 §7.2.2).
fn accepted(bytes: &[u8], key: &IntegrityKey, require_fingerprint: bool) -> bool {
    match decode(bytes) {
        Ok(decoded) => {
            decoded.verify_integrity(key).is_ok()
                && (decoded.has_fingerprint() || !require_fingerprint)
        }
        Err(_) => false,
    }
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let short = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
    let cases: [(&[u8], &IntegrityKey); 4] = [
        (&SAMPLE_REQUEST, &short),
        (&SAMPLE_IPV4_RESPONSE, &short),
        (&SAMPLE_IPV6_RESPONSE, &short),
        (&SAMPLE_LONG_TERM_REQUEST, &long_term_key()),
    ];
    for (vector, key) in cases {
        let require_fingerprint = decode(vector).expect("valid").has_fingerprint();
        assert!(accepted(vector, key, require_fingerprint));
        for bit in 0..vector.len() * 8 {
            let mut corrupted = vector.to_vec();
            corrupted[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !accepted(&corrupted, key, require_fingerprint),
                "bit {bit} flipped was accepted"
            );
        }
    }
}

#[test]
fn bit_flips_under_fingerprint_are_bad_fingerprint() {
    // Bytes 20.. of the sample request sit inside attributes whose framing survives a flip of
    // their value bits; the FINGERPRINT check must catch those.
    let mut corrupted = SAMPLE_REQUEST.to_vec();
    corrupted[30] ^= 0x01; // inside SOFTWARE's text
    assert!(matches!(
        decode(&corrupted),
        Err(DecodeError::BadFingerprint { .. })
    ));
    let mut corrupted = SAMPLE_REQUEST.to_vec();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0x80; // the FINGERPRINT value itself
    assert!(matches!(
        decode(&corrupted),
        Err(DecodeError::BadFingerprint { .. })
    ));
}

#[test]
fn integrity_tampering_is_a_mismatch() {
    let mut corrupted = SAMPLE_LONG_TERM_REQUEST.to_vec();
    corrupted[100] ^= 0x10; // inside the MESSAGE-INTEGRITY tag
    let decoded = decode(&corrupted).expect("framing is intact");
    assert_eq!(
        decoded.verify_integrity(&long_term_key()),
        Err(IntegrityError::Mismatch)
    );
    let mut corrupted = SAMPLE_LONG_TERM_REQUEST.to_vec();
    corrupted[50] ^= 0x01; // inside NONCE, covered by the HMAC
    let decoded = decode(&corrupted).expect("framing is intact");
    assert_eq!(
        decoded.verify_integrity(&long_term_key()),
        Err(IntegrityError::Mismatch)
    );
}

#[test]
fn truncated_copies_are_rejected() {
    for vector in [
        &SAMPLE_REQUEST[..],
        &SAMPLE_IPV4_RESPONSE,
        &SAMPLE_IPV6_RESPONSE,
        &SAMPLE_LONG_TERM_REQUEST,
    ] {
        for len in 0..vector.len() {
            let err = decode(&vector[..len]).expect_err("truncated");
            if len < 20 {
                assert_eq!(err, DecodeError::Truncated { actual: len });
            } else {
                assert!(
                    matches!(err, DecodeError::LengthMismatch { .. }),
                    "len {len}: {err:?}"
                );
            }
        }
    }
}

#[test]
fn trailing_bytes_and_bad_framing_are_rejected() {
    let mut longer = SAMPLE_IPV4_RESPONSE.to_vec();
    longer.extend_from_slice(&[0, 0, 0, 0]);
    assert!(matches!(
        decode(&longer),
        Err(DecodeError::LengthMismatch { .. })
    ));

    let mut no_cookie = SAMPLE_IPV4_RESPONSE.to_vec();
    no_cookie[4] ^= 0xff;
    assert_eq!(decode(&no_cookie).map(|_| ()), Err(DecodeError::NotStun));
    assert!(!is_stun(&no_cookie));

    // Attribute length pointing past the end, with the header length still consistent.
    let mut overrun = SAMPLE_IPV4_RESPONSE.to_vec();
    overrun[22] = 0x01; // SOFTWARE length 0x010b
    assert!(matches!(
        decode(&overrun),
        Err(DecodeError::AttributeOverrun { .. })
    ));
}

#[test]
fn demux_tells_stun_from_quic_and_channel_data() {
    assert!(is_stun(&SAMPLE_REQUEST));
    let mut quic_long = SAMPLE_REQUEST.to_vec();
    quic_long[0] = 0xc0;
    assert!(!is_stun(&quic_long));
    let mut quic_short = SAMPLE_REQUEST.to_vec();
    quic_short[0] = 0x40;
    assert!(!is_stun(&quic_short));
    assert!(!is_stun(&SAMPLE_REQUEST[..19]));
}
