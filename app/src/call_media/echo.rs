//! The echo test account's record mode: a beep, a stretch of what the caller says recorded
//! (8 s for the CLI's echo account, see [`DEFAULT_RECORD`]), then played back to them, over
//! and over.

use std::time::Duration;

use media::device::{FRAME_DURATION, Frame, FrameSource, SILENCE};
use media::dsp::ToneGenerator;

/// How long the beep that starts each round lasts.
pub(super) const BEEP_FRAMES: usize = (1000 / FRAME_DURATION.as_millis()) as usize;
/// How much the echo account records and plays back unless told otherwise.
pub const DEFAULT_RECORD: Duration = Duration::from_secs(8);
/// The longest recording the record mode keeps: its buffer is allocated up front.
pub const MAX_RECORD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Beep,
    Record,
    Playback,
}

/// Decides, frame by frame, what the echo account "says".
pub(super) struct EchoRecorder {
    phase: Phase,
    /// Frames into the current phase.
    position: usize,
    tone: ToneGenerator,
    /// Preallocated for the whole recording, so no frame allocates; its length is the
    /// record (and playback) length in frames.
    recording: Vec<Frame>,
}

impl EchoRecorder {
    /// Records `record` (whole frames, at least one, at most [`MAX_RECORD`]) per round.
    pub(super) fn new(record: Duration) -> Self {
        let frames =
            record.clamp(FRAME_DURATION, MAX_RECORD).as_millis() / FRAME_DURATION.as_millis();
        Self {
            phase: Phase::Beep,
            position: 0,
            tone: beep(),
            recording: vec![SILENCE; usize::try_from(frames).unwrap_or(1)],
        }
    }

    /// Takes the frame heard at this tick and writes the frame to send.
    pub(super) fn next_frame(&mut self, heard: &Frame, out: &mut Frame) {
        match self.phase {
            Phase::Beep => self.tone.next_frame(out),
            Phase::Record => {
                if let Some(slot) = self.recording.get_mut(self.position) {
                    slot.copy_from_slice(heard);
                }
                out.fill(0.0);
            }
            Phase::Playback => match self.recording.get(self.position) {
                Some(frame) => out.copy_from_slice(frame),
                None => out.fill(0.0),
            },
        }
        self.position += 1;
        let (length, next) = match self.phase {
            Phase::Beep => (BEEP_FRAMES, Phase::Record),
            Phase::Record => (self.recording.len(), Phase::Playback),
            Phase::Playback => (self.recording.len(), Phase::Beep),
        };
        if self.position >= length {
            self.phase = next;
            self.position = 0;
            if next == Phase::Beep {
                self.tone = beep();
            }
        }
    }
}

/// Two short 880 Hz beeps in the first second.
fn beep() -> ToneGenerator {
    ToneGenerator::new(880.0, -12.0, 250, 250)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(frame: &Frame) -> f32 {
        frame.iter().map(|s| s.abs()).fold(0.0, f32::max)
    }

    #[test]
    fn beeps_records_eight_seconds_and_plays_them_back() {
        const RECORD_FRAMES: usize = 400;
        let mut echo = EchoRecorder::new(DEFAULT_RECORD);
        let mut out = SILENCE;
        let mut beep_level = 0.0f32;
        for _ in 0..BEEP_FRAMES {
            echo.next_frame(&SILENCE, &mut out);
            beep_level = beep_level.max(level(&out));
        }
        assert!(beep_level > 0.1, "the round starts with a beep");
        for i in 0..RECORD_FRAMES {
            let heard = [i as f32 / RECORD_FRAMES as f32; media::device::FRAME_SAMPLES];
            echo.next_frame(&heard, &mut out);
            assert_eq!(level(&out), 0.0, "silent while recording");
        }
        for i in 0..RECORD_FRAMES {
            echo.next_frame(&SILENCE, &mut out);
            assert_eq!(
                out[0],
                i as f32 / RECORD_FRAMES as f32,
                "frame {i} played back"
            );
        }
        echo.next_frame(&SILENCE, &mut out);
        echo.next_frame(&SILENCE, &mut out);
        assert!(level(&out) > 0.0, "the next round beeps again");
    }

    #[test]
    fn the_record_length_is_a_parameter_within_bounds() {
        assert_eq!(
            EchoRecorder::new(Duration::from_secs(2)).recording.len(),
            100
        );
        assert_eq!(EchoRecorder::new(Duration::ZERO).recording.len(), 1);
        assert_eq!(
            EchoRecorder::new(Duration::from_secs(3600)).recording.len(),
            3000
        );
    }
}
