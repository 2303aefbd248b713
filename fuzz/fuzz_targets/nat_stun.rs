//! Fuzzes the STUN decoder: it must never panic; a message it accepts must re-encode
//! (without integrity) to bytes that decode to a message of the same class, method and
//! transaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nat::stun::{IntegrityKey, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = decode(data) else {
        return;
    };
    let _ = decoded.verify_integrity(&IntegrityKey::short_term("fuzz"));
    let _ = decoded.unknown_comprehension_required();
    let message = decoded.into_message();
    let (class, method, transaction_id) =
        (message.class(), message.method(), message.transaction_id());
    if let Ok(bytes) = encode(message, None, true) {
        let again = decode(&bytes).expect("re-encoded message must decode");
        assert_eq!(again.message().class(), class);
        assert_eq!(again.message().method(), method);
        assert_eq!(again.message().transaction_id(), transaction_id);
    }
});
