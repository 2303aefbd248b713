//! Fuzzes `PacketOpener::open`: arbitrary datagrams must never panic or be accepted, and a
//! genuine packet with any byte changed must be rejected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::packet::{Flags, PacketHeader};
use media::secure::{Direction, PacketOpener, PacketSealer};

fuzz_target!(|data: &[u8]| {
    let key = [0x5a; 32];
    let mut opener = PacketOpener::new(key, b"fuzz", Direction::CallerToCallee);
    assert!(opener.open(data).is_err(), "forged datagram accepted");

    // Seal the input as a payload, then flip the byte the input's first byte points at.
    let mut sealer = PacketSealer::new(key, b"fuzz", Direction::CallerToCallee);
    let header = PacketHeader { sequence: 1, timestamp: 960, flags: Flags::empty() };
    let payload = data.get(..data.len().min(1000)).unwrap_or(&[]);
    let Ok(wire) = sealer.seal(header, payload) else { return };
    let mut opener = PacketOpener::new(key, b"fuzz", Direction::CallerToCallee);
    if let Some(&pick) = data.first() {
        let mut bad = wire.clone();
        let i = usize::from(pick) % bad.len();
        bad[i] ^= data.get(1).copied().unwrap_or(1).max(1);
        assert!(opener.open(&bad).is_err(), "tampered datagram accepted");
    }
    let opened = opener.open(&wire).expect("genuine datagram accepted");
    assert_eq!(opened.payload, payload);
    assert!(opener.open(&wire).is_err(), "replay accepted");
});
