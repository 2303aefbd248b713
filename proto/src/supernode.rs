//! Messages of the supernode protocol: client ↔ supernode sessions and the supernode mesh.
//!
//! Three directions, three enums: [`ClientToSupernode`], [`SupernodeToClient`] and
//! [`SupernodeToSupernode`]. Each travels as one length-prefixed postcard frame
//! ([`crate::frame`]) on a QUIC stream. Variants carry explicit discriminants equal to their
//! position, because postcard encodes a variant as its index: variants are only ever
//! appended, never reordered or reused (a test pins every index).
//!
//! The first message on a session is a `Hello` carrying [`crate::PROTOCOL_VERSION`]. A
//! message kind this build does not know decodes to [`DecodeError::UnknownKind`], which the
//! receiver answers with a typed error ([`ErrorCode::UnknownMessage`]) instead of dropping
//! the session.
//!
//! What it does not do: no routing decisions, no state, no IO. Payloads routed between users
//! ([`ClientToSupernode::Route`]) are opaque end-to-end encrypted bytes; only the routing
//! fields are visible to supernodes.

use crate::credential::SignedCredential;
use crate::keys::PublicKey;
use crate::kind::wire_kinds;
use crate::names::{DisplayName, UserName};
use crate::park::ParkToken;
use crate::time::UnixTime;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// The most supernodes one host-cache answer lists; the client's whole cache holds 200.
pub const MAX_HOST_CACHE_ANSWER: usize = 64;
/// The most alternatives one `Busy` answer lists.
pub const MAX_BUSY_ALTERNATIVES: usize = 16;
/// The most names in an authorised-contacts or watch list.
pub const MAX_CONTACTS: usize = 1000;
/// The most hits one search answer carries.
pub const MAX_SEARCH_HITS: usize = 50;
/// The most bytes of an end-to-end encrypted routed payload.
pub const MAX_ROUTE_PAYLOAD: usize = 16 * 1024;
/// The most characters of a status message.
pub const MAX_STATUS_MESSAGE_CHARS: usize = 128;
/// The most devices of one user that the mesh tracks at once.
pub const MAX_DEVICES_PER_USER: usize = 8;
/// The most (watcher, target) pairs in one subscription message.
pub const MAX_SUBSCRIPTION_PAIRS: usize = 1000;

/// Where to reach a supernode: its identity key (proved in TLS) and its address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SupernodeContact {
    pub key: PublicKey,
    pub addr: SocketAddr,
}

impl fmt::Debug for SupernodeContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Supernode({} at {})", self.key.fingerprint(), self.addr)
    }
}

/// A user's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum PresenceStatus {
    /// Available.
    Online = 0,
    /// Away from the device.
    Away = 1,
    /// Do not disturb.
    Busy = 2,
    /// Online but shown as offline to everyone. Only ever sent by a client about itself;
    /// supernodes turn it into `Offline` before anyone else sees it.
    Invisible = 3,
    /// Not reachable.
    Offline = 4,
}

impl PresenceStatus {
    /// What other users are shown: invisible looks offline.
    pub fn as_seen_by_others(self) -> Self {
        match self {
            Self::Invisible => Self::Offline,
            other => other,
        }
    }

    /// Ranks statuses for combining a user's devices: the most available device wins.
    pub fn availability_rank(self) -> u8 {
        match self {
            Self::Online => 4,
            Self::Busy => 3,
            Self::Away => 2,
            Self::Invisible | Self::Offline => 0,
        }
    }

    /// The lowercase name used in JSON events (`online`, `away`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Busy => "busy",
            Self::Invisible => "invisible",
            Self::Offline => "offline",
        }
    }
}

/// Why a status message or search prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("text is longer than {max} characters")]
    TooLong { max: usize },
    #[error("text must not contain control characters")]
    Control,
    #[error("text must not be empty")]
    Empty,
}

fn check_text(text: &str, max: usize, allow_empty: bool) -> Result<(), TextError> {
    if text.chars().count() > max {
        return Err(TextError::TooLong { max });
    }
    if text.chars().any(char::is_control) {
        return Err(TextError::Control);
    }
    if !allow_empty && text.is_empty() {
        return Err(TextError::Empty);
    }
    Ok(())
}

/// A free-text status ("in a meeting"): at most 128 characters, no control characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StatusMessage(String);

impl StatusMessage {
    pub fn new(text: impl Into<String>) -> Result<Self, TextError> {
        let text = text.into();
        check_text(&text, MAX_STATUS_MESSAGE_CHARS, true)?;
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StatusMessage {
    type Error = TextError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<StatusMessage> for String {
    fn from(value: StatusMessage) -> Self {
        value.0
    }
}

/// A status and its message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Presence {
    pub status: PresenceStatus,
    pub message: StatusMessage,
}

impl Presence {
    pub fn offline() -> Self {
        Self {
            status: PresenceStatus::Offline,
            message: StatusMessage::default(),
        }
    }

    pub fn new(status: PresenceStatus) -> Self {
        Self {
            status,
            message: StatusMessage::default(),
        }
    }

    /// What other users are shown: invisible users look offline and say nothing.
    pub fn as_seen_by_others(&self) -> Self {
        match self.status.as_seen_by_others() {
            PresenceStatus::Offline => Self::offline(),
            status => Self {
                status,
                message: self.message.clone(),
            },
        }
    }
}

/// A display-name prefix to search for: 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SearchPrefix(String);

impl SearchPrefix {
    pub fn new(text: impl Into<String>) -> Result<Self, TextError> {
        let text = text.into();
        check_text(&text, DisplayName::MAX_CHARS, false)?;
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form, the key of prefix caches.
    pub fn folded(&self) -> String {
        self.0.chars().flat_map(char::to_lowercase).collect()
    }
}

impl TryFrom<String> for SearchPrefix {
    type Error = TextError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<SearchPrefix> for String {
    fn from(value: SearchPrefix) -> Self {
        value.0
    }
}

/// What a client searches for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum SearchQuery {
    /// One user by exact name.
    Exact(UserName) = 0,
    /// Users whose display name starts with the prefix (case-insensitive).
    DisplayNamePrefix(SearchPrefix) = 1,
}

/// Where a search answer came from (for metrics and benchmarks; clients need not care).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum SearchSource {
    /// The user is homed on the answering supernode.
    Local = 0,
    /// The answering supernode's result cache.
    Cache = 1,
    /// The supernode responsible for the user in the mesh.
    Mesh = 2,
    /// The login server's user lookup.
    LoginServer = 3,
}

/// One found user. The client verifies `credential` against the trust anchor (it must name
/// `user`), so a lying supernode cannot substitute another key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    pub user: UserName,
    pub display_name: DisplayName,
    /// The newest credential known for one of the user's devices; `None` when only the
    /// login server's account record is known and it carries none.
    pub credential: Option<SignedCredential>,
    /// The supernode the user is homed on, when online and visible to the searcher, or as
    /// last reported by the login server within 72 hours.
    pub home: Option<SupernodeContact>,
    /// The user's presence as the searcher may see it: `Offline` unless the searcher is an
    /// authorised contact.
    pub presence: Presence,
    /// When the login server last saw the user, when known.
    pub last_seen: Option<UnixTime>,
}

/// Why a search got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[repr(u8)]
pub enum SearchError {
    /// Too many searches from this client; retry later.
    #[error("too many searches; retry in {retry_after_millis} ms")]
    RateLimited { retry_after_millis: u32 } = 0,
    /// Neither the mesh nor the login server answered in time.
    #[error("search service unavailable")]
    Unavailable = 1,
    /// The supernode is overloaded and shed this search.
    #[error("supernode overloaded")]
    Overloaded = 2,
}

/// What became of a routed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum RouteOutcome {
    /// Handed to at least one of the recipient's devices.
    Delivered = 0,
    /// The recipient (or the named device) is not online.
    Offline = 1,
    /// Too many routed messages from this client; retry later.
    RateLimited = 2,
    /// The recipient's supernode could not be reached in time.
    Unreachable = 3,
    /// The payload exceeds [`MAX_ROUTE_PAYLOAD`].
    TooLarge = 4,
}

/// Typed protocol errors, sent before closing a session or in reply to one bad message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[repr(u8)]
pub enum ErrorCode {
    /// The peer speaks a protocol version we do not.
    #[error("unsupported protocol version {theirs}; this side speaks {ours}")]
    UnsupportedVersion { ours: u16, theirs: u16 } = 0,
    /// A message kind this side does not know (a newer peer); the session continues.
    #[error("unknown message kind {kind}")]
    UnknownMessage { kind: u32 } = 1,
    /// A message that does not decode.
    #[error("malformed message")]
    Malformed = 2,
    /// A message that needs a session arrived before `Hello`.
    #[error("say hello first")]
    NotAuthenticated = 3,
    /// The credential does not verify, is expired, revoked, or names another key.
    #[error("credential refused: {reason}")]
    CredentialRefused { reason: String } = 4,
    /// Too many messages of some kind; the session continues.
    #[error("rate limited")]
    RateLimited = 5,
    /// A value out of the protocol's bounds (too many contacts, payload too large).
    #[error("request too large")]
    TooLarge = 6,
    /// The peer is not an admitted supernode.
    #[error("not an admitted supernode")]
    NotAdmitted = 7,
    /// The requested service does not run here (no TURN relay, for instance).
    #[error("service unavailable on this supernode")]
    Unavailable = 8,
}

/// Why the supernode ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum GoodbyeReason {
    /// The supernode is shutting down; re-home now.
    ShuttingDown = 0,
    /// The same device said hello again on another connection.
    Replaced = 1,
    /// The credential was revoked or expired.
    CredentialInvalid = 2,
    /// No keep-alive within the session timeout.
    IdleTimeout = 3,
    /// The supernode sheds load; re-home elsewhere.
    Overloaded = 4,
}

/// Client → supernode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum ClientToSupernode {
    /// Opens a session: the credential must name the key the client proved in TLS. Sent
    /// again on the same session to present a refreshed credential. `presence` is the
    /// device's initial presence, so an invisible user never flashes online.
    Hello {
        version: u16,
        credential: SignedCredential,
        presence: Presence,
    } = 0,
    /// Keep-alive and round-trip probe; allowed before `Hello` so clients can rank
    /// supernodes by RTT. Answered by `Pong` with the same nonce.
    Ping { nonce: u64 } = 1,
    /// Sets this device's presence.
    SetPresence { presence: Presence } = 2,
    /// Replaces the list of users allowed to see this user's presence (the authorised buddy
    /// list). Nobody else ever receives it.
    SetAuthorized { contacts: Vec<UserName> } = 3,
    /// Replaces the list of users whose presence this client wants pushed to it.
    Watch { contacts: Vec<UserName> } = 4,
    /// Searches by exact user name or display-name prefix; answered by `SearchResults` or
    /// `SearchFailed` with the same `query_id`.
    Search { query_id: u32, query: SearchQuery } = 5,
    /// Routes an end-to-end encrypted payload to a user (all their devices, or one).
    /// Answered by `RouteStatus` with the same `id`.
    Route {
        id: u64,
        to: UserName,
        to_device: Option<PublicKey>,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    } = 6,
    /// Asks for supernodes to put in the host cache; answered by `HostCache`.
    HostCacheRequest = 7,
    /// Ends the session: the device goes offline at once.
    Goodbye = 8,
    /// Asks for short-lived credentials for this supernode's TURN relay; answered by
    /// `TurnCredentials` (or `Error { code: Unavailable }` when it runs no relay).
    TurnCredentialsRequest = 9,
    /// Agrees to `ParkOffer` with its token: the client supports parking and holds the
    /// park key of this connection ([`crate::park`]). Answered by `Parked`.
    ParkAccept { token: ParkToken } = 10,
    /// On a new connection: attaches it to the parked session `token` of this device.
    /// `proof` is a [`crate::park::ParkKind::Heartbeat`] datagram sealed under the park key
    /// with a fresh counter. Answered by `Resumed` (then the messages that waited) or by
    /// `Error { code: NotAuthenticated }` (say `Hello` instead).
    Resume {
        token: ParkToken,
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    } = 11,
}

/// Supernode → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum SupernodeToClient {
    /// The client is homed here.
    Welcome {
        version: u16,
        supernode: PublicKey,
        /// Keep-alive the supernode expects, at most this many seconds apart.
        keepalive_secs: u16,
        /// Other supernodes, to refresh the host cache.
        host_cache: Vec<SupernodeContact>,
    } = 0,
    /// Over capacity: try one of these instead.
    Busy { alternatives: Vec<SupernodeContact> } = 1,
    /// Answers `Ping`; `load_percent` is clients over capacity.
    Pong { nonce: u64, load_percent: u8 } = 2,
    /// A watched contact's presence as this client may see it (never `Invisible`).
    PresenceChanged { user: UserName, presence: Presence } = 3,
    /// Answers `Search`.
    SearchResults {
        query_id: u32,
        source: SearchSource,
        hits: Vec<SearchHit>,
    } = 4,
    /// A search that could not be answered.
    SearchFailed { query_id: u32, error: SearchError } = 5,
    /// A payload routed to this device.
    Routed {
        from: UserName,
        from_device: PublicKey,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    } = 6,
    /// What became of the client's `Route` with this `id`.
    RouteStatus { id: u64, outcome: RouteOutcome } = 7,
    /// Answers `HostCacheRequest`.
    HostCache { supernodes: Vec<SupernodeContact> } = 8,
    /// A protocol error; see [`ErrorCode`] for which ones end the session.
    Error { code: ErrorCode } = 9,
    /// The supernode ends the session.
    Goodbye { reason: GoodbyeReason } = 10,
    /// TURN REST-style credentials (`username` = `"<expiry>:<user>"`, `password` =
    /// base64(HMAC-SHA1(secret, username))) for the listed `turn:`/`stun:` URLs; the shape of
    /// a WebRTC ICE server entry.
    TurnCredentials {
        urls: Vec<String>,
        username: String,
        password: String,
        ttl_s: u32,
    } = 11,
    /// The session has been idle: the client may park it ([`crate::park`]) by answering
    /// `ParkAccept` with this token. A client that does not support parking ignores it.
    ParkOffer { token: ParkToken } = 12,
    /// The session is parked: the last message on this connection, which the supernode
    /// then closes. What arrives for the client waits and is announced by a wake datagram.
    Parked { token: ParkToken } = 13,
    /// Answers `Resume`: this connection carries the session again; messages that waited
    /// follow.
    Resumed = 14,
}

/// One device of a user, as its home supernode publishes it to the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub credential: SignedCredential,
    pub home: SupernodeContact,
    /// The device's true presence (may be `Invisible`; the mesh hides it).
    pub presence: Presence,
}

/// What the mesh knows of one user, as answered to a lookup for a given viewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshRecord {
    pub user: UserName,
    pub display_name: DisplayName,
    pub credential: SignedCredential,
    /// Homes of the user's visible devices (empty when the user is invisible to everyone).
    pub homes: Vec<(PublicKey, SupernodeContact)>,
    /// Homes of all devices, including invisible ones: for routing only, never shown.
    pub route_homes: Vec<(PublicKey, SupernodeContact)>,
    /// The user's presence as the viewer may see it.
    pub presence: Presence,
}

/// Supernode → supernode (the mesh).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum SupernodeToSupernode {
    /// Opens a mesh link; the peer's TLS key must be in the signed directory.
    Hello { version: u16 } = 0,
    /// A home supernode stores a device's full record at a supernode responsible for the
    /// user, with the user's authorised contacts. `seq` orders updates from one home.
    PublishRecord {
        user: UserName,
        device: PublicKey,
        seq: u64,
        record: DeviceRecord,
        authorized: Vec<UserName>,
    } = 1,
    /// A presence change of a published device.
    PublishPresence {
        user: UserName,
        device: PublicKey,
        seq: u64,
        presence: Presence,
    } = 2,
    /// The device left this home (logged off, vanished, or re-homed elsewhere).
    Unpublish {
        user: UserName,
        device: PublicKey,
        seq: u64,
    } = 3,
    /// The sender homes `watcher` and wants `target`'s presence pushed to it.
    Subscribe { pairs: Vec<(UserName, UserName)> } = 4,
    /// Cancels `Subscribe` pairs.
    Unsubscribe { pairs: Vec<(UserName, UserName)> } = 5,
    /// `target`'s presence for the listed watchers homed at the receiver.
    PresenceNotify {
        target: UserName,
        presence: Presence,
        watchers: Vec<UserName>,
    } = 6,
    /// Where is `user`? `viewer` decides which presence may be answered.
    Lookup {
        query_id: u64,
        user: UserName,
        viewer: UserName,
    } = 7,
    /// Answers `Lookup`; `None` when the user is not online in the mesh.
    LookupResult {
        query_id: u64,
        record: Option<MeshRecord>,
    } = 8,
    /// Cached answers about `user` are stale (moved or went offline).
    Invalidate { user: UserName } = 9,
    /// A routed payload for a user homed at (or located through) the receiver.
    Route {
        id: u64,
        from: UserName,
        from_device: PublicKey,
        to: UserName,
        to_device: Option<PublicKey>,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    } = 10,
    /// What became of `Route` with this `id`.
    RouteAck { id: u64, outcome: RouteOutcome } = 11,
    /// The sender leaves the mesh (shutting down).
    Goodbye = 12,
    /// A typed error about a message from the receiver.
    Error { code: ErrorCode } = 13,
}

pub use crate::kind::DecodeError;

impl DecodeError {
    /// The error to send back to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownKind(kind) => ErrorCode::UnknownMessage { kind: *kind },
            Self::Malformed(_) => ErrorCode::Malformed,
        }
    }
}

wire_kinds!(
    ClientToSupernode,
    12,
    [
        Hello,
        Ping,
        SetPresence,
        SetAuthorized,
        Watch,
        Search,
        Route,
        HostCacheRequest,
        Goodbye,
        TurnCredentialsRequest,
        ParkAccept,
        Resume
    ]
);
wire_kinds!(
    SupernodeToClient,
    15,
    [
        Welcome,
        Busy,
        Pong,
        PresenceChanged,
        SearchResults,
        SearchFailed,
        Routed,
        RouteStatus,
        HostCache,
        Error,
        Goodbye,
        TurnCredentials,
        ParkOffer,
        Parked,
        Resumed
    ]
);
wire_kinds!(
    SupernodeToSupernode,
    14,
    [
        Hello,
        PublishRecord,
        PublishPresence,
        Unpublish,
        Subscribe,
        Unsubscribe,
        PresenceNotify,
        Lookup,
        LookupResult,
        Invalidate,
        Route,
        RouteAck,
        Goodbye,
        Error
    ]
);

/// Feeds arbitrary bytes to every decoder of this module; the fuzz target and the
/// random-bytes test call it. Never panics.
pub fn fuzz_decode(bytes: &[u8]) {
    let _ = ClientToSupernode::decode(bytes);
    let _ = SupernodeToClient::decode(bytes);
    let _ = SupernodeToSupernode::decode(bytes);
    let mut decoder = crate::frame::FrameDecoder::new(crate::frame::DEFAULT_MAX_FRAME);
    // One push of the whole input is always within the decoder's limit.
    let _ = decoder.push(bytes);
    while let Ok(Some(body)) = decoder.next_frame() {
        let _ = ClientToSupernode::decode(&body);
        let _ = SupernodeToSupernode::decode(&body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Credential;
    use crate::keys::SecretKey;
    use proptest::prelude::*;

    fn credential() -> SignedCredential {
        let authority = SecretKey::from_bytes(&[1; 32]);
        let device = SecretKey::from_bytes(&[2; 32]);
        SignedCredential::issue(
            &Credential {
                serial: 1,
                user: user("alice"),
                display_name: DisplayName::new("Alice").expect("valid"),
                device_key: device.public(),
                issued_at: UnixTime::from_secs(100),
                expires_at: UnixTime::from_secs(200),
            },
            &authority,
        )
    }

    fn user(name: &str) -> UserName {
        UserName::new(name).expect("valid")
    }

    fn key() -> PublicKey {
        SecretKey::from_bytes(&[3; 32]).public()
    }

    fn contact() -> SupernodeContact {
        SupernodeContact {
            key: key(),
            addr: "192.0.2.1:7500".parse().expect("addr"),
        }
    }

    fn presence() -> Presence {
        Presence {
            status: PresenceStatus::Away,
            message: StatusMessage::new("lunch").expect("valid"),
        }
    }

    fn client_samples() -> Vec<(u8, ClientToSupernode)> {
        vec![
            (
                0,
                ClientToSupernode::Hello {
                    version: crate::PROTOCOL_VERSION,
                    credential: credential(),
                    presence: presence(),
                },
            ),
            (1, ClientToSupernode::Ping { nonce: 9 }),
            (
                2,
                ClientToSupernode::SetPresence {
                    presence: presence(),
                },
            ),
            (
                3,
                ClientToSupernode::SetAuthorized {
                    contacts: vec![user("bob")],
                },
            ),
            (
                4,
                ClientToSupernode::Watch {
                    contacts: vec![user("bob")],
                },
            ),
            (
                5,
                ClientToSupernode::Search {
                    query_id: 1,
                    query: SearchQuery::Exact(user("bob")),
                },
            ),
            (
                6,
                ClientToSupernode::Route {
                    id: 1,
                    to: user("bob"),
                    to_device: Some(key()),
                    payload: vec![1, 2, 3],
                },
            ),
            (7, ClientToSupernode::HostCacheRequest),
            (8, ClientToSupernode::Goodbye),
            (9, ClientToSupernode::TurnCredentialsRequest),
            (
                10,
                ClientToSupernode::ParkAccept {
                    token: ParkToken([1; 16]),
                },
            ),
            (
                11,
                ClientToSupernode::Resume {
                    token: ParkToken([1; 16]),
                    proof: vec![0x0c; 42],
                },
            ),
        ]
    }

    fn hit() -> SearchHit {
        SearchHit {
            user: user("alice"),
            display_name: DisplayName::new("Alice").expect("valid"),
            credential: Some(credential()),
            home: Some(contact()),
            presence: presence(),
            last_seen: Some(UnixTime::from_secs(5)),
        }
    }

    fn supernode_to_client_samples() -> Vec<(u8, SupernodeToClient)> {
        vec![
            (
                0,
                SupernodeToClient::Welcome {
                    version: 1,
                    supernode: key(),
                    keepalive_secs: 25,
                    host_cache: vec![contact()],
                },
            ),
            (
                1,
                SupernodeToClient::Busy {
                    alternatives: vec![contact()],
                },
            ),
            (
                2,
                SupernodeToClient::Pong {
                    nonce: 1,
                    load_percent: 50,
                },
            ),
            (
                3,
                SupernodeToClient::PresenceChanged {
                    user: user("bob"),
                    presence: presence(),
                },
            ),
            (
                4,
                SupernodeToClient::SearchResults {
                    query_id: 1,
                    source: SearchSource::Mesh,
                    hits: vec![hit()],
                },
            ),
            (
                5,
                SupernodeToClient::SearchFailed {
                    query_id: 1,
                    error: SearchError::RateLimited {
                        retry_after_millis: 10,
                    },
                },
            ),
            (
                6,
                SupernodeToClient::Routed {
                    from: user("bob"),
                    from_device: key(),
                    payload: vec![7],
                },
            ),
            (
                7,
                SupernodeToClient::RouteStatus {
                    id: 1,
                    outcome: RouteOutcome::Delivered,
                },
            ),
            (
                8,
                SupernodeToClient::HostCache {
                    supernodes: vec![contact()],
                },
            ),
            (
                9,
                SupernodeToClient::Error {
                    code: ErrorCode::UnknownMessage { kind: 99 },
                },
            ),
            (
                10,
                SupernodeToClient::Goodbye {
                    reason: GoodbyeReason::ShuttingDown,
                },
            ),
            (
                11,
                SupernodeToClient::TurnCredentials {
                    urls: vec!["turn:192.0.2.1:3478?transport=udp".into()],
                    username: "1800000600:alice".into(),
                    password: "c2VjcmV0".into(),
                    ttl_s: 600,
                },
            ),
            (
                12,
                SupernodeToClient::ParkOffer {
                    token: ParkToken([2; 16]),
                },
            ),
            (
                13,
                SupernodeToClient::Parked {
                    token: ParkToken([2; 16]),
                },
            ),
            (14, SupernodeToClient::Resumed),
        ]
    }

    fn mesh_samples() -> Vec<(u8, SupernodeToSupernode)> {
        let record = DeviceRecord {
            credential: credential(),
            home: contact(),
            presence: presence(),
        };
        vec![
            (0, SupernodeToSupernode::Hello { version: 1 }),
            (
                1,
                SupernodeToSupernode::PublishRecord {
                    user: user("alice"),
                    device: key(),
                    seq: 1,
                    record,
                    authorized: vec![user("bob")],
                },
            ),
            (
                2,
                SupernodeToSupernode::PublishPresence {
                    user: user("alice"),
                    device: key(),
                    seq: 2,
                    presence: presence(),
                },
            ),
            (
                3,
                SupernodeToSupernode::Unpublish {
                    user: user("alice"),
                    device: key(),
                    seq: 3,
                },
            ),
            (
                4,
                SupernodeToSupernode::Subscribe {
                    pairs: vec![(user("bob"), user("alice"))],
                },
            ),
            (
                5,
                SupernodeToSupernode::Unsubscribe {
                    pairs: vec![(user("bob"), user("alice"))],
                },
            ),
            (
                6,
                SupernodeToSupernode::PresenceNotify {
                    target: user("alice"),
                    presence: presence(),
                    watchers: vec![user("bob")],
                },
            ),
            (
                7,
                SupernodeToSupernode::Lookup {
                    query_id: 1,
                    user: user("alice"),
                    viewer: user("bob"),
                },
            ),
            (
                8,
                SupernodeToSupernode::LookupResult {
                    query_id: 1,
                    record: Some(MeshRecord {
                        user: user("alice"),
                        display_name: DisplayName::new("Alice").expect("valid"),
                        credential: credential(),
                        homes: vec![(key(), contact())],
                        route_homes: vec![(key(), contact())],
                        presence: presence(),
                    }),
                },
            ),
            (
                9,
                SupernodeToSupernode::Invalidate {
                    user: user("alice"),
                },
            ),
            (
                10,
                SupernodeToSupernode::Route {
                    id: 1,
                    from: user("bob"),
                    from_device: key(),
                    to: user("alice"),
                    to_device: None,
                    payload: vec![1],
                },
            ),
            (
                11,
                SupernodeToSupernode::RouteAck {
                    id: 1,
                    outcome: RouteOutcome::Offline,
                },
            ),
            (12, SupernodeToSupernode::Goodbye),
            (
                13,
                SupernodeToSupernode::Error {
                    code: ErrorCode::NotAdmitted,
                },
            ),
        ]
    }

    fn check_pinned<T>(samples: Vec<(u8, T)>, kinds: u32)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug,
    {
        assert_eq!(samples.len() as u32, kinds, "one sample per kind");
        for (index, (kind, message)) in samples.into_iter().enumerate() {
            assert_eq!(usize::from(kind), index, "samples in discriminant order");
            let bytes = postcard::to_allocvec(&message).expect("encode");
            assert_eq!(bytes[0], kind, "wire kind of {message:?}");
            let back: T = crate::frame::decode_body(&bytes).expect("decode");
            assert_eq!(back, message);
        }
    }

    #[test]
    fn wire_kinds_are_pinned_to_their_discriminants() {
        check_pinned(client_samples(), ClientToSupernode::KINDS);
        check_pinned(supernode_to_client_samples(), SupernodeToClient::KINDS);
        check_pinned(mesh_samples(), SupernodeToSupernode::KINDS);
    }

    #[test]
    fn nested_enums_keep_their_indices() {
        let statuses = [
            PresenceStatus::Online,
            PresenceStatus::Away,
            PresenceStatus::Busy,
            PresenceStatus::Invisible,
            PresenceStatus::Offline,
        ];
        for status in statuses {
            let bytes = postcard::to_allocvec(&status).expect("encode");
            assert_eq!(bytes, vec![status as u8]);
        }
        for (i, outcome) in [
            RouteOutcome::Delivered,
            RouteOutcome::Offline,
            RouteOutcome::RateLimited,
            RouteOutcome::Unreachable,
            RouteOutcome::TooLarge,
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(postcard::to_allocvec(&outcome).expect("encode")[0], i as u8);
        }
    }

    #[test]
    fn unknown_kinds_get_a_typed_error() {
        let body = postcard::to_allocvec(&(200u32, 5u8)).expect("encode");
        let err = ClientToSupernode::decode(&body).expect_err("unknown");
        assert_eq!(err, DecodeError::UnknownKind(200));
        assert_eq!(err.code(), ErrorCode::UnknownMessage { kind: 200 });
        let err = SupernodeToSupernode::decode(&[14]).expect_err("unknown");
        assert_eq!(err, DecodeError::UnknownKind(14));
        assert!(matches!(
            ClientToSupernode::decode(&[1]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn frames_round_trip() {
        for (_, message) in client_samples() {
            let frame = message.encode_frame().expect("encode");
            let back =
                ClientToSupernode::decode(&frame[crate::frame::HEADER_LEN..]).expect("decode");
            assert_eq!(back, message);
            assert_eq!(back.name(), message.name());
        }
    }

    #[test]
    fn invisible_looks_offline_to_others() {
        let invisible = Presence {
            status: PresenceStatus::Invisible,
            message: StatusMessage::new("secret").expect("valid"),
        };
        assert_eq!(invisible.as_seen_by_others(), Presence::offline());
        assert_eq!(presence().as_seen_by_others(), presence());
    }

    #[test]
    fn text_fields_are_validated_when_decoded() {
        let long = postcard::to_allocvec(&"x".repeat(129)).expect("encode");
        assert!(postcard::from_bytes::<StatusMessage>(&long).is_err());
        let control = postcard::to_allocvec(&"a\u{7}".to_string()).expect("encode");
        assert!(postcard::from_bytes::<StatusMessage>(&control).is_err());
        let empty = postcard::to_allocvec(&String::new()).expect("encode");
        assert!(postcard::from_bytes::<SearchPrefix>(&empty).is_err());
        assert_eq!(SearchPrefix::new("AlIcE").expect("valid").folded(), "alice");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            fuzz_decode(&bytes);
        }

        #[test]
        fn corrupted_messages_never_panic(index in 0usize..10, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let (_, message) = client_samples().swap_remove(index);
            let mut bytes = postcard::to_allocvec(&message).expect("encode");
            for (at, xor) in flips {
                let at = at % bytes.len();
                bytes[at] ^= xor;
            }
            fuzz_decode(&bytes);
            let _ = SupernodeToClient::decode(&bytes);
        }
    }
}
