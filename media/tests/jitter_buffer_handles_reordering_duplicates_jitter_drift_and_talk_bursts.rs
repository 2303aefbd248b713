//! The adaptive jitter buffer on virtual time: reordering, duplicates, 30 ms jitter, clock
//! drift between the two sound cards, and a talk burst after hold.

mod pipeline_support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use media::jitter::{FrameKind, JitterConfig};
use media::pipeline::{Channel, MediaReceiver};
use media::secure::Direction;
use media::sender::{MediaSender, SendMode, SenderConfig};
use netsim::{ImpairmentConfig, LossModel};
use pipeline_support::NetsimChannel;

const KEY: [u8; 32] = [5; 32];
const TICK: Duration = Duration::from_millis(20);

fn pair() -> (MediaSender, MediaReceiver) {
    let tx = MediaSender::new(
        SenderConfig::default(),
        KEY,
        b"jb",
        Direction::CallerToCallee,
    )
    .expect("sender");
    let rx = MediaReceiver::new(
        JitterConfig::default(),
        KEY,
        b"jb",
        Direction::CallerToCallee,
    )
    .expect("receiver");
    (tx, rx)
}

/// Speech-like test signal: 1 s of a warbling tone, then 1 s of near silence, repeating.
fn frame(i: u64) -> Vec<f32> {
    let talking = (i / 50).is_multiple_of(2);
    (0..960)
        .map(|j| {
            let t = (i * 960 + j) as f32 / 48_000.0;
            let amp = if talking { 0.3 } else { 0.0005 };
            amp * (2.0 * std::f32::consts::PI * (300.0 + 50.0 * (3.0 * t).sin()) * t).sin()
        })
        .collect()
}

#[test]
fn reordered_packets_are_played_in_order_without_loss() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = pair();
    let mut held: Option<Vec<u8>> = None;
    let mut kinds = Vec::new();
    for i in 0..300u64 {
        let now = t0 + TICK * i as u32;
        tx.handle_frame(now, &frame(i)).expect("frame");
        let wire = tx.poll_transmit().expect("one packet per frame");
        // Every 10th packet is overtaken by the next one.
        if i % 10 == 5 {
            held = Some(wire);
        } else {
            rx.handle_datagram(now, &wire).expect("authentic");
            if let Some(late) = held.take() {
                rx.handle_datagram(now, &late).expect("authentic");
            }
        }
        kinds.push(rx.poll_frame(now).kind);
    }
    let c = rx.jitter_counters();
    assert_eq!(c.late_packets, 0, "{c:?}");
    assert_eq!(
        c.fec_frames + c.dred_frames,
        0,
        "nothing was lost, nothing needs recovery: {c:?}"
    );
    assert!(c.decoded_frames >= 295, "{c:?}");
    assert!(
        c.concealed_frames <= 2,
        "only the first reordering costs a stretch frame: {c:?}"
    );
}

#[test]
fn duplicated_packets_are_played_once() {
    let t0 = Instant::now();
    let (mut tx, _) = pair();
    let mut rx = MediaReceiver::new(
        JitterConfig::default(),
        KEY,
        b"jb",
        Direction::CallerToCallee,
    )
    .expect("receiver");
    let mut jb = media::jitter::JitterBuffer::new(JitterConfig::default()).expect("jb");
    let mut opener = media::secure::PacketOpener::new(KEY, b"jb", Direction::CallerToCallee);
    for i in 0..100u64 {
        let now = t0 + TICK * i as u32;
        tx.handle_frame(now, &frame(i)).expect("frame");
        let wire = tx.poll_transmit().expect("packet");
        // A duplicating network: the replay window drops the copy before the buffer...
        rx.handle_datagram(now, &wire).expect("authentic");
        assert!(rx.handle_datagram(now, &wire).is_err());
        // ...and the buffer itself also ignores a copy if one reaches it.
        let p = opener.open(&wire).expect("authentic");
        jb.handle_packet(now, p.clone());
        jb.handle_packet(now, p);
        let _ = rx.poll_frame(now);
        assert_eq!(jb.poll_frame(now).kind, FrameKind::Decoded);
    }
    assert_eq!(jb.counters().duplicate_packets, 100);
    assert_eq!(jb.counters().decoded_frames, 100);
    assert_eq!(rx.jitter_counters().decoded_frames, 100);
}

/// Runs `seconds` of audio through `net`; returns (receiver, kinds after warm-up).
fn run_through(net: ImpairmentConfig, seconds: u64, seed: u64) -> (MediaReceiver, Vec<FrameKind>) {
    let t0 = Instant::now();
    let (mut tx, mut rx) = pair();
    let mut channel = NetsimChannel::new(net, seed);
    let mut kinds = Vec::new();
    for i in 0..seconds * 50 {
        let now = t0 + TICK * i as u32;
        tx.handle_frame(now, &frame(i)).expect("frame");
        while let Some(w) = tx.poll_transmit() {
            channel.send(now, w);
        }
        while let Some(w) = channel.poll_receive(now) {
            rx.handle_datagram(now, &w).expect("authentic");
        }
        let kind = rx.poll_frame(now).kind;
        if i >= 100 {
            kinds.push(kind);
        }
    }
    (rx, kinds)
}

#[test]
fn thirty_ms_of_jitter_raises_the_target_delay_and_playout_stays_clean() {
    let net = ImpairmentConfig {
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(30),
        ..ImpairmentConfig::default()
    };
    let (rx, kinds) = run_through(net, 30, 11);
    let target = rx.jitter_target_frames();
    assert!(
        (2..=4).contains(&target),
        "30 ms of jitter needs 2-4 frames of buffer, target {target}"
    );
    let concealed = kinds.iter().filter(|k| **k == FrameKind::Concealed).count();
    assert!(
        concealed * 100 <= kinds.len(),
        "{concealed} of {} frames concealed after warm-up",
        kinds.len()
    );
    assert!(
        rx.quality().jitter_millis > 3.0,
        "RFC 3550 jitter is reported: {:?}",
        rx.quality()
    );

    let (clean_rx, _) = run_through(
        ImpairmentConfig {
            delay: Duration::from_millis(40),
            ..ImpairmentConfig::default()
        },
        10,
        11,
    );
    assert_eq!(clean_rx.jitter_target_frames(), 1, "no jitter: one frame");
}

#[test]
fn loss_is_recovered_from_fec_before_concealing() {
    let net = ImpairmentConfig {
        loss: LossModel::Bernoulli { loss_pct: 10.0 },
        ..ImpairmentConfig::default()
    };
    let t0 = Instant::now();
    let (mut tx, mut rx) = pair();
    tx.set_expected_loss_pct(10).expect("loss");
    let mut channel = NetsimChannel::new(net, 3);
    let speech = pipeline_support::speech();
    let frames: Vec<&[f32]> = speech.chunks_exact(960).collect();
    for i in 0..1000u64 {
        let now = t0 + TICK * i as u32;
        // Real speech: Opus spends FEC bits only on frames it classifies as active speech.
        tx.handle_frame(now, frames[i as usize % frames.len()])
            .expect("frame");
        while let Some(w) = tx.poll_transmit() {
            channel.send(now, w);
        }
        while let Some(w) = channel.poll_receive(now) {
            rx.handle_datagram(now, &w).expect("authentic");
        }
        let _ = rx.poll_frame(now);
    }
    let c = rx.jitter_counters();
    let lost = rx.stats().expected_packets() - rx.stats().received_packets();
    assert!(lost > 50, "{lost}");
    assert!(
        c.fec_frames + c.dred_frames > lost * 7 / 10,
        "most losses recovered: {c:?}, {lost} lost"
    );
}

fn run_with_drift(sender_tick: Duration, seconds: u64) -> MediaReceiver {
    let t0 = Instant::now();
    let (mut tx, mut rx) = pair();
    let mut in_flight = VecDeque::new();
    let mut next_send = t0;
    let mut sent = 0u64;
    for i in 0..seconds * 50 {
        let now = t0 + TICK * i as u32;
        while next_send <= now {
            tx.handle_frame(next_send, &frame(sent)).expect("frame");
            in_flight.extend(std::iter::from_fn(|| tx.poll_transmit()));
            sent += 1;
            next_send += sender_tick;
        }
        while let Some(w) = in_flight.pop_front() {
            rx.handle_datagram(now, &w).expect("authentic");
        }
        let _ = rx.poll_frame(now);
        assert!(
            rx.quality().jitter_buffer_delay_millis <= 120,
            "delay bounded at {i}: {:?}",
            rx.jitter_counters()
        );
    }
    rx
}

#[test]
fn a_faster_sender_clock_is_absorbed_by_dropping_frames_in_silence() {
    // The sender's sound card runs 0.5% fast: 15 surplus frames a minute.
    let rx = run_with_drift(Duration::from_micros(19_900), 60);
    let c = rx.jitter_counters();
    assert!(c.dropped_frames >= 10, "{c:?}");
    assert_eq!(c.late_packets, 0, "{c:?}");
}

#[test]
fn a_slower_sender_clock_is_absorbed_by_inserting_frames() {
    let rx = run_with_drift(Duration::from_micros(20_100), 60);
    let c = rx.jitter_counters();
    assert!(
        c.concealed_frames >= 10 && c.concealed_frames <= 40,
        "about 15 frames short a minute: {c:?}"
    );
    assert_eq!(c.late_packets, 0, "{c:?}");
}

#[test]
fn a_talk_burst_after_hold_plays_at_once() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = pair();
    let mut kinds = Vec::new();
    for i in 0..(20 * 50u64) {
        let now = t0 + TICK * i as u32;
        match i {
            100 => tx.set_mode(now, SendMode::Hold).expect("hold"),
            600 => tx.set_mode(now, SendMode::Talking).expect("resume"),
            _ => {}
        }
        tx.handle_frame(now, &frame(0)).expect("frame");
        if tx.poll_timeout().is_some_and(|t| t <= now) {
            tx.handle_timeout(now).expect("timeout");
        }
        while let Some(w) = tx.poll_transmit() {
            rx.handle_datagram(now, &w).expect("authentic");
        }
        kinds.push(rx.poll_frame(now).kind);
    }
    assert!(
        kinds[100..600]
            .iter()
            .skip(2)
            .all(|k| *k == FrameKind::Hold),
        "hold is reported during hold"
    );
    assert!(
        kinds[600..]
            .iter()
            .skip(2)
            .all(|k| *k == FrameKind::Decoded),
        "{:?}",
        &kinds[600..620]
    );
    assert!(!rx.remote_on_hold());
}

#[test]
fn a_loss_burst_does_not_stretch_the_timeline_once_loss_is_known() {
    let t0 = Instant::now();
    let (mut tx, mut rx) = pair();
    tx.set_expected_loss_pct(5).expect("loss");
    let speech = pipeline_support::speech();
    let frames: Vec<&[f32]> = speech.chunks_exact(960).collect();
    let mut delay_before_burst = None;
    let mut max_delay_after = 0;
    for i in 0..600usize {
        let now = t0 + TICK * i as u32;
        tx.handle_frame(now, frames[i % frames.len()])
            .expect("frame");
        let wire = tx.poll_transmit().expect("packet");
        // Isolated losses every 20 packets, then a burst of three at 400..403.
        let lost = i % 20 == 7 || (400..403).contains(&i);
        if !lost {
            rx.handle_datagram(now, &wire).expect("authentic");
        }
        let _ = rx.poll_frame(now);
        if i == 399 {
            delay_before_burst = Some(rx.quality().jitter_buffer_delay_millis);
        }
        if i > 405 {
            max_delay_after = max_delay_after.max(rx.quality().jitter_buffer_delay_millis);
        }
    }
    let before = delay_before_burst.expect("measured");
    assert!(
        max_delay_after <= before,
        "burst added delay: {before} ms before, up to {max_delay_after} ms after"
    );
    assert_eq!(rx.jitter_counters().late_packets, 0);
}
