//! RNNoise removes background noise from speech and leaves the speech.

mod device_support;

use device_support::{Noise, data_file, energy_db, read_frames};
use media::device::{FRAME_SAMPLES, Frame};
use media::dsp::NoiseSuppressor;

/// Clean speech (about 4 s, 5 s in all) plus seeded room-like noise: white noise
/// through a one-pole low-pass (most energy below 1 kHz, like fans and traffic), at
/// about -37 dBFS.
fn noisy_speech() -> (Vec<f32>, Vec<f32>) {
    let clean = read_frames(&data_file("device_speech_near.wav"), 250);
    let mut noise = Noise::new(7);
    let mut low = 0.0f32;
    let noisy = clean
        .iter()
        .map(|&s| {
            low = 0.9 * low + 0.1 * noise.next();
            s + 0.1 * low
        })
        .collect();
    (clean, noisy)
}

fn process(ns: &mut NoiseSuppressor, input: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(input.len());
    for chunk in input.chunks_exact(FRAME_SAMPLES) {
        let mut frame: Frame = chunk.try_into().expect("frame");
        ns.process_frame(&mut frame);
        out.extend_from_slice(&frame);
    }
    out
}

/// RNNoise's output lags its input by 10 ms.
const DELAY: usize = FRAME_SAMPLES / 2;

/// Frame indices where the clean signal is silent, with silent neighbours (so no speech
/// onset or decay leaks in): speech pauses and the tail.
fn pause_frames(clean: &[f32]) -> Vec<usize> {
    let silent: Vec<bool> = clean
        .chunks_exact(FRAME_SAMPLES)
        .map(|f| energy_db(f) < -70.0)
        .collect();
    (1..silent.len() - 1)
        .filter(|&i| silent[i - 1] && silent[i] && silent[i + 1])
        // Skip the first half second: RNNoise needs a moment to learn the noise.
        .filter(|&i| i >= 25)
        .collect()
}

fn energy_over(signal: &[f32], frames: &[usize]) -> f64 {
    let picked: Vec<f32> = frames
        .iter()
        .flat_map(|&i| {
            signal[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES]
                .iter()
                .copied()
        })
        .collect();
    energy_db(&picked)
}

#[test]
fn suppression_lowers_noise_in_pauses_and_keeps_speech() {
    let (clean, noisy) = noisy_speech();
    let mut ns = NoiseSuppressor::new(true);
    let mut out = process(&mut ns, &noisy);
    out.drain(..DELAY);
    out.resize(noisy.len(), 0.0);

    let pauses = pause_frames(&clean);
    assert!(pauses.len() > 20, "the test signal needs pauses");
    let noise_before = energy_over(&noisy, &pauses);
    let noise_after = energy_over(&out, &pauses);
    let reduction = noise_before - noise_after;
    println!(
        "noise in pauses: {noise_before:.1} dB -> {noise_after:.1} dB ({reduction:.1} dB less)"
    );
    assert!(reduction > 15.0, "only {reduction:.1} dB of noise removed");

    let speech: Vec<usize> = clean
        .chunks_exact(FRAME_SAMPLES)
        .enumerate()
        .filter(|(_, f)| energy_db(f) > -30.0)
        .map(|(i, _)| i)
        .collect();
    let speech_before = energy_over(&clean, &speech);
    let speech_after = energy_over(&out, &speech);
    println!("speech: {speech_before:.1} dB -> {speech_after:.1} dB");
    assert!(
        (speech_before - speech_after).abs() < 4.0,
        "speech level changed too much"
    );
}

#[test]
fn disabled_suppressor_passes_audio_untouched_and_can_be_switched_on() {
    let (_, noisy) = noisy_speech();
    let mut ns = NoiseSuppressor::new(false);
    let passed = process(&mut ns, &noisy[..FRAME_SAMPLES * 50]);
    assert_eq!(passed, &noisy[..FRAME_SAMPLES * 50]);
    ns.set_enabled(true);
    assert!(ns.enabled());
    let processed = process(&mut ns, &noisy[..FRAME_SAMPLES * 50]);
    assert_ne!(processed, passed);
}
