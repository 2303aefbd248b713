//! Adaptive jitter buffer with loss recovery; owns the Opus decoder.
//!
//! Sans-IO: feed every received (decrypted) packet to [`JitterBuffer::handle_packet`] with
//! its arrival time, and call [`JitterBuffer::poll_frame`] once per 20 ms playout tick; it
//! always returns one [`PlayoutFrame`] of 960 samples.
//!
//! How it decides, in the spirit of WebRTC's NetEQ:
//! - **Target delay.** Each packet's transit time (arrival minus its media timestamp) is
//!   kept for the last [`JitterConfig::history_packets`] packets. The target buffer level
//!   is one frame plus the chosen percentile of the transit above the minimum, rounded up
//!   to frames, and never less than one frame. While packets are being lost it is at
//!   least [`JitterConfig::min_frames_under_loss`], so the next packet is in hand when a
//!   frame is missing and its FEC can be used; and while loss is high and the peer sends
//!   Deep REDundancy that reaches back far enough, [`JitterConfig::dred_extra_frames`]
//!   more, so a burst of two lost frames is rebuilt from the DRED of the packet after it.
//! - **Buffer level** at a tick is the span from the frame due now to the newest packet.
//! - **Missing frame.** If a later packet is buffered the frame is lost: it is rebuilt from
//!   the next packet's in-band FEC, else from a later packet's DRED, else concealed. If
//!   nothing later has arrived the packet is late: the buffer conceals without advancing
//!   (the delay grows by one frame, which is how it adapts upwards under a delay spike),
//!   and after [`JitterConfig::max_expand_frames`] such frames it stops and waits for the
//!   stream to come back (a hold, or the peer's stall).
//! - **Too much delay** (level above target + 1, for example after a spike or when the
//!   sender's sound card runs faster than ours): one frame is dropped, but only while the
//!   output is quiet, unless the excess exceeds [`JitterConfig::hard_excess_frames`].
//! - **Too little delay** (level below target, or our sound card runs faster): one frame of
//!   concealment is inserted, again only while the output is quiet.
//! - Reordered packets are slotted by timestamp; duplicates and packets whose time has
//!   passed are counted and dropped. A keep-alive with the hold flag empties the buffer;
//!   the first audio packet after it (a talk burst) restarts playout at the current target
//!   delay.
//!
//! Memory is bounded by [`JitterConfig::max_packets`]; nothing panics on any input.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::codec::{CodecError, Decoder, DecoderConfig, FRAME_MILLIS, FRAME_SAMPLES};
use crate::packet::{Flags, MediaPacket};

const FRAME_TICKS: u64 = FRAME_SAMPLES as u64;
/// Output RMS below which a frame counts as quiet (about -40 dBFS).
const QUIET_RMS: f32 = 0.01;
/// How far ahead of the playout point a packet may be before it counts as a new talk
/// burst (1 s): the sender's clock jumped, for example after hold.
const RESYNC_AHEAD_TICKS: u64 = 48_000;
/// How far back DRED may reach (its maximum is 1 s).
const MAX_DRED_FRAMES: u64 = 50;
/// Later packets tried for DRED per lost frame (each try parses a packet).
const MAX_DRED_TRIES: usize = 3;

/// Jitter buffer settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterConfig {
    /// Smallest target level in frames (1 = play each frame at the first tick after it
    /// arrives).
    pub min_frames: u32,
    /// Largest target level in frames.
    pub max_frames: u32,
    /// Target level while frames are being lost, so FEC in the next packet is usable.
    pub min_frames_under_loss: u32,
    /// Frames added to the target while at least [`JitterConfig::dred_min_loss_pct`] of
    /// recent frames went missing and the peer's Deep REDundancy reaches back far enough
    /// to rebuild the frame due from the newest packet in hand. With the target at two
    /// frames only the next packet is in hand when a frame is missing: its FEC covers one
    /// lost frame, but a burst of two is concealed. One more frame of delay lets DRED in
    /// the packet after the burst rebuild it (NetEQ likewise trades delay for recovery at
    /// high loss). 0 disables.
    pub dred_extra_frames: u32,
    /// Share of recent frames missing (percent) from which [`JitterConfig::dred_extra_frames`]
    /// applies; once loss falls below it the target shrinks back.
    pub dred_min_loss_pct: u8,
    /// Percentile of the transit-time distribution that the target covers (0..=1).
    pub percentile: f64,
    /// Packets of transit history behind the target (250 = 5 s).
    pub history_packets: usize,
    /// Late-packet concealments in a row before playout stops and waits.
    pub max_expand_frames: u32,
    /// Excess over the target (frames) above which frames are dropped even in speech.
    pub hard_excess_frames: u32,
    /// Packets held at most.
    pub max_packets: usize,
    /// Consecutive ticks with the level below the target before a frame is inserted at
    /// the next quiet tick (1 = at the first quiet tick). In real time a packet arriving right at the playout tick
    /// makes the level dip for one tick now and then; waiting a few ticks keeps such dips
    /// from stretching the timeline while a lasting shortfall (clock drift, a longer
    /// path) still grows the delay. A lost packet makes the same one-tick dip (the newest
    /// packet is missing), so inserting at once would stretch the timeline at every loss
    /// in a pause and then drop a frame to shrink it again; 3 by default.
    pub insert_after_ticks: u32,
    /// Decoder settings.
    pub decoder: DecoderConfig,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            min_frames: 1,
            max_frames: 25,
            min_frames_under_loss: 2,
            dred_extra_frames: 2,
            dred_min_loss_pct: 10,
            percentile: 0.95,
            history_packets: 250,
            max_expand_frames: 10,
            hard_excess_frames: 4,
            max_packets: 64,
            insert_after_ticks: 3,
            decoder: DecoderConfig::default(),
        }
    }
}

/// How a played frame was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrameKind {
    /// Decoded from its own packet.
    Decoded,
    /// Rebuilt from the next packet's in-band FEC.
    Fec,
    /// Rebuilt from a later packet's Deep REDundancy.
    Dred,
    /// Concealed (lost or late packet, or a frame inserted to grow the delay).
    Concealed,
    /// Nothing to play: not started yet, or the stream stopped.
    Silence,
    /// The peer has put the call on hold.
    Hold,
}

/// One 20 ms frame for the sound card.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayoutFrame {
    /// 960 samples at 48 kHz in `[-1, 1]`.
    pub samples: [f32; FRAME_SAMPLES],
    /// How it was made.
    pub kind: FrameKind,
}

/// Counters since the buffer was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterCounters {
    /// Frames decoded from their own packet.
    pub decoded_frames: u64,
    /// Frames rebuilt from FEC.
    pub fec_frames: u64,
    /// Frames rebuilt from DRED.
    pub dred_frames: u64,
    /// Frames concealed (including inserted ones).
    pub concealed_frames: u64,
    /// Frames dropped to shrink the delay.
    pub dropped_frames: u64,
    /// Concealment frames inserted to grow the delay.
    pub inserted_frames: u64,
    /// Packets that arrived after their frame was played.
    pub late_packets: u64,
    /// Packets received twice.
    pub duplicate_packets: u64,
}

/// The adaptive jitter buffer (see the module docs).
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    decoder: Decoder,
    /// Opus payloads by extended timestamp.
    packets: BTreeMap<u64, Vec<u8>>,
    /// Extended timestamp of the frame due at the next tick; `None` while waiting.
    playout_ts: Option<u64>,
    last_ext_ts: Option<u64>,
    origin: Option<Instant>,
    /// Transit times (ms, relative to `origin`) of recent packets.
    transit_millis: VecDeque<f64>,
    /// Whether each of the recent ticks had to recover a frame.
    recent_missing: VecDeque<bool>,
    /// Whether each of the recent ticks found its frame lost (later packets present).
    recent_lost: VecDeque<bool>,
    expand_streak: u32,
    /// How many frames back the peer's DRED reached: the longest reach probed within the
    /// last [`JitterConfig::history_packets`] ticks (probed whenever a frame is missing).
    /// Quiet frames carry less or no DRED; taking the longest keeps the target from
    /// flapping between pauses and speech, which would insert and drop frames.
    peer_dred_reach_frames: u32,
    /// Tick at which `peer_dred_reach_frames` was probed.
    peer_dred_probe_tick: u64,
    /// Playout ticks so far.
    ticks: u64,
    /// Consecutive ticks at which the level was below the target.
    low_level_ticks: u32,
    remote_hold: bool,
    last_output_quiet: bool,
    counters: JitterCounters,
}

impl JitterBuffer {
    /// A buffer with `config`; fails only if libopus cannot create a decoder.
    pub fn new(config: JitterConfig) -> Result<Self, CodecError> {
        Ok(Self {
            decoder: Decoder::new(config.decoder)?,
            config,
            packets: BTreeMap::new(),
            playout_ts: None,
            last_ext_ts: None,
            origin: None,
            transit_millis: VecDeque::new(),
            recent_missing: VecDeque::new(),
            recent_lost: VecDeque::new(),
            expand_streak: 0,
            peer_dred_reach_frames: 0,
            peer_dred_probe_tick: 0,
            ticks: 0,
            low_level_ticks: 0,
            remote_hold: false,
            last_output_quiet: true,
            counters: JitterCounters::default(),
        })
    }

    /// Counters since creation.
    pub fn counters(&self) -> JitterCounters {
        self.counters
    }

    /// Whether the peer has said it put the call on hold.
    pub fn remote_on_hold(&self) -> bool {
        self.remote_hold
    }

    /// The current target level in frames.
    pub fn target_frames(&self) -> u32 {
        let mut target = self.config.min_frames.max(1);
        if self.transit_millis.len() >= 2 {
            let mut sorted: Vec<f64> = self.transit_millis.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            let min = sorted[0];
            let idx = ((sorted.len() - 1) as f64 * self.config.percentile.clamp(0.0, 1.0)).round()
                as usize;
            let spread = sorted[idx.min(sorted.len() - 1)] - min;
            let frames = (spread / FRAME_MILLIS as f64).ceil().max(0.0) as u32;
            target = target.max(1 + frames);
        }
        let missing = self.recent_missing.iter().filter(|m| **m).count();
        if missing > 0 {
            target = target.max(self.config.min_frames_under_loss);
            let extra = self.config.dred_extra_frames;
            let lossy = missing * 100
                >= self.recent_missing.len() * usize::from(self.config.dred_min_loss_pct);
            // The newest packet in hand at the larger target is `target + extra - 1` frames
            // after the frame due; growing only pays if its DRED reaches that far.
            if extra > 0 && lossy && self.peer_dred_reach_frames >= target + extra - 1 {
                target += extra;
            }
        }
        target.min(self.config.max_frames.max(1))
    }

    /// Media timestamp of the frame due at the next tick (`None` before playout starts
    /// and while waiting for the stream to come back).
    pub fn next_timestamp(&self) -> Option<u32> {
        self.playout_ts.map(|p| p as u32)
    }

    /// How many frames back the peer's DRED reached when last probed (0: none seen).
    pub fn peer_dred_reach_frames(&self) -> u32 {
        self.peer_dred_reach_frames
    }

    /// Audio buffered beyond the frame due next, in milliseconds (the jitter-buffer delay).
    pub fn buffered_millis(&self) -> u64 {
        self.level_frames().saturating_sub(1) as u64 * FRAME_MILLIS
    }

    /// Feeds one received packet.
    pub fn handle_packet(&mut self, now: Instant, packet: MediaPacket) {
        let ext = self.extend_timestamp(packet.header.timestamp);
        if packet.header.flags.contains(Flags::KEEP_ALIVE) || packet.payload.is_empty() {
            if packet.header.flags.contains(Flags::HOLD) && !self.remote_hold {
                self.remote_hold = true;
                self.packets.clear();
                self.playout_ts = None;
            }
            return;
        }
        self.remote_hold = packet.header.flags.contains(Flags::HOLD);
        self.record_transit(now, ext);
        if let Some(p) = self.playout_ts {
            if ext < p {
                self.counters.late_packets += 1;
                return;
            }
            if ext - p > RESYNC_AHEAD_TICKS {
                // A new talk burst far ahead of the old timeline: start over there.
                self.packets.clear();
                self.playout_ts = None;
            }
        }
        if self.packets.contains_key(&ext) {
            self.counters.duplicate_packets += 1;
            return;
        }
        if self.packets.len() >= self.config.max_packets.max(1) {
            self.packets.pop_first();
        }
        self.packets.insert(ext, packet.payload);
    }

    /// Produces the frame for the playout tick at `now` (call every 20 ms).
    pub fn poll_frame(&mut self, now: Instant) -> PlayoutFrame {
        self.ticks += 1;
        let mut out = PlayoutFrame {
            samples: [0.0; FRAME_SAMPLES],
            kind: FrameKind::Silence,
        };
        let target = self.target_frames();
        let Some(mut p) = self.playout_ts.or_else(|| self.start_point(target)) else {
            out.kind = if self.remote_hold {
                FrameKind::Hold
            } else {
                FrameKind::Silence
            };
            self.last_output_quiet = true;
            return out;
        };
        self.playout_ts = Some(p);
        let level = self.level_frames();

        if self.packets.contains_key(&p) {
            if level > target + 1
                && (self.last_output_quiet || level > target + self.config.hard_excess_frames)
            {
                if let Some(payload) = self.packets.remove(&p) {
                    // Decoding the dropped frame keeps the decoder's history continuous.
                    let _ = self.decoder.decode(&payload, &mut out.samples);
                }
                self.counters.dropped_frames += 1;
                p += FRAME_TICKS;
                self.playout_ts = Some(p);
            } else if level < target
                && self.counters.decoded_frames > 0
                && !(self.losing_packets() && self.due_level_frames(now, p) >= target)
            {
                // The shortfall is counted through speech too, so a lasting one is made up
                // at the first quiet tick; a dip from a lost newest packet ends a tick later.
                // While packets are being lost, a shortfall made only of packets that are
                // already due (lost, at the fastest transit seen) is no reason to grow:
                // a burst of lost packets would otherwise add a frame of delay each time
                // (the level is never above target + 1, so nothing shrinks it again).
                self.low_level_ticks = self.low_level_ticks.saturating_add(1);
                if self.last_output_quiet
                    && self.low_level_ticks >= self.config.insert_after_ticks.max(1)
                {
                    self.low_level_ticks = 0;
                    self.conceal(&mut out);
                    self.counters.inserted_frames += 1;
                    self.note_missing(false);
                    self.note_lost(false);
                    return self.finish(out);
                }
            } else {
                self.low_level_ticks = 0;
            }
        }

        if let Some(payload) = self.packets.remove(&p) {
            self.expand_streak = 0;
            self.note_missing(false);
            self.note_lost(false);
            match self.decoder.decode(&payload, &mut out.samples) {
                Ok(()) => {
                    out.kind = FrameKind::Decoded;
                    self.counters.decoded_frames += 1;
                }
                Err(_) => self.conceal(&mut out),
            }
            self.playout_ts = Some(p + FRAME_TICKS);
            return self.finish(out);
        }

        let newest = self.packets.last_key_value().map(|(k, _)| *k);
        self.probe_peer_dred();
        match newest {
            Some(n) if n > p => {
                self.expand_streak = 0;
                self.note_missing(true);
                self.note_lost(true);
                self.recover(p, &mut out);
                self.playout_ts = Some(p + FRAME_TICKS);
            }
            _ => {
                self.expand_streak += 1;
                if self.expand_streak > self.config.max_expand_frames {
                    self.playout_ts = None;
                    let _ = self.decoder.reset();
                    out.kind = if self.remote_hold {
                        FrameKind::Hold
                    } else {
                        FrameKind::Silence
                    };
                } else if self.losing_packets() && self.overdue_by_target(now, p, target) {
                    // Packets are being lost and this one is already as late as the target
                    // allows: treat it as lost rather than stretch, so a loss burst does not
                    // shift the timeline (stretching here and dropping later costs quality).
                    self.note_missing(true);
                    self.conceal(&mut out);
                    self.playout_ts = Some(p + FRAME_TICKS);
                } else {
                    self.note_missing(true);
                    self.conceal(&mut out);
                }
            }
        }
        self.finish(out)
    }

    fn finish(&mut self, out: PlayoutFrame) -> PlayoutFrame {
        let energy: f32 = out.samples.iter().map(|s| s * s).sum();
        self.last_output_quiet = (energy / FRAME_SAMPLES as f32).sqrt() < QUIET_RMS;
        out
    }

    /// Notes how far back the newest packet's DRED reaches, for the target (a missing
    /// frame is when it matters; between losses the last answer stands).
    fn probe_peer_dred(&mut self) {
        if !self.config.decoder.dred || self.config.dred_extra_frames == 0 {
            return;
        }
        if let Some((_, payload)) = self.packets.last_key_value() {
            let reach = self.decoder.dred_reach_frames(payload);
            let stale = self.ticks.saturating_sub(self.peer_dred_probe_tick)
                > self.config.history_packets as u64;
            if reach >= self.peer_dred_reach_frames || stale {
                self.peer_dred_reach_frames = reach;
                self.peer_dred_probe_tick = self.ticks;
            }
        }
    }

    fn recover(&mut self, p: u64, out: &mut PlayoutFrame) {
        if let Some(next) = self.packets.get(&(p + FRAME_TICKS))
            && self.decoder.decode_fec(next, &mut out.samples).is_ok()
        {
            out.kind = FrameKind::Fec;
            self.counters.fec_frames += 1;
            return;
        }
        if self.config.decoder.dred {
            // The next packet may carry no LBRR (quiet or unvoiced frames) or be missing
            // too; DRED of the first later packets that reach back this far rebuilds the
            // frame. A packet's DRED starts up to ~100 ms before its own audio, so a packet
            // further on may reach where a nearer one does not.
            let later = self
                .packets
                .range(p + FRAME_TICKS..=p + MAX_DRED_FRAMES * FRAME_TICKS)
                .take(MAX_DRED_TRIES);
            for (k, payload) in later {
                let frames_before = ((k - p) / FRAME_TICKS) as u32;
                if let Ok(true) = self
                    .decoder
                    .decode_dred(payload, frames_before, &mut out.samples)
                {
                    out.kind = FrameKind::Dred;
                    self.counters.dred_frames += 1;
                    return;
                }
            }
        }
        self.conceal(out);
    }

    fn conceal(&mut self, out: &mut PlayoutFrame) {
        if self.decoder.conceal(&mut out.samples).is_err() {
            out.samples.fill(0.0);
        }
        out.kind = FrameKind::Concealed;
        self.counters.concealed_frames += 1;
    }

    /// Where to start playing from when idle: the oldest packet, once enough is buffered to
    /// cover the target delay.
    fn start_point(&mut self, target: u32) -> Option<u64> {
        let (&first, _) = self.packets.first_key_value()?;
        let (&last, _) = self.packets.last_key_value()?;
        let level = (last - first) / FRAME_TICKS + 1;
        (level >= u64::from(target)).then_some(first)
    }

    fn level_frames(&self) -> u32 {
        match (self.playout_ts, self.packets.last_key_value()) {
            (Some(p), Some((&n, _))) if n >= p => {
                ((n - p) / FRAME_TICKS + 1).min(u64::from(u32::MAX)) as u32
            }
            _ => 0,
        }
    }

    fn note_lost(&mut self, lost: bool) {
        self.recent_lost.push_back(lost);
        while self.recent_lost.len() > self.config.history_packets.max(1) {
            self.recent_lost.pop_front();
        }
    }

    /// Whether frames went missing while later packets were in hand (loss, as opposed to
    /// lateness) within the history window.
    fn losing_packets(&self) -> bool {
        self.recent_lost.iter().any(|l| *l)
    }

    /// Whether the frame at `p` is overdue, relative to the fastest transit seen recently,
    /// by at least the delay the target level allows.
    fn overdue_by_target(&self, now: Instant, p: u64, target: u32) -> bool {
        let (Some(origin), Some(min_transit)) = (
            self.origin,
            self.transit_millis.iter().copied().reduce(f64::min),
        ) else {
            return false;
        };
        let now_millis = now.saturating_duration_since(origin).as_secs_f64() * 1000.0;
        let expected_millis = p as f64 / 48.0 + min_transit;
        let budget_millis = f64::from(target.saturating_sub(1)) * FRAME_MILLIS as f64;
        // Arrival and media times are large f64 millisecond values; half a millisecond of
        // slack keeps rounding from turning "exactly due" into "not yet" at the boundary.
        now_millis - expected_millis + 0.5 >= budget_millis
    }

    /// The level the buffer would have at `now` if every packet due by now (at the
    /// fastest transit seen recently) had arrived; 0 when unknown.
    fn due_level_frames(&self, now: Instant, p: u64) -> u32 {
        let (Some(origin), Some(min_transit)) = (
            self.origin,
            self.transit_millis.iter().copied().reduce(f64::min),
        ) else {
            return 0;
        };
        let now_millis = now.saturating_duration_since(origin).as_secs_f64() * 1000.0;
        // Half a millisecond of slack against f64 rounding, as in `overdue_by_target`.
        let due_ticks = ((now_millis - min_transit + 0.5) * 48.0).max(0.0) as u64;
        if due_ticks < p {
            0
        } else {
            ((due_ticks - p) / FRAME_TICKS + 1).min(u64::from(u32::MAX)) as u32
        }
    }

    fn note_missing(&mut self, missing: bool) {
        self.recent_missing.push_back(missing);
        while self.recent_missing.len() > self.config.history_packets.max(1) {
            self.recent_missing.pop_front();
        }
    }

    fn record_transit(&mut self, now: Instant, ext_ts: u64) {
        let origin = *self.origin.get_or_insert(now);
        let arrival_millis = now.saturating_duration_since(origin).as_secs_f64() * 1000.0;
        let media_millis = ext_ts as f64 / 48.0;
        self.transit_millis.push_back(arrival_millis - media_millis);
        while self.transit_millis.len() > self.config.history_packets.max(2) {
            self.transit_millis.pop_front();
        }
    }

    /// Widens a 32-bit timestamp to the 64-bit timeline nearest the last one seen.
    fn extend_timestamp(&mut self, ts: u32) -> u64 {
        const SPAN: u64 = 1 << 32;
        let ext = match self.last_ext_ts {
            // Start high so that timestamps slightly before the first one stay positive.
            None => SPAN + u64::from(ts),
            Some(last) => {
                let base = last & !(SPAN - 1);
                let candidates = [base.wrapping_sub(SPAN), base, base + SPAN]
                    .map(|b| b.wrapping_add(u64::from(ts)));
                candidates
                    .into_iter()
                    .filter(|c| *c >= SPAN / 2)
                    .min_by_key(|c| c.abs_diff(last))
                    .unwrap_or(base + u64::from(ts))
            }
        };
        if self.last_ext_ts.is_none_or(|last| ext > last) {
            self.last_ext_ts = Some(ext);
        }
        ext
    }
}

/// Drives a fresh jitter buffer with packets and polls decoded from arbitrary bytes and
/// checks its invariants (one full frame per poll, bounded memory). Shared by the fuzz
/// target `media_jitter` and the property test run in CI; panics only on a broken
/// invariant.
pub fn exercise_with_bytes(data: &[u8]) {
    use crate::packet::PacketHeader;
    let config = JitterConfig {
        max_packets: 16,
        ..JitterConfig::default()
    };
    let Ok(mut jb) = JitterBuffer::new(config) else {
        return;
    };
    let mut now = Instant::now();
    let (mut sequence, mut timestamp) = (0u32, 0u32);
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        match op % 4 {
            0 | 1 => {
                let step = i32::from(bytes.next().unwrap_or(1) as i8);
                sequence = sequence.wrapping_add_signed(step.signum());
                timestamp = timestamp.wrapping_add_signed(step * FRAME_SAMPLES as i32);
                let flags = Flags::from_bits_truncate(bytes.next().unwrap_or(0));
                let len = usize::from(bytes.next().unwrap_or(0));
                let payload: Vec<u8> = bytes.by_ref().take(len).collect();
                jb.handle_packet(
                    now,
                    MediaPacket {
                        header: PacketHeader {
                            sequence,
                            timestamp,
                            flags,
                        },
                        payload,
                    },
                );
            }
            2 => {
                let frame = jb.poll_frame(now);
                assert_eq!(frame.samples.len(), FRAME_SAMPLES);
                assert!(
                    frame.samples.iter().all(|s| s.is_finite()),
                    "decoder output must be finite"
                );
                now += FRAME_DURATION;
            }
            _ => now += Duration::from_millis(u64::from(bytes.next().unwrap_or(0))),
        }
        assert!(jb.packets.len() <= 16, "buffer holds at most max_packets");
        assert!(jb.transit_millis.len() <= config.history_packets.max(2));
        assert!(jb.recent_missing.len() <= config.history_packets.max(1));
        assert!(jb.recent_lost.len() <= config.history_packets.max(1));
    }
}

/// Convenience for callers that want one frame's duration as a `Duration`.
pub const FRAME_DURATION: Duration = Duration::from_millis(FRAME_MILLIS);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Encoder, EncoderConfig};
    use crate::packet::PacketHeader;

    fn packets(n: usize, loss_pct: u8) -> Vec<MediaPacket> {
        let mut enc = Encoder::new(EncoderConfig {
            expected_loss_pct: loss_pct,
            ..EncoderConfig::default()
        })
        .expect("encoder");
        (0..n)
            .map(|i| {
                let pcm: Vec<f32> = (0..FRAME_SAMPLES)
                    .map(|j| 0.3 * ((i * FRAME_SAMPLES + j) as f32 * 0.05).sin())
                    .collect();
                MediaPacket {
                    header: PacketHeader {
                        sequence: i as u32,
                        timestamp: (i * FRAME_SAMPLES) as u32,
                        flags: Flags::empty(),
                    },
                    payload: enc.encode(&pcm).expect("encode"),
                }
            })
            .collect()
    }

    #[test]
    fn plays_in_order_at_zero_jitter_without_extra_delay() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default()).expect("jb");
        let mut kinds = Vec::new();
        for (i, p) in packets(30, 0).into_iter().enumerate() {
            let now = t0 + FRAME_DURATION * i as u32;
            jb.handle_packet(now, p);
            kinds.push(jb.poll_frame(now).kind);
        }
        assert!(kinds.iter().all(|k| *k == FrameKind::Decoded), "{kinds:?}");
        assert_eq!(jb.target_frames(), 1);
    }

    #[test]
    fn recovers_a_lost_frame_from_fec() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig {
            min_frames: 2,
            ..JitterConfig::default()
        })
        .expect("jb");
        let mut kinds = Vec::new();
        for (i, p) in packets(40, 20).into_iter().enumerate() {
            let now = t0 + FRAME_DURATION * i as u32;
            if i != 20 {
                jb.handle_packet(now, p);
            }
            kinds.push(jb.poll_frame(now).kind);
        }
        assert_eq!(jb.counters().fec_frames, 1, "{kinds:?}");
        assert_eq!(jb.counters().concealed_frames, 0, "{kinds:?}");
    }

    #[test]
    fn a_one_tick_dip_in_a_pause_is_stretched_only_without_insert_hysteresis() {
        let mut enc = Encoder::new(EncoderConfig::default()).expect("encoder");
        let quiet: Vec<MediaPacket> = (0..60u32)
            .map(|i| MediaPacket {
                header: PacketHeader {
                    sequence: i,
                    timestamp: i * FRAME_SAMPLES as u32,
                    flags: Flags::empty(),
                },
                payload: enc.encode(&[0.0; FRAME_SAMPLES]).expect("encode"),
            })
            .collect();
        for (insert_after_ticks, expected_inserts) in [(1, 1), (3, 0)] {
            let t0 = Instant::now();
            let mut jb = JitterBuffer::new(JitterConfig {
                min_frames: 2,
                insert_after_ticks,
                ..JitterConfig::default()
            })
            .expect("jb");
            jb.handle_packet(t0, quiet[0].clone());
            for tick in 0..58usize {
                let now = t0 + FRAME_DURATION * tick as u32;
                // Packet n normally arrives just before tick n - 1; packet 31 arrives just
                // after tick 30 (the level dips to one frame for that tick).
                match tick {
                    30 => {}
                    31 => {
                        jb.handle_packet(now, quiet[31].clone());
                        jb.handle_packet(now, quiet[32].clone());
                    }
                    _ => jb.handle_packet(now, quiet[tick + 1].clone()),
                }
                jb.poll_frame(now);
            }
            assert_eq!(
                jb.counters().inserted_frames,
                expected_inserts,
                "insert after {insert_after_ticks} ticks: {:?}",
                jb.counters()
            );
            assert_eq!(jb.counters().concealed_frames, expected_inserts);
        }
    }

    #[test]
    fn random_loss_without_jitter_neither_stretches_nor_drops_once_loss_is_known() {
        // Talk spurts and pauses (quiet output is where the buffer may resize), 20% loss
        // drawn by a fixed LCG, packets arriving exactly on the playout ticks.
        let mut enc = Encoder::new(EncoderConfig {
            expected_loss_pct: 20,
            ..EncoderConfig::default()
        })
        .expect("encoder");
        let mut jb = JitterBuffer::new(JitterConfig::default()).expect("jb");
        let t0 = Instant::now();
        let mut state = 7u64;
        let mut counters_after_first_loss = None;
        for i in 0..1000usize {
            let loud = (i / 10) % 2 == 0;
            let pcm: Vec<f32> = (0..FRAME_SAMPLES)
                .map(|j| {
                    let t = (i * FRAME_SAMPLES + j) as f32 / 48_000.0;
                    if loud {
                        0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                    } else {
                        0.0
                    }
                })
                .collect();
            let payload = enc.encode(&pcm).expect("encode");
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let lost = (state >> 33) % 100 < 20;
            let now = t0 + FRAME_DURATION * i as u32;
            if !lost {
                let header = PacketHeader {
                    sequence: i as u32,
                    timestamp: (i * FRAME_SAMPLES) as u32,
                    flags: Flags::empty(),
                };
                jb.handle_packet(now, MediaPacket { header, payload });
            }
            jb.poll_frame(now);
            if i == 100 {
                counters_after_first_loss = Some(jb.counters());
            }
        }
        let settled = counters_after_first_loss.expect("counted");
        let end = jb.counters();
        assert!(end.fec_frames > settled.fec_frames + 50, "{end:?}");
        assert_eq!(end.inserted_frames, settled.inserted_frames, "{end:?}");
        assert_eq!(end.dropped_frames, settled.dropped_frames, "{end:?}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_packet_streams_keep_the_invariants(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            exercise_with_bytes(&data);
        }
    }

    #[test]
    fn wrapping_timestamps_extend_monotonically() {
        let mut jb = JitterBuffer::new(JitterConfig::default()).expect("jb");
        let a = jb.extend_timestamp(u32::MAX - 959);
        let b = jb.extend_timestamp(0);
        let c = jb.extend_timestamp(u32::MAX - 959);
        assert_eq!(b - a, 960);
        assert_eq!(a, c);
    }
}
