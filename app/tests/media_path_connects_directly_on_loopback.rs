//! Two media paths on one machine find each other through their host candidates, report
//! the direct path and carry datagrams both ways.

use std::time::Duration;

use app::events::PathKind;
use app::media_path::{MediaPath, PathChannels, PathConfig};
use tokio::sync::watch;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

async fn wait_for_path(path: &mut watch::Receiver<Option<PathKind>>) -> PathKind {
    timeout(LIMIT, path.wait_for(Option::is_some))
        .await
        .expect("a path within the limit")
        .expect("path task alive")
        .expect("checked is_some")
}

async fn exchange(from: &PathChannels, to: &mut PathChannels, count: u32, tag: &str) {
    for n in 0..count {
        from.outgoing
            .send(format!("{tag} {n}").into_bytes())
            .await
            .expect("path alive");
    }
    for n in 0..count {
        let got = timeout(LIMIT, to.incoming.recv())
            .await
            .expect("datagram within the limit")
            .expect("path alive");
        assert_eq!(got, format!("{tag} {n}").into_bytes());
    }
}

#[tokio::test]
async fn two_paths_on_loopback_connect_directly_and_carry_datagrams() {
    let config = PathConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        ..PathConfig::default()
    };
    let (mut alice, alice_offer) = MediaPath::bind(config.clone()).await.expect("bind alice");
    let (mut bob, bob_offer) = MediaPath::bind(config).await.expect("bind bob");
    assert!(
        alice_offer
            .candidates
            .iter()
            .any(|c| c.addr == alice.local_addr()),
        "alice offers her socket as a host candidate: {alice_offer:?}"
    );

    let mut a = alice
        .start(
            true,
            bob_offer.ufrag.clone(),
            bob_offer.password.clone(),
            bob_offer.candidates.clone(),
        )
        .expect("start alice");
    let mut b = bob
        .start(
            false,
            alice_offer.ufrag.clone(),
            alice_offer.password.clone(),
            alice_offer.candidates.clone(),
        )
        .expect("start bob");

    assert_eq!(wait_for_path(&mut a.path).await, PathKind::Direct);
    assert_eq!(wait_for_path(&mut b.path).await, PathKind::Direct);

    exchange(&a, &mut b, 50, "alice").await;
    exchange(&b, &mut a, 50, "bob").await;

    assert!(
        alice
            .start(true, String::new(), String::new(), Vec::new())
            .is_err(),
        "a path starts once"
    );
    drop(alice);
    // The handle is gone: alice's side stops and bob's incoming channel eventually sees
    // no more from her, but alice's own channels close at once.
    let closed = timeout(LIMIT, a.path.changed()).await.expect("closes");
    assert!(
        closed.is_err(),
        "alice's path watch closes when her handle drops"
    );
}
