//! TURN (RFC 8656) over UDP: sans-IO server and client cores, credentials and peer policy.
//!
//! - [`server`]: [`server::TurnServer`], the relay core the supernode shell drives.
//! - [`client`]: [`client::TurnClient`], allocates and relays through any TURN server
//!   (the Peerphone relay or coturn).
//! - [`credentials`]: time-limited "TURN REST API" credentials shared with coturn's
//!   `use-auth-secret`.
//! - [`policy`]: which peer addresses a relay may reach ([`policy::PeerPolicy`], [`policy::Cidr`]).
//! - [`wire`]: parsing a datagram into STUN or ChannelData ([`wire::decode_datagram`], the
//!   fuzzed entry point).
//!
//! Does not: open sockets, read clocks, speak TCP/TLS/DTLS to the server, or relay TCP.

pub mod client;
pub mod credentials;
pub mod policy;
pub mod server;
pub mod wire;

pub use credentials::{TurnCredentials, mint, verify};
pub use policy::{Cidr, PeerPolicy, PeerRefusal};
