//! The desktop app's status message end to end: what one engine publishes with its status
//! reaches a contact's engine through a real supernode as a `presence` event carrying the
//! message, and the invisible status hides it.

mod cli_net;
mod engine_support;

use app::events::{Event, Status};
use cli_net::Net;
use engine_support::{become_contacts, start_engine, wait_for};
use proto::supernode::{Presence, PresenceStatus, StatusMessage};

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
    let (alice, _alice_events) = start_engine(&net, "alice", |_| {}).await;
    let (bob, mut bob_events) = start_engine(&net, "bob", |_| {}).await;
    become_contacts(&alice, "alice", &bob, "bob").await;
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
