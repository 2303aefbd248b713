//! The audio thread: one tick per captured frame drives every leg's send and receive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use media::device::{
    AudioSink, AudioSource, CpalCapture, CpalPlayback, FRAME_DURATION, Frame, FrameSink,
    PacedSource, SILENCE, SilenceSource, WavFileSource, WavRecorder,
};
use media::dsp::CaptureProcessor;
use media::mixer::soft_limit;
use media::pipeline::MediaReceiver;
use media::sender::{MediaSender, SendMode};
use tokio::sync::{mpsc, watch};

use super::echo::{DEFAULT_RECORD, EchoRecorder};
use super::{CallMediaError, CallMediaStats, Command, LegId, LegStats, Shared, Sink, Source};

/// How long one wait for a captured frame may last before the thread checks its flags.
const WAIT: Duration = Duration::from_millis(25);
/// Without a captured frame for this long the thread ticks on its own clock (the source
/// stalled), so playback and the recording keep their timeline.
const STALL: Duration = Duration::from_millis(45);
/// The most late frames dropped after a stall (see `run`); a longer stall is a source
/// that stopped and started again, whose frames are not late.
const MAX_OWED_FRAMES: u32 = 5;
/// Ticks between updates of the encoder's expected loss (1 s).
const FEEDBACK_TICKS: u64 = 50;
/// Ticks between statistics snapshots (100 ms).
const STATS_TICKS: u64 = 5;

/// The microphone and the speaker of a call, as the audio thread uses them.
pub(super) struct Endpoints {
    source: Box<dyn AudioSource>,
    speaker: Speaker,
}

/// Where played frames go.
enum Speaker {
    /// A sound card on its own clock.
    Device(Box<dyn AudioSink>),
    /// A WAV file written by the audio thread itself, one frame per tick: the file's
    /// timeline is the call's, with no second clock (and no pacing thread) that could
    /// slip against it.
    Recorder(WavRecorder),
    /// Nowhere.
    Discard,
}

/// Opens the endpoints for a source and sink choice. The echo modes capture silence on
/// a paced clock and replace it with what they send.
pub(super) fn open_endpoints(source: &Source, sink: &Sink) -> Result<Endpoints, CallMediaError> {
    let source: Box<dyn AudioSource> = match source {
        Source::Device(selection) => Box::new(CpalCapture::open_or_lost(selection.clone())),
        Source::Wav(path) => Box::new(PacedSource::start(WavFileSource::open(path)?)?),
        Source::Silence | Source::Echo | Source::EchoRecord | Source::EchoRecordFor(_) => {
            Box::new(PacedSource::start(SilenceSource)?)
        }
    };
    let speaker = match sink {
        Sink::Device(selection) => {
            Speaker::Device(Box::new(CpalPlayback::open_or_lost(selection.clone())))
        }
        Sink::Wav(path) => Speaker::Recorder(WavRecorder::create(path)?),
        Sink::Discard => Speaker::Discard,
    };
    Ok(Endpoints { source, speaker })
}

impl Speaker {
    fn play(&mut self, frame: &Frame) {
        let result = match self {
            Speaker::Device(sink) => sink.write_frame(frame).map(|written| {
                if !written {
                    tracing::trace!("speaker buffer full; frame dropped");
                }
            }),
            Speaker::Recorder(recorder) => recorder.put_frame(frame),
            Speaker::Discard => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "playback failed");
        }
    }

    fn close(&mut self) {
        let result = match self {
            Speaker::Device(sink) => sink.close(),
            Speaker::Recorder(recorder) => recorder.finish(),
            Speaker::Discard => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "speaker or recording did not close cleanly");
        }
    }

    fn poll_event(&mut self) -> Option<media::device::DeviceEvent> {
        match self {
            Speaker::Device(sink) => sink.poll_event(),
            Speaker::Recorder(_) | Speaker::Discard => None,
        }
    }
}

/// One peer's send and receive halves and the channels to its path.
pub(super) struct Leg {
    sender: MediaSender,
    receiver: MediaReceiver,
    outgoing: mpsc::Sender<Vec<u8>>,
    incoming: std::sync::mpsc::Receiver<(Instant, Vec<u8>)>,
    queue_dropped: Arc<AtomicU64>,
    /// What this leg's jitter buffer played at the current tick.
    playout: Frame,
    sent: u64,
    send_dropped: u64,
    /// Frames the sender refused (encoder or sealing errors).
    send_failures: u64,
}

impl std::fmt::Debug for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leg")
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl Leg {
    pub(super) fn new(
        sender: MediaSender,
        receiver: MediaReceiver,
        outgoing: mpsc::Sender<Vec<u8>>,
        incoming: std::sync::mpsc::Receiver<(Instant, Vec<u8>)>,
        queue_dropped: Arc<AtomicU64>,
    ) -> Self {
        Self {
            sender,
            receiver,
            outgoing,
            incoming,
            queue_dropped,
            playout: SILENCE,
            sent: 0,
            send_dropped: 0,
            send_failures: 0,
        }
    }

    fn receive(&mut self) {
        while let Ok((arrived, datagram)) = self.incoming.try_recv() {
            // Rejections are counted by the receiver and shown in the statistics.
            if let Err(e) = self.receiver.handle_datagram(arrived, &datagram) {
                tracing::trace!(error = %e, "media datagram dropped");
            }
        }
    }

    fn flush(&mut self) {
        while let Some(datagram) = self.sender.poll_transmit() {
            match self.outgoing.try_send(datagram) {
                Ok(()) => self.sent += 1,
                // A full path queue means the path is slower than real time; a closed one
                // that the engine is tearing the call down. Either way the frame is gone.
                Err(_) => self.send_dropped += 1,
            }
        }
    }

    fn send(&mut self, now: Instant, frame: &Frame) {
        if let Err(e) = self.sender.handle_frame(now, frame) {
            // A persistent fault fails every frame (50 a second): log the 1st, 2nd, 4th, ...
            self.send_failures += 1;
            if self.send_failures.is_power_of_two() {
                tracing::warn!(error = %e, failures = self.send_failures, "media frame not sent");
            }
        }
        self.flush();
    }

    fn stats(&self) -> LegStats {
        let quality = self.receiver.quality();
        LegStats {
            packets_sent: self.sent,
            packets_send_dropped: self.send_dropped,
            packets_received: self.receiver.stats().received_packets(),
            packets_rejected: self.receiver.rejected_datagrams(),
            packets_queue_dropped: self.queue_dropped.load(Ordering::Relaxed),
            loss_pct: quality.loss_pct,
            jitter_millis: quality.jitter_millis,
            rtt_millis: quality.rtt_millis,
            mos: quality.mos,
            concealed_frames: quality.concealed_frames,
            recovered_frames: quality.recovered_frames,
            jitter_buffer_millis: quality.jitter_buffer_delay_millis,
            remote_on_hold: self.receiver.remote_on_hold(),
            jitter: self.receiver.jitter_counters(),
        }
    }
}

/// What the thread sends in place of the microphone.
enum Mode {
    Microphone,
    Echo,
    EchoRecord(Box<EchoRecorder>),
}

/// The audio thread's state.
pub(super) struct Worker {
    endpoints: Endpoints,
    mode: Mode,
    processor: CaptureProcessor,
    /// Frames the processor refused (sent unprocessed).
    capture_failures: u64,
    shared: Arc<Shared>,
    commands: std::sync::mpsc::Receiver<Command>,
    stats: watch::Sender<CallMediaStats>,
    started: Instant,
    legs: BTreeMap<LegId, Box<Leg>>,
    send_mode: SendMode,
    rtt_micros: u64,
    mic: Frame,
    speaker: Frame,
    total: Frame,
    scratch: Frame,
    ticks: u64,
}

impl Worker {
    pub(super) fn new(
        endpoints: Endpoints,
        (source, processor): (Source, CaptureProcessor),
        shared: Arc<Shared>,
        commands: std::sync::mpsc::Receiver<Command>,
        stats: watch::Sender<CallMediaStats>,
        started: Instant,
        first: (LegId, super::worker::Leg),
    ) -> Self {
        let mode = match source {
            Source::Echo => Mode::Echo,
            Source::EchoRecord => Mode::EchoRecord(Box::new(EchoRecorder::new(DEFAULT_RECORD))),
            Source::EchoRecordFor(record) => Mode::EchoRecord(Box::new(EchoRecorder::new(record))),
            Source::Device(_) | Source::Wav(_) | Source::Silence => Mode::Microphone,
        };
        Self {
            endpoints,
            mode,
            processor,
            capture_failures: 0,
            shared,
            commands,
            stats,
            started,
            legs: BTreeMap::from([(first.0, Box::new(first.1))]),
            send_mode: SendMode::Talking,
            rtt_micros: 0,
            mic: SILENCE,
            speaker: SILENCE,
            total: SILENCE,
            scratch: SILENCE,
            ticks: 0,
        }
    }

    /// Runs until the handle asks it to stop; returns the final figures once the sink is
    /// closed (a WAV recording is complete on disk by then).
    pub(super) fn run(mut self) -> CallMediaStats {
        let mut last_tick = Instant::now();
        // Frames whose slot already went out as silence during a stall: when the source
        // catches up, that many late frames are dropped, so the call stays on the wall
        // clock (a 20 ms gap) instead of running one frame late for the rest of the call.
        let mut owed: u32 = 0;
        let mut stalled_ticks: u32 = 0;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let captured = match self.endpoints.source.wait_frame(&mut self.mic, WAIT) {
                Ok(captured) => captured,
                Err(e) => {
                    tracing::warn!(error = %e, "capture failed; sending silence");
                    false
                }
            };
            let now = Instant::now();
            self.apply_commands(now);
            for leg in self.legs.values_mut() {
                leg.receive();
            }
            if captured && owed > 0 {
                owed -= 1;
                stalled_ticks = 0;
                last_tick = now;
            } else if captured || now.saturating_duration_since(last_tick) >= STALL {
                if captured {
                    stalled_ticks = 0;
                } else {
                    self.mic = SILENCE;
                    stalled_ticks = stalled_ticks.saturating_add(1);
                    owed = if stalled_ticks <= MAX_OWED_FRAMES {
                        owed + 1
                    } else {
                        0
                    };
                }
                self.tick(now);
                last_tick = if captured {
                    now
                } else {
                    last_tick + FRAME_DURATION
                };
            }
            for leg in self.legs.values_mut() {
                if leg.sender.poll_timeout().is_some_and(|t| t <= now)
                    && let Err(e) = leg.sender.handle_timeout(now)
                {
                    tracing::warn!(error = %e, "keep-alive not sent");
                }
                leg.flush();
            }
            self.log_device_events();
        }
        self.endpoints.speaker.close();
        let stats = self.snapshot();
        drop(self.endpoints);
        stats
    }

    fn apply_commands(&mut self, now: Instant) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::AddLeg(id, mut leg) => {
                    if let Err(e) = leg.sender.set_mode(now, self.send_mode) {
                        tracing::warn!(error = %e, "new leg could not take the call's mode");
                    }
                    leg.flush();
                    self.legs.insert(id, leg);
                }
                Command::RemoveLeg(id) => {
                    self.legs.remove(&id);
                }
            }
        }
        let mode = if self.shared.hold.load(Ordering::Relaxed) {
            SendMode::Hold
        } else if self.shared.muted.load(Ordering::Relaxed) {
            SendMode::Muted
        } else {
            SendMode::Talking
        };
        if mode != self.send_mode {
            self.send_mode = mode;
            for leg in self.legs.values_mut() {
                if let Err(e) = leg.sender.set_mode(now, mode) {
                    tracing::warn!(error = %e, "send mode not changed");
                }
                leg.flush();
            }
        }
        let noise_suppression = self.shared.noise_suppression.load(Ordering::Relaxed);
        if noise_suppression != self.processor.noise_suppression() {
            self.processor.set_noise_suppression(noise_suppression);
        }
        let echo_cancellation = self.shared.echo_cancellation.load(Ordering::Relaxed);
        if echo_cancellation != self.processor.echo_cancellation()
            && let Err(e) = self.processor.set_echo_cancellation(echo_cancellation)
        {
            tracing::warn!(error = %e, "echo cancellation not switched");
        }
        let rtt_micros = self.shared.rtt_micros.load(Ordering::Relaxed);
        if rtt_micros != self.rtt_micros {
            self.rtt_micros = rtt_micros;
            for leg in self.legs.values_mut() {
                leg.receiver.set_rtt(Duration::from_micros(rtt_micros));
            }
        }
    }

    /// One 20 ms frame: play what every leg received, then send to every leg.
    fn tick(&mut self, now: Instant) {
        for leg in self.legs.values_mut() {
            leg.playout = leg.receiver.poll_frame(now).samples;
        }
        self.mix_speaker();
        if let Mode::EchoRecord(recorder) = &mut self.mode {
            recorder.next_frame(&self.speaker, &mut self.mic);
        }
        if self.send_mode == SendMode::Hold {
            // Nothing of the peers reaches the speaker while this side holds the call.
            self.speaker = SILENCE;
        }
        self.endpoints.speaker.play(&self.speaker);
        self.record_levels();
        if matches!(self.mode, Mode::Microphone) {
            self.clean_microphone();
        }
        self.send_all(now);
        self.ticks += 1;
        if self.ticks.is_multiple_of(FEEDBACK_TICKS) {
            for leg in self.legs.values_mut() {
                // No receiver reports: the loss we see is taken as the loss the peer sees.
                let loss = leg
                    .receiver
                    .take_interval_loss_pct()
                    .ceil()
                    .clamp(0.0, 100.0);
                if let Err(e) = leg.sender.set_expected_loss_pct(loss as u8) {
                    tracing::debug!(error = %e, "expected loss not set");
                }
            }
        }
        if self.ticks.is_multiple_of(STATS_TICKS) {
            let snapshot = self.snapshot();
            self.stats.send_replace(snapshot);
        }
    }

    /// Echo cancellation against this tick's speaker frame, then noise suppression.
    fn clean_microphone(&mut self) {
        if let Err(e) = clean_frame(&mut self.processor, &self.speaker, &mut self.mic) {
            self.capture_failures += 1;
            if self.capture_failures.is_power_of_two() {
                tracing::warn!(error = %e, failures = self.capture_failures, "capture processing failed");
            }
        }
    }

    /// Keeps the loudest microphone and speaker sample for the level meters.
    fn record_levels(&self) {
        let peak = |frame: &Frame| frame.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        let (input, output) = (peak(&self.mic), peak(&self.speaker));
        // NaN never reaches the meters: its bits would order above every level.
        if input.is_finite() {
            self.shared
                .input_peak_bits
                .fetch_max(input.to_bits(), Ordering::Relaxed);
        }
        if output.is_finite() {
            self.shared
                .output_peak_bits
                .fetch_max(output.to_bits(), Ordering::Relaxed);
        }
    }

    /// The speaker hears every leg, through the limiter when there are several.
    fn mix_speaker(&mut self) {
        let mut legs = self.legs.values();
        match (legs.next(), legs.next()) {
            (None, _) => self.speaker = SILENCE,
            (Some(only), None) => self.speaker = only.playout,
            _ => {
                self.speaker = SILENCE;
                for leg in self.legs.values() {
                    for (s, p) in self.speaker.iter_mut().zip(&leg.playout) {
                        *s += p;
                    }
                }
                for s in &mut self.speaker {
                    *s = soft_limit(*s);
                }
            }
        }
    }

    /// Each leg gets the microphone plus every other leg (mix-minus); in echo mode, its
    /// own audio back.
    fn send_all(&mut self, now: Instant) {
        if matches!(self.mode, Mode::Echo) {
            for leg in self.legs.values_mut() {
                let heard = leg.playout;
                leg.send(now, &heard);
            }
            return;
        }
        if self.legs.len() <= 1 {
            for leg in self.legs.values_mut() {
                leg.send(now, &self.mic);
            }
            return;
        }
        self.total = self.mic;
        for leg in self.legs.values() {
            for (t, p) in self.total.iter_mut().zip(&leg.playout) {
                *t += p;
            }
        }
        for leg in self.legs.values_mut() {
            for ((out, t), own) in self.scratch.iter_mut().zip(&self.total).zip(&leg.playout) {
                *out = soft_limit(t - own);
            }
            leg.send(now, &self.scratch);
        }
    }

    fn snapshot(&self) -> CallMediaStats {
        CallMediaStats {
            duration: self.started.elapsed(),
            legs: self
                .legs
                .iter()
                .map(|(id, leg)| (*id, leg.stats()))
                .collect(),
            ticks: self.ticks,
        }
    }

    fn log_device_events(&mut self) {
        while let Some(event) = self.endpoints.source.poll_event() {
            tracing::info!(?event, "microphone changed");
        }
        while let Some(event) = self.endpoints.speaker.poll_event() {
            tracing::info!(?event, "speaker changed");
        }
    }
}

/// One tick of capture processing: the speaker frame of this tick is the echo reference
/// of the microphone frame captured in it.
fn clean_frame(
    processor: &mut CaptureProcessor,
    speaker: &Frame,
    mic: &mut Frame,
) -> Result<(), media::dsp::EchoError> {
    processor.handle_render_frame(speaker);
    processor.process_capture_frame(mic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::device::{FRAME_SAMPLES, FrameSource, WavFileSource};

    fn energy(frames: &[Frame]) -> f64 {
        let sum: f64 = frames
            .iter()
            .flat_map(|f| f.iter())
            .map(|s| f64::from(*s).powi(2))
            .sum();
        sum / (frames.len() * FRAME_SAMPLES) as f64
    }

    /// The microphone picks up the speaker 60 ms later at half amplitude (a laptop
    /// without a headset); returns the echo energy sent in the last second, in dB.
    fn echo_sent_db(echo_cancellation: bool) -> f64 {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../media/tests/data/speech_48k.wav");
        let mut far = WavFileSource::open(&path).expect("speech sample");
        let mut processor =
            CaptureProcessor::new(echo_cancellation, false).expect("capture processor");
        let delay_frames = 3;
        let mut played: Vec<Frame> = Vec::new();
        let mut sent: Vec<Frame> = Vec::new();
        for tick in 0..250 {
            let mut speaker = SILENCE;
            far.next_frame(&mut speaker);
            played.push(speaker);
            let mut mic = SILENCE;
            if tick >= delay_frames {
                for (m, s) in mic.iter_mut().zip(&played[tick - delay_frames]) {
                    *m = 0.5 * s;
                }
            }
            clean_frame(&mut processor, &speaker, &mut mic).expect("processed");
            sent.push(mic);
        }
        let tail = &sent[sent.len() - 50..];
        let reference: Vec<Frame> = played
            [played.len() - 50 - delay_frames..played.len() - delay_frames]
            .iter()
            .map(|f| f.map(|s| 0.5 * s))
            .collect();
        assert!(energy(&reference) > 1e-5, "the last second has speech");
        10.0 * (energy(tail) / energy(&reference)).log10()
    }

    #[test]
    fn echo_cancellation_removes_the_speaker_from_the_microphone() {
        let off_db = echo_sent_db(false);
        let on_db = echo_sent_db(true);
        eprintln!("echo sent: {off_db:.1} dB without cancellation, {on_db:.1} dB with");
        assert!(
            off_db > -1.0,
            "without cancellation the echo goes out ({off_db:.1} dB)"
        );
        assert!(on_db < -10.0, "cancellation left the echo at {on_db:.1} dB");
    }
}
