//! A WAV of tone bursts in steady white noise goes from A to B: with noise suppression on
//! A's capture, the noise B hears between the bursts is more than 10 dB quieter than
//! with it off (the quietest frames of B's recording are the noise-only gaps).

mod call_media_support;

use std::path::Path;

use call_media_support::*;

use app::call_media::{CallMedia, CallMediaConfig, CaptureOptions, Sink, Source};
use proto::peer::MediaParams;

const SECONDS: f64 = 2.5;
const RATE: usize = 48_000;

/// Tone bursts (0.2 s of 440 Hz every 0.4 s) over white noise at about -32 dBFS.
fn write_noisy_tone(path: &Path) {
    let mut seed: u32 = 0x1234_5678;
    let mut samples = Vec::new();
    for n in 0..(SECONDS * RATE as f64) as usize {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
        let t = n as f32 / RATE as f32;
        let tone = if (n / (RATE / 5)).is_multiple_of(2) {
            0.4 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
        } else {
            0.0
        };
        samples.push(((tone + 0.04 * noise) * 32_767.0) as i16);
    }
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&(RATE as u32).to_le_bytes());
    bytes.extend_from_slice(&(RATE as u32 * 2).to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, bytes).expect("write the noisy tone");
}

/// The energy (dBFS) of the quietest fifth of B's 20 ms frames after the first second.
async fn gap_noise_dbfs(capture: CaptureOptions, dir: &Path, name: &str) -> f64 {
    let play = dir.join("noisy_tone.wav");
    if !play.exists() {
        write_noisy_tone(&play);
    }
    let rec = dir.join(name);
    let (a_keys, b_keys) = key_pair(11);
    let (mut a_side, mut b_side) = channel_link();
    let mut a = CallMedia::start(
        CallMediaConfig::new(
            a_keys,
            MediaParams::default(),
            Source::Wav(play),
            Sink::Discard,
            a_side.outgoing.clone(),
            a_side.incoming,
        )
        .with_capture(capture),
    )
    .expect("A starts");
    let mut b = b_side.start(b_keys, Source::Silence, Sink::Wav(rec.clone()));
    await_packets(&mut a_side.sent, (SECONDS * 50.0) as usize, |_| true).await;
    a.stop_detailed().await;
    b.stop_detailed().await;
    let recording = read_recording(&rec);
    let mut energies: Vec<f64> = recording
        .chunks_exact(960)
        .skip(50)
        .map(|frame| {
            let mean_square =
                frame.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / frame.len() as f64;
            10.0 * (mean_square + 1e-12).log10()
        })
        .collect();
    assert!(energies.len() > 40, "{} frames recorded", energies.len());
    energies.sort_by(f64::total_cmp);
    let quiet = &energies[..energies.len() / 5];
    let tone_loudest = energies.last().copied().unwrap_or(f64::MIN);
    let level = quiet.iter().sum::<f64>() / quiet.len() as f64;
    eprintln!("{name}: gap noise {level:.1} dBFS, loudest frame {tone_loudest:.1} dBFS");
    assert!(
        tone_loudest > -20.0,
        "the tone arrives ({tone_loudest:.1} dBFS)"
    );
    level
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_suppression_lowers_the_noise_between_tone_bursts_by_10_db() {
    let _slot = real_time_slot().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let off = gap_noise_dbfs(CaptureOptions::OFF, dir.path(), "off.wav").await;
    let on = gap_noise_dbfs(
        CaptureOptions {
            noise_suppression: true,
            echo_cancellation: false,
        },
        dir.path(),
        "on.wav",
    )
    .await;
    assert!(
        off > -52.0,
        "without suppression the noise arrives ({off:.1} dBFS)"
    );
    assert!(
        off - on > 10.0,
        "noise suppression took only {:.1} dB off the noise ({off:.1} → {on:.1} dBFS)",
        off - on
    );
}
