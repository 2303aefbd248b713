//! Fuzzes device-to-device message decoding: never panics; whatever decodes re-encodes to
//! the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::peer::PeerToPeer;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = PeerToPeer::decode(data) {
        let _ = message.validate();
        let again = postcard::to_allocvec(&message).expect("a decoded message re-encodes");
        assert_eq!(PeerToPeer::decode(&again).as_ref(), Ok(&message));
    }
});
