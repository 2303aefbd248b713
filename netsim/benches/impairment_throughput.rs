//! Packets per second through `Impairment` on virtual time, against a plain FIFO queue as
//! the baseline measured in the same run. Prints a markdown table.
//!
//! `cargo bench -p netsim --no-default-features --bench impairment_throughput`

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use netsim::{Impairment, ImpairmentConfig, LossModel};

const PACKETS: u64 = 2_000_000;
const SPACING: Duration = Duration::from_micros(100);

/// Offers `PACKETS` 200-byte payload handles, draining deliveries as a simulation would.
fn through_model(config: ImpairmentConfig) -> (Duration, u64) {
    let mut model = Impairment::new(config, 1).with_packet_size(|_: &u64| 200);
    let start = Instant::now();
    let t0 = Instant::now();
    let mut delivered = 0u64;
    for seq in 0..PACKETS {
        let now = t0 + SPACING * seq as u32;
        model.handle_packet(now, seq);
        while let Some(p) = model.poll_packet(now) {
            black_box(p);
            delivered += 1;
        }
    }
    let end = t0 + SPACING * PACKETS as u32 + Duration::from_secs(10);
    while let Some(p) = model.poll_packet(end) {
        black_box(p);
        delivered += 1;
    }
    (start.elapsed(), delivered)
}

fn through_fifo() -> (Duration, u64) {
    let mut queue = VecDeque::new();
    let start = Instant::now();
    let mut delivered = 0u64;
    for seq in 0..PACKETS {
        queue.push_back(black_box(seq));
        while let Some(p) = queue.pop_front() {
            black_box(p);
            delivered += 1;
        }
    }
    (start.elapsed(), delivered)
}

/// One benchmark case: returns its wall time and the packets delivered.
type Case = dyn Fn() -> (Duration, u64);

fn main() {
    let full = ImpairmentConfig {
        loss: LossModel::bursty(5.0, 3.0),
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(30),
        reorder_pct: 1.0,
        duplicate_pct: 0.5,
        rate_limit_bps: Some(100_000_000),
    };
    let cases: Vec<(&str, Box<Case>)> = vec![
        ("baseline: VecDeque push/pop", Box::new(through_fifo)),
        (
            "perfect link (default config)",
            Box::new(|| through_model(ImpairmentConfig::default())),
        ),
        (
            "loss=5% bernoulli",
            Box::new(|| {
                through_model(ImpairmentConfig {
                    loss: LossModel::Bernoulli { loss_pct: 5.0 },
                    ..Default::default()
                })
            }),
        ),
        (
            "delay=40ms,jitter=30ms (~700 in flight)",
            Box::new(|| {
                through_model(ImpairmentConfig {
                    delay: Duration::from_millis(40),
                    jitter: Duration::from_millis(30),
                    ..Default::default()
                })
            }),
        ),
        (
            "everything: loss=5%,burst=3,delay=40ms,jitter=30ms,reorder=1%,dup=0.5%,rate=100mbit",
            Box::new(move || through_model(full.clone())),
        ),
    ];
    println!("{PACKETS} packets per case, one offered every {SPACING:?} of virtual time\n");
    println!("| case | delivered | wall time | packets/s offered | ns/packet |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, case) in cases {
        let (elapsed, delivered) = case();
        let per_sec = PACKETS as f64 / elapsed.as_secs_f64();
        let ns = elapsed.as_nanos() as f64 / PACKETS as f64;
        println!(
            "| {name} | {delivered} | {:.1} ms | {:.1} M | {ns:.0} |",
            elapsed.as_secs_f64() * 1e3,
            per_sec / 1e6
        );
    }
}
