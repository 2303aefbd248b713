//! The receive half of a call, and an offline simulation of a whole one-way call.
//!
//! [`MediaReceiver`] composes [`PacketOpener`] → [`ReceiveStats`] → [`JitterBuffer`]
//! (which owns the decoder); [`crate::sender::MediaSender`] is the send half. Together:
//! encoder → packetizer → seal → network → open → jitter buffer → decoder.
//!
//! [`simulate`] runs that chain over a whole PCM signal on virtual time through any
//! [`Channel`] (a loss mask, the `netsim` impairment model, or a perfect link), feeding
//! the measured loss back to the encoder every [`SimConfig::feedback_frames`] frames as the
//! calls layer would. Tests and benchmarks use it; calls never do.

use std::time::{Duration, Instant};

use crate::codec::{CodecError, FRAME_SAMPLES};
use crate::jitter::{FRAME_DURATION, JitterBuffer, JitterConfig, JitterCounters, PlayoutFrame};
use crate::secure::{Direction, OpenError, PacketOpener};
use crate::sender::{MediaSender, SendError, SenderConfig};
use crate::stats::{CallQuality, ReceiveStats};

/// The receive half of a call (see the module docs).
#[derive(Debug)]
pub struct MediaReceiver {
    opener: PacketOpener,
    stats: ReceiveStats,
    jitter: JitterBuffer,
    rejected: u64,
}

impl MediaReceiver {
    /// A receiver for packets travelling in `direction` of call `call_id` under `key`.
    pub fn new(
        config: JitterConfig,
        key: [u8; 32],
        call_id: &[u8],
        direction: Direction,
    ) -> Result<Self, CodecError> {
        Ok(Self {
            opener: PacketOpener::new(key, call_id, direction),
            stats: ReceiveStats::new(),
            jitter: JitterBuffer::new(config)?,
            rejected: 0,
        })
    }

    /// Feeds one datagram. Malformed, forged, tampered and replayed packets are dropped
    /// and reported; they never reach the jitter buffer or the statistics.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) -> Result<(), OpenError> {
        match self.opener.open(bytes) {
            Ok(packet) => {
                self.stats.handle_packet(now, &packet.header);
                self.jitter.handle_packet(now, packet);
                Ok(())
            }
            Err(e) => {
                self.rejected += 1;
                Err(e)
            }
        }
    }

    /// The frame for the playout tick at `now` (call every 20 ms).
    pub fn poll_frame(&mut self, now: Instant) -> PlayoutFrame {
        self.jitter.poll_frame(now)
    }

    /// Records a round-trip time measurement for the quality estimate.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.stats.set_rtt(rtt);
    }

    /// Loss since the last call, for the peer's encoder.
    pub fn take_interval_loss_pct(&mut self) -> f64 {
        self.stats.take_interval_loss_pct()
    }

    /// Whether the peer is holding the call.
    pub fn remote_on_hold(&self) -> bool {
        self.jitter.remote_on_hold()
    }

    /// Datagrams dropped by [`MediaReceiver::handle_datagram`].
    pub fn rejected_datagrams(&self) -> u64 {
        self.rejected
    }

    /// Raw statistics.
    pub fn stats(&self) -> &ReceiveStats {
        &self.stats
    }

    /// Jitter buffer counters.
    pub fn jitter_counters(&self) -> JitterCounters {
        self.jitter.counters()
    }

    /// The jitter buffer's current target level in frames.
    pub fn jitter_target_frames(&self) -> u32 {
        self.jitter.target_frames()
    }

    /// The call-quality summary for the UI.
    pub fn quality(&self) -> CallQuality {
        CallQuality::from_parts(
            &self.stats,
            &self.jitter.counters(),
            self.jitter.buffered_millis(),
        )
    }
}

/// A one-way network for [`simulate`].
pub trait Channel {
    /// A datagram enters the network at `now`.
    fn send(&mut self, now: Instant, datagram: Vec<u8>);
    /// A datagram that has arrived by `now`, if any.
    fn poll_receive(&mut self, now: Instant) -> Option<Vec<u8>>;
}

/// A link that delivers everything at once, except the packets a mask marks lost.
#[derive(Debug, Clone, Default)]
pub struct MaskChannel {
    /// `lost[i]` drops the i-th datagram sent; beyond the end nothing is lost.
    pub lost: Vec<bool>,
    sent: usize,
    queue: std::collections::VecDeque<Vec<u8>>,
}

impl MaskChannel {
    /// A channel dropping the datagrams marked in `lost`.
    pub fn new(lost: Vec<bool>) -> Self {
        Self {
            lost,
            sent: 0,
            queue: Default::default(),
        }
    }
}

impl Channel for MaskChannel {
    fn send(&mut self, _now: Instant, datagram: Vec<u8>) {
        let lost = self.lost.get(self.sent).copied().unwrap_or(false);
        self.sent += 1;
        if !lost {
            self.queue.push_back(datagram);
        }
    }

    fn poll_receive(&mut self, _now: Instant) -> Option<Vec<u8>> {
        self.queue.pop_front()
    }
}

/// Settings for [`simulate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Send side.
    pub sender: SenderConfig,
    /// Receive side.
    pub jitter: JitterConfig,
    /// How often the receiver's measured loss reaches the encoder (0 = never).
    pub feedback_frames: u32,
    /// Offset of the receiver's playout ticks after the sender's capture ticks.
    pub playout_phase: Duration,
    /// Extra frames played after the input ends so the buffer drains.
    pub tail_frames: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            sender: SenderConfig::default(),
            jitter: JitterConfig::default(),
            feedback_frames: 25,
            playout_phase: Duration::ZERO,
            tail_frames: 10,
        }
    }
}

/// What [`simulate`] produced.
#[derive(Debug, Clone)]
pub struct SimOutput {
    /// Played samples, one frame per tick, starting at the first tick.
    pub output: Vec<f32>,
    /// Jitter buffer counters at the end.
    pub counters: JitterCounters,
    /// Quality summary at the end.
    pub quality: CallQuality,
    /// Encoder lookahead in samples (part of the latency).
    pub lookahead_samples: u32,
    /// The jitter buffer's target level (frames) at the end.
    pub jitter_target_frames: u32,
}

/// Why a simulation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Codec creation failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Sending failed.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Sends `input` (48 kHz mono) through a whole call over `channel` on virtual time.
pub fn simulate(
    input: &[f32],
    config: SimConfig,
    channel: &mut dyn Channel,
) -> Result<SimOutput, SimError> {
    const KEY: [u8; 32] = [0x42; 32];
    let call_id = b"simulation";
    let mut sender = MediaSender::new(config.sender, KEY, call_id, Direction::CallerToCallee)?;
    let mut receiver = MediaReceiver::new(config.jitter, KEY, call_id, Direction::CallerToCallee)?;
    let lookahead_samples = sender.lookahead_samples();
    let t0 = Instant::now();
    let frames = input.len().div_ceil(FRAME_SAMPLES);
    let total = frames + config.tail_frames as usize;
    let mut output = Vec::with_capacity(total * FRAME_SAMPLES);
    let mut frame = vec![0.0f32; FRAME_SAMPLES];
    for i in 0..total {
        let send_at = t0 + FRAME_DURATION * i as u32;
        if i < frames {
            frame.fill(0.0);
            let chunk = &input[i * FRAME_SAMPLES..input.len().min((i + 1) * FRAME_SAMPLES)];
            frame[..chunk.len()].copy_from_slice(chunk);
        } else {
            frame.fill(0.0);
        }
        sender.handle_frame(send_at, &frame)?;
        while let Some(datagram) = sender.poll_transmit() {
            channel.send(send_at, datagram);
        }
        let play_at = send_at + config.playout_phase;
        while let Some(datagram) = channel.poll_receive(play_at) {
            // Rejections are counted by the receiver; a simulation has none to report.
            let _ = receiver.handle_datagram(play_at, &datagram);
        }
        output.extend_from_slice(&receiver.poll_frame(play_at).samples);
        if config.feedback_frames > 0 && (i + 1) % config.feedback_frames as usize == 0 {
            let loss = receiver.stats().loss_pct().ceil().clamp(0.0, 100.0) as u8;
            sender.set_expected_loss_pct(loss)?;
        }
    }
    Ok(SimOutput {
        output,
        counters: receiver.jitter_counters(),
        quality: receiver.quality(),
        lookahead_samples,
        jitter_target_frames: receiver.jitter_target_frames(),
    })
}

/// Lag (in samples, `0..=max_lag`) at which `output` best matches `input`, and the
/// normalised correlation there.
///
/// Searches coarsely on 4:1 decimated signals, then refines around the best coarse lag, so
/// it stays fast enough for debug-build tests.
pub fn align(input: &[f32], output: &[f32], max_lag: usize) -> (usize, f64) {
    const DECIMATION: usize = 4;
    let decimate = |x: &[f32]| -> Vec<f32> {
        x.chunks(DECIMATION)
            .map(|c| c.iter().sum::<f32>())
            .collect()
    };
    let (coarse_in, coarse_out) = (decimate(input), decimate(output));
    let mut coarse = (0, f64::MIN);
    for lag in 0..=max_lag / DECIMATION {
        let c = correlation(&coarse_in, coarse_out.get(lag..).unwrap_or(&[]));
        if c > coarse.1 {
            coarse = (lag, c);
        }
    }
    let centre = coarse.0 * DECIMATION;
    let mut best = (0, f64::MIN);
    for lag in centre.saturating_sub(2 * DECIMATION)..=(centre + 2 * DECIMATION).min(max_lag) {
        let c = correlation(input, output.get(lag..).unwrap_or(&[]));
        if c > best.1 {
            best = (lag, c);
        }
    }
    best
}

/// Normalised cross-correlation of two signals over their common length.
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a[..n].iter().zip(&b[..n]) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}
