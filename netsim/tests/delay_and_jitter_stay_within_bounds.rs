//! Every packet's one-way delay lies in `delay..=delay + jitter`, the whole range is used,
//! and jitter alone never reorders packets (the path is FIFO).

mod common;

use std::time::Duration;

use netsim::ImpairmentConfig;

#[test]
fn fixed_delay_delays_every_packet_by_exactly_that_much() {
    let config = ImpairmentConfig {
        delay: Duration::from_millis(40),
        ..Default::default()
    };
    let (deliveries, stats) = common::run(&config, 3, 1000, Duration::from_millis(20));
    assert_eq!(deliveries.len(), 1000);
    assert_eq!(stats.delivered, 1000);
    assert!(
        deliveries
            .iter()
            .all(|d| d.one_way_delay() == Duration::from_millis(40))
    );
}

#[test]
fn jittered_delay_spans_its_range_without_leaving_it_or_reordering() {
    let delay = Duration::from_millis(40);
    let jitter = Duration::from_millis(30);
    let config = ImpairmentConfig {
        delay,
        jitter,
        ..Default::default()
    };
    // Packet spacing below the jitter, so independent jitter would reorder constantly.
    let (deliveries, _) = common::run(&config, 9, 20_000, Duration::from_millis(5));
    assert_eq!(deliveries.len(), 20_000);
    let delays: Vec<Duration> = deliveries.iter().map(|d| d.one_way_delay()).collect();
    let min = delays.iter().min().copied().unwrap_or_default();
    let max = delays.iter().max().copied().unwrap_or_default();
    assert!(min >= delay, "min delay {min:?}");
    assert!(max <= delay + jitter, "max delay {max:?}");
    assert!(
        min < delay + Duration::from_millis(1),
        "jitter never near 0: min {min:?}"
    );
    assert!(
        max > delay + jitter - Duration::from_millis(1),
        "jitter never near max: {max:?}"
    );
    let distinct: std::collections::BTreeSet<Duration> = delays.iter().copied().collect();
    assert!(
        distinct.len() > 1000,
        "delays barely vary: {} distinct",
        distinct.len()
    );
    assert!(
        deliveries.windows(2).all(|w| w[0].seq < w[1].seq),
        "jitter alone must not reorder"
    );
}

#[test]
fn widely_spaced_packets_see_uniform_jitter() {
    // Spacing above delay + jitter: the FIFO rule never bites, so the jitter is the raw
    // uniform sample and its mean sits mid-range.
    let config = ImpairmentConfig {
        jitter: Duration::from_millis(30),
        ..Default::default()
    };
    let (deliveries, _) = common::run(&config, 4, 20_000, Duration::from_millis(50));
    let mean_millis = deliveries
        .iter()
        .map(|d| d.one_way_delay().as_secs_f64() * 1000.0)
        .sum::<f64>()
        / deliveries.len() as f64;
    // Uniform 0..=30 ms: mean 15 ms, standard error 8.7 / sqrt(20000) = 0.06 ms.
    assert!(
        (mean_millis - 15.0).abs() < 0.4,
        "mean jitter {mean_millis} ms"
    );
}
