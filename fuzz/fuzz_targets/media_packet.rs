//! Fuzzes the media packet decoder: it must never panic, and a packet it accepts must
//! re-encode to the same bytes (less unknown flag bits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::packet::MediaPacket;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = MediaPacket::decode(data) {
        let again = MediaPacket::decode(&packet.encode()).expect("re-encoded packet must decode");
        assert_eq!(again, packet);
    }
});
