//! Measures the supernode mesh in the deterministic simulation: search latency p50/p99 for
//! cached, uncached (mesh) and login-server-fallback searches, messages per search, and
//! presence propagation p50/p99, at 10, 50 and 200 supernodes.
//!
//! `cargo run --release -p supernode --example mesh_bench` prints a Markdown table.
//! The link model (one way): 10 ms + a fixed 0–40 ms per pair of hosts + 0–5 ms jitter;
//! the login server is 40 ms away. Times are virtual.

use proto::supernode::{
    Presence, PresenceStatus, SearchQuery, SearchSource, StatusMessage, SupernodeToClient,
};
use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use std::collections::BTreeMap;
use std::time::Duration;
use supernode::sim::{Sim, SimConfig};

const CLIENTS: usize = 200;
const OFFLINE: usize = 100;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

struct Row {
    supernodes: usize,
    by_source: BTreeMap<&'static str, Vec<Duration>>,
    mesh_messages_per_uncached: f64,
    messages_per_search: f64,
    presence: Vec<Duration>,
    fanout_per_change: f64,
}

fn source_name(source: SearchSource) -> &'static str {
    match source {
        SearchSource::Local => "local",
        SearchSource::Cache => "cached",
        SearchSource::Mesh => "uncached (mesh)",
        SearchSource::LoginServer => "login fallback",
    }
}

/// Runs one round of searches (client i → targets[i]) and collects latencies by source.
fn search_round(
    sim: &mut Sim,
    targets: &[usize],
    by_source: &mut BTreeMap<&'static str, Vec<Duration>>,
) -> (u64, u64) {
    let before = sim.total_stats();
    let mut asked = Vec::new();
    for (client, target) in targets.iter().enumerate() {
        if let Some(q) = sim.search(client, SearchQuery::Exact(sim.user(*target))) {
            asked.push((client, q));
        }
        // Spread the searches out a little so rate limits and queues stay realistic.
        sim.run_for(Duration::from_millis(5));
    }
    sim.run_for(Duration::from_secs(3));
    for (client, q) in asked {
        if let Some((at, Some((answered, SupernodeToClient::SearchResults { source, hits, .. })))) =
            sim.clients[client].log.searches.get(&q)
        {
            assert_eq!(hits.len(), 1, "every search finds its user");
            by_source
                .entry(source_name(*source))
                .or_default()
                .push(*answered - *at);
        } else {
            panic!("search {q} of client {client} unanswered");
        }
    }
    let after = sim.total_stats();
    (
        after.searches - before.searches,
        after.search_messages - before.search_messages,
    )
}

fn run(supernodes: usize) -> Row {
    let mut sim = Sim::new(SimConfig {
        supernodes,
        clients: CLIENTS,
        offline_users: OFFLINE,
        seed: 42,
        host_cache_seed: supernodes.min(40),
        ..SimConfig::default()
    });
    let deadline = sim.now + Duration::from_secs(30);
    assert!(sim.run_until(deadline, |s| s.homed_clients() == CLIENTS));
    // Contacts: client i and i + CLIENTS/2.
    let half = CLIENTS / 2;
    for i in 0..half {
        let (a, b) = (i, i + half);
        let (ua, ub) = (sim.user(a), sim.user(b));
        sim.set_authorized(a, vec![ub.clone()]);
        sim.set_watch(a, vec![ub.clone()]);
        sim.set_authorized(b, vec![ua.clone()]);
        sim.set_watch(b, vec![ua]);
    }
    sim.run_for(Duration::from_secs(3));

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut by_source: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    // Round 1: every client searches a different online user (uncached unless local).
    let mut targets: Vec<usize> = (0..CLIENTS).collect();
    targets.shuffle(&mut rng);
    let mut round1 = BTreeMap::new();
    let (searches1, messages1) = search_round(&mut sim, &targets, &mut round1);
    // Round 2: the same searches again: answered from the caches.
    let (searches2, messages2) = search_round(&mut sim, &targets, &mut by_source);
    // Round 3: users only the login server knows.
    let offline_targets: Vec<usize> = (0..CLIENTS).map(|i| CLIENTS + i % OFFLINE).collect();
    let (searches3, messages3) = search_round(&mut sim, &offline_targets, &mut by_source);
    let uncached = round1.get("uncached (mesh)").map_or(0, Vec::len);
    for (k, v) in round1 {
        if k != "cached" {
            by_source.entry(k).or_default().extend(v);
        }
    }
    for v in by_source.values_mut() {
        v.sort();
    }

    // Presence propagation: each client of the first half changes status in turn.
    let fanout_before = sim.total_stats().presence_fanout;
    let mut presence = Vec::new();
    for (n, i) in (0..half).enumerate() {
        let status = if n % 2 == 0 {
            PresenceStatus::Away
        } else {
            PresenceStatus::Busy
        };
        let message = StatusMessage::new(format!("round {n}")).expect("valid");
        let wanted = Presence { status, message };
        let start = sim.now;
        sim.set_presence(i, wanted.clone());
        let who = sim.user(i);
        let contact = i + half;
        let deadline = start + Duration::from_secs(5);
        let seen = sim.run_until(deadline, |s| {
            s.clients[contact].log.view.get(&who) == Some(&wanted)
        });
        assert!(seen, "presence of {i} never reached {contact}");
        presence.push(sim.now - start);
    }
    presence.sort();
    let fanout = sim.total_stats().presence_fanout - fanout_before;

    let mesh_messages_per_uncached = if uncached > 0 {
        messages1 as f64 / uncached as f64
    } else {
        0.0
    };
    Row {
        supernodes,
        by_source,
        mesh_messages_per_uncached,
        messages_per_search: (messages1 + messages2 + messages3) as f64
            / (searches1 + searches2 + searches3) as f64,
        presence,
        fanout_per_change: fanout as f64 / half as f64,
    }
}

fn main() {
    let rows: Vec<Row> = [10, 50, 200].into_iter().map(run).collect();
    println!("### Search latency (virtual ms, {CLIENTS} clients)\n");
    println!("| supernodes | kind | searches | p50 ms | p99 ms |");
    println!("| ---: | --- | ---: | ---: | ---: |");
    for row in &rows {
        for (kind, latencies) in &row.by_source {
            println!(
                "| {} | {} | {} | {} | {} |",
                row.supernodes,
                kind,
                latencies.len(),
                ms(percentile(latencies, 50.0)),
                ms(percentile(latencies, 99.0)),
            );
        }
    }
    println!("\n### Messages per search and presence propagation\n");
    println!(
        "| supernodes | messages per uncached search | messages per search (all kinds) | presence p50 ms | presence p99 ms | watchers notified per change |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &rows {
        println!(
            "| {} | {:.2} | {:.2} | {} | {} | {:.2} |",
            row.supernodes,
            row.mesh_messages_per_uncached,
            row.messages_per_search,
            ms(percentile(&row.presence, 50.0)),
            ms(percentile(&row.presence, 99.0)),
            row.fanout_per_change,
        );
    }
}
