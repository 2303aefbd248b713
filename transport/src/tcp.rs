//! TLS over TCP, for clients whose UDP is blocked (placeholder until the multiplexer lands).

use crate::conn::{ConnError, RecvStream, SendStream};
use crate::quic::ConnectError;
use std::net::SocketAddr;

/// A multiplexed TLS-over-TCP connection.
#[derive(Clone)]
pub(crate) enum TcpConn {}

impl TcpConn {
    pub(crate) async fn open_bi(&self) -> Result<(SendStream, RecvStream), ConnError> {
        match *self {}
    }
    pub(crate) async fn accept_bi(&self) -> Result<(SendStream, RecvStream), ConnError> {
        match *self {}
    }
    pub(crate) fn close(&self) {
        match *self {}
    }
    pub(crate) async fn closed(&self) -> ConnError {
        match *self {}
    }
}

/// A TCP connection accepted but not yet authenticated.
pub(crate) enum PendingTcp {}

impl PendingTcp {
    pub(crate) fn remote_address(&self) -> SocketAddr {
        match *self {}
    }
    pub(crate) fn refuse(self) {
        match self {}
    }
    pub(crate) async fn complete(self) -> Result<crate::Conn, ConnectError> {
        match self {}
    }
}
