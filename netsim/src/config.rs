//! What a link does to packets: loss model, delay, jitter, reordering, duplication, rate.

use std::time::Duration;

/// How one direction of a link impairs the packets offered to it.
///
/// `Default` is a perfect link: every packet is delivered once, in order, at the instant it
/// was offered.
///
/// Percentages are in `0.0..=100.0`; out-of-range or non-finite values are clamped
/// (NaN counts as 0) when an [`Impairment`](crate::Impairment) is built, so no config can
/// make the model panic.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpairmentConfig {
    /// Which packets are lost.
    pub loss: LossModel,
    /// Fixed one-way base delay added to every packet.
    pub delay: Duration,
    /// Extra delay drawn per packet, uniform in `0..=jitter`.
    ///
    /// The path stays FIFO: a packet is never delivered before the one offered just before
    /// it (unless that one was picked for reordering), so jitter makes packets bunch up
    /// instead of overtaking each other, as on a real queueing path. Every packet's one-way
    /// delay therefore stays within `delay..=delay + jitter` (plus the bottleneck's queueing
    /// delay when `rate_limit_bps` is set).
    pub jitter: Duration,
    /// Chance (percent) that a packet is held back by an extra
    /// [`REORDER_EXTRA_DELAY_MIN`]`..=`[`REORDER_EXTRA_DELAY_MAX`] so the packets offered
    /// after it within that window overtake it.
    pub reorder_pct: f64,
    /// Chance (percent) that a packet is delivered twice (both copies at the same instant).
    pub duplicate_pct: f64,
    /// Bottleneck rate in bits per second: packets are serialised one after another through
    /// a tail-drop queue that holds at most
    /// [`Impairment::with_max_queue_delay`](crate::Impairment::with_max_queue_delay) of data.
    /// `None`: unlimited.
    pub rate_limit_bps: Option<u64>,
}

/// Smallest extra delay of a packet picked for reordering.
pub const REORDER_EXTRA_DELAY_MIN: Duration = Duration::from_millis(20);
/// Largest extra delay of a packet picked for reordering.
pub const REORDER_EXTRA_DELAY_MAX: Duration = Duration::from_millis(100);

impl Default for ImpairmentConfig {
    fn default() -> Self {
        Self {
            loss: LossModel::None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder_pct: 0.0,
            duplicate_pct: 0.0,
            rate_limit_bps: None,
        }
    }
}

impl ImpairmentConfig {
    /// True when this config changes nothing (the `Default`).
    pub fn is_perfect(&self) -> bool {
        self.loss.is_lossless()
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && clamp_unit(self.reorder_pct) == 0.0
            && clamp_unit(self.duplicate_pct) == 0.0
            && self.rate_limit_bps.is_none()
    }
}

/// Which packets a link loses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossModel {
    /// No loss.
    None,
    /// Each packet is lost independently with chance `loss_pct` percent.
    Bernoulli {
        /// Loss chance in percent, `0.0..=100.0`.
        loss_pct: f64,
    },
    /// Two-state Markov chain (Gilbert-Elliott): a good and a bad state, each with its own
    /// loss probability; losses come in bursts while the chain stays in the bad state.
    ///
    /// All four fields are probabilities in `0.0..=1.0` per packet (not percentages).
    /// For each packet the loss is decided in the current state, then the state moves.
    /// Mean time in the bad state is `1 / p_bad_to_good` packets; the long-run share of
    /// packets in the bad state is `p_good_to_bad / (p_good_to_bad + p_bad_to_good)`.
    /// The chain starts in the good state.
    GilbertElliott {
        /// Chance per packet of moving from the good to the bad state.
        p_good_to_bad: f64,
        /// Chance per packet of moving from the bad to the good state.
        p_bad_to_good: f64,
        /// Loss probability while in the good state.
        loss_in_good: f64,
        /// Loss probability while in the bad state.
        loss_in_bad: f64,
    },
}

impl LossModel {
    /// Bursty loss with long-run average `avg_loss_pct` percent whose lost packets come in
    /// runs of `mean_burst_len` packets on average.
    ///
    /// A Gilbert-Elliott chain that loses every packet in the bad state and none in the good
    /// state: `p_bad_to_good = 1 / mean_burst_len` and `p_good_to_bad` is set so the bad
    /// state's long-run share equals the average loss. `mean_burst_len` below 1 (or NaN) is
    /// taken as 1; `avg_loss_pct` is clamped to `0..=100`. An average above
    /// `mean_burst_len / (mean_burst_len + 1)` cannot be reached with that burst length
    /// (the good state lasts at least one packet): `p_good_to_bad` then saturates at 1 and
    /// the average comes out lower than asked.
    pub fn bursty(avg_loss_pct: f64, mean_burst_len: f64) -> Self {
        let avg = clamp_unit(avg_loss_pct / 100.0);
        let burst = if mean_burst_len.is_finite() && mean_burst_len >= 1.0 {
            mean_burst_len
        } else if mean_burst_len == f64::INFINITY {
            f64::MAX
        } else {
            1.0
        };
        if avg >= 1.0 {
            // Always lost: stay in the bad state forever.
            return LossModel::GilbertElliott {
                p_good_to_bad: 1.0,
                p_bad_to_good: 0.0,
                loss_in_good: 1.0,
                loss_in_bad: 1.0,
            };
        }
        let p_bad_to_good = 1.0 / burst;
        LossModel::GilbertElliott {
            p_good_to_bad: clamp_unit(avg * p_bad_to_good / (1.0 - avg)),
            p_bad_to_good,
            loss_in_good: 0.0,
            loss_in_bad: 1.0,
        }
    }

    /// The long-run loss rate in percent this model converges to.
    pub fn expected_loss_pct(&self) -> f64 {
        match *self {
            LossModel::None => 0.0,
            LossModel::Bernoulli { loss_pct } => clamp_unit(loss_pct / 100.0) * 100.0,
            LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_in_good,
                loss_in_bad,
            } => {
                let (gb, bg) = (clamp_unit(p_good_to_bad), clamp_unit(p_bad_to_good));
                let (lg, lb) = (clamp_unit(loss_in_good), clamp_unit(loss_in_bad));
                if gb + bg == 0.0 {
                    // Never leaves the good state it starts in.
                    return lg * 100.0;
                }
                let share_bad = gb / (gb + bg);
                ((1.0 - share_bad) * lg + share_bad * lb) * 100.0
            }
        }
    }

    /// True when this model never loses a packet.
    pub fn is_lossless(&self) -> bool {
        match *self {
            LossModel::None => true,
            LossModel::Bernoulli { loss_pct } => clamp_unit(loss_pct) == 0.0,
            LossModel::GilbertElliott {
                p_good_to_bad,
                loss_in_good,
                loss_in_bad,
                ..
            } => {
                clamp_unit(loss_in_good) == 0.0
                    && (clamp_unit(loss_in_bad) == 0.0 || clamp_unit(p_good_to_bad) == 0.0)
            }
        }
    }
}

/// Clamps a probability to `0.0..=1.0`; NaN becomes 0.
pub(crate) fn clamp_unit(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursty_reaches_the_requested_average_and_burst() {
        let model = LossModel::bursty(5.0, 3.0);
        let LossModel::GilbertElliott {
            p_bad_to_good,
            loss_in_good,
            loss_in_bad,
            ..
        } = model
        else {
            panic!("bursty must build a Gilbert-Elliott chain, got {model:?}");
        };
        assert!((p_bad_to_good - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!((loss_in_good, loss_in_bad), (0.0, 1.0));
        assert!((model.expected_loss_pct() - 5.0).abs() < 1e-9);
    }

    #[test]
    fn bursty_saturates_instead_of_building_invalid_probabilities() {
        for (avg, burst) in [
            (80.0, 1.0),
            (100.0, 2.0),
            (-3.0, 0.0),
            (f64::NAN, f64::NAN),
            (50.0, f64::INFINITY),
        ] {
            let LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                ..
            } = LossModel::bursty(avg, burst)
            else {
                panic!("bursty must build a Gilbert-Elliott chain");
            };
            assert!((0.0..=1.0).contains(&p_good_to_bad), "{avg} {burst}");
            assert!((0.0..=1.0).contains(&p_bad_to_good), "{avg} {burst}");
        }
        assert_eq!(LossModel::bursty(100.0, 2.0).expected_loss_pct(), 100.0);
    }

    #[test]
    fn default_is_perfect_and_impaired_is_not() {
        assert!(ImpairmentConfig::default().is_perfect());
        let lossy = ImpairmentConfig {
            loss: LossModel::Bernoulli { loss_pct: 1.0 },
            ..Default::default()
        };
        assert!(!lossy.is_perfect());
    }
}
