//! Audio capture and playback: real sound cards through cpal, and virtual devices.
//!
//! Everything the rest of the media pipeline sees is a stream of 20 ms frames of
//! 48 kHz mono `f32` samples in `[-1, 1]` ([`Frame`]). Two traits hide where they come
//! from and go to:
//!
//! - [`AudioSource`]: the microphone side. The source runs on its own clock (a sound
//!   card, or a pacing thread); the engine thread calls [`AudioSource::wait_frame`] and
//!   is woken once per 20 ms frame, so the capture clock paces the whole send path.
//! - [`AudioSink`]: the speaker side. The engine writes frames with
//!   [`AudioSink::write_frame`]; the sink plays them on its own clock and plays silence
//!   when it runs dry.
//!
//! Implementations:
//!
//! | type | what it is |
//! | --- | --- |
//! | [`CpalCapture`] / [`CpalPlayback`] | a real input / output device (cpal, ALSA on Linux) |
//! | [`PacedSource`] | a thread that pulls a [`FrameSource`] (WAV file, tone, silence) every 20 ms |
//! | [`PacedSink`] | a thread that pushes one frame every 20 ms into a [`FrameSink`] (WAV recorder, discard), silence when nothing was written |
//!
//! [`open_endpoints`] turns the user's choice ([`CaptureSpec`], [`PlaybackSpec`]: a
//! device, `--play FILE`, `--record FILE`, silence) into a boxed source and sink.
//!
//! [`FrameSource`] and [`FrameSink`] are the clock-free halves: a WAV file decoder
//! ([`WavFileSource`]) or a WAV writer ([`WavRecorder`]) that produce or consume frames as
//! fast as they are asked. Offline tests use them directly; the paced wrappers give them
//! real-time behaviour without hardware.
//!
//! Real-time rules: the cpal callbacks and the pacing threads only move samples through
//! preallocated lock-free [`rtrb`] rings (plus a sample-format conversion and a
//! down/up-mix); they never allocate, lock or block. Resampling to and from 48 kHz
//! ([`RateConverter`], rubato) runs on the engine thread inside `wait_frame` /
//! `write_frame`.
//!
//! Device loss: when a cpal stream reports an error, the next `wait_frame` /
//! `write_frame` reopens the system default device and queues
//! [`DeviceEvent::Switched`]; when no device can be opened it queues
//! [`DeviceEvent::Lost`], keeps the call alive (capture delivers silence on a 20 ms
//! clock, playback discards) and retries about once a second, queueing `Switched` when a
//! device comes back. While a selected device is replaced by the default, the selected
//! one is retried every 3 s (a replugged headset is taken back). A stream that stops
//! calling back for a second without reporting an error counts as failed too. Drain
//! events with `poll_event`.
//!
//! Not here: echo cancellation and noise suppression (`media::dsp`), codecs, jitter
//! buffering (the playback rings here are short device buffers, not a jitter buffer).

mod convert;
mod cpal_backend;
mod endpoints;
mod paced;
mod pacer;
mod signal;
mod wav;

pub use convert::RateConverter;
pub use cpal_backend::{
    CpalCapture, CpalPlayback, DeviceDirection, DeviceId, DeviceInfo, DeviceSelection,
    input_devices, output_devices,
};
pub use endpoints::{AudioEndpoints, CaptureSpec, PlaybackSpec, open_endpoints};
pub use paced::{PACED_RING_FRAMES, PacedSink, PacedSource};
pub use pacer::Pacer;
pub use wav::{WavFileSource, WavRecorder};

use std::time::Duration;

/// The pipeline's sample rate.
pub const SAMPLE_RATE_HZ: u32 = 48_000;
/// Samples in one 20 ms frame at [`SAMPLE_RATE_HZ`], mono.
pub const FRAME_SAMPLES: usize = 960;
/// Duration of one frame.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

// The devices feed the codec directly: one frame each way.
const _: () = assert!(
    FRAME_SAMPLES == crate::codec::FRAME_SAMPLES && SAMPLE_RATE_HZ == crate::codec::SAMPLE_RATE_HZ
);

/// One 20 ms frame of 48 kHz mono samples in `[-1, 1]`.
pub type Frame = [f32; FRAME_SAMPLES];

/// A silent frame.
pub const SILENCE: Frame = [0.0; FRAME_SAMPLES];

/// The microphone side of a call, on its own clock.
pub trait AudioSource: Send {
    /// Copies the next captured frame into `out` if one is ready; never blocks.
    /// Returns `Ok(false)` when no full frame is buffered yet.
    fn read_frame(&mut self, out: &mut Frame) -> Result<bool, DeviceError>;

    /// Like [`read_frame`](Self::read_frame) but parks the calling thread until a frame
    /// is ready or `timeout` passes (`Ok(false)`). The device then unparks that thread
    /// whenever audio arrives, so the engine thread should not rely on
    /// `std::thread::park` for anything else.
    fn wait_frame(&mut self, out: &mut Frame, timeout: Duration) -> Result<bool, DeviceError>;

    /// Next device event (switch, loss) for the user interface.
    fn poll_event(&mut self) -> Option<DeviceEvent>;

    /// Captured samples buffered between the device and the engine, at 48 kHz: the
    /// capture side's share of device latency.
    fn buffered_samples(&self) -> usize;
}

/// The speaker side of a call, on its own clock.
pub trait AudioSink: Send {
    /// Queues one frame for playback; never blocks. Returns `Ok(false)` when the device
    /// buffer was full and the frame was dropped (the consumer is slower than the
    /// producer, e.g. two sound cards with drifting clocks).
    fn write_frame(&mut self, frame: &Frame) -> Result<bool, DeviceError>;

    /// Next device event (switch, loss) for the user interface.
    fn poll_event(&mut self) -> Option<DeviceEvent>;

    /// Samples queued for playback, at 48 kHz: the playback side's share of device
    /// latency.
    fn buffered_samples(&self) -> usize;

    /// Stops playback and flushes whatever the sink writes to (a `--record` file gets
    /// its final header). Later writes are discarded. Dropping the sink does the same
    /// but can only log errors.
    fn close(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

impl<S: AudioSource + ?Sized> AudioSource for Box<S> {
    fn read_frame(&mut self, out: &mut Frame) -> Result<bool, DeviceError> {
        (**self).read_frame(out)
    }
    fn wait_frame(&mut self, out: &mut Frame, timeout: Duration) -> Result<bool, DeviceError> {
        (**self).wait_frame(out, timeout)
    }
    fn poll_event(&mut self) -> Option<DeviceEvent> {
        (**self).poll_event()
    }
    fn buffered_samples(&self) -> usize {
        (**self).buffered_samples()
    }
}

impl<S: AudioSink + ?Sized> AudioSink for Box<S> {
    fn write_frame(&mut self, frame: &Frame) -> Result<bool, DeviceError> {
        (**self).write_frame(frame)
    }
    fn poll_event(&mut self) -> Option<DeviceEvent> {
        (**self).poll_event()
    }
    fn buffered_samples(&self) -> usize {
        (**self).buffered_samples()
    }
    fn close(&mut self) -> Result<(), DeviceError> {
        (**self).close()
    }
}

/// Produces frames on demand, with no clock of its own (a file, a generator).
pub trait FrameSource: Send {
    /// Fills `out` with the next frame. Sources that have ended fill silence.
    fn next_frame(&mut self, out: &mut Frame);
}

/// Consumes frames on demand, with no clock of its own (a file writer, a tap).
pub trait FrameSink: Send {
    /// Takes one frame.
    fn put_frame(&mut self, frame: &Frame) -> Result<(), DeviceError>;

    /// Flushes and closes whatever the sink writes to. Called once, at the end.
    fn finish(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// A source of silence, for a muted or absent microphone.
#[derive(Debug, Default, Clone, Copy)]
pub struct SilenceSource;

impl FrameSource for SilenceSource {
    fn next_frame(&mut self, out: &mut Frame) {
        out.fill(0.0);
    }
}

/// A sink that drops every frame, for headless runs with no `--record`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardSink;

impl FrameSink for DiscardSink {
    fn put_frame(&mut self, _frame: &Frame) -> Result<(), DeviceError> {
        Ok(())
    }
}

impl<S: FrameSource + ?Sized> FrameSource for Box<S> {
    fn next_frame(&mut self, out: &mut Frame) {
        (**self).next_frame(out);
    }
}

impl<S: FrameSink + ?Sized> FrameSink for Box<S> {
    fn put_frame(&mut self, frame: &Frame) -> Result<(), DeviceError> {
        (**self).put_frame(frame)
    }
    fn finish(&mut self) -> Result<(), DeviceError> {
        (**self).finish()
    }
}

/// Something the user should be told about a device, drained with `poll_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// The stream moved to another device (the old one failed, or came back).
    Switched {
        /// The device that failed, when it was known.
        from: Option<DeviceInfo>,
        /// The device now in use.
        to: DeviceInfo,
        /// Why: the error that ended the old stream.
        reason: String,
    },
    /// No device could be opened; the call goes on with silence and retries.
    Lost {
        /// The device that failed, when it was known.
        device: Option<DeviceInfo>,
        /// Why it was lost.
        reason: String,
    },
}

/// Errors of device handling and virtual devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No device of that kind exists (no sound card, or the selected id is gone).
    #[error("no {direction} audio device {which}")]
    NoDevice {
        /// Input or output.
        direction: DeviceDirection,
        /// Which device was asked for ("available", or the id).
        which: String,
    },
    /// The device exists but cpal refused to open or start it.
    #[error("audio device {device}: {source}")]
    Backend {
        /// The device's description.
        device: String,
        /// cpal's error.
        #[source]
        source: cpal::Error,
    },
    /// The device offers no configuration this crate can use (no f32/i16/i32/u16 format).
    #[error("audio device {device} has no usable stream configuration")]
    UnsupportedConfig {
        /// The device's description.
        device: String,
    },
    /// A WAV file could not be read or written.
    #[error("WAV file {path}: {source}")]
    Wav {
        /// The file.
        path: String,
        /// hound's error.
        #[source]
        source: hound::Error,
    },
    /// A WAV file is valid but has a format this crate does not read.
    #[error("WAV file {path}: unsupported format ({detail})")]
    WavFormat {
        /// The file.
        path: String,
        /// What is unsupported.
        detail: String,
    },
    /// The sample-rate converter rejected the rates.
    #[error("cannot resample {from_hz} Hz to {to_hz} Hz: {detail}")]
    Resampler {
        /// Input rate.
        from_hz: u32,
        /// Output rate.
        to_hz: u32,
        /// rubato's reason.
        detail: String,
    },
    /// A pacing thread could not be started or ended with an error.
    #[error("virtual device thread: {0}")]
    Thread(String),
}
