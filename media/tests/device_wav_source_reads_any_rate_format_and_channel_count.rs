//! `--play`: a WAV file of any rate, sample format and channel count becomes 48 kHz mono
//! frames, followed by silence.

mod device_support;

use device_support::{energy_db, sine, zero_crossing_frequency};
use media::device::{FRAME_SAMPLES, FrameSource, WavFileSource};

fn write_wav(path: &std::path::Path, spec: hound::WavSpec, mono: &[f32]) {
    let mut w = hound::WavWriter::create(path, spec).expect("create");
    for &s in mono {
        for ch in 0..spec.channels {
            // Channel 1 carries the same tone inverted half the time would cancel in a
            // mix; keep channels identical except a small level difference.
            let v = s * if ch == 0 { 1.0 } else { 0.8 };
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(v).expect("write"),
                (hound::SampleFormat::Int, 8) => w.write_sample((v * 127.0) as i8).expect("write"),
                (hound::SampleFormat::Int, 16) => {
                    w.write_sample((v * 32767.0) as i16).expect("write")
                }
                (hound::SampleFormat::Int, 24) => {
                    w.write_sample((v * 8_388_607.0) as i32).expect("write")
                }
                (hound::SampleFormat::Int, _) => {
                    w.write_sample((v * 2_147_483_000.0) as i32).expect("write")
                }
            }
        }
    }
    w.finalize().expect("finalize");
}

fn check(rate_hz: u32, channels: u16, bits: u16, format: hound::SampleFormat) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.wav");
    let seconds = 1.0;
    let tone = sine(1000.0, rate_hz, (rate_hz as f32 * seconds) as usize, 0.5);
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate_hz,
        bits_per_sample: bits,
        sample_format: format,
    };
    write_wav(&path, spec, &tone);

    let mut source = WavFileSource::open(&path).expect("open");
    let mut all = Vec::new();
    let mut frame = [0.0; FRAME_SAMPLES];
    for _ in 0..75 {
        source.next_frame(&mut frame);
        all.extend_from_slice(&frame);
    }
    let label = format!("{rate_hz} Hz, {channels} ch, {bits}-bit {format:?}");
    // The middle of the file: a 1 kHz tone at the mixed level (0.5 * (1 + 0.8) / 2 for
    // stereo, 0.5 for mono), i.e. the right pitch after conversion to 48 kHz.
    let middle = &all[12_000..36_000];
    let freq = zero_crossing_frequency(middle, 48_000);
    assert!((freq - 1000.0).abs() < 5.0, "{label}: {freq} Hz");
    let expected_amp = if channels == 1 {
        0.5
    } else {
        0.5 * (1.0 + 0.8 * (channels - 1) as f32) / channels as f32
    };
    let expected_db = 20.0 * f64::from(expected_amp).log10() - 3.01;
    let got_db = energy_db(middle);
    assert!(
        (got_db - expected_db).abs() < 0.5,
        "{label}: {got_db} dB vs {expected_db}"
    );
    // One second of file, then silence for the rest of the 1.5 s read.
    assert!(
        energy_db(&all[49_500..]) < -90.0,
        "{label}: no silence after the end"
    );
    assert!(source.ended(), "{label}");
}

#[test]
fn stereo_cd_quality_16_bit() {
    check(44_100, 2, 16, hound::SampleFormat::Int);
}

#[test]
fn mono_16_khz_float() {
    check(16_000, 1, 32, hound::SampleFormat::Float);
}

#[test]
fn six_channel_48_khz_24_bit() {
    check(48_000, 6, 24, hound::SampleFormat::Int);
}

#[test]
fn mono_8_khz_8_bit() {
    check(8_000, 1, 8, hound::SampleFormat::Int);
}

#[test]
fn committed_speech_file_decodes_to_speech_then_silence() {
    let path = device_support::data_file("device_speech_far.wav");
    // The espeak file is 22.05 kHz and about 5.2 s long.
    let samples = device_support::read_frames(&path, 300);
    let speech = energy_db(&samples[..48_000 * 5]);
    let after = energy_db(&samples[48_000 * 11 / 2..]);
    assert!(speech > -35.0, "speech level {speech} dB");
    assert!(after < -90.0, "tail {after} dB");
}

#[test]
fn a_file_that_is_not_wav_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bogus.wav");
    std::fs::write(&path, b"this is not a RIFF file at all").expect("write");
    let err = WavFileSource::open(&path).expect_err("must fail");
    assert!(err.to_string().contains("bogus.wav"), "{err}");
}
