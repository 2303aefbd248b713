//! Killing 30% of 20 supernodes re-homes at least 99% of their clients within 60 s, with no
//! crash, and presence keeps flowing between contacts afterwards.

mod support;

use proto::supernode::PresenceStatus;
use std::collections::BTreeSet;
use std::time::Duration;
use support::{befriend, homed_network, status};

#[test]
fn killing_thirty_percent_of_supernodes_rehomes_their_clients_within_sixty_seconds() {
    let mut sim = homed_network(31);
    let pairs: Vec<(usize, usize)> = (0..50).map(|i| (i, i + 50)).collect();
    befriend(&mut sim, &pairs);
    sim.run_for(Duration::from_secs(3));
    // The six busiest supernodes die: the worst case for re-homing load.
    let by_home = sim.clients_by_home();
    let mut ranked: Vec<(usize, usize)> = by_home.iter().map(|(n, c)| (c.len(), *n)).collect();
    ranked.sort_by(|a, b| b.cmp(a));
    let victims: Vec<usize> = ranked.iter().take(6).map(|(_, n)| *n).collect();
    let orphans: BTreeSet<usize> = victims
        .iter()
        .flat_map(|n| by_home[n].iter().copied())
        .collect();
    assert!(
        orphans.len() >= 30,
        "the victims home many clients: {}",
        orphans.len()
    );
    let killed_at = sim.now;
    for node in &victims {
        sim.kill_supernode(*node);
    }
    let victim_keys: BTreeSet<_> = victims
        .iter()
        .map(|n| sim.supernodes[*n].core.me().key)
        .collect();
    let rehomed = |s: &supernode::sim::Sim| {
        orphans
            .iter()
            .filter(|c| {
                s.clients[**c]
                    .homing
                    .home()
                    .is_some_and(|h| !victim_keys.contains(&h.key))
            })
            .count()
    };
    let needed = (orphans.len() * 99).div_ceil(100);
    let deadline = killed_at + Duration::from_secs(60);
    assert!(
        sim.run_until(deadline, |s| rehomed(s) >= needed),
        "{} of {} re-homed",
        rehomed(&sim),
        orphans.len()
    );
    let took = sim.now - killed_at;
    assert!(took > Duration::ZERO);
    // Presence still flows once the directory has caught up.
    sim.run_for(Duration::from_secs(30));
    assert_eq!(sim.homed_clients(), 100);
    for &(a, _) in &pairs[..20] {
        sim.set_presence(a, status(PresenceStatus::Busy));
    }
    sim.run_for(Duration::from_secs(2));
    for &(a, b) in &pairs[..20] {
        assert_eq!(
            sim.clients[b].log.view.get(&sim.user(a)).map(|p| p.status),
            Some(PresenceStatus::Busy),
            "{b} sees {a}"
        );
    }
}
