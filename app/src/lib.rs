//! Peerphone softphone: engine, CLI and desktop app.
//!
//! - [`cli`]: command-line parsing (clap) and the command runner behind `peerphone`.
//! - [`profile`]: the profile directory (device key, remembered server and user,
//!   credential).
//! - [`login_client`]: registering and logging in against the login server.
//!
//! `main.rs` only calls [`cli::main`], so tests drive the real app through this library.

pub mod cli;
pub mod login_client;
pub mod profile;
