//! Two calls joined by channels, and by real UDP sockets on loopback, each playing a WAV
//! file for about 5 s: each side's recording is the other side's file (aligned
//! normalised correlation at least 0.9 at 0% loss, over the whole file or, when the
//! call shifted its timeline by a frame in a pause, window by window), on the call's
//! timeline.

mod call_media_support;

use call_media_support::*;

use app::call_media::{Sink, Source};

/// Seconds of each file compared with the recording.
const COMPARED_S: f64 = 5.0;
/// Largest plausible delay from one side's microphone to the other's speaker.
const MAX_LAG_SAMPLES: usize = 48 * 300;

async fn call_both_ways(link: (Side, Side)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let a_play = sample("speech_48k.wav");
    // 22.05 kHz: the call resamples it.
    let b_play = sample("device_speech_far.wav");
    let a_rec = dir.path().join("a.wav");
    let b_rec = dir.path().join("b.wav");
    let (a_keys, b_keys) = key_pair(7);
    let (mut a_side, mut b_side) = link;
    let a = a_side.start(
        a_keys,
        Source::Wav(a_play.clone()),
        Sink::Wav(a_rec.clone()),
    );
    let b = b_side.start(
        b_keys,
        Source::Wav(b_play.clone()),
        Sink::Wav(b_rec.clone()),
    );
    // 5.5 s of packets each way: the files and the jitter buffers' tails are through.
    let frames = ((COMPARED_S + 0.5) * 50.0) as usize;
    await_packets(&mut a_side.sent, frames, |_| true).await;
    await_packets(&mut b_side.sent, frames, |_| true).await;
    let (mut a, mut b) = (a, b);
    let a_detail = a.stop_detailed().await;
    let b_detail = b.stop_detailed().await;
    eprintln!("A: {:?}\nB: {:?}", a_detail.legs, b_detail.legs);
    let (a_stats, b_stats) = (a_detail.summary(), b_detail.summary());

    for stats in [&a_stats, &b_stats] {
        assert!(stats.packets_sent >= frames as u64, "{stats:?}");
        assert!(stats.packets_received >= frames as u64 - 5, "{stats:?}");
        assert_eq!(stats.loss_pct, 0.0, "{stats:?}");
        assert!(stats.mos > 4.0, "{stats:?}");
    }

    let a_recording = read_recording(&a_rec);
    let b_recording = read_recording(&b_rec);
    // Time-aligned with the call: one 20 ms frame per tick from start to stop.
    for (rec, stats) in [(&a_recording, &a_stats), (&b_recording, &b_stats)] {
        let seconds = rec.len() as f64 / 48_000.0;
        assert!(
            (seconds - stats.duration_s).abs() < 0.25,
            "recording of {seconds:.2} s for a call of {:.2} s",
            stats.duration_s
        );
    }
    let a_reference = read_wav(&a_play, COMPARED_S);
    let b_reference = read_wav(&b_play, COMPARED_S);
    let (lag_ab, global_ab, corr_ab) =
        heard_correlation(&a_reference, &b_recording, MAX_LAG_SAMPLES);
    let (lag_ba, global_ba, corr_ba) =
        heard_correlation(&b_reference, &a_recording, MAX_LAG_SAMPLES);
    eprintln!(
        "A→B correlation {corr_ab:.3} (global {global_ab:.3} at {:.1} ms); B→A {corr_ba:.3} \
         (global {global_ba:.3} at {:.1} ms)",
        lag_ab as f64 / 48.0,
        lag_ba as f64 / 48.0
    );
    assert!(corr_ab >= 0.9, "A→B correlation {corr_ab:.3}");
    assert!(corr_ba >= 0.9, "B→A correlation {corr_ba:.3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wav_files_play_both_ways_over_channels() {
    let _slot = real_time_slot().await;
    call_both_ways(channel_link()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wav_files_play_both_ways_over_loopback_udp() {
    let _slot = real_time_slot().await;
    call_both_ways(udp_link().await).await;
}
