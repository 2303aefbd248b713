//! Peerphone's wire protocol and identities, shared by every binary.
//!
//! - [`names`]: validated user names, display names, call and message ids.
//! - [`keys`]: Ed25519 keys and domain-separated signatures.
//! - [`credential`]: login credentials signed by the authority key, revocation lists.
//! - [`frame`]: length-prefixed postcard frames on streams, with a sans-IO decoder.
//! - [`e2e`]: end-to-end sealed envelopes and the device-to-device session handshake.
//! - [`kind`]: message kinds, so unknown kinds get a typed error.
//! - [`park`]: the sealed heartbeat and wake datagrams of parked supernode sessions.
//! - [`peer`]: device-to-device call signalling and chat (always end-to-end encrypted).
//! - [`time`]: wall-clock seconds as they travel on the wire.
//!
//! What it does not do: no IO, no clock, no tokio. Every decoder here takes bytes from an
//! untrusted peer and must return an error, never panic, on any input.

pub mod credential;
pub mod directory;
pub mod e2e;
pub mod frame;
pub mod keys;
pub mod kind;
pub mod login;
pub mod names;
pub mod park;
pub mod peer;
pub mod supernode;
pub mod time;

pub use credential::{Credential, CredentialError, SignedCredential};
pub use keys::{PublicKey, SecretKey, Signature, SigningDomain};
pub use names::{CallId, DisplayName, MessageId, UserName};
pub use time::UnixTime;

/// The protocol version carried in every handshake. Peers refuse versions they do not speak
/// with a typed error rather than misreading messages.
pub const PROTOCOL_VERSION: u16 = 1;
