//! Fuzzes the jitter buffer with arbitrary packet streams and poll times: it must never
//! panic, always return one 960-sample frame, and keep its memory bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    media::jitter::exercise_with_bytes(data);
});
