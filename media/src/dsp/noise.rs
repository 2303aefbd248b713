//! Noise suppression with RNNoise (`nnnoiseless`).

use nnnoiseless::DenoiseState;

use crate::device::{FRAME_SAMPLES, Frame};

/// RNNoise works on 10 ms (480-sample) frames of 48 kHz audio.
const HALF: usize = nnnoiseless::FRAME_SIZE;
const _: () = assert!(2 * HALF == FRAME_SAMPLES);

/// Removes stationary and non-stationary background noise from speech. Adds 10 ms of
/// delay (RNNoise's overlap) while enabled.
///
/// Switchable: while disabled frames pass untouched; re-enabling starts from fresh state
/// so stale noise estimates do not colour the first frames.
pub struct NoiseSuppressor {
    state: Box<DenoiseState<'static>>,
    enabled: bool,
    scratch_in: [f32; HALF],
    scratch_out: [f32; HALF],
    last_voice_probability: f32,
}

impl std::fmt::Debug for NoiseSuppressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseSuppressor")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Default for NoiseSuppressor {
    fn default() -> Self {
        Self::new(true)
    }
}

impl NoiseSuppressor {
    /// A suppressor, initially on or off.
    pub fn new(enabled: bool) -> Self {
        Self {
            state: DenoiseState::new(),
            enabled,
            scratch_in: [0.0; HALF],
            scratch_out: [0.0; HALF],
            last_voice_probability: 0.0,
        }
    }

    /// Whether frames are processed.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Switches suppression on or off.
    pub fn set_enabled(&mut self, enabled: bool) {
        if enabled && !self.enabled {
            self.state = DenoiseState::new();
        }
        self.enabled = enabled;
    }

    /// RNNoise's voice-activity probability for the last processed 10 ms, in `[0, 1]`.
    pub fn voice_probability(&self) -> f32 {
        self.last_voice_probability
    }

    /// Cleans one frame in place.
    pub fn process_frame(&mut self, frame: &mut Frame) {
        if !self.enabled {
            return;
        }
        for half in frame.chunks_exact_mut(HALF) {
            // RNNoise expects 16-bit-scaled samples.
            for (d, s) in self.scratch_in.iter_mut().zip(half.iter()) {
                *d = s * 32768.0;
            }
            self.last_voice_probability = self
                .state
                .process_frame(&mut self.scratch_out, &self.scratch_in);
            for (d, s) in half.iter_mut().zip(self.scratch_out.iter()) {
                *d = (s / 32768.0).clamp(-1.0, 1.0);
            }
        }
    }
}
