//! Real engines (the app's network core, without a window) registered and logged in on a
//! `cli_net::Net`, and waiting on their events. A test using it declares `mod cli_net;` too.
#![allow(dead_code)]

use crate::cli_net::{Net, PASSWORD, WAIT};
use app::engine::{ContactAction, Engine, EngineConfig, EngineHandle};
use app::events::Event;
use app::login_client::{self, LoginTarget};
use app::profile::Profile;
use proto::login::Password;
use proto::{DisplayName, UserName};
use tokio::sync::mpsc;

pub fn user(name: &str) -> UserName {
    UserName::new(name).expect("valid")
}

/// The first event matching `pred`, within `WAIT`; the ones before it are dropped.
pub async fn wait_for(
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

/// Registers `name` (display name the same) with the net's login server, starts an engine
/// on a fresh profile with `adjust` applied to its configuration, and waits until it is
/// logged in through a supernode.
pub async fn start_engine(
    net: &Net,
    name: &str,
    adjust: impl FnOnce(&mut EngineConfig),
) -> (EngineHandle, mpsc::Receiver<Event>) {
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
    adjust(&mut config);
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

/// `requester` asks `accepter` (user `accepter_name`) to be contacts and `accepter` agrees
/// to `requester_name`.
pub async fn become_contacts(
    requester: &EngineHandle,
    requester_name: &str,
    accepter: &EngineHandle,
    accepter_name: &str,
) {
    requester
        .contacts(ContactAction::Add(user(accepter_name)))
        .await
        .expect("request");
    accepter
        .contacts(ContactAction::Accept(user(requester_name)))
        .await
        .expect("accept");
}
