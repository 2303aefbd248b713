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
    // Let the last frames play out (the speaker ring holds up to 3) before closing.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while speaker.buffered_samples() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    speaker.close().expect("close");

    let mut reader = hound::WavReader::open(&output).expect("open recording");
    let recorded: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("sample")) / 32767.0)
        .collect();
    // Frame by frame: every played frame is in the recording, in order. When the engine
    // writes a frame later than the speaker's tick (a loaded machine), the speaker plays
    // silence for that tick and the rest follows one frame later, as a sound card would:
    // the recording stays on the wall-clock timeline.
    let frames =
        |s: &[f32]| -> Vec<Vec<f32>> { s.chunks(FRAME_SAMPLES).map(<[f32]>::to_vec).collect() };
    let (want, got) = (frames(&expected), frames(&recorded));
    let same = |a: &[f32], b: &[f32]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 2.0 / 32767.0)
    };
    let silent = |a: &[f32]| a.iter().all(|&x| x == 0.0);
    let first_loud = want.iter().position(|f| !silent(f)).expect("speech");
    let mut j = got
        .iter()
        .position(|f| !silent(f))
        .expect("speech in the recording");
    assert!(j >= first_loud, "the recording cannot lead the input");
    assert!(j - first_loud <= 10, "{} frames of latency", j - first_loud);
    let mut inserted = 0;
    for (k, frame) in want.iter().enumerate().skip(first_loud) {
        while j < got.len() && !same(frame, &got[j]) && silent(&got[j]) {
            j += 1;
            inserted += 1;
        }
        assert!(j < got.len(), "frame {k} missing from the recording");
        assert!(same(frame, &got[j]), "frame {k} differs");
        j += 1;
    }
    assert!(inserted <= 5, "{inserted} silent ticks inserted mid-stream");
    println!(
        "{} frames found in order, {inserted} late-write silences",
        want.len() - first_loud
    );
}
