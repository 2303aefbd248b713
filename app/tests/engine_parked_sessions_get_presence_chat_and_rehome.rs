//! Idle engines park their supernode sessions (no QUIC connection, sealed heartbeats) and
//! nothing above homing notices: they stay online and searchable, a contact's presence
//! change reaches a parked client within 2 s, a chat reaches it, and when its supernode goes
//! away it re-homes on another one.

mod cli_net;
mod engine_support;

use app::events::{Event, Status};
use cli_net::{Net, WAIT, start_login, supernode_config};
use engine_support::{become_contacts, start_engine, user, wait_for};
use proto::supernode::PresenceStatus;
use std::time::{Duration, Instant};
use supernode::shell::RunningSupernode;

/// A supernode that offers parking after one idle second.
async fn start_supernode(
    net_dir: &std::path::Path,
    name: &str,
    login: &login_server::LoginServer,
) -> RunningSupernode {
    let mut config = supernode_config(login, net_dir.join(name));
    config.directory_poll = Duration::from_millis(300);
    config.heartbeat = Duration::from_secs(2);
    config.core.park_after = Duration::from_secs(1);
    RunningSupernode::start(config)
        .await
        .expect("supernode starts")
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
    let login = start_login(dir.path()).await;
    let supernodes = vec![
        start_supernode(dir.path(), "sn0", &login).await,
        start_supernode(dir.path(), "sn1", &login).await,
    ];
    let mut net = Net {
        dir,
        login,
        supernodes,
    };
    let contacts_poll = |c: &mut app::engine::EngineConfig| {
        c.contacts_poll = Duration::from_millis(300);
    };
    let (alice, mut alice_events) = start_engine(&net, "alice", contacts_poll).await;
    let (bob, mut bob_events) = start_engine(&net, "bob", contacts_poll).await;
    become_contacts(&alice, "alice", &bob, "bob").await;
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
    parked(&net.supernodes, 2).await;
    let sessions: usize = net.supernodes.iter().map(|s| s.stats().sessions).sum();
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
    parked(&net.supernodes, 2).await;
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
    parked(&net.supernodes, 2).await;
    let hits = alice.search("bob").await.expect("search");
    assert!(
        hits.iter()
            .any(|h| h.user == user("bob") && h.status == Status::Away),
        "{hits:?}"
    );

    // Alice's supernode goes away while she is parked: she notices and re-homes.
    parked(&net.supernodes, 2).await;
    let home = alice.home().await.expect("engine").expect("homed");
    let index = net
        .supernodes
        .iter()
        .position(|s| s.quic_addr().port() == home.port())
        .expect("alice's home is one of ours");
    let gone = net.supernodes.remove(index);
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
        net.supernodes[0].quic_addr().port(),
        "re-homed on the remaining supernode, not {gone_key:?}"
    );

    alice.shutdown().await;
    bob.shutdown().await;
    net.stop().await;
}
