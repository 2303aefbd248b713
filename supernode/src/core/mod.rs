//! The supernode's protocol logic: client sessions, presence, search and routing over the
//! mesh. Sans-IO: it never touches a socket and never reads the clock.
//!
//! After every `handle_*` call, drain [`Supernode::poll_command`] until `None`, then arm a
//! timer for [`Supernode::poll_timeout`] and call [`Supernode::handle_timeout`] when it fires.
//!
//! # The mesh
//! Every supernode holds the signed directory, so the admitted supernodes form a one-hop DHT
//! by rendezvous hashing ([`ring`]): the record "user U's devices are homed at S, with this
//! credential, this presence and these authorised contacts" lives at the [`Config::replicas`]
//! supernodes responsible for U. An exact-name search costs one round trip to the first
//! responsible supernode (a second on timeout), whatever the mesh size; users the mesh does
//! not know are looked up at the login server. Answers are cached with a TTL at the
//! supernode that asked, and the responsible supernodes tell those cachers when the record
//! changes.
//!
//! Presence: a watcher's home subscribes at the responsible supernodes of each watched user;
//! they push changes (only to authorised watchers, invisible shown as offline) to the
//! watchers' homes, which pass on only real changes to the clients.
//!
//! Parked sessions ([`proto::park`]): a homed client idle for [`Config::park_after`] is
//! offered parking. Once parked, its QUIC connection closes but its session stays here
//! (online, homed, searchable); sealed heartbeat datagrams keep it alive, whatever arrives
//! for it waits in a bounded queue announced by wake datagrams (retried with backoff), and
//! a new connection resumes it with `Resume`. The shell hands each QUIC connection's
//! exported park key to [`Supernode::handle_client_park_link`] and park datagrams to
//! [`Supernode::handle_park_datagram`].
//!
//! What it does not do: TLS, key checks of mesh peers (the shell admits only directory
//! members), the login-server protocol, STUN/TURN.

pub mod limits;
pub mod ring;
#[cfg(feature = "test-tamper")]
pub mod tamper;

use limits::{TokenBucket, TtlCache};
use proto::directory::Directory;
use proto::login::UserInfo;
use proto::park::{self, ParkDirection, ParkKey, ParkKind, ParkToken, ReplayWindow};
use proto::supernode::{
    ClientToSupernode, DeviceRecord, ErrorCode, GoodbyeReason, MAX_BUSY_ALTERNATIVES, MAX_CONTACTS,
    MAX_DEVICES_PER_USER, MAX_HOST_CACHE_ANSWER, MAX_ROUTE_PAYLOAD, MAX_SEARCH_HITS,
    MAX_SUBSCRIPTION_PAIRS, MeshRecord, Presence, PresenceStatus, RouteOutcome, SearchError,
    SearchHit, SearchQuery, SearchSource, SupernodeContact, SupernodeToClient,
    SupernodeToSupernode,
};
use proto::{PublicKey, SignedCredential, UnixTime, UserName};
use rand::RngExt as _;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Messages that wait for one parked client; beyond this the oldest presence change (else
/// the oldest message) is dropped.
pub const PARK_QUEUE: usize = 64;

/// How often every session is visited for its timers (idle, credential expiry, parking
/// offers); at least [`Config::tick`].
const SESSION_SWEEP: Duration = Duration::from_secs(1);

/// A client connection, numbered by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

/// Tunables; the defaults suit production.
#[derive(Debug, Clone)]
pub struct Config {
    /// Sessions above this get `Busy` with alternatives.
    pub max_clients: usize,
    /// The keep-alive interval announced to clients (at most 25 s: NAT mappings).
    pub keepalive_secs: u16,
    /// A client silent this long is dropped (and shown offline).
    pub client_timeout: Duration,
    /// A connection that has not said `Hello` within this is closed.
    pub hello_timeout: Duration,
    /// How many supernodes hold each user's record.
    pub replicas: usize,
    /// How long answers stay in the result cache.
    pub cache_ttl: Duration,
    /// How long login-server answers stay in the result cache.
    pub login_cache_ttl: Duration,
    /// The most cached answers (exact and prefix together).
    pub cache_capacity: usize,
    /// How long to wait for one responsible supernode before trying the next.
    pub lookup_timeout: Duration,
    /// How long to wait for the login server.
    pub login_timeout: Duration,
    /// How long to wait for a routed message's acknowledgement.
    pub route_timeout: Duration,
    /// The most user records this supernode stores for the mesh.
    pub max_records: usize,
    /// The most watchers subscribed to one user.
    pub max_subscribers_per_user: usize,
    /// The most supernodes remembered as cachers of one record.
    pub max_cachers_per_record: usize,
    /// The most lookups, login requests and routes in flight.
    pub max_pending: usize,
    /// Searches per client: burst and refill per second.
    pub search_burst: u32,
    pub searches_per_sec: f64,
    /// Routed messages per client.
    pub route_burst: u32,
    pub routes_per_sec: f64,
    /// Presence and contact-list updates per client.
    pub update_burst: u32,
    pub updates_per_sec: f64,
    /// How long a mesh peer that could not be reached is skipped.
    pub unreachable_backoff: Duration,
    /// The timer granularity for timeouts.
    pub tick: Duration,
    /// The TURN relay clients may get credentials for, when this supernode runs one.
    pub turn: Option<TurnService>,
    /// A session with no application message either way for this long is offered parking
    /// (its QUIC connection closes; see the module docs). Zero: never.
    pub park_after: Duration,
    /// The first wake datagram is repeated after this, then at doubling intervals.
    pub wake_retry: Duration,
    /// A parked client that has not resumed this long after the first wake is dropped.
    pub wake_deadline: Duration,
    /// Test-only: a hook that makes this supernode malicious ([`tamper`]).
    #[cfg(feature = "test-tamper")]
    pub tamper: Option<tamper::TamperHook>,
}

/// The TURN relay this supernode runs, for minting REST-style credentials.
#[derive(Clone)]
pub struct TurnService {
    /// Shared with the relay; never sent anywhere.
    pub shared_secret: Vec<u8>,
    /// `turn:` and `stun:` URLs clients use.
    pub urls: Vec<String>,
    pub ttl: Duration,
}

impl std::fmt::Debug for TurnService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnService")
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_clients: 20_000,
            keepalive_secs: 25,
            client_timeout: Duration::from_secs(55),
            hello_timeout: Duration::from_secs(30),
            replicas: 2,
            cache_ttl: Duration::from_secs(60),
            login_cache_ttl: Duration::from_secs(30),
            cache_capacity: 50_000,
            lookup_timeout: Duration::from_millis(1500),
            login_timeout: Duration::from_secs(5),
            route_timeout: Duration::from_secs(5),
            max_records: 500_000,
            max_subscribers_per_user: 2_000,
            max_cachers_per_record: 64,
            max_pending: 10_000,
            search_burst: 20,
            searches_per_sec: 2.0,
            route_burst: 100,
            routes_per_sec: 50.0,
            update_burst: 20,
            updates_per_sec: 2.0,
            unreachable_backoff: Duration::from_secs(30),
            tick: Duration::from_millis(250),
            turn: None,
            park_after: Duration::from_secs(45),
            wake_retry: Duration::from_millis(500),
            wake_deadline: Duration::from_secs(20),
            #[cfg(feature = "test-tamper")]
            tamper: None,
        }
    }
}

/// An effect the shell performs for the core.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // Commands are drained at once, never stored in bulk.
pub enum Command {
    SendToClient {
        client: ClientId,
        message: SupernodeToClient,
    },
    /// Close the connection after sending what was queued before this command.
    CloseClient { client: ClientId },
    SendToSupernode {
        to: SupernodeContact,
        message: SupernodeToSupernode,
    },
    /// Ask the login server about one user; answer with [`Supernode::handle_login_user`]
    /// or [`Supernode::handle_login_failed`].
    LookupAtLoginServer { request_id: u64, user: UserName },
    /// Ask the login server for display-name prefix matches; answer with
    /// [`Supernode::handle_login_users`] or [`Supernode::handle_login_failed`].
    SearchAtLoginServer {
        request_id: u64,
        prefix: String,
        limit: u16,
    },
    /// Tell the login server this credential's holder is homed here (fire and forget).
    ReportHomed { credential: SignedCredential },
    /// The client's session is parked: close its connection once what was queued before
    /// this command (its `Parked`) is sent. Its session stays in the core.
    ParkClient { client: ClientId },
    /// Send a park datagram from the QUIC socket.
    SendDatagram { to: SocketAddr, datagram: Vec<u8> },
}

/// Counters for metrics and benchmarks; all monotonic except the gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Gauge: open client connections.
    pub clients: usize,
    /// Gauge: homed sessions.
    pub sessions: usize,
    /// Gauge: sessions parked (homed, no connection open).
    pub parked: usize,
    /// Park datagrams refused (forged, replayed, unknown session).
    pub park_refused: u64,
    /// Wake datagrams sent (first tries and retries).
    pub wakes: u64,
    /// Parking offers sent.
    pub park_offers: u64,
    /// Gauge: user records stored for the mesh.
    pub records: usize,
    /// Gauge: cached answers.
    pub cache_entries: usize,
    pub searches: u64,
    pub searches_local: u64,
    pub searches_cached: u64,
    pub searches_mesh: u64,
    pub searches_login: u64,
    pub searches_failed: u64,
    pub searches_rate_limited: u64,
    /// Mesh and login-server messages (requests and answers) caused by searches.
    pub search_messages: u64,
    /// `PresenceNotify` messages sent.
    pub presence_notifies: u64,
    /// Watchers reached by those notifies.
    pub presence_fanout: u64,
    /// `PresenceChanged` messages sent to clients.
    pub presence_deliveries: u64,
    pub busy_answers: u64,
    pub routes: u64,
    pub mesh_messages_in: u64,
    pub mesh_messages_out: u64,
    pub shed: u64,
}

struct Session {
    user: UserName,
    credential: SignedCredential,
    serial: u64,
    expires_at: UnixTime,
    presence: Presence,
    authorized: Vec<UserName>,
    watch: BTreeSet<UserName>,
    /// What this client was last told about each watched contact.
    seen: BTreeMap<UserName, Presence>,
}

/// What a live connection needs to be parked: its exported key and the client's address.
struct ParkLink {
    key: ParkKey,
    addr: SocketAddr,
}

enum ParkState {
    /// Not parkable (TCP, or a shell that does not park).
    Unavailable,
    Ready(Box<ParkLink>),
    Offered {
        link: Box<ParkLink>,
        token: ParkToken,
    },
    Parked(Box<Parked>),
}

struct Parked {
    token: ParkToken,
    key: ParkKey,
    /// Where the last authentic heartbeat came from (the client's NAT binding).
    addr: SocketAddr,
    rx: ReplayWindow,
    tx_counter: u64,
    queue: VecDeque<SupernodeToClient>,
    wake: Option<Wake>,
}

struct Wake {
    /// `None` until the first tick after the first wake was sent.
    next_at: Option<Instant>,
    interval: Duration,
    deadline: Option<Instant>,
}

impl Parked {
    fn seal(&mut self, kind: ParkKind) -> Vec<u8> {
        self.tx_counter += 1;
        park::seal(&self.key, kind, self.token, self.tx_counter)
    }
}

struct Conn {
    device: PublicKey,
    connected_at: Instant,
    last_rx: Instant,
    /// The last application message either way (not pings): parking's idle clock.
    last_app: Instant,
    /// An application message was sent since the last tick (which then moves `last_app`).
    app_sent: bool,
    park: ParkState,
    session: Option<Session>,
    searches: TokenBucket,
    routes: TokenBucket,
    updates: TokenBucket,
}

struct StoredDevice {
    record: DeviceRecord,
    seq: u64,
}

struct Subscriber {
    home: PublicKey,
    last: Presence,
}

/// A user record held for the mesh by a responsible supernode.
struct UserRecord {
    /// Boxed: a B-tree leaf holds room for eleven values, so one device inline would cost
    /// eleven records' worth of memory for every user.
    devices: BTreeMap<PublicKey, Box<StoredDevice>>,
    authorized: BTreeSet<UserName>,
    subscribers: BTreeMap<UserName, Subscriber>,
    cachers: BTreeMap<PublicKey, Instant>,
}

impl UserRecord {
    fn new() -> Self {
        Self {
            devices: BTreeMap::new(),
            authorized: BTreeSet::new(),
            subscribers: BTreeMap::new(),
            cachers: BTreeMap::new(),
        }
    }

    /// What `viewer` may see: offline unless authorised; the most available device wins.
    fn presence_for(&self, viewer: &UserName) -> Presence {
        if !self.authorized.contains(viewer) {
            return Presence::offline();
        }
        self.devices
            .values()
            .map(|d| d.record.presence.as_seen_by_others())
            .max_by_key(|p| p.status.availability_rank())
            .filter(|p| p.status != PresenceStatus::Offline)
            .unwrap_or_else(Presence::offline)
    }

    fn newest_credential(&self) -> Option<&SignedCredential> {
        self.devices
            .values()
            .max_by_key(|d| d.seq)
            .map(|d| &d.record.credential)
    }
}

#[derive(Clone)]
struct CachedRecord {
    record: MeshRecord,
    source: SearchSource,
    last_seen: Option<UnixTime>,
    /// The viewer the record's presence was computed for.
    viewer: UserName,
}

enum Waiter {
    Search {
        client: ClientId,
        query_id: u32,
        viewer: UserName,
    },
    Route {
        origin: RouteOrigin,
        from: UserName,
        from_device: PublicKey,
        to_device: Option<PublicKey>,
        payload: Vec<u8>,
    },
}

#[derive(Clone, Copy)]
enum RouteOrigin {
    Client { client: ClientId, id: u64 },
}

struct PendingLookup {
    user: UserName,
    viewer: UserName,
    /// Responsible supernodes not yet asked, best first.
    remaining: Vec<PublicKey>,
    asked: Option<PublicKey>,
    deadline: Instant,
    waiters: Vec<Waiter>,
}

enum LoginWaiter {
    Exact(Vec<Waiter>, UserName),
    Prefix {
        client: ClientId,
        query_id: u32,
        prefix: String,
        viewer: UserName,
    },
}

struct PendingLogin {
    deadline: Instant,
    waiter: LoginWaiter,
}

struct PendingRoute {
    origin: RouteOrigin,
    deadline: Instant,
    outstanding: usize,
    delivered: bool,
}

/// The supernode core. See the module docs.
pub struct Supernode {
    config: Config,
    me: SupernodeContact,
    authority: PublicKey,
    epoch: Instant,
    epoch_wall_millis: u64,
    rng: StdRng,
    members: BTreeMap<PublicKey, SupernodeContact>,
    unreachable: HashMap<PublicKey, Instant>,
    revoked: BTreeSet<u64>,
    conns: HashMap<ClientId, Conn>,
    homed: HashMap<UserName, BTreeMap<PublicKey, ClientId>>,
    /// Entries in `homed`, kept so that every `Ping` answer need not count them.
    sessions: usize,
    /// Parked sessions by token.
    parked: HashMap<ParkToken, ClientId>,
    records: HashMap<UserName, UserRecord>,
    cache: TtlCache<UserName, CachedRecord>,
    prefix_cache: TtlCache<String, Vec<UserInfo>>,
    lookups: HashMap<u64, PendingLookup>,
    lookup_by_key: HashMap<(UserName, UserName), u64>,
    logins: HashMap<u64, PendingLogin>,
    routes: HashMap<u64, PendingRoute>,
    next_id: u64,
    seq_counter: u64,
    next_tick: Instant,
    /// When the sessions are next visited for idle, expired, offer and wake timers.
    next_sweep: Instant,
    /// A wake is being retried: visit the sessions at every tick.
    sweep_every_tick: bool,
    commands: VecDeque<Command>,
    stats: Stats,
}

impl Supernode {
    /// A core for the supernode `me`, trusting credentials signed by `authority`. `now` and
    /// `wall` are read once by the shell: the core derives wall time from them.
    pub fn new(
        config: Config,
        me: SupernodeContact,
        authority: PublicKey,
        now: Instant,
        wall: UnixTime,
        seed: u64,
    ) -> Self {
        let cache_capacity = config.cache_capacity;
        let mut members = BTreeMap::new();
        members.insert(me.key, me);
        Self {
            next_tick: now + config.tick,
            next_sweep: now + config.tick,
            sweep_every_tick: false,
            config,
            me,
            authority,
            epoch: now,
            epoch_wall_millis: wall.as_secs().saturating_mul(1000),
            rng: StdRng::seed_from_u64(seed),
            members,
            unreachable: HashMap::new(),
            revoked: BTreeSet::new(),
            conns: HashMap::new(),
            homed: HashMap::new(),
            sessions: 0,
            parked: HashMap::new(),
            records: HashMap::new(),
            cache: TtlCache::new(cache_capacity),
            prefix_cache: TtlCache::new(cache_capacity / 4),
            lookups: HashMap::new(),
            lookup_by_key: HashMap::new(),
            logins: HashMap::new(),
            routes: HashMap::new(),
            next_id: 1,
            seq_counter: 0,
            commands: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn me(&self) -> SupernodeContact {
        self.me
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.clients = self.conns.len();
        stats.sessions = self.session_count();
        stats.parked = self.parked.len();
        stats.records = self.records.len();
        stats.cache_entries = self.cache.len() + self.prefix_cache.len();
        stats
    }

    /// The supernodes in the current directory (including this one).
    pub fn members(&self) -> impl Iterator<Item = &SupernodeContact> {
        self.members.values()
    }

    /// Whether `user` has a session here.
    pub fn homes(&self, user: &UserName) -> bool {
        self.homed.contains_key(user)
    }

    fn session_count(&self) -> usize {
        debug_assert_eq!(
            self.sessions,
            self.homed.values().map(BTreeMap::len).sum::<usize>()
        );
        self.sessions
    }

    fn wall(&self, now: Instant) -> UnixTime {
        UnixTime::from_secs(self.wall_millis(now) / 1000)
    }

    fn wall_millis(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch).as_millis();
        self.epoch_wall_millis
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    /// A sequence number that orders updates from any home: wall-clock milliseconds, made
    /// strictly increasing here.
    fn next_seq(&mut self, now: Instant) -> u64 {
        self.seq_counter = (self.wall_millis(now) << 10).max(self.seq_counter + 1);
        self.seq_counter
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn send_client(&mut self, client: ClientId, message: SupernodeToClient) {
        #[cfg(feature = "test-tamper")]
        let mut message = message;
        #[cfg(feature = "test-tamper")]
        if let Some(hook) = &self.config.tamper
            && let Some(conn) = self.conns.get(&client)
            && !hook.0.to_client(&conn.device, &mut message)
        {
            return;
        }
        if matches!(message, SupernodeToClient::PresenceChanged { .. }) {
            self.stats.presence_deliveries += 1;
        }
        let Some(conn) = self.conns.get_mut(&client) else {
            self.commands
                .push_back(Command::SendToClient { client, message });
            return;
        };
        if !matches!(
            message,
            SupernodeToClient::Pong { .. } | SupernodeToClient::ParkOffer { .. }
        ) {
            conn.app_sent = true;
        }
        if let ParkState::Parked(parked) = &mut conn.park {
            queue_for_parked(&mut parked.queue, message);
            if parked.wake.is_none() {
                parked.wake = Some(Wake {
                    next_at: None,
                    interval: self.config.wake_retry,
                    deadline: None,
                });
                let datagram = parked.seal(ParkKind::Wake);
                let to = parked.addr;
                self.stats.wakes += 1;
                self.sweep_every_tick = true;
                self.commands
                    .push_back(Command::SendDatagram { to, datagram });
            }
            return;
        }
        self.commands
            .push_back(Command::SendToClient { client, message });
    }

    fn send_mesh(&mut self, to: PublicKey, message: SupernodeToSupernode) {
        if to == self.me.key {
            return;
        }
        let Some(contact) = self.members.get(&to).copied() else {
            return;
        };
        self.stats.mesh_messages_out += 1;
        if matches!(message, SupernodeToSupernode::PresenceNotify { .. }) {
            self.stats.presence_notifies += 1;
        }
        self.commands.push_back(Command::SendToSupernode {
            to: contact,
            message,
        });
    }

    fn responsible(&self, user: &UserName) -> Vec<PublicKey> {
        ring::responsible(self.members.keys(), user, self.config.replicas)
    }

    fn is_reachable(&self, now: Instant, key: &PublicKey) -> bool {
        self.unreachable.get(key).is_none_or(|until| *until <= now)
    }

    // ---------------------------------------------------------------- directory ------

    /// A newly verified directory. Re-publishes records and subscriptions whose responsible
    /// supernodes changed and forgets what this supernode is no longer responsible for.
    pub fn handle_directory(&mut self, now: Instant, directory: &Directory) {
        let members: Vec<SupernodeContact> = directory
            .entries
            .iter()
            .map(|e| SupernodeContact {
                key: e.key,
                addr: e.addrs.quic,
            })
            .collect();
        self.handle_members(now, members);
    }

    /// As [`Self::handle_directory`], from a plain member list (simulations).
    pub fn handle_members(&mut self, now: Instant, members: Vec<SupernodeContact>) {
        let mut new: BTreeMap<PublicKey, SupernodeContact> =
            members.into_iter().map(|c| (c.key, c)).collect();
        new.insert(self.me.key, self.me);
        if new == self.members {
            return;
        }
        let old_members = std::mem::replace(&mut self.members, new);
        let old_keys: Vec<PublicKey> = old_members.keys().copied().collect();
        let departed: BTreeSet<PublicKey> = old_members
            .keys()
            .filter(|k| !self.members.contains_key(k))
            .copied()
            .collect();
        let changed_for = |this: &Self, user: &UserName| -> Vec<PublicKey> {
            let before = ring::responsible(old_keys.iter(), user, this.config.replicas);
            this.responsible(user)
                .into_iter()
                .filter(|k| !before.contains(k))
                .collect()
        };

        // Our sessions: publish to newly responsible supernodes, resubscribe watches.
        let mut publishes = Vec::new();
        let mut subscribes: BTreeMap<PublicKey, Vec<(UserName, UserName)>> = BTreeMap::new();
        for conn in self.conns.values() {
            let Some(session) = &conn.session else {
                continue;
            };
            for target in changed_for(self, &session.user) {
                publishes.push((target, session.user.clone(), conn.device));
            }
            for watched in &session.watch {
                for target in changed_for(self, watched) {
                    subscribes
                        .entry(target)
                        .or_default()
                        .push((session.user.clone(), watched.clone()));
                }
            }
        }
        for (target, user, device) in publishes {
            if let Some(message) = self.publish_record_message(now, &user, &device) {
                self.send_mesh(target, message);
            }
        }
        for (target, pairs) in subscribes {
            for chunk in pairs.chunks(MAX_SUBSCRIPTION_PAIRS) {
                self.send_mesh(
                    target,
                    SupernodeToSupernode::Subscribe {
                        pairs: chunk.to_vec(),
                    },
                );
            }
        }

        // Records: drop what we no longer answer for; devices homed at departed nodes are
        // gone, and their watchers see it.
        let users: Vec<UserName> = self.records.keys().cloned().collect();
        for user in users {
            if !self.responsible(&user).contains(&self.me.key) {
                self.records.remove(&user);
                continue;
            }
            let Some(record) = self.records.get_mut(&user) else {
                continue;
            };
            let before = record.devices.len();
            record
                .devices
                .retain(|_, d| !departed.contains(&d.record.home.key));
            record
                .subscribers
                .retain(|_, s| !departed.contains(&s.home));
            if record.devices.len() != before {
                self.record_changed(now, &user, None);
            }
        }
        self.unreachable.retain(|k, _| self.members.contains_key(k));

        // Lookups waiting on departed supernodes move on.
        let stuck: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, p)| p.asked.is_some_and(|k| departed.contains(&k)))
            .map(|(id, _)| *id)
            .collect();
        for id in stuck {
            self.advance_lookup(now, id);
        }
    }

    /// A signed revocation list was verified: sessions using revoked credentials end.
    pub fn handle_revocations(&mut self, now: Instant, revoked: impl IntoIterator<Item = u64>) {
        self.revoked = revoked.into_iter().collect();
        let doomed: Vec<ClientId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.session
                    .as_ref()
                    .is_some_and(|s| self.revoked.contains(&s.serial))
            })
            .map(|(id, _)| *id)
            .collect();
        for client in doomed {
            self.send_client(
                client,
                SupernodeToClient::Goodbye {
                    reason: GoodbyeReason::CredentialInvalid,
                },
            );
            self.close_client(now, client);
        }
    }

    /// A mesh peer could not be reached (connection refused, handshake timeout). It is
    /// skipped for a while; lookups waiting on it move on at once.
    pub fn handle_supernode_unreachable(&mut self, now: Instant, peer: PublicKey) {
        if !self.members.contains_key(&peer) {
            return;
        }
        self.unreachable
            .insert(peer, now + self.config.unreachable_backoff);
        let stuck: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, p)| p.asked == Some(peer))
            .map(|(id, _)| *id)
            .collect();
        for id in stuck {
            self.advance_lookup(now, id);
        }
    }

    // ---------------------------------------------------------------- clients --------

    /// A client connected and proved `device` in TLS.
    pub fn handle_client_connected(&mut self, now: Instant, client: ClientId, device: PublicKey) {
        let c = &self.config;
        self.conns.insert(
            client,
            Conn {
                device,
                connected_at: now,
                last_rx: now,
                last_app: now,
                app_sent: false,
                park: ParkState::Unavailable,
                session: None,
                searches: TokenBucket::new(now, c.search_burst, c.searches_per_sec),
                routes: TokenBucket::new(now, c.route_burst, c.routes_per_sec),
                updates: TokenBucket::new(now, c.update_burst, c.updates_per_sec),
            },
        );
    }

    /// The connection `client` may be parked: `key` is the park key both ends exported from
    /// it and `addr` where the client's datagrams come from.
    pub fn handle_client_park_link(&mut self, client: ClientId, key: ParkKey, addr: SocketAddr) {
        if let Some(conn) = self.conns.get_mut(&client)
            && matches!(conn.park, ParkState::Unavailable)
        {
            conn.park = ParkState::Ready(Box::new(ParkLink { key, addr }));
        }
    }

    /// The connection closed (either side, or the transport gave up). A parked session
    /// outlives its connection.
    pub fn handle_client_disconnected(&mut self, now: Instant, client: ClientId) {
        if self
            .conns
            .get(&client)
            .is_some_and(|c| matches!(c.park, ParkState::Parked(_)))
        {
            return;
        }
        self.end_session(now, client);
        self.remove_conn(client);
    }

    /// Removes a connection's entry and, when it was parked, its token.
    fn remove_conn(&mut self, client: ClientId) -> Option<Conn> {
        let conn = self.conns.remove(&client)?;
        if let ParkState::Parked(parked) = &conn.park {
            self.parked.remove(&parked.token);
        }
        Some(conn)
    }

    /// Whether `client`'s session is parked.
    pub fn is_parked(&self, client: ClientId) -> bool {
        self.conns
            .get(&client)
            .is_some_and(|c| matches!(c.park, ParkState::Parked(_)))
    }

    /// A datagram that arrived on the QUIC socket with the park first byte: a parked
    /// client's heartbeat is answered (with a wake when messages wait); anything that does
    /// not authenticate for a parked session is ignored.
    pub fn handle_park_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Ok(header) = park::decode_header(datagram) else {
            self.stats.park_refused += 1;
            return;
        };
        let Some(conn) = self
            .parked
            .get(&header.token)
            .and_then(|client| self.conns.get_mut(client))
        else {
            self.stats.park_refused += 1;
            return;
        };
        let ParkState::Parked(parked) = &mut conn.park else {
            return;
        };
        if park::open(
            &parked.key,
            parked.token,
            ParkDirection::ClientToSupernode,
            &mut parked.rx,
            datagram,
        )
        .is_err()
        {
            self.stats.park_refused += 1;
            return;
        }
        conn.last_rx = now;
        parked.addr = from;
        let kind = if parked.queue.is_empty() {
            ParkKind::HeartbeatAck
        } else {
            self.stats.wakes += 1;
            ParkKind::Wake
        };
        let datagram = parked.seal(kind);
        self.commands
            .push_back(Command::SendDatagram { to: from, datagram });
    }

    /// `ParkAccept`: parks the session when the token is the one offered.
    fn on_park_accept(&mut self, client: ClientId, token: ParkToken) {
        let Some(conn) = self.conns.get_mut(&client) else {
            return;
        };
        let offered = matches!(&conn.park, ParkState::Offered { token: t, .. } if *t == token);
        if !offered || conn.session.is_none() {
            return;
        }
        self.commands.push_back(Command::SendToClient {
            client,
            message: SupernodeToClient::Parked { token },
        });
        let ParkState::Offered { link, token } =
            std::mem::replace(&mut conn.park, ParkState::Unavailable)
        else {
            return;
        };
        conn.park = ParkState::Parked(Box::new(Parked {
            token,
            key: link.key,
            addr: link.addr,
            rx: ReplayWindow::default(),
            tx_counter: 0,
            queue: VecDeque::new(),
            wake: None,
        }));
        self.parked.insert(token, client);
        self.commands.push_back(Command::ParkClient { client });
    }

    /// `Resume` on the new connection `client`: moves the parked session onto it, then
    /// sends what waited.
    fn on_resume(&mut self, now: Instant, client: ClientId, token: ParkToken, proof: &[u8]) {
        let refuse = |this: &mut Self| {
            this.stats.park_refused += 1;
            this.send_client(
                client,
                SupernodeToClient::Error {
                    code: ErrorCode::NotAuthenticated,
                },
            );
        };
        let Some(old) = self.parked.get(&token).copied() else {
            return refuse(self);
        };
        let Some(device) = self
            .conns
            .get(&client)
            .filter(|c| c.session.is_none())
            .map(|c| c.device)
        else {
            return refuse(self);
        };
        let proven = self.conns.get_mut(&old).is_some_and(|c| {
            c.device == device
                && match &mut c.park {
                    ParkState::Parked(parked) => park::open(
                        &parked.key,
                        parked.token,
                        ParkDirection::ClientToSupernode,
                        &mut parked.rx,
                        proof,
                    )
                    .is_ok(),
                    _ => false,
                }
        });
        if !proven {
            return refuse(self);
        }
        let Some(mut parked_conn) = self.remove_conn(old) else {
            return;
        };
        let Some(session) = parked_conn.session.take() else {
            return;
        };
        let queue = match std::mem::replace(&mut parked_conn.park, ParkState::Unavailable) {
            ParkState::Parked(parked) => parked.queue,
            _ => VecDeque::new(),
        };
        if let Some(devices) = self.homed.get_mut(&session.user) {
            devices.insert(device, client);
        }
        if let Some(conn) = self.conns.get_mut(&client) {
            conn.session = Some(session);
            conn.last_app = now;
            conn.updates = parked_conn.updates;
            conn.searches = parked_conn.searches;
            conn.routes = parked_conn.routes;
        }
        self.send_client(client, SupernodeToClient::Resumed);
        for message in queue {
            self.send_client(client, message);
        }
    }

    /// Bytes from a client that did not decode: answer with a typed error.
    pub fn handle_client_garbage(&mut self, now: Instant, client: ClientId, code: ErrorCode) {
        if let Some(conn) = self.conns.get_mut(&client) {
            conn.last_rx = now;
            self.send_client(client, SupernodeToClient::Error { code });
        }
    }

    fn close_client(&mut self, now: Instant, client: ClientId) {
        self.end_session(now, client);
        if self.remove_conn(client).is_some() {
            self.commands.push_back(Command::CloseClient { client });
        }
    }

    /// One message from a client.
    pub fn handle_client_message(
        &mut self,
        now: Instant,
        client: ClientId,
        message: ClientToSupernode,
    ) {
        let Some(conn) = self.conns.get_mut(&client) else {
            return;
        };
        conn.last_rx = now;
        if !matches!(
            message,
            ClientToSupernode::Ping { .. }
                | ClientToSupernode::HostCacheRequest
                | ClientToSupernode::ParkAccept { .. }
        ) {
            conn.last_app = now;
        }
        #[cfg(feature = "test-tamper")]
        let mut message = message;
        #[cfg(feature = "test-tamper")]
        if let Some(hook) = &self.config.tamper
            && !hook.0.client_sent(&conn.device, &mut message)
        {
            return;
        }
        let has_session = conn.session.is_some();
        match message {
            ClientToSupernode::Hello {
                version,
                credential,
                presence,
            } => self.on_hello(now, client, version, credential, presence),
            ClientToSupernode::Ping { nonce } => {
                let load =
                    self.session_count().saturating_mul(100) / self.config.max_clients.max(1);
                self.send_client(
                    client,
                    SupernodeToClient::Pong {
                        nonce,
                        load_percent: u8::try_from(load.min(255)).unwrap_or(255),
                    },
                );
            }
            ClientToSupernode::HostCacheRequest => {
                let supernodes = self.sample_members(MAX_HOST_CACHE_ANSWER);
                self.send_client(client, SupernodeToClient::HostCache { supernodes });
            }
            ClientToSupernode::Goodbye => self.close_client(now, client),
            ClientToSupernode::Resume { token, proof } => {
                self.on_resume(now, client, token, &proof)
            }
            _ if !has_session => self.send_client(
                client,
                SupernodeToClient::Error {
                    code: ErrorCode::NotAuthenticated,
                },
            ),
            ClientToSupernode::SetPresence { presence } => {
                if self.take_update_token(now, client) {
                    self.on_set_presence(now, client, presence);
                }
            }
            ClientToSupernode::SetAuthorized { contacts } => {
                if contacts.len() > MAX_CONTACTS {
                    self.send_client(
                        client,
                        SupernodeToClient::Error {
                            code: ErrorCode::TooLarge,
                        },
                    );
                } else if self.take_update_token(now, client) {
                    self.on_set_authorized(now, client, contacts);
                }
            }
            ClientToSupernode::Watch { contacts } => {
                if contacts.len() > MAX_CONTACTS {
                    self.send_client(
                        client,
                        SupernodeToClient::Error {
                            code: ErrorCode::TooLarge,
                        },
                    );
                } else if self.take_update_token(now, client) {
                    self.on_watch(now, client, contacts.into_iter().collect());
                }
            }
            ClientToSupernode::Search { query_id, query } => {
                self.on_search(now, client, query_id, query)
            }
            ClientToSupernode::Route {
                id,
                to,
                to_device,
                payload,
            } => self.on_client_route(now, client, id, to, to_device, payload),
            ClientToSupernode::TurnCredentialsRequest => {
                if self.take_update_token(now, client) {
                    self.on_turn_credentials(now, client);
                }
            }
            ClientToSupernode::ParkAccept { token } => self.on_park_accept(client, token),
        }
    }

    fn on_turn_credentials(&mut self, now: Instant, client: ClientId) {
        let Some(user) = self
            .conns
            .get(&client)
            .and_then(|c| c.session.as_ref())
            .map(|s| s.user.clone())
        else {
            return;
        };
        let Some(turn) = &self.config.turn else {
            self.send_client(
                client,
                SupernodeToClient::Error {
                    code: ErrorCode::Unavailable,
                },
            );
            return;
        };
        let minted = nat::turn::credentials::mint(
            &turn.shared_secret,
            user.as_str(),
            self.wall(now).as_secs(),
            turn.ttl.as_secs(),
        );
        let message = SupernodeToClient::TurnCredentials {
            urls: turn.urls.clone(),
            username: minted.username,
            password: minted.password,
            ttl_s: u32::try_from(minted.ttl_s).unwrap_or(u32::MAX),
        };
        self.send_client(client, message);
    }

    fn take_update_token(&mut self, now: Instant, client: ClientId) -> bool {
        let Some(conn) = self.conns.get_mut(&client) else {
            return false;
        };
        if conn.updates.take(now).is_ok() {
            return true;
        }
        self.send_client(
            client,
            SupernodeToClient::Error {
                code: ErrorCode::RateLimited,
            },
        );
        false
    }

    fn sample_members(&mut self, max: usize) -> Vec<SupernodeContact> {
        let others: Vec<SupernodeContact> = self
            .members
            .values()
            .filter(|c| c.key != self.me.key)
            .copied()
            .collect();
        others.sample(&mut self.rng, max).copied().collect()
    }

    fn on_hello(
        &mut self,
        now: Instant,
        client: ClientId,
        version: u16,
        credential: SignedCredential,
        presence: Presence,
    ) {
        if version != proto::PROTOCOL_VERSION {
            self.send_client(
                client,
                SupernodeToClient::Error {
                    code: ErrorCode::UnsupportedVersion {
                        ours: proto::PROTOCOL_VERSION,
                        theirs: version,
                    },
                },
            );
            self.close_client(now, client);
            return;
        }
        let Some(conn) = self.conns.get(&client) else {
            return;
        };
        let device = conn.device;
        let wall = self.wall(now);
        let claims = match credential.verify_for_key(&self.authority, wall, &device) {
            Ok(claims) if self.revoked.contains(&claims.serial) => Err("revoked".to_string()),
            Ok(claims) => Ok(claims),
            Err(e) => Err(e.to_string()),
        };
        let claims = match claims {
            Ok(claims) => claims,
            Err(reason) => {
                self.send_client(
                    client,
                    SupernodeToClient::Error {
                        code: ErrorCode::CredentialRefused { reason },
                    },
                );
                self.close_client(now, client);
                return;
            }
        };
        // A refreshed credential on a live session.
        if let Some(session) = self.conns.get_mut(&client).and_then(|c| c.session.as_mut()) {
            if session.user == claims.user {
                session.credential = credential;
                session.serial = claims.serial;
                session.expires_at = claims.expires_at;
                let user = claims.user.clone();
                self.publish_everywhere(now, &user, &device);
                self.commands.push_back(Command::ReportHomed {
                    credential: self.session_credential(client),
                });
            } else {
                self.send_client(
                    client,
                    SupernodeToClient::Error {
                        code: ErrorCode::CredentialRefused {
                            reason: "a session is bound to one user".into(),
                        },
                    },
                );
            }
            return;
        }
        if self.session_count() >= self.config.max_clients {
            self.stats.busy_answers += 1;
            let alternatives = self.sample_members(MAX_BUSY_ALTERNATIVES);
            self.send_client(client, SupernodeToClient::Busy { alternatives });
            self.close_client(now, client);
            return;
        }
        // The same device homed here on another connection: the newer one wins.
        if let Some(old) = self
            .homed
            .get(&claims.user)
            .and_then(|devices| devices.get(&device))
            .copied()
            && old != client
        {
            self.send_client(
                old,
                SupernodeToClient::Goodbye {
                    reason: GoodbyeReason::Replaced,
                },
            );
            if let Some(conn) = self.conns.get_mut(&old) {
                conn.session = None;
            }
            self.remove_conn(old);
            self.commands
                .push_back(Command::CloseClient { client: old });
        }
        let devices = self.homed.entry(claims.user.clone()).or_default();
        if devices.len() >= MAX_DEVICES_PER_USER && !devices.contains_key(&device) {
            self.send_client(
                client,
                SupernodeToClient::Error {
                    code: ErrorCode::TooLarge,
                },
            );
            self.close_client(now, client);
            return;
        }
        if devices.insert(device, client).is_none() {
            self.sessions += 1;
        }
        let user = claims.user.clone();
        if let Some(conn) = self.conns.get_mut(&client) {
            conn.session = Some(Session {
                user: claims.user,
                credential: credential.clone(),
                serial: claims.serial,
                expires_at: claims.expires_at,
                presence,
                authorized: Vec::new(),
                watch: BTreeSet::new(),
                seen: BTreeMap::new(),
            });
        }
        let host_cache = self.sample_members(MAX_HOST_CACHE_ANSWER);
        self.send_client(
            client,
            SupernodeToClient::Welcome {
                version: proto::PROTOCOL_VERSION,
                supernode: self.me.key,
                keepalive_secs: self.config.keepalive_secs,
                host_cache,
            },
        );
        self.cache.remove(&user);
        self.publish_everywhere(now, &user, &device);
        self.commands.push_back(Command::ReportHomed { credential });
    }

    fn session_credential(&self, client: ClientId) -> SignedCredential {
        self.conns
            .get(&client)
            .and_then(|c| c.session.as_ref())
            .map(|s| s.credential.clone())
            .expect("invariant: called only for a client with a session")
    }

    fn session_of(&self, user: &UserName, device: &PublicKey) -> Option<&Session> {
        let client = self.homed.get(user)?.get(device)?;
        self.conns.get(client)?.session.as_ref()
    }

    fn publish_record_message(
        &mut self,
        now: Instant,
        user: &UserName,
        device: &PublicKey,
    ) -> Option<SupernodeToSupernode> {
        let seq = self.next_seq(now);
        let session = self.session_of(user, device)?;
        Some(SupernodeToSupernode::PublishRecord {
            user: user.clone(),
            device: *device,
            seq,
            record: DeviceRecord {
                credential: session.credential.clone(),
                home: self.me,
                presence: session.presence.clone(),
            },
            authorized: session.authorized.clone(),
        })
    }

    /// Sends the device's full record to every responsible supernode (or stores it here).
    fn publish_everywhere(&mut self, now: Instant, user: &UserName, device: &PublicKey) {
        let Some(message) = self.publish_record_message(now, user, device) else {
            return;
        };
        for target in self.responsible(user) {
            if target == self.me.key {
                let me = self.me.key;
                self.handle_mesh(now, me, message.clone());
            } else {
                self.send_mesh(target, message.clone());
            }
        }
    }

    fn send_responsible(&mut self, now: Instant, user: &UserName, message: SupernodeToSupernode) {
        for target in self.responsible(user) {
            if target == self.me.key {
                let me = self.me.key;
                self.handle_mesh(now, me, message.clone());
            } else {
                self.send_mesh(target, message.clone());
            }
        }
    }

    fn on_set_presence(&mut self, now: Instant, client: ClientId, presence: Presence) {
        let Some(conn) = self.conns.get_mut(&client) else {
            return;
        };
        let device = conn.device;
        let Some(session) = conn.session.as_mut() else {
            return;
        };
        if session.presence == presence {
            return;
        }
        session.presence = presence.clone();
        let user = session.user.clone();
        let seq = self.next_seq(now);
        self.send_responsible(
            now,
            &user,
            SupernodeToSupernode::PublishPresence {
                user: user.clone(),
                device,
                seq,
                presence,
            },
        );
    }

    fn on_set_authorized(&mut self, now: Instant, client: ClientId, mut contacts: Vec<UserName>) {
        contacts.sort();
        contacts.dedup();
        let Some(conn) = self.conns.get_mut(&client) else {
            return;
        };
        let device = conn.device;
        let Some(session) = conn.session.as_mut() else {
            return;
        };
        session.authorized = contacts;
        let user = session.user.clone();
        self.publish_everywhere(now, &user, &device);
    }

    fn on_watch(&mut self, now: Instant, client: ClientId, contacts: BTreeSet<UserName>) {
        let Some(session) = self.conns.get_mut(&client).and_then(|c| c.session.as_mut()) else {
            return;
        };
        let watcher = session.user.clone();
        let added: Vec<UserName> = contacts.difference(&session.watch).cloned().collect();
        let removed: Vec<UserName> = session.watch.difference(&contacts).cloned().collect();
        session.watch = contacts;
        session.seen.retain(|u, _| session.watch.contains(u));
        // Another device of the same user on this supernode may still watch a removed one.
        let still_watched: BTreeSet<UserName> = self
            .homed
            .get(&watcher)
            .into_iter()
            .flat_map(|d| d.values())
            .filter(|c| **c != client)
            .filter_map(|c| self.conns.get(c)?.session.as_ref())
            .flat_map(|s| s.watch.iter().cloned())
            .collect();
        let mut subscribe: BTreeMap<PublicKey, Vec<(UserName, UserName)>> = BTreeMap::new();
        let mut unsubscribe: BTreeMap<PublicKey, Vec<(UserName, UserName)>> = BTreeMap::new();
        for target in added {
            for node in self.responsible(&target) {
                subscribe
                    .entry(node)
                    .or_default()
                    .push((watcher.clone(), target.clone()));
            }
        }
        for target in removed.into_iter().filter(|t| !still_watched.contains(t)) {
            for node in self.responsible(&target) {
                unsubscribe
                    .entry(node)
                    .or_default()
                    .push((watcher.clone(), target.clone()));
            }
        }
        for (node, pairs) in unsubscribe {
            self.send_pairs(now, node, pairs, false);
        }
        for (node, pairs) in subscribe {
            self.send_pairs(now, node, pairs, true);
        }
    }

    fn send_pairs(
        &mut self,
        now: Instant,
        node: PublicKey,
        pairs: Vec<(UserName, UserName)>,
        subscribe: bool,
    ) {
        for chunk in pairs.chunks(MAX_SUBSCRIPTION_PAIRS) {
            let message = if subscribe {
                SupernodeToSupernode::Subscribe {
                    pairs: chunk.to_vec(),
                }
            } else {
                SupernodeToSupernode::Unsubscribe {
                    pairs: chunk.to_vec(),
                }
            };
            if node == self.me.key {
                let me = self.me.key;
                self.handle_mesh(now, me, message);
            } else {
                self.send_mesh(node, message);
            }
        }
    }

    fn end_session(&mut self, now: Instant, client: ClientId) {
        let Some(conn) = self.conns.get_mut(&client) else {
            return;
        };
        let device = conn.device;
        let Some(session) = conn.session.take() else {
            return;
        };
        if let Some(devices) = self.homed.get_mut(&session.user) {
            if devices.get(&device) == Some(&client) && devices.remove(&device).is_some() {
                self.sessions -= 1;
            }
            if devices.is_empty() {
                self.homed.remove(&session.user);
            }
        }
        let seq = self.next_seq(now);
        self.send_responsible(
            now,
            &session.user,
            SupernodeToSupernode::Unpublish {
                user: session.user.clone(),
                device,
                seq,
            },
        );
        if !self.homed.contains_key(&session.user) {
            let mut by_node: BTreeMap<PublicKey, Vec<(UserName, UserName)>> = BTreeMap::new();
            for target in &session.watch {
                for node in self.responsible(target) {
                    by_node
                        .entry(node)
                        .or_default()
                        .push((session.user.clone(), target.clone()));
                }
            }
            for (node, pairs) in by_node {
                self.send_pairs(now, node, pairs, false);
            }
        }
    }

    // ---------------------------------------------------------------- search ---------

    fn on_search(&mut self, now: Instant, client: ClientId, query_id: u32, query: SearchQuery) {
        let Some(conn) = self.conns.get_mut(&client) else {
            return;
        };
        let Some(viewer) = conn.session.as_ref().map(|s| s.user.clone()) else {
            return;
        };
        if let Err(wait) = conn.searches.take(now) {
            self.stats.searches_rate_limited += 1;
            self.send_client(
                client,
                SupernodeToClient::SearchFailed {
                    query_id,
                    error: SearchError::RateLimited {
                        retry_after_millis: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
                    },
                },
            );
            return;
        }
        self.stats.searches += 1;
        match query {
            SearchQuery::Exact(user) => {
                if let Some(hit) = self.local_hit(&user, &viewer) {
                    self.stats.searches_local += 1;
                    self.answer_search(client, query_id, SearchSource::Local, vec![hit]);
                    return;
                }
                if let Some(cached) = self.cache.get(now, &user).cloned() {
                    self.stats.searches_cached += 1;
                    let hit = self.hit_from_cached(&cached, &viewer, client);
                    self.answer_search(client, query_id, cached.source, vec![hit]);
                    return;
                }
                self.start_lookup(
                    now,
                    user,
                    viewer.clone(),
                    Waiter::Search {
                        client,
                        query_id,
                        viewer,
                    },
                );
            }
            SearchQuery::DisplayNamePrefix(prefix) => {
                let folded = prefix.folded();
                if let Some(users) = self.prefix_cache.get(now, &folded).cloned() {
                    self.stats.searches_cached += 1;
                    let hits = self.prefix_hits(users, &prefix.folded(), &viewer, client);
                    self.answer_search(client, query_id, SearchSource::Cache, hits);
                    return;
                }
                if self.logins.len() >= self.config.max_pending {
                    self.shed_search(client, query_id);
                    return;
                }
                let request_id = self.fresh_id();
                self.stats.search_messages += 1;
                self.logins.insert(
                    request_id,
                    PendingLogin {
                        deadline: now + self.config.login_timeout,
                        waiter: LoginWaiter::Prefix {
                            client,
                            query_id,
                            prefix: folded.clone(),
                            viewer,
                        },
                    },
                );
                self.commands.push_back(Command::SearchAtLoginServer {
                    request_id,
                    prefix: prefix.as_str().to_string(),
                    limit: u16::try_from(MAX_SEARCH_HITS).unwrap_or(u16::MAX),
                });
            }
        }
    }

    fn shed_search(&mut self, client: ClientId, query_id: u32) {
        self.stats.shed += 1;
        self.stats.searches_failed += 1;
        self.send_client(
            client,
            SupernodeToClient::SearchFailed {
                query_id,
                error: SearchError::Overloaded,
            },
        );
    }

    fn answer_search(
        &mut self,
        client: ClientId,
        query_id: u32,
        source: SearchSource,
        mut hits: Vec<SearchHit>,
    ) {
        hits.truncate(MAX_SEARCH_HITS);
        self.send_client(
            client,
            SupernodeToClient::SearchResults {
                query_id,
                source,
                hits,
            },
        );
    }

    /// What `client` was last told about `user` through its watch list.
    fn seen_by(&self, client: ClientId, user: &UserName) -> Option<Presence> {
        self.conns
            .get(&client)?
            .session
            .as_ref()?
            .seen
            .get(user)
            .cloned()
    }

    fn local_hit(&self, user: &UserName, viewer: &UserName) -> Option<SearchHit> {
        let devices = self.homed.get(user)?;
        let sessions: Vec<&Session> = devices
            .values()
            .filter_map(|c| self.conns.get(c)?.session.as_ref())
            .collect();
        let newest = sessions.iter().max_by_key(|s| s.expires_at)?;
        let claims = newest.credential.claims_unverified().ok()?;
        let authorized = sessions.iter().any(|s| s.authorized.contains(viewer));
        let best = sessions
            .iter()
            .map(|s| s.presence.as_seen_by_others())
            .max_by_key(|p| p.status.availability_rank())
            .unwrap_or_else(Presence::offline);
        let visible = best.status != PresenceStatus::Offline;
        Some(SearchHit {
            user: user.clone(),
            display_name: claims.display_name,
            credential: Some(newest.credential.clone()),
            home: visible.then_some(self.me),
            presence: if authorized {
                best
            } else {
                Presence::offline()
            },
            last_seen: None,
        })
    }

    fn hit_from_cached(
        &self,
        cached: &CachedRecord,
        viewer: &UserName,
        client: ClientId,
    ) -> SearchHit {
        let record = &cached.record;
        let presence = self
            .seen_by(client, &record.user)
            .or_else(|| (&cached.viewer == viewer).then(|| record.presence.clone()))
            .unwrap_or_else(Presence::offline);
        SearchHit {
            user: record.user.clone(),
            display_name: record.display_name.clone(),
            credential: Some(record.credential.clone()),
            home: record.homes.first().map(|(_, c)| *c),
            presence,
            last_seen: cached.last_seen,
        }
    }

    fn hit_from_info(&self, info: &UserInfo, client: ClientId) -> SearchHit {
        SearchHit {
            user: info.user.clone(),
            display_name: info.display_name.clone(),
            credential: info.credentials.first().cloned(),
            home: info
                .home_supernode
                .and_then(|k| self.members.get(&k).copied()),
            presence: self
                .seen_by(client, &info.user)
                .unwrap_or_else(Presence::offline),
            last_seen: info.last_seen,
        }
    }

    fn prefix_hits(
        &self,
        users: Vec<UserInfo>,
        folded: &str,
        viewer: &UserName,
        client: ClientId,
    ) -> Vec<SearchHit> {
        let mut hits: BTreeMap<UserName, SearchHit> = BTreeMap::new();
        for info in &users {
            hits.insert(info.user.clone(), self.hit_from_info(info, client));
        }
        // Users homed here are found even before the login server indexes them.
        for user in self.homed.keys() {
            if hits.len() >= MAX_SEARCH_HITS {
                break;
            }
            if let Some(hit) = self.local_hit(user, viewer)
                && hit.display_name.matches_prefix(folded)
            {
                hits.insert(user.clone(), hit);
            }
        }
        hits.into_values().take(MAX_SEARCH_HITS).collect()
    }

    fn start_lookup(&mut self, now: Instant, user: UserName, viewer: UserName, waiter: Waiter) {
        let key = (user.clone(), viewer.clone());
        if let Some(id) = self.lookup_by_key.get(&key)
            && let Some(pending) = self.lookups.get_mut(id)
        {
            if pending.waiters.len() < 64 {
                pending.waiters.push(waiter);
            } else {
                self.fail_waiter(waiter, RouteOutcome::Unreachable);
            }
            return;
        }
        if self.lookups.len() >= self.config.max_pending {
            self.fail_waiter(waiter, RouteOutcome::Unreachable);
            return;
        }
        let remaining = self.responsible(&user);
        let id = self.fresh_id();
        self.lookups.insert(
            id,
            PendingLookup {
                user,
                viewer,
                remaining,
                asked: None,
                deadline: now,
                waiters: vec![waiter],
            },
        );
        self.lookup_by_key.insert(key, id);
        self.advance_lookup(now, id);
    }

    /// Asks the next responsible supernode, answers from our own records when we are one,
    /// or falls back to the login server.
    fn advance_lookup(&mut self, now: Instant, id: u64) {
        loop {
            let Some(pending) = self.lookups.get_mut(&id) else {
                return;
            };
            if pending.remaining.is_empty() {
                self.lookup_missed(now, id);
                return;
            }
            let next = pending.remaining.remove(0);
            let (user, viewer) = (pending.user.clone(), pending.viewer.clone());
            if next == self.me.key {
                let record = self.mesh_record(&user, &viewer);
                if record.is_some() {
                    self.finish_lookup(now, id, record, SearchSource::Mesh);
                    return;
                }
                continue;
            }
            if !self.is_reachable(now, &next) {
                continue;
            }
            let Some(pending) = self.lookups.get_mut(&id) else {
                return;
            };
            pending.asked = Some(next);
            pending.deadline = now + self.config.lookup_timeout;
            let message = SupernodeToSupernode::Lookup {
                query_id: id,
                user: pending.user.clone(),
                viewer: pending.viewer.clone(),
            };
            if pending
                .waiters
                .iter()
                .any(|w| matches!(w, Waiter::Search { .. }))
            {
                self.stats.search_messages += 1;
            }
            self.send_mesh(next, message);
            return;
        }
    }

    fn lookup_missed(&mut self, now: Instant, id: u64) {
        let Some(pending) = self.lookups.remove(&id) else {
            return;
        };
        self.lookup_by_key
            .remove(&(pending.user.clone(), pending.viewer.clone()));
        let (searches, routes): (Vec<Waiter>, Vec<Waiter>) = pending
            .waiters
            .into_iter()
            .partition(|w| matches!(w, Waiter::Search { .. }));
        for waiter in routes {
            self.fail_waiter(waiter, RouteOutcome::Offline);
        }
        if searches.is_empty() {
            return;
        }
        if self.logins.len() >= self.config.max_pending {
            for waiter in searches {
                self.fail_waiter(waiter, RouteOutcome::Unreachable);
            }
            return;
        }
        let request_id = self.fresh_id();
        self.stats.search_messages += 1;
        self.logins.insert(
            request_id,
            PendingLogin {
                deadline: now + self.config.login_timeout,
                waiter: LoginWaiter::Exact(searches, pending.user.clone()),
            },
        );
        self.commands.push_back(Command::LookupAtLoginServer {
            request_id,
            user: pending.user,
        });
    }

    fn fail_waiter(&mut self, waiter: Waiter, outcome: RouteOutcome) {
        match waiter {
            Waiter::Search {
                client, query_id, ..
            } => {
                self.stats.searches_failed += 1;
                self.send_client(
                    client,
                    SupernodeToClient::SearchFailed {
                        query_id,
                        error: SearchError::Unavailable,
                    },
                );
            }
            Waiter::Route { origin, .. } => self.finish_route(origin, outcome),
        }
    }

    fn finish_route(&mut self, origin: RouteOrigin, outcome: RouteOutcome) {
        match origin {
            RouteOrigin::Client { client, id } => {
                if self.conns.contains_key(&client) {
                    self.send_client(client, SupernodeToClient::RouteStatus { id, outcome });
                }
            }
        }
    }

    fn finish_lookup(
        &mut self,
        now: Instant,
        id: u64,
        record: Option<MeshRecord>,
        source: SearchSource,
    ) {
        let Some(record) = record else {
            self.lookup_missed(now, id);
            return;
        };
        let Some(pending) = self.lookups.remove(&id) else {
            return;
        };
        self.lookup_by_key
            .remove(&(pending.user.clone(), pending.viewer.clone()));
        let cached = CachedRecord {
            record: record.clone(),
            source: SearchSource::Cache,
            last_seen: None,
            viewer: pending.viewer.clone(),
        };
        if source == SearchSource::Mesh {
            self.cache
                .insert(now, record.user.clone(), cached, self.config.cache_ttl);
        }
        for waiter in pending.waiters {
            match waiter {
                Waiter::Search {
                    client,
                    query_id,
                    viewer,
                } => {
                    self.stats.searches_mesh += 1;
                    let presence = self
                        .seen_by(client, &record.user)
                        .or_else(|| (viewer == pending.viewer).then(|| record.presence.clone()))
                        .unwrap_or_else(Presence::offline);
                    let hit = SearchHit {
                        user: record.user.clone(),
                        display_name: record.display_name.clone(),
                        credential: Some(record.credential.clone()),
                        home: record.homes.first().map(|(_, c)| *c),
                        presence,
                        last_seen: None,
                    };
                    self.answer_search(client, query_id, source, vec![hit]);
                }
                Waiter::Route {
                    origin,
                    from,
                    from_device,
                    to_device,
                    payload,
                } => {
                    self.deliver_route(now, origin, from, from_device, &record, to_device, payload)
                }
            }
        }
    }

    // ---------------------------------------------------------------- login answers --

    /// The login server's answer to [`Command::LookupAtLoginServer`].
    pub fn handle_login_user(&mut self, now: Instant, request_id: u64, info: Option<UserInfo>) {
        let Some(pending) = self.logins.remove(&request_id) else {
            return;
        };
        self.stats.search_messages += 1;
        match pending.waiter {
            LoginWaiter::Exact(waiters, user) => {
                let info = info.filter(|i| i.user == user);
                if let Some(info) = &info {
                    self.cache_login_info(now, info);
                }
                for waiter in waiters {
                    if let Waiter::Search {
                        client, query_id, ..
                    } = waiter
                    {
                        self.stats.searches_login += 1;
                        let hits = info.iter().map(|i| self.hit_from_info(i, client)).collect();
                        self.answer_search(client, query_id, SearchSource::LoginServer, hits);
                    }
                }
            }
            LoginWaiter::Prefix {
                client, query_id, ..
            } => {
                self.stats.searches_failed += 1;
                self.send_client(
                    client,
                    SupernodeToClient::SearchFailed {
                        query_id,
                        error: SearchError::Unavailable,
                    },
                );
            }
        }
    }

    fn cache_login_info(&mut self, now: Instant, info: &UserInfo) {
        let Some(credential) = info.credentials.first() else {
            return;
        };
        let record = MeshRecord {
            user: info.user.clone(),
            display_name: info.display_name.clone(),
            credential: credential.clone(),
            homes: info
                .home_supernode
                .and_then(|k| self.members.get(&k).copied())
                .map(|c| (c.key, c))
                .into_iter()
                .collect(),
            route_homes: Vec::new(),
            presence: Presence::offline(),
        };
        self.cache.insert(
            now,
            info.user.clone(),
            CachedRecord {
                record,
                source: SearchSource::Cache,
                last_seen: info.last_seen,
                viewer: info.user.clone(),
            },
            self.config.login_cache_ttl,
        );
    }

    /// The login server's answer to [`Command::SearchAtLoginServer`].
    pub fn handle_login_users(&mut self, now: Instant, request_id: u64, users: Vec<UserInfo>) {
        let Some(pending) = self.logins.remove(&request_id) else {
            return;
        };
        self.stats.search_messages += 1;
        match pending.waiter {
            LoginWaiter::Prefix {
                client,
                query_id,
                prefix,
                viewer,
            } => {
                let mut users = users;
                users.truncate(MAX_SEARCH_HITS);
                self.prefix_cache.insert(
                    now,
                    prefix.clone(),
                    users.clone(),
                    self.config.login_cache_ttl,
                );
                self.stats.searches_login += 1;
                let hits = self.prefix_hits(users, &prefix, &viewer, client);
                self.answer_search(client, query_id, SearchSource::LoginServer, hits);
            }
            LoginWaiter::Exact(waiters, _) => {
                for waiter in waiters {
                    self.fail_waiter(waiter, RouteOutcome::Unreachable);
                }
            }
        }
    }

    /// A login-server request failed or timed out.
    pub fn handle_login_failed(&mut self, _now: Instant, request_id: u64) {
        let Some(pending) = self.logins.remove(&request_id) else {
            return;
        };
        match pending.waiter {
            LoginWaiter::Exact(waiters, _) => {
                for waiter in waiters {
                    self.fail_waiter(waiter, RouteOutcome::Unreachable);
                }
            }
            LoginWaiter::Prefix {
                client, query_id, ..
            } => {
                self.stats.searches_failed += 1;
                self.send_client(
                    client,
                    SupernodeToClient::SearchFailed {
                        query_id,
                        error: SearchError::Unavailable,
                    },
                );
            }
        }
    }

    // ---------------------------------------------------------------- routing --------

    fn on_client_route(
        &mut self,
        now: Instant,
        client: ClientId,
        id: u64,
        to: UserName,
        to_device: Option<PublicKey>,
        payload: Vec<u8>,
    ) {
        let Some(conn) = self.conns.get_mut(&client) else {
            return;
        };
        let from_device = conn.device;
        let Some(from) = conn.session.as_ref().map(|s| s.user.clone()) else {
            return;
        };
        let origin = RouteOrigin::Client { client, id };
        if payload.len() > MAX_ROUTE_PAYLOAD {
            self.finish_route(origin, RouteOutcome::TooLarge);
            return;
        }
        if conn.routes.take(now).is_err() {
            self.finish_route(origin, RouteOutcome::RateLimited);
            return;
        }
        self.stats.routes += 1;
        if let Some(cached) = self.cache.get(now, &to).cloned()
            && !cached.record.route_homes.is_empty()
        {
            self.deliver_route(
                now,
                origin,
                from,
                from_device,
                &cached.record,
                to_device,
                payload,
            );
            return;
        }
        let viewer = from.clone();
        self.start_lookup(
            now,
            to,
            viewer,
            Waiter::Route {
                origin,
                from,
                from_device,
                to_device,
                payload,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver_route(
        &mut self,
        now: Instant,
        origin: RouteOrigin,
        from: UserName,
        from_device: PublicKey,
        record: &MeshRecord,
        to_device: Option<PublicKey>,
        payload: Vec<u8>,
    ) {
        let mut homes: BTreeSet<PublicKey> = record
            .route_homes
            .iter()
            .filter(|(device, _)| to_device.is_none_or(|d| d == *device))
            .map(|(_, home)| home.key)
            .collect();
        let mut delivered = false;
        if homes.remove(&self.me.key) {
            delivered = self.deliver_locally(&from, from_device, &record.user, to_device, &payload);
        }
        if homes.is_empty() || self.routes.len() >= self.config.max_pending {
            let outcome = if delivered {
                RouteOutcome::Delivered
            } else if homes.is_empty() {
                RouteOutcome::Offline
            } else {
                RouteOutcome::Unreachable
            };
            self.finish_route(origin, outcome);
            return;
        }
        let route_id = self.fresh_id();
        self.routes.insert(
            route_id,
            PendingRoute {
                origin,
                deadline: now + self.config.route_timeout,
                outstanding: homes.len(),
                delivered,
            },
        );
        for home in homes {
            self.send_mesh(
                home,
                SupernodeToSupernode::Route {
                    id: route_id,
                    from: from.clone(),
                    from_device,
                    to: record.user.clone(),
                    to_device,
                    payload: payload.clone(),
                },
            );
        }
    }

    fn deliver_locally(
        &mut self,
        from: &UserName,
        from_device: PublicKey,
        to: &UserName,
        to_device: Option<PublicKey>,
        payload: &[u8],
    ) -> bool {
        let targets: Vec<ClientId> = self
            .homed
            .get(to)
            .into_iter()
            .flat_map(|d| d.iter())
            .filter(|(device, _)| to_device.is_none_or(|d| d == **device))
            .map(|(_, c)| *c)
            .collect();
        for client in &targets {
            self.send_client(
                *client,
                SupernodeToClient::Routed {
                    from: from.clone(),
                    from_device,
                    payload: payload.to_vec(),
                },
            );
        }
        !targets.is_empty()
    }

    // ---------------------------------------------------------------- mesh -----------

    /// One message from another supernode (already checked to be a directory member).
    pub fn handle_supernode_message(
        &mut self,
        now: Instant,
        from: PublicKey,
        message: SupernodeToSupernode,
    ) {
        if !self.members.contains_key(&from) {
            self.stats.shed += 1;
            return;
        }
        let was_unreachable = self.unreachable.remove(&from).is_some();
        self.stats.mesh_messages_in += 1;
        self.handle_mesh(now, from, message);
        if was_unreachable {
            self.resync_peer(now, from);
        }
    }

    fn handle_mesh(&mut self, now: Instant, from: PublicKey, message: SupernodeToSupernode) {
        match message {
            SupernodeToSupernode::Hello { .. } | SupernodeToSupernode::Error { .. } => {}
            SupernodeToSupernode::Goodbye => self.peer_left(now, from),
            SupernodeToSupernode::PublishRecord {
                user,
                device,
                seq,
                record,
                authorized,
            } => self.on_publish_record(now, from, user, device, seq, record, authorized),
            SupernodeToSupernode::PublishPresence {
                user,
                device,
                seq,
                presence,
            } => {
                let Some(stored) = self
                    .records
                    .get_mut(&user)
                    .and_then(|r| r.devices.get_mut(&device))
                else {
                    return;
                };
                if stored.record.home.key != from || stored.seq >= seq {
                    return;
                }
                stored.seq = seq;
                stored.record.presence = presence;
                self.record_changed(now, &user, Some(from));
            }
            SupernodeToSupernode::Unpublish { user, device, seq } => {
                let Some(record) = self.records.get_mut(&user) else {
                    return;
                };
                let Some(stored) = record.devices.get(&device) else {
                    return;
                };
                if stored.record.home.key != from || stored.seq >= seq {
                    return;
                }
                record.devices.remove(&device);
                self.record_changed(now, &user, Some(from));
            }
            SupernodeToSupernode::Subscribe { pairs } => {
                for (watcher, target) in pairs.into_iter().take(MAX_SUBSCRIPTION_PAIRS) {
                    self.on_subscribe(now, from, watcher, target);
                }
            }
            SupernodeToSupernode::Unsubscribe { pairs } => {
                for (watcher, target) in pairs.into_iter().take(MAX_SUBSCRIPTION_PAIRS) {
                    if let Some(record) = self.records.get_mut(&target) {
                        if record
                            .subscribers
                            .get(&watcher)
                            .is_some_and(|s| s.home == from)
                        {
                            record.subscribers.remove(&watcher);
                        }
                        if record.devices.is_empty() && record.subscribers.is_empty() {
                            self.records.remove(&target);
                        }
                    }
                }
            }
            SupernodeToSupernode::PresenceNotify {
                target,
                presence,
                watchers,
            } => self.on_presence_notify(target, presence, watchers),
            SupernodeToSupernode::Lookup {
                query_id,
                user,
                viewer,
            } => {
                let record = self.mesh_record(&user, &viewer);
                if record.is_some()
                    && let Some(stored) = self.records.get_mut(&user)
                {
                    if stored.cachers.len() >= self.config.max_cachers_per_record
                        && let Some(oldest) = stored
                            .cachers
                            .iter()
                            .min_by_key(|(_, t)| **t)
                            .map(|(k, _)| *k)
                    {
                        stored.cachers.remove(&oldest);
                    }
                    stored.cachers.insert(from, now + self.config.cache_ttl);
                }
                self.send_mesh(
                    from,
                    SupernodeToSupernode::LookupResult { query_id, record },
                );
            }
            SupernodeToSupernode::LookupResult { query_id, record } => {
                let Some(pending) = self.lookups.get(&query_id) else {
                    return;
                };
                if pending.asked != Some(from) {
                    return;
                }
                if pending
                    .waiters
                    .iter()
                    .any(|w| matches!(w, Waiter::Search { .. }))
                {
                    self.stats.search_messages += 1;
                }
                let record = record.filter(|r| r.user == pending.user);
                if record.is_some() {
                    self.finish_lookup(now, query_id, record, SearchSource::Mesh);
                } else {
                    // The other replica may know (it got a publish this one missed).
                    self.advance_lookup(now, query_id);
                }
            }
            SupernodeToSupernode::Invalidate { user } => {
                self.cache.remove(&user);
            }
            SupernodeToSupernode::Route {
                id,
                from: sender,
                from_device,
                to,
                to_device,
                payload,
            } => {
                let delivered = payload.len() <= MAX_ROUTE_PAYLOAD
                    && self.deliver_locally(&sender, from_device, &to, to_device, &payload);
                let outcome = if delivered {
                    RouteOutcome::Delivered
                } else {
                    RouteOutcome::Offline
                };
                self.send_mesh(from, SupernodeToSupernode::RouteAck { id, outcome });
            }
            SupernodeToSupernode::RouteAck { id, outcome } => {
                let Some(pending) = self.routes.get_mut(&id) else {
                    return;
                };
                pending.outstanding = pending.outstanding.saturating_sub(1);
                pending.delivered |= outcome == RouteOutcome::Delivered;
                if pending.outstanding == 0 || pending.delivered {
                    let origin = pending.origin;
                    let delivered = pending.delivered;
                    self.routes.remove(&id);
                    self.finish_route(
                        origin,
                        if delivered {
                            RouteOutcome::Delivered
                        } else {
                            RouteOutcome::Offline
                        },
                    );
                }
            }
        }
    }

    /// A peer said goodbye: its homed devices are gone until the directory says otherwise.
    fn peer_left(&mut self, now: Instant, peer: PublicKey) {
        if peer == self.me.key {
            return;
        }
        self.unreachable
            .insert(peer, now + self.config.unreachable_backoff);
        let users: Vec<UserName> = self.records.keys().cloned().collect();
        for user in users {
            let Some(record) = self.records.get_mut(&user) else {
                continue;
            };
            let before = record.devices.len();
            record.devices.retain(|_, d| d.record.home.key != peer);
            record.subscribers.retain(|_, s| s.home != peer);
            if record.devices.len() != before {
                self.record_changed(now, &user, None);
            } else if record.devices.is_empty() && record.subscribers.is_empty() {
                self.records.remove(&user);
            }
        }
        let stuck: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, p)| p.asked == Some(peer))
            .map(|(id, _)| *id)
            .collect();
        for id in stuck {
            self.advance_lookup(now, id);
        }
    }

    fn make_room_for_record(&mut self) -> bool {
        if self.records.len() < self.config.max_records {
            return true;
        }
        // Shed a record nobody is online for; watchers re-subscribe on their next change.
        let victim = self
            .records
            .iter()
            .find(|(_, r)| r.devices.is_empty())
            .map(|(u, _)| u.clone());
        self.stats.shed += 1;
        match victim {
            Some(user) => {
                self.records.remove(&user);
                true
            }
            None => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_publish_record(
        &mut self,
        now: Instant,
        from: PublicKey,
        user: UserName,
        device: PublicKey,
        seq: u64,
        record: DeviceRecord,
        mut authorized: Vec<UserName>,
    ) {
        if record.home.key != from || authorized.len() > MAX_CONTACTS {
            return;
        }
        // The credential must belong to this user and device; a supernode cannot publish
        // someone else's key under a user's name.
        // Verifying a signature is the expensive part; a republished credential was
        // verified when first stored.
        let known = self
            .records
            .get(&user)
            .and_then(|r| r.devices.get(&device))
            .is_some_and(|d| d.record.credential == record.credential);
        if !known {
            let wall = self.wall(now);
            match record
                .credential
                .verify_for_key(&self.authority, wall, &device)
            {
                Ok(claims) if claims.user == user && !self.revoked.contains(&claims.serial) => {}
                _ => return,
            }
        }
        if !self.records.contains_key(&user) && !self.make_room_for_record() {
            return;
        }
        let entry = self
            .records
            .entry(user.clone())
            .or_insert_with(UserRecord::new);
        if let Some(existing) = entry.devices.get(&device)
            && existing.seq >= seq
        {
            return;
        }
        if !entry.devices.contains_key(&device) && entry.devices.len() >= MAX_DEVICES_PER_USER {
            // The device published longest ago makes room.
            if let Some(oldest) = entry
                .devices
                .iter()
                .min_by_key(|(_, d)| d.seq)
                .map(|(k, _)| *k)
            {
                entry.devices.remove(&oldest);
            }
        }
        authorized.sort();
        authorized.dedup();
        entry.authorized = authorized.into_iter().collect();
        entry
            .devices
            .insert(device, Box::new(StoredDevice { record, seq }));
        self.record_changed(now, &user, Some(from));
    }

    fn on_subscribe(&mut self, now: Instant, from: PublicKey, watcher: UserName, target: UserName) {
        if !self.records.contains_key(&target) && !self.make_room_for_record() {
            return;
        }
        let max = self.config.max_subscribers_per_user;
        let record = self
            .records
            .entry(target.clone())
            .or_insert_with(UserRecord::new);
        if !record.subscribers.contains_key(&watcher) && record.subscribers.len() >= max {
            self.stats.shed += 1;
            return;
        }
        let presence = record.presence_for(&watcher);
        record.subscribers.insert(
            watcher.clone(),
            Subscriber {
                home: from,
                last: presence.clone(),
            },
        );
        // Offline is what a watcher assumes: strangers and offline users get nothing.
        if presence.status != PresenceStatus::Offline {
            self.stats.presence_fanout += 1;
            let message = SupernodeToSupernode::PresenceNotify {
                target,
                presence,
                watchers: vec![watcher],
            };
            if from == self.me.key {
                let me = self.me.key;
                self.handle_mesh(now, me, message);
            } else {
                self.send_mesh(from, message);
            }
        }
    }

    /// A user's record changed: push presence changes to subscribers' homes and tell the
    /// cachers (except `origin`, the home that caused it) that their copy is stale.
    fn record_changed(&mut self, now: Instant, user: &UserName, origin: Option<PublicKey>) {
        let Some(record) = self.records.get_mut(user) else {
            return;
        };
        let mut notify: BTreeMap<(PublicKey, PresenceStatus, String), (Presence, Vec<UserName>)> =
            BTreeMap::new();
        let watchers: Vec<UserName> = record.subscribers.keys().cloned().collect();
        for watcher in watchers {
            let presence = record.presence_for(&watcher);
            let Some(sub) = record.subscribers.get_mut(&watcher) else {
                continue;
            };
            if sub.last != presence {
                sub.last = presence.clone();
                notify
                    .entry((
                        sub.home,
                        presence.status,
                        presence.message.as_str().to_string(),
                    ))
                    .or_insert_with(|| (presence, Vec::new()))
                    .1
                    .push(watcher);
            }
        }
        let cachers: Vec<PublicKey> = std::mem::take(&mut record.cachers)
            .into_iter()
            .filter(|(k, until)| *until > now && Some(*k) != origin)
            .map(|(k, _)| k)
            .collect();
        if record.devices.is_empty() && record.subscribers.is_empty() {
            self.records.remove(user);
        }
        for ((home, _, _), (presence, watchers)) in notify {
            self.stats.presence_fanout += watchers.len() as u64;
            let message = SupernodeToSupernode::PresenceNotify {
                target: user.clone(),
                presence,
                watchers,
            };
            if home == self.me.key {
                let me = self.me.key;
                self.handle_mesh(now, me, message);
            } else {
                self.send_mesh(home, message);
            }
        }
        for cacher in cachers {
            if cacher == self.me.key {
                self.cache.remove(user);
            } else {
                self.send_mesh(
                    cacher,
                    SupernodeToSupernode::Invalidate { user: user.clone() },
                );
            }
        }
        self.cache.remove(user);
    }

    fn on_presence_notify(
        &mut self,
        target: UserName,
        presence: Presence,
        watchers: Vec<UserName>,
    ) {
        let presence = presence.as_seen_by_others();
        let mut deliveries = Vec::new();
        for watcher in watchers.iter().take(MAX_SUBSCRIPTION_PAIRS) {
            let Some(devices) = self.homed.get(watcher) else {
                continue;
            };
            for client in devices.values() {
                let Some(session) = self.conns.get_mut(client).and_then(|c| c.session.as_mut())
                else {
                    continue;
                };
                if !session.watch.contains(&target) {
                    continue;
                }
                let before = session
                    .seen
                    .get(&target)
                    .cloned()
                    .unwrap_or_else(Presence::offline);
                if before != presence {
                    session.seen.insert(target.clone(), presence.clone());
                    deliveries.push(*client);
                }
            }
        }
        for client in deliveries {
            self.send_client(
                client,
                SupernodeToClient::PresenceChanged {
                    user: target.clone(),
                    presence: presence.clone(),
                },
            );
        }
    }

    fn mesh_record(&self, user: &UserName, viewer: &UserName) -> Option<MeshRecord> {
        let record = self.records.get(user)?;
        let credential = record.newest_credential()?.clone();
        let claims = credential.claims_unverified().ok()?;
        let homes = record
            .devices
            .iter()
            .filter(|(_, d)| d.record.presence.status != PresenceStatus::Invisible)
            .map(|(k, d)| (*k, d.record.home))
            .collect();
        let route_homes = record
            .devices
            .iter()
            .map(|(k, d)| (*k, d.record.home))
            .collect();
        Some(MeshRecord {
            user: user.clone(),
            display_name: claims.display_name,
            credential,
            homes,
            route_homes,
            presence: record.presence_for(viewer),
        })
    }

    // ---------------------------------------------------------------- time -----------

    /// When [`Self::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    /// Expires idle clients, stalled lookups, login requests and routes.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.config.tick;
        let wall = self.wall(now);
        let mut idle = Vec::new();
        let mut expired = Vec::new();
        let mut offers = Vec::new();
        let mut unwoken = Vec::new();
        let park_after = self.config.park_after;
        // Visiting every session is the cost that grows with idle clients, so it runs once a
        // second; every tick only while a wake is being retried (its intervals are short).
        if self.sweep_every_tick || now >= self.next_sweep {
            self.next_sweep = now + SESSION_SWEEP.max(self.config.tick);
            let mut waking = false;
            for (id, conn) in &mut self.conns {
                if conn.app_sent {
                    conn.app_sent = false;
                    conn.last_app = now;
                }
                match &mut conn.park {
                    ParkState::Ready(_)
                        if !park_after.is_zero()
                            && conn.session.is_some()
                            && now.saturating_duration_since(conn.last_app) >= park_after =>
                    {
                        offers.push(*id);
                    }
                    ParkState::Parked(parked) => {
                        if let Some(wake) = &mut parked.wake {
                            waking = true;
                            let deadline =
                                *wake.deadline.get_or_insert(now + self.config.wake_deadline);
                            let next_at = *wake.next_at.get_or_insert(now + wake.interval);
                            if now >= deadline {
                                unwoken.push(*id);
                            } else if now >= next_at {
                                wake.interval = wake.interval.saturating_mul(2);
                                wake.next_at = Some(now + wake.interval);
                                let datagram = parked.seal(ParkKind::Wake);
                                self.stats.wakes += 1;
                                self.commands.push_back(Command::SendDatagram {
                                    to: parked.addr,
                                    datagram,
                                });
                            }
                        }
                    }
                    _ => {}
                }
                let silent = now.saturating_duration_since(conn.last_rx);
                match &conn.session {
                    Some(session) if session.expires_at <= wall => expired.push(*id),
                    Some(_) if silent >= self.config.client_timeout => idle.push(*id),
                    None if now.saturating_duration_since(conn.connected_at)
                        >= self.config.hello_timeout
                        || silent >= self.config.client_timeout =>
                    {
                        idle.push(*id)
                    }
                    _ => {}
                }
            }
            self.sweep_every_tick = waking;
        }
        for client in idle {
            // A parked client that stopped heartbeating is gone: no wake for its goodbye.
            if !self.is_parked(client) {
                self.send_client(
                    client,
                    SupernodeToClient::Goodbye {
                        reason: GoodbyeReason::IdleTimeout,
                    },
                );
            }
            self.close_client(now, client);
        }
        for client in unwoken {
            self.close_client(now, client);
        }
        for client in offers {
            let token = ParkToken(self.rng.random());
            let Some(conn) = self.conns.get_mut(&client) else {
                continue;
            };
            let ParkState::Ready(link) = std::mem::replace(&mut conn.park, ParkState::Unavailable)
            else {
                continue;
            };
            conn.park = ParkState::Offered { link, token };
            self.stats.park_offers += 1;
            self.send_client(client, SupernodeToClient::ParkOffer { token });
        }
        for client in expired {
            self.send_client(
                client,
                SupernodeToClient::Goodbye {
                    reason: GoodbyeReason::CredentialInvalid,
                },
            );
            self.close_client(now, client);
        }
        let stalled: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in stalled {
            if let Some(asked) = self.lookups.get(&id).and_then(|p| p.asked) {
                self.unreachable
                    .insert(asked, now + self.config.unreachable_backoff);
            }
            self.advance_lookup(now, id);
        }
        let late: Vec<u64> = self
            .logins
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.handle_login_failed(now, id);
        }
        let late: Vec<u64> = self
            .routes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(pending) = self.routes.remove(&id) {
                let outcome = if pending.delivered {
                    RouteOutcome::Delivered
                } else {
                    RouteOutcome::Unreachable
                };
                self.finish_route(pending.origin, outcome);
            }
        }
        self.cache.expire(now);
        self.prefix_cache.expire(now);
        let retry: Vec<PublicKey> = self
            .unreachable
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| *k)
            .collect();
        self.unreachable.retain(|_, until| *until > now);
        for peer in retry {
            self.resync_peer(now, peer);
        }
    }

    /// Sends `peer` again what it holds for this supernode's sessions: the records of
    /// users it is responsible for and the watches on users it is responsible for.
    /// Mesh links are fire-and-forget, so whatever was queued on a link that failed is
    /// gone; without this a record or subscription lost that way would stay lost until
    /// the user changed something or the directory moved responsibility.
    fn resync_peer(&mut self, now: Instant, peer: PublicKey) {
        if peer == self.me.key || !self.members.contains_key(&peer) {
            return;
        }
        let mut publishes = Vec::new();
        let mut pairs = BTreeSet::new();
        for conn in self.conns.values() {
            let Some(session) = &conn.session else {
                continue;
            };
            if self.responsible(&session.user).contains(&peer) {
                publishes.push((session.user.clone(), conn.device));
            }
            for watched in &session.watch {
                if self.responsible(watched).contains(&peer) {
                    pairs.insert((session.user.clone(), watched.clone()));
                }
            }
        }
        for (user, device) in publishes {
            if let Some(message) = self.publish_record_message(now, &user, &device) {
                self.send_mesh(peer, message);
            }
        }
        let pairs: Vec<(UserName, UserName)> = pairs.into_iter().collect();
        self.send_pairs(now, peer, pairs, true);
    }

    /// Tells every client and mesh peer that this supernode is leaving.
    pub fn shutdown(&mut self, now: Instant) {
        let clients: Vec<ClientId> = self.conns.keys().copied().collect();
        for client in clients {
            if !self.is_parked(client) {
                self.send_client(
                    client,
                    SupernodeToClient::Goodbye {
                        reason: GoodbyeReason::ShuttingDown,
                    },
                );
            }
            self.close_client(now, client);
        }
        let peers: Vec<PublicKey> = self
            .members
            .keys()
            .filter(|k| **k != self.me.key)
            .copied()
            .collect();
        for peer in peers {
            self.send_mesh(peer, SupernodeToSupernode::Goodbye);
        }
    }

    /// The next effect for the shell to perform.
    pub fn poll_command(&mut self) -> Option<Command> {
        #[cfg(feature = "test-tamper")]
        if self.commands.is_empty()
            && let Some(hook) = &self.config.tamper
        {
            for (device, message) in hook.0.inject() {
                for (client, conn) in &self.conns {
                    if conn.device == device {
                        self.commands.push_back(Command::SendToClient {
                            client: *client,
                            message: message.clone(),
                        });
                    }
                }
            }
        }
        self.commands.pop_front()
    }
}

#[cfg(test)]
mod tests;

/// Queues `message` for a parked client: a newer presence change of the same user replaces
/// the waiting one; when full, the oldest presence change goes first, else the oldest
/// message.
fn queue_for_parked(queue: &mut VecDeque<SupernodeToClient>, message: SupernodeToClient) {
    if let SupernodeToClient::PresenceChanged { user, .. } = &message
        && let Some(waiting) = queue
            .iter_mut()
            .find(|m| matches!(m, SupernodeToClient::PresenceChanged { user: u, .. } if u == user))
    {
        *waiting = message;
        return;
    }
    if queue.len() >= PARK_QUEUE {
        let presence = queue
            .iter()
            .position(|m| matches!(m, SupernodeToClient::PresenceChanged { .. }));
        match presence {
            Some(index) => {
                queue.remove(index);
            }
            None => {
                queue.pop_front();
            }
        }
    }
    queue.push_back(message);
}
