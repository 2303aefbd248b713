//! Fuzzes opening routed device-to-device payloads and offline-mailbox bundles: never panics,
//! never opens (nothing here is sealed by a certified sender).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::peer::{open_offline_bundle, open_peer_message};
use proto::{SecretKey, UnixTime};

fuzz_target!(|data: &[u8]| {
    let recipient = SecretKey::from_bytes(&[9u8; 32]);
    let authority = SecretKey::from_bytes(&[7u8; 32]).public();
    let now = UnixTime::from_secs(1_800_000_000);
    assert!(open_peer_message(&recipient, &authority, now, data).is_err());
    assert!(open_offline_bundle(&recipient, &authority, now, data).is_err());
});
