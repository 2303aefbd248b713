-- The profile's chat store: history shown to the user, plus what ChatCore needs to resume
-- after a crash (outbox, receive windows, sequence counters).

-- Every message shown or sent, in the order this device saw it (pos).
CREATE TABLE messages (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    -- MessageId, 16 bytes: unique end to end, so a message is stored once.
    id BLOB NOT NULL UNIQUE,
    -- The other user of the conversation.
    peer TEXT NOT NULL,
    -- 'out' (sent by this user) or 'in'.
    direction TEXT NOT NULL CHECK (direction IN ('out', 'in')),
    -- The sending device's public key (32 bytes); NULL for messages sent from here.
    from_device BLOB,
    -- u64 stored as its two's-complement i64.
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    sent_at_millis INTEGER NOT NULL,
    received_at_millis INTEGER,
    state TEXT NOT NULL CHECK (state IN ('sending', 'accepted', 'stored', 'delivered', 'received')),
    -- Incoming messages the user has seen.
    read INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_by_peer ON messages (peer, pos);
CREATE INDEX messages_unread ON messages (peer) WHERE direction = 'in' AND read = 0;

-- Unacknowledged messages (ChatCore's OutboxEntry), self-contained so history edits
-- cannot lose one.
CREATE TABLE outbox (
    id BLOB PRIMARY KEY,
    peer TEXT NOT NULL,
    -- The recipient device keys, 32 bytes each, concatenated.
    devices BLOB NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    sent_at_millis INTEGER NOT NULL,
    stage TEXT NOT NULL CHECK (stage IN ('sending', 'storing_offline', 'stored')),
    accepted INTEGER NOT NULL
);

-- ChatCore's ReceiveWindow per sending device.
CREATE TABLE receive_windows (
    device BLOB PRIMARY KEY,
    peer TEXT NOT NULL,
    next_seq INTEGER,
    -- Skipped seqs, 8 bytes little-endian each.
    missing BLOB NOT NULL,
    -- The most recent ids, 16 bytes each, oldest first.
    recent_ids BLOB NOT NULL
);

-- The next seq per conversation.
CREATE TABLE next_seq (
    peer TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);

-- Full-text search over message bodies (FTS5 is compiled into the bundled SQLite).
CREATE VIRTUAL TABLE messages_fts USING fts5 (body, content = 'messages', content_rowid = 'pos');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.pos, new.body);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.pos, old.body);
END;
