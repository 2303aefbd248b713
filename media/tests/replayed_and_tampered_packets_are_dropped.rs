//! Done-when: replayed or tampered packets are dropped; relays only see ciphertext.

use std::time::{Duration, Instant};

use media::jitter::JitterConfig;
use media::pipeline::MediaReceiver;
use media::secure::{Direction, OpenError};
use media::sender::{MediaSender, SenderConfig};

const KEY: [u8; 32] = [3; 32];

fn packets(n: u32) -> Vec<Vec<u8>> {
    let t0 = Instant::now();
    let mut s = MediaSender::new(
        SenderConfig::default(),
        KEY,
        b"call-7",
        Direction::CallerToCallee,
    )
    .expect("sender");
    let tone: Vec<f32> = (0..960).map(|i| 0.4 * (i as f32 * 0.07).sin()).collect();
    let mut out = Vec::new();
    for i in 0..n {
        s.handle_frame(t0 + Duration::from_millis(20) * i, &tone)
            .expect("frame");
        out.extend(std::iter::from_fn(|| s.poll_transmit()));
    }
    out
}

fn receiver() -> MediaReceiver {
    MediaReceiver::new(
        JitterConfig::default(),
        KEY,
        b"call-7",
        Direction::CallerToCallee,
    )
    .expect("receiver")
}

#[test]
fn replayed_packets_are_rejected_and_never_played_twice() {
    let now = Instant::now();
    let wire = packets(20);
    let mut rx = receiver();
    for w in &wire {
        rx.handle_datagram(now, w).expect("fresh packet accepted");
    }
    for (i, w) in wire.iter().enumerate() {
        assert_eq!(
            rx.handle_datagram(now, w),
            Err(OpenError::Replayed { sequence: i as u32 })
        );
    }
    assert_eq!(rx.rejected_datagrams(), 20);
    assert_eq!(
        rx.stats().received_packets(),
        20,
        "replays do not reach the statistics"
    );
    assert_eq!(
        rx.jitter_counters().duplicate_packets,
        0,
        "replays do not reach the jitter buffer"
    );
}

#[test]
fn tampered_packets_fail_authentication() {
    let now = Instant::now();
    let wire = packets(3);
    let mut rx = receiver();
    let plain = &wire[0];
    // Flip each byte in turn: header (sequence, timestamp, flags), ciphertext and tag.
    for i in 1..plain.len() {
        let mut bad = plain.clone();
        bad[i] ^= 0x20;
        let err = rx
            .handle_datagram(now, &bad)
            .expect_err("tampered byte {i} must be rejected");
        assert!(
            matches!(err, OpenError::Authentication | OpenError::Malformed(_)),
            "byte {i}: {err:?}"
        );
    }
    let mut bad = plain.clone();
    bad[0] = 7;
    assert!(matches!(
        rx.handle_datagram(now, &bad),
        Err(OpenError::Malformed(_))
    ));
    assert!(matches!(
        rx.handle_datagram(now, &plain[..plain.len() - 1]),
        Err(OpenError::Authentication)
    ));
    assert!(matches!(
        rx.handle_datagram(now, &plain[..12]),
        Err(OpenError::MissingTag)
    ));
    // The genuine packet still gets through after all the forgeries.
    rx.handle_datagram(now, plain)
        .expect("genuine packet accepted");
}

#[test]
fn a_packet_from_another_call_or_key_is_rejected() {
    let now = Instant::now();
    let wire = packets(1);
    let mut other_call = MediaReceiver::new(
        JitterConfig::default(),
        KEY,
        b"call-8",
        Direction::CallerToCallee,
    )
    .expect("rx");
    assert_eq!(
        other_call.handle_datagram(now, &wire[0]),
        Err(OpenError::Authentication)
    );
    let mut other_key = MediaReceiver::new(
        JitterConfig::default(),
        [4; 32],
        b"call-7",
        Direction::CallerToCallee,
    )
    .expect("rx");
    assert_eq!(
        other_key.handle_datagram(now, &wire[0]),
        Err(OpenError::Authentication)
    );
}

#[test]
fn the_payload_is_not_readable_on_the_wire() {
    let t0 = Instant::now();
    let mut enc = media::codec::Encoder::new(SenderConfig::default().encoder).expect("encoder");
    let tone: Vec<f32> = (0..960).map(|i| 0.4 * (i as f32 * 0.07).sin()).collect();
    let opus = enc.encode(&tone).expect("encode");
    let wire = packets(1);
    let _ = t0;
    // The first Opus packet of the same encoder settings is deterministic; it must not
    // appear in the datagram.
    assert!(
        !wire[0]
            .windows(opus.len().min(8))
            .any(|w| w == &opus[..opus.len().min(8)])
    );
}
