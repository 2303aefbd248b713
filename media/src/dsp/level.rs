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

/// A level meter for the UI: the bar rises at once and falls at `fall_db_per_s`, and a
/// peak marker holds for `hold_frames` frames before falling too (the usual PPM-style
/// ballistics, so the bar does not flicker at 50 updates per second).
#[derive(Debug, Clone)]
pub struct LevelMeter {
    bar_dbfs: f32,
    peak_dbfs: f32,
    peak_age_frames: u32,
    hold_frames: u32,
    fall_db_per_frame: f32,
}

impl Default for LevelMeter {
    /// Falls 20 dB per second; the peak holds one second.
    fn default() -> Self {
        Self::new(20.0, 50)
    }
}

impl LevelMeter {
    /// A meter for 20 ms frames.
    pub fn new(fall_db_per_s: f32, hold_frames: u32) -> Self {
        Self {
            bar_dbfs: SILENCE_FLOOR_DBFS,
            peak_dbfs: SILENCE_FLOOR_DBFS,
            peak_age_frames: 0,
            hold_frames,
            fall_db_per_frame: fall_db_per_s.max(0.0) / 50.0,
        }
    }

    /// Takes one frame; returns the frame's own level.
    pub fn update(&mut self, samples: &[f32]) -> FrameLevel {
        let level = FrameLevel::measure(samples);
        self.bar_dbfs = level
            .rms_dbfs
            .max(self.bar_dbfs - self.fall_db_per_frame)
            .max(SILENCE_FLOOR_DBFS);
        if level.peak_dbfs >= self.peak_dbfs {
            self.peak_dbfs = level.peak_dbfs;
            self.peak_age_frames = 0;
        } else if self.peak_age_frames >= self.hold_frames {
            self.peak_dbfs = (self.peak_dbfs - self.fall_db_per_frame)
                .max(level.peak_dbfs)
                .max(SILENCE_FLOOR_DBFS);
        } else {
            self.peak_age_frames += 1;
        }
        level
    }

    /// The bar's level (RMS with fall-off).
    pub fn bar_dbfs(&self) -> f32 {
        self.bar_dbfs
    }

    /// The held peak.
    pub fn peak_dbfs(&self) -> f32 {
        self.peak_dbfs
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
    fn meter_rises_at_once_and_falls_slowly_with_a_held_peak() {
        let mut m = LevelMeter::new(20.0, 5);
        m.update(&[0.5; 960]);
        let loud = m.bar_dbfs();
        assert!((loud + 6.02).abs() < 0.01);
        // Silence: 0.4 dB per 20 ms frame of fall-off, the peak held 5 frames.
        for _ in 0..5 {
            m.update(&[0.0; 960]);
        }
        assert!(
            (m.bar_dbfs() - (loud - 2.0)).abs() < 0.01,
            "{}",
            m.bar_dbfs()
        );
        assert!((m.peak_dbfs() + 6.02).abs() < 0.01);
        m.update(&[0.0; 960]);
        assert!(m.peak_dbfs() < -6.1);
        // Much later the bar reaches the floor and stays there.
        for _ in 0..1000 {
            m.update(&[0.0; 960]);
        }
        assert_eq!(m.bar_dbfs(), SILENCE_FLOOR_DBFS);
        assert_eq!(m.peak_dbfs(), SILENCE_FLOOR_DBFS);
    }

    #[test]
    fn half_amplitude_is_six_db_down() {
        let level = FrameLevel::measure(&[0.5; 960]);
        assert!((level.rms_dbfs + 6.02).abs() < 0.01);
        assert!((level.meter_fraction(60.0) - (60.0 - 6.02) / 60.0).abs() < 0.001);
    }
}
