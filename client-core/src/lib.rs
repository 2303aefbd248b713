//! Client-side sans-IO protocol cores shared by the app engine and the simulations.
//!
//! - [`homing`]: [`Homing`] chooses a home supernode by measured RTT, keeps a standby,
//!   sends keep-alives, notices a dead supernode within 10 s and re-homes with jittered
//!   exponential backoff; it replays presence and contact lists on every new home.
//! - [`host_cache`]: [`HostCache`], up to 200 supernodes with their RTTs, stored in the
//!   profile.
//! - [`search`]: [`search::verify_hit`] checks a search result's credential
//!   ([`HitError::is_forgery`]: a supernode substituting a key).
//! - [`guard`]: [`guard::ReplayGuard`] refuses routed envelopes delivered again (replays by
//!   a supernode); [`guard::ForgeryAlarms`] rate-limits telling the user about forgeries.
//! - [`call`]: [`call::Calls`], call signalling for one device as caller and callee
//!   (multi-device ringing, first answer wins, busy, hold, conference legs), with the
//!   end-to-end handshake that yields the media keys.
//! - [`chat`]: [`chat::ChatCore`], reliable end-to-end chat (retransmission until receipts,
//!   offline mailbox hand-off, de-duplication, per-device order, persistable outbox).
//!
//! What it does not do: no IO, no clock, no tokio; no connections (the app's shell opens
//! QUIC connections for the `Transmit`s and routes the cores' `PeerTransmit`s).

pub mod call;
pub mod chat;
pub mod guard;
pub mod homing;
pub mod host_cache;
pub mod search;

pub use homing::{Homing, HomingConfig, HomingEvent, NotHomed, Transmit};
pub use host_cache::{HostCache, HostEntry, MAX_HOST_CACHE};
pub use search::{HitError, verify_hit};
