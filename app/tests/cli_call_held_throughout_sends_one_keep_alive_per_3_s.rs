//! A call held from its connection to its hang-up, between two `peerphone` processes:
//! the callee receives only the keep-alives, one at the hold and then one every 3 s,
//! against 50 audio packets a second when not held. (A separate file from the hold-and-resume
//! test: tests of one file run in parallel, and their networks' relay ports would collide.)

mod cli_net;

use cli_net::{CallWavs, Net, find_event, stat};

/// One 20 ms frame per packet.
const AUDIO_PACKETS_PER_S: f64 = 50.0;
/// While held, one keep-alive every 3 s.
const KEEP_ALIVE_EVERY_S: f64 = 3.0;
/// How far the hold may take effect after the connection: the CLI's timer and the media
/// thread's next tick.
const EDGE_SLACK_S: f64 = 0.1;

/// Held from the connection to the hang-up: the callee receives the keep-alives (one at the
/// hold, then one every 3 s) and at most the audio of the moment before the hold took hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_throughout_carries_one_keep_alive_per_3_s() {
    const HELD_CALL_SECONDS: u64 = 30;
    let net = Net::start(1).await;
    let alice = net.registered("alice").await;
    let bob = net.registered("bob").await;
    let wavs = CallWavs::tones(net.dir.path(), HELD_CALL_SECONDS as f64 + 2.0);
    let mut bob_online = wavs.bob_answers(&bob).await;

    let seconds = HELD_CALL_SECONDS.to_string();
    let lines = alice
        .ok(&wavs.call_args(&seconds, &["--hold-at", "0"]))
        .await;
    let call_id = find_event(&lines, "call_connected")["call_id"]
        .as_str()
        .expect("call id")
        .to_owned();
    find_event(&lines, "call_held");
    bob_online
        .wait_event("call_held", &[("call_id", &call_id)])
        .await;
    let ended = bob_online
        .wait_event("call_ended", &[("call_id", &call_id), ("reason", "hangup")])
        .await;
    bob_online.stop().await;

    let received = stat(&ended["stats"], "packets_received");
    // Keep-alives at 0, 3, ... s; the one due at the hang-up may or may not go out.
    let keep_alives = (HELD_CALL_SECONDS as f64 / KEEP_ALIVE_EVERY_S).ceil();
    // Audio before the hold reaches the media: one edge's slack at the audio rate.
    let early_audio = EDGE_SLACK_S * AUDIO_PACKETS_PER_S;
    eprintln!("held call: {ended}; expected {keep_alives} keep-alives + up to {early_audio} audio");
    assert!(
        received >= keep_alives - 1.0 && received <= keep_alives + 1.0 + early_audio,
        "the callee received {received} packets in a {HELD_CALL_SECONDS} s held call: \
         expected {keep_alives} ± 1 keep-alives and at most {early_audio} audio packets ({ended})"
    );

    net.stop().await;
}
