//! The spec parser never panics on any input, and every spec it accepts prints back to an
//! equal config. Also: no config, however extreme, makes the model panic.

use std::time::{Duration, Instant};

use netsim::{Impairment, ImpairmentConfig, LossModel};
use proptest::prelude::*;

/// Same as the fuzz target `netsim_spec`.
fn check_spec(input: &str) {
    if let Ok(config) = input.parse::<ImpairmentConfig>() {
        let written = config.to_string();
        let reparsed: ImpairmentConfig = written
            .parse()
            .unwrap_or_else(|e| panic!("`{input}` printed as `{written}` which fails: {e}"));
        assert_eq!(reparsed, config, "`{input}` printed as `{written}`");
    }
}

#[test]
fn fuzz_regression_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/netsim_spec");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/netsim_spec exists") {
        let bytes = std::fs::read(entry.expect("corpus entry").path()).expect("read corpus file");
        if let Ok(input) = std::str::from_utf8(&bytes) {
            check_spec(input);
        }
        replayed += 1;
    }
    assert!(replayed > 0, "empty corpus in {}", dir.display());
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(input in ".{0,80}") {
        check_spec(&input);
    }

    #[test]
    fn spec_shaped_strings_parse_or_fail_cleanly(
        items in prop::collection::vec(
            (
                prop::sample::select(vec!["loss", "burst", "ge", "delay", "jitter", "reorder", "dup", "rate", "x"]),
                "[0-9.:%a-z-]{0,12}",
            ),
            0..6,
        )
    ) {
        let spec: Vec<String> = items.iter().map(|(k, v)| format!("{k}={v}")).collect();
        check_spec(&spec.join(","));
    }

    #[test]
    fn extreme_configs_never_panic(
        loss in prop::sample::select(vec![-1.0, 0.0, 50.0, 100.0, 1e300, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
        burst in prop::sample::select(vec![-1.0, 0.0, 1.0, 3.0, 1e300, f64::NAN, f64::INFINITY]),
        bursty in any::<bool>(),
        delay_nanos in any::<u64>(),
        jitter_nanos in any::<u64>(),
        reorder in prop::sample::select(vec![-5.0, 0.0, 50.0, 100.0, 1e9, f64::NAN]),
        dup in prop::sample::select(vec![-5.0, 0.0, 50.0, 100.0, 1e9, f64::NAN]),
        rate in prop::option::of(prop::sample::select(vec![0u64, 1, 1000, u64::MAX])),
        seed in any::<u64>(),
    ) {
        let config = ImpairmentConfig {
            loss: if bursty { LossModel::bursty(loss, burst) } else { LossModel::Bernoulli { loss_pct: loss } },
            delay: Duration::from_nanos(delay_nanos),
            jitter: Duration::from_nanos(jitter_nanos),
            reorder_pct: reorder,
            duplicate_pct: dup,
            rate_limit_bps: rate,
        };
        let mut model = Impairment::new(config, seed).with_packet_size(|p: &Vec<u8>| p.len());
        let now = Instant::now();
        for i in 0..50u8 {
            model.handle_packet(now + Duration::from_millis(u64::from(i)), vec![i; usize::from(i) * 30]);
        }
        let far = now + Duration::from_secs(3 * 3600);
        while model.poll_packet(far).is_some() {}
        let stats = model.stats();
        prop_assert_eq!(stats.offered + stats.duplicated, stats.dropped + stats.delivered);
    }
}
