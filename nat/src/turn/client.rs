//! Sans-IO TURN client (RFC 8656 over UDP, TCP or TLS), usable against the Peerphone relay
//! and coturn.
//!
//! Allocates with the long-term credential mechanism (the 401 REALM/NONCE exchange and the
//! 438 stale-nonce retry), refreshes the allocation before it expires, creates and refreshes
//! permissions, binds and refreshes channels, sends through ChannelData when a channel is
//! bound and a Send indication otherwise, and turns Data indications and ChannelData into
//! [`ClientEvent::Data`]. Over UDP, requests are retransmitted as RFC 8489 §6.2.1 says (RTO
//! 500 ms doubling, 7 sends).
//!
//! Over a stream ([`TurnTransport::Stream`]: TCP, or TLS terminated by the shell) requests
//! are sent once and time out after 39.5 s (RFC 8489 §6.2.2), ChannelData is padded to 4
//! bytes (RFC 8656 §12.5), and received bytes go to [`TurnClient::handle_stream_bytes`],
//! which finds the message boundaries ([`super::stream`]). The relayed side stays UDP.
//!
//! Sans-IO: after every `handle_*` or command, drain [`TurnClient::poll_transmit`] (send each
//! to [`ClientTransmit::destination`] from the client's UDP socket), then
//! [`TurnClient::poll_event`], then arm a timer for [`TurnClient::poll_timeout`].
//!
//! Does not: open the TCP connection or run TLS (the shell does), allocate TCP relays
//! (RFC 6062), IPv6 relayed addresses, pick a server, or check that the peer is who it
//! claims (that is the end-to-end session's job).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};
use stun_codec::rfc5389::attributes::{
    ErrorCode, Nonce, Realm, Software, Username, XorMappedAddress,
};
use stun_codec::rfc5766::attributes::{
    ChannelNumber, Data, Lifetime, RequestedTransport, XorPeerAddress, XorRelayAddress,
};
use stun_codec::rfc5766::methods::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, DATA, REFRESH};
use stun_codec::{MessageClass, TransactionId};

use crate::stun::IntegrityKey;

use super::stream::{StreamDecoder, StreamError, pad_for_stream};
use super::wire::{
    self, CHANNEL_MAX, CHANNEL_MIN, PROTOCOL_UDP, StunMessage, TurnDatagram, TurnMessage,
};

/// First retransmission timeout (RFC 8489 §6.2.1).
const INITIAL_RTO: Duration = Duration::from_millis(500);
/// Sends of one request before giving up (Rc).
const MAX_SENDS: u32 = 7;
/// Wait after the last send, in RTOs (Rm).
const LAST_WAIT_RTOS: u32 = 16;
/// Permissions last 300 s; refresh with a minute to spare.
const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// Channels last 600 s; rebind with a minute to spare.
const CHANNEL_REFRESH: Duration = Duration::from_secs(540);
/// Transaction timeout on reliable transports (RFC 8489 §6.2.2: Ti = 39.5 s).
const STREAM_TRANSACTION_TIMEOUT: Duration = Duration::from_millis(39_500);
/// Largest message accepted from the server on a stream: a relayed media datagram of up to
/// 9 KiB in a Data indication, with room to spare.
pub const MAX_STREAM_FRAME_BYTES: usize = 10 * 1024;
/// Retries of one request after 438 Stale Nonce.
const MAX_STALE_NONCE_RETRIES: u32 = 3;
/// The first Allocate carries no credentials and draws a 401 with REALM and NONCE. Servers
/// that refuse to answer an unauthenticated request with more bytes than it had (as the
/// Peerphone relay does) need it this long, so SOFTWARE pads it.
const FIRST_ALLOCATE_MIN_BYTES: usize = 160;

/// How to reach and authenticate to a TURN server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's UDP address.
    pub server: SocketAddr,
    /// Long-term credential username (for REST-style credentials, `"<expiry>:<user>"`).
    pub username: String,
    /// Long-term credential password.
    pub password: String,
    /// LIFETIME asked for in Allocate and Refresh.
    pub requested_lifetime: Duration,
    /// How the client reaches the server.
    pub transport: TurnTransport,
}

/// How the client reaches its TURN server (the relayed side is always UDP).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TurnTransport {
    /// Datagrams on a UDP socket; requests are retransmitted.
    #[default]
    Udp,
    /// A byte stream (TCP, or TLS over TCP): no retransmissions, padded ChannelData, and
    /// received bytes fed through [`TurnClient::handle_stream_bytes`].
    Stream,
}

impl ClientConfig {
    /// Config with a 600 s requested lifetime.
    pub fn new(
        server: SocketAddr,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            server,
            username: username.into(),
            password: password.into(),
            requested_lifetime: Duration::from_secs(600),
            transport: TurnTransport::Udp,
        }
    }

    /// The same server reached over a stream (TCP or TLS).
    pub fn over_stream(mut self) -> Self {
        self.transport = TurnTransport::Stream;
        self
    }
}

/// A datagram for the client's UDP socket to send, or bytes to write to the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTransmit {
    /// Always the TURN server.
    pub destination: SocketAddr,
    /// STUN message or ChannelData (padded to 4 bytes on a stream).
    pub payload: Vec<u8>,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server did not answer a request after all retransmissions.
    #[error("TURN server did not answer")]
    Timeout,
    /// The server answered with an error code.
    #[error("TURN server refused: {code} {reason}")]
    Rejected {
        /// STUN error code.
        code: u16,
        /// Reason phrase as sent.
        reason: String,
    },
    /// The server did not accept the credentials.
    #[error("TURN credentials refused")]
    Unauthorized,
    /// The operation needs an allocation first.
    #[error("no TURN allocation")]
    NotAllocated,
    /// All 4096 channel numbers are in use.
    #[error("no free channel number")]
    ChannelsExhausted,
    /// The payload does not fit one message.
    #[error("payload of {0} bytes is too large to relay")]
    TooLarge(usize),
    /// The credentials or a value cannot be put in a STUN message.
    #[error("cannot build STUN message: {0}")]
    Encode(String),
    /// The server's byte stream cannot be framed; the connection must be closed.
    #[error("TURN stream broken: {0}")]
    Stream(#[from] StreamError),
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The allocation exists.
    Allocated {
        /// Relayed transport address: peers send here.
        relayed: SocketAddr,
        /// This client's address as the server saw it (server-reflexive), when reported.
        mapped: Option<SocketAddr>,
        /// Granted lifetime.
        lifetime: Duration,
    },
    /// Allocate failed; the client is back to idle.
    AllocationFailed(ClientError),
    /// A refresh extended the allocation.
    Refreshed {
        /// Granted lifetime.
        lifetime: Duration,
    },
    /// The allocation is gone (refresh refused or unanswered).
    AllocationLost(ClientError),
    /// The allocation was released on request.
    Released,
    /// The server accepted a permission for `peer`.
    PermissionCreated {
        /// Peer IP.
        peer: IpAddr,
    },
    /// The server refused a permission.
    PermissionFailed {
        /// Peer IP.
        peer: IpAddr,
        /// Why.
        error: ClientError,
    },
    /// A channel to `peer` is bound; sends to it now use ChannelData.
    ChannelBound {
        /// Peer address.
        peer: SocketAddr,
        /// Channel number.
        channel: u16,
    },
    /// The server refused a channel.
    ChannelBindFailed {
        /// Peer address.
        peer: SocketAddr,
        /// Why.
        error: ClientError,
    },
    /// Data relayed from `peer`.
    Data {
        /// Peer address.
        peer: SocketAddr,
        /// Application bytes.
        payload: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
enum RequestKind {
    Allocate,
    Refresh { lifetime: Duration },
    CreatePermission { peer: IpAddr },
    ChannelBind { peer: SocketAddr, channel: u16 },
}

#[derive(Debug)]
struct Pending {
    kind: RequestKind,
    bytes: Vec<u8>,
    sends: u32,
    rto: Duration,
    deadline: Instant,
    credentialed: bool,
    /// The key the request was signed with: its answer is signed with the same one, even
    /// when the credentials changed meanwhile.
    key: Option<IntegrityKey>,
    stale_retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AllocationState {
    Idle,
    Allocating,
    Allocated {
        relayed: SocketAddr,
        refresh_at: Instant,
    },
    Releasing,
}

#[derive(Debug)]
struct ChannelState {
    number: u16,
    bound: bool,
    refresh_at: Option<Instant>,
}

/// The sans-IO TURN client. See the module docs for the call protocol.
#[derive(Debug)]
pub struct TurnClient {
    config: ClientConfig,
    rng: StdRng,
    realm: Option<Realm>,
    nonce: Option<Nonce>,
    state: AllocationState,
    mapped: Option<SocketAddr>,
    pending: BTreeMap<[u8; 12], Pending>,
    permissions: HashMap<IpAddr, Option<Instant>>,
    channels: HashMap<SocketAddr, ChannelState>,
    channel_peers: HashMap<u16, SocketAddr>,
    next_channel: u16,
    transmits: VecDeque<ClientTransmit>,
    events: VecDeque<ClientEvent>,
    stream: Option<StreamDecoder>,
}

impl TurnClient {
    /// A client that has not allocated yet; `seed` feeds transaction ids.
    pub fn new(config: ClientConfig, seed: [u8; 32]) -> Self {
        Self {
            rng: StdRng::from_seed(seed),
            realm: None,
            nonce: None,
            state: AllocationState::Idle,
            mapped: None,
            pending: BTreeMap::new(),
            permissions: HashMap::new(),
            channels: HashMap::new(),
            channel_peers: HashMap::new(),
            next_channel: CHANNEL_MIN,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stream: (config.transport == TurnTransport::Stream)
                .then(|| StreamDecoder::new(MAX_STREAM_FRAME_BYTES)),
            config,
        }
    }

    /// Uses fresh credentials from now on (REST-style credentials expire, and a refresh
    /// signed with expired ones is refused, losing the allocation). They must be for the
    /// same user: the server keeps the allocation only for its owner.
    pub fn set_credentials(&mut self, username: impl Into<String>, password: impl Into<String>) {
        self.config.username = username.into();
        self.config.password = password.into();
    }

    /// The TURN server this client talks to.
    pub fn server(&self) -> SocketAddr {
        self.config.server
    }

    /// How this client reaches its server.
    pub fn transport(&self) -> TurnTransport {
        self.config.transport
    }

    /// The relayed transport address, once allocated.
    pub fn relayed_addr(&self) -> Option<SocketAddr> {
        match self.state {
            AllocationState::Allocated { relayed, .. } => Some(relayed),
            _ => None,
        }
    }

    /// This client's address as the server saw it, once allocated.
    pub fn mapped_addr(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The channel number bound to `peer`, if the binding succeeded.
    pub fn channel(&self, peer: SocketAddr) -> Option<u16> {
        self.channels
            .get(&peer)
            .filter(|c| c.bound)
            .map(|c| c.number)
    }

    /// Starts an allocation (no-op when one exists or is under way).
    pub fn allocate(&mut self, now: Instant) -> Result<(), ClientError> {
        if self.state != AllocationState::Idle {
            return Ok(());
        }
        self.state = AllocationState::Allocating;
        self.start(now, RequestKind::Allocate)
    }

    /// Releases the allocation (Refresh with LIFETIME 0).
    pub fn release(&mut self, now: Instant) -> Result<(), ClientError> {
        if !matches!(self.state, AllocationState::Allocated { .. }) {
            return Err(ClientError::NotAllocated);
        }
        self.state = AllocationState::Releasing;
        self.start(
            now,
            RequestKind::Refresh {
                lifetime: Duration::ZERO,
            },
        )
    }

    /// Asks the server to accept data from `peer` (and let this client send to it);
    /// refreshed automatically while the allocation lives.
    pub fn create_permission(&mut self, now: Instant, peer: IpAddr) -> Result<(), ClientError> {
        self.require_allocation()?;
        self.permissions.entry(peer).or_insert(None);
        self.start(now, RequestKind::CreatePermission { peer })
    }

    /// Binds a channel to `peer` (also installing its permission); refreshed automatically.
    /// Returns the channel number, usable once [`ClientEvent::ChannelBound`] arrives.
    pub fn bind_channel(&mut self, now: Instant, peer: SocketAddr) -> Result<u16, ClientError> {
        self.require_allocation()?;
        let channel = match self.channels.get(&peer) {
            Some(c) => c.number,
            None => {
                let number = self.free_channel().ok_or(ClientError::ChannelsExhausted)?;
                self.channels.insert(
                    peer,
                    ChannelState {
                        number,
                        bound: false,
                        refresh_at: None,
                    },
                );
                self.channel_peers.insert(number, peer);
                number
            }
        };
        self.start(now, RequestKind::ChannelBind { peer, channel })?;
        Ok(channel)
    }

    /// Relays `data` to `peer`: ChannelData when a channel is bound, a Send indication
    /// otherwise (which needs a permission for `peer`).
    pub fn send_to(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), ClientError> {
        self.require_allocation()?;
        if data.len() > usize::from(u16::MAX) - 64 {
            return Err(ClientError::TooLarge(data.len()));
        }
        let payload = if let Some(channel) = self.channel(peer) {
            let mut out = Vec::new();
            if !wire::encode_channel_data(channel, data, &mut out) {
                return Err(ClientError::TooLarge(data.len()));
            }
            if self.config.transport == TurnTransport::Stream {
                pad_for_stream(&mut out);
            }
            out
        } else {
            let id = self.transaction_id();
            let message =
                wire::send_indication(id, peer, data).ok_or(ClientError::TooLarge(data.len()))?;
            wire::encode_stun(message, None).map_err(|e| ClientError::Encode(e.to_string()))?
        };
        self.transmits.push_back(ClientTransmit {
            destination: self.config.server,
            payload,
        });
        Ok(())
    }

    /// Feeds a datagram received on the client's socket. Returns `false` when it did not
    /// come from the TURN server or is not TURN, so the caller can hand it to someone else.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool {
        if from != self.config.server {
            return false;
        }
        match wire::decode_datagram(bytes) {
            Ok(TurnDatagram::ChannelData { channel, data }) => {
                if let Some(&peer) = self.channel_peers.get(&channel) {
                    self.events.push_back(ClientEvent::Data {
                        peer,
                        payload: data.to_vec(),
                    });
                }
                true
            }
            Ok(TurnDatagram::Stun(decoded)) => {
                let message = decoded.message();
                match message.class() {
                    MessageClass::Indication if message.method() == DATA => {
                        if let (Some(peer), Some(data)) = (
                            message.get_attribute::<XorPeerAddress>(),
                            message.get_attribute::<Data>(),
                        ) {
                            self.events.push_back(ClientEvent::Data {
                                peer: peer.address(),
                                payload: data.data().to_vec(),
                            });
                        }
                    }
                    MessageClass::SuccessResponse | MessageClass::ErrorResponse => {
                        self.response(now, &decoded);
                    }
                    _ => {}
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Feeds bytes read from the stream to the server ([`TurnTransport::Stream`]); each
    /// complete message is handled as [`TurnClient::handle_datagram`] would. An error means
    /// the stream cannot be framed any more (or this client is not on a stream): close it.
    pub fn handle_stream_bytes(&mut self, now: Instant, bytes: &[u8]) -> Result<(), ClientError> {
        let Some(mut decoder) = self.stream.take() else {
            return Err(ClientError::Encode("not a stream client".into()));
        };
        let server = self.config.server;
        let result = decoder.decode(bytes, |frame| {
            self.handle_datagram(now, server, frame);
        });
        self.stream = Some(decoder);
        result.map_err(ClientError::Stream)
    }

    /// Retransmits, refreshes and times out.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<[u8; 12]> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(mut p) = self.pending.remove(&id) else {
                continue;
            };
            if p.sends >= MAX_SENDS {
                self.failed(p.kind, ClientError::Timeout);
                continue;
            }
            p.sends += 1;
            p.rto *= 2;
            p.deadline = now
                + if p.sends >= MAX_SENDS {
                    INITIAL_RTO * LAST_WAIT_RTOS
                } else {
                    p.rto
                };
            self.transmits.push_back(ClientTransmit {
                destination: self.config.server,
                payload: p.bytes.clone(),
            });
            self.pending.insert(id, p);
        }
        if let AllocationState::Allocated {
            refresh_at,
            relayed,
        } = self.state
        {
            if refresh_at <= now {
                // Pushed back so a slow answer does not trigger a second refresh.
                self.state = AllocationState::Allocated {
                    relayed,
                    refresh_at: now + Duration::from_secs(3600),
                };
                let lifetime = self.config.requested_lifetime;
                if let Err(e) = self.start(now, RequestKind::Refresh { lifetime }) {
                    self.lost(e);
                    return;
                }
            }
            let permissions: Vec<IpAddr> = self
                .permissions
                .iter()
                .filter(|(_, at)| at.is_some_and(|t| t <= now))
                .map(|(p, _)| *p)
                .collect();
            for peer in permissions {
                self.permissions.insert(peer, None);
                let _ = self.start(now, RequestKind::CreatePermission { peer });
            }
            let channels: Vec<(SocketAddr, u16)> = self
                .channels
                .iter()
                .filter(|(_, c)| c.refresh_at.is_some_and(|t| t <= now))
                .map(|(p, c)| (*p, c.number))
                .collect();
            for (peer, channel) in channels {
                if let Some(c) = self.channels.get_mut(&peer) {
                    c.refresh_at = None;
                }
                let _ = self.start(now, RequestKind::ChannelBind { peer, channel });
            }
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<ClientTransmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`TurnClient::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmit = self.pending.values().map(|p| p.deadline).min();
        let refresh = match self.state {
            AllocationState::Allocated { refresh_at, .. } => Some(refresh_at),
            _ => None,
        };
        let permission = self.permissions.values().flatten().min().copied();
        let channel = self.channels.values().filter_map(|c| c.refresh_at).min();
        [retransmit, refresh, permission, channel]
            .into_iter()
            .flatten()
            .min()
    }

    fn require_allocation(&self) -> Result<(), ClientError> {
        match self.state {
            AllocationState::Allocated { .. } => Ok(()),
            _ => Err(ClientError::NotAllocated),
        }
    }

    fn free_channel(&mut self) -> Option<u16> {
        let span = CHANNEL_MAX - CHANNEL_MIN + 1;
        for _ in 0..span {
            let candidate = self.next_channel;
            self.next_channel = if candidate >= CHANNEL_MAX {
                CHANNEL_MIN
            } else {
                candidate + 1
            };
            if !self.channel_peers.contains_key(&candidate) {
                return Some(candidate);
            }
        }
        None
    }

    fn transaction_id(&mut self) -> TransactionId {
        TransactionId::new(self.rng.random())
    }

    fn start(&mut self, now: Instant, kind: RequestKind) -> Result<(), ClientError> {
        self.send_request(now, kind, 0)
    }

    fn send_request(
        &mut self,
        now: Instant,
        kind: RequestKind,
        stale_retries: u32,
    ) -> Result<(), ClientError> {
        let id = self.transaction_id();
        let method = match kind {
            RequestKind::Allocate => ALLOCATE,
            RequestKind::Refresh { .. } => REFRESH,
            RequestKind::CreatePermission { .. } => CREATE_PERMISSION,
            RequestKind::ChannelBind { .. } => CHANNEL_BIND,
        };
        let mut message = TurnMessage::new(MessageClass::Request, method, id);
        match &kind {
            RequestKind::Allocate => {
                message.add_attribute(RequestedTransport::new(PROTOCOL_UDP));
                message.add_attribute(Lifetime::from_u32(secs(self.config.requested_lifetime)));
            }
            RequestKind::Refresh { lifetime } => {
                message.add_attribute(Lifetime::from_u32(secs(*lifetime)));
            }
            RequestKind::CreatePermission { peer } => {
                message.add_attribute(XorPeerAddress::new(SocketAddr::new(*peer, 0)));
            }
            RequestKind::ChannelBind { peer, channel } => {
                let number =
                    ChannelNumber::new(*channel).map_err(|e| ClientError::Encode(e.to_string()))?;
                message.add_attribute(number);
                message.add_attribute(XorPeerAddress::new(*peer));
            }
        }
        let credentialed = self.realm.is_some() && self.nonce.is_some();
        let mut signing_key = None;
        let bytes = if let (Some(realm), Some(nonce)) = (&self.realm, &self.nonce) {
            let username = Username::new(self.config.username.clone())
                .map_err(|e| ClientError::Encode(e.to_string()))?;
            message.add_attribute(username.clone());
            message.add_attribute(realm.clone());
            message.add_attribute(nonce.clone());
            let key = IntegrityKey::long_term(username.name(), realm.text(), &self.config.password);
            let bytes = wire::encode_stun(message, Some(&key))
                .map_err(|e| ClientError::Encode(e.to_string()))?;
            signing_key = Some(key);
            bytes
        } else {
            let unpadded = wire::encode_stun(message.clone(), None)
                .map_err(|e| ClientError::Encode(e.to_string()))?;
            let pad = FIRST_ALLOCATE_MIN_BYTES.saturating_sub(unpadded.len() + 4 + 8);
            // SOFTWARE holds fewer than 128 characters (RFC 8489 §14.14).
            let spaces = pad.clamp(9, 127) - 9;
            let software = Software::new(format!("peerphone{:spaces$}", ""))
                .map_err(|e| ClientError::Encode(e.to_string()))?;
            message.add_attribute(software);
            wire::encode_stun(message, None).map_err(|e| ClientError::Encode(e.to_string()))?
        };
        self.transmits.push_back(ClientTransmit {
            destination: self.config.server,
            payload: bytes.clone(),
        });
        // A stream delivers or breaks: one send, then only the transaction timeout.
        let (sends, deadline) = match self.config.transport {
            TurnTransport::Udp => (1, now + INITIAL_RTO),
            TurnTransport::Stream => (MAX_SENDS, now + STREAM_TRANSACTION_TIMEOUT),
        };
        self.pending.insert(
            *id.as_bytes(),
            Pending {
                kind,
                bytes,
                sends,
                rto: INITIAL_RTO,
                deadline,
                credentialed,
                key: signing_key,
                stale_retries,
            },
        );
        Ok(())
    }

    fn response(&mut self, now: Instant, decoded: &StunMessage<'_>) {
        let message = decoded.message();
        let id = *message.transaction_id().as_bytes();
        let Some(pending) = self.pending.get(&id) else {
            return;
        };
        if decoded.has_integrity()
            && let Some(key) = &pending.key
            && !decoded.verify_integrity(key)
        {
            // Not from the server we share a key with: ignore, keep waiting.
            return;
        }
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        if message.class() == MessageClass::ErrorResponse {
            let (code, reason) = message
                .get_attribute::<ErrorCode>()
                .map_or((0, String::new()), |e| {
                    (e.code(), e.reason_phrase().to_owned())
                });
            let new_nonce = message.get_attribute::<Nonce>().cloned();
            let new_realm = message.get_attribute::<Realm>().cloned();
            match code {
                401 if !pending.credentialed && new_nonce.is_some() && new_realm.is_some() => {
                    self.nonce = new_nonce;
                    self.realm = new_realm;
                    if let Err(e) = self.send_request(now, pending.kind.clone(), 0) {
                        self.failed(pending.kind, e);
                    }
                }
                438 if pending.stale_retries < MAX_STALE_NONCE_RETRIES && new_nonce.is_some() => {
                    self.nonce = new_nonce;
                    if new_realm.is_some() {
                        self.realm = new_realm;
                    }
                    let retries = pending.stale_retries + 1;
                    if let Err(e) = self.send_request(now, pending.kind.clone(), retries) {
                        self.failed(pending.kind, e);
                    }
                }
                401 => self.failed(pending.kind, ClientError::Unauthorized),
                _ => self.failed(pending.kind, ClientError::Rejected { code, reason }),
            }
            return;
        }
        match pending.kind {
            RequestKind::Allocate => {
                let Some(relayed) = message.get_attribute::<XorRelayAddress>() else {
                    self.failed(
                        RequestKind::Allocate,
                        ClientError::Rejected {
                            code: 0,
                            reason: "success without XOR-RELAYED-ADDRESS".into(),
                        },
                    );
                    return;
                };
                let lifetime = granted(message, self.config.requested_lifetime);
                self.mapped = message
                    .get_attribute::<XorMappedAddress>()
                    .map(XorMappedAddress::address);
                self.state = AllocationState::Allocated {
                    relayed: relayed.address(),
                    refresh_at: now + refresh_after(lifetime),
                };
                self.events.push_back(ClientEvent::Allocated {
                    relayed: relayed.address(),
                    mapped: self.mapped,
                    lifetime,
                });
            }
            RequestKind::Refresh { lifetime } if lifetime.is_zero() => {
                self.reset();
                self.events.push_back(ClientEvent::Released);
            }
            RequestKind::Refresh { .. } => {
                let lifetime = granted(message, self.config.requested_lifetime);
                if let AllocationState::Allocated { relayed, .. } = self.state {
                    self.state = AllocationState::Allocated {
                        relayed,
                        refresh_at: now + refresh_after(lifetime),
                    };
                }
                self.events.push_back(ClientEvent::Refreshed { lifetime });
            }
            RequestKind::CreatePermission { peer } => {
                let first = self
                    .permissions
                    .insert(peer, Some(now + PERMISSION_REFRESH));
                if first.is_none_or(|at| at.is_none()) {
                    self.events
                        .push_back(ClientEvent::PermissionCreated { peer });
                }
            }
            RequestKind::ChannelBind { peer, channel } => {
                if let Some(c) = self.channels.get_mut(&peer) {
                    let first = !c.bound;
                    c.bound = true;
                    c.refresh_at = Some(now + CHANNEL_REFRESH);
                    if first {
                        self.events
                            .push_back(ClientEvent::ChannelBound { peer, channel });
                    }
                }
            }
        }
    }

    fn failed(&mut self, kind: RequestKind, error: ClientError) {
        match kind {
            RequestKind::Allocate => {
                self.reset();
                self.events.push_back(ClientEvent::AllocationFailed(error));
            }
            RequestKind::Refresh { lifetime } if lifetime.is_zero() => {
                self.reset();
                self.events.push_back(ClientEvent::Released);
            }
            RequestKind::Refresh { .. } => self.lost(error),
            RequestKind::CreatePermission { peer } => {
                self.permissions.remove(&peer);
                self.events
                    .push_back(ClientEvent::PermissionFailed { peer, error });
            }
            RequestKind::ChannelBind { peer, channel } => {
                if let Some(c) = self.channels.remove(&peer) {
                    self.channel_peers.remove(&c.number);
                }
                let _ = channel;
                self.events
                    .push_back(ClientEvent::ChannelBindFailed { peer, error });
            }
        }
    }

    fn lost(&mut self, error: ClientError) {
        self.reset();
        self.events.push_back(ClientEvent::AllocationLost(error));
    }

    fn reset(&mut self) {
        self.state = AllocationState::Idle;
        self.pending.clear();
        self.permissions.clear();
        self.channels.clear();
        self.channel_peers.clear();
        self.mapped = None;
    }
}

fn granted(message: &TurnMessage, fallback: Duration) -> Duration {
    message
        .get_attribute::<Lifetime>()
        .map_or(fallback, Lifetime::lifetime)
}

fn refresh_after(lifetime: Duration) -> Duration {
    // Three quarters of the lifetime leaves room for retransmissions of the Refresh.
    (lifetime * 3 / 4).max(Duration::from_secs(1))
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}
