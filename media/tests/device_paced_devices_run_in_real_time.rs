//! Virtual devices without hardware: a WAV file as microphone and a WAV recorder as
//! speaker, each ticking every 20 ms on absolute deadlines.

mod device_support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use media::device::{
    AudioSink, AudioSource, DeviceError, FRAME_SAMPLES, Frame, FrameSink, PacedSink, PacedSource,
    WavFileSource, WavRecorder,
};

const GENEROUS: Duration = Duration::from_secs(5);

#[test]
fn paced_wav_source_delivers_the_file_frame_by_frame_in_real_time() {
    let path = device_support::data_file("device_speech_far.wav");
    let expected = device_support::read_frames(&path, 50);
    let mut mic = PacedSource::start(WavFileSource::open(&path).expect("open")).expect("start");
    let mut frame: Frame = [0.0; FRAME_SAMPLES];
    let started = Instant::now();
    for n in 0..50 {
        assert!(
            mic.wait_frame(&mut frame, GENEROUS).expect("wait"),
            "frame {n} never came"
        );
        assert_eq!(
            &frame[..],
            &expected[n * FRAME_SAMPLES..(n + 1) * FRAME_SAMPLES],
            "frame {n}"
        );
    }
    // 50 frames are one second of audio: a paced device cannot deliver them faster than
    // real time (frame n is due n * 20 ms after the grid start).
    assert!(started >= mic.grid_start());
    let elapsed = mic.grid_start().elapsed();
    assert!(
        elapsed >= Duration::from_millis(1000),
        "{elapsed:?}: faster than real time"
    );
    assert_eq!(mic.overruns(), 0);
    mic.stop();
}

#[test]
fn an_engine_that_reads_late_loses_frames_instead_of_growing_latency() {
    let mic = PacedSource::start(media::device::SilenceSource).expect("start");
    // Wait until the pacing thread has overrun the 3-frame ring at least once, without
    // reading; then the ring is full and the oldest audio is at most 3 frames old.
    let deadline = Instant::now() + GENEROUS;
    while mic.overruns() == 0 && Instant::now() < deadline {
        std::thread::park_timeout(Duration::from_millis(5));
    }
    assert!(mic.overruns() > 0);
    assert!(mic.buffered_samples() <= mic.capacity_samples());
    assert_eq!(mic.capacity_samples(), 3 * FRAME_SAMPLES);
}

/// A sink that forwards every frame it is given, to observe the paced sink's ticks.
struct Tap(mpsc::Sender<Frame>);

impl FrameSink for Tap {
    fn put_frame(&mut self, frame: &Frame) -> Result<(), DeviceError> {
        let _ = self.0.send(*frame);
        Ok(())
    }
}

#[test]
fn paced_sink_plays_written_frames_and_silence_when_nothing_was_written() {
    let (tx, rx) = mpsc::channel();
    let mut speaker = PacedSink::start(Tap(tx)).expect("start");
    // Let the sink tick with nothing written: it must keep ticking with silence.
    for _ in 0..3 {
        let f = rx.recv_timeout(GENEROUS).expect("tick");
        assert!(f.iter().all(|&s| s == 0.0));
    }
    let marker: Frame = [0.25; FRAME_SAMPLES];
    assert!(speaker.write_frame(&marker).expect("write"));
    let deadline = Instant::now() + GENEROUS;
    let mut seen = false;
    while Instant::now() < deadline && !seen {
        let f = rx.recv_timeout(GENEROUS).expect("tick");
        seen = f[0] == 0.25 && f[FRAME_SAMPLES - 1] == 0.25;
    }
    assert!(seen, "the written frame was never played");
    assert!(speaker.underruns() >= 3);
    speaker.finish().expect("finish");
}

#[test]
fn recording_is_time_aligned_with_wall_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("call.wav");
    let started = Instant::now();
    let mut speaker = PacedSink::start(WavRecorder::create(&path).expect("create")).expect("start");
    // The "call" plays one marked frame, then nothing for a while, then another.
    let one: Frame = [0.5; FRAME_SAMPLES];
    speaker.write_frame(&one).expect("write");
    let first_write = Instant::now();
    std::thread::park_timeout(Duration::from_millis(300));
    speaker.write_frame(&one).expect("write");
    let gap = first_write.elapsed();
    std::thread::park_timeout(Duration::from_millis(200));
    speaker.finish().expect("finish");
    let elapsed = started.elapsed();

    let mut reader = hound::WavReader::open(&path).expect("open");
    assert_eq!(reader.spec().sample_rate, 48_000);
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let recorded = Duration::from_secs_f64(samples.len() as f64 / 48_000.0);
    // The file covers the wall time of the call (one frame of rounding at either end),
    // silence included.
    assert!(recorded <= elapsed, "{recorded:?} > {elapsed:?}");
    assert!(
        elapsed - recorded <= Duration::from_millis(150),
        "{recorded:?} vs {elapsed:?}"
    );
    let loud_frames = samples
        .chunks(FRAME_SAMPLES)
        .filter(|f| f.iter().all(|&s| s > 16_000))
        .count();
    assert_eq!(loud_frames, 2);
    // The two marked frames are as far apart in the file as they were in wall time.
    let positions: Vec<usize> = samples
        .chunks(FRAME_SAMPLES)
        .enumerate()
        .filter(|(_, f)| f.iter().all(|&s| s > 16_000))
        .map(|(i, _)| i)
        .collect();
    let gap_frames = (positions[1] - positions[0]) as i64;
    let wall_frames = (gap.as_secs_f64() / 0.020).round() as i64;
    assert!(
        (gap_frames - wall_frames).abs() <= 2,
        "{gap_frames} frames in the file, {wall_frames} in wall time"
    );
}
