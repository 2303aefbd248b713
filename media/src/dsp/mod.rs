//! Signal processing around the codec, on 20 ms 48 kHz mono frames
//! ([`crate::device::Frame`]): echo cancellation, noise suppression, level meters and
//! a test tone.
//!
//! - [`EchoCanceller`]: WebRTC's AEC3 (pure-Rust port, the `aec3` crate). Feed it what
//!   the speaker plays ([`EchoCanceller::handle_render_frame`]) and clean the
//!   microphone with it ([`EchoCanceller::process_capture_frame`]).
//! - [`NoiseSuppressor`]: RNNoise (pure-Rust port, `nnnoiseless`).
//! - [`CaptureProcessor`]: both in the usual order (echo first, then noise), each
//!   switchable at run time, as the settings screen toggles them.
//! - [`FrameLevel`]: RMS and peak in dBFS of a frame; [`LevelMeter`] adds meter
//!   ballistics (fast rise, slow fall, held peak) for the input and output meters.
//! - [`ToneGenerator`]: the "speaker test" sound.
//!
//! Everything here is sans-IO and clock-free: the engine thread calls it once per frame.
//! Resampling lives in [`crate::device::RateConverter`].

mod chain;
mod echo;
mod level;
mod noise;
mod tone;

pub use chain::CaptureProcessor;
pub use echo::{EchoCanceller, EchoError};
pub use level::{FrameLevel, LevelMeter, SILENCE_FLOOR_DBFS, amplitude_to_dbfs};
pub use noise::NoiseSuppressor;
pub use tone::ToneGenerator;
