//! Receive-side call quality: loss, interarrival jitter, RTT, concealment and an E-model
//! MOS estimate.
//!
//! [`ReceiveStats`] is fed every authenticated packet header with its arrival time;
//! loss counts sequence numbers never seen (RFC 3550 §A.3 style, so duplicates and
//! reordering do not count as loss) and jitter is the RFC 3550 §6.4.1 interarrival
//! jitter. The round-trip time is an input (the calls layer measures it). [`CallQuality`]
//! combines these with the jitter buffer's counters; [`mos_estimate`] is the ITU-T G.107
//! E-model with a wideband-codec impairment of zero and the packet-loss robustness of a
//! codec with concealment.
//!
//! Not here: sending reports to the peer (the calls layer does that).

use std::time::{Duration, Instant};

use crate::codec::SAMPLE_RATE_HZ;
use crate::jitter::JitterCounters;
use crate::packet::PacketHeader;

/// Counts over the whole call plus interarrival jitter.
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    first_sequence: Option<u32>,
    highest_sequence: u32,
    received: u64,
    /// Received count and expected count at the last [`ReceiveStats::take_interval_loss_pct`].
    interval_base: (u64, u64),
    last_transit_ticks: Option<f64>,
    jitter_ticks: f64,
    origin: Option<Instant>,
    rtt: Option<Duration>,
}

impl ReceiveStats {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one authenticated packet (keep-alives included).
    pub fn handle_packet(&mut self, now: Instant, header: &PacketHeader) {
        match self.first_sequence {
            None => {
                self.first_sequence = Some(header.sequence);
                self.highest_sequence = header.sequence;
            }
            Some(_) => self.highest_sequence = self.highest_sequence.max(header.sequence),
        }
        self.received += 1;
        let origin = *self.origin.get_or_insert(now);
        let arrival_ticks =
            now.saturating_duration_since(origin).as_secs_f64() * f64::from(SAMPLE_RATE_HZ);
        let transit = arrival_ticks - f64::from(header.timestamp);
        if let Some(last) = self.last_transit_ticks {
            let mut d = (transit - last).abs();
            // A timestamp wrap or a hold jump is not jitter.
            if d > f64::from(SAMPLE_RATE_HZ) {
                d = self.jitter_ticks;
            }
            self.jitter_ticks += (d - self.jitter_ticks) / 16.0;
        }
        self.last_transit_ticks = Some(transit);
    }

    /// Sets the latest round-trip time measurement.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(rtt);
    }

    /// Packets expected so far (from the sequence range).
    pub fn expected_packets(&self) -> u64 {
        self.first_sequence
            .map_or(0, |first| u64::from(self.highest_sequence - first) + 1)
    }

    /// Packets received (duplicates count once per copy the replay window let through,
    /// which is never more than once).
    pub fn received_packets(&self) -> u64 {
        self.received
    }

    /// Cumulative loss in percent.
    pub fn loss_pct(&self) -> f64 {
        let expected = self.expected_packets();
        if expected == 0 {
            return 0.0;
        }
        expected.saturating_sub(self.received) as f64 * 100.0 / expected as f64
    }

    /// Loss since the previous call of this method, in percent; what the peer's encoder
    /// should be told to expect.
    pub fn take_interval_loss_pct(&mut self) -> f64 {
        let (base_received, base_expected) = self.interval_base;
        let expected = self.expected_packets().saturating_sub(base_expected);
        let received = self.received.saturating_sub(base_received);
        self.interval_base = (self.received, self.expected_packets());
        if expected == 0 {
            0.0
        } else {
            expected.saturating_sub(received) as f64 * 100.0 / expected as f64
        }
    }

    /// RFC 3550 interarrival jitter in milliseconds.
    pub fn jitter_millis(&self) -> f64 {
        self.jitter_ticks * 1000.0 / f64::from(SAMPLE_RATE_HZ)
    }

    /// The latest round-trip time, if any.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }
}

/// What the app's call-quality indicator shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallQuality {
    /// Cumulative packet loss in percent.
    pub loss_pct: f64,
    /// RFC 3550 interarrival jitter.
    pub jitter_millis: f64,
    /// Round-trip time, when measured.
    pub rtt_millis: Option<f64>,
    /// Frames concealed by the decoder.
    pub concealed_frames: u64,
    /// Frames rebuilt from FEC or DRED.
    pub recovered_frames: u64,
    /// Audio waiting in the jitter buffer.
    pub jitter_buffer_delay_millis: u64,
    /// E-model MOS estimate (1 to 4.5).
    pub mos: f64,
}

/// Fixed one-way delay of the pipeline outside the network and jitter buffer: 20 ms
/// framing plus 6.5 ms codec lookahead, plus typical device buffers.
const PIPELINE_DELAY_MILLIS: f64 = 20.0 + 6.5 + 20.0;

impl CallQuality {
    /// Combines the receive record with the jitter buffer's state.
    pub fn from_parts(
        stats: &ReceiveStats,
        counters: &JitterCounters,
        jitter_buffer_delay_millis: u64,
    ) -> Self {
        let rtt_millis = stats.rtt().map(|r| r.as_secs_f64() * 1000.0);
        let played = counters.decoded_frames
            + counters.fec_frames
            + counters.dred_frames
            + counters.concealed_frames;
        // Frames that reached the ear as concealment are the loss the listener hears.
        let effective_loss_pct = if played == 0 {
            stats.loss_pct()
        } else {
            counters.concealed_frames as f64 * 100.0 / played as f64
        };
        let one_way_millis = rtt_millis.unwrap_or(0.0) / 2.0
            + jitter_buffer_delay_millis as f64
            + PIPELINE_DELAY_MILLIS;
        Self {
            loss_pct: stats.loss_pct(),
            jitter_millis: stats.jitter_millis(),
            rtt_millis,
            concealed_frames: counters.concealed_frames,
            recovered_frames: counters.fec_frames + counters.dred_frames,
            jitter_buffer_delay_millis,
            mos: mos_estimate(one_way_millis, effective_loss_pct, 1.0),
        }
    }
}

/// ITU-T G.107 E-model MOS for a mouth-to-ear delay, a packet loss and a burst ratio
/// (1 = random loss).
///
/// Uses the default values of G.107 for everything but the codec: Ie = 0 (Opus wideband
/// voice at 24+ kbit/s is at least as clean as G.711) and Bpl = 25 (a codec with
/// concealment, as G.113 lists for G.711 with PLC).
pub fn mos_estimate(one_way_delay_millis: f64, loss_pct: f64, burst_ratio: f64) -> f64 {
    const R0_MINUS_IS: f64 = 93.2;
    const IE: f64 = 0.0;
    const BPL: f64 = 25.0;
    let d = one_way_delay_millis.max(0.0);
    // Delay impairment Idd simplified for Ta = T = Tr/2 (no echo, G.107 §B.3 shape).
    let idd = if d > 100.0 {
        let x = (d / 100.0).ln() / 2f64.ln();
        25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
            + 2.0)
    } else {
        0.0
    };
    let ppl = loss_pct.clamp(0.0, 100.0);
    let burst_ratio = burst_ratio.max(1.0);
    let ie_eff = IE + (95.0 - IE) * ppl / (ppl / burst_ratio + BPL);
    let r = R0_MINUS_IS - idd - ie_eff;
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Flags;

    #[test]
    fn mos_falls_with_loss_and_delay() {
        let clean = mos_estimate(50.0, 0.0, 1.0);
        assert!(clean > 4.3 && clean <= 4.5, "{clean}");
        assert!(mos_estimate(50.0, 5.0, 1.0) < clean);
        assert!(mos_estimate(50.0, 20.0, 1.0) < mos_estimate(50.0, 5.0, 1.0));
        assert!(mos_estimate(400.0, 0.0, 1.0) < clean);
        assert!(mos_estimate(50.0, 100.0, 1.0) >= 1.0);
    }

    #[test]
    fn loss_and_jitter_follow_rfc3550() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new();
        for seq in 0u32..100 {
            if seq % 10 == 3 {
                continue;
            }
            // Alternate 0 and 10 ms of extra delay: |D| = 10 ms on every step.
            let extra = if seq % 2 == 0 { 0 } else { 10 };
            let now = t0 + Duration::from_millis(u64::from(seq) * 20 + extra);
            s.handle_packet(
                now,
                &PacketHeader {
                    sequence: seq,
                    timestamp: seq * 960,
                    flags: Flags::empty(),
                },
            );
        }
        assert!((s.loss_pct() - 10.0).abs() < 1e-9, "{}", s.loss_pct());
        // Steady state of J += (|D| - J)/16 with |D| mostly 10 ms.
        assert!(
            s.jitter_millis() > 7.0 && s.jitter_millis() < 10.5,
            "{}",
            s.jitter_millis()
        );
        assert!((s.take_interval_loss_pct() - 10.0).abs() < 1e-9);
        assert_eq!(s.take_interval_loss_pct(), 0.0);
    }
}
