//! Sans-IO TURN server core: the RFC 8656 subset over UDP that softphones need.
//!
//! Handles Allocate (REQUESTED-TRANSPORT UDP, LIFETIME, EVEN-PORT without reservation),
//! Refresh, CreatePermission, ChannelBind, Send and Data indications and ChannelData, with
//! the long-term credential mechanism (REALM, stateless NONCE with expiry, MESSAGE-INTEGRITY;
//! 401 and 438 flows) keyed by time-limited "TURN REST API" credentials
//! ([`super::credentials`]).
//!
//! Sans-IO: it never touches a socket and never reads the clock. The shell feeds
//! [`TurnServer::handle_listen_datagram`], [`TurnServer::handle_relay_datagram`],
//! [`TurnServer::handle_relay_port_opened`] / [`TurnServer::handle_relay_port_failed`] and
//! [`TurnServer::handle_timeout`], then drains [`TurnServer::poll_command`] until `None` and
//! arms a timer for [`TurnServer::poll_timeout`].
//!
//! Abuse protection: peers are filtered by [`PeerPolicy`]; allocations are bounded per user
//! and in total; permissions and channels per allocation are bounded; each allocation has a
//! token-bucket bandwidth cap; answers to unauthenticated requests are rate-limited globally
//! and never larger than the request (no amplification).
//!
//! Over TCP/TLS the shell frames the stream ([`super::stream`]), passes each message as a
//! datagram from the connection's remote address, pads what it sends, and reports a closed
//! connection with [`TurnServer::handle_client_gone`].
//!
//! Does not: DTLS, TCP relaying (RFC 6062), IPv6 relayed addresses
//! (REQUESTED-ADDRESS-FAMILY), EVEN-PORT reservations, DONT-FRAGMENT, STUN Binding (the
//! shell answers Binding requests itself).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use rand::rngs::StdRng;
use rand::{Rng as _, RngExt as _, SeedableRng};
use sha1::Sha1;
use stun_codec::rfc5389::attributes::{
    ErrorCode, Nonce, Realm, Software, UnknownAttributes, Username, XorMappedAddress,
};
use stun_codec::rfc5766::attributes::{
    Data, DontFragment, EvenPort, Lifetime, RequestedTransport, ReservationToken, XorPeerAddress,
    XorRelayAddress,
};
use stun_codec::rfc5766::methods::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH, SEND};
use stun_codec::rfc8656::attributes::{AddressFamily, RequestedAddressFamily};
use stun_codec::{AttributeType, MessageClass, TransactionId};
use tracing::debug;

use super::credentials;
use super::policy::PeerPolicy;
use super::wire::{
    self, CHANNEL_MAX_RFC5766, CHANNEL_MIN, PROTOCOL_UDP, StunMessage, TurnAttribute, TurnDatagram,
    TurnMessage,
};
use crate::stun::{self, IntegrityKey};

/// How long a permission lasts after CreatePermission or ChannelBind (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// How long a channel binding lasts after ChannelBind (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// How often expired allocations, permissions and channels are swept.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How long the shell may take to open a relay port before the allocation is dropped.
pub const OPEN_PORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes behind a NONCE: 4 of expiry, 5 of MAC.
const NONCE_RAW_BYTES: usize = 9;
/// A channel number that the peer no longer uses stays reserved this long (RFC 8656 §12).
const CHANNEL_REUSE_HOLD: Duration = Duration::from_secs(300);

/// Tunables of a [`TurnServer`]; [`ServerConfig::new`] gives safe defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// REALM sent in challenges and used in the long-term key.
    pub realm: String,
    /// Shared secret of the time-limited credentials.
    pub shared_secret: Vec<u8>,
    /// Which peers the relay may send to.
    pub peer_policy: PeerPolicy,
    /// Allocations across all users (508 beyond).
    pub max_allocations_total: usize,
    /// Allocations of one user, the part of the username after `:` (486 beyond).
    pub max_allocations_per_user: usize,
    /// Permissions of one allocation (508 beyond).
    pub max_permissions_per_allocation: usize,
    /// Channels of one allocation (508 beyond).
    pub max_channels_per_allocation: usize,
    /// Lifetime granted when the client asks for less or nothing.
    pub default_lifetime: Duration,
    /// Longest lifetime granted.
    pub max_lifetime: Duration,
    /// How long a NONCE stays valid before a 438 asks for a fresh one.
    pub nonce_lifetime: Duration,
    /// Sustained relayed payload per allocation, both directions together.
    pub bandwidth_cap_bytes_per_s: u64,
    /// Burst above the sustained rate an allocation may send at once.
    pub bandwidth_burst_bytes: u64,
    /// Sustained rate of answers to unauthenticated requests, across all sources.
    pub unauthenticated_responses_per_s: u32,
    /// Burst of answers to unauthenticated requests.
    pub unauthenticated_burst: u32,
    /// How many bytes an answer to an unauthenticated request may exceed the request by.
    /// 0 (the default) never amplifies; the challenge (52 bytes with a 4-character REALM)
    /// then reaches only clients whose first request is at least as long, which
    /// `turnutils_uclient` (52 or 60 bytes) and [`super::client::TurnClient`] (padded to
    /// 160) are. Clients sending bare 28-byte Allocates need an allowance of about 24.
    pub unauthenticated_allowance_bytes: usize,
    /// SOFTWARE attribute in authenticated responses; `None` sends none.
    pub software: Option<String>,
}

impl ServerConfig {
    /// Defaults for a softphone relay: 128 kB/s per allocation (plenty for Opus and video
    /// thumbnails), 10 allocations per user, 10 000 in total.
    pub fn new(realm: impl Into<String>, shared_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            realm: realm.into(),
            shared_secret: shared_secret.into(),
            peer_policy: PeerPolicy::default(),
            max_allocations_total: 10_000,
            max_allocations_per_user: 10,
            max_permissions_per_allocation: 64,
            max_channels_per_allocation: 64,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            nonce_lifetime: Duration::from_secs(600),
            bandwidth_cap_bytes_per_s: 128 * 1024,
            bandwidth_burst_bytes: 64 * 1024,
            unauthenticated_responses_per_s: 500,
            unauthenticated_burst: 100,
            unauthenticated_allowance_bytes: 0,
            software: Some("peerphone-relay".to_owned()),
        }
    }
}

/// Identifies one allocation (and its relay port) between the core and the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllocationId(pub u64);

/// An effect the shell must perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCommand {
    /// Send `payload` to `to` from the listening socket.
    SendFromListen {
        /// Client address.
        to: SocketAddr,
        /// A STUN message or ChannelData.
        payload: Vec<u8>,
    },
    /// Send `payload` to `to` from the relay port of `allocation`.
    SendFromRelay {
        /// Whose relay port.
        allocation: AllocationId,
        /// Peer address.
        to: SocketAddr,
        /// Application data.
        payload: Vec<u8>,
    },
    /// Open a UDP relay port for `allocation`, then call
    /// [`TurnServer::handle_relay_port_opened`] or [`TurnServer::handle_relay_port_failed`].
    OpenRelayPort {
        /// The allocation the port belongs to.
        allocation: AllocationId,
        /// The client asked for an even port number (EVEN-PORT).
        even_port: bool,
    },
    /// Close the relay port of `allocation`; later datagrams to it are meaningless.
    CloseRelayPort {
        /// The allocation that ended.
        allocation: AllocationId,
    },
}

/// Counters for metrics; monotonic except `allocations`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Live allocations (pending included).
    pub allocations: usize,
    /// Allocations ever granted.
    pub allocations_granted: u64,
    /// Packets relayed from clients to peers.
    pub packets_to_peers: u64,
    /// Packets relayed from peers to clients.
    pub packets_to_clients: u64,
    /// Payload bytes relayed in both directions.
    pub relayed_bytes: u64,
    /// Datagrams that did not parse.
    pub malformed: u64,
    /// Packets dropped for lack of permission, channel or allocation.
    pub dropped_no_permission: u64,
    /// Packets dropped by the bandwidth cap.
    pub dropped_bandwidth: u64,
    /// Requests refused because of the peer address policy.
    pub refused_peers: u64,
    /// Unauthenticated requests left unanswered (rate limit or size limit).
    pub unanswered_unauthenticated: u64,
    /// Authentication failures (401, 438, 441).
    pub auth_failures: u64,
}

#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    capacity: f64,
    rate_per_s: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(now: Instant, rate_per_s: f64, capacity: f64) -> Self {
        Self {
            tokens: capacity,
            capacity,
            rate_per_s,
            last: now,
        }
    }

    fn take(&mut self, now: Instant, amount: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.capacity);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Channel {
    peer: SocketAddr,
    expires: Instant,
}

#[derive(Debug)]
enum AllocationState {
    /// Waiting for the shell to open the relay port.
    Opening {
        transaction_id: TransactionId,
        lifetime: Duration,
    },
    /// Relaying.
    Active {
        relay_addr: SocketAddr,
        /// Success response, resent when the Allocate is retransmitted.
        response: Vec<u8>,
        transaction_id: TransactionId,
    },
}

#[derive(Debug)]
struct Allocation {
    client: SocketAddr,
    username: String,
    user: String,
    key: IntegrityKey,
    state: AllocationState,
    expires: Instant,
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, Channel>,
    channel_by_peer: HashMap<SocketAddr, u16>,
    bandwidth: TokenBucket,
}

impl Allocation {
    fn permitted(&self, now: Instant, peer: IpAddr) -> bool {
        self.permissions.get(&peer).is_some_and(|e| *e > now)
    }

    fn sweep(&mut self, now: Instant) {
        self.permissions.retain(|_, e| *e > now);
        let by_peer = &mut self.channel_by_peer;
        self.channels.retain(|_, c| {
            // Keep the number reserved a while so late packets cannot hit a new binding.
            let keep = c.expires + CHANNEL_REUSE_HOLD > now;
            if !keep {
                by_peer.remove(&c.peer);
            }
            keep
        });
    }
}

/// Who sent an authenticated request.
struct Authenticated {
    username: String,
    user: String,
    key: IntegrityKey,
}

/// The sans-IO TURN server. See the module docs for the call protocol.
#[derive(Debug)]
pub struct TurnServer {
    config: ServerConfig,
    realm: Realm,
    epoch: Instant,
    epoch_unix: u64,
    nonce_key: [u8; 32],
    rng: StdRng,
    next_id: u64,
    allocations: HashMap<AllocationId, Allocation>,
    by_client: HashMap<SocketAddr, AllocationId>,
    per_user: HashMap<String, usize>,
    unauthenticated: TokenBucket,
    commands: VecDeque<ServerCommand>,
    next_sweep: Option<Instant>,
    stats: ServerStats,
}

/// The configuration cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// REALM longer than 127 characters or otherwise not encodable.
    #[error("realm is not a valid STUN REALM")]
    BadRealm,
    /// An empty shared secret would make credentials forgeable.
    #[error("shared secret is empty")]
    EmptySecret,
}

impl TurnServer {
    /// A server whose clock reads `now` = `now_unix` (seconds since 1970) at creation;
    /// `seed` feeds the nonce key and transaction ids (random in production, fixed in tests).
    pub fn new(
        config: ServerConfig,
        now: Instant,
        now_unix: u64,
        seed: [u8; 32],
    ) -> Result<Self, ConfigError> {
        if config.shared_secret.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        let realm = Realm::new(config.realm.clone()).map_err(|_| ConfigError::BadRealm)?;
        let mut rng = StdRng::from_seed(seed);
        let mut nonce_key = [0u8; 32];
        rng.fill_bytes(&mut nonce_key);
        let unauthenticated = TokenBucket::new(
            now,
            f64::from(config.unauthenticated_responses_per_s),
            f64::from(config.unauthenticated_burst.max(1)),
        );
        Ok(Self {
            config,
            realm,
            epoch: now,
            epoch_unix: now_unix,
            nonce_key,
            rng,
            next_id: 1,
            allocations: HashMap::new(),
            by_client: HashMap::new(),
            per_user: HashMap::new(),
            unauthenticated,
            commands: VecDeque::new(),
            next_sweep: None,
            stats: ServerStats::default(),
        })
    }

    /// Counters for metrics.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            allocations: self.allocations.len(),
            ..self.stats
        }
    }

    /// The relayed address of `allocation`, once its port is open.
    pub fn relay_addr(&self, allocation: AllocationId) -> Option<SocketAddr> {
        match self.allocations.get(&allocation)?.state {
            AllocationState::Active { relay_addr, .. } => Some(relay_addr),
            AllocationState::Opening { .. } => None,
        }
    }

    /// The next effect for the shell to perform.
    pub fn poll_command(&mut self) -> Option<ServerCommand> {
        self.commands.pop_front()
    }

    /// When [`TurnServer::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Expires allocations, permissions and channels.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| t > now) {
            return;
        }
        let expired: Vec<AllocationId> = self
            .allocations
            .iter_mut()
            .filter_map(|(id, a)| {
                a.sweep(now);
                (a.expires <= now).then_some(*id)
            })
            .collect();
        for id in expired {
            debug!(allocation = id.0, "allocation expired");
            self.remove_allocation(id);
        }
        self.next_sweep = (!self.allocations.is_empty()).then(|| now + SWEEP_INTERVAL);
    }

    /// The shell opened the relay port of `allocation` at `relay_addr`.
    pub fn handle_relay_port_opened(
        &mut self,
        now: Instant,
        allocation: AllocationId,
        relay_addr: SocketAddr,
    ) {
        let Some(a) = self.allocations.get_mut(&allocation) else {
            self.commands
                .push_back(ServerCommand::CloseRelayPort { allocation });
            return;
        };
        let AllocationState::Opening {
            transaction_id,
            lifetime,
        } = a.state
        else {
            return;
        };
        a.expires = now + lifetime;
        let mut response =
            TurnMessage::new(MessageClass::SuccessResponse, ALLOCATE, transaction_id);
        response.add_attribute(XorRelayAddress::new(relay_addr));
        response.add_attribute(Lifetime::from_u32(saturating_secs(lifetime)));
        response.add_attribute(XorMappedAddress::new(a.client));
        let (client, key) = (a.client, a.key.clone());
        let Some(bytes) = self.signed(response, &key) else {
            return;
        };
        if let Some(a) = self.allocations.get_mut(&allocation) {
            a.state = AllocationState::Active {
                relay_addr,
                response: bytes.clone(),
                transaction_id,
            };
        }
        self.stats.allocations_granted += 1;
        debug!(allocation = allocation.0, %relay_addr, "allocation granted");
        self.commands.push_back(ServerCommand::SendFromListen {
            to: client,
            payload: bytes,
        });
    }

    /// The shell could not open a relay port for `allocation`: answer 508.
    pub fn handle_relay_port_failed(&mut self, _now: Instant, allocation: AllocationId) {
        let Some(a) = self.allocations.get(&allocation) else {
            return;
        };
        let AllocationState::Opening { transaction_id, .. } = a.state else {
            return;
        };
        let (client, key) = (a.client, a.key.clone());
        self.remove_allocation(allocation);
        let request = TurnMessage::new(MessageClass::Request, ALLOCATE, transaction_id);
        let response = wire::error_response(&request, 508, "Insufficient Capacity");
        self.send_signed(client, response, &key);
    }

    /// The client's connection (TCP or TLS) closed: its allocation goes with it
    /// (RFC 8656 §3.1: over a stream, the allocation is bound to the connection).
    pub fn handle_client_gone(&mut self, _now: Instant, client: SocketAddr) {
        if let Some(&id) = self.by_client.get(&client) {
            debug!(allocation = id.0, "client connection closed");
            self.remove_allocation(id);
        }
    }

    /// A datagram arrived on the listening socket from `from`.
    pub fn handle_listen_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        match wire::decode_datagram(bytes) {
            Ok(TurnDatagram::ChannelData { channel, data }) => {
                self.channel_data_from_client(now, from, channel, data);
            }
            Ok(TurnDatagram::Stun(decoded)) => match decoded.message().class() {
                MessageClass::Request => self.request(now, from, &decoded, bytes.len()),
                MessageClass::Indication if decoded.message().method() == SEND => {
                    self.send_indication(now, from, decoded.message());
                }
                _ => {}
            },
            Err(error) => {
                debug!(%error, len = bytes.len(), "malformed datagram on the listen socket");
                self.stats.malformed += 1;
            }
        }
    }

    /// A datagram arrived on the relay port of `allocation` from peer `from`.
    pub fn handle_relay_datagram(
        &mut self,
        now: Instant,
        allocation: AllocationId,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        let Some(a) = self.allocations.get_mut(&allocation) else {
            return;
        };
        if !matches!(a.state, AllocationState::Active { .. }) || !a.permitted(now, from.ip()) {
            self.stats.dropped_no_permission += 1;
            return;
        }
        if !a.bandwidth.take(now, bytes.len() as f64) {
            self.stats.dropped_bandwidth += 1;
            return;
        }
        let client = a.client;
        let channel = a
            .channel_by_peer
            .get(&from)
            .copied()
            .filter(|n| a.channels.get(n).is_some_and(|c| c.expires > now));
        let payload = if let Some(channel) = channel {
            let mut out = Vec::new();
            if !wire::encode_channel_data(channel, bytes, &mut out) {
                return;
            }
            out
        } else {
            let transaction_id = TransactionId::new(self.rng.random());
            let Some(message) = wire::data_indication(transaction_id, from, bytes) else {
                return;
            };
            let Ok(out) = stun::encode(message, None, false) else {
                return;
            };
            out
        };
        self.stats.packets_to_clients += 1;
        self.stats.relayed_bytes += bytes.len() as u64;
        self.commands.push_back(ServerCommand::SendFromListen {
            to: client,
            payload,
        });
    }

    fn channel_data_from_client(
        &mut self,
        now: Instant,
        from: SocketAddr,
        channel: u16,
        data: &[u8],
    ) {
        let Some(&id) = self.by_client.get(&from) else {
            self.stats.dropped_no_permission += 1;
            return;
        };
        let Some(a) = self.allocations.get_mut(&id) else {
            return;
        };
        let Some(peer) = a
            .channels
            .get(&channel)
            .filter(|c| c.expires > now)
            .map(|c| c.peer)
        else {
            self.stats.dropped_no_permission += 1;
            return;
        };
        self.forward_to_peer(now, id, peer, data);
    }

    fn send_indication(&mut self, now: Instant, from: SocketAddr, message: &TurnMessage) {
        let Some(&id) = self.by_client.get(&from) else {
            self.stats.dropped_no_permission += 1;
            return;
        };
        let (Some(peer), Some(data)) = (
            message.get_attribute::<XorPeerAddress>(),
            message.get_attribute::<Data>(),
        ) else {
            return;
        };
        if self.config.peer_policy.check(peer.address().ip()).is_err() {
            self.stats.refused_peers += 1;
            return;
        }
        self.forward_to_peer(now, id, peer.address(), data.data());
    }

    fn forward_to_peer(&mut self, now: Instant, id: AllocationId, peer: SocketAddr, data: &[u8]) {
        let Some(a) = self.allocations.get_mut(&id) else {
            return;
        };
        if !matches!(a.state, AllocationState::Active { .. }) || !a.permitted(now, peer.ip()) {
            self.stats.dropped_no_permission += 1;
            return;
        }
        if !a.bandwidth.take(now, data.len() as f64) {
            self.stats.dropped_bandwidth += 1;
            return;
        }
        self.stats.packets_to_peers += 1;
        self.stats.relayed_bytes += data.len() as u64;
        self.commands.push_back(ServerCommand::SendFromRelay {
            allocation: id,
            to: peer,
            payload: data.to_vec(),
        });
    }

    fn now_unix(&self, now: Instant) -> u64 {
        self.epoch_unix + now.saturating_duration_since(self.epoch).as_secs()
    }

    fn request(&mut self, now: Instant, from: SocketAddr, decoded: &StunMessage<'_>, len: usize) {
        let request = decoded.message();
        let method = request.method();
        if ![ALLOCATE, REFRESH, CREATE_PERMISSION, CHANNEL_BIND].contains(&method) {
            let response = wire::error_response(request, 400, "Bad Request");
            self.send_unauthenticated(now, from, response, len);
            return;
        }
        let auth = match self.authenticate(now, from, decoded) {
            Ok(auth) => auth,
            Err(response) => {
                self.stats.auth_failures += 1;
                self.send_unauthenticated(now, from, *response, len);
                return;
            }
        };
        let unknown = decoded.decoded().unknown_comprehension_required();
        if !unknown.is_empty() {
            let mut response = wire::error_response(request, 420, "Unknown Attribute");
            response.add_attribute(UnknownAttributes::new(unknown));
            self.send_signed(from, response, &auth.key);
            return;
        }
        let result = match method {
            m if m == ALLOCATE => self.allocate(now, from, request, &auth),
            m if m == REFRESH => self.refresh(now, from, request, &auth),
            m if m == CREATE_PERMISSION => self.create_permission(now, from, request, &auth),
            _ => self.channel_bind(now, from, request, decoded.channel_number(), &auth),
        };
        match result {
            Ok(Some(response)) | Err(response) => {
                self.send_signed(from, response, &auth.key);
            }
            Ok(None) => {}
        }
    }

    /// RFC 8489 §9.2.4; the `Err` is the answer (unauthenticated).
    fn authenticate(
        &mut self,
        now: Instant,
        from: SocketAddr,
        decoded: &StunMessage<'_>,
    ) -> Result<Authenticated, Box<TurnMessage>> {
        let request = decoded.message();
        if !decoded.has_integrity() {
            return Err(Box::new(self.challenge(
                now,
                from,
                request,
                401,
                "Unauthorized",
            )));
        };
        let (Some(username), Some(realm), Some(nonce)) = (
            request.get_attribute::<Username>(),
            request.get_attribute::<Realm>(),
            request.get_attribute::<Nonce>(),
        ) else {
            return Err(Box::new(wire::error_response(request, 400, "Bad Request")));
        };
        if !self.nonce_valid(now, from, nonce.value()) {
            return Err(Box::new(self.challenge(
                now,
                from,
                request,
                438,
                "Stale Nonce",
            )));
        }
        if realm.text() != self.realm.text() {
            return Err(Box::new(self.challenge(
                now,
                from,
                request,
                401,
                "Unauthorized",
            )));
        }
        let verified = match credentials::check_username(username.name(), self.now_unix(now)) {
            Ok(v) => v,
            Err(_) => {
                return Err(Box::new(self.challenge(
                    now,
                    from,
                    request,
                    401,
                    "Unauthorized",
                )));
            }
        };
        let password = credentials::password_for(&self.config.shared_secret, username.name());
        let key = IntegrityKey::long_term(username.name(), realm.text(), &password);
        if !decoded.verify_integrity(&key) {
            return Err(Box::new(self.challenge(
                now,
                from,
                request,
                401,
                "Unauthorized",
            )));
        }
        Ok(Authenticated {
            username: username.name().to_owned(),
            user: verified.user,
            key,
        })
    }

    fn challenge(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: &TurnMessage,
        code: u16,
        reason: &str,
    ) -> TurnMessage {
        let mut response = wire::error_response(request, code, reason);
        response.add_attribute(self.realm.clone());
        if let Ok(nonce) = Nonce::new(self.make_nonce(now, from)) {
            response.add_attribute(nonce);
        }
        response
    }

    /// A stateless nonce: base64url(expiry seconds ‖ 40-bit MAC binding it to the client
    /// address), 12 characters. It is short so that a challenge fits in the size of a typical
    /// first Allocate (60 bytes from `turnutils_uclient`). A forged nonce gains nothing: the
    /// request still needs MESSAGE-INTEGRITY under the user's key.
    fn make_nonce(&self, now: Instant, from: SocketAddr) -> String {
        let expires = self.now_unix(now) + self.config.nonce_lifetime.as_secs();
        let expires = u32::try_from(expires).unwrap_or(u32::MAX);
        let mut raw = [0u8; NONCE_RAW_BYTES];
        raw[..4].copy_from_slice(&expires.to_be_bytes());
        raw[4..].copy_from_slice(&self.nonce_mac(expires, from));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    fn nonce_mac(&self, expires: u32, from: SocketAddr) -> [u8; NONCE_RAW_BYTES - 4] {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.nonce_key)
            .expect("invariant: HMAC accepts keys of any length");
        mac.update(&expires.to_be_bytes());
        mac.update(from.to_string().as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; NONCE_RAW_BYTES - 4];
        out.copy_from_slice(&tag[..NONCE_RAW_BYTES - 4]);
        out
    }

    fn nonce_valid(&self, now: Instant, from: SocketAddr, nonce: &str) -> bool {
        let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Ok(raw) = <[u8; NONCE_RAW_BYTES]>::try_from(raw.as_slice()) else {
            return false;
        };
        let expires = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let fresh = u64::from(expires) > self.now_unix(now);
        let mac = self.nonce_mac(expires, from);
        // Constant time, so the MAC cannot be found byte by byte.
        let diff = raw[4..]
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        fresh && diff == 0
    }

    fn lifetime(&self, requested: Option<&Lifetime>) -> Duration {
        let requested = requested.map_or(self.config.default_lifetime, Lifetime::lifetime);
        requested
            .min(self.config.max_lifetime)
            .max(self.config.default_lifetime)
    }

    fn allocate(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: &TurnMessage,
        auth: &Authenticated,
    ) -> Result<Option<TurnMessage>, TurnMessage> {
        if let Some(a) = self
            .by_client
            .get(&from)
            .and_then(|id| self.allocations.get(id))
        {
            return match &a.state {
                AllocationState::Active {
                    response,
                    transaction_id,
                    ..
                } if *transaction_id == request.transaction_id() => {
                    self.commands.push_back(ServerCommand::SendFromListen {
                        to: from,
                        payload: response.clone(),
                    });
                    Ok(None)
                }
                AllocationState::Opening { transaction_id, .. }
                    if *transaction_id == request.transaction_id() =>
                {
                    Ok(None)
                }
                _ => Err(wire::error_response(request, 437, "Allocation Mismatch")),
            };
        }
        match request.get_attribute::<RequestedTransport>() {
            None => return Err(wire::error_response(request, 400, "Bad Request")),
            Some(t) if t.protocol() != PROTOCOL_UDP => {
                return Err(wire::error_response(
                    request,
                    442,
                    "Unsupported Transport Protocol",
                ));
            }
            Some(_) => {}
        }
        if request
            .get_attribute::<RequestedAddressFamily>()
            .is_some_and(|f| f.address_family() != AddressFamily::V4)
        {
            return Err(wire::error_response(
                request,
                440,
                "Address Family not Supported",
            ));
        }
        if request.get_attribute::<DontFragment>().is_some() {
            let mut response = wire::error_response(request, 420, "Unknown Attribute");
            response.add_attribute(UnknownAttributes::new(vec![AttributeType::new(
                DontFragment::CODEPOINT,
            )]));
            return Err(response);
        }
        let even_port = request.get_attribute::<EvenPort>();
        if even_port.is_some_and(EvenPort::is_requested)
            || request.get_attribute::<ReservationToken>().is_some()
        {
            return Err(wire::error_response(request, 508, "Insufficient Capacity"));
        }
        if self.per_user.get(&auth.user).copied().unwrap_or(0)
            >= self.config.max_allocations_per_user
        {
            return Err(wire::error_response(
                request,
                486,
                "Allocation Quota Reached",
            ));
        }
        if self.allocations.len() >= self.config.max_allocations_total {
            return Err(wire::error_response(request, 508, "Insufficient Capacity"));
        }
        let lifetime = self.lifetime(request.get_attribute::<Lifetime>());
        let id = AllocationId(self.next_id);
        self.next_id += 1;
        let cap = self.config.bandwidth_cap_bytes_per_s as f64;
        let burst = (self.config.bandwidth_burst_bytes as f64).max(2048.0);
        self.allocations.insert(
            id,
            Allocation {
                client: from,
                username: auth.username.clone(),
                user: auth.user.clone(),
                key: auth.key.clone(),
                state: AllocationState::Opening {
                    transaction_id: request.transaction_id(),
                    lifetime,
                },
                expires: now + OPEN_PORT_TIMEOUT,
                permissions: HashMap::new(),
                channels: HashMap::new(),
                channel_by_peer: HashMap::new(),
                bandwidth: TokenBucket::new(now, cap, burst),
            },
        );
        self.by_client.insert(from, id);
        *self.per_user.entry(auth.user.clone()).or_insert(0) += 1;
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP_INTERVAL);
        }
        debug!(
            allocation = id.0,
            lifetime_s = lifetime.as_secs(),
            "opening relay port"
        );
        self.commands.push_back(ServerCommand::OpenRelayPort {
            allocation: id,
            even_port: even_port.is_some(),
        });
        Ok(None)
    }

    fn own_allocation(
        &mut self,
        from: SocketAddr,
        request: &TurnMessage,
        auth: &Authenticated,
    ) -> Result<AllocationId, TurnMessage> {
        let Some(&id) = self.by_client.get(&from) else {
            return Err(wire::error_response(request, 437, "Allocation Mismatch"));
        };
        let Some(a) = self.allocations.get(&id) else {
            return Err(wire::error_response(request, 437, "Allocation Mismatch"));
        };
        if a.username != auth.username && a.user != auth.user {
            self.stats.auth_failures += 1;
            return Err(wire::error_response(request, 441, "Wrong Credentials"));
        }
        if !matches!(a.state, AllocationState::Active { .. }) {
            return Err(wire::error_response(request, 437, "Allocation Mismatch"));
        }
        Ok(id)
    }

    fn refresh(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: &TurnMessage,
        auth: &Authenticated,
    ) -> Result<Option<TurnMessage>, TurnMessage> {
        let id = self.own_allocation(from, request, auth)?;
        let requested = request.get_attribute::<Lifetime>();
        let mut response = TurnMessage::new(
            MessageClass::SuccessResponse,
            REFRESH,
            request.transaction_id(),
        );
        if requested.is_some_and(|l| l.lifetime().is_zero()) {
            debug!(allocation = id.0, "allocation released by client");
            self.remove_allocation(id);
            response.add_attribute(Lifetime::from_u32(0));
            return Ok(Some(response));
        }
        let lifetime = self.lifetime(requested);
        if let Some(a) = self.allocations.get_mut(&id) {
            a.expires = now + lifetime;
            // Credentials are time-limited: a refresh carries the newest ones.
            a.username = auth.username.clone();
            a.key = auth.key.clone();
        }
        response.add_attribute(Lifetime::from_u32(saturating_secs(lifetime)));
        Ok(Some(response))
    }

    fn check_peer(
        &mut self,
        id: AllocationId,
        request: &TurnMessage,
        peer: SocketAddr,
    ) -> Result<(), TurnMessage> {
        if peer.port() == 0 && request.method() == CHANNEL_BIND {
            return Err(wire::error_response(request, 400, "Bad Request"));
        }
        let relay_v4 = self.relay_addr(id).is_none_or(|r| r.is_ipv4());
        if peer.is_ipv4() != relay_v4 {
            return Err(wire::error_response(
                request,
                443,
                "Peer Address Family Mismatch",
            ));
        }
        if let Err(why) = self.config.peer_policy.check(peer.ip()) {
            self.stats.refused_peers += 1;
            debug!(allocation = id.0, %why, "peer refused");
            return Err(wire::error_response(request, 403, "Forbidden"));
        }
        Ok(())
    }

    fn create_permission(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: &TurnMessage,
        auth: &Authenticated,
    ) -> Result<Option<TurnMessage>, TurnMessage> {
        let id = self.own_allocation(from, request, auth)?;
        let peers: Vec<SocketAddr> = request
            .attributes()
            .filter_map(|a| match a {
                TurnAttribute::XorPeerAddress(p) => Some(p.address()),
                _ => None,
            })
            .collect();
        if peers.is_empty() {
            return Err(wire::error_response(request, 400, "Bad Request"));
        }
        for peer in &peers {
            self.check_peer(id, request, *peer)?;
        }
        let max = self.config.max_permissions_per_allocation;
        let Some(a) = self.allocations.get_mut(&id) else {
            return Err(wire::error_response(request, 437, "Allocation Mismatch"));
        };
        a.sweep(now);
        let new = peers
            .iter()
            .filter(|p| !a.permissions.contains_key(&p.ip()))
            .count();
        if a.permissions.len() + new > max {
            return Err(wire::error_response(request, 508, "Insufficient Capacity"));
        }
        for peer in peers {
            a.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        }
        Ok(Some(TurnMessage::new(
            MessageClass::SuccessResponse,
            CREATE_PERMISSION,
            request.transaction_id(),
        )))
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: &TurnMessage,
        number: Option<u16>,
        auth: &Authenticated,
    ) -> Result<Option<TurnMessage>, TurnMessage> {
        let id = self.own_allocation(from, request, auth)?;
        let (Some(number), Some(peer)) = (number, request.get_attribute::<XorPeerAddress>()) else {
            return Err(wire::error_response(request, 400, "Bad Request"));
        };
        let peer = peer.address();
        // RFC 8656 narrowed channels to 0x4000..=0x4FFF; RFC 5766 clients use up to 0x7FFF.
        if !(CHANNEL_MIN..=CHANNEL_MAX_RFC5766).contains(&number) {
            return Err(wire::error_response(request, 400, "Bad Request"));
        }
        self.check_peer(id, request, peer)?;
        let max_channels = self.config.max_channels_per_allocation;
        let max_permissions = self.config.max_permissions_per_allocation;
        let Some(a) = self.allocations.get_mut(&id) else {
            return Err(wire::error_response(request, 437, "Allocation Mismatch"));
        };
        a.sweep(now);
        let bound_peer = a.channels.get(&number).map(|c| c.peer);
        let bound_number = a.channel_by_peer.get(&peer).copied();
        match (bound_peer, bound_number) {
            (Some(p), _) if p != peer => {
                return Err(wire::error_response(request, 400, "Bad Request"));
            }
            (_, Some(n)) if n != number => {
                return Err(wire::error_response(request, 400, "Bad Request"));
            }
            (None, _) if a.channels.len() >= max_channels => {
                return Err(wire::error_response(request, 508, "Insufficient Capacity"));
            }
            _ => {}
        }
        if !a.permissions.contains_key(&peer.ip()) && a.permissions.len() >= max_permissions {
            return Err(wire::error_response(request, 508, "Insufficient Capacity"));
        }
        a.channels.insert(
            number,
            Channel {
                peer,
                expires: now + CHANNEL_LIFETIME,
            },
        );
        a.channel_by_peer.insert(peer, number);
        a.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        Ok(Some(TurnMessage::new(
            MessageClass::SuccessResponse,
            CHANNEL_BIND,
            request.transaction_id(),
        )))
    }

    fn remove_allocation(&mut self, id: AllocationId) {
        let Some(a) = self.allocations.remove(&id) else {
            return;
        };
        if self.by_client.get(&a.client) == Some(&id) {
            self.by_client.remove(&a.client);
        }
        if let Some(n) = self.per_user.get_mut(&a.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_user.remove(&a.user);
            }
        }
        self.commands
            .push_back(ServerCommand::CloseRelayPort { allocation: id });
        if self.allocations.is_empty() {
            self.next_sweep = None;
        }
    }

    fn signed(&self, mut message: TurnMessage, key: &IntegrityKey) -> Option<Vec<u8>> {
        if let Some(Ok(s)) = self.config.software.clone().map(Software::new) {
            message.add_attribute(s);
        }
        wire::encode_stun(message, Some(key)).ok()
    }

    fn send_signed(&mut self, to: SocketAddr, message: TurnMessage, key: &IntegrityKey) {
        if let Some(payload) = self.signed(message, key) {
            self.commands
                .push_back(ServerCommand::SendFromListen { to, payload });
        }
    }

    /// Answers without integrity, at a bounded rate, and never with more bytes than the
    /// request had: the reason phrase goes first, then the whole answer.
    fn send_unauthenticated(
        &mut self,
        now: Instant,
        to: SocketAddr,
        message: TurnMessage,
        request_len: usize,
    ) {
        if !self.unauthenticated.take(now, 1.0) {
            self.stats.unanswered_unauthenticated += 1;
            return;
        }
        // No FINGERPRINT: every byte counts against the request's size.
        let Ok(mut payload) = stun::encode(message.clone(), None, false) else {
            return;
        };
        let limit = request_len + self.config.unauthenticated_allowance_bytes;
        if payload.len() > limit {
            let mut terse =
                TurnMessage::new(message.class(), message.method(), message.transaction_id());
            for attribute in message.attributes() {
                match attribute {
                    TurnAttribute::ErrorCode(e) => {
                        if let Ok(e) = ErrorCode::new(e.code(), String::new()) {
                            terse.add_attribute(e);
                        }
                    }
                    other => terse.add_attribute(other.clone()),
                }
            }
            let Ok(shorter) = stun::encode(terse, None, false) else {
                return;
            };
            payload = shorter;
        }
        if payload.len() > limit {
            self.stats.unanswered_unauthenticated += 1;
            return;
        }
        self.commands
            .push_back(ServerCommand::SendFromListen { to, payload });
    }
}

fn saturating_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}
