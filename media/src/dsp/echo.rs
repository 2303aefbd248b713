//! Acoustic echo cancellation with WebRTC's AEC3 (pure-Rust port, `aec3`).

use aec3::nodes::audio::AudioFormat;
use aec3::pipelines::linear::{self, LinearPipeline};

use crate::device::{FRAME_SAMPLES, Frame, SAMPLE_RATE_HZ};

/// AEC3 works on 10 ms blocks.
const HALF: usize = FRAME_SAMPLES / 2;

/// The echo canceller could not be built or fed.
#[derive(Debug, thiserror::Error)]
#[error("echo canceller: {0}")]
pub struct EchoError(String);

fn err(e: impl std::fmt::Display) -> EchoError {
    EchoError(e.to_string())
}

/// Removes the far end's voice, played by the speaker and picked up again by the
/// microphone, from captured audio: for users without a headset.
///
/// Call [`handle_render_frame`](Self::handle_render_frame) with every frame handed to
/// the speaker and [`process_capture_frame`](Self::process_capture_frame) with every
/// microphone frame, on the same thread. AEC3 estimates the echo path's delay itself
/// (up to about half a second), so the two streams only need to be roughly in step.
///
/// Switchable: while disabled nothing is processed; re-enabling starts a fresh
/// canceller, which re-converges within a second or two of far-end speech.
pub struct EchoCanceller {
    pipeline: Option<LinearPipeline>,
    enabled: bool,
    initial_delay_millis: i32,
    out: [f32; HALF],
    render_errors: u64,
}

impl std::fmt::Debug for EchoCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoCanceller")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl EchoCanceller {
    /// A canceller, initially on or off. `initial_delay_millis` is a first guess of the
    /// speaker-to-microphone delay (device buffers plus acoustics; 40 ms is typical).
    pub fn new(enabled: bool, initial_delay_millis: i32) -> Result<Self, EchoError> {
        let mut aec = Self {
            pipeline: None,
            enabled: false,
            initial_delay_millis,
            out: [0.0; HALF],
            render_errors: 0,
        };
        aec.set_enabled(enabled)?;
        Ok(aec)
    }

    /// Whether frames are processed.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Switches cancellation on or off.
    pub fn set_enabled(&mut self, enabled: bool) -> Result<(), EchoError> {
        if enabled && self.pipeline.is_none() {
            let format = AudioFormat::ten_ms(SAMPLE_RATE_HZ, 1);
            // Only the canceller: noise suppression is RNNoise's job, gain control and
            // the post filter would change levels the meters and tests rely on.
            let pipeline = linear::builder(format, format)
                .enable_noise_suppression(false)
                .enable_gain_controller2(false)
                .enable_post_filter(false)
                .enable_high_pass_filter(true)
                .initial_delay_ms(self.initial_delay_millis)
                .build()
                .map_err(err)?;
            self.pipeline = Some(pipeline);
        } else if !enabled {
            self.pipeline = None;
        }
        self.enabled = enabled;
        Ok(())
    }

    /// Render (far-end) frames the canceller could not take, e.g. after the capture side
    /// stalled for long.
    pub fn render_errors(&self) -> u64 {
        self.render_errors
    }

    /// Tells the canceller what the speaker is about to play.
    pub fn handle_render_frame(&mut self, frame: &Frame) {
        let Some(pipeline) = self.pipeline.as_mut() else {
            return;
        };
        for half in frame.chunks_exact(HALF) {
            if let Err(e) = pipeline.handle_render_frame(half) {
                self.render_errors += 1;
                tracing::debug!(error = %e, "echo canceller dropped a render block");
            }
        }
    }

    /// Removes echo from one microphone frame in place.
    pub fn process_capture_frame(&mut self, frame: &mut Frame) -> Result<(), EchoError> {
        let Some(pipeline) = self.pipeline.as_mut() else {
            return Ok(());
        };
        for half in frame.chunks_exact_mut(HALF) {
            if pipeline
                .process_capture_frame(half, &mut self.out)
                .map_err(err)?
            {
                half.copy_from_slice(&self.out);
            }
        }
        Ok(())
    }
}
