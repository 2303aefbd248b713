//! A call between two `peerphone` processes through the supernodes: `call --play --record
//! --seconds --hold-at --resume-at` against `online --auto-answer --play --record`. Both
//! sides report ringing, connection (direct on one machine), hold, resume and the end with
//! packet counts; each recording carries the other side's tone and not its own.

mod cli_net;

use cli_net::{CallWavs, Net, RATE, find_event, power_at, read_samples};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carries_each_sides_wav_to_the_others_recording() {
    let net = Net::start(2).await;
    let alice = net.registered("alice").await;
    let bob = net.registered("bob").await;
    let wavs = CallWavs::tones(net.dir.path(), 10.0);
    let mut bob_online = wavs.bob_answers(&bob).await;

    let lines = alice
        .ok(&wavs.call_args("5", &["--hold-at", "2", "--resume-at", "3"]))
        .await;
    let call_id = find_event(&lines, "call_ringing")["call_id"]
        .as_str()
        .expect("call id")
        .to_owned();
    let connected = find_event(&lines, "call_connected");
    assert_eq!(connected["peer"], "bob");
    assert_eq!(connected["path"], "direct", "{connected}");
    find_event(&lines, "call_held");
    find_event(&lines, "call_resumed");
    let ended = find_event(&lines, "call_ended");
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
    bob_online.wait_held_then_resumed(&call_id).await;
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
    let heard_by_bob = read_samples(&wavs.bob_rec);
    let heard_by_alice = read_samples(&wavs.alice_rec);
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
