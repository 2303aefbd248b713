//! The login server's IO: the QUIC listener, per-stream request handling, the metrics
//! endpoint and periodic housekeeping.

pub mod metrics_http;
pub mod server;
