//! A call's audio in real time: capture → Opus → seal → path, and path → open → jitter
//! buffer → decode → speaker, for one peer or (conference host) up to four.
//!
//! [`CallMedia::start`] opens the audio endpoints ([`Source`], [`Sink`]: sound cards with
//! failover, WAV files paced in real time, silence, or the echo-test modes) and runs the
//! call on one dedicated audio thread, paced by the capture clock: every 20 ms frame the
//! microphone delivers is encoded and sent on every leg, and one frame per leg is taken
//! from its jitter buffer and played. Datagrams from the path are stamped with their
//! arrival time by a small tokio task and handed to the audio thread, so jitter and the
//! jitter buffer's delay estimate see real arrival times.
//!
//! The media crate does the work: [`media::sender::MediaSender`] (encoding, no silence
//! suppression, keep-alive every 3 s on hold, silence frames when muted, sealing),
//! [`media::pipeline::MediaReceiver`] (opening with a replay window, statistics,
//! adaptive jitter buffer with FEC, DRED and concealment) and [`media::mixer`] (the soft
//! limiter of the conference mix). This module is only the shell: threads, channels,
//! endpoints and the conference mix.
//!
//! Each direction has its own key ([`MediaKeys`]); which of the two nonce spaces a side
//! sends in follows from the order of the two keys, so the two sides agree without being
//! told who dialled. The session id (the handshake's transcript hash) binds every packet
//! to this call.
//!
//! The encoder's expected loss (which sizes in-band FEC) follows the loss this side
//! measures on the reverse direction: the packet format has no receiver reports, so the
//! path is assumed symmetric. For the same reason the round-trip time is an input
//! ([`CallMedia::set_rtt`], from the path layer).
//!
//! Capture processing ([`CaptureOptions`]): each captured frame goes through
//! [`media::dsp::CaptureProcessor`] (AEC3 echo cancellation, then RNNoise noise
//! suppression) on the audio thread before it is encoded; the echo canceller's far-end
//! reference is the frame handed to the speaker in the same tick. Both stages are on by
//! default for sound-card microphones and off for WAV, silence and echo sources, whose
//! audio must arrive unchanged; [`CallMedia::set_capture`] switches them during a call.
//! The processor is built before the thread starts; per frame it only computes.
//!
//! Not here: signalling, key agreement, the path itself (the engine passes datagram
//! channels).

mod echo;
mod worker;

pub use echo::{DEFAULT_RECORD, MAX_RECORD};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use media::codec::{CodecError, DecoderConfig, EncoderConfig};
use media::device::{DeviceError, DeviceSelection};
use media::jitter::JitterConfig;
use media::mixer::MAX_PARTICIPANTS;
use media::secure::Direction;
use media::sender::SenderConfig;
use proto::peer::MediaParams;
use tokio::sync::{mpsc, oneshot, watch};

use crate::events::CallStats;

/// Legs one call carries at most: the host plus four others is a full conference.
pub const MAX_LEGS: usize = MAX_PARTICIPANTS - 1;
/// Datagrams from the path waiting for the audio thread, per leg (5 s of audio).
const INCOMING_QUEUE: usize = 256;

/// The keys of one leg's media, from the call handshake.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaKeys {
    /// Encrypts what this side sends.
    pub send_key: [u8; 32],
    /// Decrypts what this side receives.
    pub recv_key: [u8; 32],
    /// Both sides hold the same value (the handshake transcript hash); it is the
    /// associated data that ties packets to this call.
    pub session_id: [u8; 32],
}

impl std::fmt::Debug for MediaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaKeys").finish_non_exhaustive()
    }
}

impl From<&proto::e2e::SessionKeys> for MediaKeys {
    fn from(keys: &proto::e2e::SessionKeys) -> Self {
        Self {
            send_key: *keys.send_key,
            recv_key: *keys.recv_key,
            session_id: keys.transcript_hash,
        }
    }
}

impl MediaKeys {
    /// The nonce spaces of (sending, receiving). The side whose send key sorts first
    /// sends as "caller"; both sides compute the same split.
    fn directions(&self) -> Result<(Direction, Direction), CallMediaError> {
        match self.send_key.cmp(&self.recv_key) {
            std::cmp::Ordering::Less => Ok((Direction::CallerToCallee, Direction::CalleeToCaller)),
            std::cmp::Ordering::Greater => {
                Ok((Direction::CalleeToCaller, Direction::CallerToCallee))
            }
            // Equal keys would make both sides seal in one nonce space under one key.
            std::cmp::Ordering::Equal => Err(CallMediaError::EqualKeys),
        }
    }
}

/// Where the microphone signal comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A sound card: the chosen one, or the system default (also when the chosen one
    /// fails), following the default when it changes or fails.
    Device(DeviceSelection),
    /// A WAV file (PCM 16-bit or float, any rate and channel count) paced in real time;
    /// silence after its end.
    Wav(PathBuf),
    /// Silence in real time.
    Silence,
    /// The echo test account, live mode: every leg gets back what it sends.
    Echo,
    /// The echo test account, record mode: a beep, 8 s ([`DEFAULT_RECORD`], what the CLI's
    /// echo account uses) recorded, played back, repeated.
    EchoRecord,
    /// The record mode with a chosen record (and playback) length, whole 20 ms frames,
    /// 20 ms to [`MAX_RECORD`]: tests exercise the mechanism without waiting 8 s twice.
    EchoRecordFor(Duration),
}

/// Which cleaning stages run on each captured frame before it is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureOptions {
    /// RNNoise noise suppression (adds 10 ms of delay while on).
    pub noise_suppression: bool,
    /// AEC3 echo cancellation against what the speaker plays.
    pub echo_cancellation: bool,
}

impl CaptureOptions {
    /// Both stages on.
    pub const ON: CaptureOptions = CaptureOptions {
        noise_suppression: true,
        echo_cancellation: true,
    };
    /// The captured audio is sent as it is.
    pub const OFF: CaptureOptions = CaptureOptions {
        noise_suppression: false,
        echo_cancellation: false,
    };

    /// On for a sound card (a room, maybe without a headset), off for files, silence
    /// and the echo modes (their audio must arrive unchanged).
    pub fn default_for(source: &Source) -> CaptureOptions {
        match source {
            Source::Device(_) => CaptureOptions::ON,
            Source::Wav(_)
            | Source::Silence
            | Source::Echo
            | Source::EchoRecord
            | Source::EchoRecordFor(_) => CaptureOptions::OFF,
        }
    }
}

/// Where the speaker signal goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// A sound card: the chosen one, or the system default (also when the chosen one
    /// fails), following the default when it changes or fails.
    Device(DeviceSelection),
    /// What the speaker would play, as 48 kHz mono 16-bit WAV, one frame per 20 ms of
    /// the call (silence or concealment when nothing arrived). The audio thread writes
    /// it at each capture tick, so the file's timeline is the call's own.
    Wav(PathBuf),
    /// Nowhere, in real time.
    Discard,
}

/// One leg: the keys, the media parameters and the path's datagram channels.
#[derive(Debug)]
pub struct LegConfig {
    /// The leg's keys.
    pub keys: MediaKeys,
    /// What this side proposes or accepted.
    pub local_params: MediaParams,
    /// What the peer proposed or accepted.
    pub remote_params: MediaParams,
    /// Sealed media packets for the path.
    pub outgoing: mpsc::Sender<Vec<u8>>,
    /// Datagrams from the path.
    pub incoming: mpsc::Receiver<Vec<u8>>,
}

/// Everything [`CallMedia::start`] needs.
#[derive(Debug)]
pub struct CallMediaConfig {
    /// The first (usually only) leg.
    pub leg: LegConfig,
    /// The microphone.
    pub source: Source,
    /// The speaker.
    pub sink: Sink,
    /// Capture processing; `None`: [`CaptureOptions::default_for`] the source.
    pub capture: Option<CaptureOptions>,
}

impl CallMediaConfig {
    /// A call with one peer, both sides using `params`.
    pub fn new(
        keys: MediaKeys,
        params: MediaParams,
        source: Source,
        sink: Sink,
        outgoing: mpsc::Sender<Vec<u8>>,
        incoming: mpsc::Receiver<Vec<u8>>,
    ) -> Self {
        Self {
            leg: LegConfig {
                keys,
                local_params: params,
                remote_params: params,
                outgoing,
                incoming,
            },
            source,
            sink,
            capture: None,
        }
    }

    /// The same call with these capture processing stages.
    pub fn with_capture(mut self, capture: CaptureOptions) -> Self {
        self.capture = Some(capture);
        self
    }
}

/// Why call media could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum CallMediaError {
    /// The parameters ask for something this pipeline does not do.
    #[error("unsupported media parameters: {0}")]
    Unsupported(String),
    /// Send and receive keys are equal (a broken key agreement).
    #[error("send and receive keys are equal")]
    EqualKeys,
    /// The codec could not be set up.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// A device or WAV file could not be opened.
    #[error("audio: {0}")]
    Device(#[from] DeviceError),
    /// Not called from within a tokio runtime.
    #[error("call media needs a tokio runtime")]
    NoRuntime,
    /// The audio thread could not be started, or is gone.
    #[error("audio thread: {0}")]
    Thread(String),
    /// The capture processing (echo canceller) could not be set up.
    #[error("capture processing: {0}")]
    Capture(#[from] media::dsp::EchoError),
    /// A conference carries at most [`MAX_LEGS`] legs.
    #[error("a call carries at most {MAX_LEGS} legs")]
    TooManyLegs,
}

/// Identifies one leg of a call (the first one is `LegId(1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LegId(pub u32);

/// One leg's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LegStats {
    /// Datagrams handed to the path.
    pub packets_sent: u64,
    /// Datagrams dropped because the path's queue was full.
    pub packets_send_dropped: u64,
    /// Authenticated packets received (keep-alives included).
    pub packets_received: u64,
    /// Datagrams dropped as corrupt, forged, foreign or replayed.
    pub packets_rejected: u64,
    /// Datagrams dropped because the audio thread's queue was full.
    pub packets_queue_dropped: u64,
    /// Cumulative loss of the received stream.
    pub loss_pct: f64,
    /// RFC 3550 interarrival jitter.
    pub jitter_millis: f64,
    /// The last round-trip time set, if any.
    pub rtt_millis: Option<f64>,
    /// E-model MOS estimate of what this side hears.
    pub mos: f64,
    /// Frames concealed.
    pub concealed_frames: u64,
    /// Frames rebuilt from FEC or DRED.
    pub recovered_frames: u64,
    /// Audio waiting in the jitter buffer.
    pub jitter_buffer_millis: u64,
    /// Whether the peer holds the call.
    pub remote_on_hold: bool,
    /// How the jitter buffer made each frame (decoded, recovered, concealed, dropped,
    /// inserted) and what it refused (late, duplicate).
    pub jitter: media::jitter::JitterCounters,
}

/// The whole call's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallMediaStats {
    /// Time since [`CallMedia::start`].
    pub duration: Duration,
    /// Per leg.
    pub legs: BTreeMap<LegId, LegStats>,
    /// Capture frames the audio thread processed.
    pub ticks: u64,
}

impl CallMediaStats {
    /// The CONTRACT `call_ended.stats` shape: counts summed over legs, quality of the
    /// worst leg.
    pub fn summary(&self) -> CallStats {
        let legs = self.legs.values();
        let worst_mos = legs.clone().map(|l| l.mos).reduce(f64::min).unwrap_or(0.0);
        CallStats {
            duration_s: self.duration.as_secs_f64(),
            packets_sent: legs.clone().map(|l| l.packets_sent).sum(),
            packets_received: legs.clone().map(|l| l.packets_received).sum(),
            loss_pct: legs.clone().map(|l| l.loss_pct).fold(0.0, f64::max),
            jitter_ms: legs.clone().map(|l| l.jitter_millis).fold(0.0, f64::max),
            rtt_ms: legs
                .clone()
                .filter_map(|l| l.rtt_millis)
                .fold(0.0, f64::max),
            mos: worst_mos,
        }
    }
}

/// Commands for the audio thread that carry more than a flag.
enum Command {
    AddLeg(LegId, Box<worker::Leg>),
    RemoveLeg(LegId),
}

/// Flags the audio thread reads every tick.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    hold: AtomicBool,
    muted: AtomicBool,
    /// Round-trip time in microseconds; 0 = unknown.
    rtt_micros: AtomicU64,
    /// Loudest microphone and speaker sample since the last [`CallMedia::take_levels`], as
    /// `f32` bits: for non-negative floats the bit patterns order like the values, so
    /// `fetch_max` keeps the peak without a lock.
    input_peak_bits: AtomicU32,
    output_peak_bits: AtomicU32,
    /// The wanted capture processing stages (the thread switches its processor to match).
    noise_suppression: AtomicBool,
    echo_cancellation: AtomicBool,
}

/// Peak levels (0.0 = silence, 1.0 = full scale) for level meters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AudioLevels {
    /// What the microphone picked up (also while muted or held).
    pub input_peak: f32,
    /// What went to the speaker.
    pub output_peak: f32,
}

/// A running call's audio. Dropping it stops the audio thread (use [`CallMedia::stop`]
/// to wait for the recording to be flushed and get the final figures).
#[derive(Debug)]
pub struct CallMedia {
    shared: Arc<Shared>,
    commands: std::sync::mpsc::SyncSender<Command>,
    stats: watch::Receiver<CallMediaStats>,
    done: Option<oneshot::Receiver<CallMediaStats>>,
    forwarders: BTreeMap<LegId, tokio::task::JoinHandle<()>>,
    next_leg: u32,
    started: Instant,
}

impl CallMedia {
    /// Opens the endpoints and starts the call's audio thread. Must be called within a
    /// tokio runtime (a task reads the incoming channel).
    pub fn start(config: CallMediaConfig) -> Result<CallMedia, CallMediaError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| CallMediaError::NoRuntime)?;
        let started = Instant::now();
        let (leg, forwarder) = prepare_leg(&runtime, config.leg)?;
        let endpoints = worker::open_endpoints(&config.source, &config.sink)?;
        let capture = config
            .capture
            .unwrap_or_else(|| CaptureOptions::default_for(&config.source));
        let shared = Arc::new(Shared::default());
        shared
            .noise_suppression
            .store(capture.noise_suppression, Ordering::Relaxed);
        shared
            .echo_cancellation
            .store(capture.echo_cancellation, Ordering::Relaxed);
        let (commands, command_rx) = std::sync::mpsc::sync_channel(MAX_LEGS * 2);
        let (stats_tx, stats) = watch::channel(CallMediaStats::default());
        let (done_tx, done) = oneshot::channel();
        let first = LegId(1);
        let (ready_tx, ready) = std::sync::mpsc::sync_channel(1);
        let thread_shared = shared.clone();
        let source = config.source;
        std::thread::Builder::new()
            .name("call-media".into())
            .spawn(move || {
                // AEC3 is not `Send`: the processor lives and dies on the audio thread.
                let processor = match media::dsp::CaptureProcessor::new(
                    capture.echo_cancellation,
                    capture.noise_suppression,
                ) {
                    Ok(processor) => processor,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let worker = worker::Worker::new(
                    endpoints,
                    (source, processor),
                    thread_shared,
                    command_rx,
                    stats_tx,
                    started,
                    (first, leg),
                );
                let final_stats = worker.run();
                let _ = done_tx.send(final_stats);
            })
            .map_err(|e| {
                forwarder.abort();
                CallMediaError::Thread(e.to_string())
            })?;
        let started_ok = ready
            .recv()
            .map_err(|_| CallMediaError::Thread("the audio thread ended at start".into()))
            .and_then(|built| built.map_err(CallMediaError::from));
        if let Err(e) = started_ok {
            forwarder.abort();
            return Err(e);
        }
        Ok(CallMedia {
            shared,
            commands,
            stats,
            done: Some(done),
            forwarders: BTreeMap::from([(first, forwarder)]),
            next_leg: 2,
            started,
        })
    }

    /// Puts the call on hold (no audio either way; one keep-alive every 3 s) or resumes.
    pub fn set_hold(&self, hold: bool) {
        self.shared.hold.store(hold, Ordering::Relaxed);
    }

    /// Mutes the microphone (silence frames keep flowing at 50 packets/s) or unmutes.
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    /// Switches capture processing during the call (applied from the next frame).
    pub fn set_capture(&self, capture: CaptureOptions) {
        self.shared
            .noise_suppression
            .store(capture.noise_suppression, Ordering::Relaxed);
        self.shared
            .echo_cancellation
            .store(capture.echo_cancellation, Ordering::Relaxed);
    }

    /// The round-trip time of the path, for the quality estimate.
    pub fn set_rtt(&self, rtt: Duration) {
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        self.shared.rtt_micros.store(micros, Ordering::Relaxed);
    }

    /// The peak levels since the last call (for level meters; resets them).
    pub fn take_levels(&self) -> AudioLevels {
        let take = |bits: &AtomicU32| f32::from_bits(bits.swap(0, Ordering::Relaxed)).min(1.0);
        AudioLevels {
            input_peak: take(&self.shared.input_peak_bits),
            output_peak: take(&self.shared.output_peak_bits),
        }
    }

    /// Adds a conference leg: the microphone goes to every leg, and each leg hears the
    /// mix of the microphone and the other legs.
    pub fn add_leg(&mut self, leg: LegConfig) -> Result<LegId, CallMediaError> {
        if self.forwarders.len() >= MAX_LEGS {
            return Err(CallMediaError::TooManyLegs);
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| CallMediaError::NoRuntime)?;
        let (leg, forwarder) = prepare_leg(&runtime, leg)?;
        let id = LegId(self.next_leg);
        if self
            .commands
            .try_send(Command::AddLeg(id, Box::new(leg)))
            .is_err()
        {
            forwarder.abort();
            return Err(CallMediaError::Thread("the audio thread is gone".into()));
        }
        self.next_leg += 1;
        self.forwarders.insert(id, forwarder);
        Ok(id)
    }

    /// Removes a conference leg (a participant left). Unknown ids are ignored.
    pub fn remove_leg(&mut self, id: LegId) {
        if let Some(forwarder) = self.forwarders.remove(&id) {
            forwarder.abort();
            // A full queue means the thread is gone or stalled; the leg then dies with it.
            let _ = self.commands.try_send(Command::RemoveLeg(id));
        }
    }

    /// The figures so far, per leg.
    pub fn detailed_stats(&self) -> CallMediaStats {
        let mut stats = self.stats.borrow().clone();
        stats.duration = self.started.elapsed();
        stats
    }

    /// The figures so far, in the CONTRACT `call_ended.stats` shape.
    pub fn stats(&self) -> CallStats {
        self.detailed_stats().summary()
    }

    /// Stops the audio, flushes the recording and returns the final figures.
    pub async fn stop(mut self) -> CallStats {
        self.stop_detailed().await.summary()
    }

    /// Like [`CallMedia::stop`], with the per-leg figures.
    pub async fn stop_detailed(&mut self) -> CallMediaStats {
        self.shared.stop.store(true, Ordering::Relaxed);
        for forwarder in self.forwarders.values() {
            forwarder.abort();
        }
        let final_stats = match self.done.take() {
            Some(done) => done.await.ok(),
            None => None,
        };
        final_stats.unwrap_or_else(|| self.detailed_stats())
    }
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for forwarder in self.forwarders.values() {
            forwarder.abort();
        }
    }
}

/// Builds a leg's sender and receiver and starts the task that stamps its datagrams.
fn prepare_leg(
    runtime: &tokio::runtime::Handle,
    config: LegConfig,
) -> Result<(worker::Leg, tokio::task::JoinHandle<()>), CallMediaError> {
    let (send_direction, recv_direction) = config.keys.directions()?;
    let (sender_config, jitter_config) = media_configs(config.local_params, config.remote_params)?;
    let sender = media::sender::MediaSender::new(
        sender_config,
        config.keys.send_key,
        &config.keys.session_id,
        send_direction,
    )?;
    let receiver = media::pipeline::MediaReceiver::new(
        jitter_config,
        config.keys.recv_key,
        &config.keys.session_id,
        recv_direction,
    )?;
    let (stamped_tx, stamped_rx) = std::sync::mpsc::sync_channel(INCOMING_QUEUE);
    let queue_dropped = Arc::new(AtomicU64::new(0));
    let forwarder = runtime.spawn(forward_incoming(
        config.incoming,
        stamped_tx,
        queue_dropped.clone(),
    ));
    Ok((
        worker::Leg::new(sender, receiver, config.outgoing, stamped_rx, queue_dropped),
        forwarder,
    ))
}

/// Stamps each datagram with its arrival time for the audio thread.
async fn forward_incoming(
    mut incoming: mpsc::Receiver<Vec<u8>>,
    stamped: std::sync::mpsc::SyncSender<(Instant, Vec<u8>)>,
    queue_dropped: Arc<AtomicU64>,
) {
    while let Some(datagram) = incoming.recv().await {
        match stamped.try_send((Instant::now(), datagram)) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                queue_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
        }
    }
}

/// The sender and jitter-buffer settings both sides' parameters allow.
fn media_configs(
    local: MediaParams,
    remote: MediaParams,
) -> Result<(SenderConfig, JitterConfig), CallMediaError> {
    for params in [local, remote] {
        if params.frame_millis != 20 {
            return Err(CallMediaError::Unsupported(format!(
                "{} ms frames (only 20 ms)",
                params.frame_millis
            )));
        }
    }
    let bitrate_bps = local
        .bitrate_bps
        .min(remote.bitrate_bps)
        .clamp(6_000, 128_000);
    let sender = SenderConfig {
        encoder: EncoderConfig {
            bitrate_bps,
            fec: local.fec && remote.fec,
            // When both sides decode DRED, sending it follows the codec's defaults: only
            // while the measured loss stays high (about 15 % and up), where it rebuilds
            // bursts FEC cannot and lifts PESQ at 20 % loss (docs/bench/media.md).
            dred_duration_10ms: if local.dred && remote.dred {
                EncoderConfig::default().dred_duration_10ms
            } else {
                0
            },
            ..EncoderConfig::default()
        },
        ..SenderConfig::default()
    };
    let jitter = JitterConfig {
        // Real-time arrivals always spread a little, which makes the buffer's target two
        // frames within the first second anyway; starting there keeps the first talk
        // spurt from being stretched by a frame mid-word.
        min_frames: 2,
        // Capture and playout run on two machines' clocks whose 20 ms grids may line up
        // with the packets' arrival: a one-tick dip in the level is not a reason to
        // stretch the timeline.
        insert_after_ticks: 3,
        decoder: DecoderConfig {
            dred: remote.dred && DecoderConfig::default().dred,
            ..DecoderConfig::default()
        },
        ..JitterConfig::default()
    };
    Ok((sender, jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(send: u8, recv: u8) -> MediaKeys {
        MediaKeys {
            send_key: [send; 32],
            recv_key: [recv; 32],
            session_id: [0; 32],
        }
    }

    #[test]
    fn both_sides_pick_opposite_nonce_spaces() {
        let (a_send, a_recv) = keys(1, 2).directions().expect("distinct keys");
        let (b_send, b_recv) = keys(2, 1).directions().expect("distinct keys");
        assert_eq!(a_send, b_recv);
        assert_eq!(b_send, a_recv);
        assert_ne!(a_send, b_send);
        assert!(matches!(
            keys(3, 3).directions(),
            Err(CallMediaError::EqualKeys)
        ));
    }

    #[test]
    fn parameters_other_than_twenty_ms_frames_are_refused() {
        let ten_ms = MediaParams {
            frame_millis: 10,
            ..MediaParams::default()
        };
        assert!(matches!(
            media_configs(MediaParams::default(), ten_ms),
            Err(CallMediaError::Unsupported(_))
        ));
        let (sender, _) = media_configs(
            MediaParams {
                bitrate_bps: 40_000,
                ..MediaParams::default()
            },
            MediaParams {
                bitrate_bps: 24_000,
                fec: false,
                ..MediaParams::default()
            },
        )
        .expect("20 ms frames");
        assert_eq!(sender.encoder.bitrate_bps, 24_000, "the lower bitrate wins");
        assert!(!sender.encoder.fec, "FEC only when both sides want it");
    }

    #[test]
    fn starting_outside_a_runtime_is_an_error() {
        let (outgoing, _out_rx) = mpsc::channel(1);
        let (_in_tx, incoming) = mpsc::channel(1);
        let config = CallMediaConfig::new(
            keys(1, 2),
            MediaParams::default(),
            Source::Silence,
            Sink::Discard,
            outgoing,
            incoming,
        );
        assert!(matches!(
            CallMedia::start(config),
            Err(CallMediaError::NoRuntime)
        ));
    }

    #[test]
    fn the_summary_sums_counts_and_takes_the_worst_quality() {
        let leg = |sent, loss_pct, mos| LegStats {
            packets_sent: sent,
            packets_received: sent / 2,
            loss_pct,
            jitter_millis: loss_pct,
            rtt_millis: Some(loss_pct * 10.0),
            mos,
            ..LegStats::default()
        };
        let stats = CallMediaStats {
            duration: Duration::from_millis(2_500),
            legs: BTreeMap::from([
                (LegId(1), leg(100, 1.0, 4.2)),
                (LegId(2), leg(50, 3.0, 3.9)),
            ]),
            ticks: 125,
        };
        let summary = stats.summary();
        assert_eq!(summary.duration_s, 2.5);
        assert_eq!(summary.packets_sent, 150);
        assert_eq!(summary.packets_received, 75);
        assert_eq!(summary.loss_pct, 3.0);
        assert_eq!(summary.rtt_ms, 30.0);
        assert_eq!(summary.mos, 3.9);
    }
}
