//! The app's own sounds (ringtone, message chime, hang-up tone) on the default output
//! device, on a thread of their own so the UI never waits for audio.
//!
//! The device is opened only while something plays and closed afterwards, so a call's
//! audio pipeline finds it free. Without a sound card the sounds are silently dropped.

use super::model::SoundCue;
use media::device::{AudioSink, CpalPlayback, DeviceSelection, FRAME_SAMPLES, Frame};
use std::sync::mpsc;
use std::time::Duration;

/// Plays [`SoundCue`]s.
pub trait SoundPlayer {
    fn cue(&mut self, cue: SoundCue);
}

/// Plays nothing (tests, or no audio wanted).
#[derive(Debug, Default)]
pub struct Silent;

impl SoundPlayer for Silent {
    fn cue(&mut self, _cue: SoundCue) {}
}

/// Plays sounds on the default output device from a background thread.
#[derive(Debug)]
pub struct DevicePlayer {
    tx: mpsc::SyncSender<SoundCue>,
}

impl DevicePlayer {
    /// Starts the sound thread.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(16);
        std::thread::Builder::new()
            .name("ui-sounds".into())
            .spawn(move || sound_thread(rx))?;
        Ok(Self { tx })
    }
}

impl SoundPlayer for DevicePlayer {
    fn cue(&mut self, cue: SoundCue) {
        // A full queue means the thread is behind; a dropped chime is harmless.
        let _ = self.tx.try_send(cue);
    }
}

/// What is playing.
struct Playing {
    samples: Vec<i16>,
    position: usize,
    looped: bool,
}

/// Keeps about this much audio queued on the device.
const QUEUE_AHEAD_SAMPLES: usize = FRAME_SAMPLES * 5;

fn sound_thread(rx: mpsc::Receiver<SoundCue>) {
    let mut playing: Option<Playing> = None;
    let mut device: Option<CpalPlayback> = None;
    loop {
        let cue = if playing.is_some() {
            match rx.recv_timeout(Duration::from_millis(10)) {
                Ok(cue) => Some(cue),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            device = None;
            match rx.recv() {
                Ok(cue) => Some(cue),
                Err(_) => return,
            }
        };
        match cue {
            Some(SoundCue::StartRingtone) => {
                playing = Some(Playing {
                    samples: super::resources::ringtone_samples(),
                    position: 0,
                    looped: true,
                });
            }
            Some(SoundCue::StopRingtone) if playing.as_ref().is_some_and(|p| p.looped) => {
                playing = None;
            }
            Some(SoundCue::MessageChime) if playing.is_none() => {
                playing = Some(Playing {
                    samples: super::resources::chime_samples(),
                    position: 0,
                    looped: false,
                });
            }
            Some(SoundCue::HangupTone) => {
                playing = Some(Playing {
                    samples: super::resources::hangup_samples(),
                    position: 0,
                    looped: false,
                });
            }
            Some(SoundCue::StopRingtone | SoundCue::MessageChime) | None => {}
        }
        let Some(sound) = playing.as_mut() else {
            continue;
        };
        let sink =
            device.get_or_insert_with(|| CpalPlayback::open_or_lost(DeviceSelection::default()));
        // Bounded per wake-up: a lost device discards frames and never fills up.
        for _ in 0..QUEUE_AHEAD_SAMPLES / FRAME_SAMPLES {
            if sink.buffered_samples() >= QUEUE_AHEAD_SAMPLES {
                break;
            }
            let mut frame: Frame = [0.0; FRAME_SAMPLES];
            let mut ended = false;
            for sample in frame.iter_mut() {
                if sound.position >= sound.samples.len() {
                    if sound.looped && !sound.samples.is_empty() {
                        sound.position = 0;
                    } else {
                        ended = true;
                        break;
                    }
                }
                *sample = f32::from(sound.samples[sound.position]) / 32_768.0;
                sound.position += 1;
            }
            if sink.write_frame(&frame).is_err() || ended {
                break;
            }
        }
        if sound.position >= sound.samples.len() && !sound.looped {
            playing = None;
        }
    }
}
