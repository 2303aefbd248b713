//! The default config is a perfect link: no loss, no delay, no reordering, no copies.

mod common;

use std::time::{Duration, Instant};

use netsim::{Impairment, ImpairmentConfig};

#[test]
fn default_config_delivers_every_packet_at_once_and_in_order() {
    let (deliveries, stats) = common::run(
        &ImpairmentConfig::default(),
        7,
        10_000,
        Duration::from_millis(1),
    );
    let seqs: Vec<u64> = deliveries.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, (0..10_000).collect::<Vec<_>>());
    assert!(deliveries.iter().all(|d| d.one_way_delay().is_zero()));
    assert_eq!(
        (stats.offered, stats.delivered, stats.dropped),
        (10_000, 10_000, 0)
    );
    assert_eq!(
        (stats.duplicated, stats.reordered, stats.in_flight),
        (0, 0, 0)
    );
}

#[test]
fn a_burst_offered_at_one_instant_comes_out_in_the_same_order() {
    let mut model = Impairment::new(ImpairmentConfig::default(), 1);
    let now = Instant::now();
    for payload in 0..100u32 {
        model.handle_packet(now, vec![payload as u8; payload as usize]);
    }
    assert_eq!(model.poll_timeout(), Some(now));
    let out: Vec<Vec<u8>> = std::iter::from_fn(|| model.poll_packet(now)).collect();
    let expected: Vec<Vec<u8>> = (0..100u32).map(|p| vec![p as u8; p as usize]).collect();
    assert_eq!(out, expected);
    assert_eq!(model.poll_timeout(), None);
    assert_eq!(model.poll_packet(now + Duration::from_secs(1)), None);
}
