//! How many chat messages per second the profile's history store (`app::history`) persists,
//! against a baseline measured in the same run: a bare one-row INSERT per transaction into
//! a table of the same shape, same file settings. Run through `bench/chat_history.sh`.
//!
//! Usage: `chat_history_bench [MESSAGES]` (default 5000 per row of the table).

use app::history::{Durability, History};
use client_core::chat::{ChatEvent, OutboxEntry, OutboxStage, ReceiveWindow};
use proto::peer::ChatMessage;
use proto::{MessageId, SecretKey, UserName};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::time::Instant;

fn message(seq: u64) -> ChatMessage {
    ChatMessage {
        id: MessageId::random(&mut rand::rng()),
        sent_at_millis: 1_800_000_000_000 + seq,
        seq,
        text: format!("message number {seq}: a typical short chat line of sixty-odd bytes"),
    }
}

fn rate(n: usize, started: Instant) -> f64 {
    n as f64 / started.elapsed().as_secs_f64()
}

async fn baseline(dir: &std::path::Path, durability: Durability, n: usize) -> f64 {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("baseline.sqlite"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match durability {
            Durability::PowerLoss => SqliteSynchronous::Full,
            Durability::ProcessCrash => SqliteSynchronous::Normal,
        });
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("baseline database opens");
    sqlx::query(
        "CREATE TABLE m (pos INTEGER PRIMARY KEY, id BLOB UNIQUE, peer TEXT, seq INTEGER, \
         body TEXT, sent_at_millis INTEGER)",
    )
    .execute(&pool)
    .await
    .expect("table");
    let started = Instant::now();
    for seq in 0..n as u64 {
        let m = message(seq);
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("INSERT INTO m (id, peer, seq, body, sent_at_millis) VALUES (?, ?, ?, ?, ?)")
            .bind(m.id.0.to_vec())
            .bind("bob")
            .bind(seq as i64)
            .bind(&m.text)
            .bind(m.sent_at_millis as i64)
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
    }
    let r = rate(n, started);
    pool.close().await;
    r
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("MESSAGES is a number"))
        .unwrap_or(5000);
    let bob = UserName::new("bob").expect("valid");
    let device = SecretKey::generate().public();
    println!("| durability | operation | messages/s |");
    println!("| --- | --- | --- |");
    for (durability, label) in [
        (Durability::PowerLoss, "FULL (power-loss safe, default)"),
        (Durability::ProcessCrash, "NORMAL (process-crash safe)"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = baseline(dir.path(), durability, n).await;
        println!("| {label} | baseline: bare 1-row INSERT per transaction | {base:.0} |");
        let history = History::open_in_profile(dir.path(), durability)
            .await
            .expect("history opens");

        // Sending: message row + outbox row + seq counter, one transaction each.
        let mut sent = Vec::with_capacity(n);
        let started = Instant::now();
        for seq in 0..n as u64 {
            let entry = OutboxEntry {
                to: bob.clone(),
                devices: vec![device],
                message: message(seq),
                stage: OutboxStage::Sending,
                accepted: false,
            };
            history.record_sent(&entry).await.expect("recorded");
            sent.push(entry.message.id);
        }
        println!(
            "| {label} | record_sent (1 per transaction) | {:.0} |",
            rate(n, started)
        );

        // Receipts: accepted then delivered, as ChatService writes them (one batch each).
        let started = Instant::now();
        for id in &sent {
            let events = [
                ChatEvent::Accepted {
                    to: bob.clone(),
                    id: *id,
                    stored: false,
                },
                ChatEvent::Delivered {
                    to: bob.clone(),
                    id: *id,
                },
            ];
            history.apply_all(&events, &[], 0).await.expect("applied");
        }
        println!(
            "| {label} | accepted + delivered (1 message per transaction) | {:.0} |",
            rate(n, started)
        );

        // Receiving: message + the device's full receive window (1024 recent ids).
        for batch in [1usize, 16] {
            let mut window = ReceiveWindow::default();
            let started = Instant::now();
            let mut seq = 0u64;
            while (seq as usize) < n {
                let mut events = Vec::with_capacity(batch);
                for _ in 0..batch {
                    let m = message(seq);
                    window.next_seq = Some(seq + 1);
                    window.recent_ids.push_back(m.id);
                    if window.recent_ids.len() > 1024 {
                        window.recent_ids.pop_front();
                    }
                    events.push(ChatEvent::Received {
                        from: bob.clone(),
                        device,
                        message: m,
                        late: false,
                    });
                    seq += 1;
                }
                history
                    .apply_all(&events, &[(bob.clone(), device, window.clone())], 1)
                    .await
                    .expect("applied");
            }
            println!(
                "| {label} | received + 1024-id window ({batch} per transaction) | {:.0} |",
                rate(seq as usize, started)
            );
        }
        if durability == Durability::ProcessCrash {
            let rows = 4 * n;
            let started = Instant::now();
            let queries = 200;
            for i in 0..queries {
                let hits = history
                    .search(&format!("number {}", i * 7), 50)
                    .await
                    .expect("search");
                assert!(!hits.is_empty());
            }
            let per = started.elapsed().as_secs_f64() * 1000.0 / f64::from(queries);
            println!("| {label} | search, {rows} messages stored: ms per query | {per:.2} |");
            let started = Instant::now();
            for _ in 0..queries {
                history
                    .conversation(&bob, 50, None)
                    .await
                    .expect("conversation");
            }
            let per = started.elapsed().as_secs_f64() * 1000.0 / f64::from(queries);
            println!("| {label} | latest 50 of a conversation: ms per query | {per:.2} |");
        }
        history.close().await;
    }
}
