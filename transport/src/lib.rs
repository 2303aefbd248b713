//! Network connections between Peerphone nodes, bound to their Ed25519 identities.
//!
//! The shell under login-server, supernode and app: every connection is TLS 1.3 with mutual
//! authentication by raw Ed25519 public keys (RFC 7250), ALPN `peerphone/1`, over QUIC, or
//! over TCP for clients whose UDP is blocked, with the same stream API on both.
//!
//! - [`tls`]: [`PeerPolicy`] (pin a key, or accept any key and check it against a credential
//!   or directory entry in the application), the rustls verifiers, [`peer_key`].
//! - [`Endpoint`]: one UDP socket that both accepts ([`Endpoint::accept`] →
//!   [`Incoming::complete`]) and dials ([`Endpoint::connect`]); QUIC-bit greasing off so STUN
//!   can share the socket.
//! - [`Tuning`]: keep-alive, idle timeout and the limits that bound a peer's memory use, with
//!   presets [`Tuning::client`] and [`Tuning::server`].
//! - [`TcpListener`] / [`connect_tcp`]: the same over TLS-over-TCP (streams multiplexed by
//!   yamux), for clients whose UDP is blocked.
//! - [`Conn`]: an authenticated connection over either transport: [`Conn::open_bi`],
//!   [`Conn::accept_bi`], [`Conn::peer_key`].
//! - [`framing`]: length-prefixed postcard frames on streams ([`write_frame`],
//!   [`read_frame`]) with size limits and a mid-frame timeout, and [`request`].
//! - [`keyfile`]: secret key files (mode 0600, atomic creation).
//!
//! What it does not do: it never decides *who* a key belongs to beyond a pinned key (that
//! is the application's check of credentials and directories), has no insecure mode, and
//! holds no protocol state beyond connections and streams.

pub mod conn;
pub mod framing;
pub mod keyfile;
pub mod quic;
pub mod tcp;
pub mod tls;
pub mod tuning;

pub use conn::{Conn, ConnError, ConnKind, RecvStream, SendStream};
pub use framing::{
    FrameIoError, FrameLimits, RequestError, Responses, read_frame, read_frame_with, request,
    request_stream, write_frame, write_frame_limited,
};
pub use keyfile::{KeyFileError, load_or_create_secret_key, load_secret_key};
pub use quic::{ConnectError, Endpoint, Incoming, ServerOptions};
pub use tcp::{TcpListener, connect_tcp};
pub use tls::{ALPN, IdentityError, PeerPolicy, peer_key};
pub use tuning::Tuning;
