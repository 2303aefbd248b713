//! The settings page's sound checks, on threads of their own so neither the UI nor the
//! engine's runtime waits for a sound card: [`MicMonitor`] measures the chosen
//! microphone's peak level while the page is open, and [`play_speaker_test`] plays the
//! assets' test sound on the chosen speaker.
//!
//! What it does not do: touch a running call's audio (the call media owns that), or decide
//! what to show (the reports go to the model as events).

use media::device::{
    AudioSink as _, AudioSource as _, CpalCapture, CpalPlayback, DeviceId, DeviceSelection,
    FRAME_SAMPLES, Frame, SILENCE,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the microphone meter gets a new level.
pub const MIC_REPORT_EVERY: Duration = Duration::from_millis(100);
/// How long one wait for a captured frame may last before the stop flag is looked at.
const CAPTURE_WAIT: Duration = Duration::from_millis(50);
/// Audio queued ahead on the speaker while the test sound plays.
const QUEUE_AHEAD_SAMPLES: usize = FRAME_SAMPLES * 5;
/// The test sound plus this much is the longest a speaker test may take.
const PLAYOUT_GRACE: Duration = Duration::from_secs(2);

/// What the microphone meter thread reports.
#[derive(Debug, Clone, PartialEq)]
pub enum MicReport {
    /// The peak level (0.0 to 1.0) since the last report.
    Level(f32),
    /// The microphone cannot be opened; the thread has ended.
    Unavailable(String),
}

/// The device selection for a stored device id (`None`: the system default).
pub fn selection(id: Option<&str>) -> DeviceSelection {
    id.map_or(DeviceSelection::SystemDefault, |id| {
        DeviceSelection::Id(DeviceId::new(id))
    })
}

/// Measures a microphone until dropped.
#[derive(Debug)]
pub struct MicMonitor {
    stop: Arc<AtomicBool>,
}

impl MicMonitor {
    /// Opens `input` on a new thread and calls `report` every [`MIC_REPORT_EVERY`] with
    /// the peak level, or once with [`MicReport::Unavailable`].
    pub fn start(
        input: Option<String>,
        mut report: impl FnMut(MicReport) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("ui-mic-meter".into())
            .spawn(move || {
                let mut capture = match CpalCapture::open(selection(input.as_deref())) {
                    Ok(capture) => capture,
                    Err(e) => {
                        tracing::debug!(error = %e, "no microphone for the level meter");
                        report(MicReport::Unavailable(
                            "No microphone could be opened".into(),
                        ));
                        return;
                    }
                };
                let mut frame: Frame = SILENCE;
                let mut peak = 0.0f32;
                let mut last_report = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    match capture.wait_frame(&mut frame, CAPTURE_WAIT) {
                        Ok(true) => peak = peak.max(frame_peak(&frame)),
                        Ok(false) => {}
                        Err(e) => {
                            report(MicReport::Unavailable(format!("microphone failed: {e}")));
                            return;
                        }
                    }
                    if last_report.elapsed() >= MIC_REPORT_EVERY {
                        report(MicReport::Level(peak));
                        peak = 0.0;
                        last_report = Instant::now();
                    }
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for MicMonitor {
    fn drop(&mut self) {
        // The thread closes the device within one capture wait; nobody waits for it.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The loudest sample of a frame (NaN counts as silence).
pub fn frame_peak(frame: &Frame) -> f32 {
    frame.iter().fold(0.0f32, |m, s| m.max(s.abs())).min(1.0)
}

/// Plays the test sound on `output` from a new thread; `done` gets `None` once it has
/// played, or why it could not.
pub fn play_speaker_test(
    output: Option<String>,
    done: impl FnOnce(Option<String>) + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ui-speaker-test".into())
        .spawn(move || {
            done(play_samples(
                output,
                &super::resources::speaker_test_samples(),
            ))
        })?;
    Ok(())
}

fn play_samples(output: Option<String>, samples: &[i16]) -> Option<String> {
    let mut sink = match CpalPlayback::open(selection(output.as_deref())) {
        Ok(sink) => sink,
        Err(e) => return Some(format!("no speaker: {e}")),
    };
    let length = Duration::from_secs_f64(samples.len() as f64 / 48_000.0);
    let deadline = Instant::now() + length + PLAYOUT_GRACE;
    let mut frames = samples.chunks(FRAME_SAMPLES);
    let mut finished = false;
    while Instant::now() < deadline {
        while !finished && sink.buffered_samples() < QUEUE_AHEAD_SAMPLES {
            let Some(chunk) = frames.next() else {
                finished = true;
                break;
            };
            let mut frame: Frame = SILENCE;
            for (out, s) in frame.iter_mut().zip(chunk) {
                *out = f32::from(*s) / 32_768.0;
            }
            if let Err(e) = sink.write_frame(&frame) {
                return Some(format!("speaker failed: {e}"));
            }
        }
        if finished && sink.buffered_samples() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = sink.close();
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_peak_is_its_loudest_sample_and_ignores_nan() {
        let mut frame: Frame = SILENCE;
        frame[3] = -0.5;
        frame[9] = 0.25;
        frame[10] = f32::NAN;
        assert_eq!(frame_peak(&frame), 0.5);
        assert_eq!(frame_peak(&SILENCE), 0.0);
    }

    #[test]
    fn a_stored_device_id_selects_that_device() {
        assert_eq!(selection(None), DeviceSelection::SystemDefault);
        assert_eq!(
            selection(Some("alsa:hw:CARD=USB,DEV=0")),
            DeviceSelection::Id(DeviceId::new("alsa:hw:CARD=USB,DEV=0"))
        );
    }
}
