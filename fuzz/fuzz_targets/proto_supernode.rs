//! Fuzzes the supernode protocol decoders (client → supernode, supernode → client, mesh)
//! and the frame reassembly in front of them: typed errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    proto::supernode::fuzz_decode(data);
});
