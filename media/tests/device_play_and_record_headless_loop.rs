//! Headless `--play` into `--record`: an engine loop that sends every captured frame
//! straight to the speaker records exactly the played file, shifted by the device
//! latency and preceded by silence.

mod device_support;

use std::time::Duration;

use media::device::{CaptureSpec, FRAME_SAMPLES, Frame, PlaybackSpec, open_endpoints};

#[test]
fn played_file_comes_back_in_the_recording_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = device_support::data_file("device_speech_far.wav");
    let output = dir.path().join("recorded.wav");
    let expected = device_support::read_frames(&input, 100);

    let endpoints = open_endpoints(
        &CaptureSpec::WavFile(input.clone()),
        &PlaybackSpec::WavFile(output.clone()),
    )
    .expect("open");
    let (mut mic, mut speaker) = (endpoints.source, endpoints.sink);
    let mut frame: Frame = [0.0; FRAME_SAMPLES];
    for n in 0..100 {
        assert!(
            mic.wait_frame(&mut frame, Duration::from_secs(5))
                .expect("wait"),
            "capture frame {n} never came"
        );
        assert!(
            speaker.write_frame(&frame).expect("write"),
            "frame {n} dropped"
        );
    }
    // Let the last frames play out (the speaker ring is 3 frames) before closing.
    std::thread::park_timeout(Duration::from_millis(120));
    speaker.close().expect("close");

    let mut reader = hound::WavReader::open(&output).expect("open recording");
    let recorded: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("sample")) / 32767.0)
        .collect();
    // The speech starts with a little silence; align on the first loud sample.
    let first_loud = |s: &[f32]| s.iter().position(|x| x.abs() > 0.05).expect("speech");
    let (e0, r0) = (first_loud(&expected), first_loud(&recorded));
    assert!(r0 >= e0, "the recording cannot lead the input");
    let shift = r0 - e0;
    // About one frame of device latency (half a frame with the phase-locked speaker,
    // plus the speaker's first ticks before anything was written); bounded anyway.
    assert!(shift <= 10 * FRAME_SAMPLES, "shift of {shift} samples");
    let compared = expected.len() - e0;
    assert!(
        recorded.len() >= shift + expected.len(),
        "recording too short"
    );
    for i in e0..expected.len() {
        let (want, got) = (expected[i], recorded[i + shift]);
        assert!(
            (want - got).abs() < 2.0 / 32767.0,
            "sample {i}: {want} vs {got}"
        );
    }
    println!("{compared} samples identical after a shift of {shift} samples");
}
