//! Fuzzes the parked-session datagram decoder and opener (proto::park): typed errors, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    proto::park::fuzz_decode(data);
});
