//! Set-up shared by the media path tests: loopback path configs, a loopback TURN relay's
//! config and credentials, starting two paths against each other's offers, and waiting
//! for a path kind or for datagrams.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use app::events::PathKind;
use app::media_path::{LocalCandidates, MediaPath, PathChannels, PathConfig};
use proto::peer::Candidate;
use supernode::relay::RelayConfig;
use tokio::sync::watch;
use tokio::time::timeout;

/// Generous: debug builds on a loaded machine.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Binds on loopback with every other setting at its default.
pub fn loopback_config() -> PathConfig {
    PathConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        ..PathConfig::default()
    }
}

/// A relay on loopback that may relay to loopback peers (as `--allow-relay-to
/// 127.0.0.0/8` does), with the kernel's default socket buffers.
pub fn loopback_relay_config(secret: &[u8]) -> RelayConfig {
    let mut config = RelayConfig::new("127.0.0.1:0".parse().expect("addr"), secret);
    config.allow_relay_to = vec!["127.0.0.0/8".parse().expect("cidr")];
    config.socket_buffer_bytes = 0;
    config
}

/// TURN credentials for `user`, valid for 10 minutes from the wall clock.
pub fn turn_credentials(secret: &[u8], user: &str) -> nat::turn::TurnCredentials {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    nat::turn::mint(secret, user, now_unix, 600)
}

/// Starts `alice` (controlling) towards `bob_candidates` and `bob` (controlled) towards
/// `alice_candidates`, with the ufrags and passwords of their offers.
pub fn start_pair_with(
    alice: &mut MediaPath,
    alice_offer: &LocalCandidates,
    alice_candidates: Vec<Candidate>,
    bob: &mut MediaPath,
    bob_offer: &LocalCandidates,
    bob_candidates: Vec<Candidate>,
) -> (PathChannels, PathChannels) {
    let a = alice
        .start(
            true,
            bob_offer.ufrag.clone(),
            bob_offer.password.clone(),
            bob_candidates,
        )
        .expect("start alice");
    let b = bob
        .start(
            false,
            alice_offer.ufrag.clone(),
            alice_offer.password.clone(),
            alice_candidates,
        )
        .expect("start bob");
    (a, b)
}

/// Starts both paths towards every candidate the other offered.
pub fn start_pair(
    alice: &mut MediaPath,
    alice_offer: &LocalCandidates,
    bob: &mut MediaPath,
    bob_offer: &LocalCandidates,
) -> (PathChannels, PathChannels) {
    start_pair_with(
        alice,
        alice_offer,
        alice_offer.candidates.clone(),
        bob,
        bob_offer,
        bob_offer.candidates.clone(),
    )
}

/// The first path kind the path reports, within `LIMIT`.
pub async fn wait_for_path(path: &mut watch::Receiver<Option<PathKind>>) -> PathKind {
    timeout(LIMIT, path.wait_for(Option::is_some))
        .await
        .expect("a path within the limit")
        .expect("path task alive")
        .expect("checked is_some")
}

/// The next datagram from the peer, within `LIMIT`.
pub async fn receive(channels: &mut PathChannels) -> Vec<u8> {
    timeout(LIMIT, channels.incoming.recv())
        .await
        .expect("datagram within the limit")
        .expect("path alive")
}

/// Sends `count` numbered datagrams from `from`, then checks they all reach `to` in order.
pub async fn exchange(from: &PathChannels, to: &mut PathChannels, count: u32, tag: &str) {
    for n in 0..count {
        from.outgoing
            .send(format!("{tag} {n}").into_bytes())
            .await
            .expect("path alive");
    }
    for n in 0..count {
        assert_eq!(receive(to).await, format!("{tag} {n}").into_bytes());
    }
}

/// Both sides send `count` numbered datagrams at once, then each checks it received the
/// other's in order.
pub async fn exchange_both_ways(a: &mut PathChannels, b: &mut PathChannels, count: u32) {
    for n in 0..count {
        a.outgoing
            .send(format!("alice {n}").into_bytes())
            .await
            .expect("path alive");
        b.outgoing
            .send(format!("bob {n}").into_bytes())
            .await
            .expect("path alive");
    }
    for n in 0..count {
        assert_eq!(receive(b).await, format!("alice {n}").into_bytes());
        assert_eq!(receive(a).await, format!("bob {n}").into_bytes());
    }
}
