//! A call between two `peerphone` processes through the supernodes: `call --play --record
//! --seconds --hold-at --resume-at` against `online --auto-answer --play --record`. Both
//! sides report ringing, connection (direct on one machine), hold, resume and the end with
//! packet counts; each recording carries the other side's tone and not its own.

mod cli_net;

use cli_net::Net;
use serde_json::Value;
use std::f64::consts::PI;
use std::path::Path;

const RATE: u32 = 48_000;

/// A 16-bit mono WAV of a sine tone.
fn write_tone(path: &Path, freq_hz: f64, seconds: f64) {
    let samples = (f64::from(RATE) * seconds) as usize;
    let mut data = Vec::with_capacity(samples * 2);
    for n in 0..samples {
        let value =
            (0.5 * (2.0 * PI * freq_hz * n as f64 / f64::from(RATE)).sin() * 32767.0) as i16;
        data.extend_from_slice(&value.to_le_bytes());
    }
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).expect("write wav");
}

/// The samples of a 16-bit PCM WAV.
fn read_samples(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).expect("read recording");
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        if id == b"data" {
            let end = (at + 8 + len).min(bytes.len());
            return bytes[at + 8..end]
                .chunks_exact(2)
                .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                .collect();
        }
        at += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

/// Signal power at one frequency (Goertzel).
fn power_at(samples: &[f64], freq_hz: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * freq_hz / f64::from(RATE)).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

fn find<'a>(lines: &'a [Value], event: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["event"] == event)
        .unwrap_or_else(|| panic!("no {event} in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carries_each_sides_wav_to_the_others_recording() {
    let net = Net::start(2).await;
    let alice = net.peer("alice");
    let bob = net.peer("bob");
    for peer in [&alice, &bob] {
        peer.ok(&["register", &peer.name]).await;
    }
    let files = net.dir.path();
    let (alice_play, bob_play) = (files.join("alice.wav"), files.join("bob.wav"));
    let (alice_rec, bob_rec) = (files.join("alice-rec.wav"), files.join("bob-rec.wav"));
    write_tone(&alice_play, 440.0, 10.0);
    write_tone(&bob_play, 1000.0, 10.0);

    let mut bob_online = bob.spawn(&[
        "online",
        "--auto-answer",
        "--play",
        bob_play.to_str().expect("utf-8"),
        "--record",
        bob_rec.to_str().expect("utf-8"),
    ]);
    bob_online.wait_event("logged_in", &[("user", "bob")]).await;

    let lines = alice
        .ok(&[
            "call",
            "bob",
            "--play",
            alice_play.to_str().expect("utf-8"),
            "--record",
            alice_rec.to_str().expect("utf-8"),
            "--seconds",
            "5",
            "--hold-at",
            "2",
            "--resume-at",
            "3",
        ])
        .await;
    let call_id = find(&lines, "call_ringing")["call_id"]
        .as_str()
        .expect("call id")
        .to_owned();
    let connected = find(&lines, "call_connected");
    assert_eq!(connected["peer"], "bob");
    assert_eq!(connected["path"], "direct", "{connected}");
    find(&lines, "call_held");
    find(&lines, "call_resumed");
    let ended = find(&lines, "call_ended");
    assert_eq!(ended["call_id"], call_id.as_str());
    assert_eq!(ended["reason"], "hangup", "{ended}");
    let stats = &ended["stats"];
    assert!(
        stats["duration_s"].as_f64().expect("duration") >= 4.0,
        "{stats}"
    );
    assert!(
        stats["packets_sent"].as_u64().expect("sent") > 100,
        "{stats}"
    );
    assert!(
        stats["packets_received"].as_u64().expect("received") > 100,
        "{stats}"
    );

    bob_online
        .wait_event("call_incoming", &[("from", "alice"), ("call_id", &call_id)])
        .await;
    bob_online
        .wait_event(
            "call_connected",
            &[("call_id", &call_id), ("path", "direct")],
        )
        .await;
    bob_online
        .wait_event("call_held", &[("call_id", &call_id)])
        .await;
    bob_online
        .wait_event("call_resumed", &[("call_id", &call_id)])
        .await;
    let ended = bob_online
        .wait_event("call_ended", &[("call_id", &call_id), ("reason", "hangup")])
        .await;
    assert!(
        ended["stats"]["packets_received"]
            .as_u64()
            .expect("received")
            > 100
    );
    bob_online.stop().await;

    // Each side heard the other's tone, far above its own.
    let heard_by_bob = read_samples(&bob_rec);
    let heard_by_alice = read_samples(&alice_rec);
    assert!(
        heard_by_bob.len() > RATE as usize * 3,
        "bob recorded the call"
    );
    assert!(
        heard_by_alice.len() > RATE as usize * 3,
        "alice recorded the call"
    );
    let (b440, b1000) = (
        power_at(&heard_by_bob, 440.0),
        power_at(&heard_by_bob, 1000.0),
    );
    let (a440, a1000) = (
        power_at(&heard_by_alice, 440.0),
        power_at(&heard_by_alice, 1000.0),
    );
    assert!(
        b440 > 10.0 * b1000 && b440 > 1e-3,
        "bob heard alice: {b440} vs {b1000}"
    );
    assert!(
        a1000 > 10.0 * a440 && a1000 > 1e-3,
        "alice heard bob: {a1000} vs {a440}"
    );

    net.stop().await;
}
