//! The profile's chat store: what a killed process leaves behind reopens to the same state
//! (nothing acknowledged lost, nothing shown twice), with real end-to-end crypto between
//! two `ChatService`s; search, conversation list and paging; a damaged file is a clear
//! error, never a panic.

mod chat_support;

use app::history::{Direction, Durability, HISTORY_FILE, History, HistoryError, MessageState};
use chat_support::{Net, WALL, user};
use client_core::chat::{ChatConfig, ChatEvent, OutboxEntry, OutboxStage, ReceiveWindow};
use proto::login::Envelope;
use proto::peer::ChatMessage;
use proto::{MessageId, SecretKey};
use std::collections::BTreeSet;
use std::time::Duration;

fn entry(to: &str, seq: u64, text: &str) -> OutboxEntry {
    OutboxEntry {
        to: user(to),
        devices: vec![
            SecretKey::generate().public(),
            SecretKey::generate().public(),
        ],
        message: ChatMessage {
            id: MessageId::random(&mut rand::rng()),
            sent_at_millis: 1_800_000_000_000 + seq,
            seq,
            text: text.to_string(),
        },
        stage: OutboxStage::Sending,
        accepted: false,
    }
}

fn received(from: &str, device: proto::PublicKey, seq: u64, text: &str) -> ChatEvent {
    ChatEvent::Received {
        from: user(from),
        device,
        message: ChatMessage {
            id: MessageId::random(&mut rand::rng()),
            sent_at_millis: 1_800_000_000_000 + seq,
            seq,
            text: text.to_string(),
        },
        late: false,
    }
}

#[tokio::test]
async fn the_store_reopens_to_the_state_it_was_killed_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(HISTORY_FILE);
    let history = History::open(&path).await.expect("opens");
    let delivered = entry("bob", 0, "first");
    let stored = entry("bob", 1, "second");
    let pending = entry("bob", 2, "third");
    let storing = entry("bob", 3, "fourth");
    for e in [&delivered, &stored, &pending, &storing] {
        history.record_sent(e).await.expect("recorded");
    }
    let bob_device = SecretKey::generate().public();
    let incoming = received("bob", bob_device, 0, "hello there");
    let window = ReceiveWindow {
        next_seq: Some(1),
        missing: BTreeSet::from([u64::MAX - 1]),
        recent_ids: match &incoming {
            ChatEvent::Received { message, .. } => [message.id].into(),
            _ => unreachable!(),
        },
    };
    let events = [
        ChatEvent::Accepted {
            to: user("bob"),
            id: delivered.message.id,
            stored: false,
        },
        ChatEvent::Delivered {
            to: user("bob"),
            id: delivered.message.id,
        },
        ChatEvent::Accepted {
            to: user("bob"),
            id: stored.message.id,
            stored: true,
        },
        ChatEvent::StoreOffline {
            envelope: Envelope {
                id: storing.message.id,
                from: user("alice"),
                to: user("bob"),
                sent_at: WALL,
                sealed: vec![1, 2, 3],
            },
        },
        incoming.clone(),
    ];
    let fresh = history
        .apply_all(&events, &[(user("bob"), bob_device, window.clone())], 42)
        .await
        .expect("applied");
    assert_eq!(fresh, vec![true; 5]);
    // Killed: dropped without closing.
    drop(history);

    let history = History::open(&path).await.expect("reopens");
    let state = history.load_state().await.expect("loads");
    assert_eq!(state.next_seq.get(&user("bob")), Some(&4));
    assert_eq!(
        state.windows,
        vec![(user("bob"), bob_device, window.clone())]
    );
    let mut outbox = state.outbox.clone();
    outbox.sort_by_key(|e| e.message.seq);
    let mut expect_stored = stored.clone();
    expect_stored.stage = OutboxStage::Stored;
    expect_stored.accepted = true;
    let mut expect_storing = storing.clone();
    expect_storing.stage = OutboxStage::StoringOffline;
    assert_eq!(outbox, vec![expect_stored, pending.clone(), expect_storing]);

    // The same message again (a retransmission after a crash) is not news.
    let again = history
        .apply(&incoming, Some((user("bob"), bob_device, window)), 43)
        .await
        .expect("applied");
    assert!(!again, "a duplicate was reported as new");
    let conversation = history
        .conversation(&user("bob"), 100, None)
        .await
        .expect("reads");
    let states: Vec<(Direction, MessageState, &str)> = conversation
        .iter()
        .map(|e| (e.direction, e.state, e.text.as_str()))
        .collect();
    assert_eq!(
        states,
        vec![
            (Direction::Outgoing, MessageState::Delivered, "first"),
            (Direction::Outgoing, MessageState::Stored, "second"),
            (Direction::Outgoing, MessageState::Sending, "third"),
            (Direction::Outgoing, MessageState::Sending, "fourth"),
            (Direction::Incoming, MessageState::Received, "hello there"),
        ]
    );
    assert_eq!(conversation[4].received_at_millis, Some(42));
    assert_eq!(conversation[4].from_device, Some(bob_device));
}

#[tokio::test]
async fn search_pages_and_the_conversation_list() {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = History::open_in_profile(dir.path(), Durability::ProcessCrash)
        .await
        .expect("opens");
    let carol_device = SecretKey::generate().public();
    for i in 0..30u64 {
        history
            .record_sent(&entry("bob", i, &format!("note {i} about Lunch")))
            .await
            .expect("recorded");
    }
    let events: Vec<ChatEvent> = (0..5u64)
        .map(|i| {
            received(
                "carol",
                carol_device,
                i,
                &format!("carol's \"quoted\" line {i}"),
            )
        })
        .collect();
    history.apply_all(&events, &[], 1).await.expect("applied");

    let hits = history.search("lun", 100).await.expect("search");
    assert_eq!(hits.len(), 30, "prefix, case-insensitive");
    assert_eq!(hits[0].text, "note 29 about Lunch", "newest first");
    assert_eq!(
        history.search("note 7", 100).await.expect("search").len(),
        1
    );
    // FTS5 syntax typed by the user is literal text, never an error.
    for query in ["\"quoted", "carol's OR", "NEAR(a b)", "*", "-x", "a:b", "^"] {
        history.search(query, 10).await.expect("literal query");
    }
    assert_eq!(
        history
            .search("\"quoted\"", 10)
            .await
            .expect("search")
            .len(),
        5
    );
    assert!(history.search("   ", 10).await.expect("search").is_empty());

    let page = history
        .conversation(&user("bob"), 10, None)
        .await
        .expect("reads");
    assert_eq!(page.first().map(|e| e.seq), Some(20));
    assert_eq!(page.last().map(|e| e.seq), Some(29));
    let older = history
        .conversation(&user("bob"), 10, Some(page[0].pos))
        .await
        .expect("reads");
    assert_eq!(
        older.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );

    let list = history.conversations().await.expect("reads");
    let summary: Vec<(String, u64, String)> = list
        .iter()
        .map(|c| (c.peer.to_string(), c.unread, c.last.text.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("carol".into(), 5, "carol's \"quoted\" line 4".into()),
            ("bob".into(), 0, "note 29 about Lunch".into()),
        ]
    );
    history.mark_read(&user("carol")).await.expect("marks");
    assert_eq!(history.conversations().await.expect("reads")[0].unread, 0);
}

#[tokio::test]
async fn a_damaged_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(HISTORY_FILE);
    std::fs::write(
        &path,
        b"this is not a database, just some text long enough to look like a page".repeat(80),
    )
    .expect("written");
    let error = History::open(&path).await.expect_err("garbage refused");
    assert!(matches!(error, HistoryError::Corrupt { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("damaged"), "{message}");

    // A real database whose pages were overwritten in the middle.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(HISTORY_FILE);
    let history = History::open(&path).await.expect("opens");
    for i in 0..300u64 {
        history
            .record_sent(&entry("bob", i, &"x".repeat(200)))
            .await
            .expect("recorded");
    }
    history.close().await;
    let mut bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 16 * 4096, "the database spans many pages");
    let end = bytes.len() - 4096;
    for b in &mut bytes[4096..end] {
        *b = 0xa5;
    }
    std::fs::write(&path, &bytes).expect("written");
    let outcome = match History::open(&path).await {
        Err(error) => Err(error),
        Ok(history) => match history.load_state().await {
            Ok(_) => history
                .conversation(&user("bob"), 1000, None)
                .await
                .map(|_| ()),
            Err(error) => Err(error),
        },
    };
    let error = outcome.expect_err("damage detected");
    assert!(matches!(error, HistoryError::Corrupt { .. }), "{error:?}");
}

/// Real end-to-end crypto between two services; the receiver is killed right after it
/// received a batch (receipts not yet sent) and the sender right after sending.
#[tokio::test]
async fn killed_services_lose_nothing_and_show_nothing_twice_with_real_crypto() {
    let mut net = Net::new(5, ChatConfig::default());
    net.loss = 0.1;
    let alice = net.add_node("alice", true).await;
    let bob = net.add_node("bob", true).await;
    let mut sent = Vec::new();
    for i in 0..30 {
        sent.push(net.send(alice, bob, format!("real {i}")).await);
        if i % 7 == 3 {
            // Deliver the copies, then kill the receiver before its receipt batch is due.
            net.run_for(Duration::from_millis(45)).await;
            net.kill(bob, Duration::from_millis(500));
        }
        if i % 11 == 5 {
            net.kill(alice, Duration::ZERO);
            net.run_for(Duration::ZERO).await;
        }
        net.run_for(Duration::from_millis(20)).await;
    }
    for _ in 0..20 {
        net.run_for(Duration::from_secs(30)).await;
        net.fetch_all_mailboxes().await;
    }
    let shown: Vec<&str> = net.nodes[&bob]
        .shown
        .iter()
        .map(|(_, id, _)| id.as_str())
        .collect();
    let expected: Vec<&str> = sent.iter().map(String::as_str).collect();
    assert_eq!(shown, expected, "lost, duplicated or reordered");
    assert!(net.nodes[&bob].kills >= 4 && net.nodes[&alice].kills >= 2);
    let delivered = &net.nodes[&alice].delivered;
    assert!(
        sent.iter().all(|id| delivered.contains(id)),
        "receipts missing"
    );
    // A service reopened from the files shows the same history and owes nothing.
    let profile = net.nodes[&bob].profile.path().to_path_buf();
    net.nodes.get_mut(&bob).expect("exists").service = None;
    let history = History::open_in_profile(&profile, Durability::PowerLoss)
        .await
        .expect("reopens");
    let texts: Vec<String> = history
        .conversation(&user("alice"), 100, None)
        .await
        .expect("reads")
        .into_iter()
        .map(|e| e.text)
        .collect();
    let expected_texts: Vec<String> = (0..30).map(|i| format!("real {i}")).collect();
    assert_eq!(texts, expected_texts);
}

/// The store holds message text: only its owner may read it or its write-ahead log, even
/// when the file was left readable by others.
#[tokio::test]
async fn the_store_and_its_log_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(HISTORY_FILE);
    let history = History::open(&path).await.expect("opens");
    history
        .record_sent(&entry("bob", 0, "private words"))
        .await
        .expect("recorded");
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join(format!("{HISTORY_FILE}-wal"));
    assert_eq!(mode(&wal), 0o600);
    history.close().await;

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let history = History::open(&path).await.expect("reopens");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(
        history
            .conversation(&user("bob"), 10, None)
            .await
            .expect("read")
            .len(),
        1
    );
    history.close().await;
}

/// The engine and the desktop window open the same new store at the same moment on first
/// start: both must get it, neither may fail on the other's half-applied schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_openers_of_a_new_store_both_succeed() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b) = tokio::join!(
            History::open_in_profile(dir.path(), Durability::ProcessCrash),
            History::open_in_profile(dir.path(), Durability::ProcessCrash),
        );
        let (a, b) = (a.expect("first opener"), b.expect("second opener"));
        a.record_sent(&entry("bob", 0, "hi"))
            .await
            .expect("written");
        assert_eq!(
            b.conversation(&user("bob"), 10, None)
                .await
                .expect("read")
                .len(),
            1
        );
        a.close().await;
        b.close().await;
    }
}
