//! A three-way conference through the CLI: alice runs `call bob --add carol`, bob and carol
//! answer with `online --auto-answer`. Each plays a tone of its own frequency and records
//! what its speaker would play. Alice (the host) mixes: while all three are in, each
//! recording carries the other two tones and never its own (mix-minus). Then bob leaves
//! (his process stops, hanging up): alice and carol go on hearing each other until alice
//! hangs up, which ends carol's call too.
//!
//! Bob and carol each see an ordinary call with alice under one call id; alice sees
//! `call_connected` for the first leg (bob), `call_participant_joined` for carol's,
//! `call_participant_left` when bob leaves and a single `call_ended`. Dave, also invited, is offline:
//! alice gets an `error` saying so and the others never notice. The recordings are read in quarter
//! seconds and each quarter classified by the tones it carries, so the checks do not
//! depend on when exactly each process joined or left.

mod cli_net;

use cli_net::{Net, RATE, power_at, read_samples, with_audio, write_tone};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const ALICE_HZ: f64 = 440.0;
const BOB_HZ: f64 = 1000.0;
const CAROL_HZ: f64 = 1650.0;
/// From bob's answer to alice's hang-up.
const CALL_SECONDS: u64 = 7;
/// How long the three talk before bob leaves (counted from carol's connection).
const ALL_THREE_FOR: Duration = Duration::from_millis(2_500);
/// One analysed block: a quarter second.
const BLOCK: usize = RATE as usize / 4;
/// A 0.5-amplitude tone over a block has a power of about 750 (`power_at`); the mix and
/// its limiter keep a present tone well above this, and an absent one far below.
const PRESENT: f64 = 100.0;
const ABSENT: f64 = 5.0;

fn all<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

/// Per block of a recording, the power at each frequency.
fn blocks(path: &Path, freqs: [f64; 3]) -> Vec<[f64; 3]> {
    read_samples(path)
        .chunks_exact(BLOCK)
        .map(|block| freqs.map(|hz| power_at(block, hz)))
        .collect()
}

/// How many blocks match `pred`.
fn count(blocks: &[[f64; 3]], pred: impl Fn(&[f64; 3]) -> bool) -> usize {
    blocks.iter().filter(|b| pred(b)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_of_three_participants_hears_the_other_two_and_the_call_outlives_one_leaving() {
    let net = Net::start(2).await;
    let alice = net.registered("alice").await;
    let bob = net.registered("bob").await;
    let carol = net.registered("carol").await;
    // Dave has an account but never comes online.
    net.registered("dave").await;
    let files = net.dir.path();
    let play = |name: &str| files.join(format!("{name}.wav"));
    let record = |name: &str| files.join(format!("{name}-rec.wav"));
    let play_seconds = CALL_SECONDS as f64 + 10.0;
    write_tone(&play("alice"), ALICE_HZ, play_seconds);
    write_tone(&play("bob"), BOB_HZ, play_seconds);
    write_tone(&play("carol"), CAROL_HZ, play_seconds);

    let answer = |peer: &cli_net::Peer| {
        let (play, record) = (play(&peer.name), record(&peer.name));
        peer.spawn(&with_audio(&["online", "--auto-answer"], &play, &record))
    };
    let mut bob_online = answer(&bob);
    let mut carol_online = answer(&carol);
    bob_online.wait_event("logged_in", &[("user", "bob")]).await;
    carol_online
        .wait_event("logged_in", &[("user", "carol")])
        .await;

    let (alice_play, alice_record) = (play("alice"), record("alice"));
    let seconds = CALL_SECONDS.to_string();
    let mut args = with_audio(
        &["call", "bob", "--add", "carol", "--add", "dave"],
        &alice_play,
        &alice_record,
    );
    args.extend(["--seconds", &seconds]);
    let mut call = alice.spawn(&args);

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
    call.wait_event("call_participant_joined", &[("user", "carol")])
        .await;
    let all_three_since = tokio::time::Instant::now();

    // Bob leaves; the others go on.
    tokio::time::sleep_until(all_three_since + ALL_THREE_FOR).await;
    bob_online.stop().await;

    let (code, lines) = call.finish().await;
    assert_eq!(code, Some(0), "{lines:?}");
    let connected: Vec<&str> = all(&lines, "call_connected")
        .iter()
        .map(|c| {
            assert_eq!(c["call_id"], call_id.as_str(), "{c}");
            c["peer"].as_str().expect("peer")
        })
        .collect();
    assert_eq!(
        connected,
        ["bob"],
        "call_connected for the first leg only: {lines:?}"
    );
    // The harness took carol's `call_participant_joined` out of `lines` when it matched
    // above; nobody else joined.
    assert!(
        all(&lines, "call_participant_joined").is_empty(),
        "{lines:?}"
    );
    // Bob's leaving is told while the call goes on; dave, who never joined, is not.
    let left = all(&lines, "call_participant_left");
    assert_eq!(left.len(), 1, "{lines:?}");
    assert_eq!(left[0]["call_id"], call_id.as_str(), "{}", left[0]);
    assert_eq!(left[0]["user"], "bob", "{}", left[0]);
    assert_eq!(left[0]["reason"], "hangup", "{}", left[0]);
    let left_at = lines
        .iter()
        .position(|l| l["event"] == "call_participant_left");
    let ended_at = lines.iter().position(|l| l["event"] == "call_ended");
    assert!(
        left_at < ended_at,
        "bob left before the call ended: {lines:?}"
    );
    let ended = all(&lines, "call_ended");
    assert_eq!(
        ended.len(),
        1,
        "one call_ended for the whole call: {lines:?}"
    );
    assert_eq!(ended[0]["call_id"], call_id.as_str());
    assert_eq!(ended[0]["reason"], "hangup", "{}", ended[0]);
    let alice_duration = ended[0]["stats"]["duration_s"].as_f64().expect("duration");
    assert!(
        alice_duration >= CALL_SECONDS as f64 - 0.5,
        "bob leaving ended alice's call early: {}",
        ended[0]
    );
    // Dave is offline: alice is told he did not join, and the call goes on.
    let errors: Vec<&str> = all(&lines, "error")
        .iter()
        .map(|e| e["message"].as_str().expect("message"))
        .collect();
    assert_eq!(
        errors,
        ["dave did not join the call: unreachable"],
        "{lines:?}"
    );

    // Alice's hang-up ends carol's call, which outlived bob's leaving.
    let carol_ended = carol_online
        .wait_event("call_ended", &[("call_id", &call_id)])
        .await;
    assert_eq!(carol_ended["reason"], "hangup", "{carol_ended}");
    carol_online.stop().await;

    let freqs = [ALICE_HZ, BOB_HZ, CAROL_HZ];
    let (a, b, c) = (0, 1, 2);
    let on = |block: &[f64; 3], i: usize| block[i] > PRESENT;
    let off = |block: &[f64; 3], i: usize| block[i] < ABSENT;
    // A second of all three, as each of them heard it.
    let all_three = (Duration::from_secs(1).as_secs_f64() * 4.0) as usize;
    // Bob leaves a good 4 s before the end; 2 s of that is plenty to see.
    let after_bob = 8;
    for (name, own, others) in [
        ("alice", a, [b, c]),
        ("bob", b, [a, c]),
        ("carol", c, [a, b]),
    ] {
        let blocks = blocks(&record(name), freqs);
        let loudest_own = blocks.iter().map(|p| p[own]).fold(0.0, f64::max);
        assert!(
            loudest_own < ABSENT,
            "{name} hears itself: {loudest_own:.3e} at {} Hz",
            freqs[own]
        );
        let both = count(&blocks, |p| on(p, others[0]) && on(p, others[1]));
        eprintln!(
            "{name}: {both} of {} blocks carry both others",
            blocks.len()
        );
        assert!(
            both >= all_three,
            "{name} heard both others in only {both} quarter seconds: {blocks:?}"
        );
    }
    // After bob left, alice and carol hear each other and no bob.
    for (name, other) in [("alice", c), ("carol", a)] {
        let blocks = blocks(&record(name), freqs);
        let without_bob = count(&blocks, |p| on(p, other) && off(p, b));
        eprintln!("{name}: {without_bob} blocks after bob left");
        assert!(
            without_bob >= after_bob,
            "{name}: only {without_bob} quarter seconds of the call after bob left: {blocks:?}"
        );
    }
    net.stop().await;
}
