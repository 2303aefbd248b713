//! REST-style TURN credentials expire (the supernode mints them for 600 s): an allocation
//! whose client keeps the old ones is lost at the first refresh after expiry, while a client
//! handed fresh credentials for the same user (`TurnClient::set_credentials`) keeps it.

mod turn_support;

use std::time::Duration;

use nat::turn::client::ClientEvent;
use nat::turn::credentials;
use turn_support::{EPOCH_UNIX, SECRET, World, addr, test_config};

const TTL_S: u64 = 600;

fn short_lived_client(w: &mut World, local: &str, user: &str) -> usize {
    let c = credentials::mint(SECRET, user, EPOCH_UNIX, TTL_S);
    w.add_client_with(addr(local), &c.username, &c.password)
}

fn lost(events: &[ClientEvent]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, ClientEvent::AllocationLost(_)))
}

#[test]
fn expired_credentials_lose_the_allocation_at_the_next_refresh() {
    let mut w = World::new(test_config());
    let c = short_lived_client(&mut w, "192.0.2.10:5000", "alice");
    w.allocated(c);
    w.advance(Duration::from_secs(3 * TTL_S));
    assert!(lost(&w.events(c)), "the refresh after expiry is refused");
    assert_eq!(w.client(c).relayed_addr(), None);
}

#[test]
fn fresh_credentials_keep_the_allocation_alive() {
    let mut w = World::new(test_config());
    let c = short_lived_client(&mut w, "192.0.2.10:5000", "alice");
    let relayed = w.allocated(c);
    // Before expiry, the app fetches new credentials for the same user from its supernode.
    w.advance(Duration::from_secs(TTL_S / 2));
    let fresh = credentials::mint(SECRET, "alice", EPOCH_UNIX + TTL_S / 2, 24 * 3600);
    w.client(c).set_credentials(fresh.username, fresh.password);
    w.advance(Duration::from_secs(6 * TTL_S));
    let events = w.events(c);
    assert!(!lost(&events), "{events:?}");
    let refreshes = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Refreshed { .. }))
        .count();
    assert!(refreshes >= 6, "kept refreshing: {events:?}");
    assert_eq!(w.client(c).relayed_addr(), Some(relayed));
}
