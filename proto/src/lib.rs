//! Peerphone wire messages, identities and credentials (no IO, no tokio).
