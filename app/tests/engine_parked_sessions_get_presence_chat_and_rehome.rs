//! Idle engines park their supernode sessions (no QUIC connection, sealed heartbeats) and
//! nothing above homing notices: they stay online and searchable, a contact's presence
//! change reaches a parked client within 2 s, a chat reaches it, and when its supernode goes
//! away it re-homes on another one.

use app::engine::{ContactAction, Engine, EngineConfig, EngineHandle};
use app::events::{Event, Status};
use app::login_client::{self, LoginTarget};
use app::profile::Profile;
use login_server::LoginServer;
use login_server::config::ServerConfig;
use proto::login::Password;
use proto::supernode::PresenceStatus;
use proto::{DisplayName, UserName};
use std::time::{Duration, Instant};
use supernode::shell::{RunningSupernode, ShellConfig};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "correct horse battery staple";

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

async fn start_supernode(login: &LoginServer, dir: &std::path::Path) -> RunningSupernode {
    let mut config = ShellConfig::new(login.quic_addr(), login.authority_key(), dir.into());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.directory_poll = Duration::from_millis(300);
    config.heartbeat = Duration::from_secs(2);
    config.core.park_after = Duration::from_secs(1);
    RunningSupernode::start(config)
        .await
        .expect("supernode starts")
}

async fn start_engine(
    login: &LoginServer,
    dir: &std::path::Path,
    name: &str,
) -> (EngineHandle, mpsc::Receiver<Event>) {
    let target = LoginTarget {
        addr: login.quic_addr(),
        authority: login.authority_key(),
    };
    let profile = Profile::open(dir.join(name)).expect("profile");
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
    config.contacts_poll = Duration::from_millis(300);
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

/// Waits until `count` sessions are parked over all supernodes.
async fn parked(supernodes: &[RunningSupernode], count: usize) {
    let wait = async {
        loop {
            let now: usize = supernodes.iter().map(|s| s.stats().parked).sum();
            if now >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("{count} sessions not parked in time"));
}

fn presence_of(who: &str, status: Status) -> impl Fn(&Event) -> bool {
    let who = user(who);
    move |e| matches!(e, Event::Presence { user, status: s, .. } if *user == who && *s == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_clients_stay_online_get_presence_and_chat_and_rehome_when_their_supernode_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let login = LoginServer::start(ServerConfig::local(dir.path().join("login")))
        .await
        .expect("login server");
    let mut supernodes = vec![
        start_supernode(&login, &dir.path().join("sn0")).await,
        start_supernode(&login, &dir.path().join("sn1")).await,
    ];
    let (alice, mut alice_events) = start_engine(&login, dir.path(), "alice").await;
    let (bob, mut bob_events) = start_engine(&login, dir.path(), "bob").await;
    alice
        .contacts(ContactAction::Add(user("bob")))
        .await
        .expect("request");
    bob.contacts(ContactAction::Accept(user("alice")))
        .await
        .expect("accept");
    wait_for(
        &mut alice_events,
        "bob online",
        presence_of("bob", Status::Online),
    )
    .await;
    wait_for(
        &mut bob_events,
        "alice online",
        presence_of("alice", Status::Online),
    )
    .await;

    // Idle: both sessions park, and both users stay online and searchable.
    parked(&supernodes, 2).await;
    let sessions: usize = supernodes.iter().map(|s| s.stats().sessions).sum();
    assert_eq!(sessions, 2, "parked sessions stay homed");

    // A contact's presence change reaches the parked client within 2 s.
    let changed = Instant::now();
    bob.set_presence(PresenceStatus::Away)
        .await
        .expect("presence set");
    wait_for(
        &mut alice_events,
        "bob away",
        presence_of("bob", Status::Away),
    )
    .await;
    let took = changed.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "presence took {took:?} to reach a parked client"
    );

    // A chat reaches a parked client.
    parked(&supernodes, 2).await;
    let id = bob
        .send_chat(user("alice"), "are you parked?".into())
        .await
        .expect("sent")
        .to_string();
    let chat = wait_for(
        &mut alice_events,
        "the chat",
        |e| matches!(e, Event::Chat { id: got, .. } if *got == id),
    )
    .await;
    assert!(matches!(chat, Event::Chat { ref text, .. } if text == "are you parked?"));

    // A parked user is found by search, with the presence it set.
    parked(&supernodes, 2).await;
    let hits = alice.search("bob").await.expect("search");
    assert!(
        hits.iter()
            .any(|h| h.user == user("bob") && h.status == Status::Away),
        "{hits:?}"
    );

    // Alice's supernode goes away while she is parked: she notices and re-homes.
    parked(&supernodes, 2).await;
    let home = alice.home().await.expect("engine").expect("homed");
    let index = supernodes
        .iter()
        .position(|s| s.quic_addr().port() == home.port())
        .expect("alice's home is one of ours");
    let gone = supernodes.remove(index);
    let gone_key = gone.key();
    gone.shutdown().await;
    let event = wait_for(&mut alice_events, "logged_in elsewhere", |e| {
        matches!(
            e,
            Event::LoggedIn {
                supernode: Some(_),
                ..
            }
        )
    })
    .await;
    let Event::LoggedIn {
        supernode: Some(addr),
        ..
    } = event
    else {
        unreachable!("matched above");
    };
    assert_eq!(
        addr.parse::<std::net::SocketAddr>()
            .expect("an address")
            .port(),
        supernodes[0].quic_addr().port(),
        "re-homed on the remaining supernode, not {gone_key:?}"
    );

    alice.shutdown().await;
    bob.shutdown().await;
    for supernode in supernodes {
        supernode.shutdown().await;
    }
    login.shutdown().await;
}
