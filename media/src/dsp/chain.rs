//! The microphone-side processing chain.

use super::{EchoCanceller, EchoError, NoiseSuppressor};
use crate::device::Frame;

/// Echo cancellation then noise suppression on each microphone frame, each switchable
/// at run time (the settings toggles). Echo goes first so the noise suppressor does not
/// learn the echo as part of the noise floor.
#[derive(Debug)]
pub struct CaptureProcessor {
    echo: EchoCanceller,
    noise: NoiseSuppressor,
}

impl CaptureProcessor {
    /// A chain with each stage on or off.
    pub fn new(echo_cancellation: bool, noise_suppression: bool) -> Result<Self, EchoError> {
        Ok(Self {
            echo: EchoCanceller::new(echo_cancellation, 40)?,
            noise: NoiseSuppressor::new(noise_suppression),
        })
    }

    /// Switches echo cancellation.
    pub fn set_echo_cancellation(&mut self, on: bool) -> Result<(), EchoError> {
        self.echo.set_enabled(on)
    }

    /// Switches noise suppression.
    pub fn set_noise_suppression(&mut self, on: bool) {
        self.noise.set_enabled(on);
    }

    /// Whether echo cancellation is on.
    pub fn echo_cancellation(&self) -> bool {
        self.echo.enabled()
    }

    /// Whether noise suppression is on.
    pub fn noise_suppression(&self) -> bool {
        self.noise.enabled()
    }

    /// Feed every frame handed to the speaker (the echo reference).
    pub fn handle_render_frame(&mut self, frame: &Frame) {
        self.echo.handle_render_frame(frame);
    }

    /// Cleans one microphone frame in place.
    pub fn process_capture_frame(&mut self, frame: &mut Frame) -> Result<(), EchoError> {
        self.echo.process_capture_frame(frame)?;
        self.noise.process_frame(frame);
        Ok(())
    }
}
