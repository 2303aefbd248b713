//! Send side of a call: pacing, encoding and sealing (sans-IO).
//!
//! [`MediaSender`] turns captured 20 ms frames into sealed datagrams:
//! - **No silence suppression.** Every captured frame is encoded and sent, so a call
//!   sends 50 packets per second through silence (the background noise reaches the peer and
//!   the packets keep NAT bindings open). If the capture side stalls for more than
//!   [`SenderConfig::stall_frames`] frames, [`MediaSender::handle_timeout`] fills the gap
//!   with silence frames so the stream keeps its rate.
//! - **Mute** sends silence frames at the same rate.
//! - **Hold** sends no audio, only a keep-alive packet (flags keep-alive + hold, empty
//!   payload) at once and then every [`SenderConfig::keepalive_interval`] (3 s). The media
//!   clock keeps running, so the first frame after hold carries a timestamp that tells the
//!   receiver how long the pause was.
//!
//! Drive it like any sans-IO state machine: `handle_frame` per captured frame,
//! `handle_timeout` when `poll_timeout` expires, then drain `poll_transmit`.
//!
//! Not here: the capture clock itself (the device module), sockets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::codec::{CodecError, Encoder, EncoderConfig, FRAME_SAMPLES, packet_has_fec};
use crate::jitter::FRAME_DURATION;
use crate::packet::{Flags, PacketHeader};
use crate::secure::{Direction, PacketSealer};

/// What the local user has chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendMode {
    /// Microphone audio is sent.
    Talking,
    /// Silence frames are sent at the normal rate.
    Muted,
    /// Only keep-alives are sent.
    Hold,
}

/// Sender settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    /// Encoder settings.
    pub encoder: EncoderConfig,
    /// Keep-alive period on hold.
    pub keepalive_interval: Duration,
    /// Frames without capture input after which silence frames are sent in their place.
    pub stall_frames: u32,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            encoder: EncoderConfig::default(),
            keepalive_interval: Duration::from_secs(3),
            stall_frames: 3,
        }
    }
}

/// Packets sent, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendCounters {
    /// Audio frames sent (speech, silence or mute).
    pub audio_packets: u64,
    /// Silence frames generated because capture stalled.
    pub stall_fill_packets: u64,
    /// Keep-alives sent on hold.
    pub keepalive_packets: u64,
}

/// The send half of a call (see the module docs).
#[derive(Debug)]
pub struct MediaSender {
    config: SenderConfig,
    encoder: Encoder,
    sealer: PacketSealer,
    mode: SendMode,
    sequence: u32,
    /// Media clock: the timestamp of the next frame and the time it stands for.
    next_timestamp: u32,
    media_time: Option<Instant>,
    last_frame_at: Option<Instant>,
    next_keepalive: Option<Instant>,
    transmit: VecDeque<Vec<u8>>,
    counters: SendCounters,
}

/// Why the sender could not produce a packet.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The encoder refused the frame.
    #[error("encoder: {0}")]
    Codec(#[from] CodecError),
    /// Sealing failed (a sequence number would repeat: a bug, never the peer).
    #[error("seal: {0}")]
    Seal(#[from] crate::secure::SealError),
}

/// Most packets kept for `poll_transmit` before the oldest are dropped (1 s of audio).
const MAX_QUEUED: usize = 50;

impl MediaSender {
    /// A sender for `direction` of call `call_id`, encrypting with `key`.
    pub fn new(
        config: SenderConfig,
        key: [u8; 32],
        call_id: &[u8],
        direction: Direction,
    ) -> Result<Self, CodecError> {
        Ok(Self {
            encoder: Encoder::new(config.encoder)?,
            config,
            sealer: PacketSealer::new(key, call_id, direction),
            mode: SendMode::Talking,
            sequence: 0,
            next_timestamp: 0,
            media_time: None,
            last_frame_at: None,
            next_keepalive: None,
            transmit: VecDeque::new(),
            counters: SendCounters::default(),
        })
    }

    /// The current mode.
    pub fn mode(&self) -> SendMode {
        self.mode
    }

    /// Counters since creation.
    pub fn counters(&self) -> SendCounters {
        self.counters
    }

    /// Codec lookahead in samples.
    pub fn lookahead_samples(&mut self) -> u32 {
        self.encoder.lookahead_samples().unwrap_or(0)
    }

    /// Changes mode; entering hold sends a keep-alive at once.
    pub fn set_mode(&mut self, now: Instant, mode: SendMode) -> Result<(), SendError> {
        if mode == self.mode {
            return Ok(());
        }
        let was_hold = self.mode == SendMode::Hold;
        self.mode = mode;
        if mode == SendMode::Hold {
            self.send_keepalive(now)?;
        } else if was_hold {
            self.next_keepalive = None;
            self.catch_up_media_clock(now);
            self.last_frame_at = Some(now);
        }
        Ok(())
    }

    /// Feeds the expected loss (normally the peer's measured loss) to FEC/DRED sizing.
    pub fn set_expected_loss_pct(&mut self, loss_pct: u8) -> Result<(), CodecError> {
        self.encoder.set_expected_loss_pct(loss_pct)
    }

    /// Changes the encoder bitrate.
    pub fn set_bitrate_bps(&mut self, bitrate_bps: u32) -> Result<(), CodecError> {
        self.encoder.set_bitrate_bps(bitrate_bps)
    }

    /// One captured 20 ms frame (960 samples). Ignored on hold; replaced by silence when
    /// muted.
    pub fn handle_frame(&mut self, now: Instant, pcm: &[f32]) -> Result<(), SendError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(CodecError::FrameLength { got: pcm.len() }.into());
        }
        match self.mode {
            SendMode::Hold => Ok(()),
            SendMode::Muted => {
                self.last_frame_at = Some(now);
                self.send_audio(now, &[0.0; FRAME_SAMPLES])
            }
            SendMode::Talking => {
                self.last_frame_at = Some(now);
                self.send_audio(now, pcm)
            }
        }
    }

    /// Sends what is due at `now`: keep-alives on hold, silence when capture stalled.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SendError> {
        match self.mode {
            SendMode::Hold => {
                while self.next_keepalive.is_some_and(|t| t <= now) {
                    self.send_keepalive(now)?;
                }
            }
            SendMode::Talking | SendMode::Muted => {
                let Some(last) = self.last_frame_at else {
                    return Ok(());
                };
                if now < last + FRAME_DURATION * self.config.stall_frames {
                    return Ok(());
                }
                let mut at = last + FRAME_DURATION;
                let mut filled = 0;
                while at <= now && filled < MAX_QUEUED {
                    self.send_audio(at, &[0.0; FRAME_SAMPLES])?;
                    self.counters.stall_fill_packets += 1;
                    self.last_frame_at = Some(at);
                    at += FRAME_DURATION;
                    filled += 1;
                }
                if at <= now {
                    // Far behind (the process was suspended): skip ahead, don't burst.
                    self.last_frame_at = Some(now);
                    self.catch_up_media_clock(now);
                }
            }
        }
        Ok(())
    }

    /// When `handle_timeout` next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.mode {
            SendMode::Hold => self.next_keepalive,
            SendMode::Talking | SendMode::Muted => self
                .last_frame_at
                .map(|t| t + FRAME_DURATION * self.config.stall_frames),
        }
    }

    /// The next sealed datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    fn send_audio(&mut self, now: Instant, pcm: &[f32]) -> Result<(), SendError> {
        let payload = self.encoder.encode(pcm)?;
        let mut flags = Flags::empty();
        if packet_has_fec(&payload) {
            flags = flags.with(Flags::FEC);
        }
        self.media_time.get_or_insert(now);
        let timestamp = self.next_timestamp;
        self.next_timestamp = self.next_timestamp.wrapping_add(FRAME_SAMPLES as u32);
        self.media_time = self.media_time.map(|t| t + FRAME_DURATION);
        self.push(
            PacketHeader {
                sequence: self.sequence,
                timestamp,
                flags,
            },
            &payload,
        )?;
        self.counters.audio_packets += 1;
        Ok(())
    }

    fn send_keepalive(&mut self, now: Instant) -> Result<(), SendError> {
        self.catch_up_media_clock(now);
        let header = PacketHeader {
            sequence: self.sequence,
            timestamp: self.next_timestamp,
            flags: Flags::KEEP_ALIVE.with(Flags::HOLD),
        };
        self.push(header, &[])?;
        self.counters.keepalive_packets += 1;
        let base = self.next_keepalive.unwrap_or(now);
        self.next_keepalive = Some(base + self.config.keepalive_interval);
        Ok(())
    }

    /// Advances the media clock over time in which no frames were sent, in whole frames.
    fn catch_up_media_clock(&mut self, now: Instant) {
        let Some(media_time) = self.media_time else {
            self.media_time = Some(now);
            return;
        };
        let gap = now.saturating_duration_since(media_time);
        let frames = (gap.as_nanos() / FRAME_DURATION.as_nanos()) as u64;
        if frames > 0 {
            let ticks = frames * FRAME_SAMPLES as u64;
            self.next_timestamp = self
                .next_timestamp
                .wrapping_add((ticks % (1u64 << 32)) as u32);
            self.media_time = Some(media_time + FRAME_DURATION * frames as u32);
        }
    }

    fn push(&mut self, header: PacketHeader, payload: &[u8]) -> Result<(), SendError> {
        let wire = self.sealer.seal(header, payload)?;
        self.sequence = self.sequence.wrapping_add(1);
        if self.transmit.len() >= MAX_QUEUED {
            self.transmit.pop_front();
        }
        self.transmit.push_back(wire);
        Ok(())
    }
}
