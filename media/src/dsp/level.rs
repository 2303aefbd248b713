//! Level metering for the input and output meters.

/// The level reported for digital silence.
pub const SILENCE_FLOOR_DBFS: f32 = -100.0;

/// Loudness of one frame, in dB relative to full scale (a full-scale square wave is
/// 0 dBFS RMS; a full-scale sine is about -3 dBFS RMS and 0 dBFS peak).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameLevel {
    /// Root-mean-square level.
    pub rms_dbfs: f32,
    /// Largest absolute sample.
    pub peak_dbfs: f32,
}

impl FrameLevel {
    /// Measures `samples` (in `[-1, 1]`). An empty slice is silence.
    pub fn measure(samples: &[f32]) -> Self {
        if samples.is_empty() {
            return Self {
                rms_dbfs: SILENCE_FLOOR_DBFS,
                peak_dbfs: SILENCE_FLOOR_DBFS,
            };
        }
        let mut sum_sq = 0.0f64;
        let mut peak = 0.0f32;
        for &s in samples {
            sum_sq += f64::from(s) * f64::from(s);
            peak = peak.max(s.abs());
        }
        let rms = (sum_sq / samples.len() as f64).sqrt() as f32;
        Self {
            rms_dbfs: amplitude_to_dbfs(rms),
            peak_dbfs: amplitude_to_dbfs(peak),
        }
    }

    /// A meter position in `[0, 1]` for a range of `range_db` below full scale
    /// (e.g. 60 dB), from the RMS level.
    pub fn meter_fraction(&self, range_db: f32) -> f32 {
        if range_db <= 0.0 {
            return 0.0;
        }
        ((self.rms_dbfs + range_db) / range_db).clamp(0.0, 1.0)
    }
}

/// `20 log10(amplitude)`, floored at [`SILENCE_FLOOR_DBFS`]; NaN counts as silence.
pub fn amplitude_to_dbfs(amplitude: f32) -> f32 {
    if amplitude.is_nan() || amplitude <= 0.0 {
        return SILENCE_FLOOR_DBFS;
    }
    (20.0 * amplitude.log10()).max(SILENCE_FLOOR_DBFS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scale_sine_is_minus_three_db_rms_and_zero_peak() {
        let sine: Vec<f32> = (0..960)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin())
            .collect();
        let level = FrameLevel::measure(&sine);
        assert!((level.rms_dbfs + 3.01).abs() < 0.05, "{level:?}");
        assert!(level.peak_dbfs.abs() < 0.01, "{level:?}");
    }

    #[test]
    fn silence_sits_at_the_floor() {
        let level = FrameLevel::measure(&[0.0; 960]);
        assert_eq!(level.rms_dbfs, SILENCE_FLOOR_DBFS);
        assert_eq!(level.meter_fraction(60.0), 0.0);
    }

    #[test]
    fn half_amplitude_is_six_db_down() {
        let level = FrameLevel::measure(&[0.5; 960]);
        assert!((level.rms_dbfs + 6.02).abs() < 0.01);
        assert!((level.meter_fraction(60.0) - (60.0 - 6.02) / 60.0).abs() < 0.001);
    }
}
