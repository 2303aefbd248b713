//! A call between two `peerphone` processes keeps going when the login server stops
//! mid-call: it ends by its own hang-up with every packet of its duration received, and the
//! callee's recording still carries the caller's tone after the login server is gone.

mod cli_net;

use cli_net::{CallWavs, Net, RATE, hung_up, power_at, read_samples};
use std::time::{Duration, Instant};

const CALL_SECONDS: u64 = 10;
/// One 20 ms frame per packet.
const PACKETS_PER_S: f64 = 50.0;
/// The part of the callee's recording checked for the caller's tone: the last 2 s of the
/// call, leaving out its final half second (the hang-up reaching the callee).
const CHECKED_S: f64 = 2.0;
const END_MARGIN_S: f64 = 0.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_goes_on_when_the_login_server_stops() {
    let net = Net::start(2).await;
    let alice = net.registered("alice").await;
    let bob = net.registered("bob").await;
    let wavs = CallWavs::tones(net.dir.path(), CALL_SECONDS as f64 + 2.0);
    let mut bob_online = wavs.bob_answers(&bob).await;
    let seconds = CALL_SECONDS.to_string();
    let mut call = alice.spawn(&wavs.call_args(&seconds, &[]));
    let connected = call.wait_event("call_connected", &[("peer", "bob")]).await;
    let connected_at = Instant::now();
    let call_id = connected["call_id"].as_str().expect("id").to_owned();

    let Net {
        dir,
        login,
        supernodes,
    } = net;
    login.shutdown().await;
    let login_gone_after = connected_at.elapsed();
    // The checked part of the recording must come after the login server stopped.
    assert!(
        login_gone_after < Duration::from_secs_f64(CALL_SECONDS as f64 - CHECKED_S - END_MARGIN_S),
        "the login server took {login_gone_after:?} to stop"
    );

    let ended = hung_up(call, &call_id).await;
    let bob_ended = bob_online
        .wait_event("call_ended", &[("call_id", &call_id), ("reason", "hangup")])
        .await;
    bob_online.stop().await;

    // Every 20 ms of the call delivered a packet each way: at most one frame at each end of
    // the call is missing.
    for stats in [&ended["stats"], &bob_ended["stats"]] {
        let duration_s = stats["duration_s"].as_f64().expect("duration");
        assert!(duration_s >= CALL_SECONDS as f64, "{stats}");
        let received = stats["packets_received"].as_f64().expect("received");
        assert!(
            received >= (CALL_SECONDS as f64 * PACKETS_PER_S) - 2.0,
            "{stats}"
        );
    }

    // The end of the call, well after the login server stopped, still carries alice's tone.
    let heard_by_bob = read_samples(&wavs.bob_rec);
    let end = heard_by_bob.len() - (END_MARGIN_S * f64::from(RATE)) as usize;
    let start = end - (CHECKED_S * f64::from(RATE)) as usize;
    let tail = &heard_by_bob[start..end];
    let (tone, other) = (power_at(tail, 440.0), power_at(tail, 1000.0));
    assert!(
        tone > 10.0 * other && tone > 1e-3,
        "bob heard alice at the end: {tone} vs {other}"
    );

    for supernode in supernodes {
        supernode.shutdown().await;
    }
    drop(dir);
}
