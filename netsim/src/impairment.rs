//! The impairment state machine: packets in with `handle_packet`, out with `poll_packet`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::config::{
    ImpairmentConfig, LossModel, REORDER_EXTRA_DELAY_MAX, REORDER_EXTRA_DELAY_MIN, clamp_unit,
};

/// Longest delay or jitter the model honours; longer values are cut to it so that
/// `Instant` arithmetic can never overflow.
pub const MAX_CONFIG_DELAY: Duration = Duration::from_secs(3600);

/// Packets held at once unless [`Impairment::with_max_in_flight`] says otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 65_536;

/// Longest queueing delay of the rate-limited bottleneck unless
/// [`Impairment::with_max_queue_delay`] says otherwise.
pub const DEFAULT_MAX_QUEUE_DELAY: Duration = Duration::from_millis(200);

/// Size of a packet for the bottleneck when no size function is set.
pub const DEFAULT_PACKET_SIZE_BYTES: usize = 1200;

/// One direction of an impaired link, on virtual time.
///
/// Sans-IO: never reads the clock, never touches a socket; all randomness comes from the
/// seed. The same config, seed and sequence of `handle_packet`/`poll_packet` calls gives the
/// same output, bit for bit. Loss, jitter, reordering and duplication draw from separate
/// streams derived from the seed, so changing (say) the jitter leaves the loss pattern as it
/// was.
///
/// After each `handle_packet`, drain `poll_packet(now)` until `None`, then arm a timer for
/// `poll_timeout`.
///
/// Memory is bounded: at most `max_in_flight` packets are held (default
/// [`DEFAULT_MAX_IN_FLIGHT`]); further packets are dropped and counted in
/// [`ImpairmentStats::dropped_overflow`].
pub struct Impairment<T> {
    loss: LossState,
    delay: Duration,
    jitter: Duration,
    reorder_p: f64,
    duplicate_p: f64,
    rate_limit_bps: Option<u64>,
    jitter_rng: Xoshiro256PlusPlus,
    reorder_rng: Xoshiro256PlusPlus,
    duplicate_rng: Xoshiro256PlusPlus,
    /// Delivery time of the latest in-order packet: later ones may not overtake it.
    fifo_tail: Option<Instant>,
    /// When the bottleneck finishes sending what it has queued.
    link_busy_until: Option<Instant>,
    max_queue_delay: Duration,
    max_in_flight: usize,
    size_of: Option<fn(&T) -> usize>,
    queue: BinaryHeap<Scheduled<T>>,
    next_seq: u64,
    stats: ImpairmentStats,
}

impl<T> std::fmt::Debug for Impairment<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Impairment")
            .field("in_flight", &self.queue.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Counters since the model was built.
///
/// `dropped` counts every packet that will never be delivered (loss, a full bottleneck
/// queue, or the in-flight cap), so `dropped / offered` is the measured loss rate.
/// `offered + duplicated == dropped + delivered + in_flight` at all times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ImpairmentStats {
    /// Packets given to `handle_packet`.
    pub offered: u64,
    /// Packets that will never be delivered, all causes together.
    pub dropped: u64,
    /// Of `dropped`: lost to the bottleneck's full queue.
    pub dropped_queue: u64,
    /// Of `dropped`: refused because `max_in_flight` packets were already held.
    pub dropped_overflow: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Packets held back so that later ones overtake them.
    pub reordered: u64,
    /// Packets (copies included) returned by `poll_packet`.
    pub delivered: u64,
    /// Packets (copies included) waiting for their delivery time.
    pub in_flight: u64,
}

impl ImpairmentStats {
    /// Measured loss in percent: `dropped / offered`; 0 before any packet.
    pub fn loss_pct(&self) -> f64 {
        if self.offered == 0 {
            0.0
        } else {
            self.dropped as f64 * 100.0 / self.offered as f64
        }
    }
}

impl<T> Impairment<T> {
    /// Builds one link direction. Out-of-range config values are clamped (see
    /// [`ImpairmentConfig`]); durations are cut to [`MAX_CONFIG_DELAY`].
    pub fn new(config: ImpairmentConfig, seed: u64) -> Self {
        // Independent streams per aspect; Xoshiro's seed_from_u64 runs SplitMix64, so
        // nearby seeds still give unrelated streams.
        let stream = |n: u64| Xoshiro256PlusPlus::seed_from_u64(seed ^ n.wrapping_mul(STREAM));
        Self {
            loss: LossState::new(config.loss, stream(1)),
            delay: config.delay.min(MAX_CONFIG_DELAY),
            jitter: config.jitter.min(MAX_CONFIG_DELAY),
            reorder_p: clamp_unit(config.reorder_pct / 100.0),
            duplicate_p: clamp_unit(config.duplicate_pct / 100.0),
            rate_limit_bps: config.rate_limit_bps.map(|bps| bps.max(1)),
            jitter_rng: stream(2),
            reorder_rng: stream(3),
            duplicate_rng: stream(4),
            fifo_tail: None,
            link_busy_until: None,
            max_queue_delay: DEFAULT_MAX_QUEUE_DELAY,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            size_of: None,
            queue: BinaryHeap::new(),
            next_seq: 0,
            stats: ImpairmentStats::default(),
        }
    }

    /// Sets how the bottleneck measures a packet's size in bytes (only matters with
    /// `rate_limit_bps`); without it every packet counts [`DEFAULT_PACKET_SIZE_BYTES`].
    /// For byte buffers: `.with_packet_size(|p: &Vec<u8>| p.len())`.
    pub fn with_packet_size(mut self, size_of: fn(&T) -> usize) -> Self {
        self.size_of = Some(size_of);
        self
    }

    /// Caps how many packets (copies included) may wait for delivery at once.
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight;
        self
    }

    /// Sets the bottleneck queue's size as the longest queueing delay it may build up;
    /// a packet that would wait longer is dropped (tail drop).
    pub fn with_max_queue_delay(mut self, max_queue_delay: Duration) -> Self {
        self.max_queue_delay = max_queue_delay.min(MAX_CONFIG_DELAY);
        self
    }

    /// Offers a packet to the link at `now`, sized by the size function (or the default
    /// size). It is dropped, or scheduled for delivery (maybe twice).
    ///
    /// `now` should not go backwards between calls; if it does, delivery times still never
    /// precede the `now` of the call that offered the packet.
    pub fn handle_packet(&mut self, now: Instant, packet: T)
    where
        T: Clone,
    {
        let size_bytes = self
            .size_of
            .map_or(DEFAULT_PACKET_SIZE_BYTES, |f| f(&packet));
        self.handle_packet_sized(now, packet, size_bytes);
    }

    /// Like [`handle_packet`](Self::handle_packet) with an explicit size in bytes for the
    /// bottleneck.
    pub fn handle_packet_sized(&mut self, now: Instant, packet: T, size_bytes: usize)
    where
        T: Clone,
    {
        self.stats.offered += 1;
        if self.loss.lose() {
            self.stats.dropped += 1;
            return;
        }
        let Some(departure) = self.through_bottleneck(now, size_bytes) else {
            self.stats.dropped += 1;
            self.stats.dropped_queue += 1;
            return;
        };
        let duplicate =
            self.duplicate_p > 0.0 && self.duplicate_rng.random::<f64>() < self.duplicate_p;
        let copies = if duplicate { 2 } else { 1 };
        if self.queue.len() + copies > self.max_in_flight {
            self.stats.dropped += 1;
            self.stats.dropped_overflow += 1;
            return;
        }

        let mut deliver_at = departure + self.delay + self.jitter_sample();
        let reorder = self.reorder_p > 0.0 && self.reorder_rng.random::<f64>() < self.reorder_p;
        if reorder {
            // Leaves fifo_tail alone so the packets behind it may overtake it.
            deliver_at += self.reorder_sample();
            self.stats.reordered += 1;
        } else {
            if let Some(tail) = self.fifo_tail {
                deliver_at = deliver_at.max(tail);
            }
            self.fifo_tail = Some(deliver_at);
        }

        if duplicate {
            self.stats.duplicated += 1;
            self.schedule(deliver_at, packet.clone());
        }
        self.schedule(deliver_at, packet);
    }

    /// Returns the next packet whose delivery time is at or before `now`, in delivery-time
    /// order (ties in the order they were scheduled).
    pub fn poll_packet(&mut self, now: Instant) -> Option<T> {
        if self.queue.peek()?.deliver_at > now {
            return None;
        }
        let scheduled = self.queue.pop()?;
        self.stats.delivered += 1;
        self.stats.in_flight -= 1;
        Some(scheduled.packet)
    }

    /// The next delivery time, if any packet is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.peek().map(|s| s.deliver_at)
    }

    /// Counters since the model was built.
    pub fn stats(&self) -> ImpairmentStats {
        self.stats
    }

    fn schedule(&mut self, deliver_at: Instant, packet: T) {
        self.queue.push(Scheduled {
            deliver_at,
            seq: self.next_seq,
            packet,
        });
        self.next_seq += 1;
        self.stats.in_flight += 1;
    }

    /// When the packet leaves the bottleneck, or `None` when its queue is full.
    fn through_bottleneck(&mut self, now: Instant, size_bytes: usize) -> Option<Instant> {
        let Some(rate_bps) = self.rate_limit_bps else {
            return Some(now);
        };
        let start = self.link_busy_until.map_or(now, |busy| busy.max(now));
        if start - now > self.max_queue_delay {
            return None;
        }
        let bits = (size_bytes as u128).saturating_mul(8);
        let nanos = bits.saturating_mul(1_000_000_000) / u128::from(rate_bps);
        let transmit =
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).min(MAX_CONFIG_DELAY);
        let departure = start + transmit;
        self.link_busy_until = Some(departure);
        Some(departure)
    }

    fn jitter_sample(&mut self) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        let max_nanos = duration_nanos(self.jitter);
        Duration::from_nanos(self.jitter_rng.random_range(0..=max_nanos))
    }

    fn reorder_sample(&mut self) -> Duration {
        let (lo, hi) = (
            duration_nanos(REORDER_EXTRA_DELAY_MIN),
            duration_nanos(REORDER_EXTRA_DELAY_MAX),
        );
        Duration::from_nanos(self.reorder_rng.random_range(lo..=hi))
    }
}

/// Odd constant that spreads the per-aspect stream numbers over the seed space.
const STREAM: u64 = 0x9E37_79B9_7F4A_7C15;

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

struct Scheduled<T> {
    deliver_at: Instant,
    seq: u64,
    packet: T,
}

// BinaryHeap is a max-heap: reverse so the earliest (then lowest seq) is on top.
impl<T> Ord for Scheduled<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deliver_at, other.seq).cmp(&(self.deliver_at, self.seq))
    }
}
impl<T> PartialOrd for Scheduled<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> PartialEq for Scheduled<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.deliver_at, self.seq) == (other.deliver_at, other.seq)
    }
}
impl<T> Eq for Scheduled<T> {}

/// The loss decision, with the Gilbert-Elliott chain's state.
struct LossState {
    model: LossModel,
    in_bad_state: bool,
    rng: Xoshiro256PlusPlus,
}

impl LossState {
    fn new(model: LossModel, rng: Xoshiro256PlusPlus) -> Self {
        let model = match model {
            LossModel::None => LossModel::None,
            LossModel::Bernoulli { loss_pct } => LossModel::Bernoulli {
                loss_pct: clamp_unit(loss_pct / 100.0) * 100.0,
            },
            LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_in_good,
                loss_in_bad,
            } => LossModel::GilbertElliott {
                p_good_to_bad: clamp_unit(p_good_to_bad),
                p_bad_to_good: clamp_unit(p_bad_to_good),
                loss_in_good: clamp_unit(loss_in_good),
                loss_in_bad: clamp_unit(loss_in_bad),
            },
        };
        Self {
            model,
            in_bad_state: false,
            rng,
        }
    }

    fn lose(&mut self) -> bool {
        match self.model {
            LossModel::None => false,
            LossModel::Bernoulli { loss_pct } => self.rng.random::<f64>() * 100.0 < loss_pct,
            LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_in_good,
                loss_in_bad,
            } => {
                let loss_p = if self.in_bad_state {
                    loss_in_bad
                } else {
                    loss_in_good
                };
                let lost = self.rng.random::<f64>() < loss_p;
                let leave_p = if self.in_bad_state {
                    p_bad_to_good
                } else {
                    p_good_to_bad
                };
                if self.rng.random::<f64>() < leave_p {
                    self.in_bad_state = !self.in_bad_state;
                }
                lost
            }
        }
    }
}
