//! Network connections between Peerphone nodes, bound to their Ed25519 identities.
//!
//! The shell under login-server, supernode and app: every connection is TLS 1.3 with mutual
//! authentication by raw Ed25519 public keys (RFC 7250), ALPN `peerphone/1`, over QUIC, or
//! over TCP for clients whose UDP is blocked, with the same stream API on both.
//!
//! - [`tls`]: [`PeerPolicy`] (pin a key, or accept any key and check it against a credential
//!   or directory entry in the application), the rustls verifiers, [`peer_key`].
//! - [`Endpoint`]: one UDP socket that both accepts ([`Endpoint::accept`] →
//!   [`Incoming::complete`]) and dials ([`Endpoint::connect`], or
//!   [`Endpoint::connect_with_tcp_fallback`]); QUIC-bit greasing off so STUN can share the
//!   socket.
//! - [`RawUdp`] ([`Endpoint::bind_with_raw`]): STUN and hole-punching datagrams on the
//!   QUIC endpoint's own socket, demultiplexed by the QUIC fixed bit (RFC 9443).
//! - [`Tuning`]: keep-alive, idle timeout and the limits that bound a peer's memory use, with
//!   presets [`Tuning::client`], [`Tuning::server`] and [`Tuning::signalling_server`].
//! - [`TcpListener`] / [`connect_tcp`]: the same over TLS-over-TCP (streams multiplexed by
//!   yamux), for clients whose UDP is blocked.
//! - [`Conn`]: an authenticated connection over either transport: [`Conn::open_bi`],
//!   [`Conn::accept_bi`], [`Conn::peer_key`].
//! - [`framing`]: length-prefixed postcard frames on streams ([`write_frame`],
//!   [`read_frame`]) with size limits and a mid-frame timeout, and [`request`] with a
//!   response timeout.
//! - [`keyfile`]: secret key files (mode 0600, atomic creation).
//! - [`ConnectionLimiter`] (in [`ServerOptions`]): one connection budget shared by a
//!   server's QUIC and TCP listeners, with a cap per source address.
//!
//! A server serves both transports with one loop per listener, and checks every client's
//! key at the application layer before serving anything else; a client pins the server's
//! key:
//!
//! ```no_run
//! # async fn example(authority: proto::SecretKey, device: proto::SecretKey)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use transport::{Endpoint, FrameLimits, PeerPolicy, ServerOptions, TcpListener, Tuning};
//! let addr = "127.0.0.1:7400".parse()?;
//! let quic = Endpoint::bind(addr, &authority, Some(ServerOptions::default()))?;
//! let tcp = TcpListener::bind(addr, &authority, ServerOptions::default()).await?;
//! tokio::spawn(async move {
//!     while let Some(incoming) = quic.accept().await {
//!         tokio::spawn(async move {
//!             let Ok(conn) = incoming.complete().await else { return };
//!             // conn.peer_key() is proven; check it against a credential first.
//!             while let Ok((mut send, mut recv)) = conn.accept_bi().await {
//!                 let request: Option<String> =
//!                     transport::read_frame(&mut recv, 64 * 1024).await.unwrap_or(None);
//!                 if let Some(request) = request {
//!                     let _ = transport::write_frame(&mut send, &request).await;
//!                 }
//!             }
//!         });
//!     }
//! });
//! # drop(tcp);
//! let client = Endpoint::bind("0.0.0.0:0".parse()?, &device, None)?;
//! let conn = client
//!     .connect_with_tcp_fallback(addr, PeerPolicy::Key(authority.public()), &Tuning::client())
//!     .await?;
//! let echoed: String =
//!     transport::request(&conn, &"hello".to_owned(), FrameLimits::default()).await?;
//! # Ok(()) }
//! ```
//!
//! What it does not do: it never decides *who* a key belongs to beyond a pinned key (that
//! is the application's check of credentials and directories), has no insecure mode, and
//! holds no protocol state beyond connections and streams. No 0-RTT and no TLS session
//! resumption. Over TCP, close codes do not travel and datagrams do not exist.

pub mod conn;
pub mod framing;
pub mod keyfile;
pub mod limits;
pub mod quic;
pub mod raw;
pub mod tcp;
pub mod tls;
pub mod tuning;

pub use conn::{Conn, ConnError, ConnKind, RecvStream, SendStream};
pub use framing::{
    FrameIoError, FrameLimits, RequestError, Responses, read_frame, read_frame_with, request,
    request_stream, write_frame, write_frame_limited,
};
pub use keyfile::{KeyFileError, load_or_create_secret_key, load_secret_key};
pub use limits::{AdmissionError, ConnectionLimiter, ConnectionPermit};
pub use quic::{ConnectError, Endpoint, Incoming, ServerOptions, TCP_FALLBACK_DELAY};
pub use raw::{RawUdp, is_raw_datagram};
pub use tcp::{SORT_PREFIX_BYTES, SortError, Sorted, TcpListener, connect_tcp};
pub use tls::{ALPN, IdentityError, PeerPolicy, peer_key};
pub use tuning::Tuning;
