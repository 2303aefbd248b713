//! Fuzzes opening end-to-end envelopes and reading handshake messages: never panics, never
//! opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::e2e::{HandshakeMessage, SealedEnvelope, open};
use proto::{SecretKey, UnixTime};

fuzz_target!(|data: &[u8]| {
    let recipient = SecretKey::from_bytes(&[9u8; 32]);
    let authority = SecretKey::from_bytes(&[7u8; 32]).public();
    if let Ok(envelope) = postcard::from_bytes::<SealedEnvelope>(data) {
        let opened = open(
            &recipient,
            &authority,
            UnixTime::from_secs(1_800_000_000),
            b"chat",
            &envelope,
        );
        assert!(opened.is_err());
    }
    let _ = postcard::from_bytes::<HandshakeMessage>(data);
});
