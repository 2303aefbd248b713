//! Mono sample-rate conversion between a device's rate and the pipeline's 48 kHz.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::DeviceError;

/// Converts a mono stream from one fixed rate to another, chunk by chunk, with
/// rubato's FFT resampler (fixed ratio; device clocks are treated as exact, the jitter
/// buffer absorbs drift). Equal rates pass through untouched with no delay.
///
/// All buffers are allocated in [`new`](Self::new); [`push`](Self::push) and
/// [`pop`](Self::pop) never allocate. Output that is not popped in time is bounded:
/// the oldest samples are dropped beyond [`capacity`](Self::capacity).
pub struct RateConverter {
    from_hz: u32,
    to_hz: u32,
    resampler: Option<Fft<f32>>,
    /// Input waiting for a full resampler chunk.
    pending_in: Vec<f32>,
    /// Resampled output not yet popped, oldest first.
    pending_out: Vec<f32>,
    scratch_out: Vec<f32>,
    capacity: usize,
    dropped_samples: u64,
}

impl std::fmt::Debug for RateConverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateConverter")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field("available", &self.pending_out.len())
            .finish_non_exhaustive()
    }
}

impl RateConverter {
    /// A converter from `from_hz` to `to_hz` holding at most `capacity_samples` of
    /// output (at `to_hz`) between `push` and `pop`.
    pub fn new(from_hz: u32, to_hz: u32, capacity_samples: usize) -> Result<Self, DeviceError> {
        let err = |detail: String| DeviceError::Resampler {
            from_hz,
            to_hz,
            detail,
        };
        if from_hz == 0 || to_hz == 0 {
            return Err(err("rates must be positive".into()));
        }
        let resampler = if from_hz == to_hz {
            None
        } else {
            // 10 ms chunks: short enough for interactive audio, long enough to keep the
            // FFT cheap.
            let chunk = (from_hz as usize / 100).max(1);
            Some(
                Fft::<f32>::new(from_hz as usize, to_hz as usize, chunk, 1, FixedSync::Input)
                    .map_err(|e| err(e.to_string()))?,
            )
        };
        let (in_max, out_max) = resampler
            .as_ref()
            .map_or((0, 0), |r| (r.input_frames_max(), r.output_frames_max()));
        let capacity = capacity_samples.max(out_max);
        Ok(Self {
            from_hz,
            to_hz,
            resampler,
            pending_in: Vec::with_capacity(in_max),
            pending_out: Vec::with_capacity(capacity + out_max),
            scratch_out: vec![0.0; out_max],
            capacity,
            dropped_samples: 0,
        })
    }

    /// Input rate.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output rate.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Most output samples held before the oldest are dropped.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Output samples ready to pop.
    pub fn available(&self) -> usize {
        self.pending_out.len()
    }

    /// Input samples waiting for a full resampler chunk.
    pub fn pending_input(&self) -> usize {
        self.pending_in.len()
    }

    /// Output samples dropped so far because nobody popped them.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }

    /// The resampler's own delay in output samples (0 when the rates are equal). The
    /// chunking adds up to one chunk (10 ms) of input on top.
    pub fn delay_samples(&self) -> usize {
        self.resampler.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Input samples per resampler chunk (0 when the rates are equal).
    pub fn chunk_input_samples(&self) -> usize {
        self.resampler.as_ref().map_or(0, |r| r.input_frames_next())
    }

    /// Feeds input samples at `from_hz`.
    pub fn push(&mut self, mut input: &[f32]) {
        let Some(resampler) = self.resampler.as_mut() else {
            append_bounded(
                &mut self.pending_out,
                input,
                self.capacity,
                &mut self.dropped_samples,
            );
            return;
        };
        while !input.is_empty() {
            let need = resampler.input_frames_next();
            let take = need.saturating_sub(self.pending_in.len()).min(input.len());
            self.pending_in.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending_in.len() < need {
                break;
            }
            let written = run_chunk(resampler, &self.pending_in[..need], &mut self.scratch_out);
            self.pending_in.clear();
            append_bounded(
                &mut self.pending_out,
                &self.scratch_out[..written],
                self.capacity,
                &mut self.dropped_samples,
            );
        }
    }

    /// Moves exactly `out.len()` output samples into `out` when that many are ready;
    /// otherwise leaves everything in place and returns `false`.
    pub fn pop(&mut self, out: &mut [f32]) -> bool {
        if self.pending_out.len() < out.len() {
            return false;
        }
        out.copy_from_slice(&self.pending_out[..out.len()]);
        self.pending_out.drain(..out.len());
        true
    }

    /// Forgets buffered samples and resampler state (after a device switch).
    pub fn reset(&mut self) {
        self.pending_in.clear();
        self.pending_out.clear();
        if let Some(r) = self.resampler.as_mut() {
            r.reset();
        }
    }
}

fn run_chunk(resampler: &mut Fft<f32>, input: &[f32], out: &mut [f32]) -> usize {
    let frames_out = out.len();
    let (Ok(adapter_in), Ok(mut adapter_out)) = (
        InterleavedSlice::new(input, 1, input.len()),
        InterleavedSlice::new_mut(out, 1, frames_out),
    ) else {
        return 0;
    };
    match resampler.process_into_buffer(&adapter_in, &mut adapter_out, None) {
        Ok((_, written)) => written,
        // Sizes come from the resampler itself, so this cannot happen; losing one
        // chunk is the safe answer if it ever does.
        Err(_) => 0,
    }
}

fn append_bounded(buf: &mut Vec<f32>, input: &[f32], capacity: usize, dropped: &mut u64) {
    let input = if input.len() > capacity {
        *dropped += (input.len() - capacity) as u64;
        &input[input.len() - capacity..]
    } else {
        input
    };
    let overflow = (buf.len() + input.len()).saturating_sub(capacity);
    if overflow > 0 {
        buf.drain(..overflow);
        *dropped += overflow as u64;
    }
    buf.extend_from_slice(input);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_rates_pass_through_unchanged() {
        let mut c = RateConverter::new(48_000, 48_000, 4_800).expect("converter");
        let input: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        c.push(&input);
        let mut out = vec![0.0; 1000];
        assert!(c.pop(&mut out));
        assert_eq!(out, input);
        assert_eq!(c.delay_samples(), 0);
    }

    #[test]
    fn output_beyond_capacity_drops_oldest() {
        let mut c = RateConverter::new(48_000, 48_000, 100).expect("converter");
        let input: Vec<f32> = (0..250).map(|i| i as f32).collect();
        c.push(&input);
        assert_eq!(c.available(), 100);
        assert_eq!(c.dropped_samples(), 150);
        let mut out = vec![0.0; 100];
        assert!(c.pop(&mut out));
        assert_eq!(out[0], 150.0);
    }

    #[test]
    fn conversion_produces_the_rate_ratio_of_samples() {
        let mut c = RateConverter::new(44_100, 48_000, 48_000).expect("converter");
        c.push(&vec![0.1; 44_100]);
        let produced = c.available() as i64;
        // One second in, about one second out, minus what is still in the chunk buffer.
        assert!((produced - 48_000).abs() <= 480 + 1, "{produced}");
    }
}
