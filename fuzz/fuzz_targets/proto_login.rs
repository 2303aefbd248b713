//! Fuzzes the login-server protocol decoders (stream hello, device and supernode requests,
//! the server's answers) and the signed directory: any bytes decode or fail, never panic;
//! whatever decodes re-encodes and decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::login;

fuzz_target!(|data: &[u8]| {
    login::decode_any(data);
    if let Ok(request) = login::decode_client_to_login(data) {
        let bytes = postcard::to_allocvec(&request).expect("re-encode");
        assert_eq!(login::decode_client_to_login(&bytes).ok(), Some(request));
    }
    if let Ok(request) = login::decode_supernode_to_login(data) {
        let bytes = postcard::to_allocvec(&request).expect("re-encode");
        assert_eq!(login::decode_supernode_to_login(&bytes).ok(), Some(request));
    }
    if let Ok(directory) = proto::directory::SignedDirectory::from_bytes(data) {
        let _ = directory.verify(
            &proto::SecretKey::from_bytes(&[7; 32]).public(),
            proto::UnixTime::from_secs(0),
        );
    }
});
