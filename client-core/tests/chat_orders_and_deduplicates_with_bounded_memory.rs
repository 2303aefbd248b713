//! The receiving side of chat on its own: order by seq with a bounded hold-back, gaps
//! released after the hold-back and late arrivals still shown once, duplicates answered with
//! receipts but never shown twice, held-back messages not acknowledged, memory bounded
//! against a hostile sender, and a receiver rebuilt from its persisted windows.

mod chat_sim;

use chat_sim::{PlainCrypto, WALL, user};
use client_core::chat::{ChatConfig, ChatCore, ChatEvent, PeerCrypto};
use proto::peer::{ChatMessage, PeerToPeer};
use proto::{Credential, DisplayName, MessageId, PublicKey, SecretKey};
use std::time::{Duration, Instant};

struct Rx {
    core: ChatCore,
    alice: Credential,
    now: Instant,
}

fn message(seq: u64) -> ChatMessage {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&seq.to_be_bytes());
    ChatMessage {
        id: MessageId(id),
        sent_at_millis: 0,
        seq,
        text: format!("m{seq}"),
    }
}

impl Rx {
    fn new() -> Self {
        let bob = SecretKey::generate().public();
        let alice_key = SecretKey::generate().public();
        let now = Instant::now();
        Self {
            core: ChatCore::new(
                Box::new(PlainCrypto::new("bob", bob)),
                ChatConfig::default(),
                1,
            ),
            alice: Credential {
                serial: 0,
                user: user("alice"),
                display_name: DisplayName::default(),
                device_key: alice_key,
                issued_at: WALL,
                expires_at: WALL.saturating_add(Duration::from_secs(86_400)),
            },
            now,
        }
    }

    fn deliver(&mut self, seq: u64) {
        self.core
            .handle_message(self.now, &self.alice, PeerToPeer::Chat(message(seq)))
            .expect("chat");
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.core.handle_timeout(self.now);
    }

    /// (shown seqs with late flags, gap sizes, acknowledged ids)
    fn drain(&mut self) -> (Vec<(u64, bool)>, Vec<u64>, Vec<MessageId>) {
        let mut shown = Vec::new();
        let mut gaps = Vec::new();
        while let Some(e) = self.core.poll_event() {
            match e {
                ChatEvent::Received { message, late, .. } => shown.push((message.seq, late)),
                ChatEvent::Gap { missing, .. } => gaps.push(missing),
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut acked = Vec::new();
        let opener = PlainCrypto::new("alice", self.alice.device_key);
        while let Some(t) = self.core.poll_transmit() {
            assert_eq!(t.to_device, self.alice.device_key);
            let (_, m) = opener.open(WALL, &t.payload).expect("opens");
            match m {
                PeerToPeer::ChatDelivered { ids } => acked.extend(ids),
                other => panic!("unexpected {other:?}"),
            }
        }
        (shown, gaps, acked)
    }
}

#[test]
fn out_of_order_messages_wait_for_the_gap_and_are_acknowledged_only_when_shown() {
    let mut rx = Rx::new();
    rx.deliver(0);
    rx.deliver(2);
    rx.deliver(3);
    rx.advance(Duration::from_millis(100));
    let (shown, gaps, acked) = rx.drain();
    assert_eq!(shown, vec![(0, false)]);
    assert!(gaps.is_empty());
    assert_eq!(
        acked,
        vec![message(0).id],
        "held messages are not acknowledged"
    );

    rx.deliver(1);
    rx.advance(Duration::from_millis(100));
    let (shown, _, acked) = rx.drain();
    assert_eq!(shown, vec![(1, false), (2, false), (3, false)]);
    assert_eq!(acked.len(), 3);

    // Duplicates: acknowledged again (the first receipt may be lost), never shown.
    rx.deliver(2);
    rx.deliver(0);
    rx.advance(Duration::from_millis(100));
    let (shown, _, acked) = rx.drain();
    assert!(shown.is_empty());
    assert_eq!(acked, vec![message(2).id, message(0).id]);
}

#[test]
fn a_gap_is_released_after_the_hold_back_and_a_late_message_is_still_shown_once() {
    let mut rx = Rx::new();
    rx.deliver(0);
    rx.deliver(5);
    rx.deliver(6);
    rx.advance(Duration::from_millis(2900));
    assert_eq!(rx.drain().0, vec![(0, false)]);
    rx.advance(Duration::from_millis(200));
    let (shown, gaps, _) = rx.drain();
    assert_eq!(shown, vec![(5, false), (6, false)]);
    assert_eq!(gaps, vec![4]);
    rx.deliver(3);
    rx.deliver(3);
    rx.advance(Duration::from_millis(100));
    let (shown, _, acked) = rx.drain();
    assert_eq!(shown, vec![(3, true)], "late, once");
    assert_eq!(acked.iter().filter(|id| **id == message(3).id).count(), 2);
}

#[test]
fn a_hostile_sender_cannot_grow_memory() {
    let mut rx = Rx::new();
    rx.deliver(0);
    // Far ahead: the skipped range is not materialised.
    rx.deliver(u64::MAX / 2);
    rx.advance(Duration::from_secs(4));
    let (shown, gaps, _) = rx.drain();
    assert_eq!(shown, vec![(0, false), (u64::MAX / 2, false)]);
    assert_eq!(gaps, vec![u64::MAX / 2 - 1]);
    let snapshot = rx.core.snapshot();
    let window = &snapshot.windows[0].2;
    assert!(window.missing.len() <= ChatConfig::default().max_missing_per_device);
    // Many out-of-order messages: the hold-back is bounded, releasing early.
    let base = u64::MAX / 2 + 10;
    for i in 0..2000 {
        rx.deliver(base + 2 * i);
    }
    let (shown, _, _) = rx.drain();
    assert!(shown.len() >= 2000 - ChatConfig::default().max_held_per_device);
    let snapshot = rx.core.snapshot();
    assert!(snapshot.windows[0].2.recent_ids.len() <= ChatConfig::default().recent_ids_per_device);
    // Many sending devices: windows are bounded.
    for _ in 0..(ChatConfig::default().max_windows + 50) {
        let mut other = rx.alice.clone();
        other.device_key = SecretKey::generate().public();
        rx.core
            .handle_message(rx.now, &other, PeerToPeer::Chat(message(0)))
            .expect("chat");
    }
    assert!(rx.core.snapshot().windows.len() <= ChatConfig::default().max_windows);
}

#[test]
fn a_receiver_rebuilt_from_its_persisted_windows_shows_nothing_twice() {
    let mut rx = Rx::new();
    for seq in 0..10 {
        rx.deliver(seq);
    }
    rx.deliver(12);
    rx.advance(Duration::from_millis(100));
    assert_eq!(rx.drain().0.len(), 10);
    let state = rx.core.snapshot();
    let bob = SecretKey::generate().public();
    rx.core = ChatCore::restore(
        rx.now,
        Box::new(PlainCrypto::new("bob", bob)),
        ChatConfig::default(),
        2,
        state,
    );
    // Retransmissions of everything, including the held message that was never acknowledged.
    for seq in 0..13 {
        rx.deliver(seq);
    }
    rx.advance(Duration::from_millis(100));
    let (shown, gaps, acked) = rx.drain();
    assert_eq!(shown, vec![(10, false), (11, false), (12, false)]);
    assert!(gaps.is_empty());
    assert_eq!(acked.len(), 13);
}

#[test]
fn sending_refuses_what_cannot_be_delivered() {
    let alice = SecretKey::generate().public();
    let mut core = ChatCore::new(
        Box::new(PlainCrypto::new("alice", alice)),
        ChatConfig {
            max_outbox: 2,
            ..ChatConfig::default()
        },
        3,
    );
    let now = Instant::now();
    let bob: PublicKey = SecretKey::generate().public();
    assert_eq!(
        core.send(now, 0, user("bob"), vec![], "x".into()),
        Err(client_core::chat::ChatError::NoDevices)
    );
    assert!(matches!(
        core.send(now, 0, user("bob"), vec![bob], "é".repeat(5000)),
        Err(client_core::chat::ChatError::Invalid(_))
    ));
    let first = core
        .send(now, 0, user("bob"), vec![bob], "a".into())
        .expect("send");
    let second = core
        .send(now, 0, user("bob"), vec![bob], "b".into())
        .expect("send");
    assert_eq!((first.message.seq, second.message.seq), (0, 1));
    assert_ne!(first.message.id, second.message.id);
    assert_eq!(
        core.send(now, 0, user("bob"), vec![bob], "c".into()),
        Err(client_core::chat::ChatError::OutboxFull)
    );
    // Retransmission backs off exponentially: 1 s, 2 s, 4 s...
    while core.poll_transmit().is_some() {}
    let mut at = now;
    let mut gaps = Vec::new();
    for _ in 0..5 {
        let next = core.poll_timeout().expect("timer");
        gaps.push(next - at);
        at = next;
        core.handle_timeout(at);
        let mut sent = 0;
        while core.poll_transmit().is_some() {
            sent += 1;
        }
        assert_eq!(sent, 2, "both messages resent");
    }
    let secs: Vec<u64> = gaps.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, vec![1, 2, 4, 8, 16]);
}
