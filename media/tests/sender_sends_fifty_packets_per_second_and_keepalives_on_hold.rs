//! Done-when: 50 packets per second through silence, one packet per 3 s on hold, mute
//! sends silence frames (virtual time).

use std::time::{Duration, Instant};

use media::packet::{Flags, MediaPacket};
use media::secure::{Direction, PacketOpener};
use media::sender::{MediaSender, SendMode, SenderConfig};

const KEY: [u8; 32] = [9; 32];

fn sender() -> MediaSender {
    MediaSender::new(
        SenderConfig::default(),
        KEY,
        b"call",
        Direction::CalleeToCaller,
    )
    .expect("sender")
}

fn drain(s: &mut MediaSender, at: Instant, log: &mut Vec<(Instant, Vec<u8>)>) {
    while let Some(d) = s.poll_transmit() {
        log.push((at, d));
    }
}

#[test]
fn silence_is_sent_at_fifty_packets_per_second() {
    let t0 = Instant::now();
    let mut s = sender();
    let mut sent = Vec::new();
    // 10 s of digital silence from the capture device, one frame per 20 ms.
    for i in 0..500u32 {
        let now = t0 + Duration::from_millis(20) * i;
        s.handle_frame(now, &[0.0; 960]).expect("frame");
        drain(&mut s, now, &mut sent);
    }
    assert_eq!(
        sent.len(),
        500,
        "no silence suppression: one packet per frame"
    );
    let mut opener = PacketOpener::new(KEY, b"call", Direction::CalleeToCaller);
    for (i, (_, wire)) in sent.iter().enumerate() {
        let p = opener.open(wire).expect("authentic");
        assert_eq!(p.header.sequence, i as u32);
        assert_eq!(p.header.timestamp, i as u32 * 960);
        assert!(
            !p.payload.is_empty(),
            "silence frames carry an Opus payload"
        );
    }
}

#[test]
fn a_stalled_capture_device_is_filled_with_silence_frames() {
    let t0 = Instant::now();
    let mut s = sender();
    let mut sent = Vec::new();
    s.handle_frame(t0, &[0.0; 960]).expect("frame");
    drain(&mut s, t0, &mut sent);
    // The device stops delivering; only timers fire for 2 s.
    let end = t0 + Duration::from_secs(2);
    while let Some(at) = s.poll_timeout().filter(|t| *t <= end) {
        s.handle_timeout(at).expect("timeout");
        drain(&mut s, at, &mut sent);
    }
    // Fill frames come in batches of `stall_frames` (3); the last batch due by 2 s ends
    // at 1.98 s: 99 fill frames after the captured one, each 20 ms apart in media time.
    assert_eq!(sent.len(), 100);
    assert_eq!(s.counters().stall_fill_packets, 99);
    let mut opener = PacketOpener::new(KEY, b"call", Direction::CalleeToCaller);
    for (i, (_, wire)) in sent.iter().enumerate() {
        assert_eq!(
            opener.open(wire).expect("authentic").header.timestamp,
            i as u32 * 960
        );
    }
}

#[test]
fn hold_sends_one_keepalive_every_three_seconds_and_mute_sends_silence() {
    let t0 = Instant::now();
    let mut s = sender();
    let mut sent = Vec::new();
    let tone: Vec<f32> = (0..960).map(|i| 0.5 * (i as f32 * 0.1).sin()).collect();
    for i in 0..50u32 {
        let now = t0 + Duration::from_millis(20) * i;
        s.handle_frame(now, &tone).expect("frame");
        drain(&mut s, now, &mut sent);
    }
    let talk_bytes = sent.last().map(|(_, w)| w.len()).expect("talk packets");

    // Hold for 30 s; the capture device keeps running and must be ignored.
    let hold_start = t0 + Duration::from_secs(1);
    s.set_mode(hold_start, SendMode::Hold).expect("hold");
    drain(&mut s, hold_start, &mut sent);
    let mut now = hold_start;
    let hold_end = hold_start + Duration::from_secs(30);
    while now < hold_end {
        now += Duration::from_millis(20);
        s.handle_frame(now, &tone).expect("frame");
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now).expect("timeout");
        }
        drain(&mut s, now, &mut sent);
    }
    let on_hold: Vec<_> = sent
        .iter()
        .filter(|(t, _)| *t >= hold_start && *t < hold_end)
        .collect();
    assert_eq!(
        on_hold.len(),
        10,
        "one keep-alive at once, then one per 3 s for 30 s"
    );
    for pair in on_hold.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, Duration::from_secs(3));
    }
    for p in sent[50..60]
        .iter()
        .map(|(_, w)| MediaPacket::decode(w).expect("well formed"))
    {
        // Header flags are readable without the key; the payload is only the tag.
        assert!(p.header.flags.contains(Flags::KEEP_ALIVE.with(Flags::HOLD)));
        assert_eq!(p.payload.len(), media::secure::TAG_LEN);
    }
    // Back from hold, muted: full rate again, timestamps jump over the pause, tiny payloads.
    s.set_mode(hold_end, SendMode::Muted).expect("mute");
    for i in 0..50u32 {
        let at = hold_end + Duration::from_millis(20) * i;
        s.handle_frame(at, &tone).expect("frame");
        drain(&mut s, at, &mut sent);
    }
    let mut opener = PacketOpener::new(KEY, b"call", Direction::CalleeToCaller);
    let opened: Vec<_> = sent
        .iter()
        .map(|(_, w)| opener.open(w).expect("authentic"))
        .collect();
    for p in &opened[50..60] {
        assert!(p.header.flags.contains(Flags::KEEP_ALIVE.with(Flags::HOLD)));
        assert!(p.payload.is_empty(), "keep-alives carry no audio");
    }
    let muted = &opened[opened.len() - 50..];
    assert_eq!(muted.len(), 50);
    assert_eq!(
        muted[0].header.timestamp,
        31 * 48_000,
        "media clock ran through the 30 s hold"
    );
    assert!(
        muted.iter().all(|p| p.payload.len() + 26 < talk_bytes),
        "mute sends silence, not the tone"
    );
}
