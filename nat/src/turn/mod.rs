//! TURN (RFC 8656) over UDP, and over TCP/TLS between client and server: sans-IO server and
//! client cores, credentials, peer policy and stream framing.
//!
//! - [`server`]: [`server::TurnServer`], the relay core the supernode shell drives.
//! - [`client`]: [`client::TurnClient`], allocates and relays through any TURN server
//!   (the Peerphone relay or coturn).
//! - [`credentials`]: time-limited "TURN REST API" credentials shared with coturn's
//!   `use-auth-secret`.
//! - [`policy`]: which peer addresses a relay may reach ([`policy::PeerPolicy`], [`policy::Cidr`]).
//! - [`stream`]: message boundaries on TCP/TLS ([`stream::StreamDecoder`], the fuzzed
//!   [`stream::split_stream`]) and ChannelData padding.
//! - [`wire`]: parsing a datagram into STUN or ChannelData ([`wire::decode_datagram`], the
//!   fuzzed entry point).
//!
//! Does not: open sockets, read clocks, run TLS or DTLS, or relay TCP (RFC 6062).

pub mod client;
pub mod credentials;
pub mod policy;
pub mod server;
pub mod stream;
pub mod wire;

pub use credentials::{TurnCredentials, mint, verify};
pub use policy::{Cidr, PeerPolicy, PeerRefusal};
