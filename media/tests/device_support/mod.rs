//! Helpers shared by the device and DSP tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use media::device::{FRAME_SAMPLES, Frame, FrameSource, WavFileSource};

/// A committed test file under `tests/data`.
pub fn data_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Decodes a WAV file through [`WavFileSource`] into `frames` 48 kHz mono frames.
pub fn read_frames(path: &Path, frames: usize) -> Vec<f32> {
    let mut source = WavFileSource::open(path).expect("open WAV");
    let mut out = Vec::with_capacity(frames * FRAME_SAMPLES);
    let mut frame: Frame = [0.0; FRAME_SAMPLES];
    for _ in 0..frames {
        source.next_frame(&mut frame);
        out.extend_from_slice(&frame);
    }
    out
}

/// Energy in dB of a slice (mean square, 10 log10), floored at -200.
pub fn energy_db(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return -200.0;
    }
    let ms = samples
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / samples.len() as f64;
    if ms <= 0.0 {
        -200.0
    } else {
        (10.0 * ms.log10()).max(-200.0)
    }
}

/// A seeded white-noise generator in `[-1, 1)` (xorshift64*; no RNG crate version ties).
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

/// A sine of `freq_hz` at `rate_hz`, `len` samples, amplitude `amp`.
pub fn sine(freq_hz: f32, rate_hz: u32, len: usize, amp: f32) -> Vec<f32> {
    (0..len)
        .map(|i| amp * (2.0 * std::f32::consts::PI * freq_hz * i as f32 / rate_hz as f32).sin())
        .collect()
}

/// Estimates the frequency of a clean tone from its upward zero crossings.
pub fn zero_crossing_frequency(samples: &[f32], rate_hz: u32) -> f32 {
    let crossings: Vec<usize> = samples
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] <= 0.0 && w[1] > 0.0)
        .map(|(i, _)| i)
        .collect();
    if crossings.len() < 2 {
        return 0.0;
    }
    let span = (crossings[crossings.len() - 1] - crossings[0]) as f32;
    (crossings.len() - 1) as f32 * rate_hz as f32 / span
}
