//! Persistent state through sqlx: SQLite by default, PostgreSQL for shared deployments.
//!
//! Both engines run the same queries through `sqlx::Any`; the schema lives in two migration
//! folders (`migrations/sqlite`, `migrations/postgres`) with identical tables and columns,
//! because the engines disagree on type names (`BLOB` / `BYTEA`) and on text collation
//! (prefix search needs bytewise order: `COLLATE "C"` on PostgreSQL). One query set keeps
//! the two engines from drifting apart; two folders keep each schema idiomatic.
//!
//! Durability: SQLite runs in WAL mode with `synchronous = FULL`, so a committed
//! transaction survives a killed process *and* a power cut. (`NORMAL` would survive a
//! killed process only, and an acknowledged offline message must never be lost.)
//!
//! Nothing here is cached per process: every answer is read from the database, so several
//! login-server processes can share one PostgreSQL database.
//!
//! All times are stored as integers (seconds, or milliseconds for throttling); every
//! unsigned value is stored as `i64` because that is what both engines share.

use crate::core::throttle::{Millis, RetryAfter, ThrottlePolicy, ThrottleState};
use proto::directory::{DirectoryEntry, SupernodeAddrs};
use proto::login::{Contact, ContactState, Envelope, UserInfo};
use proto::{DisplayName, MessageId, PublicKey, SignedCredential, UnixTime, UserName};
use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Connection as _, Row as _};
use std::net::IpAddr;
use std::str::FromStr as _;
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Credentials and homes older than this are not reported by lookups.
pub const LOOKUP_RECENT: Duration = Duration::from_secs(72 * 3600);

/// A storage operation failed on the server's side.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite:PATH or postgres://...)")]
    UnsupportedUrl,
    #[error("stored data is corrupt: {0}")]
    Corrupt(&'static str),
}

/// Which engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// How a contact operation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactOutcome {
    Done,
    NoSuchUser,
    NotAllowed,
}

/// How storing an offline envelope went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Durable (or silently dropped because the recipient blocked the sender).
    Stored,
    NoSuchUser,
    MailboxFull,
}

/// Bounds on one recipient's mailbox.
#[derive(Debug, Clone, Copy)]
pub struct MailboxLimits {
    pub max_envelopes: i64,
    pub max_bytes: i64,
    pub max_age: Duration,
}

impl Default for MailboxLimits {
    fn default() -> Self {
        Self {
            max_envelopes: 1000,
            max_bytes: 8 * 1024 * 1024,
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// A live supernode as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupernodeRecord {
    pub entry: DirectoryEntry,
    pub source_ip: String,
    pub last_heartbeat: UnixTime,
}

/// A user's row, for authentication.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub name: UserName,
    pub display_name: DisplayName,
    pub password_hash: String,
}

/// The database handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

fn unix(v: i64) -> UnixTime {
    UnixTime::from_secs(u64::try_from(v).unwrap_or(0))
}

fn state_code(state: ContactState) -> i64 {
    match state {
        ContactState::Accepted => 0,
        ContactState::RequestSent => 1,
        ContactState::RequestReceived => 2,
        ContactState::Blocked => 3,
    }
}

fn state_from_code(code: i64) -> Result<ContactState, StoreError> {
    Ok(match code {
        0 => ContactState::Accepted,
        1 => ContactState::RequestSent,
        2 => ContactState::RequestReceived,
        3 => ContactState::Blocked,
        _ => return Err(StoreError::Corrupt("contact state")),
    })
}

fn key_from_blob(blob: &[u8]) -> Result<PublicKey, StoreError> {
    let bytes: [u8; 32] = blob.try_into().map_err(|_| StoreError::Corrupt("key"))?;
    PublicKey::from_bytes(bytes).map_err(|_| StoreError::Corrupt("key"))
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

impl Store {
    /// Opens (creating when missing) the database at `url` and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        if engine == Engine::Sqlite {
            // WAL is a property of the database file: set it once, with a connection that
            // may create the file, before the pool opens it.
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
            let mut conn = sqlx::sqlite::SqliteConnection::connect_with(&options).await?;
            SQLITE_MIGRATIONS.run(&mut conn).await?;
            conn.close().await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if engine == Engine::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        if engine == Engine::Postgres {
            // sqlx takes an advisory lock, so processes starting together migrate once.
            POSTGRES_MIGRATIONS.run(&pool).await?;
        }
        Ok(Self { pool, engine })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Closes every connection (at shutdown, so SQLite checkpoints its WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- accounts ----

    /// Creates an account; `false` when the name is taken.
    pub async fn create_user(
        &self,
        name: &UserName,
        display_name: &DisplayName,
        password_hash: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (name, display_name, display_lower, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.as_str())
        .bind(display_name.as_str())
        .bind(display_name.as_str().to_lowercase())
        .bind(password_hash)
        .bind(secs(now))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Renames an account, keeping the lower-cased copy that prefix search reads in step;
    /// `false` when there is no such account.
    pub async fn set_display_name(
        &self,
        name: &UserName,
        display_name: &DisplayName,
    ) -> Result<bool, StoreError> {
        let result =
            sqlx::query("UPDATE users SET display_name = $1, display_lower = $2 WHERE name = $3")
                .bind(display_name.as_str())
                .bind(display_name.as_str().to_lowercase())
                .bind(name.as_str())
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn user(&self, name: &UserName) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT display_name, password_hash FROM users WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(UserRecord {
                name: name.clone(),
                display_name: DisplayName::new(row.try_get::<String, _>(0)?)
                    .map_err(|_| StoreError::Corrupt("display name"))?,
                password_hash: row.try_get(1)?,
            })
        })
        .transpose()
    }

    /// Records an issued credential and marks the user as seen.
    pub async fn record_credential(
        &self,
        serial: u64,
        user: &UserName,
        device_key: &PublicKey,
        issued_at: UnixTime,
        expires_at: UnixTime,
        signed: &SignedCredential,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_credential(
            &mut tx, serial, user, device_key, issued_at, expires_at, signed,
        )
        .await?;
        sqlx::query("UPDATE users SET last_seen = $1 WHERE name = $2")
            .bind(secs(issued_at))
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether credential `serial` of `user` is known and not revoked (and the user still
    /// exists).
    pub async fn credential_is_live(
        &self,
        serial: u64,
        user: &UserName,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT c.revoked_at FROM credentials c JOIN users u ON u.name = c.user_name \
             WHERE c.serial = $1 AND c.user_name = $2",
        )
        .bind(serial_i64(serial))
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => row.try_get::<Option<i64>, _>(0)?.is_none(),
            None => false,
        })
    }

    /// Replaces the password hash, revokes every live credential of the user and records
    /// `fresh` (the caller's new credential), in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn change_password(
        &self,
        user: &UserName,
        password_hash: &str,
        now: UnixTime,
        fresh_serial: u64,
        device_key: &PublicKey,
        expires_at: UnixTime,
        fresh: &SignedCredential,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1, last_seen = $2 WHERE name = $3")
            .bind(password_hash)
            .bind(secs(now))
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        revoke_user_credentials(&mut tx, user, now).await?;
        insert_credential(
            &mut tx,
            fresh_serial,
            user,
            device_key,
            now,
            expires_at,
            fresh,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the account and everything stored for it; revokes its credentials.
    pub async fn delete_user(&self, user: &UserName, now: UnixTime) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        revoke_user_credentials(&mut tx, user, now).await?;
        for sql in [
            "DELETE FROM contacts WHERE owner = $1 OR peer = $1",
            "DELETE FROM mailbox WHERE recipient = $1",
            "DELETE FROM users WHERE name = $1",
        ] {
            sqlx::query(sql)
                .bind(user.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The revocation list's version and its unexpired entries (newest first, at most
    /// `max`).
    pub async fn revocations(
        &self,
        now: UnixTime,
        max: i64,
    ) -> Result<(u64, Vec<(u64, UnixTime)>), StoreError> {
        let version: i64 = sqlx::query("SELECT value FROM counters WHERE name = 'revocations'")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let rows = sqlx::query(
            "SELECT serial, expires_at FROM revocations WHERE expires_at > $1 \
             ORDER BY version DESC, serial LIMIT $2",
        )
        .bind(secs(now))
        .bind(max)
        .fetch_all(&self.pool)
        .await?;
        let mut revoked = Vec::with_capacity(rows.len());
        for row in rows {
            let serial: i64 = row.try_get(0)?;
            revoked.push((serial as u64, unix(row.try_get(1)?)));
        }
        Ok((u64::try_from(version).unwrap_or(0), revoked))
    }

    pub async fn revocation_version(&self) -> Result<u64, StoreError> {
        let version: i64 = sqlx::query("SELECT value FROM counters WHERE name = 'revocations'")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(u64::try_from(version).unwrap_or(0))
    }

    // ---- lookup and search ----

    /// What supernodes and users may know about `name`.
    pub async fn lookup(
        &self,
        name: &UserName,
        now: UnixTime,
        max_credentials: i64,
    ) -> Result<Option<UserInfo>, StoreError> {
        let row = sqlx::query(
            "SELECT name, display_name, last_seen, home_supernode, home_at FROM users \
             WHERE name = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut info = user_info(&row, now)?;
        let recent = secs(now.saturating_sub(LOOKUP_RECENT));
        let rows = sqlx::query(
            "SELECT signed FROM credentials WHERE user_name = $1 AND revoked_at IS NULL \
             AND expires_at > $2 AND issued_at > $3 ORDER BY issued_at DESC LIMIT $4",
        )
        .bind(name.as_str())
        .bind(secs(now))
        .bind(recent)
        .bind(max_credentials)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let bytes: Vec<u8> = row.try_get(0)?;
            info.credentials.push(
                SignedCredential::from_bytes(&bytes)
                    .map_err(|_| StoreError::Corrupt("credential"))?,
            );
        }
        Ok(Some(info))
    }

    /// Exact user name first, then display names starting with `query` (case-insensitive),
    /// at most `limit` results.
    pub async fn search(
        &self,
        query: &str,
        limit: usize,
        now: UnixTime,
    ) -> Result<Vec<UserInfo>, StoreError> {
        let mut out: Vec<UserInfo> = Vec::new();
        if let Ok(name) = UserName::new(query.trim())
            && let Some(mut info) = self.lookup(&name, now, 0).await?
        {
            info.credentials.clear();
            out.push(info);
        }
        let prefix = query.trim().to_lowercase();
        if prefix.is_empty() || out.len() >= limit {
            return Ok(out);
        }
        // A range scan instead of LIKE: no escaping, and the index serves it on both
        // engines (bytewise order, see the migrations).
        let mut upper = prefix.clone();
        upper.push(char::MAX);
        let rows = sqlx::query(
            "SELECT name, display_name, last_seen, home_supernode, home_at FROM users \
             WHERE display_lower >= $1 AND display_lower < $2 ORDER BY display_lower, name \
             LIMIT $3",
        )
        .bind(&prefix)
        .bind(&upper)
        .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let info = user_info(&row, now)?;
            if out.len() < limit && !out.iter().any(|o| o.user == info.user) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Marks `user` as homed on `supernode` at `now`.
    pub async fn set_home(
        &self,
        user: &UserName,
        supernode: &PublicKey,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET home_supernode = $1, home_at = $2, last_seen = $2 WHERE name = $3",
        )
        .bind(supernode.as_bytes().to_vec())
        .bind(secs(now))
        .bind(user.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- contacts ----

    pub async fn contacts(&self, owner: &UserName) -> Result<Vec<Contact>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.peer, u.display_name, c.state FROM contacts c \
             JOIN users u ON u.name = c.peer WHERE c.owner = $1 ORDER BY c.peer",
        )
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Contact {
                    user: UserName::new(row.try_get::<String, _>(0)?)
                        .map_err(|_| StoreError::Corrupt("user name"))?,
                    display_name: DisplayName::new(row.try_get::<String, _>(1)?)
                        .map_err(|_| StoreError::Corrupt("display name"))?,
                    state: state_from_code(row.try_get(2)?)?,
                })
            })
            .collect()
    }

    /// Applies one buddy-list operation of `owner` on `peer`.
    pub async fn contact_op(
        &self,
        op: ContactOp,
        owner: &UserName,
        peer: &UserName,
        now: UnixTime,
    ) -> Result<ContactOutcome, StoreError> {
        if owner == peer {
            return Ok(ContactOutcome::NotAllowed);
        }
        let mut tx = self.pool.begin().await?;
        // Take the write lock first (SQLite cannot upgrade a read transaction under
        // contention) by touching the owner's row.
        sqlx::query("UPDATE users SET name = name WHERE name = $1")
            .bind(owner.as_str())
            .execute(&mut *tx)
            .await?;
        let exists = sqlx::query("SELECT 1 FROM users WHERE name = $1")
            .bind(peer.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Ok(ContactOutcome::NoSuchUser);
        }
        let mine = contact_state(&mut tx, owner, peer).await?;
        let theirs = contact_state(&mut tx, peer, owner).await?;
        use ContactState::*;
        let outcome = match op {
            ContactOp::Add => {
                match (mine, theirs) {
                    (Some(Accepted), _) => {}
                    (_, Some(Blocked)) => {
                        // Never tell the requester they are blocked.
                        set_contact(&mut tx, owner, peer, RequestSent, now).await?;
                    }
                    (_, Some(RequestSent)) | (Some(RequestReceived), _) => {
                        set_contact(&mut tx, owner, peer, Accepted, now).await?;
                        set_contact(&mut tx, peer, owner, Accepted, now).await?;
                    }
                    _ => {
                        set_contact(&mut tx, owner, peer, RequestSent, now).await?;
                        set_contact(&mut tx, peer, owner, RequestReceived, now).await?;
                    }
                }
                ContactOutcome::Done
            }
            ContactOp::Accept => match mine {
                Some(RequestReceived) => {
                    set_contact(&mut tx, owner, peer, Accepted, now).await?;
                    if theirs != Some(Blocked) {
                        set_contact(&mut tx, peer, owner, Accepted, now).await?;
                    }
                    ContactOutcome::Done
                }
                Some(Accepted) => ContactOutcome::Done,
                _ => ContactOutcome::NotAllowed,
            },
            ContactOp::Decline => match mine {
                Some(RequestReceived) => {
                    delete_contact(&mut tx, owner, peer).await?;
                    if theirs == Some(RequestSent) {
                        delete_contact(&mut tx, peer, owner).await?;
                    }
                    ContactOutcome::Done
                }
                _ => ContactOutcome::NotAllowed,
            },
            ContactOp::Remove => {
                delete_contact(&mut tx, owner, peer).await?;
                if theirs.is_some() && theirs != Some(Blocked) {
                    delete_contact(&mut tx, peer, owner).await?;
                }
                ContactOutcome::Done
            }
            ContactOp::Block => {
                set_contact(&mut tx, owner, peer, Blocked, now).await?;
                if theirs.is_some() && theirs != Some(Blocked) {
                    delete_contact(&mut tx, peer, owner).await?;
                }
                ContactOutcome::Done
            }
            ContactOp::Unblock => {
                if mine == Some(Blocked) {
                    delete_contact(&mut tx, owner, peer).await?;
                }
                ContactOutcome::Done
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    // ---- mailbox ----

    /// Stores `envelope` durably (committed before returning).
    pub async fn store_envelope(
        &self,
        envelope: &Envelope,
        now: UnixTime,
        limits: &MailboxLimits,
    ) -> Result<StoreOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Lock the recipient's row so concurrent senders cannot both squeeze past the
        // mailbox bound.
        let exists = sqlx::query("UPDATE users SET name = name WHERE name = $1")
            .bind(envelope.to.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !exists {
            return Ok(StoreOutcome::NoSuchUser);
        }
        if contact_state(&mut tx, &envelope.to, &envelope.from).await?
            == Some(ContactState::Blocked)
        {
            return Ok(StoreOutcome::Stored);
        }
        let row = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM mailbox \
             WHERE recipient = $1",
        )
        .bind(envelope.to.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let (count, bytes): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let size = i64::try_from(envelope.sealed.len()).unwrap_or(i64::MAX);
        let duplicate = sqlx::query("SELECT 1 FROM mailbox WHERE recipient = $1 AND id = $2")
            .bind(envelope.to.as_str())
            .bind(envelope.id.0.to_vec())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if duplicate {
            return Ok(StoreOutcome::Stored);
        }
        if count >= limits.max_envelopes || bytes.saturating_add(size) > limits.max_bytes {
            return Ok(StoreOutcome::MailboxFull);
        }
        sqlx::query(
            "INSERT INTO mailbox (recipient, id, sender, sent_at, stored_at, size, sealed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(envelope.to.as_str())
        .bind(envelope.id.0.to_vec())
        .bind(envelope.from.as_str())
        .bind(secs(envelope.sent_at))
        .bind(secs(now))
        .bind(size)
        .bind(envelope.sealed.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(StoreOutcome::Stored)
    }

    /// Up to `max` unexpired envelopes for `recipient`, oldest first, and whether more wait.
    pub async fn fetch_mailbox(
        &self,
        recipient: &UserName,
        max: usize,
        now: UnixTime,
        limits: &MailboxLimits,
    ) -> Result<(Vec<Envelope>, bool), StoreError> {
        let cutoff = secs(now.saturating_sub(limits.max_age));
        let rows = sqlx::query(
            "SELECT id, sender, sent_at, sealed FROM mailbox WHERE recipient = $1 \
             AND stored_at > $2 ORDER BY stored_at, id LIMIT $3",
        )
        .bind(recipient.as_str())
        .bind(cutoff)
        .bind(i64::try_from(max + 1).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() > max;
        let mut out = Vec::with_capacity(rows.len().min(max));
        for row in rows.iter().take(max) {
            let id: Vec<u8> = row.try_get(0)?;
            out.push(Envelope {
                id: MessageId(
                    id.as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("message id"))?,
                ),
                from: UserName::new(row.try_get::<String, _>(1)?)
                    .map_err(|_| StoreError::Corrupt("sender"))?,
                to: recipient.clone(),
                sent_at: unix(row.try_get(2)?),
                sealed: row.try_get(3)?,
            });
        }
        Ok((out, more))
    }

    /// Deletes acknowledged envelopes of `recipient`.
    pub async fn ack_mailbox(
        &self,
        recipient: &UserName,
        ids: &[MessageId],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query("DELETE FROM mailbox WHERE recipient = $1 AND id = $2")
                .bind(recipient.as_str())
                .bind(id.0.to_vec())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Envelopes waiting in all mailboxes (for the metrics).
    pub async fn mailbox_depth(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM mailbox")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    // ---- supernodes ----

    /// Live supernodes other than `key` whose source address is `ip`.
    pub async fn live_supernodes_from(
        &self,
        ip: IpAddr,
        key: &PublicKey,
        now: UnixTime,
        stale: Duration,
    ) -> Result<usize, StoreError> {
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) FROM supernodes WHERE source_ip = $1 AND key <> $2 \
             AND last_heartbeat > $3",
        )
        .bind(ip.to_string())
        .bind(key.as_bytes().to_vec())
        .bind(secs(now.saturating_sub(stale)))
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// Adds or refreshes a supernode. `admitted_at` restarts when it had gone stale.
    pub async fn upsert_supernode(
        &self,
        key: &PublicKey,
        addrs: &SupernodeAddrs,
        source: IpAddr,
        now: UnixTime,
        stale: Duration,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO supernodes (key, quic, turn, tcp, source_ip, admitted_at, \
             last_heartbeat, homed_users) VALUES ($1, $2, $3, $4, $5, $6, $6, 0) \
             ON CONFLICT (key) DO UPDATE SET quic = excluded.quic, turn = excluded.turn, \
             tcp = excluded.tcp, source_ip = excluded.source_ip, \
             admitted_at = CASE WHEN supernodes.last_heartbeat > $7 \
                 THEN supernodes.admitted_at ELSE excluded.admitted_at END, \
             last_heartbeat = excluded.last_heartbeat",
        )
        .bind(key.as_bytes().to_vec())
        .bind(addrs.quic.to_string())
        .bind(addrs.turn.map(|a| a.to_string()))
        .bind(addrs.tcp.map(|a| a.to_string()))
        .bind(source.to_string())
        .bind(secs(now))
        .bind(secs(now.saturating_sub(stale)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a heartbeat; `false` when the supernode is unknown or went stale.
    pub async fn heartbeat(
        &self,
        key: &PublicKey,
        homed_users: u32,
        now: UnixTime,
        stale: Duration,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE supernodes SET last_heartbeat = $1, homed_users = $2 \
             WHERE key = $3 AND last_heartbeat > $4",
        )
        .bind(secs(now))
        .bind(i64::from(homed_users))
        .bind(key.as_bytes().to_vec())
        .bind(secs(now.saturating_sub(stale)))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Supernodes heard from within `stale`, sorted by key.
    pub async fn live_supernodes(
        &self,
        now: UnixTime,
        stale: Duration,
        max: usize,
    ) -> Result<Vec<SupernodeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, quic, turn, tcp, source_ip, admitted_at, last_heartbeat \
             FROM supernodes WHERE last_heartbeat > $1 ORDER BY key LIMIT $2",
        )
        .bind(secs(now.saturating_sub(stale)))
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let parse = |s: String| {
            s.parse()
                .map_err(|_| StoreError::Corrupt("supernode address"))
        };
        rows.into_iter()
            .map(|row| {
                let key: Vec<u8> = row.try_get(0)?;
                let turn: Option<String> = row.try_get(2)?;
                let tcp: Option<String> = row.try_get(3)?;
                Ok(SupernodeRecord {
                    entry: DirectoryEntry {
                        key: key_from_blob(&key)?,
                        addrs: SupernodeAddrs {
                            quic: parse(row.try_get(1)?)?,
                            turn: turn.map(parse).transpose()?,
                            tcp: tcp.map(parse).transpose()?,
                        },
                        admitted_at: unix(row.try_get(5)?),
                    },
                    source_ip: row.try_get(4)?,
                    last_heartbeat: unix(row.try_get(6)?),
                })
            })
            .collect()
    }

    // ---- throttling ----

    /// Checks every `(key, policy)` at `now_millis`; when all allow it, records the attempt
    /// as a failure on each (to be forgiven on success), atomically.
    pub async fn throttle_attempt(
        &self,
        keys: &[(&str, ThrottlePolicy)],
        now_millis: Millis,
    ) -> Result<Result<(), RetryAfter>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut states = Vec::with_capacity(keys.len());
        for (key, _) in keys {
            states.push(load_throttle(&mut tx, key).await?);
        }
        let mut refused: Option<RetryAfter> = None;
        for ((_, policy), state) in keys.iter().zip(&states) {
            if let Err(retry) = state.check(policy, now_millis) {
                refused = Some(match refused {
                    Some(r) if r.millis >= retry.millis => r,
                    _ => retry,
                });
            }
        }
        if let Some(retry) = refused {
            tx.rollback().await?;
            return Ok(Err(retry));
        }
        for ((key, policy), mut state) in keys.iter().zip(states) {
            state.record_failure(policy, now_millis);
            save_throttle(&mut tx, key, &state).await?;
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Forgives the attempt recorded by [`Self::throttle_attempt`]; `reset` also clears the
    /// streak of consecutive failures (a successful login on that key).
    pub async fn throttle_forgive(&self, keys: &[(&str, bool)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (key, reset) in keys {
            let mut state = load_throttle(&mut tx, key).await?;
            if *reset {
                state.record_success();
            } else {
                state.forgive();
            }
            save_throttle(&mut tx, key, &state).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- housekeeping ----

    /// Deletes expired envelopes, credentials, revocations and idle throttle records.
    /// Returns the number of expired envelopes.
    pub async fn expire(&self, now: UnixTime, limits: &MailboxLimits) -> Result<u64, StoreError> {
        let expired = sqlx::query("DELETE FROM mailbox WHERE stored_at <= $1")
            .bind(secs(now.saturating_sub(limits.max_age)))
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM credentials WHERE expires_at <= $1")
            .bind(secs(now))
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM revocations WHERE expires_at <= $1")
            .bind(secs(now))
            .execute(&self.pool)
            .await?;
        // Every policy's window is at most an hour, and its backoff far less.
        let now_millis = i64::try_from(now.as_secs().saturating_mul(1000)).unwrap_or(i64::MAX);
        sqlx::query("DELETE FROM throttle WHERE window_start < $1 AND last_failure < $1")
            .bind(now_millis.saturating_sub(2 * 3_600_000))
            .execute(&self.pool)
            .await?;
        Ok(expired)
    }
}

/// A buddy-list operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactOp {
    Add,
    Accept,
    Decline,
    Remove,
    Block,
    Unblock,
}

/// Serials are random 63-bit values so they fit `BIGINT` on both engines.
fn serial_i64(serial: u64) -> i64 {
    (serial & (i64::MAX as u64)) as i64
}

fn user_info(row: &AnyRow, now: UnixTime) -> Result<UserInfo, StoreError> {
    let recent = now.saturating_sub(LOOKUP_RECENT);
    let home: Option<Vec<u8>> = row.try_get(3)?;
    let home_at: Option<i64> = row.try_get(4)?;
    let home_supernode = match (home, home_at) {
        (Some(key), Some(at)) if unix(at) > recent => Some(key_from_blob(&key)?),
        _ => None,
    };
    Ok(UserInfo {
        user: UserName::new(row.try_get::<String, _>(0)?)
            .map_err(|_| StoreError::Corrupt("user name"))?,
        display_name: DisplayName::new(row.try_get::<String, _>(1)?)
            .map_err(|_| StoreError::Corrupt("display name"))?,
        last_seen: row.try_get::<Option<i64>, _>(2)?.map(unix),
        credentials: Vec::new(),
        home_supernode,
    })
}

async fn insert_credential(
    tx: &mut Tx<'_>,
    serial: u64,
    user: &UserName,
    device_key: &PublicKey,
    issued_at: UnixTime,
    expires_at: UnixTime,
    signed: &SignedCredential,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO credentials (serial, user_name, device_key, issued_at, expires_at, signed) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(serial_i64(serial))
    .bind(user.as_str())
    .bind(device_key.as_bytes().to_vec())
    .bind(secs(issued_at))
    .bind(secs(expires_at))
    .bind(signed.to_bytes())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn revoke_user_credentials(
    tx: &mut Tx<'_>,
    user: &UserName,
    now: UnixTime,
) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT serial, expires_at FROM credentials WHERE user_name = $1 \
         AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(user.as_str())
    .bind(secs(now))
    .fetch_all(&mut **tx)
    .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let version: i64 = sqlx::query(
        "UPDATE counters SET value = value + 1 WHERE name = 'revocations' RETURNING value",
    )
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    for row in rows {
        let serial: i64 = row.try_get(0)?;
        let expires_at: i64 = row.try_get(1)?;
        sqlx::query(
            "INSERT INTO revocations (serial, expires_at, version) VALUES ($1, $2, $3) \
             ON CONFLICT (serial) DO NOTHING",
        )
        .bind(serial)
        .bind(expires_at)
        .bind(version)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "UPDATE credentials SET revoked_at = $1 WHERE user_name = $2 AND revoked_at IS NULL",
    )
    .bind(secs(now))
    .bind(user.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn contact_state(
    tx: &mut Tx<'_>,
    owner: &UserName,
    peer: &UserName,
) -> Result<Option<ContactState>, StoreError> {
    let row = sqlx::query("SELECT state FROM contacts WHERE owner = $1 AND peer = $2")
        .bind(owner.as_str())
        .bind(peer.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| state_from_code(row.try_get(0)?)).transpose()
}

async fn set_contact(
    tx: &mut Tx<'_>,
    owner: &UserName,
    peer: &UserName,
    state: ContactState,
    now: UnixTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO contacts (owner, peer, state, since) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (owner, peer) DO UPDATE SET state = excluded.state, since = excluded.since",
    )
    .bind(owner.as_str())
    .bind(peer.as_str())
    .bind(state_code(state))
    .bind(secs(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn delete_contact(
    tx: &mut Tx<'_>,
    owner: &UserName,
    peer: &UserName,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM contacts WHERE owner = $1 AND peer = $2")
        .bind(owner.as_str())
        .bind(peer.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn load_throttle(tx: &mut Tx<'_>, key: &str) -> Result<ThrottleState, StoreError> {
    // Insert-then-update takes the row's write lock before reading it (PostgreSQL row lock,
    // SQLite database lock), so two processes cannot both read the same old state.
    sqlx::query(
        "INSERT INTO throttle (key, consecutive_failures, last_failure, window_start, \
         window_failures) VALUES ($1, 0, 0, 0, 0) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE throttle SET key = key WHERE key = $1")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query(
        "SELECT consecutive_failures, last_failure, window_start, window_failures \
         FROM throttle WHERE key = $1",
    )
    .bind(key)
    .fetch_one(&mut **tx)
    .await?;
    let u32_of = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    let u64_of = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(ThrottleState {
        consecutive_failures: u32_of(row.try_get(0)?),
        last_failure: u64_of(row.try_get(1)?),
        window_start: u64_of(row.try_get(2)?),
        window_failures: u32_of(row.try_get(3)?),
    })
}

async fn save_throttle(
    tx: &mut Tx<'_>,
    key: &str,
    state: &ThrottleState,
) -> Result<(), StoreError> {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    sqlx::query(
        "UPDATE throttle SET consecutive_failures = $1, last_failure = $2, window_start = $3, \
         window_failures = $4 WHERE key = $5",
    )
    .bind(i64::from(state.consecutive_failures))
    .bind(i(state.last_failure))
    .bind(i(state.window_start))
    .bind(i64::from(state.window_failures))
    .bind(key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
