//! A call that starts on the relay moves to the direct path once it opens (losing at most
//! 200 ms of 20 ms media frames at the switch), and falls back to the relay when the direct
//! path dies, without the path ending and with media copied onto the relay while the direct
//! path's consent answers are overdue.
//!
//! The direct path runs through two test-owned UDP forwarders standing in for the peers'
//! host addresses, so the test can open it late (trickled candidates) and cut it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
mod media_path_support;

use std::time::Duration;

use app::events::PathKind;
use app::media_path::{MediaPath, PathConfig, TurnServer};
use media_path_support::{
    loopback_config, loopback_relay_config, start_pair_with, turn_credentials,
};
use proto::peer::{Candidate, CandidateKind};
use supernode::relay::RelayServer;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

const LIMIT: Duration = Duration::from_secs(30);
const SECRET: &[u8] = b"switch test secret";
const FRAME: Duration = Duration::from_millis(20);

fn turn_for(relay: &RelayServer, user: &str) -> TurnServer {
    let creds = turn_credentials(SECRET, user);
    TurnServer::new(
        vec![format!("turn:{}?transport=udp", relay.listen_addr())],
        creds.username,
        creds.password,
    )
}

/// Forwards between `inner` (a path's socket) and `outer` (the peer's socket) until cut.
async fn forwarder(inner: SocketAddr, outer: SocketAddr, open: Arc<AtomicBool>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            if !open.load(Ordering::Relaxed) {
                continue;
            }
            let to = if from == inner {
                outer
            } else if from == outer {
                inner
            } else {
                continue;
            };
            let _ = socket.send_to(&buf[..len], to).await;
        }
    });
    addr
}

async fn wait_path(path: &mut watch::Receiver<Option<PathKind>>, kind: PathKind) {
    timeout(LIMIT, path.wait_for(|p| *p == Some(kind)))
        .await
        .unwrap_or_else(|_| panic!("path becomes {kind:?} within the limit"))
        .expect("path alive");
}

type Log = Arc<Mutex<Vec<(u32, Instant)>>>;

async fn wait_received(log: &Log, more_than: usize) {
    timeout(LIMIT, async {
        while log.lock().expect("lock").len() <= more_than {
            tokio::time::sleep(FRAME).await;
        }
    })
    .await
    .expect("media keeps arriving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_moves_from_relay_to_direct_and_back() {
    let relay = RelayServer::start(loopback_relay_config(SECRET))
        .await
        .expect("relay starts");
    let config = |user: &str| PathConfig {
        turn: Some(turn_for(&relay, user)),
        ..loopback_config()
    };
    let (mut alice, alice_offer) = MediaPath::bind(config("alice")).await.expect("bind");
    let (mut bob, bob_offer) = MediaPath::bind(config("bob")).await.expect("bind");

    let open = Arc::new(AtomicBool::new(true));
    let alice_proxy = forwarder(alice.local_addr(), bob.local_addr(), open.clone()).await;
    let bob_proxy = forwarder(bob.local_addr(), alice.local_addr(), open.clone()).await;
    let relayed = |offer: &app::media_path::LocalCandidates| -> Vec<Candidate> {
        offer
            .candidates
            .iter()
            .copied()
            .filter(|c| c.kind == CandidateKind::Relayed)
            .collect()
    };
    let proxied = |offer: &app::media_path::LocalCandidates, proxy| -> Vec<Candidate> {
        offer
            .candidates
            .iter()
            .filter(|c| c.kind == CandidateKind::Host)
            .map(|c| Candidate { addr: proxy, ..*c })
            .collect()
    };
    assert_eq!(relayed(&alice_offer).len(), 1, "{alice_offer:?}");
    assert_eq!(
        proxied(&alice_offer, alice_proxy).len(),
        1,
        "{alice_offer:?}"
    );

    // First only the relayed candidates: the call starts on the relay.
    let (mut a, mut b) = start_pair_with(
        &mut alice,
        &alice_offer,
        relayed(&alice_offer),
        &mut bob,
        &bob_offer,
        relayed(&bob_offer),
    );
    wait_path(&mut a.path, PathKind::Relay).await;
    wait_path(&mut b.path, PathKind::Relay).await;

    // Both stream 20 ms frames for the rest of the test, as a call does (through silence
    // too); bob logs what arrives from alice.
    let stream = |outgoing: tokio::sync::mpsc::Sender<Vec<u8>>| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FRAME);
            for seq in 0u32.. {
                tick.tick().await;
                if outgoing.send(seq.to_be_bytes().to_vec()).await.is_err() {
                    return;
                }
            }
        })
    };
    let sender = stream(a.outgoing.clone());
    let bob_sender = stream(b.outgoing.clone());
    let log: Log = Arc::default();
    let mut incoming = std::mem::replace(&mut b.incoming, tokio::sync::mpsc::channel(1).1);
    let receiver = tokio::spawn({
        let log = log.clone();
        async move {
            while let Some(datagram) = incoming.recv().await {
                if let Ok(bytes) = <[u8; 4]>::try_from(datagram.as_slice()) {
                    log.lock()
                        .expect("lock")
                        .push((u32::from_be_bytes(bytes), Instant::now()));
                }
            }
        }
    });
    wait_received(&log, 25).await;

    // The direct candidates trickle in: both sides move to the direct path.
    alice
        .add_remote_candidates(proxied(&bob_offer, bob_proxy))
        .expect("trickle");
    bob.add_remote_candidates(proxied(&alice_offer, alice_proxy))
        .expect("trickle");
    wait_path(&mut a.path, PathKind::Direct).await;
    wait_path(&mut b.path, PathKind::Direct).await;
    let before_cut = log.lock().expect("lock").len();
    wait_received(&log, before_cut + 25).await;

    // The direct path dies: both sides fall back to the relay, and media flows again.
    open.store(false, Ordering::Relaxed);
    let cut_at = Instant::now();
    wait_path(&mut a.path, PathKind::Relay).await;
    let alice_noticed = cut_at.elapsed();
    wait_path(&mut b.path, PathKind::Relay).await;
    let bob_noticed = cut_at.elapsed();
    let after_fallback = log.lock().expect("lock").len();
    wait_received(&log, after_fallback + 25).await;
    sender.abort();
    bob_sender.abort();

    let log = log.lock().expect("lock").clone();
    let mut worst_gap_before_cut = 0;
    let mut worst_gap_after_cut = 0;
    for pair in log.windows(2) {
        let ((s0, _), (s1, t1)) = (pair[0], pair[1]);
        let gap = s1.saturating_sub(s0 + 1);
        if t1 < cut_at {
            worst_gap_before_cut = worst_gap_before_cut.max(gap);
        } else {
            worst_gap_after_cut = worst_gap_after_cut.max(gap);
        }
    }
    eprintln!(
        "relay->direct: at most {worst_gap_before_cut} frames lost in a row; \
         direct death noticed after {alice_noticed:?} (alice) / {bob_noticed:?} (bob); \
         {worst_gap_after_cut} frames lost in a row when the direct path died"
    );
    // Media goes over the relay too as soon as the other side's media stops arriving on
    // the direct pair, long before that pair is declared dead (the bound for a
    // switch: at most 200 ms of audio lost).
    assert!(
        u64::from(worst_gap_after_cut) * 20 <= 200,
        "at most 200 ms of media lost when the direct path dies, lost {worst_gap_after_cut} frames"
    );
    assert!(
        u64::from(worst_gap_before_cut) * 20 <= 200,
        "at most 200 ms of media lost moving from relay to direct, lost {worst_gap_before_cut} frames"
    );
    assert!(
        alice_noticed <= Duration::from_secs(6) && bob_noticed <= Duration::from_secs(6),
        "a dead direct path is left within about 5 s: {alice_noticed:?} / {bob_noticed:?}"
    );
    assert!(a.path.borrow().is_some(), "the path never ended");
    receiver.abort();
    drop((alice, bob, a, b));
    relay.shutdown().await;
}
