//! A `--play` file is user input: garbage or corrupted WAV files give an error or
//! silence, never a panic, and never samples outside `[-1, 1]`.

use std::io::Cursor;

use media::device::{FRAME_SAMPLES, Frame, FrameSource, WavFileSource};
use proptest::prelude::*;

fn valid_wav(channels: u16, rate: u32, bits: u16, float: bool) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut buf = Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut buf, spec).expect("writer");
        for i in 0..(rate / 50) * u32::from(channels) {
            let x = ((i as f32) * 0.05).sin() * 0.5;
            if float {
                w.write_sample(x).expect("write");
            } else {
                let max = (1i64 << (bits - 1)) as f32 - 1.0;
                w.write_sample((x * max) as i32).expect("write");
            }
        }
        w.finalize().expect("finalize");
    }
    buf.into_inner()
}

fn decode(bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("input.wav");
    std::fs::write(&path, bytes).expect("write");
    let Ok(mut source) = WavFileSource::open(&path) else {
        return;
    };
    let mut frame: Frame = [0.0; FRAME_SAMPLES];
    for _ in 0..5 {
        source.next_frame(&mut frame);
        assert!(frame.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode(&bytes);
    }

    #[test]
    fn corrupted_valid_files_never_panic(
        which in 0usize..4,
        flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8),
        cut in 0usize..2000,
    ) {
        let (channels, rate, bits, float) = [(1, 48_000, 16, false), (2, 44_100, 24, false), (1, 16_000, 32, true), (3, 8_000, 8, false)][which];
        let mut bytes = valid_wav(channels, rate, bits, float);
        for (pos, value) in flips {
            // Mostly the header (44 bytes) and the start of the data.
            if let Some(b) = bytes.get_mut(pos) {
                *b = value;
            }
        }
        let keep = bytes.len().saturating_sub(cut);
        bytes.truncate(keep.max(1));
        decode(&bytes);
    }
}

#[test]
fn float_samples_beyond_full_scale_are_clipped() {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut buf = Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut buf, spec).expect("writer");
        for i in 0..4800 {
            w.write_sample(if i % 2 == 0 { 8.0f32 } else { f32::NAN })
                .expect("write");
        }
        w.finalize().expect("finalize");
    }
    decode(&buf.into_inner());
}
