//! At high loss, with a peer that sends Deep REDundancy, the jitter buffer waits longer so
//! that a burst of two lost frames is rebuilt from the DRED of the packet after it instead
//! of being concealed, and the encoder (with its default settings) sends DRED that reaches
//! that far back only while the expected loss is high.

use std::path::Path;
use std::time::Instant;

use media::codec::{Decoder, DecoderConfig, Encoder, EncoderConfig, FRAME_SAMPLES};
use media::jitter::{FRAME_DURATION, FrameKind, JitterBuffer, JitterConfig, JitterCounters};
use media::packet::{Flags, MediaPacket, PacketHeader};

/// Natural speech with pauses (tests/data/SPEECH.md): the buffer resizes only in quiet.
fn natural_speech() -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/speech_natural_48k.wav");
    let mut reader = hound::WavReader::open(&path).expect("speech sample is committed");
    reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("valid sample")) / 32768.0)
        .collect()
}

/// Encodes `frames` frames of speech (looped) with DRED at 20% expected loss.
fn dred_packets(frames: usize) -> Vec<MediaPacket> {
    let speech = natural_speech();
    let mut encoder = Encoder::new(EncoderConfig {
        expected_loss_pct: 20,
        ..EncoderConfig::default()
    })
    .expect("encoder");
    assert!(encoder.dred_active());
    let chunks: Vec<&[f32]> = speech.chunks_exact(FRAME_SAMPLES).collect();
    (0..frames)
        .map(|i| MediaPacket {
            header: PacketHeader {
                sequence: i as u32,
                timestamp: (i * FRAME_SAMPLES) as u32,
                flags: Flags::empty(),
            },
            payload: encoder.encode(chunks[i % chunks.len()]).expect("encode"),
        })
        .collect()
}

/// Frames 100..500 lose every fifth packet (20%) plus, every 40 frames, a second packet
/// right after one of those: a burst of two that the next packet's FEC cannot cover.
fn lost(i: usize) -> bool {
    (100..500).contains(&i) && (i.is_multiple_of(5) || (i % 40 == 1))
}

struct Run {
    counters: JitterCounters,
    target_during_loss: u32,
    target_soon_after_loss: u32,
    target_at_end: u32,
    burst_kinds: Vec<FrameKind>,
}

/// Plays the packets arriving exactly on the playout ticks, dropping the lost ones.
fn play(packets: &[MediaPacket], dred_extra_frames: u32) -> Run {
    let mut jb = JitterBuffer::new(JitterConfig {
        dred_extra_frames,
        ..JitterConfig::default()
    })
    .expect("jitter buffer");
    let t0 = Instant::now();
    let mut run = Run {
        counters: JitterCounters::default(),
        target_during_loss: 0,
        target_soon_after_loss: 0,
        target_at_end: 0,
        burst_kinds: Vec::new(),
    };
    for (i, packet) in packets.iter().enumerate() {
        let now = t0 + FRAME_DURATION * i as u32;
        if !lost(i) {
            jb.handle_packet(now, packet.clone());
        }
        let before = jb.next_timestamp();
        let frame = jb.poll_frame(now);
        // A tick that moved the timeline played the frame just before the new next one
        // (inserted and stretching frames leave it where it was; packet i is frame i).
        if let Some(next) = jb.next_timestamp()
            && before.is_none_or(|b| b != next)
        {
            let index = (next as usize / FRAME_SAMPLES).wrapping_sub(1);
            if (200..500).contains(&index) && index.is_multiple_of(40) {
                run.burst_kinds.push(frame.kind);
            }
        }
        match i {
            450 => run.target_during_loss = jb.target_frames(),
            650 => run.target_soon_after_loss = jb.target_frames(),
            _ => {}
        }
    }
    run.counters = jb.counters();
    run.target_at_end = jb.target_frames();
    run
}

#[test]
fn a_two_frame_burst_is_rebuilt_from_dred_not_concealed_at_high_loss() {
    let packets = dred_packets(900);
    let with = play(&packets, JitterConfig::default().dred_extra_frames);
    let without = play(&packets, 0);
    // Bursts at 200, 240, ... 480: the first frame of each.
    assert_eq!(with.burst_kinds.len(), 8, "{:?}", with.burst_kinds);
    let rebuilt = with
        .burst_kinds
        .iter()
        .filter(|k| **k == FrameKind::Dred)
        .count();
    assert!(
        rebuilt >= 6,
        "with one frame more: {:?}, {:?}",
        with.burst_kinds,
        with.counters
    );
    assert!(
        without
            .burst_kinds
            .iter()
            .all(|k| *k == FrameKind::Concealed),
        "at two frames only the next packet is in hand: {:?}",
        without.burst_kinds
    );
    assert!(
        with.counters.concealed_frames + 5 <= without.counters.concealed_frames,
        "with {:?} / without {:?}",
        with.counters,
        without.counters
    );
}

#[test]
fn target_grows_at_high_loss_with_dred_and_shrinks_back_after() {
    let packets = dred_packets(900);
    for extra in [1, JitterConfig::default().dred_extra_frames] {
        let with = play(&packets, extra);
        assert_eq!(with.target_during_loss, 2 + extra, "{:?}", with.counters);
        // Loss ended at frame 500: 150 frames later under 10% of the last 5 s were lost.
        assert!(with.target_soon_after_loss <= 2);
        assert_eq!(with.target_at_end, 1, "no loss in the last 5 s");
    }
    let without = play(&packets, 0);
    assert_eq!(without.target_during_loss, 2);
}

#[test]
fn target_does_not_grow_when_the_peer_sends_no_dred() {
    let speech = natural_speech();
    let mut encoder = Encoder::new(EncoderConfig {
        expected_loss_pct: 20,
        dred_duration_10ms: 0,
        ..EncoderConfig::default()
    })
    .expect("encoder");
    assert!(!encoder.dred_active());
    let packets: Vec<MediaPacket> = speech
        .chunks_exact(FRAME_SAMPLES)
        .take(480)
        .enumerate()
        .map(|(i, pcm)| MediaPacket {
            header: PacketHeader {
                sequence: i as u32,
                timestamp: (i * FRAME_SAMPLES) as u32,
                flags: Flags::empty(),
            },
            payload: encoder.encode(pcm).expect("encode"),
        })
        .collect();
    let run = play(&packets, 1);
    assert_eq!(run.target_during_loss, 2);
    assert_eq!(run.counters.dred_frames, 0);
}

#[test]
fn encoder_sends_dred_reaching_back_three_frames_only_at_high_expected_loss() {
    let speech = natural_speech();
    let mut encoder = Encoder::new(EncoderConfig::default()).expect("encoder");
    let mut decoder = Decoder::new(DecoderConfig::default()).expect("decoder");
    let mut reach_at = |encoder: &mut Encoder, loss_pct: u8| {
        // The loss a caller measures, fed every second for 20 s.
        for _ in 0..20 {
            encoder.set_expected_loss_pct(loss_pct).expect("loss");
        }
        let mut reaching = 0;
        let mut total = 0;
        for pcm in speech.chunks_exact(FRAME_SAMPLES).take(300) {
            let packet = encoder.encode(pcm).expect("encode");
            total += 1;
            if decoder.dred_reach_frames(&packet) >= 3 {
                reaching += 1;
            }
        }
        (reaching, total)
    };
    let (low, _) = reach_at(&mut encoder, 5);
    assert!(!encoder.dred_active());
    assert_eq!(low, 0, "no DRED at 5% expected loss");
    let (high, total) = reach_at(&mut encoder, 20);
    assert!(encoder.dred_active());
    assert!(
        high * 10 >= total * 7,
        "DRED reached three frames back in {high} of {total} packets at 20%"
    );
    let (after, _) = reach_at(&mut encoder, 3);
    assert!(!encoder.dred_active());
    assert!(
        after < 5,
        "DRED stops when loss falls: {after} packets still carry it"
    );
}

#[test]
fn one_lossy_interval_at_moderate_loss_does_not_switch_dred_on() {
    let mut encoder = Encoder::new(EncoderConfig::default()).expect("encoder");
    for loss_pct in [10, 8, 12, 20, 10, 9] {
        encoder.set_expected_loss_pct(loss_pct).expect("loss");
        assert!(!encoder.dred_active(), "on after {loss_pct}%");
    }
    for _ in 0..10 {
        encoder.set_expected_loss_pct(20).expect("loss");
    }
    assert!(encoder.dred_active(), "lasting 20% loss switches DRED on");
    encoder.set_expected_loss_pct(8).expect("loss");
    assert!(encoder.dred_active(), "one quieter interval keeps it on");
}
