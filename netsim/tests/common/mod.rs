//! Drives an `Impairment` with a paced packet stream on virtual time.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use netsim::{Impairment, ImpairmentConfig, ImpairmentStats};

/// One delivered packet: its sequence number and when it was sent and delivered,
/// relative to the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub seq: u64,
    pub sent: Duration,
    pub delivered: Duration,
}

impl Delivery {
    pub fn one_way_delay(&self) -> Duration {
        self.delivered - self.sent
    }
}

/// Sends `count` packets (their sequence numbers) `spacing` apart through a model built
/// from `config` and `seed`, delivering each at its exact delivery time.
pub fn run(
    config: &ImpairmentConfig,
    seed: u64,
    count: u64,
    spacing: Duration,
) -> (Vec<Delivery>, ImpairmentStats) {
    run_model(Impairment::new(config.clone(), seed), count, spacing)
}

pub fn run_model(
    mut model: Impairment<u64>,
    count: u64,
    spacing: Duration,
) -> (Vec<Delivery>, ImpairmentStats) {
    let start = Instant::now();
    let mut deliveries = Vec::new();
    let mut next_seq = 0;
    loop {
        let next_send = (next_seq < count).then(|| start + spacing * next_seq as u32);
        let next_event = match (next_send, model.poll_timeout()) {
            (Some(send), Some(timeout)) => send.min(timeout),
            (Some(send), None) => send,
            (None, Some(timeout)) => timeout,
            (None, None) => break,
        };
        if next_send == Some(next_event) {
            model.handle_packet(next_event, next_seq);
            next_seq += 1;
        }
        while let Some(seq) = model.poll_packet(next_event) {
            deliveries.push(Delivery {
                seq,
                sent: spacing * seq as u32,
                delivered: next_event - start,
            });
        }
        let stats = model.stats();
        assert_eq!(
            stats.offered + stats.duplicated,
            stats.dropped + stats.delivered + stats.in_flight,
            "stats must account for every packet: {stats:?}"
        );
    }
    (deliveries, model.stats())
}

/// Lengths of the runs of consecutive lost sequence numbers, given the delivered ones.
pub fn loss_bursts(deliveries: &[Delivery], count: u64) -> Vec<u64> {
    let mut received = vec![false; count as usize];
    for d in deliveries {
        received[d.seq as usize] = true;
    }
    let mut bursts = Vec::new();
    let mut run = 0;
    for got in received {
        if got {
            if run > 0 {
                bursts.push(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    if run > 0 {
        bursts.push(run);
    }
    bursts
}
