//! Packets picked for reordering are overtaken by the ones sent after them.

mod common;

use std::time::Duration;

use netsim::{ImpairmentConfig, REORDER_EXTRA_DELAY_MAX, REORDER_EXTRA_DELAY_MIN};

#[test]
fn about_reorder_pct_of_packets_arrive_after_a_later_one() {
    let config = ImpairmentConfig {
        delay: Duration::from_millis(30),
        reorder_pct: 5.0,
        ..Default::default()
    };
    let count = 40_000;
    let (deliveries, stats) = common::run(&config, 17, count, Duration::from_millis(10));
    assert_eq!(
        deliveries.len() as u64,
        count,
        "reordering must not lose packets"
    );

    let mut highest_seen = None;
    let mut late = 0u64;
    for d in &deliveries {
        match highest_seen {
            Some(h) if d.seq < h => late += 1,
            _ => highest_seen = Some(d.seq),
        }
    }
    let p = 0.05;
    let tolerance = 5.0 * (p * (1.0 - p) * count as f64).sqrt();
    assert!(
        (stats.reordered as f64 - p * count as f64).abs() < tolerance,
        "{} reordered of {count}",
        stats.reordered
    );
    // The extra hold (>= 20 ms) exceeds the 10 ms spacing, so nearly every held packet is
    // overtaken; only a held packet followed by another held one may escape.
    assert!(late <= stats.reordered);
    assert!(
        late as f64 >= 0.9 * stats.reordered as f64,
        "{late} late packets for {} reordered",
        stats.reordered
    );
    for d in &deliveries {
        let delay = d.one_way_delay();
        assert!(delay >= Duration::from_millis(30));
        assert!(delay <= Duration::from_millis(30) + REORDER_EXTRA_DELAY_MAX);
    }
    let held = deliveries
        .iter()
        .filter(|d| d.one_way_delay() >= Duration::from_millis(30) + REORDER_EXTRA_DELAY_MIN)
        .count() as u64;
    assert_eq!(held, stats.reordered);
}
