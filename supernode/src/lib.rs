//! Peerphone supernode: client homing, presence, search and signalling routing over a mesh
//! of supernodes, plus STUN and a TURN-compatible relay.
//!
//! - [`core`]: the sans-IO protocol logic ([`core::Supernode`]): sessions, the one-hop DHT
//!   of user records, presence fan-out, search with caching and login-server fallback,
//!   routing of end-to-end encrypted payloads.
//! - [`sim`]: a deterministic many-node simulation on virtual time (supernodes, clients
//!   running `client_core::Homing`, a model login server and directory), used by the tests
//!   and the benchmark.
//!
//! What it does not do: decide who may be a supernode (the login server admits supernodes
//! and signs the directory) or read message payloads (they are end-to-end encrypted).

pub mod core;
pub mod relay;
pub mod shell;
pub mod sim;
