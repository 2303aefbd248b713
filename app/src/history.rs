//! The profile's chat store (`<profile>/history.sqlite`, SQLite through sqlx, WAL).
//!
//! It holds two things in one database so that one transaction can cover both:
//! - the history the user sees: every message sent or received, its delivery state, read
//!   marks, full-text search (FTS5) and the conversation list;
//! - what [`ChatCore`](client_core::chat::ChatCore) needs to resume after a crash
//!   ([`ChatState`]): the outbox, the receive window of every sending device and the next
//!   `seq` per conversation.
//!
//! Crash safety rests on two rules the caller (normally
//! [`ChatService`](crate::engine::chat::ChatService)) keeps: a sent message is recorded
//! ([`History::record_sent`]) before the user is told it was sent, and received messages are
//! stored together with their device's updated receive window ([`History::apply_all`]) before
//! any receipt for them leaves the device. Then a killed process neither loses an
//! acknowledged message nor shows one twice; the message id's `UNIQUE` constraint is a
//! second guard against duplicates.
//!
//! What it does not do: no network, no clock (callers pass wall times in), no encryption at
//! rest (the profile directory's permissions protect it), no migration of other formats.
//! Schema: `app/migrations/`.

use client_core::chat::{ChatEvent, ChatState, OutboxEntry, OutboxStage, ReceiveWindow};
use proto::peer::ChatMessage;
use proto::{MessageId, PublicKey, UserName};
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The file name of the store inside a profile directory.
pub const HISTORY_FILE: &str = "history.sqlite";

/// Runs of the migrations before a failure is reported (see [`History::open_with`]).
const MIGRATION_ATTEMPTS: u32 = 3;
/// Connection attempts, 50 ms apart, while another opener holds the new file's lock.
const CONNECT_ATTEMPTS: u32 = 20;

/// The most rows one query returns, whatever limit the caller asks for.
pub const MAX_ROWS: u32 = 10_000;

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("chat history {path} cannot be opened: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "chat history {path} is damaged or not a Peerphone history database ({reason}); move it away to start a new one"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("chat history {path} cannot be upgraded: {source}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("chat history {path}: {source}")]
    Database {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
}

/// How hard each commit pushes data to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = FULL`: a committed message survives a power cut.
    #[default]
    PowerLoss,
    /// `synchronous = NORMAL`: a committed message survives the process being killed, not
    /// necessarily a power cut (much faster; simulations and benchmarks of the logic).
    ProcessCrash,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Outgoing,
    Incoming,
}

/// Where a message stands, as shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageState {
    /// Sent from here; no device or mailbox has taken it yet.
    Sending,
    /// A device of the recipient has it (`chat_accepted{stored: false}`).
    Accepted,
    /// Durable in the offline mailbox (`chat_accepted{stored: true}`).
    Stored,
    /// A device of the recipient confirmed it (`chat_delivered`).
    Delivered,
    /// Received from the peer.
    Received,
}

impl MessageState {
    fn as_sql(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Accepted => "accepted",
            Self::Stored => "stored",
            Self::Delivered => "delivered",
            Self::Received => "received",
        }
    }

    fn from_sql(s: &str) -> Option<Self> {
        Some(match s {
            "sending" => Self::Sending,
            "accepted" => Self::Accepted,
            "stored" => Self::Stored,
            "delivered" => Self::Delivered,
            "received" => Self::Received,
            _ => return None,
        })
    }
}

/// One message of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Position in this device's history (increasing in the order messages were stored);
    /// pass it as `before` to [`History::conversation`] to page back.
    pub pos: i64,
    pub id: MessageId,
    /// The other user of the conversation.
    pub peer: UserName,
    pub direction: Direction,
    /// The sending device (incoming messages only).
    pub from_device: Option<PublicKey>,
    pub seq: u64,
    pub text: String,
    /// The sender's clock, milliseconds since the Unix epoch.
    pub sent_at_millis: u64,
    /// This device's clock when it stored an incoming message.
    pub received_at_millis: Option<u64>,
    pub state: MessageState,
    /// An incoming message the user has seen (always true for outgoing ones).
    pub read: bool,
}

/// One line of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub peer: UserName,
    pub last: HistoryEntry,
    pub unread: u64,
}

/// The chat store; cheap to share by reference, all methods take `&self`.
#[derive(Debug, Clone)]
pub struct History {
    pool: SqlitePool,
    path: PathBuf,
}

// SQLite integers are i64; u64 values from the wire (seq, times) are stored as their
// two's-complement bit pattern so every value round-trips.
fn to_sql(value: u64) -> i64 {
    value as i64
}

fn from_sql(value: i64) -> u64 {
    value as u64
}

fn stage_sql(stage: OutboxStage) -> &'static str {
    match stage {
        OutboxStage::Sending => "sending",
        OutboxStage::StoringOffline => "storing_offline",
        OutboxStage::Stored => "stored",
    }
}

fn stage_from_sql(s: &str) -> Option<OutboxStage> {
    Some(match s {
        "sending" => OutboxStage::Sending,
        "storing_offline" => OutboxStage::StoringOffline,
        "stored" => OutboxStage::Stored,
        _ => return None,
    })
}

fn keys_blob(keys: &[PublicKey]) -> Vec<u8> {
    keys.iter().flat_map(|k| *k.as_bytes()).collect()
}

/// An FTS5 query matching messages that contain every word of `text` (as a word prefix).
/// Each word is quoted, so FTS5 operators typed by the user are plain text.
fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split_whitespace()
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .take(16)
        .map(|word| format!("\"{}\"*", word.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// A query over `messages m` returning [`HistoryEntry`] columns (a `&'static str`, so
/// sqlx sees SQL text fixed at compile time).
macro_rules! entry_query {
    ($($rest:literal)+) => {
        concat!(
            "SELECT m.pos, m.id, m.peer, m.direction, m.from_device, m.seq, m.body, \
             m.sent_at_millis, m.received_at_millis, m.state, m.read",
            $($rest),+
        )
    };
}

impl History {
    /// Opens (creating when missing) the store at `path`, durable against power loss.
    pub async fn open(path: &Path) -> Result<Self, HistoryError> {
        Self::open_with(path, Durability::PowerLoss).await
    }

    /// Opens the store in a profile directory ([`HISTORY_FILE`]).
    pub async fn open_in_profile(
        profile_dir: &Path,
        durability: Durability,
    ) -> Result<Self, HistoryError> {
        Self::open_with(&profile_dir.join(HISTORY_FILE), durability).await
    }

    pub async fn open_with(path: &Path, durability: Durability) -> Result<Self, HistoryError> {
        restrict_to_owner(path).map_err(|source| HistoryError::Open {
            path: path.to_path_buf(),
            source: sqlx::Error::Io(source),
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::PowerLoss => SqliteSynchronous::Full,
                Durability::ProcessCrash => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10));
        // One connection: writes never race each other for SQLite's lock, and readers
        // (the UI) wait a few milliseconds at most.
        let mut attempt = 1;
        let pool = loop {
            match SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
            {
                Ok(pool) => break pool,
                // Turning a new file to WAL takes a lock the busy timeout does not wait
                // for; another opener holds it for milliseconds.
                Err(source) if attempt < CONNECT_ATTEMPTS && busy(&source) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(source) => return Err(classify_open(path, source)),
            }
        };
        let history = Self {
            pool,
            path: path.to_path_buf(),
        };
        // Another connection (the desktop window beside the engine) may be applying the
        // same migrations: ours then fails on its tables; once it committed, a second run
        // finds them applied.
        let mut migrated = MIGRATOR.run(&history.pool).await;
        for _ in 1..MIGRATION_ATTEMPTS {
            match &migrated {
                Err(
                    sqlx::migrate::MigrateError::Execute(e)
                    | sqlx::migrate::MigrateError::ExecuteMigration(e, _),
                ) if corruption(e).is_none() => {
                    migrated = MIGRATOR.run(&history.pool).await;
                }
                _ => break,
            }
        }
        if let Err(source) = migrated {
            history.pool.close().await;
            return Err(match source {
                sqlx::migrate::MigrateError::Execute(source) => classify_open(path, source),
                sqlx::migrate::MigrateError::ExecuteMigration(source, _)
                    if corruption(&source).is_some() =>
                {
                    classify_open(path, source)
                }
                source => HistoryError::Migrate {
                    path: path.to_path_buf(),
                    source,
                },
            });
        }
        Ok(history)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the connection (checkpointing the WAL). Dropping without it is safe too:
    /// every committed change is already in the WAL file.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn db(&self, source: sqlx::Error) -> HistoryError {
        match corruption(&source) {
            Some(reason) => HistoryError::Corrupt {
                path: self.path.clone(),
                reason,
            },
            None => HistoryError::Database {
                path: self.path.clone(),
                source,
            },
        }
    }

    fn corrupt(&self, reason: impl Into<String>) -> HistoryError {
        HistoryError::Corrupt {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Everything [`ChatCore::restore`](client_core::chat::ChatCore::restore) needs.
    pub async fn load_state(&self) -> Result<ChatState, HistoryError> {
        let mut state = ChatState::default();
        let rows = sqlx::query(
            "SELECT id, peer, devices, seq, body, sent_at_millis, stage, accepted \
             FROM outbox ORDER BY peer, seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        for row in rows {
            state.outbox.push(self.outbox_row(&row)?);
        }
        let rows = sqlx::query("SELECT peer, next FROM next_seq")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        for row in rows {
            let peer = self.user(&row, "peer")?;
            let next: i64 = row.try_get("next").map_err(|e| self.db(e))?;
            state.next_seq.insert(peer, from_sql(next));
        }
        let rows =
            sqlx::query("SELECT device, peer, next_seq, missing, recent_ids FROM receive_windows")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db(e))?;
        for row in rows {
            let device = self.key(&row, "device")?;
            let peer = self.user(&row, "peer")?;
            let next_seq: Option<i64> = row.try_get("next_seq").map_err(|e| self.db(e))?;
            let missing: Vec<u8> = row.try_get("missing").map_err(|e| self.db(e))?;
            let recent: Vec<u8> = row.try_get("recent_ids").map_err(|e| self.db(e))?;
            if !missing.len().is_multiple_of(8) || !recent.len().is_multiple_of(16) {
                return Err(self.corrupt("a receive window has a truncated field"));
            }
            let missing: BTreeSet<u64> = missing
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    u64::from_le_bytes(b)
                })
                .collect();
            let recent_ids: VecDeque<MessageId> = recent
                .chunks_exact(16)
                .map(|c| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(c);
                    MessageId(b)
                })
                .collect();
            state.windows.push((
                peer,
                device,
                ReceiveWindow {
                    next_seq: next_seq.map(from_sql),
                    missing,
                    recent_ids,
                },
            ));
        }
        Ok(state)
    }

    fn outbox_row(&self, row: &SqliteRow) -> Result<OutboxEntry, HistoryError> {
        let id = self.id(row, "id")?;
        let to = self.user(row, "peer")?;
        let devices_blob: Vec<u8> = row.try_get("devices").map_err(|e| self.db(e))?;
        if !devices_blob.len().is_multiple_of(32) {
            return Err(self.corrupt("an outbox row has a truncated device list"));
        }
        let mut devices = Vec::with_capacity(devices_blob.len() / 32);
        for chunk in devices_blob.chunks_exact(32) {
            let mut b = [0u8; 32];
            b.copy_from_slice(chunk);
            devices.push(
                PublicKey::from_bytes(b)
                    .map_err(|_| self.corrupt("an outbox row names an invalid device key"))?,
            );
        }
        let stage: String = row.try_get("stage").map_err(|e| self.db(e))?;
        let stage = stage_from_sql(&stage)
            .ok_or_else(|| self.corrupt(format!("unknown outbox stage {stage:?}")))?;
        let seq: i64 = row.try_get("seq").map_err(|e| self.db(e))?;
        let sent_at: i64 = row.try_get("sent_at_millis").map_err(|e| self.db(e))?;
        let accepted: bool = row.try_get("accepted").map_err(|e| self.db(e))?;
        Ok(OutboxEntry {
            to,
            devices,
            message: ChatMessage {
                id,
                sent_at_millis: from_sql(sent_at),
                seq: from_sql(seq),
                text: row.try_get("body").map_err(|e| self.db(e))?,
            },
            stage,
            accepted,
        })
    }

    fn id(&self, row: &SqliteRow, column: &str) -> Result<MessageId, HistoryError> {
        let bytes: Vec<u8> = row.try_get(column).map_err(|e| self.db(e))?;
        let bytes: [u8; 16] = bytes
            .try_into()
            .map_err(|_| self.corrupt("a message id is not 16 bytes"))?;
        Ok(MessageId(bytes))
    }

    fn key(&self, row: &SqliteRow, column: &str) -> Result<PublicKey, HistoryError> {
        let bytes: Vec<u8> = row.try_get(column).map_err(|e| self.db(e))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| self.corrupt("a device key is not 32 bytes"))?;
        PublicKey::from_bytes(bytes).map_err(|_| self.corrupt("an invalid device key"))
    }

    fn user(&self, row: &SqliteRow, column: &str) -> Result<UserName, HistoryError> {
        let name: String = row.try_get(column).map_err(|e| self.db(e))?;
        UserName::new(name).map_err(|_| self.corrupt("an invalid user name"))
    }

    /// Decodes a history row. `keys` caches validated device keys: a query returns many
    /// messages from few devices, and validating a key (a curve point decompression) costs
    /// more than the rest of the row.
    fn entry(
        &self,
        row: &SqliteRow,
        keys: &mut BTreeMap<Vec<u8>, PublicKey>,
    ) -> Result<HistoryEntry, HistoryError> {
        let direction: String = row.try_get("direction").map_err(|e| self.db(e))?;
        let direction = match direction.as_str() {
            "out" => Direction::Outgoing,
            "in" => Direction::Incoming,
            other => return Err(self.corrupt(format!("unknown direction {other:?}"))),
        };
        let from_device = match row
            .try_get::<Option<Vec<u8>>, _>("from_device")
            .map_err(|e| self.db(e))?
        {
            None => None,
            Some(bytes) => match keys.get(&bytes) {
                Some(key) => Some(*key),
                None => {
                    let key = self.key(row, "from_device")?;
                    if keys.len() < 64 {
                        keys.insert(bytes, key);
                    }
                    Some(key)
                }
            },
        };
        let state: String = row.try_get("state").map_err(|e| self.db(e))?;
        let state = MessageState::from_sql(&state)
            .ok_or_else(|| self.corrupt(format!("unknown message state {state:?}")))?;
        let seq: i64 = row.try_get("seq").map_err(|e| self.db(e))?;
        let sent_at: i64 = row.try_get("sent_at_millis").map_err(|e| self.db(e))?;
        let received_at: Option<i64> = row.try_get("received_at_millis").map_err(|e| self.db(e))?;
        Ok(HistoryEntry {
            pos: row.try_get("pos").map_err(|e| self.db(e))?,
            id: self.id(row, "id")?,
            peer: self.user(row, "peer")?,
            direction,
            from_device,
            seq: from_sql(seq),
            text: row.try_get("body").map_err(|e| self.db(e))?,
            sent_at_millis: from_sql(sent_at),
            received_at_millis: received_at.map(from_sql),
            state,
            read: row.try_get("read").map_err(|e| self.db(e))?,
        })
    }

    /// Records a message [`ChatCore::send`](client_core::chat::ChatCore::send) returned:
    /// its history row, its outbox row and the conversation's next `seq`, in one
    /// transaction. Call it before telling the user the message was sent.
    pub async fn record_sent(&self, entry: &OutboxEntry) -> Result<(), HistoryError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        let message = &entry.message;
        let id = message.id.0.to_vec();
        let state = if entry.accepted {
            MessageState::Accepted
        } else {
            MessageState::Sending
        };
        sqlx::query(
            "INSERT INTO messages (id, peer, direction, from_device, seq, body, sent_at_millis, \
             received_at_millis, state, read) VALUES (?, ?, 'out', NULL, ?, ?, ?, NULL, ?, 1) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(entry.to.as_str())
        .bind(to_sql(message.seq))
        .bind(&message.text)
        .bind(to_sql(message.sent_at_millis))
        .bind(state.as_sql())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db(e))?;
        upsert_outbox(&mut tx, entry)
            .await
            .map_err(|e| self.db(e))?;
        sqlx::query(
            "INSERT INTO next_seq (peer, next) VALUES (?, ?) \
             ON CONFLICT (peer) DO UPDATE SET next = max(next, excluded.next)",
        )
        .bind(entry.to.as_str())
        .bind(to_sql(message.seq.saturating_add(1)))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db(e))?;
        tx.commit().await.map_err(|e| self.db(e))
    }

    /// Rewrites one outbox row as the core now has it (for stage changes no event
    /// reports, such as a store confirmed for an already accepted message).
    pub async fn update_outbox(&self, entry: &OutboxEntry) -> Result<(), HistoryError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        let exists = sqlx::query("SELECT 1 FROM outbox WHERE id = ?")
            .bind(entry.message.id.0.to_vec())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        // An entry already delivered and deleted must not come back.
        if exists.is_some() {
            upsert_outbox(&mut tx, entry)
                .await
                .map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))
    }

    /// Applies one event; see [`History::apply_all`].
    pub async fn apply(
        &self,
        event: &ChatEvent,
        window: Option<(UserName, PublicKey, ReceiveWindow)>,
        received_at_millis: u64,
    ) -> Result<bool, HistoryError> {
        let windows: Vec<_> = window.into_iter().collect();
        let fresh = self
            .apply_all(std::slice::from_ref(event), &windows, received_at_millis)
            .await?;
        Ok(fresh.first().copied().unwrap_or(false))
    }

    /// Applies core events and the receive windows they advanced in ONE transaction: a
    /// received message and its window change land together or not at all.
    ///
    /// Returns, per event, whether it is news for the user: `false` for a
    /// [`ChatEvent::Received`] whose id the history already holds (never show it again).
    pub async fn apply_all(
        &self,
        events: &[ChatEvent],
        windows: &[(UserName, PublicKey, ReceiveWindow)],
        received_at_millis: u64,
    ) -> Result<Vec<bool>, HistoryError> {
        let mut fresh = Vec::with_capacity(events.len());
        if events.is_empty() && windows.is_empty() {
            return Ok(fresh);
        }
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        for event in events {
            let news = apply_event(&mut tx, event, received_at_millis)
                .await
                .map_err(|e| self.db(e))?;
            fresh.push(news);
        }
        for (user, device, window) in windows {
            let missing: Vec<u8> = window
                .missing
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect();
            let recent: Vec<u8> = window.recent_ids.iter().flat_map(|id| id.0).collect();
            sqlx::query(
                "INSERT INTO receive_windows (device, peer, next_seq, missing, recent_ids) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET peer = excluded.peer, \
                 next_seq = excluded.next_seq, missing = excluded.missing, \
                 recent_ids = excluded.recent_ids",
            )
            .bind(device.as_bytes().to_vec())
            .bind(user.as_str())
            .bind(window.next_seq.map(to_sql))
            .bind(missing)
            .bind(recent)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))?;
        Ok(fresh)
    }

    /// Whether the history holds message `id`.
    pub async fn contains(&self, id: &MessageId) -> Result<bool, HistoryError> {
        let row = sqlx::query("SELECT 1 FROM messages WHERE id = ?")
            .bind(id.0.to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        Ok(row.is_some())
    }

    /// One message by id.
    pub async fn message(&self, id: &MessageId) -> Result<Option<HistoryEntry>, HistoryError> {
        let row = sqlx::query(entry_query!(" FROM messages m WHERE m.id = ?"))
            .bind(id.0.to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        row.map(|row| self.entry(&row, &mut BTreeMap::new()))
            .transpose()
    }

    /// The latest `limit` messages with `peer` stored before position `before` (all when
    /// `None`), oldest first.
    pub async fn conversation(
        &self,
        peer: &UserName,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<HistoryEntry>, HistoryError> {
        let rows = sqlx::query(entry_query!(
            " FROM messages m WHERE m.peer = ? AND m.pos < ? ORDER BY m.pos DESC LIMIT ?"
        ))
        .bind(peer.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit.min(MAX_ROWS)))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        let mut keys = BTreeMap::new();
        let mut entries = rows
            .iter()
            .map(|row| self.entry(row, &mut keys))
            .collect::<Result<Vec<_>, _>>()?;
        entries.reverse();
        Ok(entries)
    }

    /// Messages containing every word of `text` (as word prefixes, case-insensitive), newest
    /// first. Search operators are not interpreted: the text is taken literally.
    pub async fn search(&self, text: &str, limit: u32) -> Result<Vec<HistoryEntry>, HistoryError> {
        let Some(query) = fts_query(text) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(entry_query!(
            " FROM messages_fts f JOIN messages m ON m.pos = f.rowid"
            " WHERE messages_fts MATCH ? ORDER BY m.pos DESC LIMIT ?"
        ))
        .bind(query)
        .bind(i64::from(limit.min(MAX_ROWS)))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        let mut keys = BTreeMap::new();
        rows.iter().map(|row| self.entry(row, &mut keys)).collect()
    }

    /// Every conversation with its latest message and unread count, most recent first.
    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>, HistoryError> {
        let rows = sqlx::query(entry_query!(
            ", (SELECT COUNT(*) FROM messages u WHERE u.peer = m.peer"
            " AND u.direction = 'in' AND u.read = 0) AS unread FROM messages m"
            " WHERE m.pos IN (SELECT MAX(pos) FROM messages GROUP BY peer)"
            " ORDER BY m.pos DESC LIMIT ?"
        ))
        .bind(i64::from(MAX_ROWS))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        let mut keys = BTreeMap::new();
        rows.iter()
            .map(|row| {
                let last = self.entry(row, &mut keys)?;
                let unread: i64 = row.try_get("unread").map_err(|e| self.db(e))?;
                Ok(ConversationSummary {
                    peer: last.peer.clone(),
                    last,
                    unread: u64::try_from(unread).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Marks every message from `peer` as read.
    pub async fn mark_read(&self, peer: &UserName) -> Result<(), HistoryError> {
        sqlx::query(
            "UPDATE messages SET read = 1 WHERE peer = ? AND direction = 'in' AND read = 0",
        )
        .bind(peer.as_str())
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Message counts per state (for diagnostics and tests).
    pub async fn counts(&self) -> Result<BTreeMap<String, u64>, HistoryError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM messages GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let state: String = row.try_get("state").map_err(|e| self.db(e))?;
            let n: i64 = row.try_get("n").map_err(|e| self.db(e))?;
            counts.insert(state, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }
}

async fn upsert_outbox(
    tx: &mut sqlx::SqliteConnection,
    entry: &OutboxEntry,
) -> Result<(), sqlx::Error> {
    let message = &entry.message;
    sqlx::query(
        "INSERT INTO outbox (id, peer, devices, seq, body, sent_at_millis, stage, accepted) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET \
         devices = excluded.devices, stage = excluded.stage, accepted = excluded.accepted",
    )
    .bind(message.id.0.to_vec())
    .bind(entry.to.as_str())
    .bind(keys_blob(&entry.devices))
    .bind(to_sql(message.seq))
    .bind(&message.text)
    .bind(to_sql(message.sent_at_millis))
    .bind(stage_sql(entry.stage))
    .bind(entry.accepted)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn apply_event(
    tx: &mut sqlx::SqliteConnection,
    event: &ChatEvent,
    received_at_millis: u64,
) -> Result<bool, sqlx::Error> {
    match event {
        ChatEvent::Received {
            from,
            device,
            message,
            ..
        } => {
            let result = sqlx::query(
                "INSERT INTO messages (id, peer, direction, from_device, seq, body, \
                 sent_at_millis, received_at_millis, state, read) \
                 VALUES (?, ?, 'in', ?, ?, ?, ?, ?, 'received', 0) ON CONFLICT (id) DO NOTHING",
            )
            .bind(message.id.0.to_vec())
            .bind(from.as_str())
            .bind(device.as_bytes().to_vec())
            .bind(to_sql(message.seq))
            .bind(&message.text)
            .bind(to_sql(message.sent_at_millis))
            .bind(to_sql(received_at_millis))
            .execute(&mut *tx)
            .await?;
            Ok(result.rows_affected() > 0)
        }
        ChatEvent::Accepted { id, stored, .. } => {
            let id = id.0.to_vec();
            if *stored {
                sqlx::query("UPDATE outbox SET accepted = 1, stage = 'stored' WHERE id = ?")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE messages SET state = 'stored' WHERE id = ? \
                     AND state IN ('sending', 'accepted')",
                )
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query("UPDATE outbox SET accepted = 1 WHERE id = ?")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE messages SET state = 'accepted' WHERE id = ? AND state = 'sending'",
                )
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            }
            Ok(true)
        }
        ChatEvent::Delivered { id, .. } => {
            let id = id.0.to_vec();
            sqlx::query("DELETE FROM outbox WHERE id = ?")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE messages SET state = 'delivered' WHERE id = ? AND direction = 'out'",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            Ok(true)
        }
        ChatEvent::ReceiptAbandoned { id, .. } => {
            sqlx::query("DELETE FROM outbox WHERE id = ?")
                .bind(id.0.to_vec())
                .execute(&mut *tx)
                .await?;
            Ok(true)
        }
        ChatEvent::StoreOffline { envelope } => {
            sqlx::query(
                "UPDATE outbox SET stage = 'storing_offline' WHERE id = ? AND stage = 'sending'",
            )
            .bind(envelope.id.0.to_vec())
            .execute(&mut *tx)
            .await?;
            Ok(true)
        }
        ChatEvent::Gap { .. } => Ok(true),
    }
}

/// Creates the database file (or narrows an existing one) with mode 0600 before SQLite
/// opens it: it holds message text, and SQLite gives its `-wal` and `-shm` files the mode
/// of the database file.
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let permissions = file.metadata()?.permissions();
    if permissions.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(permissions.mode() & !0o077))?;
    }
    Ok(())
}

fn corruption(error: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    // SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), possibly as extended codes.
    let code: i64 = db.code()?.parse().ok()?;
    matches!(code & 0xff, 11 | 26).then(|| db.message().to_string())
}

/// SQLITE_BUSY (5), possibly as an extended code.
fn busy(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    db.code()
        .and_then(|code| code.parse::<i64>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

fn classify_open(path: &Path, source: sqlx::Error) -> HistoryError {
    match corruption(&source) {
        Some(reason) => HistoryError::Corrupt {
            path: path.to_path_buf(),
            reason,
        },
        None => HistoryError::Open {
            path: path.to_path_buf(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_are_quoted_literally() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(fts_query("?? !"), None);
        assert_eq!(
            fts_query("hello wor\"ld OR"),
            Some("\"hello\"* \"wor\"\"ld\"* \"OR\"*".to_string())
        );
    }

    #[test]
    fn wire_integers_round_trip_through_sqlite_integers() {
        for v in [0, 1, u64::MAX, u64::MAX / 2 + 1, 1_800_000_000_000] {
            assert_eq!(from_sql(to_sql(v)), v);
        }
    }
}
