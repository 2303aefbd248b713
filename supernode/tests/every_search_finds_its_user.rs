//! Every exact-name search finds its user, through the mesh (with a verifiable credential
//! and the user's home) or, for users the mesh does not know, through the login server;
//! display-name prefix searches find matching users; a repeated search is served from the
//! cache; a search costs O(1) supernode messages whatever the mesh size.

mod support;

use client_core::verify_hit;
use proto::UnixTime;
use proto::supernode::{SearchPrefix, SearchQuery, SearchSource, SupernodeToClient};
use rand::seq::SliceRandom as _;
use rand::{RngExt as _, SeedableRng as _};
use std::time::Duration;
use support::homed_network;

fn answer(
    sim: &supernode::sim::Sim,
    client: usize,
    q: u32,
) -> (SearchSource, Vec<proto::supernode::SearchHit>) {
    match sim.clients[client].log.searches.get(&q) {
        Some((_, Some((_, SupernodeToClient::SearchResults { source, hits, .. })))) => {
            (*source, hits.clone())
        }
        other => panic!("client {client} query {q}: {other:?}"),
    }
}

#[test]
fn every_exact_search_finds_its_user_with_a_verifiable_credential() {
    let mut sim = homed_network(21);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let wall = UnixTime::from_secs(1_800_000_100);
    let authority = sim.authority.public();
    let mut queries = Vec::new();
    for client in 0..100 {
        // Online users and accounts only the login server knows.
        let target = if client % 5 == 0 {
            100 + rng.random_range(0..20)
        } else {
            rng.random_range(0..100)
        };
        let q = sim
            .search(client, SearchQuery::Exact(sim.user(target)))
            .expect("homed");
        queries.push((client, target, q));
    }
    sim.run_for(Duration::from_secs(3));
    let before = sim.total_stats();
    for (client, target, q) in &queries {
        let (source, hits) = answer(&sim, *client, *q);
        assert_eq!(hits.len(), 1, "client {client} searching {target}");
        let hit = &hits[0];
        assert_eq!(hit.user, sim.user(*target));
        let claims = verify_hit(hit, &authority, wall).expect("credential verifies");
        assert_eq!(claims.user, sim.user(*target));
        if *target < 100 {
            assert_ne!(source, SearchSource::LoginServer);
            assert!(hit.home.is_some(), "online users come with their home");
            assert_eq!(
                hit.home.map(|h| h.key),
                sim.clients[*target].homing.home().map(|h| h.key)
            );
        } else {
            assert_eq!(source, SearchSource::LoginServer);
        }
    }
    assert!(before.searches_mesh + before.searches_local + before.searches_cached >= 80);
    assert!(before.searches_login >= 20);
    // Unknown users: found nowhere, answered with no hits rather than an error.
    let q = sim
        .search(
            0,
            SearchQuery::Exact(proto::UserName::new("nobody").expect("valid")),
        )
        .expect("homed");
    sim.run_for(Duration::from_secs(2));
    assert!(answer(&sim, 0, q).1.is_empty());
}

#[test]
fn a_repeated_search_is_answered_from_the_cache() {
    let mut sim = homed_network(22);
    // Two clients on one supernode search the same remote user.
    let by_home = sim.clients_by_home();
    let (_, clients) = by_home
        .iter()
        .find(|(_, c)| c.len() >= 2)
        .expect("some supernode homes two clients");
    let mut clients = clients.iter().copied();
    let (a, b) = (clients.next().expect("two"), clients.next().expect("two"));
    let home = support::home_of(&sim, a);
    let target = (0..100)
        .find(|t| support::home_of(&sim, *t) != home)
        .expect("a user homed elsewhere");
    let q1 = sim
        .search(a, SearchQuery::Exact(sim.user(target)))
        .expect("homed");
    sim.run_for(Duration::from_secs(1));
    let q2 = sim
        .search(b, SearchQuery::Exact(sim.user(target)))
        .expect("homed");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(answer(&sim, a, q1).0, SearchSource::Mesh);
    assert_eq!(answer(&sim, b, q2).0, SearchSource::Cache);
    let (asked_at, Some((answered_at, _))) = sim.clients[b].log.searches[&q2].clone() else {
        panic!("no answer");
    };
    // A cached answer costs one client round trip, no mesh hop.
    assert!(answered_at - asked_at < Duration::from_millis(150));
}

#[test]
fn the_cache_is_invalidated_when_the_user_moves() {
    let mut sim = homed_network(23);
    let target = 7;
    let searcher = (0..100)
        .find(|c| support::home_of(&sim, *c) != support::home_of(&sim, target))
        .expect("elsewhere");
    let q = sim
        .search(searcher, SearchQuery::Exact(sim.user(target)))
        .expect("homed");
    sim.run_for(Duration::from_secs(1));
    let first_home = answer(&sim, searcher, q).1[0].home.expect("home");
    // The user's supernode dies; the user re-homes elsewhere.
    let node = sim.supernode_index(&first_home.key).expect("known");
    sim.kill_supernode(node);
    let deadline = sim.now + Duration::from_secs(30);
    let moved = sim.run_until(deadline, |s| {
        s.clients[target]
            .homing
            .home()
            .is_some_and(|h| h.key != first_home.key)
    });
    assert!(moved);
    sim.run_for(Duration::from_secs(2));
    if support::home_of(&sim, searcher) == Some(node) {
        sim.run_for(Duration::from_secs(20));
    }
    let q = sim
        .search(searcher, SearchQuery::Exact(sim.user(target)))
        .expect("homed");
    sim.run_for(Duration::from_secs(3));
    let new_home = answer(&sim, searcher, q).1[0].home.expect("home");
    assert_eq!(Some(new_home), sim.clients[target].homing.home());
}

#[test]
fn display_name_prefix_search_finds_matching_users() {
    let mut sim = homed_network(24);
    let q = sim
        .search(
            3,
            SearchQuery::DisplayNamePrefix(SearchPrefix::new("person 011").expect("valid")),
        )
        .expect("homed");
    sim.run_for(Duration::from_secs(2));
    let (source, hits) = answer(&sim, 3, q);
    assert_eq!(source, SearchSource::LoginServer);
    let mut names: Vec<String> = hits.iter().map(|h| h.user.to_string()).collect();
    names.sort();
    let expected: Vec<String> = (110..120).map(|i| format!("user{i:04}")).collect();
    assert_eq!(names, expected);
    // The same prefix again, from the same supernode, comes from the cache.
    let q = sim
        .search(
            3,
            SearchQuery::DisplayNamePrefix(SearchPrefix::new("PERSON 011").expect("valid")),
        )
        .expect("homed");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(answer(&sim, 3, q).0, SearchSource::Cache);
}

#[test]
fn a_search_costs_a_constant_number_of_messages_whatever_the_mesh_size() {
    let mut per_search = Vec::new();
    for supernodes in [10, 50] {
        let mut sim = support::homed_network_with(supernode::sim::SimConfig {
            supernodes,
            clients: 60,
            seed: 25,
            ..supernode::sim::SimConfig::default()
        });
        let mut targets: Vec<usize> = (0..60).collect();
        targets.shuffle(&mut rand::rngs::StdRng::seed_from_u64(1));
        let before = sim.total_stats();
        for (client, target) in targets.into_iter().enumerate() {
            sim.search(client, SearchQuery::Exact(sim.user(target)));
        }
        sim.run_for(Duration::from_secs(3));
        let after = sim.total_stats();
        let searches = after.searches - before.searches;
        assert_eq!(searches, 60);
        let messages = after.search_messages - before.search_messages;
        per_search.push(messages as f64 / searches as f64);
    }
    for m in &per_search {
        assert!(*m <= 2.5, "messages per search {per_search:?}");
    }
}
