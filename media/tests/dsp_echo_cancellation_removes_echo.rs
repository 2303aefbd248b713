//! AEC3 removes the far end's voice that the microphone picks up from the speaker.
//!
//! Synthetic echo: far-end speech is "played", convolved with a seeded room impulse
//! response (direct path after 30 ms, early reflections, a decaying tail) and picked up
//! by the microphone together with near-end speech and a little noise. Echo return loss
//! enhancement (ERLE) is the energy of the microphone signal over the energy of the
//! canceller's output while only the far end talks.

mod device_support;

use device_support::{Noise, data_file, energy_db, read_frames};
use media::device::{FRAME_SAMPLES, Frame};
use media::dsp::EchoCanceller;

const RATE: usize = 48_000;

struct Scenario {
    far: Vec<f32>,
    mic: Vec<f32>,
    near: Vec<f32>,
}

/// A sparse room impulse response: taps (delay in samples, gain).
fn room_impulse_response(seed: u64) -> Vec<(usize, f32)> {
    let mut noise = Noise::new(seed);
    let direct = RATE * 30 / 1000;
    let mut taps = vec![(direct, 0.6)];
    // 60 reflections over 150 ms, decaying by 60 dB over 300 ms.
    for k in 0..60 {
        let delay =
            direct + 48 + k * (RATE * 150 / 1000) / 60 + (noise.next().abs() * 40.0) as usize;
        let t = (delay - direct) as f32 / RATE as f32;
        let gain = 0.25 * 10f32.powf(-3.0 * t / 0.3) * noise.next();
        taps.push((delay, gain));
    }
    taps
}

fn scenario() -> Scenario {
    let speech = read_frames(&data_file("device_speech_far.wav"), 260);
    // Far end talks twice in a row (about 10.4 s) so the canceller has time to converge.
    let mut far: Vec<f32> = speech.iter().chain(&speech).map(|&s| 0.7 * s).collect();
    let total = RATE * 14;
    far.resize(total, 0.0);
    // Near end talks from 9 s to 13 s: double talk, then near end alone.
    let near_speech = read_frames(&data_file("device_speech_near.wav"), 200);
    let mut near = vec![0.0; total];
    let start = RATE * 9;
    for (i, &s) in near_speech.iter().enumerate() {
        if start + i < total {
            near[start + i] = 0.5 * s;
        }
    }
    let rir = room_impulse_response(11);
    let mut noise = Noise::new(3);
    let mut mic = vec![0.0f32; total];
    for (n, m) in mic.iter_mut().enumerate() {
        let echo: f32 = rir
            .iter()
            .filter(|(d, _)| *d <= n)
            .map(|(d, g)| g * far[n - d])
            .sum();
        *m = echo + near[n] + 0.0005 * noise.next();
    }
    Scenario { far, mic, near }
}

fn cancel(aec: &mut EchoCanceller, s: &Scenario) -> Vec<f32> {
    let mut out = Vec::with_capacity(s.mic.len());
    for (far, mic) in s
        .far
        .chunks_exact(FRAME_SAMPLES)
        .zip(s.mic.chunks_exact(FRAME_SAMPLES))
    {
        let far: &Frame = far.try_into().expect("frame");
        let mut frame: Frame = mic.try_into().expect("frame");
        aec.handle_render_frame(far);
        aec.process_capture_frame(&mut frame).expect("process");
        out.extend_from_slice(&frame);
    }
    out
}

fn erle_db(mic: &[f32], out: &[f32], from_s: f32, to_s: f32) -> f64 {
    let (a, b) = (
        (from_s * RATE as f32) as usize,
        (to_s * RATE as f32) as usize,
    );
    energy_db(&mic[a..b]) - energy_db(&out[a..b])
}

#[test]
fn echo_is_removed_while_only_the_far_end_talks() {
    let s = scenario();
    let mut aec = EchoCanceller::new(true, 40).expect("aec");
    let out = cancel(&mut aec, &s);

    // After convergence (3 s), before the near end starts (9 s).
    let erle = erle_db(&s.mic, &out, 3.0, 9.0);
    let erle_first_second = erle_db(&s.mic, &out, 0.0, 1.0);
    // Near end alone (10.5..13 s): its voice must survive.
    let (a, b) = (RATE * 21 / 2, RATE * 13);
    let near_loss = energy_db(&s.near[a..b]) - energy_db(&out[a..b]);
    println!(
        "ERLE {erle:.1} dB (first second {erle_first_second:.1} dB); near-end speech attenuated by {near_loss:.1} dB"
    );
    assert!(erle > 20.0, "ERLE only {erle:.1} dB");
    assert!(near_loss < 6.0, "near-end speech lost {near_loss:.1} dB");
}

#[test]
fn disabled_canceller_leaves_the_echo_in() {
    let s = scenario();
    let mut aec = EchoCanceller::new(false, 40).expect("aec");
    let out = cancel(&mut aec, &s);
    assert_eq!(out, s.mic);
    assert!(!aec.enabled());
}
