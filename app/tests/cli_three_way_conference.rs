//! A three-way conference through the CLI: alice runs `call bob --add carol`, bob and carol
//! answer with `online --auto-answer`. Each plays a tone of its own frequency and records
//! what its speaker would play. Alice (the host) mixes: in the part of the call where all
//! three are in, each recording carries the other two tones and not its own (mix-minus).
//! Bob and carol each see an ordinary call with alice under the same call id; alice sees a
//! `call_connected` per leg and one `call_ended` when she hangs up, which ends both legs.

mod cli_net;

use cli_net::{Net, RATE, power_at, read_samples, write_tone};
use serde_json::Value;
use std::path::Path;

const ALICE_HZ: f64 = 440.0;
const BOB_HZ: f64 = 1000.0;
const CAROL_HZ: f64 = 1650.0;
/// From bob's answer to alice's hang-up; carol joins about a second in.
const CALL_SECONDS: u64 = 6;
/// The stretch of each recording analysed: the last seconds of the call, when all three
/// were in it, leaving out the final moment of the hang-up.
const WINDOW_SECONDS: f64 = 3.0;
const TAIL_SECONDS: f64 = 0.3;

fn all<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

/// The analysed window of a recording.
fn conference_window(path: &Path) -> Vec<f64> {
    let samples = read_samples(path);
    let window = (WINDOW_SECONDS * f64::from(RATE)) as usize;
    let tail = (TAIL_SECONDS * f64::from(RATE)) as usize;
    assert!(
        samples.len() >= window + tail,
        "{} recorded only {} samples",
        path.display(),
        samples.len()
    );
    samples[samples.len() - tail - window..samples.len() - tail].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_of_three_participants_hears_the_other_two_and_not_itself() {
    let net = Net::start(2).await;
    let alice = net.peer("alice");
    let bob = net.peer("bob");
    let carol = net.peer("carol");
    for peer in [&alice, &bob, &carol] {
        peer.ok(&["register", &peer.name]).await;
    }
    let files = net.dir.path();
    let play = |name: &str| files.join(format!("{name}.wav"));
    let record = |name: &str| files.join(format!("{name}-rec.wav"));
    let play_seconds = CALL_SECONDS as f64 + 10.0;
    write_tone(&play("alice"), ALICE_HZ, play_seconds);
    write_tone(&play("bob"), BOB_HZ, play_seconds);
    write_tone(&play("carol"), CAROL_HZ, play_seconds);

    let answer = |peer: &cli_net::Peer| {
        let (play, record) = (play(&peer.name), record(&peer.name));
        peer.spawn(&[
            "online",
            "--auto-answer",
            "--play",
            play.to_str().expect("utf-8"),
            "--record",
            record.to_str().expect("utf-8"),
        ])
    };
    let mut bob_online = answer(&bob);
    let mut carol_online = answer(&carol);
    bob_online.wait_event("logged_in", &[("user", "bob")]).await;
    carol_online
        .wait_event("logged_in", &[("user", "carol")])
        .await;

    let (alice_play, alice_record) = (play("alice"), record("alice"));
    let seconds = CALL_SECONDS.to_string();
    let call = alice.spawn(&[
        "call",
        "bob",
        "--add",
        "carol",
        "--play",
        alice_play.to_str().expect("utf-8"),
        "--record",
        alice_record.to_str().expect("utf-8"),
        "--seconds",
        &seconds,
    ]);

    // Carol is invited by alice into the same call, and it is an ordinary call to her.
    let incoming = carol_online
        .wait_event("call_incoming", &[("from", "alice")])
        .await;
    let call_id = incoming["call_id"].as_str().expect("call id").to_owned();
    let carol_connected = carol_online
        .wait_event("call_connected", &[("call_id", &call_id)])
        .await;
    assert_eq!(carol_connected["peer"], "alice", "{carol_connected}");
    let bob_connected = bob_online
        .wait_event("call_connected", &[("call_id", &call_id)])
        .await;
    assert_eq!(bob_connected["peer"], "alice", "{bob_connected}");

    let (code, lines) = call.finish().await;
    assert_eq!(code, Some(0), "{lines:?}");
    let mut peers: Vec<&str> = all(&lines, "call_connected")
        .iter()
        .map(|c| {
            assert_eq!(c["call_id"], call_id.as_str(), "{c}");
            c["peer"].as_str().expect("peer")
        })
        .collect();
    peers.sort_unstable();
    assert_eq!(
        peers,
        ["bob", "carol"],
        "a call_connected per leg: {lines:?}"
    );
    let ended = all(&lines, "call_ended");
    assert_eq!(
        ended.len(),
        1,
        "one call_ended for the whole call: {lines:?}"
    );
    assert_eq!(ended[0]["call_id"], call_id.as_str());
    assert_eq!(ended[0]["reason"], "hangup", "{}", ended[0]);
    assert!(
        all(&lines, "error").is_empty(),
        "adding carol failed: {lines:?}"
    );

    // Alice's hang-up ends both legs.
    for online in [&mut bob_online, &mut carol_online] {
        let ended = online
            .wait_event("call_ended", &[("call_id", &call_id)])
            .await;
        assert_eq!(ended["reason"], "hangup", "{}: {ended}", online.name);
    }
    bob_online.stop().await;
    carol_online.stop().await;

    for (name, own, others) in [
        ("alice", ALICE_HZ, [BOB_HZ, CAROL_HZ]),
        ("bob", BOB_HZ, [ALICE_HZ, CAROL_HZ]),
        ("carol", CAROL_HZ, [ALICE_HZ, BOB_HZ]),
    ] {
        let window = conference_window(&record(name));
        let own_power = power_at(&window, own);
        let heard = others.map(|hz| power_at(&window, hz));
        eprintln!("{name}: heard {heard:?} of {others:?}, own {own_power:.3e} at {own} Hz");
        // A 0.5-amplitude tone over the window has a power of about 9000 here; the mix
        // and its limiter keep each tone well above a tenth of that.
        for (hz, power) in others.iter().zip(heard) {
            assert!(
                power > 100.0,
                "{name} does not hear the {hz} Hz tone: {power:.3e} (own {own_power:.3e})"
            );
            assert!(
                power > 100.0 * own_power,
                "{name} hears itself: {own_power:.3e} at {own} Hz vs {power:.3e} at {hz} Hz"
            );
        }
    }
    net.stop().await;
}
