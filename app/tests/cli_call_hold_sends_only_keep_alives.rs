//! Hold and resume between two `peerphone` processes: a call held from 1 s to 6 s delivers
//! about 5 s × 50 packets fewer to the callee than the same call without hold, i.e. only the
//! keep-alives (one per 3 s) cross while held, and audio flows again after the resume.
//! (`cli_call_held_throughout_sends_one_keep_alive_per_3_s.rs` counts the keep-alives
//! themselves.)

mod cli_net;

use cli_net::{CallWavs, Net, find_event, stat};

// 5 s held: audio leaking through the hold at a tenth of its rate (25 packets) already
// exceeds the tolerance below.
const CALL_SECONDS: u64 = 8;
const HOLD_AT_S: u64 = 1;
const RESUME_AT_S: u64 = 6;
/// One 20 ms frame per packet.
const AUDIO_PACKETS_PER_S: f64 = 50.0;
/// While held, one keep-alive every 3 s.
const KEEP_ALIVE_EVERY_S: f64 = 3.0;
/// How far each edge of the hold (hold, resume) and of the call may sit from its measured
/// place: the CLI's timers, the signaling hop that tells the callee, and the start of the
/// media after `call_connected`. Four edges (connect, hold, resume, hang-up) at 0.1 s each.
const EDGE_SLACK_S: f64 = 0.1;
const EDGES: f64 = 4.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_carries_only_keep_alives_until_resumed() {
    let net = Net::start(2).await;
    let alice = net.registered("alice").await;
    let bob = net.registered("bob").await;
    let wavs = CallWavs::tones(net.dir.path(), CALL_SECONDS as f64 + 2.0);
    let mut bob_online = wavs.bob_answers(&bob).await;

    let seconds = CALL_SECONDS.to_string();
    let (hold_at, resume_at) = (HOLD_AT_S.to_string(), RESUME_AT_S.to_string());
    let mut stats = Vec::new();
    for held in [false, true] {
        let hold: &[&str] = if held {
            &["--hold-at", &hold_at, "--resume-at", &resume_at]
        } else {
            &[]
        };
        let lines = alice.ok(&wavs.call_args(&seconds, hold)).await;
        let call_id = find_event(&lines, "call_connected")["call_id"]
            .as_str()
            .expect("call id")
            .to_owned();
        assert_eq!(find_event(&lines, "call_ended")["reason"], "hangup");
        if held {
            find_event(&lines, "call_held");
            find_event(&lines, "call_resumed");
            bob_online.wait_held_then_resumed(&call_id).await;
        }
        let ended = bob_online
            .wait_event("call_ended", &[("call_id", &call_id), ("reason", "hangup")])
            .await;
        stats.push(ended["stats"].clone());
    }
    bob_online.stop().await;

    let (plain, held) = (&stats[0], &stats[1]);
    let plain_rate = stat(plain, "packets_received") / stat(plain, "duration_s");
    assert!(
        (plain_rate - AUDIO_PACKETS_PER_S).abs() <= AUDIO_PACKETS_PER_S * 0.1,
        "a call without hold carries 50 packets/s: {plain}"
    );
    let hold_s = (RESUME_AT_S - HOLD_AT_S) as f64;
    let keep_alives = (hold_s / KEEP_ALIVE_EVERY_S).floor();
    // The held call at the plain call's measured rate, minus the audio of the hold, plus
    // its keep-alives.
    let expected = plain_rate * (stat(held, "duration_s") - hold_s) + keep_alives;
    let received = stat(held, "packets_received");
    let tolerance = EDGES * EDGE_SLACK_S * AUDIO_PACKETS_PER_S;
    eprintln!(
        "plain call: {plain}\nheld call: {held}\nexpected {expected:.1} ± {tolerance:.0}, received {received}"
    );
    assert!(
        (received - expected).abs() <= tolerance,
        "the callee received {received} packets in the held call, expected {expected:.1} ± {tolerance:.0} \
         (plain {plain}, held {held})"
    );

    net.stop().await;
}
