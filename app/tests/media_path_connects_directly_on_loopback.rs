//! Two media paths on one machine find each other through their host candidates, report
//! the direct path and carry datagrams both ways.

mod media_path_support;

use app::events::PathKind;
use app::media_path::MediaPath;
use media_path_support::{LIMIT, exchange, loopback_config, start_pair, wait_for_path};
use tokio::time::timeout;

#[tokio::test]
async fn two_paths_on_loopback_connect_directly_and_carry_datagrams() {
    let config = loopback_config();
    let (mut alice, alice_offer) = MediaPath::bind(config.clone()).await.expect("bind alice");
    let (mut bob, bob_offer) = MediaPath::bind(config).await.expect("bind bob");
    assert!(
        alice_offer
            .candidates
            .iter()
            .any(|c| c.addr == alice.local_addr()),
        "alice offers her socket as a host candidate: {alice_offer:?}"
    );

    let (mut a, mut b) = start_pair(&mut alice, &alice_offer, &mut bob, &bob_offer);

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
