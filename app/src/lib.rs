//! Peerphone softphone: engine, CLI and desktop app.
//!
//! - [`cli`]: command-line parsing (clap) and the command runner behind `peerphone`.
//! - [`profile`]: the profile directory (device key, remembered server and user,
//!   credential).
//! - [`login_client`]: registering and logging in against the login server.
//! - [`events`]: the JSON events of CONTRACT.md, shared by the CLI and the desktop app.
//! - [`engine`]: the client engine (session, contacts, presence, search, chat, calls) and
//!   the network commands.
//! - [`history`]: the profile's SQLite store: chat history, outbox and receive windows.
//! - [`call_media`]: a call's audio in real time (devices or WAV files, Opus, jitter buffer).
//! - [`media_path`]: the datagram path a call's media takes (direct or relayed).
//! - [`local`]: the embedded local network (`peerphone local`).
//! - [`netcheck`]: NAT discovery report (`peerphone netcheck`).
//! - [`ui`]: the desktop app (egui).
//!
//! `main.rs` only calls [`cli::main`], so tests drive the real app through this library.

pub mod call_media;
pub mod cli;
pub mod engine;
pub mod events;
pub mod history;
pub mod local;
pub mod login_client;
pub mod media_path;
pub mod netcheck;
pub mod profile;
pub mod ui;
