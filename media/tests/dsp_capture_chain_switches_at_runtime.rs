//! The settings toggles: echo cancellation and noise suppression switch on and off in
//! the middle of a call.

mod device_support;

use device_support::{Noise, data_file, energy_db, read_frames};
use media::device::{FRAME_SAMPLES, Frame};
use media::dsp::CaptureProcessor;

#[test]
fn stages_switch_on_and_off_mid_call() {
    let far = read_frames(&data_file("device_speech_far.wav"), 250);
    let mut noise = Noise::new(9);
    // Microphone: the far end's voice 40 ms later at -8 dB (a simple echo), plus noise.
    let delay = 48 * 40;
    let mic: Vec<f32> = (0..far.len())
        .map(|n| {
            let echo = if n >= delay {
                0.4 * far[n - delay]
            } else {
                0.0
            };
            echo + 0.002 * noise.next()
        })
        .collect();

    let mut chain = CaptureProcessor::new(false, false).expect("chain");
    assert!(!chain.echo_cancellation() && !chain.noise_suppression());
    let mut out = Vec::with_capacity(mic.len());
    for (i, (f, m)) in far
        .chunks_exact(FRAME_SAMPLES)
        .zip(mic.chunks_exact(FRAME_SAMPLES))
        .enumerate()
    {
        if i == 50 {
            // One second in: the user, without a headset, turns both on.
            chain.set_echo_cancellation(true).expect("aec on");
            chain.set_noise_suppression(true);
        }
        let far_frame: &Frame = f.try_into().expect("frame");
        let mut frame: Frame = m.try_into().expect("frame");
        chain.handle_render_frame(far_frame);
        chain.process_capture_frame(&mut frame).expect("process");
        out.extend_from_slice(&frame);
    }
    let second = 48_000;
    // Off: untouched.
    assert_eq!(&out[..second], &mic[..second]);
    // On: from 2 s (a second to converge) to the end of the far speech, echo is gone.
    let (a, b) = (2 * second, 5 * second);
    let removed = energy_db(&mic[a..b]) - energy_db(&out[a..b]);
    assert!(removed > 20.0, "only {removed:.1} dB removed");
}
