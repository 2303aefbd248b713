//! The library side of the embedded local network, as the desktop app uses it: the echo
//! account comes online at a local supernode, a second network started while the first
//! holds the fixed ports falls back to ephemeral ones, shutdown is bounded, and a restart
//! in the same directory keeps the authority key and the echo account.

use app::local::{EchoStatus, LocalNetwork, PortChoice};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Waits (bounded) for the echo account to be homed, returning its supernode.
async fn echo_homed(network: &LocalNetwork) -> SocketAddr {
    let homed = async {
        loop {
            if let Some(home) = network.echo_home().await {
                return home;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), homed)
        .await
        .expect("the echo account homes at a local supernode")
}

async fn stop_within_5_s(network: LocalNetwork) {
    let started = Instant::now();
    network.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_network_keeps_its_accounts_and_falls_back_to_ephemeral_ports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first_dir = dir.path().join("first");
    let first = LocalNetwork::start(&first_dir, 2).await.expect("starts");
    let authority = first.authority_key();
    assert_eq!(first.supernode_addrs().len(), 2);
    assert!(first.login_addr().ip().is_loopback());
    assert_eq!(first.echo_status(), Some(&EchoStatus::Running));
    let home = echo_homed(&first).await;
    assert!(first.supernode_addrs().contains(&home), "{home}");

    // While the first runs, a second one cannot have the ports the first got.
    let second = LocalNetwork::start(&dir.path().join("second"), 1)
        .await
        .expect("a second network starts");
    if first.login_ports() == PortChoice::Fixed {
        assert_eq!(second.login_ports(), PortChoice::Ephemeral);
    }
    assert_ne!(second.login_addr(), first.login_addr());
    for supernode in second.supernodes() {
        assert!(!first.supernode_addrs().contains(&supernode.quic));
        assert!(first.supernodes().iter().all(|s| s.turn != supernode.turn));
    }
    assert_ne!(second.authority_key(), authority);
    assert_eq!(second.echo_status(), Some(&EchoStatus::Running));
    echo_homed(&second).await;
    stop_within_5_s(second).await;
    stop_within_5_s(first).await;

    // Restarted in the same directory: the same authority, and the echo account logs in
    // with its stored password instead of registering again.
    let again = LocalNetwork::start(&first_dir, 1).await.expect("restarts");
    assert_eq!(again.authority_key(), authority);
    assert_eq!(again.echo_status(), Some(&EchoStatus::Running));
    echo_homed(&again).await;
    stop_within_5_s(again).await;
}

#[tokio::test]
async fn a_local_network_needs_at_least_one_supernode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = LocalNetwork::start(dir.path(), 0)
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("1 to"), "{error}");
}
