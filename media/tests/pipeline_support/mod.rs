//! Shared helpers for the pipeline integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Instant;

use media::pipeline::Channel;
use netsim::{Impairment, ImpairmentConfig};

/// The committed speech sample (see tests/data/SPEECH.md), as f32 in [-1, 1].
pub fn speech() -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/speech_48k.wav");
    let mut reader = hound::WavReader::open(&path).expect("speech sample is committed");
    assert_eq!(reader.spec().sample_rate, 48_000);
    reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("valid sample")) / 32768.0)
        .collect()
}

/// `netsim`'s impairment model as a media channel.
pub struct NetsimChannel(pub Impairment<Vec<u8>>);

impl NetsimChannel {
    pub fn new(config: ImpairmentConfig, seed: u64) -> Self {
        Self(Impairment::new(config, seed))
    }
}

impl Channel for NetsimChannel {
    fn send(&mut self, now: Instant, datagram: Vec<u8>) {
        self.0.handle_packet(now, datagram);
    }

    fn poll_receive(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.0.poll_packet(now)
    }
}
