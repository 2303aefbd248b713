//! 10,000 chat messages between two devices, each a `ChatService` over its own SQLite
//! history, through a lossy in-memory router on virtual time. On 1% of sends the
//! connection is killed: one side's process dies (its service is dropped unclosed and
//! reopened from its database, after up to 5 s offline, during which messages to it go to
//! the offline mailbox) and everything in flight is lost. Afterwards: none lost, none shown
//! twice, order kept, every message confirmed delivered to its sender.

mod chat_support;

use app::history::Direction;
use chat_support::Net;
use client_core::chat::ChatConfig;
use proto::PublicKey;
use rand::RngExt as _;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const MESSAGES: usize = 10_000;

#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_messages_with_kills_none_lost_none_twice_order_kept() {
    let config = ChatConfig {
        // Strict order needs the receiver to wait for a message lost several times in a
        // row (retransmissions back off to 30 s) rather than release the gap after 3 s.
        hold_back: Duration::from_secs(120),
        ..ChatConfig::default()
    };
    let mut net = Net::new(0x10_000, config);
    net.loss = 0.02;
    let alice = net.add_node("alice", false).await;
    let bob = net.add_node("bob", false).await;
    let mut sent: BTreeMap<(PublicKey, PublicKey), Vec<(String, String)>> = BTreeMap::new();
    let mut kills = 0;
    let started = std::time::Instant::now();
    for i in 0..MESSAGES {
        while net.nodes.values().all(|n| n.service.is_none()) {
            net.run_for(Duration::from_millis(100)).await;
        }
        let alice_up = net.nodes[&alice].service.is_some();
        let bob_up = net.nodes[&bob].service.is_some();
        let (from, to) = match (alice_up, bob_up) {
            (true, true) if net.rng.random::<bool>() => (alice, bob),
            (true, false) => (alice, bob),
            _ => (bob, alice),
        };
        let text = format!("message {i} from {}", net.nodes[&from].name);
        let id = net.send(from, to, text.clone()).await;
        sent.entry((from, to)).or_default().push((id, text));
        if net.rng.random::<f64>() < 0.01 {
            let up: Vec<PublicKey> = [alice, bob]
                .into_iter()
                .filter(|k| net.nodes[k].service.is_some())
                .collect();
            let victim = up[net.rng.random_range(0..up.len())];
            let offline = Duration::from_millis(net.rng.random_range(0..3_000));
            net.kill(victim, offline);
            kills += 1;
        }
        let step = Duration::from_millis(net.rng.random_range(0..20));
        net.run_for(step).await;
        if i % 1000 == 999 {
            net.fetch_all_mailboxes().await;
        }
    }
    eprintln!("sent {MESSAGES} in {:?} (real time)", started.elapsed());
    // Settle: retransmissions, mailbox fetches and re-offers of stored messages.
    let everything_delivered = |net: &Net| {
        sent.iter().all(|((from, to), list)| {
            list.iter()
                .all(|(id, _)| net.nodes[from].delivered.contains(id))
                && net.nodes[to].shown.len() >= list.len()
        })
    };
    for _ in 0..240 {
        net.run_for(Duration::from_secs(30)).await;
        net.fetch_all_mailboxes().await;
        if everything_delivered(&net) && net.offline_until.is_empty() {
            break;
        }
    }

    for ((from, to), list) in &sent {
        let from_name = net.nodes[from].name.clone();
        let receiver = &net.nodes[to];
        let shown: Vec<&str> = receiver
            .shown
            .iter()
            .filter(|(f, ..)| *f == from_name)
            .map(|(_, id, _)| id.as_str())
            .collect();
        let unique: BTreeSet<&str> = shown.iter().copied().collect();
        assert_eq!(unique.len(), shown.len(), "a message was shown twice");
        let expected: Vec<&str> = list.iter().map(|(id, _)| id.as_str()).collect();
        let lost = expected.iter().filter(|id| !unique.contains(*id)).count();
        assert_eq!(lost, 0, "{lost} of {} messages lost", expected.len());
        assert_eq!(shown, expected, "order broken");
        // The history shows the same, in the same order, with the right texts.
        let history = receiver
            .service
            .as_ref()
            .expect("up at the end")
            .history()
            .conversation(&from_name, u32::MAX, None)
            .await
            .expect("history reads");
        let stored: Vec<(String, String)> = history
            .iter()
            .filter(|e| e.direction == Direction::Incoming)
            .map(|e| (e.id.to_string(), e.text.clone()))
            .collect();
        assert_eq!(&stored, list, "history differs from what was sent");
        let sender = &net.nodes[from];
        let undelivered = list
            .iter()
            .filter(|(id, _)| !sender.delivered.contains(id))
            .count();
        assert_eq!(
            undelivered, 0,
            "{undelivered} messages without chat_delivered"
        );
        assert_eq!(sender.accepted.len(), sender.delivered.len());
    }
    eprintln!(
        "settled after {:?} (real time), {:?} virtual, {kills} kills",
        started.elapsed(),
        net.now - net.start
    );
    assert!(kills >= 70, "the run killed a process {kills} times");
    let total: usize = sent.values().map(Vec::len).sum();
    assert_eq!(total, MESSAGES);
    for node in net.nodes.values_mut() {
        assert_eq!(node.service().unacknowledged(), 0);
        let state = node.service().history().load_state().await.expect("reads");
        assert!(state.outbox.is_empty(), "outbox rows left behind");
    }
}
