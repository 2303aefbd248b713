//! WAV files as virtual microphone and speaker (`--play` / `--record`).

use std::fs::File;
use std::io::BufReader;
use std::io::BufWriter;
use std::path::Path;

use super::convert::RateConverter;
use super::{DeviceError, FRAME_SAMPLES, Frame, FrameSink, FrameSource, SAMPLE_RATE_HZ};

/// Most channels a WAV file may have (WAVE_FORMAT_EXTENSIBLE allows up to 18 speaker
/// positions; more is a broken or hostile file).
const MAX_CHANNELS: usize = 32;

/// A WAV file as a microphone: PCM 8/16/24/32-bit integer or 32-bit float, any rate,
/// any channel count; channels are averaged to mono and the rate converted to 48 kHz.
/// Decoding streams from the file, so memory stays bounded for any file length.
/// After the end of the file (or an unreadable sample) it produces silence.
pub struct WavFileSource {
    reader: hound::WavReader<BufReader<File>>,
    channels: usize,
    int_scale: Option<f32>,
    converter: RateConverter,
    /// Interleaved input for one conversion step.
    chunk: Vec<f32>,
    /// The same, mixed to mono.
    mono: Vec<f32>,
    ended: bool,
    source_rate_hz: u32,
    /// Input frames per conversion step (10 ms).
    step: usize,
}

impl std::fmt::Debug for WavFileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavFileSource")
            .field("channels", &self.channels)
            .field("source_rate_hz", &self.source_rate_hz)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl WavFileSource {
    /// Opens `path` and checks its format.
    pub fn open(path: &Path) -> Result<Self, DeviceError> {
        let path_str = path.display().to_string();
        let reader = hound::WavReader::open(path).map_err(|source| DeviceError::Wav {
            path: path_str.clone(),
            source,
        })?;
        let spec = reader.spec();
        let format_err = |detail: String| DeviceError::WavFormat {
            path: path_str.clone(),
            detail,
        };
        let channels = usize::from(spec.channels);
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(format_err(format!("{channels} channels")));
        }
        let int_scale = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, 32) => None,
            (hound::SampleFormat::Int, bits @ 8..=32) => Some(1.0 / (1u64 << (bits - 1)) as f32),
            (format, bits) => return Err(format_err(format!("{format:?} {bits}-bit samples"))),
        };
        if !(1_000..=384_000).contains(&spec.sample_rate) {
            return Err(format_err(format!("{} Hz", spec.sample_rate)));
        }
        let converter = RateConverter::new(spec.sample_rate, SAMPLE_RATE_HZ, 4 * FRAME_SAMPLES)?;
        let step = (spec.sample_rate as usize / 100).max(1);
        Ok(Self {
            reader,
            channels,
            int_scale,
            converter,
            chunk: Vec::with_capacity(step * channels),
            mono: Vec::with_capacity(step),
            ended: false,
            source_rate_hz: spec.sample_rate,
            step,
        })
    }

    /// The file's sample rate.
    pub fn source_rate_hz(&self) -> u32 {
        self.source_rate_hz
    }

    /// Whether the whole file has been read (frames are silence from then on, after
    /// the resampler's tail).
    pub fn ended(&self) -> bool {
        self.ended
    }

    fn read_step(&mut self) {
        let step = self.step;
        self.chunk.clear();
        let wanted = step * self.channels;
        if !self.ended {
            let read = match self.int_scale {
                Some(scale) => read_into(
                    self.reader
                        .samples::<i32>()
                        .map(|s| s.map(|v| v as f32 * scale)),
                    &mut self.chunk,
                    wanted,
                ),
                None => read_into(self.reader.samples::<f32>(), &mut self.chunk, wanted),
            };
            if read.is_err() {
                tracing::debug!("WAV source: unreadable sample, treating it as the end");
            }
            if read.is_err() || self.chunk.len() < wanted {
                self.ended = true;
            }
        }
        // Whole frames only; a truncated last frame is dropped.
        self.chunk
            .truncate(self.chunk.len() / self.channels * self.channels);
        self.mono.clear();
        let inv = 1.0 / self.channels as f32;
        self.mono.extend(
            self.chunk
                .chunks_exact(self.channels)
                .map(|f| sanitize(f.iter().sum::<f32>() * inv)),
        );
        // Past the end, silence flushes the resampler's tail and then continues.
        self.mono.resize(step, 0.0);
        self.converter.push(&self.mono);
    }
}

/// Clips to full scale; NaN and infinities (a float file may hold anything) become
/// silence.
fn sanitize(s: f32) -> f32 {
    if s.is_finite() {
        s.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

fn read_into(
    samples: impl Iterator<Item = Result<f32, hound::Error>>,
    out: &mut Vec<f32>,
    wanted: usize,
) -> Result<(), hound::Error> {
    for s in samples.take(wanted) {
        out.push(s?);
    }
    Ok(())
}

impl FrameSource for WavFileSource {
    fn next_frame(&mut self, out: &mut Frame) {
        // Each step adds 10 ms of input; a bounded number of steps always suffices.
        let mut ready = false;
        for _ in 0..8 {
            ready = self.converter.pop(out);
            if ready {
                break;
            }
            self.read_step();
        }
        if !ready && !self.converter.pop(out) {
            out.fill(0.0);
        }
        // Resampling a clipped signal can overshoot full scale slightly.
        for s in out.iter_mut() {
            *s = s.clamp(-1.0, 1.0);
        }
    }
}

/// A WAV file as a speaker: 48 kHz mono 16-bit PCM, one frame after another. Behind a
/// [`PacedSink`](super::PacedSink) it records a call time-aligned with wall time.
pub struct WavRecorder {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    path: String,
    frames_written: u64,
}

impl std::fmt::Debug for WavRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavRecorder")
            .field("frames_written", &self.frames_written)
            .finish_non_exhaustive()
    }
}

impl WavRecorder {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, DeviceError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE_HZ,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let path_str = path.display().to_string();
        let writer = hound::WavWriter::create(path, spec).map_err(|source| DeviceError::Wav {
            path: path_str.clone(),
            source,
        })?;
        Ok(Self {
            writer: Some(writer),
            path: path_str,
            frames_written: 0,
        })
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    fn wav_err(&self, source: hound::Error) -> DeviceError {
        DeviceError::Wav {
            path: self.path.clone(),
            source,
        }
    }
}

impl FrameSink for WavRecorder {
    fn put_frame(&mut self, frame: &Frame) -> Result<(), DeviceError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut result = Ok(());
        for &s in frame {
            if let Err(e) = writer.write_sample(to_i16(s)) {
                result = Err(e);
                break;
            }
        }
        result.map_err(|e| self.wav_err(e))?;
        self.frames_written += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), DeviceError> {
        match self.writer.take() {
            Some(w) => w.finalize().map_err(|e| self.wav_err(e)),
            None => Ok(()),
        }
    }
}

impl Drop for WavRecorder {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!(error = %e, "WAV recorder could not finish its file");
        }
    }
}

/// Converts a sample in `[-1, 1]` to 16-bit PCM, clipping beyond full scale.
pub(crate) fn to_i16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * 32767.0).round() as i16
}
