//! Deterministic synthesis of Peerphone's icon and sounds. Integer-exact inputs and plain
//! `f64` arithmetic make the output the same on every machine, so the committed files can be
//! checked against it.

use std::f64::consts::TAU;
use std::io::Cursor;

pub const SAMPLE_RATE_HZ: u32 = 48_000;

/// Encoding an asset failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
    #[error("WAV encoding failed: {0}")]
    Wav(#[from] hound::Error),
}

/// A note: frequency, start and length in milliseconds, and peak level (0..1).
struct Note {
    freq_hz: f64,
    start_millis: u32,
    length_millis: u32,
    level: f64,
}

/// Renders notes with a soft bell-like timbre (fundamental + two decaying partials) and short
/// attack/release ramps so nothing clicks.
fn render(total_millis: u32, notes: &[Note]) -> Vec<i16> {
    let total = (SAMPLE_RATE_HZ as u64 * total_millis as u64 / 1000) as usize;
    let mut out = vec![0f64; total];
    for note in notes {
        let start = (SAMPLE_RATE_HZ as u64 * note.start_millis as u64 / 1000) as usize;
        let len = (SAMPLE_RATE_HZ as u64 * note.length_millis as u64 / 1000) as usize;
        let attack = (SAMPLE_RATE_HZ as usize / 200).min(len / 2); // 5 ms
        let release = (SAMPLE_RATE_HZ as usize / 50).min(len / 2); // 20 ms
        for i in 0..len {
            let Some(slot) = out.get_mut(start + i) else {
                break;
            };
            let t = i as f64 / SAMPLE_RATE_HZ as f64;
            let ramp = if i < attack {
                i as f64 / attack as f64
            } else if i >= len - release {
                (len - i) as f64 / release as f64
            } else {
                1.0
            };
            let decay = (-t * 3.0).exp();
            let tone = (TAU * note.freq_hz * t).sin()
                + 0.35 * decay * (TAU * 2.0 * note.freq_hz * t).sin()
                + 0.12 * decay * (TAU * 3.0 * note.freq_hz * t).sin();
            *slot += note.level * ramp * (0.55 + 0.45 * decay) * tone / 1.47;
        }
    }
    // Overlapping notes can sum past full scale: normalise to 90 % rather than clip.
    let peak = out.iter().fold(0f64, |m, s| m.max(s.abs()));
    let gain = if peak > 0.9 { 0.9 / peak } else { 1.0 };
    out.iter()
        .map(|s| ((s * gain).clamp(-1.0, 1.0) * 32_000.0).round() as i16)
        .collect()
}

/// An incoming-call ring: a rising four-note figure twice, then a pause (loops to 3 s).
pub fn ringtone() -> Vec<i16> {
    let figure = [659.26, 783.99, 987.77, 1318.51]; // E5 G5 B5 E6
    let mut notes = Vec::new();
    for (burst, offset) in [0u32, 600].into_iter().enumerate() {
        for (i, f) in figure.iter().enumerate() {
            notes.push(Note {
                freq_hz: *f,
                start_millis: offset + i as u32 * 110,
                length_millis: 140,
                level: if burst == 0 { 0.7 } else { 0.8 },
            });
        }
    }
    render(3000, &notes)
}

/// What the caller hears while the other side rings: a soft two-tone pulse (loops to 4 s).
pub fn ringback() -> Vec<i16> {
    let notes = [
        Note {
            freq_hz: 440.0,
            start_millis: 0,
            length_millis: 1000,
            level: 0.35,
        },
        Note {
            freq_hz: 523.25,
            start_millis: 0,
            length_millis: 1000,
            level: 0.3,
        },
    ];
    render(4000, &notes)
}

/// A new-message chime: two quick notes, a fifth apart.
pub fn message_chime() -> Vec<i16> {
    let notes = [
        Note {
            freq_hz: 880.0,
            start_millis: 0,
            length_millis: 120,
            level: 0.6,
        },
        Note {
            freq_hz: 1318.51,
            start_millis: 110,
            length_millis: 260,
            level: 0.6,
        },
    ];
    render(420, &notes)
}

/// End of a call: a falling pair of notes.
pub fn hangup_tone() -> Vec<i16> {
    let notes = [
        Note {
            freq_hz: 783.99,
            start_millis: 0,
            length_millis: 160,
            level: 0.55,
        },
        Note {
            freq_hz: 523.25,
            start_millis: 170,
            length_millis: 260,
            level: 0.55,
        },
    ];
    render(480, &notes)
}

/// The speaker test in settings: a rising major arpeggio and a held chord, about 2 s,
/// clearly audible without being shrill.
pub fn speaker_test() -> Vec<i16> {
    let arpeggio = [523.25, 659.26, 783.99, 1046.50]; // C5 E5 G5 C6
    let mut notes: Vec<Note> = arpeggio
        .iter()
        .enumerate()
        .map(|(i, f)| Note {
            freq_hz: *f,
            start_millis: i as u32 * 180,
            length_millis: 220,
            level: 0.55,
        })
        .collect();
    for f in [523.25, 659.26, 783.99] {
        notes.push(Note {
            freq_hz: f,
            start_millis: 800,
            length_millis: 1000,
            level: 0.3,
        });
    }
    render(2000, &notes)
}

/// Encodes 48 kHz mono 16-bit samples as WAV.
pub fn encode_wav(samples: &[i16]) -> Result<Vec<u8>, SynthError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE_HZ,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = Cursor::new(Vec::new());
    {
        let mut writer = hound::WavWriter::new(&mut cursor, spec)?;
        for s in samples {
            writer.write_sample(*s)?;
        }
        writer.finalize()?;
    }
    Ok(cursor.into_inner())
}

/// Encodes square RGBA pixels as PNG.
pub fn encode_png(size: u32, rgba: &[u8]) -> Result<Vec<u8>, SynthError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, size, size);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgba)?;
    }
    Ok(out)
}

/// Coverage of a pixel by a shape given its signed distance (negative inside), antialiased
/// over one pixel.
fn coverage(distance: f64) -> f64 {
    (0.5 - distance).clamp(0.0, 1.0)
}

/// A rotated rectangle with rounded corners, in pixels of a 256-pixel icon.
struct RoundedBox {
    centre: (f64, f64),
    half_size: (f64, f64),
    radius: f64,
    angle: f64,
}

impl RoundedBox {
    /// Signed distance from `(px, py)` at `scale`.
    fn distance(&self, px: f64, py: f64, scale: f64) -> f64 {
        let (s, c) = self.angle.sin_cos();
        let dx = px - self.centre.0 * scale;
        let dy = py - self.centre.1 * scale;
        let r = self.radius * scale;
        let x = (c * dx + s * dy).abs() - (self.half_size.0 * scale - r);
        let y = (-s * dx + c * dy).abs() - (self.half_size.1 * scale - r);
        let outside = (x.max(0.0).powi(2) + y.max(0.0).powi(2)).sqrt();
        outside + x.max(y).min(0.0) - r
    }
}

/// The app icon: a white handset on a teal disc, with two "signal" arcs. Drawn with signed
/// distance functions so it scales to any size.
pub fn app_icon_rgba(size: u32) -> Vec<u8> {
    let n = size as f64;
    let scale = n / 256.0;
    let mut rgba = Vec::with_capacity((size * size * 4) as usize);
    for y in 0..size {
        for x in 0..size {
            let px = x as f64 + 0.5;
            let py = y as f64 + 0.5;
            let cx = n / 2.0;
            let disc = ((px - cx).powi(2) + (py - cx).powi(2)).sqrt() - 120.0 * scale;
            let disc_cov = coverage(disc);
            // Background gradient from teal to deep blue, top to bottom.
            let t = py / n;
            let mut r = 0.0 + 20.0 * t;
            let mut g = 150.0 - 60.0 * t;
            let mut b = 160.0 + 40.0 * t;
            // Handset: two ear/mouth pieces joined by a tilted bar.
            let a = std::f64::consts::FRAC_PI_4;
            let piece = |centre, half_size| RoundedBox {
                centre,
                half_size,
                radius: 12.0,
                angle: a,
            };
            let bar = piece((110.0, 142.0), (62.0, 14.0)).distance(px, py, scale);
            let ear = piece((66.0, 120.0), (18.0, 26.0)).distance(px, py, scale);
            let mouth = piece((134.0, 188.0), (18.0, 26.0)).distance(px, py, scale);
            let handset = bar.min(ear).min(mouth);
            // Signal arcs to the upper right.
            let ax = px - 140.0 * scale;
            let ay = py - 112.0 * scale;
            let dist = (ax * ax + ay * ay).sqrt();
            let in_sector = ax > 0.0 && ay < 0.0;
            let arc = |radius: f64| (dist - radius * scale).abs() - 6.0 * scale;
            let arcs = if in_sector {
                arc(28.0).min(arc(52.0))
            } else {
                f64::MAX
            };
            let white = coverage(handset).max(coverage(arcs));
            r += (255.0 - r) * white;
            g += (255.0 - g) * white;
            b += (255.0 - b) * white;
            rgba.extend_from_slice(&[
                r.round() as u8,
                g.round() as u8,
                b.round() as u8,
                (255.0 * disc_cov).round() as u8,
            ]);
        }
    }
    rgba
}
