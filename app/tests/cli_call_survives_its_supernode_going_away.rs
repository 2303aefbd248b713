//! A call whose media flows directly keeps going when the caller's home supernode shuts
//! down mid-call: the caller re-homes on the other supernode, the call ends by its own
//! hang-up, with media received all along.

mod cli_net;

use cli_net::{Net, hung_up};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_goes_on_when_the_callers_supernode_stops() {
    let mut net = Net::start(2).await;
    let alice = net.registered("alice").await;
    let bob = net.registered("bob").await;
    let mut bob_online = bob.spawn(&["online", "--auto-answer"]);
    bob_online.wait_event("logged_in", &[("user", "bob")]).await;

    let mut call = alice.spawn(&["call", "bob", "--seconds", "8"]);
    let logged_in = call.wait_event("logged_in", &[("user", "alice")]).await;
    let home = logged_in["supernode"].as_str().expect("home").to_owned();
    let connected = call.wait_event("call_connected", &[("peer", "bob")]).await;
    assert_eq!(connected["path"], "direct");
    let call_id = connected["call_id"].as_str().expect("id").to_owned();

    let index = net
        .supernodes
        .iter()
        .position(|s| s.quic_addr().to_string() == home)
        .expect("alice's home is one of ours");
    net.supernodes.remove(index).shutdown().await;

    let ended = hung_up(call, &call_id).await;
    let stats = &ended["stats"];
    assert!(
        stats["duration_s"].as_f64().expect("duration") >= 7.0,
        "{stats}"
    );
    // 50 packets a second: most of the 8 s arrived, before and after the supernode left.
    assert!(
        stats["packets_received"].as_u64().expect("received") > 300,
        "{stats}"
    );
    bob_online
        .wait_event("call_ended", &[("call_id", &call_id), ("reason", "hangup")])
        .await;
    bob_online.stop().await;
    net.stop().await;
}
