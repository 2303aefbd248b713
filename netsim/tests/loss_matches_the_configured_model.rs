//! Measured loss converges to the configured rate; Gilbert-Elliott loss comes in bursts of
//! the configured mean length. Bounds are about five standard deviations wide, and several
//! seeds are checked so a lucky seed cannot hide a broken model.

mod common;

use std::time::Duration;

use netsim::{ImpairmentConfig, LossModel};

const PACKETS: u64 = 200_000;
const SPACING: Duration = Duration::from_millis(1);

fn config(loss: LossModel) -> ImpairmentConfig {
    ImpairmentConfig {
        loss,
        ..Default::default()
    }
}

fn mean(values: &[u64]) -> f64 {
    values.iter().sum::<u64>() as f64 / values.len() as f64
}

#[test]
fn bernoulli_loss_is_within_tolerance_of_the_configured_rate() {
    for (loss_pct, seed) in [(5.0, 1), (5.0, 2), (1.0, 3), (30.0, 4)] {
        let (deliveries, stats) = common::run(
            &config(LossModel::Bernoulli { loss_pct }),
            seed,
            PACKETS,
            SPACING,
        );
        let p = loss_pct / 100.0;
        let tolerance_pct = 5.0 * (p * (1.0 - p) / PACKETS as f64).sqrt() * 100.0;
        assert!(
            (stats.loss_pct() - loss_pct).abs() < tolerance_pct,
            "configured {loss_pct}%, measured {}% (seed {seed})",
            stats.loss_pct()
        );
        assert_eq!(deliveries.len() as u64, PACKETS - stats.dropped);
        // Independent losses: bursts average 1 / (1 - p) packets.
        let bursts = common::loss_bursts(&deliveries, PACKETS);
        let expected_burst = 1.0 / (1.0 - p);
        assert!(
            (mean(&bursts) - expected_burst).abs() < 0.05 * expected_burst,
            "Bernoulli bursts {} vs {expected_burst}",
            mean(&bursts)
        );
    }
}

#[test]
fn gilbert_elliott_loss_has_the_configured_average_and_mean_burst_length() {
    for (avg_pct, burst_len, seed) in [
        (5.0, 3.0, 11),
        (5.0, 3.0, 12),
        (2.0, 6.0, 13),
        (10.0, 1.5, 14),
    ] {
        let model = LossModel::bursty(avg_pct, burst_len);
        let (deliveries, stats) = common::run(&config(model), seed, PACKETS, SPACING);
        // Losses are correlated, which widens the spread: allow a fifth of the average.
        assert!(
            (stats.loss_pct() - avg_pct).abs() < 0.2 * avg_pct,
            "configured {avg_pct}% in bursts of {burst_len}, measured {}% (seed {seed})",
            stats.loss_pct()
        );
        let bursts = common::loss_bursts(&deliveries, PACKETS);
        let measured = mean(&bursts);
        assert!(
            (measured - burst_len).abs() < 0.1 * burst_len,
            "configured bursts of {burst_len}, measured {measured} over {} bursts (seed {seed})",
            bursts.len()
        );
    }
}

#[test]
fn explicit_gilbert_elliott_chain_matches_its_stationary_loss() {
    let model = LossModel::GilbertElliott {
        p_good_to_bad: 0.02,
        p_bad_to_good: 0.25,
        loss_in_good: 0.01,
        loss_in_bad: 0.6,
    };
    let expected = model.expected_loss_pct();
    assert!((expected - (0.01 * 0.25 / 0.27 + 0.6 * 0.02 / 0.27) * 100.0).abs() < 1e-9);
    let (_, stats) = common::run(&config(model), 21, PACKETS, SPACING);
    assert!(
        (stats.loss_pct() - expected).abs() < 0.15 * expected,
        "expected {expected}%, measured {}%",
        stats.loss_pct()
    );
}

#[test]
fn total_loss_drops_everything_and_zero_loss_drops_nothing() {
    let (deliveries, stats) = common::run(
        &config(LossModel::Bernoulli { loss_pct: 100.0 }),
        5,
        1000,
        SPACING,
    );
    assert!(deliveries.is_empty());
    assert_eq!(stats.dropped, 1000);
    let (deliveries, _) = common::run(
        &config(LossModel::Bernoulli { loss_pct: 0.0 }),
        5,
        1000,
        SPACING,
    );
    assert_eq!(deliveries.len(), 1000);
    let (deliveries, _) = common::run(&config(LossModel::bursty(100.0, 4.0)), 5, 1000, SPACING);
    assert!(deliveries.is_empty());
}
