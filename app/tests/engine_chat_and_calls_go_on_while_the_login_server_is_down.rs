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
    let lifetime = Duration::from_secs(24);
    let net = Net::start_with(1, |config| config.service.credential_lifetime = lifetime).await;
    let (alice, mut alice_events) = start(&net, "alice", false).await;
    let (bob, mut bob_events) = start(&net, "bob", true).await;

    let Net {
        dir: _dir,
        login,
        supernodes,
    } = net;
    login.shutdown().await;

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

    // The refresh two thirds into the lifetime fails: the user hears before expiry.
    let warning = wait_for(&mut alice_events, "credential_expiring", |e| {
        matches!(e, Event::CredentialExpiring { .. })
    })
    .await;
    let Event::CredentialExpiring { expires_in_s } = warning else {
        unreachable!("matched above");
    };
    assert!(expires_in_s < lifetime.as_secs(), "{expires_in_s}");

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
