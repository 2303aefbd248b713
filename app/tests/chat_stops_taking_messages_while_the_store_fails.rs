//! A chat store that stops accepting writes (disk full, file gone) must not turn messages
//! from peers into an ever-growing backlog in memory: the service refuses input until
//! what it already holds is written, and the refused messages come again later.

mod chat_support;

use app::engine::chat::{ChatInputError, ChatService};
use app::history::{Durability, History};
use chat_support::{PlainCrypto, claims};
use client_core::chat::ChatConfig;
use proto::peer::{ChatMessage, PeerToPeer};
use proto::{MessageId, SecretKey};
use rand::SeedableRng as _;
use std::time::Instant;

#[tokio::test]
async fn messages_from_peers_do_not_pile_up_while_the_store_fails() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let bob = claims("bob", SecretKey::generate_with(&mut rng).public());
    let alice = claims("alice", SecretKey::generate_with(&mut rng).public());
    let dir = tempfile::tempdir().expect("temp dir");
    let history = History::open_in_profile(dir.path(), Durability::ProcessCrash)
        .await
        .expect("history opens");
    let now = Instant::now();
    let mut service = ChatService::with_history(
        history,
        Box::new(PlainCrypto::new(bob)),
        ChatConfig::default(),
        now,
    )
    .await
    .expect("state loads");
    // The store fails from here on.
    service.history().close().await;

    let mut refused = 0;
    for seq in 0..500u64 {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&seq.to_le_bytes());
        let message = PeerToPeer::Chat(ChatMessage {
            id: MessageId(id),
            sent_at_millis: 1_800_000_000_000,
            seq,
            text: format!("message {seq}"),
        });
        match service.handle_message(now, &alice, message).await {
            Err(ChatInputError::History(_)) => refused += 1,
            other => panic!("a failing store must be reported, got {other:?}"),
        }
        assert!(
            service.unwritten() <= 1,
            "{} events wait for the store after {} messages",
            service.unwritten(),
            seq + 1
        );
    }
    assert_eq!(refused, 500);
    assert!(
        service.poll_transmit().is_none(),
        "no receipt for unwritten messages"
    );
}
