//! Peerphone softphone: engine, CLI and desktop app.
