//! Device-side latency: what the virtual devices' rings and the resampler add between a
//! sound card (or its stand-in) and the pipeline. Prints a Markdown report.
//!
//! `cargo run --release -p media --example device_latency [SECONDS]`
//!
//! Measured:
//! - paced capture hand-off: time from the pacing thread producing a frame to the
//!   engine's `wait_frame` returning it;
//! - paced playback: time from the engine's `write_frame` to the pacing thread handing
//!   that frame to the sink (the engine writes on the capture clock, as in a call);
//! - resampler delay per device rate: rubato's reported delay, the 10 ms input chunk,
//!   and the delay measured with an impulse.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media::device::{
    AudioSink, AudioSource, DeviceError, FRAME_SAMPLES, Frame, FrameSink, FrameSource,
    PACED_RING_FRAMES, PacedSink, PacedSource, RateConverter, SAMPLE_RATE_HZ,
};

/// Stamps each frame with its sequence number (in sample 0) and records when it was
/// produced. The mutex is fine here: this is a measurement harness, not a device.
struct StampedSource {
    seq: u32,
    produced: Arc<Mutex<Vec<Instant>>>,
}

impl FrameSource for StampedSource {
    fn next_frame(&mut self, out: &mut Frame) {
        out.fill(0.0);
        out[0] = self.seq as f32;
        if let Ok(mut p) = self.produced.lock() {
            p.push(Instant::now());
        }
        self.seq += 1;
    }
}

/// Reports the sequence number and play time of every non-silent frame.
struct StampedSink(mpsc::Sender<(u32, Instant)>);

impl FrameSink for StampedSink {
    fn put_frame(&mut self, frame: &Frame) -> Result<(), DeviceError> {
        if frame[1] != 0.0 {
            let _ = self.0.send((frame[0] as u32, Instant::now()));
        }
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        percentile(&values, 0.5),
        percentile(&values, 0.99),
        values.last().copied().unwrap_or(f64::NAN),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10);
    let frames = (seconds * 50) as usize;

    let frame_ms = 1000.0 * FRAME_SAMPLES as f64 / f64::from(SAMPLE_RATE_HZ);
    println!("## Paced virtual devices\n");
    println!(
        "Paced virtual devices, {seconds} s ({frames} frames of {frame_ms} ms) per row, ring capacity {PACED_RING_FRAMES} frames = {} ms each way. The engine loop reads a capture frame, then writes it to the speaker.\n",
        PACED_RING_FRAMES as f64 * frame_ms
    );
    println!("| path | median ms | p99 ms | max ms | notes |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for on_grid in [true, false] {
        measure(frames, on_grid)?;
    }
    println!("\n## Resampler delay (rubato 5 `Fft`, 10 ms input chunks)\n");
    println!(
        "| device rate | direction | rubato `output_delay` ms | chunk buffering ms (max) | measured impulse delay ms |"
    );
    println!("| ---: | --- | ---: | ---: | ---: |");
    for &rate in &[8_000u32, 16_000, 22_050, 32_000, 44_100, 48_000, 96_000] {
        for (from, to, dir) in [
            (rate, SAMPLE_RATE_HZ, "capture (to 48 kHz)"),
            (SAMPLE_RATE_HZ, rate, "playback (from 48 kHz)"),
        ] {
            if rate == SAMPLE_RATE_HZ && from == SAMPLE_RATE_HZ && dir.starts_with("playback") {
                continue;
            }
            let mut conv = RateConverter::new(from, to, to as usize)?;
            let reported_ms = conv.delay_samples() as f64 * 1e3 / f64::from(to);
            let chunk_ms = conv.chunk_input_samples() as f64 * 1e3 / f64::from(from);
            // An impulse at input sample 0, then silence: the output peak's position is
            // the total delay including chunking.
            let mut input = vec![0.0f32; from as usize / 2];
            input[0] = 1.0;
            conv.push(&input);
            let mut out = vec![0.0f32; conv.available()];
            conv.pop(&mut out);
            let peak = out
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .map_or(0, |(i, _)| i);
            let measured_ms = peak as f64 * 1e3 / f64::from(to);
            println!("| {rate} | {dir} | {reported_ms:.2} | {chunk_ms:.2} | {measured_ms:.2} |");
        }
    }

    println!("\n## cpal device buffering (configuration)\n");
    println!("| item | value |");
    println!("| --- | --- |");
    println!("| callback period requested | 10 ms (device default when refused) |");
    println!(
        "| capture ring capacity | 200 ms (only unread audio is latency; the engine drains it every frame) |"
    );
    println!("| playback ring capacity | 200 ms |");
    println!("| playback priming | 10 ms before start and after each underrun |");
    Ok(())
}

fn measure(frames: usize, on_grid: bool) -> Result<(), Box<dyn std::error::Error>> {
    let produced = Arc::new(Mutex::new(Vec::with_capacity(frames + 100)));
    let mut mic = PacedSource::start(StampedSource {
        seq: 0,
        produced: produced.clone(),
    })?;
    let (tx, rx) = mpsc::channel();
    let mut speaker = if on_grid {
        PacedSink::start_on_grid(StampedSink(tx), mic.grid_start())?
    } else {
        PacedSink::start(StampedSink(tx))?
    };

    let mut capture_ms = Vec::with_capacity(frames);
    let mut written_at = Vec::with_capacity(frames);
    let mut frame: Frame = [0.0; FRAME_SAMPLES];
    let mut dropped = 0;
    for _ in 0..frames {
        if !mic.wait_frame(&mut frame, Duration::from_secs(1))? {
            return Err("paced source stalled".into());
        }
        let got = Instant::now();
        let seq = frame[0] as usize;
        if let Some(t) = produced.lock().ok().and_then(|p| p.get(seq).copied()) {
            capture_ms.push(got.duration_since(t).as_secs_f64() * 1e3);
        }
        // Loop the frame back to the speaker, as an echo test would.
        frame[1] = 0.5;
        if !speaker.write_frame(&frame)? {
            dropped += 1;
        }
        written_at.push((seq as u32, Instant::now()));
    }
    let capture_buffered = mic.buffered_samples();
    mic.stop();
    std::thread::sleep(Duration::from_millis(100));
    let underruns = speaker.underruns();
    speaker.finish()?;
    let played: std::collections::BTreeMap<u32, Instant> = rx.try_iter().collect();
    let playback_ms: Vec<f64> = written_at
        .iter()
        .filter_map(|(seq, t)| {
            played
                .get(seq)
                .map(|p| p.duration_since(*t).as_secs_f64() * 1e3)
        })
        .collect();

    if on_grid {
        let (m, p99, max) = summary(capture_ms);
        println!(
            "| paced capture: frame produced -> `wait_frame` returns | {m:.2} | {p99:.2} | {max:.2} | {capture_buffered} samples left buffered at the end |"
        );
    }
    let n_played = playback_ms.len();
    let (m, p99, max) = summary(playback_ms);
    let how = if on_grid {
        "`PacedSink::start_on_grid` (half a frame after the source)"
    } else {
        "`PacedSink::start` (same phase as the source)"
    };
    println!(
        "| paced playback, {how}: `write_frame` -> frame handed to the sink | {m:.2} | {p99:.2} | {max:.2} | {n_played}/{frames} played, {dropped} dropped (ring full), {underruns} silent ticks |"
    );
    Ok(())
}
