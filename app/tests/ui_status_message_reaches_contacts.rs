//! The desktop app's status message end to end: what one engine publishes with its status
//! reaches a contact's engine through a real supernode as a `presence` event carrying the
//! message, and the invisible status hides it.

mod cli_net;

use app::engine::{ContactAction, Engine, EngineConfig, EngineHandle};
use app::events::{Event, Status};
use app::login_client::{self, LoginTarget};
use app::profile::Profile;
use cli_net::{Net, PASSWORD, WAIT};
use proto::login::Password;
use proto::supernode::{Presence, PresenceStatus, StatusMessage};
use proto::{DisplayName, UserName};
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

async fn start(net: &Net, name: &str) -> (EngineHandle, mpsc::Receiver<Event>) {
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
    let (handle, mut events) = Engine::start(EngineConfig::new(profile, target, credential))
        .await
        .expect("engine starts");
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

fn presence_of<'a>(event: &'a Event, who: &str) -> Option<(Status, &'a str)> {
    match event {
        Event::Presence {
            user,
            status,
            message,
        } if user.as_str() == who => Some((*status, message.as_str())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_message_reaches_a_contact_and_invisible_hides_it() {
    let net = Net::start(1).await;
    let (alice, _alice_events) = start(&net, "alice").await;
    let (bob, mut bob_events) = start(&net, "bob").await;
    alice
        .contacts(ContactAction::Add(user("bob")))
        .await
        .expect("request");
    bob.contacts(ContactAction::Accept(user("alice")))
        .await
        .expect("accept");
    wait_for(&mut bob_events, "alice online", |e| {
        presence_of(e, "alice").is_some_and(|(s, _)| s == Status::Online)
    })
    .await;

    alice
        .set_status(Presence {
            status: PresenceStatus::Busy,
            message: StatusMessage::new("in a meeting").expect("valid"),
        })
        .await
        .expect("set status");
    wait_for(&mut bob_events, "alice's status message", |e| {
        presence_of(e, "alice") == Some((Status::Busy, "in a meeting"))
    })
    .await;

    alice
        .set_status(Presence {
            status: PresenceStatus::Invisible,
            message: StatusMessage::new("secret plans").expect("valid"),
        })
        .await
        .expect("set status");
    let seen = wait_for(&mut bob_events, "alice going invisible", |e| {
        presence_of(e, "alice").is_some_and(|(s, _)| s == Status::Offline)
    })
    .await;
    assert_eq!(presence_of(&seen, "alice"), Some((Status::Offline, "")));

    alice.shutdown().await;
    bob.shutdown().await;
}
