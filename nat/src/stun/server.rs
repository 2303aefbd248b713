//! Sans-IO STUN Binding server core: RFC 8489 Binding responses with XOR-MAPPED-ADDRESS and,
//! given an alternate address, RFC 5780 behaviour discovery (OTHER-ADDRESS, RESPONSE-ORIGIN,
//! CHANGE-REQUEST).
//!
//! With an alternate address the server listens on four sockets, named by [`LocalSocket`]:
//! primary IP and port (A1:P1), A1 with the alternate port (A1:P2), the alternate IP with the
//! primary port (A2:P1) and the alternate IP and port (A2:P2). The shell says which socket
//! received each datagram; every [`ServerTransmit`] names the socket to send it from.
//!
//! Abuse: answers are rate limited (one token bucket in total, one per source IP, with a
//! bounded table); error responses are sent only when no larger than the request, so garbage
//! is never amplified; non-STUN bytes, indications, responses and malformed messages get no
//! answer. Does not: authenticate Binding requests, support RESPONSE-PORT or PADDING (answered
//! with 420 as unknown attributes), handle TURN methods (see [`Outcome::NotBinding`]).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::attributes::{
    ChangeRequest, ErrorCode, OtherAddress, ResponseOrigin, ResponsePort, Software,
    UnknownAttributes, XorMappedAddress,
};
use super::{AttributeType, Decoded, Message, MessageClass, decode, encode, methods};

/// One of the server's (up to) four UDP sockets (RFC 5780 §6 naming in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LocalSocket {
    /// Primary IP, primary port (A1:P1).
    Primary,
    /// Primary IP, alternate port (A1:P2).
    AltPort,
    /// Alternate IP, primary port (A2:P1).
    AltIp,
    /// Alternate IP, alternate port (A2:P2).
    AltIpPort,
}

impl LocalSocket {
    /// All four sockets.
    pub const ALL: [LocalSocket; 4] = [
        LocalSocket::Primary,
        LocalSocket::AltPort,
        LocalSocket::AltIp,
        LocalSocket::AltIpPort,
    ];

    fn uses_alt_ip(self) -> bool {
        matches!(self, LocalSocket::AltIp | LocalSocket::AltIpPort)
    }

    fn uses_alt_port(self) -> bool {
        matches!(self, LocalSocket::AltPort | LocalSocket::AltIpPort)
    }

    fn from_parts(alt_ip: bool, alt_port: bool) -> Self {
        match (alt_ip, alt_port) {
            (false, false) => LocalSocket::Primary,
            (false, true) => LocalSocket::AltPort,
            (true, false) => LocalSocket::AltIp,
            (true, true) => LocalSocket::AltIpPort,
        }
    }
}

/// Configuration of a [`StunServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The primary transport address (A1:P1) as clients reach it.
    pub primary: SocketAddr,
    /// The alternate transport address (A2:P2) for RFC 5780; must differ from `primary` in
    /// both IP and port and be of the same family.
    pub alternate: Option<SocketAddr>,
    /// SOFTWARE attribute of responses; `None` keeps responses small.
    pub software: Option<String>,
    /// Answers per second in total.
    pub responses_per_second: u32,
    /// Answers per second to one source IP.
    pub responses_per_second_per_ip: u32,
    /// Source IPs whose rate is tracked at once.
    pub max_tracked_ips: usize,
}

impl ServerConfig {
    /// A server on `primary` without RFC 5780 support, with default rate limits.
    pub fn new(primary: SocketAddr) -> Self {
        ServerConfig {
            primary,
            alternate: None,
            software: None,
            responses_per_second: 20_000,
            responses_per_second_per_ip: 50,
            max_tracked_ips: 65_536,
        }
    }

    /// Adds the alternate address (A2:P2) that enables RFC 5780 behaviour discovery.
    pub fn with_alternate(mut self, alternate: SocketAddr) -> Self {
        self.alternate = Some(alternate);
        self
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The alternate address shares the primary IP or port, or its family differs.
    #[error("alternate address {alternate} must differ from {primary} in IP and port, same family")]
    BadAlternate {
        /// The primary address.
        primary: SocketAddr,
        /// The refused alternate.
        alternate: SocketAddr,
    },
}

/// A datagram the shell sends from the socket `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTransmit {
    /// The local socket to send from.
    pub from: LocalSocket,
    /// The client's address.
    pub destination: SocketAddr,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// What [`StunServer::handle_datagram`] did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response is queued in [`StunServer::poll_transmit`].
    Answered,
    /// The datagram is not a Binding request (another STUN method, ChannelData, QUIC, …):
    /// the shell passes it to whichever handler owns it.
    NotBinding,
    /// Dropped without an answer.
    Dropped(DropReason),
}

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Looked like STUN but failed to decode.
    Malformed,
    /// A Binding indication or response: nothing to answer.
    NotARequest,
    /// Over the total or per-source rate.
    RateLimited,
    /// The error response would be larger than the request.
    WouldAmplify,
    /// Arrived on an alternate socket while no alternate address is configured.
    UnknownSocket,
    /// The transmit queue is full (the shell is not draining it).
    QueueFull,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Success responses sent.
    pub responses: u64,
    /// Error responses sent.
    pub error_responses: u64,
    /// Datagrams dropped by the rate limits.
    pub rate_limited: u64,
    /// Datagrams dropped for any other reason.
    pub dropped: u64,
}

const MAX_QUEUED_TRANSMITS: usize = 1024;

#[derive(Debug, Clone)]
struct TokenBucket {
    milli_tokens: u64,
    last: Instant,
}

impl TokenBucket {
    fn full(now: Instant, rate_per_second: u32) -> Self {
        TokenBucket {
            milli_tokens: u64::from(rate_per_second) * 1000,
            last: now,
        }
    }

    /// Refills at `rate_per_second`, holding at most one second's worth, then takes a token.
    fn take(&mut self, now: Instant, rate_per_second: u32) -> bool {
        let capacity = u64::from(rate_per_second) * 1000;
        let elapsed_millis = now.saturating_duration_since(self.last).as_millis();
        let refill = u64::try_from(elapsed_millis.saturating_mul(u128::from(rate_per_second)))
            .unwrap_or(u64::MAX);
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(capacity);
        if now > self.last {
            self.last = now;
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// The Binding server core. See the module docs.
#[derive(Debug)]
pub struct StunServer {
    config: ServerConfig,
    total: Option<TokenBucket>,
    per_ip: HashMap<IpAddr, TokenBucket>,
    transmits: VecDeque<ServerTransmit>,
    stats: ServerStats,
}

impl StunServer {
    /// A server with `config`.
    pub fn new(config: ServerConfig) -> Result<Self, ConfigError> {
        if let Some(alternate) = config.alternate {
            let primary = config.primary;
            if alternate.ip() == primary.ip()
                || alternate.port() == primary.port()
                || alternate.is_ipv4() != primary.is_ipv4()
            {
                return Err(ConfigError::BadAlternate { primary, alternate });
            }
        }
        Ok(StunServer {
            config,
            total: None,
            per_ip: HashMap::new(),
            transmits: VecDeque::new(),
            stats: ServerStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The transport address of `socket`, `None` for alternate sockets without an alternate
    /// address.
    pub fn socket_addr(&self, socket: LocalSocket) -> Option<SocketAddr> {
        let primary = self.config.primary;
        if socket == LocalSocket::Primary {
            return Some(primary);
        }
        let alternate = self.config.alternate?;
        let ip = if socket.uses_alt_ip() {
            alternate.ip()
        } else {
            primary.ip()
        };
        let port = if socket.uses_alt_port() {
            alternate.port()
        } else {
            primary.port()
        };
        Some(SocketAddr::new(ip, port))
    }

    /// The sockets the shell must bind: one, or four with an alternate address.
    pub fn sockets(&self) -> Vec<(LocalSocket, SocketAddr)> {
        LocalSocket::ALL
            .iter()
            .filter_map(|&s| self.socket_addr(s).map(|a| (s, a)))
            .collect()
    }

    /// Counters since creation.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// A datagram from `from` arrived on `local`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: LocalSocket,
        from: SocketAddr,
        payload: &[u8],
    ) -> Outcome {
        if !super::is_stun(payload) {
            return Outcome::NotBinding;
        }
        // Peek at the method before decoding so TURN traffic is not decoded twice.
        let message_type = u16::from_be_bytes([payload[0], payload[1]]);
        let method = (message_type & 0x000f)
            | ((message_type >> 1) & 0x0070)
            | ((message_type >> 2) & 0x0f80);
        if method != methods::BINDING.as_u16() {
            return Outcome::NotBinding;
        }
        match decode(payload) {
            Ok(decoded) => self.handle_binding(now, local, from, &decoded),
            Err(_) => self.drop(DropReason::Malformed),
        }
    }

    /// A decoded Binding message from `from` arrived on `local` (for shells that decode
    /// once and route by method). Messages of other methods return [`Outcome::NotBinding`].
    pub fn handle_binding(
        &mut self,
        now: Instant,
        local: LocalSocket,
        from: SocketAddr,
        decoded: &Decoded,
    ) -> Outcome {
        let request = decoded.message();
        if request.method() != methods::BINDING {
            return Outcome::NotBinding;
        }
        if request.class() != MessageClass::Request {
            return self.drop(DropReason::NotARequest);
        }
        if self.socket_addr(local).is_none() {
            return self.drop(DropReason::UnknownSocket);
        }
        if !self.admit(now, from.ip()) {
            self.stats.rate_limited += 1;
            return Outcome::Dropped(DropReason::RateLimited);
        }

        let mut unknown = decoded.unknown_comprehension_required();
        if request.get_attribute::<ResponsePort>().is_some() {
            unknown.push(AttributeType::new(ResponsePort::CODEPOINT));
        }
        let change = request
            .get_attribute::<ChangeRequest>()
            .copied()
            .unwrap_or_default();
        if self.config.alternate.is_none() && request.get_attribute::<ChangeRequest>().is_some() {
            // RFC 5780 §6.1: without an alternate address CHANGE-REQUEST is not understood.
            unknown.push(AttributeType::new(ChangeRequest::CODEPOINT));
        }
        if !unknown.is_empty() {
            return self.send_unknown_attributes(local, from, decoded, unknown);
        }

        let reply_from = LocalSocket::from_parts(
            local.uses_alt_ip() ^ change.change_ip(),
            local.uses_alt_port() ^ change.change_port(),
        );
        let mut response = Message::new(
            MessageClass::SuccessResponse,
            methods::BINDING,
            request.transaction_id(),
        );
        response.add_attribute(XorMappedAddress::new(from));
        if self.config.alternate.is_some() {
            let other = LocalSocket::from_parts(!local.uses_alt_ip(), !local.uses_alt_port());
            if let (Some(origin), Some(other)) =
                (self.socket_addr(reply_from), self.socket_addr(other))
            {
                response.add_attribute(ResponseOrigin::new(origin));
                response.add_attribute(OtherAddress::new(other));
            }
        }
        if let Some(software) = self.software() {
            response.add_attribute(software);
        }
        match encode(response, None, decoded.has_fingerprint()) {
            Ok(payload) => {
                self.stats.responses += 1;
                self.queue(ServerTransmit {
                    from: reply_from,
                    destination: from,
                    payload,
                })
            }
            Err(_) => self.drop(DropReason::Malformed),
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<ServerTransmit> {
        self.transmits.pop_front()
    }

    fn software(&self) -> Option<Software> {
        self.config
            .software
            .as_ref()
            .and_then(|s| Software::new(s.clone()).ok())
    }

    fn send_unknown_attributes(
        &mut self,
        local: LocalSocket,
        from: SocketAddr,
        decoded: &Decoded,
        unknown: Vec<AttributeType>,
    ) -> Outcome {
        let request = decoded.message();
        let mut response = Message::new(
            MessageClass::ErrorResponse,
            methods::BINDING,
            request.transaction_id(),
        );
        // Empty reason phrase: the code says it all and the answer stays small.
        let Ok(code) = ErrorCode::new(super::errors::UnknownAttribute::CODEPOINT, String::new())
        else {
            return self.drop(DropReason::Malformed);
        };
        response.add_attribute(code);
        response.add_attribute(UnknownAttributes::new(unknown));
        match encode(response, None, decoded.has_fingerprint()) {
            Ok(payload) if payload.len() <= decoded.wire_bytes() => {
                self.stats.error_responses += 1;
                self.queue(ServerTransmit {
                    from: local,
                    destination: from,
                    payload,
                })
            }
            Ok(_) => self.drop(DropReason::WouldAmplify),
            Err(_) => self.drop(DropReason::Malformed),
        }
    }

    fn admit(&mut self, now: Instant, ip: IpAddr) -> bool {
        let rate = self.config.responses_per_second_per_ip;
        if !self.per_ip.contains_key(&ip) && self.per_ip.len() >= self.config.max_tracked_ips {
            // Forget sources whose bucket has refilled: they are idle and lose nothing.
            self.per_ip
                .retain(|_, bucket| now.saturating_duration_since(bucket.last).as_secs() < 1);
            if self.per_ip.len() >= self.config.max_tracked_ips {
                self.per_ip.clear();
            }
        }
        let source_ok = self
            .per_ip
            .entry(ip)
            .or_insert_with(|| TokenBucket::full(now, rate))
            .take(now, rate);
        // A flooding source spends its own budget, not everyone's.
        if !source_ok {
            return false;
        }
        let total_rate = self.config.responses_per_second;
        self.total
            .get_or_insert_with(|| TokenBucket::full(now, total_rate))
            .take(now, total_rate)
    }

    fn queue(&mut self, transmit: ServerTransmit) -> Outcome {
        if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
            return self.drop(DropReason::QueueFull);
        }
        self.transmits.push_back(transmit);
        Outcome::Answered
    }

    fn drop(&mut self, reason: DropReason) -> Outcome {
        self.stats.dropped += 1;
        Outcome::Dropped(reason)
    }
}
