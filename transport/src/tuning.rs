//! Transport tuning: liveness timers and the limits that bound what one peer can make us
//! buffer.

use std::sync::Arc;
use std::time::Duration;

/// Liveness timers and resource limits for one side of a connection.
///
/// QUIC negotiates the idle timeout as the smaller of both sides' values, so a client using
/// [`Tuning::client`] against a server using [`Tuning::server`] gets the client's timers on
/// both ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// How often to send a keep-alive when nothing else is sent; `None` sends none.
    pub keep_alive_interval: Option<Duration>,
    /// A connection that receives nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Upper bound on a TLS handshake (and, over TCP, the multiplexer set-up).
    pub handshake_timeout: Duration,
    /// Bidirectional streams the peer may have open at once. Over TCP, capped at
    /// [`crate::tcp::YAMUX_MAX_OUTBOUND_STREAMS`].
    pub max_concurrent_bi_streams: u32,
    /// Unidirectional streams the peer may have open at once.
    pub max_concurrent_uni_streams: u32,
    /// Bytes the peer may send on one stream before we read them.
    pub stream_receive_window_bytes: u32,
    /// Bytes the peer may send on all streams together before we read them.
    pub connection_receive_window_bytes: u32,
    /// Bytes we buffer for sending on all streams together.
    pub send_window_bytes: u32,
    /// Incoming datagrams buffered before the oldest are dropped; zero disables datagrams.
    pub datagram_receive_buffer_bytes: u32,
    /// Outgoing datagrams buffered before the oldest are dropped.
    pub datagram_send_buffer_bytes: u32,
    /// Probe for a path MTU above QUIC's 1200-byte minimum (and again every 10 minutes).
    /// Worth it for bulk data; for small messages the probes are pure overhead.
    pub mtu_discovery: bool,
    /// Hand the kernel several datagrams per send call (GSO) when it supports it. Each
    /// connection keeps a send buffer as large as the biggest batch it ever sent.
    pub segmentation_offload: bool,
}

impl Tuning {
    /// A client's long-lived connection to a supernode (or the login server).
    ///
    /// A keep-alive every 3 s keeps Linux NAT bindings (30 s for UDP) fresh with a wide
    /// margin; the 9 s idle timeout notices a dead server within 10 s while tolerating two
    /// lost keep-alives in a row.
    pub fn client() -> Self {
        Self {
            keep_alive_interval: Some(Duration::from_secs(3)),
            idle_timeout: Duration::from_secs(9),
            handshake_timeout: Duration::from_secs(10),
            ..Self::limits()
        }
    }

    /// A server's side of its connections. A dead client is noticed within 60 s (sooner
    /// when the client asks for a shorter idle timeout); the 15 s keep-alive keeps NAT
    /// bindings of clients that send none of their own.
    pub fn server() -> Self {
        Self {
            keep_alive_interval: Some(Duration::from_secs(15)),
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            ..Self::limits()
        }
    }

    /// A server's side of long-lived signalling sessions that sit idle most of the time
    /// (a supernode's clients and mesh links): small messages on one stream, media and
    /// relayed traffic elsewhere. Tuned for many connections per process; see
    /// docs/bench/supernode.md for what each setting saves at 10,000 idle clients.
    ///
    /// - No keep-alives of its own: clients send theirs (their NAT bindings need them), and
    ///   their packets keep the connection alive on both ends; each server keep-alive would
    ///   be one more packet per idle client.
    /// - The 60 s idle timeout of [`Tuning::server`] notices a dead client within 60 s
    ///   (sooner when the client asks for a shorter one).
    /// - 4 bidirectional streams and no unidirectional ones: quinn keeps a table slot for
    ///   every stream the peer may open, for the life of the connection.
    /// - No MTU discovery and no segmentation offload: signalling messages fit 1200-byte
    ///   packets, and both only cost packets and buffer memory here.
    pub fn signalling_server() -> Self {
        Self {
            keep_alive_interval: None,
            max_concurrent_bi_streams: 4,
            max_concurrent_uni_streams: 0,
            mtu_discovery: false,
            segmentation_offload: false,
            ..Self::server()
        }
    }

    /// The limits both presets share: at most 32 requests in flight per QUIC connection and
    /// at most 2 MiB of buffered data per connection, whatever the peer sends. Over TCP,
    /// yamux's fixed windows set the figures instead: 8 streams of 256 KiB, 4 opened by
    /// each side (see [`crate::tcp`]).
    fn limits() -> Self {
        Self {
            keep_alive_interval: None,
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_concurrent_bi_streams: 32,
            max_concurrent_uni_streams: 8,
            stream_receive_window_bytes: 256 * 1024,
            connection_receive_window_bytes: 1024 * 1024,
            send_window_bytes: 1024 * 1024,
            datagram_receive_buffer_bytes: 256 * 1024,
            datagram_send_buffer_bytes: 256 * 1024,
            mtu_discovery: true,
            segmentation_offload: true,
        }
    }

    /// The quinn transport configuration for these settings.
    pub fn quinn_transport(&self) -> Arc<quinn::TransportConfig> {
        let mut config = quinn::TransportConfig::default();
        // Values above 2^62 would not fit a QUIC varint; the idle timeout is capped at one
        // day to stay far inside that.
        let idle = self.idle_timeout.min(Duration::from_secs(24 * 60 * 60));
        config
            .keep_alive_interval(self.keep_alive_interval)
            .max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok())
            .max_concurrent_bidi_streams(self.max_concurrent_bi_streams.into())
            .max_concurrent_uni_streams(self.max_concurrent_uni_streams.into())
            .stream_receive_window(self.stream_receive_window_bytes.into())
            .receive_window(self.connection_receive_window_bytes.into())
            .send_window(self.send_window_bytes.into())
            .datagram_receive_buffer_size(match self.datagram_receive_buffer_bytes {
                0 => None,
                bytes => Some(bytes as usize),
            })
            .datagram_send_buffer_size(self.datagram_send_buffer_bytes as usize)
            .enable_segmentation_offload(self.segmentation_offload);
        if !self.mtu_discovery {
            config.mtu_discovery_config(None);
        }
        Arc::new(config)
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Self::client()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux forgets idle UDP NAT bindings after 30 s.
    const NAT_BINDING_LIFETIME: Duration = Duration::from_secs(30);

    #[test]
    fn the_client_preset_notices_a_dead_server_within_10_s_and_keeps_nat_bindings() {
        let tuning = Tuning::client();
        let keep_alive = tuning
            .keep_alive_interval
            .expect("clients send keep-alives");
        assert!(keep_alive <= Duration::from_secs(4));
        assert!(tuning.idle_timeout <= Duration::from_secs(10));
        // At least two keep-alives may be lost before the connection is given up.
        assert!(keep_alive * 3 <= tuning.idle_timeout);
        assert!(keep_alive < NAT_BINDING_LIFETIME / 2);
    }

    #[test]
    fn the_server_preset_notices_a_dead_client_within_60_s() {
        let tuning = Tuning::server();
        assert!(tuning.idle_timeout <= Duration::from_secs(60));
        let keep_alive = tuning
            .keep_alive_interval
            .expect("servers send keep-alives");
        assert!(keep_alive < NAT_BINDING_LIFETIME);
    }

    #[test]
    fn the_signalling_preset_leaves_keep_alives_to_clients_and_notices_dead_ones_within_60_s() {
        let tuning = Tuning::signalling_server();
        assert_eq!(tuning.keep_alive_interval, None);
        assert!(tuning.idle_timeout <= Duration::from_secs(60));
        // A client's keep-alives (at most every 25 s for its NAT binding) arrive well within it.
        assert!(Duration::from_secs(25) * 2 <= tuning.idle_timeout);
        assert!(tuning.max_concurrent_bi_streams >= 1);
    }

    #[test]
    fn presets_bound_what_one_connection_can_make_us_buffer() {
        for tuning in [
            Tuning::client(),
            Tuning::server(),
            Tuning::signalling_server(),
        ] {
            assert!(tuning.max_concurrent_bi_streams <= 64);
            assert!(tuning.connection_receive_window_bytes <= 4 * 1024 * 1024);
            assert!(tuning.stream_receive_window_bytes <= tuning.connection_receive_window_bytes);
            assert!(tuning.datagram_receive_buffer_bytes <= 1024 * 1024);
            // Every frame fits one stream window, so a request never deadlocks on flow control.
            assert!(tuning.stream_receive_window_bytes as usize >= proto::frame::DEFAULT_MAX_FRAME);
        }
    }
}
