//! Two engines homed through a real supernode keep chatting and calling after the login
//! server stops, and the user is told before the credential expires while the login server
//! cannot be reached to refresh it.

mod cli_net;

use app::engine::{Engine, EngineConfig, EngineHandle};
use app::events::Event;
use app::login_client::{self, LoginTarget};
use app::profile::Profile;
use cli_net::{Net, PASSWORD, WAIT};
use proto::login::Password;
use proto::{DisplayName, UserName};
use std::time::Duration;
use tokio::sync::mpsc;

fn user(name: &str) -> UserName {
    UserName::new(name).expect("valid")
}

async fn wait_for(
    events: &mut mpsc::Receiver<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let wait = async {
        while let Some(event) = events.recv().await {
            if pred(&event) {
                return event;
            }
        }
        panic!("the engine stopped before {what}");
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} in time"))
}

async fn start(net: &Net, name: &str, answer: bool) -> (EngineHandle, mpsc::Receiver<Event>) {
    let target = LoginTarget {
        addr: net.login.quic_addr(),
        authority: net.login.authority_key(),
    };
    let profile = Profile::open(net.dir.path().join(name)).expect("profile");
    let credential = login_client::register(
        &profile,
        &target,
        &user(name),
        &DisplayName::new(name).expect("valid"),
        &Password::new(PASSWORD).expect("password"),
    )
    .await
    .expect("register");
    let mut config = EngineConfig::new(profile, target, credential);
    config.calls.auto_answer = answer;
    let (handle, mut events) = Engine::start(config).await.expect("engine starts");
    wait_for(&mut events, "logged_in", |e| {
        matches!(
            e,
            Event::LoggedIn {
                supernode: Some(_),
                ..
            }
        )
    })
    .await;
    (handle, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_calls_go_on_and_expiry_is_announced_while_the_login_server_is_down() {
    // The chat and the call are over within about 2 s, well before the refresh two thirds
    // into the lifetime (8 s): the warning cannot be taken for theirs, or theirs for it.
    let lifetime = Duration::from_secs(12);
    let test_started = std::time::Instant::now();
    let net = Net::start_with(1, |config| config.service.credential_lifetime = lifetime).await;
    let (alice, mut alice_events) = start(&net, "alice", false).await;
    let (bob, mut bob_events) = start(&net, "bob", true).await;

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
