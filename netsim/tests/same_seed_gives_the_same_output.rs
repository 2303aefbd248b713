//! The model is deterministic: the same config and seed replay exactly.

mod common;

use std::time::Duration;

use netsim::{ImpairmentConfig, LossModel};

fn busy_config() -> ImpairmentConfig {
    ImpairmentConfig {
        loss: LossModel::bursty(8.0, 2.5),
        delay: Duration::from_millis(25),
        jitter: Duration::from_millis(40),
        reorder_pct: 3.0,
        duplicate_pct: 2.0,
        rate_limit_bps: Some(2_000_000),
    }
}

#[test]
fn same_seed_replays_exactly_and_another_seed_does_not() {
    let spacing = Duration::from_millis(2);
    let (first, first_stats) = common::run(&busy_config(), 42, 20_000, spacing);
    let (again, again_stats) = common::run(&busy_config(), 42, 20_000, spacing);
    assert_eq!(first, again);
    assert_eq!(first_stats, again_stats);
    let (other, _) = common::run(&busy_config(), 43, 20_000, spacing);
    assert_ne!(first, other);
}

#[test]
fn changing_the_jitter_leaves_the_loss_pattern_alone() {
    let lossy = ImpairmentConfig {
        loss: LossModel::Bernoulli { loss_pct: 10.0 },
        ..Default::default()
    };
    let jittery = ImpairmentConfig {
        jitter: Duration::from_millis(50),
        ..lossy.clone()
    };
    let spacing = Duration::from_millis(20);
    let received = |config: &ImpairmentConfig| {
        let (deliveries, _) = common::run(config, 5, 5000, spacing);
        let mut seqs: Vec<u64> = deliveries.iter().map(|d| d.seq).collect();
        seqs.sort_unstable();
        seqs
    };
    assert_eq!(received(&lossy), received(&jittery));
}
