//! `--record`: frames become a 48 kHz mono 16-bit WAV file.

mod device_support;

use media::device::{FRAME_SAMPLES, FrameSink, WavRecorder};

#[test]
fn recorded_frames_read_back_as_48k_mono_16_bit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.wav");
    let mut rec = WavRecorder::create(&path).expect("create");
    let tone = device_support::sine(440.0, 48_000, FRAME_SAMPLES * 10, 0.25);
    for chunk in tone.chunks_exact(FRAME_SAMPLES) {
        let frame: &[f32; FRAME_SAMPLES] = chunk.try_into().expect("frame");
        rec.put_frame(frame).expect("put");
    }
    // Out-of-range samples clip instead of wrapping.
    rec.put_frame(&[2.0; FRAME_SAMPLES]).expect("put");
    rec.finish().expect("finish");
    assert_eq!(rec.frames_written(), 11);

    let mut reader = hound::WavReader::open(&path).expect("open");
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (48_000, 1, 16)
    );
    assert_eq!(spec.sample_format, hound::SampleFormat::Int);
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    assert_eq!(samples.len(), 11 * FRAME_SAMPLES);
    for (got, want) in samples.iter().zip(&tone) {
        assert!((f32::from(*got) / 32767.0 - want).abs() < 1.0 / 16_000.0);
    }
    assert!(samples[10 * FRAME_SAMPLES..].iter().all(|&s| s == i16::MAX));
}
