//! The "speaker test" sound.

use crate::device::{FRAME_SAMPLES, Frame, FrameSource, SAMPLE_RATE_HZ};

/// A sine tone in beeps: `on_millis` of tone (with 5 ms raised-cosine fades, so it does
/// not click) then `off_millis` of silence, repeated. Used as a [`FrameSource`] it plays
/// through any sink, e.g. a [`crate::device::PacedSource`] or the speaker.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    phase_step: f64,
    phase: f64,
    amplitude: f32,
    on_samples: u64,
    period_samples: u64,
    position: u64,
}

const FADE_SAMPLES: u64 = SAMPLE_RATE_HZ as u64 / 200;

impl ToneGenerator {
    /// A tone at `frequency_hz` with peak level `level_dbfs`, beeping `on_millis` on and
    /// `off_millis` off (`off_millis == 0`: continuous).
    pub fn new(frequency_hz: f32, level_dbfs: f32, on_millis: u32, off_millis: u32) -> Self {
        let rate = f64::from(SAMPLE_RATE_HZ);
        let on_samples = u64::from(on_millis) * u64::from(SAMPLE_RATE_HZ) / 1000;
        let off_samples = u64::from(off_millis) * u64::from(SAMPLE_RATE_HZ) / 1000;
        Self {
            phase_step: f64::from(frequency_hz.clamp(0.0, 20_000.0)) / rate,
            phase: 0.0,
            amplitude: 10f32.powf(level_dbfs.min(0.0) / 20.0),
            on_samples: on_samples.max(1),
            period_samples: (on_samples + off_samples).max(1),
            position: 0,
        }
    }

    /// The settings screen's speaker test: 440 Hz at -12 dBFS, 400 ms beeps every
    /// 800 ms.
    pub fn speaker_test() -> Self {
        Self::new(440.0, -12.0, 400, 400)
    }

    fn next_sample(&mut self) -> f32 {
        let t = self.position % self.period_samples;
        self.position += 1;
        let continuous = self.on_samples >= self.period_samples;
        let gain = if continuous {
            1.0
        } else if t >= self.on_samples {
            0.0
        } else {
            let edge = t.min(self.on_samples - 1 - t);
            if edge < FADE_SAMPLES {
                let x = edge as f32 / FADE_SAMPLES as f32;
                0.5 - 0.5 * (std::f32::consts::PI * x).cos()
            } else {
                1.0
            }
        };
        let s = (2.0 * std::f64::consts::PI * self.phase).sin() as f32;
        self.phase = (self.phase + self.phase_step).fract();
        s * self.amplitude * gain
    }
}

impl FrameSource for ToneGenerator {
    fn next_frame(&mut self, out: &mut Frame) {
        for s in out.iter_mut().take(FRAME_SAMPLES) {
            *s = self.next_sample();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::FrameLevel;

    #[test]
    fn speaker_test_beeps_at_the_requested_level() {
        let mut tone = ToneGenerator::speaker_test();
        let mut frame = [0.0; FRAME_SAMPLES];
        let mut peaks = Vec::new();
        for _ in 0..40 {
            tone.next_frame(&mut frame);
            peaks.push(FrameLevel::measure(&frame).peak_dbfs);
        }
        // 400 ms on = frames 0..20, then 400 ms of silence.
        assert!((peaks[10] + 12.0).abs() < 0.1, "{peaks:?}");
        assert!(peaks[30] <= -99.0, "{peaks:?}");
    }

    #[test]
    fn tone_has_the_requested_frequency() {
        let mut tone = ToneGenerator::new(1000.0, 0.0, 1000, 0);
        let mut frame = [0.0; FRAME_SAMPLES];
        tone.next_frame(&mut frame);
        let crossings = frame
            .windows(2)
            .filter(|w| w[0] <= 0.0 && w[1] > 0.0)
            .count();
        // 1 kHz over 20 ms: 20 upward zero crossings (give or take the edge).
        assert!((19..=20).contains(&crossings), "{crossings}");
    }
}
