//! Shared set-up for the many-node simulation tests.
#![allow(dead_code)]

use proto::UserName;
use proto::supernode::{Presence, PresenceStatus};
use std::time::Duration;
use supernode::sim::{Sim, SimConfig};

/// 20 supernodes and 100 clients, all homed.
pub fn homed_network(seed: u64) -> Sim {
    homed_network_with(SimConfig {
        seed,
        ..SimConfig::default()
    })
}

pub fn homed_network_with(config: SimConfig) -> Sim {
    let clients = config.clients;
    let mut sim = Sim::new(config);
    let deadline = sim.now + Duration::from_secs(30);
    assert!(
        sim.run_until(deadline, |s| s.homed_clients() == clients),
        "only {} of {clients} clients homed",
        sim.homed_clients()
    );
    sim
}

/// Makes clients `a` and `b` mutual authorised contacts that watch each other.
pub fn befriend(sim: &mut Sim, pairs: &[(usize, usize)]) {
    let n = sim.clients.len();
    let mut authorized: Vec<Vec<UserName>> = vec![Vec::new(); n];
    for &(a, b) in pairs {
        authorized[a].push(sim.user(b));
        authorized[b].push(sim.user(a));
    }
    for (i, contacts) in authorized.into_iter().enumerate() {
        if !contacts.is_empty() {
            sim.set_authorized(i, contacts.clone());
            sim.set_watch(i, contacts);
        }
    }
}

pub fn status(status: PresenceStatus) -> Presence {
    Presence::new(status)
}

pub fn home_of(sim: &Sim, client: usize) -> Option<usize> {
    sim.clients[client]
        .homing
        .home()
        .and_then(|h| sim.supernode_index(&h.key))
}
