//! Duplication delivers extra copies; the rate limit paces packets and tail-drops when its
//! queue is full; the in-flight cap bounds memory.

mod common;

use std::time::{Duration, Instant};

use netsim::{Impairment, ImpairmentConfig};

#[test]
fn duplicated_packets_arrive_twice_at_the_configured_rate() {
    let config = ImpairmentConfig {
        duplicate_pct: 10.0,
        ..Default::default()
    };
    let count = 20_000u64;
    let (deliveries, stats) = common::run(&config, 8, count, Duration::from_millis(1));
    assert_eq!(stats.delivered, count + stats.duplicated);
    let tolerance = 5.0 * (0.1 * 0.9 * count as f64).sqrt();
    assert!(
        (stats.duplicated as f64 - 2000.0).abs() < tolerance,
        "{stats:?}"
    );
    let mut copies = vec![0u32; count as usize];
    for d in &deliveries {
        copies[d.seq as usize] += 1;
    }
    assert!(copies.iter().all(|&c| c == 1 || c == 2));
    assert_eq!(
        copies.iter().filter(|&&c| c == 2).count() as u64,
        stats.duplicated
    );
}

#[test]
fn bottleneck_paces_packets_at_the_rate_and_drops_what_overflows_its_queue() {
    let config = ImpairmentConfig {
        rate_limit_bps: Some(1_000_000),
        ..Default::default()
    };
    // 1250-byte packets take 10 ms each at 1 Mbit/s; offer one every 5 ms (twice the rate).
    let model = Impairment::new(config, 1).with_packet_size(|_| 1250);
    let (deliveries, stats) = common::run_model(model, 2000, Duration::from_millis(5));
    for w in deliveries.windows(2) {
        assert!(w[1].delivered - w[0].delivered >= Duration::from_millis(10));
    }
    // 10 s of offered traffic through a 1 Mbit/s link carries about 1000 packets.
    let last = deliveries.last().map(|d| d.delivered).unwrap_or_default();
    let throughput_bps = deliveries.len() as f64 * 10_000.0 / last.as_secs_f64();
    assert!(
        (throughput_bps - 1e6).abs() < 0.02e6,
        "throughput {throughput_bps}"
    );
    assert!((stats.dropped_queue as i64 - 1000).abs() < 40, "{stats:?}");
    assert_eq!(stats.dropped, stats.dropped_queue);
    let max_delay = deliveries
        .iter()
        .map(|d| d.one_way_delay())
        .max()
        .unwrap_or_default();
    assert!(max_delay <= netsim::DEFAULT_MAX_QUEUE_DELAY + Duration::from_millis(10));
    assert!(max_delay >= netsim::DEFAULT_MAX_QUEUE_DELAY - Duration::from_millis(10));
}

#[test]
fn packet_size_function_and_explicit_sizes_drive_the_bottleneck() {
    let config = ImpairmentConfig {
        rate_limit_bps: Some(8_000),
        ..Default::default()
    };
    let now = Instant::now();
    let mut model = Impairment::new(config, 1).with_packet_size(|p: &Vec<u8>| p.len());
    model.handle_packet(now, vec![0; 100]); // 100 bytes at 1000 B/s: 100 ms
    assert_eq!(model.poll_timeout(), Some(now + Duration::from_millis(100)));
    model.handle_packet_sized(now, vec![1], 50); // queued behind: 150 ms
    assert_eq!(
        model.poll_packet(now + Duration::from_millis(149)),
        Some(vec![0; 100])
    );
    assert_eq!(model.poll_packet(now + Duration::from_millis(149)), None);
    assert_eq!(
        model.poll_packet(now + Duration::from_millis(150)),
        Some(vec![1])
    );
}

#[test]
fn in_flight_packets_are_capped() {
    let config = ImpairmentConfig {
        delay: Duration::from_secs(1),
        ..Default::default()
    };
    let mut model = Impairment::new(config, 1).with_max_in_flight(10);
    let now = Instant::now();
    for seq in 0..100u64 {
        model.handle_packet(now, seq);
    }
    let stats = model.stats();
    assert_eq!(
        (stats.in_flight, stats.dropped_overflow, stats.dropped),
        (10, 90, 90)
    );
    let later = now + Duration::from_secs(1);
    let out: Vec<u64> = std::iter::from_fn(|| model.poll_packet(later)).collect();
    assert_eq!(out, (0..10).collect::<Vec<_>>());
}
