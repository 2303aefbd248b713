//! Two engines homed through a real supernode keep chatting and calling after the login
//! server stops, and the user is told before the credential expires while the login server
//! cannot be reached to refresh it.

mod cli_net;
mod engine_support;

use app::events::Event;
use cli_net::Net;
use engine_support::{start_engine, user, wait_for};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_calls_go_on_and_expiry_is_announced_while_the_login_server_is_down() {
    // The chat and the call are over within about 2 s, well before the refresh two thirds
    // into the lifetime (8 s): the warning cannot be taken for theirs, or theirs for it.
    let lifetime = Duration::from_secs(12);
    let test_started = std::time::Instant::now();
    let net = Net::start_with(1, |config| config.service.credential_lifetime = lifetime).await;
    let (alice, mut alice_events) =
        start_engine(&net, "alice", |c| c.calls.auto_answer = false).await;
    let (bob, mut bob_events) = start_engine(&net, "bob", |c| c.calls.auto_answer = true).await;

    let Net {
        dir: _dir,
        login,
        supernodes,
    } = net;
    login.shutdown().await;
    eprintln!(
        "{:?}: both logged in, login server stopped",
        test_started.elapsed()
    );

    let id = alice
        .send_chat(user("bob"), "the login server is gone".into())
        .await
        .expect("sent")
        .to_string();
    let chat = wait_for(
        &mut bob_events,
        "the chat",
        |e| matches!(e, Event::Chat { id: got, .. } if *got == id),
    )
    .await;
    assert!(matches!(chat, Event::Chat { ref text, ref from, .. }
        if text == "the login server is gone" && from.as_str() == "alice"));
    wait_for(
        &mut alice_events,
        "chat_delivered",
        |e| matches!(e, Event::ChatDelivered { id: got, .. } if *got == id),
    )
    .await;

    eprintln!("{:?}: chat delivered", test_started.elapsed());
    // A call too: found through the supernode, answered, hung up.
    let call_id = alice.dial(user("bob")).await.expect("dialled");
    let id = call_id.to_string();
    wait_for(
        &mut alice_events,
        "call_connected",
        |e| matches!(e, Event::CallConnected { call_id: got, .. } if *got == id),
    )
    .await;
    wait_for(
        &mut bob_events,
        "call_connected",
        |e| matches!(e, Event::CallConnected { call_id: got, .. } if *got == id),
    )
    .await;
    alice.hangup(call_id).await.expect("hung up");
    wait_for(&mut bob_events, "call_ended", |e| {
        matches!(e, Event::CallEnded { call_id: got, reason: app::events::EndReason::Hangup, .. }
            if *got == id)
    })
    .await;

    eprintln!("{:?}: call ended", test_started.elapsed());
    // The refresh two thirds into the lifetime fails: the user hears of it. (It fails only
    // when the login client gives up on the handshake, about 10 s later: with a lifetime
    // this short the warning comes at or after the expiry, expires_in_s 0; a real
    // credential lives for hours.)
    let warning = wait_for(&mut alice_events, "credential_expiring", |e| {
        matches!(e, Event::CredentialExpiring { .. })
    })
    .await;
    let Event::CredentialExpiring { expires_in_s } = warning else {
        unreachable!("matched above");
    };
    assert!(expires_in_s < lifetime.as_secs(), "{expires_in_s}");
    eprintln!(
        "{:?}: credential_expiring, expires in {expires_in_s} s",
        test_started.elapsed()
    );

    // Logging off does not wait for the unreachable login server.
    let started = std::time::Instant::now();
    alice.shutdown().await;
    bob.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for supernode in supernodes {
        supernode.shutdown().await;
    }
}
