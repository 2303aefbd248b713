//! Benchmark (ignored by default; `bench/call_media_cpu.sh` runs it): CPU time of a whole
//! call's media threads (the audio thread, which also writes the WAV recording, and the
//! paced WAV source) per second of call,
//! beside the media core alone (encode + seal + open + decode of the same audio on one
//! thread) measured in the same run.

mod call_media_support;

use std::collections::BTreeMap;
use std::time::Instant;

use call_media_support::*;

use app::call_media::{Sink, Source};
use media::codec::{Encoder, EncoderConfig, FRAME_SAMPLES};
use media::jitter::{JitterBuffer, JitterConfig};
use media::packet::PacketHeader;
use media::secure::{Direction, PacketOpener, PacketSealer};

/// On-CPU nanoseconds per thread name, from /proc/self/task/*/schedstat.
fn thread_cpu_nanos() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let nanos = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(name.trim().to_string()).or_default() += nanos;
    }
    out
}

fn this_thread_nanos() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by bench/call_media_cpu.sh"]
async fn cpu_per_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let speech = sample("speech_48k.wav");
    let seconds = 6.0;
    let frames = (seconds * 50.0) as usize;

    // Baseline: the media core on this thread, same audio, same settings.
    let input = read_wav(&speech, seconds);
    let config = EncoderConfig {
        bitrate_bps: proto::peer::MediaParams::default().bitrate_bps,
        ..EncoderConfig::default()
    };
    let mut encoder = Encoder::new(config).expect("encoder");
    let mut sealer = PacketSealer::new([1; 32], b"bench", Direction::CallerToCallee);
    let mut opener = PacketOpener::new([1; 32], b"bench", Direction::CallerToCallee);
    let mut jitter = JitterBuffer::new(JitterConfig::default()).expect("jitter buffer");
    let t0 = Instant::now();
    let before = this_thread_nanos();
    for (i, frame) in input.chunks_exact(FRAME_SAMPLES).enumerate() {
        let payload = encoder.encode(frame).expect("encode");
        let header = PacketHeader {
            sequence: i as u32,
            timestamp: (i * FRAME_SAMPLES) as u32,
            flags: media::packet::Flags::empty(),
        };
        let wire = sealer.seal(header, &payload).expect("seal");
        let packet = opener.open(&wire).expect("open");
        let now = t0 + media::jitter::FRAME_DURATION * i as u32;
        jitter.handle_packet(now, packet);
        let _ = jitter.poll_frame(now);
    }
    let core_nanos = this_thread_nanos() - before;

    // A real call pair: WAV in, WAV out, both directions.
    let (mut a_side, b_side) = channel_link();
    let (a_keys, b_keys) = key_pair(31);
    let start_cpu = thread_cpu_nanos();
    let started = Instant::now();
    let a = start(
        a_keys,
        Source::Wav(speech.clone()),
        Sink::Wav(dir.path().join("a.wav")),
        a_side.outgoing.clone(),
        a_side.incoming,
    );
    let b = start(
        b_keys,
        Source::Wav(speech.clone()),
        Sink::Wav(dir.path().join("b.wav")),
        b_side.outgoing.clone(),
        b_side.incoming,
    );
    await_packets(&mut a_side.sent, frames, |_| true).await;
    let end_cpu = thread_cpu_nanos();
    let wall = started.elapsed();
    a.stop().await;
    b.stop().await;

    let share = |nanos: u64, wall_s: f64| nanos as f64 / (wall_s * 1e9) * 100.0;
    println!(
        "| part (per call, one direction each way) | CPU per second of call (ms) | share of one core |"
    );
    println!("| --- | --- | --- |");
    let core_per_s = core_nanos as f64 / 1e6 / seconds;
    println!(
        "| media core alone: encode + seal + open + jitter buffer/decode (baseline) | {core_per_s:.2} | {:.2}% |",
        share(core_nanos, seconds)
    );
    let mut total = 0u64;
    // The WAV recording is written by the audio thread itself.
    for name in ["call-media", "paced-source"] {
        let nanos =
            end_cpu.get(name).copied().unwrap_or(0) - start_cpu.get(name).copied().unwrap_or(0);
        // Two calls ran (A and B): half is one call's.
        let per_call = nanos / 2;
        total += per_call;
        println!(
            "| thread `{name}` | {:.2} | {:.2}% |",
            per_call as f64 / 1e6 / wall.as_secs_f64(),
            share(per_call, wall.as_secs_f64())
        );
    }
    println!(
        "| **whole call media (both threads)** | {:.2} | **{:.2}%** |",
        total as f64 / 1e6 / wall.as_secs_f64(),
        share(total, wall.as_secs_f64())
    );
    assert!(total > 0, "the call's threads ran");
}

/// CPU of the capture processing (`media::dsp::CaptureProcessor`, what the audio thread
/// adds per captured frame when noise suppression and echo cancellation are on) on the
/// same speech with a 60 ms, half-amplitude echo of it, beside the media core's encoder
/// on the same frames in the same run.
#[test]
#[ignore = "benchmark: run by bench/call_media_cpu.sh"]
fn capture_processing_cpu_per_second() {
    let seconds = 6.0;
    let input = read_wav(&sample("speech_48k.wav"), seconds);
    let frames: Vec<[f32; FRAME_SAMPLES]> = input
        .chunks_exact(FRAME_SAMPLES)
        .map(|c| c.try_into().expect("whole frames"))
        .collect();
    let delay = 3;
    let run = |echo: bool, noise: bool| -> f64 {
        let mut processor =
            media::dsp::CaptureProcessor::new(echo, noise).expect("capture processor");
        let start = this_thread_nanos();
        for (i, speaker) in frames.iter().enumerate() {
            let mut mic = if i >= delay {
                frames[i - delay].map(|s| 0.5 * s)
            } else {
                [0.0; FRAME_SAMPLES]
            };
            processor.handle_render_frame(speaker);
            processor
                .process_capture_frame(&mut mic)
                .expect("processed");
            std::hint::black_box(&mic);
        }
        (this_thread_nanos() - start) as f64 / 1e6 / seconds
    };
    let mut encoder = Encoder::new(EncoderConfig::default()).expect("encoder");
    let start = this_thread_nanos();
    for frame in &frames {
        std::hint::black_box(encoder.encode(frame).expect("encoded"));
    }
    let encoder_ms = (this_thread_nanos() - start) as f64 / 1e6 / seconds;
    let row = |name: &str, ms: f64| println!("| {name} | {ms:.2} | {:.2}% |", ms / 10.0);
    row("Opus encoder alone (baseline)", encoder_ms);
    row("capture processing, both off", run(false, false));
    row("noise suppression (RNNoise)", run(false, true));
    row("echo cancellation (AEC3)", run(true, false));
    row("**noise suppression + echo cancellation**", run(true, true));
}
