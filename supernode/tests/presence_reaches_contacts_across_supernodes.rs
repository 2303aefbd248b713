//! With 20 supernodes and 100 clients, authorised contacts see each other's presence
//! changes within 2 s (virtual), across supernodes; strangers receive nothing; invisible
//! users look offline to everyone.

mod support;

use proto::supernode::{PresenceStatus, SearchQuery, SupernodeToClient};
use std::time::Duration;
use support::{befriend, home_of, homed_network, status};

#[test]
fn presence_reaches_contacts_on_other_supernodes_within_two_seconds() {
    let mut sim = homed_network(11);
    let pairs: Vec<(usize, usize)> = (0..50).map(|i| (i, i + 50)).collect();
    befriend(&mut sim, &pairs);
    sim.run_for(Duration::from_secs(3));
    // Everyone is online and sees their contact online.
    for &(a, b) in &pairs {
        assert_eq!(
            sim.clients[a].log.view.get(&sim.user(b)).map(|p| p.status),
            Some(PresenceStatus::Online),
            "{a} sees {b}"
        );
    }
    let cross = pairs
        .iter()
        .filter(|(a, b)| home_of(&sim, *a) != home_of(&sim, *b))
        .count();
    assert!(cross >= 40, "most pairs are homed apart: {cross}");

    let mut delays = Vec::new();
    for &(a, b) in &pairs {
        let changed_at = sim.now;
        sim.set_presence(a, status(PresenceStatus::Away));
        let who = sim.user(a);
        let deadline = changed_at + Duration::from_secs(2);
        let seen = sim.run_until(deadline, |s| {
            s.clients[b].log.view.get(&who).map(|p| p.status) == Some(PresenceStatus::Away)
        });
        assert!(seen, "{b} did not see {a} go away within 2 s");
        delays.push(sim.now - changed_at);
    }
    delays.sort();
    assert!(delays[delays.len() - 1] < Duration::from_secs(2));
    assert!(delays[0] > Duration::ZERO);
}

#[test]
fn strangers_never_receive_presence() {
    let mut sim = homed_network(12);
    let pairs: Vec<(usize, usize)> = (0..40).map(|i| (i, i + 40)).collect();
    befriend(&mut sim, &pairs);
    // Clients 80..100 watch users who never authorised them.
    for i in 80..100 {
        let targets = vec![sim.user(i - 80), sim.user(i - 40)];
        sim.set_watch(i, targets);
    }
    sim.run_for(Duration::from_secs(3));
    for i in 0..40 {
        sim.set_presence(i, status(PresenceStatus::Busy));
    }
    sim.run_for(Duration::from_secs(3));
    for i in 0..40 {
        sim.set_presence(i, status(PresenceStatus::Online));
    }
    sim.run_for(Duration::from_secs(3));
    for i in 80..100 {
        assert!(
            sim.clients[i].log.presence.is_empty(),
            "stranger {i} received {:?}",
            sim.clients[i].log.presence
        );
    }
    // The real contacts did see both changes.
    for i in 40..80 {
        let seen: Vec<PresenceStatus> = sim.clients[i]
            .log
            .presence
            .iter()
            .map(|(_, _, p)| p.status)
            .collect();
        assert!(seen.contains(&PresenceStatus::Busy), "{i}: {seen:?}");
    }
    // A stranger's search shows the user, but offline.
    let q = sim
        .search(85, SearchQuery::Exact(sim.user(5)))
        .expect("homed");
    sim.run_for(Duration::from_secs(2));
    let Some((_, Some((_, SupernodeToClient::SearchResults { hits, .. })))) =
        sim.clients[85].log.searches.get(&q)
    else {
        panic!("no answer");
    };
    assert_eq!(hits[0].presence.status, PresenceStatus::Offline);
}

#[test]
fn invisible_users_look_offline_to_everyone() {
    let mut sim = homed_network(13);
    let pairs: Vec<(usize, usize)> = (0..50).map(|i| (i, i + 50)).collect();
    befriend(&mut sim, &pairs);
    sim.run_for(Duration::from_secs(3));
    for i in 0..10 {
        sim.set_presence(i, status(PresenceStatus::Invisible));
    }
    sim.run_for(Duration::from_secs(3));
    for i in 0..10 {
        let friend = &sim.clients[i + 50];
        assert_eq!(
            friend.log.view.get(&sim.user(i)).map(|p| p.status),
            Some(PresenceStatus::Offline),
            "friend of invisible {i}"
        );
        assert!(
            friend
                .log
                .presence
                .iter()
                .all(|(_, _, p)| p.status != PresenceStatus::Invisible)
        );
    }
    // Even an authorised contact's search shows them offline, without a home.
    let q = sim
        .search(50, SearchQuery::Exact(sim.user(0)))
        .expect("homed");
    let stranger_q = sim
        .search(99, SearchQuery::Exact(sim.user(1)))
        .expect("homed");
    sim.run_for(Duration::from_secs(2));
    for (client, q) in [(50, q), (99, stranger_q)] {
        let Some((_, Some((_, SupernodeToClient::SearchResults { hits, .. })))) =
            sim.clients[client].log.searches.get(&q)
        else {
            panic!("no answer");
        };
        assert_eq!(hits[0].presence.status, PresenceStatus::Offline);
        assert_eq!(hits[0].home, None);
    }
    // Invisible users still receive routed messages (calls, chat).
    let id = sim.route(50, sim.user(0), b"ring".to_vec()).expect("homed");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.clients[0].log.routed.len(), 1);
    assert!(matches!(
        sim.clients[50].log.route_status.get(&id),
        Some(SupernodeToClient::RouteStatus {
            outcome: proto::supernode::RouteOutcome::Delivered,
            ..
        })
    ));
}

#[test]
fn a_vanished_client_shows_offline_within_sixty_seconds() {
    let mut sim = homed_network(14);
    let pairs: Vec<(usize, usize)> = (0..50).map(|i| (i, i + 50)).collect();
    befriend(&mut sim, &pairs);
    sim.run_for(Duration::from_secs(3));
    let vanished_at = sim.now;
    for i in 0..5 {
        sim.vanish_client(i);
    }
    let deadline = vanished_at + Duration::from_secs(60);
    let names: Vec<_> = (0..5).map(|i| sim.user(i)).collect();
    let all_offline = sim.run_until(deadline, |s| {
        (0..5).all(|i| {
            s.clients[i + 50].log.view.get(&names[i]).map(|p| p.status)
                == Some(PresenceStatus::Offline)
        })
    });
    assert!(all_offline, "contacts still see vanished clients online");
    assert!(
        sim.now - vanished_at > Duration::from_secs(20),
        "not before the keep-alive timeout"
    );
}
