//! Fuzzes credential decoding and verification: arbitrary bytes never panic and never verify
//! against a fixed authority key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{SecretKey, SignedCredential, UnixTime};

fuzz_target!(|data: &[u8]| {
    let authority = SecretKey::from_bytes(&[7u8; 32]).public();
    if let Ok(credential) = SignedCredential::from_bytes(data) {
        let _ = credential.claims_unverified();
        assert!(
            credential
                .verify(&authority, UnixTime::from_secs(1_800_000_000))
                .is_err(),
            "random bytes must not carry a valid signature"
        );
    }
});
