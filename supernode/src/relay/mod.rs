//! The supernode's STUN and TURN service on `--turn-listen`: a tokio shell around the
//! sans-IO cores [`nat::turn::server::TurnServer`] and [`nat::stun::server::StunServer`].
//!
//! One task owns both state machines, the listening socket(s) and every relay port's socket
//! for sending. Each relay port has a reader task that forwards what peers send into the
//! owner's bounded inbox; the owner reads the listening socket itself. Nothing is shared
//! behind a lock. Relay ports come from a configured range (`--relay-ports LOW-HIGH`).
//!
//! With an alternate address (`--alternate-addr`), three more sockets (A1:P2, A2:P1, A2:P2)
//! answer STUN Binding requests for RFC 5780 behaviour discovery; TURN runs only on A1:P1.
//!
//! [`TcpRelayServer`] serves TURN over TCP on the same port for clients whose UDP is blocked
//! (its own owner task and core; see its module).
//!
//! Does not: TURN over TLS or DTLS, relaying TCP, or IPv6 relayed addresses.

mod config;
mod ports;
mod relay_ports;
mod task;
mod tcp;

pub use config::{PortRangeError, RelayConfig, parse_port_range};
pub use task::{RelayError, RelayServer, RelayStats};
pub use tcp::{TcpRelayHandle, TcpRelayServer};
