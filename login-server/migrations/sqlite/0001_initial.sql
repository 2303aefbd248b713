-- Peerphone login server schema (SQLite). Keep in step with ../postgres/0001_initial.sql:
-- same tables, columns and meanings; only the type names differ.
CREATE TABLE users (
    name TEXT PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL,
    -- Lower-cased display name for prefix search; compared bytewise.
    display_lower TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT,
    home_supernode BLOB,
    home_at BIGINT
);
CREATE INDEX users_display_lower ON users (display_lower);

CREATE TABLE credentials (
    serial BIGINT PRIMARY KEY NOT NULL,
    user_name TEXT NOT NULL,
    device_key BLOB NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    signed BLOB NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX credentials_user ON credentials (user_name, issued_at);

CREATE TABLE revocations (
    serial BIGINT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);

CREATE TABLE counters (
    name TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('revocations', 0);

CREATE TABLE contacts (
    owner TEXT NOT NULL,
    peer TEXT NOT NULL,
    state BIGINT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (owner, peer)
);
CREATE INDEX contacts_peer ON contacts (peer);

CREATE TABLE mailbox (
    recipient TEXT NOT NULL,
    id BLOB NOT NULL,
    sender TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    stored_at BIGINT NOT NULL,
    size BIGINT NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (recipient, id)
);
CREATE INDEX mailbox_order ON mailbox (recipient, stored_at);
CREATE INDEX mailbox_age ON mailbox (stored_at);

CREATE TABLE supernodes (
    key BLOB PRIMARY KEY NOT NULL,
    quic TEXT NOT NULL,
    turn TEXT,
    tcp TEXT,
    source_ip TEXT NOT NULL,
    admitted_at BIGINT NOT NULL,
    last_heartbeat BIGINT NOT NULL,
    homed_users BIGINT NOT NULL
);

CREATE TABLE throttle (
    key TEXT PRIMARY KEY NOT NULL,
    consecutive_failures BIGINT NOT NULL,
    last_failure BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    window_failures BIGINT NOT NULL
);
