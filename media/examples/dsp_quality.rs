//! Echo cancellation and noise suppression figures: ERLE of AEC3 on synthetic room
//! echo, noise removed by RNNoise, and the CPU time of each per 20 ms frame. Prints a
//! Markdown report.
//!
//! `cargo run -p media --example dsp_quality` (aec3, rustfft and nnnoiseless are built
//! with opt-level 3 even in the dev profile).
//!
//! Echo scenario: the far end's espeak sentence is played twice (10.4 s), convolved with
//! a seeded sparse room impulse response (direct path after `delay`, 60 reflections over
//! 150 ms decaying 60 dB in 300 ms), mixed with near-end speech from 9 s to 13 s and a
//! -66 dBFS noise floor. ERLE = mic energy / output energy over 3..9 s (far end only,
//! after convergence); near-end loss = near speech energy / output energy over
//! 10.5..13 s (near end only) and over 9.2..10.3 s (double talk; output energy there
//! also holds residual echo, so this is a lower bound of the near-end loss).

use std::path::Path;
use std::time::{Duration, Instant};

use media::device::{FRAME_SAMPLES, Frame, FrameSource, WavFileSource};
use media::dsp::{EchoCanceller, NoiseSuppressor};

const RATE: usize = 48_000;

struct Noise(u64);
impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

fn read(name: &str, frames: usize) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let mut src = WavFileSource::open(&path).expect("test WAV");
    let mut out = Vec::new();
    let mut f: Frame = [0.0; FRAME_SAMPLES];
    for _ in 0..frames {
        src.next_frame(&mut f);
        out.extend_from_slice(&f);
    }
    out
}

fn energy_db(s: &[f32]) -> f64 {
    let ms = s.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / s.len().max(1) as f64;
    10.0 * ms.max(1e-20).log10()
}

fn rir(delay_ms: usize, seed: u64) -> Vec<(usize, f32)> {
    let mut n = Noise(seed);
    let direct = RATE * delay_ms / 1000;
    let mut taps = vec![(direct, 0.6)];
    for k in 0..60 {
        let d = direct + 48 + k * (RATE * 150 / 1000) / 60 + (n.next().abs() * 40.0) as usize;
        let t = (d - direct) as f32 / RATE as f32;
        taps.push((d, 0.25 * 10f32.powf(-3.0 * t / 0.3) * n.next()));
    }
    taps
}

struct EchoResult {
    erle_db: f64,
    erle_first_second_db: f64,
    near_loss_db: f64,
    double_talk_loss_db: f64,
    per_frame: Duration,
}

fn echo_run(delay_ms: usize, far_gain: f32) -> EchoResult {
    let speech = read("device_speech_far.wav", 260);
    let total = RATE * 14;
    let mut far: Vec<f32> = speech
        .iter()
        .chain(&speech)
        .map(|&s| far_gain * s)
        .collect();
    far.resize(total, 0.0);
    let near_speech = read("device_speech_near.wav", 200);
    let mut near = vec![0.0f32; total];
    for (i, &s) in near_speech.iter().enumerate() {
        if RATE * 9 + i < total {
            near[RATE * 9 + i] = 0.5 * s;
        }
    }
    let taps = rir(delay_ms, 11);
    let mut noise = Noise(3);
    let mic: Vec<f32> = (0..total)
        .map(|n| {
            let echo: f32 = taps
                .iter()
                .filter(|(d, _)| *d <= n)
                .map(|(d, g)| g * far[n - d])
                .sum();
            echo + near[n] + 0.0005 * noise.next()
        })
        .collect();
    let mut aec = EchoCanceller::new(true, 40).expect("aec");
    let mut out = Vec::with_capacity(total);
    let started = Instant::now();
    for (f, m) in far
        .chunks_exact(FRAME_SAMPLES)
        .zip(mic.chunks_exact(FRAME_SAMPLES))
    {
        let f: &Frame = f.try_into().expect("frame");
        let mut m: Frame = m.try_into().expect("frame");
        aec.handle_render_frame(f);
        aec.process_capture_frame(&mut m).expect("aec");
        out.extend_from_slice(&m);
    }
    let per_frame = started.elapsed() / (total / FRAME_SAMPLES) as u32;
    let span = |a: f64, b: f64| ((a * RATE as f64) as usize, (b * RATE as f64) as usize);
    let (a, b) = span(3.0, 9.0);
    let (c, d) = span(10.5, 13.0);
    let (e, f) = span(9.2, 10.3);
    EchoResult {
        erle_db: energy_db(&mic[a..b]) - energy_db(&out[a..b]),
        erle_first_second_db: energy_db(&mic[..RATE]) - energy_db(&out[..RATE]),
        near_loss_db: energy_db(&near[c..d]) - energy_db(&out[c..d]),
        double_talk_loss_db: energy_db(&near[e..f]) - energy_db(&out[e..f]),
        per_frame,
    }
}

fn noise_run(label: &str, lowpass: f32, gain: f32) -> (String, f64, f64, f64, Duration) {
    let clean = read("device_speech_near.wav", 250);
    let mut n = Noise(7);
    let mut low = 0.0f32;
    let noisy: Vec<f32> = clean
        .iter()
        .map(|&s| {
            low = lowpass * low + (1.0 - lowpass) * n.next();
            s + gain * low
        })
        .collect();
    let mut ns = NoiseSuppressor::new(true);
    let mut out = Vec::with_capacity(noisy.len());
    let started = Instant::now();
    for c in noisy.chunks_exact(FRAME_SAMPLES) {
        let mut f: Frame = c.try_into().expect("frame");
        ns.process_frame(&mut f);
        out.extend_from_slice(&f);
    }
    let per_frame = started.elapsed() / (noisy.len() / FRAME_SAMPLES) as u32;
    // RNNoise lags by 10 ms.
    out.drain(..FRAME_SAMPLES / 2);
    out.resize(noisy.len(), 0.0);
    let silent: Vec<bool> = clean
        .chunks_exact(FRAME_SAMPLES)
        .map(|f| energy_db(f) < -70.0)
        .collect();
    let speechy: Vec<bool> = clean
        .chunks_exact(FRAME_SAMPLES)
        .map(|f| energy_db(f) > -30.0)
        .collect();
    let pick = |sig: &[f32], sel: &dyn Fn(usize) -> bool| -> Vec<f32> {
        sig.chunks_exact(FRAME_SAMPLES)
            .enumerate()
            .filter(|(i, _)| sel(*i))
            .flat_map(|(_, f)| f.iter().copied())
            .collect()
    };
    let pause =
        |i: usize| i >= 25 && i + 1 < silent.len() && silent[i - 1] && silent[i] && silent[i + 1];
    let speech = |i: usize| speechy[i];
    let before = energy_db(&pick(&noisy, &pause));
    let after = energy_db(&pick(&out, &pause));
    let speech_change = energy_db(&pick(&out, &speech)) - energy_db(&pick(&clean, &speech));
    (
        label.to_owned(),
        before,
        before - after,
        speech_change,
        per_frame,
    )
}

fn main() {
    println!("## Echo cancellation (aec3 0.4, AEC3 only: high-pass on, NS/AGC/post filter off)\n");
    println!(
        "| echo delay | far-end level | ERLE 3..9 s | ERLE first second | near-end loss, alone | near-end loss, double talk | CPU per 20 ms frame |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (delay, gain) in [(30, 0.7), (80, 0.7), (150, 0.7), (30, 0.25)] {
        let r = echo_run(delay, gain);
        println!(
            "| {delay} ms | {:.1} dB | {:.1} dB | {:.1} dB | {:.1} dB | {:.1} dB | {:.3} ms |",
            20.0 * f64::from(gain).log10(),
            r.erle_db,
            r.erle_first_second_db,
            r.near_loss_db,
            r.double_talk_loss_db,
            r.per_frame.as_secs_f64() * 1e3
        );
    }
    println!("\n## Noise suppression (nnnoiseless 0.5)\n");
    println!(
        "| noise | level in pauses | removed in pauses | speech level change | CPU per 20 ms frame |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (label, lp, gain) in [
        ("low-passed white (room-like)", 0.9, 0.1),
        ("low-passed white, louder", 0.9, 0.3),
        ("white", 0.0, 0.017),
    ] {
        let (label, before, removed, speech, cpu) = noise_run(label, lp, gain);
        println!(
            "| {label} | {before:.1} dBFS | {removed:.1} dB | {speech:+.1} dB | {:.3} ms |",
            cpu.as_secs_f64() * 1e3
        );
    }
}
