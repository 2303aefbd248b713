//! Signal analysis for Peerphone's audio tests: how well a recording matches what was played.
//!
//! Tests compare seconds of 48 kHz audio at hundreds of candidate delays. Summed sample by
//! sample that is minutes of work in a debug build, and generic FFT code is compiled in the
//! crate that instantiates it, so an FFT called from a test crate runs unoptimised too.
//! This crate instantiates it here, and the workspace builds this crate optimised in every
//! profile: the analysis takes milliseconds whatever the test's profile.
//!
//! It holds no test policy (thresholds, windows): the tests decide what passes.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// Normalized correlations of `played[from..to]` against `heard` shifted by every lag in
/// `min_lag..=max_lag`: entry `d` compares `played[n]` with `heard[n + min_lag + d]`.
/// Samples outside `heard` count as silence; a silent side gives 0.
///
/// # Panics
/// When `from..to` is not a non-empty range inside `played` or `max_lag < min_lag`: both are
/// mistakes in the calling test.
pub fn correlations(
    played: &[f64],
    heard: &[f64],
    from: usize,
    to: usize,
    min_lag: i64,
    max_lag: i64,
) -> Vec<f64> {
    assert!(from < to && to <= played.len(), "bad range {from}..{to}");
    let len = to - from;
    let lags = usize::try_from(max_lag - min_lag).expect("max_lag >= min_lag") + 1;
    let start = from as i64 + min_lag;
    let shifted: Vec<f64> = (0..len + lags)
        .map(|k| {
            usize::try_from(start + k as i64)
                .ok()
                .and_then(|m| heard.get(m))
                .copied()
                .unwrap_or(0.0)
        })
        .collect();
    // Circular correlation of a zero-padded pair equals the linear one when the size holds
    // both: entry d sums a[i] * b[i + d] with i + d < len + lags <= size.
    let size = (len + lags).next_power_of_two();
    let mut planner = FftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(size);
    let inverse = planner.plan_fft_inverse(size);
    let spectrum = |signal: &[f64]| {
        let mut buffer: Vec<Complex<f64>> = signal
            .iter()
            .map(|&x| Complex::new(x, 0.0))
            .chain(std::iter::repeat(Complex::new(0.0, 0.0)))
            .take(size)
            .collect();
        forward.process(&mut buffer);
        buffer
    };
    let a = spectrum(&played[from..to]);
    let mut cross: Vec<Complex<f64>> = spectrum(&shifted)
        .iter()
        .zip(&a)
        .map(|(b, a)| a.conj() * b)
        .collect();
    inverse.process(&mut cross);
    let xx: f64 = played[from..to].iter().map(|x| x * x).sum();
    let mut energy = vec![0.0; shifted.len() + 1];
    for (k, y) in shifted.iter().enumerate() {
        energy[k + 1] = energy[k] + y * y;
    }
    (0..lags)
        .map(|d| {
            let xy = cross[d].re / size as f64;
            let yy = energy[d + len] - energy[d];
            // Rounding leaves tiny non-zero energies where the signal is silent.
            if xx <= f64::EPSILON || yy <= f64::EPSILON {
                0.0
            } else {
                xy / (xx * yy).sqrt()
            }
        })
        .collect()
}

/// The lag in `min_lag..=max_lag` with the highest [`correlations`] over `from..to`, and
/// that correlation.
///
/// # Panics
/// As [`correlations`].
pub fn best_lag(
    played: &[f64],
    heard: &[f64],
    from: usize,
    to: usize,
    min_lag: i64,
    max_lag: i64,
) -> (i64, f64) {
    correlations(played, heard, from, to, min_lag, max_lag)
        .into_iter()
        .enumerate()
        .max_by(|(_, a), (_, b)| a.total_cmp(b))
        .map(|(d, c)| (min_lag + d as i64, c))
        .expect("invariant: the lag range holds at least one lag")
}

/// The power of `samples` at `frequency_hz` relative to their total power (0 to 1), by the
/// Goertzel algorithm: how much of a recording is one test tone.
pub fn tone_share(samples: &[f64], rate_hz: f64, frequency_hz: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let omega = 2.0 * std::f64::consts::PI * frequency_hz / rate_hz;
    let coeff = 2.0 * omega.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let tone_power = (s1 * s1 + s2 * s2 - coeff * s1 * s2) * 2.0 / samples.len() as f64;
    let total_power: f64 = samples.iter().map(|x| x * x).sum::<f64>();
    if total_power <= f64::EPSILON {
        0.0
    } else {
        (tone_power / total_power).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: u64, len: usize) -> Vec<f64> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    /// The FFT result equals the direct sum at every lag.
    #[test]
    fn correlations_equal_the_direct_sums() {
        let played = noise(1, 3_000);
        let heard = noise(2, 3_200);
        let (from, to, min_lag, max_lag) = (500, 2_500, -300, 400);
        let fast = correlations(&played, &heard, from, to, min_lag, max_lag);
        for (d, fast) in fast.iter().enumerate() {
            let lag = min_lag + d as i64;
            let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
            for (n, x) in played.iter().enumerate().take(to).skip(from) {
                let y = usize::try_from(n as i64 + lag)
                    .ok()
                    .and_then(|m| heard.get(m))
                    .copied()
                    .unwrap_or(0.0);
                xy += x * y;
                xx += x * x;
                yy += y * y;
            }
            let direct = xy / (xx * yy).sqrt();
            assert!(
                (fast - direct).abs() < 1e-9,
                "lag {lag}: {fast} vs {direct}"
            );
        }
    }

    #[test]
    fn best_lag_finds_a_delayed_copy() {
        let played = noise(3, 10_000);
        let delay = 137;
        let mut heard = vec![0.0; delay];
        heard.extend(played.iter().map(|x| 0.5 * x));
        let (lag, correlation) = best_lag(&played, &heard, 1_000, 8_000, -500, 500);
        assert_eq!(lag, delay as i64);
        assert!(correlation > 0.999_999, "{correlation}");
    }

    #[test]
    fn silence_correlates_with_nothing() {
        let played = noise(4, 2_000);
        let heard = vec![0.0; 2_000];
        assert!(
            correlations(&played, &heard, 0, 1_000, 0, 10)
                .iter()
                .all(|c| *c == 0.0)
        );
    }

    #[test]
    fn tone_share_tells_a_tone_from_another() {
        let rate = 48_000.0;
        let tone: Vec<f64> = (0..48_000)
            .map(|n| (2.0 * std::f64::consts::PI * 440.0 * n as f64 / rate).sin())
            .collect();
        assert!(tone_share(&tone, rate, 440.0) > 0.95);
        assert!(tone_share(&tone, rate, 660.0) < 0.01);
        assert_eq!(tone_share(&[], rate, 440.0), 0.0);
    }
}
