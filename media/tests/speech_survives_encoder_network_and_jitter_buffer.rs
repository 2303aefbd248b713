//! Done-when: speech through encoder, impairment model, jitter buffer and decoder matches
//! the input (aligned correlation) at 0% and 10% loss.

mod pipeline_support;

use std::time::Duration;

use media::pipeline::{SimConfig, align, correlation, simulate};
use netsim::{ImpairmentConfig, LossModel};
use pipeline_support::{NetsimChannel, speech};

/// Mean correlation of 100 ms windows, each aligned within ±`slack` samples of the global
/// lag, so a single frame inserted by the jitter buffer does not spoil the rest.
fn windowed_correlation(input: &[f32], output: &[f32], lag: usize, slack: usize) -> f64 {
    const WINDOW: usize = 4800;
    let mut sum = 0.0;
    let mut n = 0;
    for start in (0..input.len().saturating_sub(WINDOW)).step_by(WINDOW) {
        let reference = &input[start..start + WINDOW];
        if reference.iter().map(|s| s * s).sum::<f32>() < 1e-3 {
            continue; // silence has no waveform to match
        }
        let score = |d: usize| {
            (start + lag + d)
                .checked_sub(slack)
                .and_then(|at| output.get(at..at + WINDOW))
                .map_or(f64::MIN, |candidate| correlation(reference, candidate))
        };
        // Coarse steps of 8 samples, then refine around the best.
        let coarse = (0..=2 * slack)
            .step_by(8)
            .max_by(|a, b| score(*a).total_cmp(&score(*b)))
            .unwrap_or(slack);
        let best = (coarse.saturating_sub(8)..=coarse + 8)
            .map(score)
            .fold(f64::MIN, f64::max);
        sum += best;
        n += 1;
    }
    sum / f64::from(n.max(1))
}

fn run(loss_pct: f64, seed: u64) -> (f64, f64, media::jitter::JitterCounters) {
    let input = speech();
    let net = ImpairmentConfig {
        loss: LossModel::Bernoulli { loss_pct },
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(10),
        ..ImpairmentConfig::default()
    };
    let out = simulate(
        &input,
        SimConfig {
            tail_frames: 25,
            ..SimConfig::default()
        },
        &mut NetsimChannel::new(net, seed),
    )
    .expect("simulation runs");
    let (lag, global) = align(&input, &out.output, 48 * 200);
    let windowed = windowed_correlation(&input, &out.output, lag, 960);
    eprintln!(
        "loss {loss_pct}%: lag {lag} global {global:.3} windowed {windowed:.3} {:?}",
        out.counters
    );
    (global, windowed, out.counters)
}

#[test]
fn speech_matches_the_input_without_loss() {
    let (global, windowed, counters) = run(0.0, 1);
    assert_eq!(counters.concealed_frames, 0, "{counters:?}");
    assert!(global > 0.85, "aligned correlation {global:.3} at 0% loss");
    assert!(
        windowed > 0.8,
        "windowed correlation {windowed:.3} at 0% loss"
    );
}

#[test]
fn speech_matches_the_input_at_ten_percent_loss() {
    let (global, windowed, counters) = run(10.0, 2);
    assert!(
        counters.fec_frames + counters.dred_frames > 0,
        "loss was recovered: {counters:?}"
    );
    assert!(
        windowed > 0.7,
        "windowed correlation {windowed:.3} at 10% loss (global {global:.3})"
    );
}

#[test]
fn an_unrelated_signal_does_not_match() {
    // Guards the measure itself: a shifted copy of the speech must correlate poorly.
    let input = speech();
    let shifted: Vec<f32> = input.iter().skip(48_000).copied().collect();
    let (lag, _) = align(&input, &shifted, 960);
    assert!(windowed_correlation(&input, &shifted, lag, 960) < 0.5);
}
