//! Choosing the call's microphone and speaker from settings and command-line flags.

use std::path::PathBuf;

use super::{
    AudioSink, AudioSource, CpalCapture, CpalPlayback, DeviceError, DeviceSelection, DiscardSink,
    PacedSink, PacedSource, SilenceSource, WavFileSource, WavRecorder,
};

/// Where the microphone signal comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureSpec {
    /// A sound card (the system default unless one is selected).
    Device(DeviceSelection),
    /// `--play FILE`: a WAV file in real time, then silence.
    WavFile(PathBuf),
    /// Silence in real time (headless runs without `--play`).
    Silence,
}

/// Where the speaker signal goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaybackSpec {
    /// A sound card (the system default unless one is selected).
    Device(DeviceSelection),
    /// `--record FILE`: 48 kHz mono 16-bit WAV, time-aligned with the call.
    WavFile(PathBuf),
    /// Nowhere, in real time (headless runs without `--record`).
    Discard,
}

/// Both ends of a call's audio, as the engine uses them.
pub struct AudioEndpoints {
    /// The microphone side.
    pub source: Box<dyn AudioSource>,
    /// The speaker side.
    pub sink: Box<dyn AudioSink>,
}

impl std::fmt::Debug for AudioEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioEndpoints").finish_non_exhaustive()
    }
}

/// Opens both ends of a call's audio.
///
/// Sound cards never fail here: a missing device starts in the lost state (silence,
/// [`super::DeviceEvent::Lost`] queued, retried every second), so a call can go on.
/// Files fail with a clear error. When both ends are virtual, the speaker ticks half a
/// frame after the microphone ([`PacedSink::start_on_grid`]) so the loop from capture to
/// playback adds about 10 ms, not 20.
pub fn open_endpoints(
    capture: &CaptureSpec,
    playback: &PlaybackSpec,
) -> Result<AudioEndpoints, DeviceError> {
    let mut grid = None;
    let source: Box<dyn AudioSource> = match capture {
        CaptureSpec::Device(selection) => Box::new(CpalCapture::open_or_lost(selection.clone())),
        CaptureSpec::WavFile(path) => {
            let paced = PacedSource::start(WavFileSource::open(path)?)?;
            grid = Some(paced.grid_start());
            Box::new(paced)
        }
        CaptureSpec::Silence => {
            let paced = PacedSource::start(SilenceSource)?;
            grid = Some(paced.grid_start());
            Box::new(paced)
        }
    };
    let start_paced = |sink: Box<dyn super::FrameSink>| match grid {
        Some(g) => PacedSink::start_on_grid(sink, g),
        None => PacedSink::start(sink),
    };
    let sink: Box<dyn AudioSink> = match playback {
        PlaybackSpec::Device(selection) => Box::new(CpalPlayback::open_or_lost(selection.clone())),
        PlaybackSpec::WavFile(path) => Box::new(start_paced(Box::new(WavRecorder::create(path)?))?),
        PlaybackSpec::Discard => Box::new(start_paced(Box::new(DiscardSink))?),
    };
    Ok(AudioEndpoints { source, sink })
}
