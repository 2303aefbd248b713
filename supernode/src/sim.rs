//! A deterministic many-node simulation: supernode cores, clients running
//! [`client_core::Homing`], a model login server and directory, all on virtual time in one
//! process, with a seeded link-latency model.
//!
//! Used by the many-node tests and the `supernode_sim` benchmark. Nothing here reads the
//! clock for logic: `Instant::now()` is read once as the origin of virtual time.
//!
//! The model: every message takes `link_latency ± link_jitter` one way and links are FIFO.
//! A message to a dead supernode is lost; opening a connection to a dead supernode fails
//! after [`SimConfig::connect_failure_delay`]. The login server answers after one round trip
//! and drops a killed supernode from the directory after [`SimConfig::directory_delay`].

use crate::core::{ClientId, Command, Config, Supernode};
use client_core::{Homing, HomingConfig, HomingEvent, HostCache};
use proto::login::UserInfo;
use proto::supernode::{
    ClientToSupernode, Presence, SearchQuery, SupernodeContact, SupernodeToClient,
    SupernodeToSupernode,
};
use proto::{Credential, DisplayName, PublicKey, SecretKey, SignedCredential, UnixTime, UserName};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{RngExt as _, SeedableRng as _};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The simulation's shape and link model.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub supernodes: usize,
    pub clients: usize,
    /// Accounts that exist only at the login server (never online), for fallback searches.
    pub offline_users: usize,
    pub seed: u64,
    /// One-way latency of every link.
    pub link_latency: Duration,
    /// Uniform extra latency per message, 0..jitter.
    pub link_jitter: Duration,
    /// Fixed extra latency per pair of hosts, 0..spread (near and far peers).
    pub link_spread: Duration,
    /// One-way latency to the login server.
    pub login_latency: Duration,
    /// How long after a kill the directory stops listing the supernode.
    pub directory_delay: Duration,
    /// How long a connection attempt to a dead supernode takes to fail.
    pub connect_failure_delay: Duration,
    /// How many supernodes each client's host cache starts with.
    pub host_cache_seed: usize,
    pub supernode: Config,
    pub homing: HomingConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            supernodes: 20,
            clients: 100,
            offline_users: 20,
            seed: 1,
            link_latency: Duration::from_millis(10),
            link_jitter: Duration::from_millis(5),
            link_spread: Duration::from_millis(40),
            login_latency: Duration::from_millis(40),
            directory_delay: Duration::from_secs(20),
            connect_failure_delay: Duration::from_secs(1),
            host_cache_seed: 20,
            supernode: Config::default(),
            homing: HomingConfig::default(),
        }
    }
}

/// What one simulated client has seen.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// Every presence change pushed to this client: (when, whose, what).
    pub presence: Vec<(Instant, UserName, Presence)>,
    /// The latest presence per contact.
    pub view: BTreeMap<UserName, Presence>,
    /// Search answers by query id: (asked at, answered at, answer).
    pub searches: BTreeMap<u32, (Instant, Option<(Instant, SupernodeToClient)>)>,
    /// Routed payloads received: (when, from, payload).
    pub routed: Vec<(Instant, UserName, Vec<u8>)>,
    /// Route outcomes by id.
    pub route_status: BTreeMap<u64, SupernodeToClient>,
    /// When the client was last homed, and where.
    pub homed: Option<(Instant, PublicKey)>,
    pub lost: u32,
}

/// One simulated client.
pub struct SimClient {
    pub user: UserName,
    pub display_name: DisplayName,
    pub device: PublicKey,
    pub credential: SignedCredential,
    pub homing: Homing,
    pub log: ClientLog,
    pub alive: bool,
    /// Open connections: supernode key → the id the supernode knows us by.
    conns: BTreeMap<PublicKey, ClientId>,
}

/// One simulated supernode.
pub struct SimSupernode {
    pub core: Supernode,
    pub alive: bool,
    pub killed_at: Option<Instant>,
}

#[derive(Debug)]
enum Event {
    /// A client's message reaches a supernode on connection `conn`.
    ToSupernodeFromClient {
        node: usize,
        conn: ClientId,
        message: ClientToSupernode,
    },
    ClientConnected {
        node: usize,
        conn: ClientId,
        device: PublicKey,
    },
    ClientDisconnected {
        node: usize,
        conn: ClientId,
    },
    ToClient {
        client: usize,
        from: PublicKey,
        conn: ClientId,
        message: SupernodeToClient,
    },
    ConnectFailed {
        client: usize,
        supernode: PublicKey,
    },
    /// The supernode closed the connection; the client notices after what was sent before.
    ClientConnClosed {
        client: usize,
        supernode: PublicKey,
        conn: ClientId,
    },
    Mesh {
        node: usize,
        from: PublicKey,
        message: SupernodeToSupernode,
    },
    MeshUnreachable {
        node: usize,
        peer: PublicKey,
    },
    LoginUser {
        node: usize,
        request_id: u64,
        info: Option<UserInfo>,
    },
    LoginUsers {
        node: usize,
        request_id: u64,
        users: Vec<UserInfo>,
    },
    Directory,
    SupernodeTimer(usize),
    ClientTimer(usize),
}

#[derive(Debug)]
struct Queued {
    at: Instant,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The model login server: accounts, their last home and credentials.
#[derive(Debug, Default)]
pub struct SimLogin {
    pub users: BTreeMap<UserName, UserInfo>,
    pub lookups: u64,
    pub searches: u64,
}

/// The whole simulated network.
pub struct Sim {
    pub config: SimConfig,
    pub origin: Instant,
    pub now: Instant,
    pub supernodes: Vec<SimSupernode>,
    pub clients: Vec<SimClient>,
    pub login: SimLogin,
    pub authority: SecretKey,
    by_key: HashMap<PublicKey, usize>,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    rng: StdRng,
    link_free: HashMap<(u64, u64), Instant>,
    sn_armed: Vec<Option<Instant>>,
    client_armed: Vec<Option<Instant>>,
    next_conn: u64,
    /// Which client owns a supernode-side connection id.
    conn_owner: HashMap<(usize, ClientId), usize>,
    /// Messages delivered between supernodes.
    pub mesh_messages: u64,
}

const WALL_START_SECS: u64 = 1_800_000_000;

fn user_name(i: usize) -> UserName {
    UserName::new(format!("user{i:04}")).expect("invariant: generated names are valid")
}

impl Sim {
    /// Builds the network; clients start homing at once. Nothing runs until
    /// [`Self::run_for`].
    pub fn new(config: SimConfig) -> Self {
        let origin = Instant::now();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let authority = SecretKey::generate_with(&mut rng);
        let wall = UnixTime::from_secs(WALL_START_SECS);
        let contacts: Vec<SupernodeContact> = (0..config.supernodes)
            .map(|i| {
                let key = SecretKey::generate_with(&mut rng).public();
                let ip = Ipv4Addr::new(
                    100,
                    64 + u8::try_from(i / 250).unwrap_or(0),
                    0,
                    1 + u8::try_from(i % 250).unwrap_or(0),
                );
                SupernodeContact {
                    key,
                    addr: SocketAddr::V4(SocketAddrV4::new(ip, 7500)),
                }
            })
            .collect();
        let supernodes: Vec<SimSupernode> = contacts
            .iter()
            .enumerate()
            .map(|(i, contact)| {
                let mut core = Supernode::new(
                    config.supernode.clone(),
                    *contact,
                    authority.public(),
                    origin,
                    wall,
                    config.seed.wrapping_mul(1000).wrapping_add(i as u64),
                );
                core.handle_members(origin, contacts.clone());
                SimSupernode {
                    core,
                    alive: true,
                    killed_at: None,
                }
            })
            .collect();
        let by_key = contacts
            .iter()
            .enumerate()
            .map(|(i, c)| (c.key, i))
            .collect();
        let mut login = SimLogin::default();
        let mut clients = Vec::with_capacity(config.clients);
        for i in 0..config.clients + config.offline_users {
            let user = user_name(i);
            let display_name = DisplayName::new(format!("Person {i:04}"))
                .expect("invariant: generated names are valid");
            let device = SecretKey::generate_with(&mut rng).public();
            let credential = SignedCredential::issue(
                &Credential {
                    serial: i as u64,
                    user: user.clone(),
                    display_name: display_name.clone(),
                    device_key: device,
                    issued_at: wall,
                    expires_at: wall.saturating_add(Duration::from_secs(24 * 3600)),
                },
                &authority,
            );
            login.users.insert(
                user.clone(),
                UserInfo {
                    user: user.clone(),
                    display_name: display_name.clone(),
                    last_seen: Some(wall),
                    credentials: vec![credential.clone()],
                    home_supernode: None,
                },
            );
            if i >= config.clients {
                continue;
            }
            let mut cache = HostCache::new();
            for contact in contacts.sample(&mut rng, config.host_cache_seed) {
                cache.insert(*contact);
            }
            let homing = Homing::new(
                config.homing.clone(),
                credential.clone(),
                Presence::new(proto::supernode::PresenceStatus::Online),
                cache,
                config.seed.wrapping_mul(7919).wrapping_add(i as u64),
                origin,
            );
            clients.push(SimClient {
                user,
                display_name,
                device,
                credential,
                homing,
                log: ClientLog::default(),
                alive: true,
                conns: BTreeMap::new(),
            });
        }
        let n_sn = supernodes.len();
        let n_cl = clients.len();
        let mut sim = Self {
            config,
            origin,
            now: origin,
            supernodes,
            clients,
            login,
            authority,
            by_key,
            queue: BinaryHeap::new(),
            seq: 0,
            rng,
            link_free: HashMap::new(),
            sn_armed: vec![None; n_sn],
            client_armed: vec![None; n_cl],
            next_conn: 1,
            conn_owner: HashMap::new(),
            mesh_messages: 0,
        };
        for i in 0..n_cl {
            sim.flush_client(i);
        }
        for i in 0..n_sn {
            sim.flush_supernode(i);
        }
        sim
    }

    /// Virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.origin
    }

    fn push(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// The arrival time of a message on the FIFO link `from → to`.
    fn link(&mut self, from: u64, to: u64, base: Duration) -> Instant {
        let jitter_micros = u64::try_from(self.config.link_jitter.as_micros()).unwrap_or(0);
        let extra = if jitter_micros == 0 {
            0
        } else {
            self.rng.random_range(0..jitter_micros)
        };
        let arrival = self.now + base + self.distance(from, to) + Duration::from_micros(extra);
        let free = self.link_free.entry((from, to)).or_insert(arrival);
        let at = arrival.max(*free);
        *free = at;
        at
    }

    /// A fixed extra one-way delay per pair of hosts (0 to `link_spread`), so that hosts
    /// have near and far peers and RTT-based choices matter.
    fn distance(&self, a: u64, b: u64) -> Duration {
        let spread = u64::try_from(self.config.link_spread.as_micros()).unwrap_or(0);
        if spread == 0 {
            return Duration::ZERO;
        }
        let (lo, hi) = (a.min(b), a.max(b));
        // SplitMix64 of the pair and the seed: cheap, deterministic, well spread.
        let mut z = lo
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(hi)
            .wrapping_add(self.config.seed.wrapping_mul(0xBF58_476D_1CE4_E5B9));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Duration::from_micros(z % spread)
    }

    fn sn_id(node: usize) -> u64 {
        node as u64
    }

    fn client_id(client: usize) -> u64 {
        1 << 40 | client as u64
    }

    /// Kills a supernode: it stops answering at once and drops out of the directory after
    /// [`SimConfig::directory_delay`].
    pub fn kill_supernode(&mut self, node: usize) {
        if !self.supernodes[node].alive {
            return;
        }
        self.supernodes[node].alive = false;
        self.supernodes[node].killed_at = Some(self.now);
        let at = self.now + self.config.directory_delay;
        self.push(at, Event::Directory);
    }

    /// Makes a client vanish without a goodbye (crash, network loss).
    pub fn vanish_client(&mut self, client: usize) {
        self.clients[client].alive = false;
    }

    /// Runs the simulation for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        self.run_until(end, |_| false);
    }

    /// Runs until `stop` holds (checked after every event) or `deadline`. Returns whether
    /// `stop` held.
    pub fn run_until(&mut self, deadline: Instant, mut stop: impl FnMut(&Sim) -> bool) -> bool {
        loop {
            if stop(self) {
                return true;
            }
            let Some(Reverse(next)) = self.queue.peek() else {
                self.now = deadline;
                return false;
            };
            if next.at > deadline {
                self.now = deadline;
                return false;
            }
            let Some(Reverse(next)) = self.queue.pop() else {
                return false;
            };
            self.now = self.now.max(next.at);
            self.dispatch(next.event);
        }
    }

    fn dispatch(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::ClientConnected { node, conn, device } => {
                if self.supernodes[node].alive {
                    self.supernodes[node]
                        .core
                        .handle_client_connected(now, conn, device);
                    self.flush_supernode(node);
                }
            }
            Event::ClientDisconnected { node, conn } => {
                self.conn_owner.remove(&(node, conn));
                if self.supernodes[node].alive {
                    self.supernodes[node]
                        .core
                        .handle_client_disconnected(now, conn);
                    self.flush_supernode(node);
                }
            }
            Event::ToSupernodeFromClient {
                node,
                conn,
                message,
            } => {
                if self.supernodes[node].alive {
                    self.supernodes[node]
                        .core
                        .handle_client_message(now, conn, message);
                    self.flush_supernode(node);
                }
            }
            Event::ToClient {
                client,
                from,
                conn,
                message,
            } => {
                let c = &mut self.clients[client];
                if !c.alive || c.conns.get(&from) != Some(&conn) {
                    return;
                }
                c.homing.handle_message(now, from, message);
                self.flush_client(client);
            }
            Event::ConnectFailed { client, supernode } => {
                let c = &mut self.clients[client];
                if !c.alive {
                    return;
                }
                c.conns.remove(&supernode);
                c.homing.handle_connection_failed(now, supernode);
                self.flush_client(client);
            }
            Event::ClientConnClosed {
                client,
                supernode,
                conn,
            } => {
                let c = &mut self.clients[client];
                if c.conns.get(&supernode) == Some(&conn) {
                    c.conns.remove(&supernode);
                }
            }
            Event::Mesh {
                node,
                from,
                message,
            } => {
                if self.supernodes[node].alive {
                    self.mesh_messages += 1;
                    self.supernodes[node]
                        .core
                        .handle_supernode_message(now, from, message);
                    self.flush_supernode(node);
                }
            }
            Event::MeshUnreachable { node, peer } => {
                if self.supernodes[node].alive {
                    self.supernodes[node]
                        .core
                        .handle_supernode_unreachable(now, peer);
                    self.flush_supernode(node);
                }
            }
            Event::LoginUser {
                node,
                request_id,
                info,
            } => {
                if self.supernodes[node].alive {
                    self.supernodes[node]
                        .core
                        .handle_login_user(now, request_id, info);
                    self.flush_supernode(node);
                }
            }
            Event::LoginUsers {
                node,
                request_id,
                users,
            } => {
                if self.supernodes[node].alive {
                    self.supernodes[node]
                        .core
                        .handle_login_users(now, request_id, users);
                    self.flush_supernode(node);
                }
            }
            Event::Directory => {
                let members: Vec<SupernodeContact> = self
                    .supernodes
                    .iter()
                    .filter(|s| {
                        s.alive
                            || s.killed_at
                                .is_some_and(|k| now < k + self.config.directory_delay)
                    })
                    .map(|s| s.core.me())
                    .collect();
                for node in 0..self.supernodes.len() {
                    if self.supernodes[node].alive {
                        self.supernodes[node]
                            .core
                            .handle_members(now, members.clone());
                        self.flush_supernode(node);
                    }
                }
            }
            Event::SupernodeTimer(node) => {
                if self.sn_armed[node] != Some(now) {
                    return;
                }
                self.sn_armed[node] = None;
                if self.supernodes[node].alive {
                    self.supernodes[node].core.handle_timeout(now);
                    self.flush_supernode(node);
                }
            }
            Event::ClientTimer(client) => {
                if self.client_armed[client] != Some(now) {
                    return;
                }
                self.client_armed[client] = None;
                if self.clients[client].alive {
                    self.clients[client].homing.handle_timeout(now);
                    self.flush_client(client);
                }
            }
        }
    }

    /// Performs a supernode's commands and re-arms its timer.
    fn flush_supernode(&mut self, node: usize) {
        let me = self.supernodes[node].core.me().key;
        while let Some(command) = self.supernodes[node].core.poll_command() {
            match command {
                Command::SendToClient { client, message } => {
                    let Some(owner) = self.conn_owner.get(&(node, client)).copied() else {
                        continue;
                    };
                    let at = self.link(
                        Self::sn_id(node),
                        Self::client_id(owner),
                        self.config.link_latency,
                    );
                    self.push(
                        at,
                        Event::ToClient {
                            client: owner,
                            from: me,
                            conn: client,
                            message,
                        },
                    );
                }
                Command::CloseClient { client } => {
                    if let Some(owner) = self.conn_owner.remove(&(node, client)) {
                        let at = self.link(
                            Self::sn_id(node),
                            Self::client_id(owner),
                            self.config.link_latency,
                        );
                        self.push(
                            at,
                            Event::ClientConnClosed {
                                client: owner,
                                supernode: me,
                                conn: client,
                            },
                        );
                    }
                }
                Command::SendToSupernode { to, message } => {
                    let Some(&target) = self.by_key.get(&to.key) else {
                        continue;
                    };
                    if self.supernodes[target].alive {
                        let at = self.link(
                            Self::sn_id(node),
                            Self::sn_id(target),
                            self.config.link_latency,
                        );
                        self.push(
                            at,
                            Event::Mesh {
                                node: target,
                                from: me,
                                message,
                            },
                        );
                    } else {
                        let at = self.now + self.config.connect_failure_delay;
                        self.push(at, Event::MeshUnreachable { node, peer: to.key });
                    }
                }
                Command::LookupAtLoginServer { request_id, user } => {
                    self.login.lookups += 1;
                    let info = self.login.users.get(&user).cloned();
                    let at = self.now + self.config.login_latency * 2;
                    self.push(
                        at,
                        Event::LoginUser {
                            node,
                            request_id,
                            info,
                        },
                    );
                }
                Command::SearchAtLoginServer {
                    request_id,
                    prefix,
                    limit,
                } => {
                    self.login.searches += 1;
                    let users: Vec<UserInfo> = self
                        .login
                        .users
                        .values()
                        .filter(|u| u.display_name.matches_prefix(&prefix))
                        .take(usize::from(limit))
                        .map(|u| UserInfo {
                            credentials: Vec::new(),
                            ..u.clone()
                        })
                        .collect();
                    let at = self.now + self.config.login_latency * 2;
                    self.push(
                        at,
                        Event::LoginUsers {
                            node,
                            request_id,
                            users,
                        },
                    );
                }
                Command::ReportHomed { credential } => {
                    if let Ok(claims) = credential.claims_unverified()
                        && let Some(info) = self.login.users.get_mut(&claims.user)
                    {
                        info.home_supernode = Some(me);
                        info.credentials = vec![credential];
                    }
                }
                // The simulation hands the cores no park keys, so no session is parked.
                Command::ParkClient { .. } | Command::SendDatagram { .. } => {}
            }
        }
        let next = self.supernodes[node].core.poll_timeout();
        if next != self.sn_armed[node]
            && let Some(at) = next
        {
            self.sn_armed[node] = Some(at);
            self.push(at.max(self.now), Event::SupernodeTimer(node));
        }
    }

    /// Performs a client's transmits, records its events and re-arms its timer.
    fn flush_client(&mut self, client: usize) {
        if !self.clients[client].alive {
            return;
        }
        while let Some(transmit) = self.clients[client].homing.poll_transmit() {
            let Some(&node) = self.by_key.get(&transmit.to.key) else {
                continue;
            };
            let conn = match self.clients[client].conns.get(&transmit.to.key) {
                Some(conn) => *conn,
                None => {
                    let conn = ClientId(self.next_conn);
                    self.next_conn += 1;
                    if !self.supernodes[node].alive {
                        let at = self.now + self.config.connect_failure_delay;
                        self.push(
                            at,
                            Event::ConnectFailed {
                                client,
                                supernode: transmit.to.key,
                            },
                        );
                        self.clients[client].conns.insert(transmit.to.key, conn);
                        continue;
                    }
                    self.clients[client].conns.insert(transmit.to.key, conn);
                    self.conn_owner.insert((node, conn), client);
                    // The QUIC handshake costs one round trip before the first message.
                    let at = self.link(
                        Self::client_id(client),
                        Self::sn_id(node),
                        self.config.link_latency * 2,
                    );
                    let device = self.clients[client].device;
                    self.push(at, Event::ClientConnected { node, conn, device });
                    conn
                }
            };
            if let ClientToSupernode::Search { query_id, .. } = &transmit.message {
                self.clients[client]
                    .log
                    .searches
                    .insert(*query_id, (self.now, None));
            }
            let at = self.link(
                Self::client_id(client),
                Self::sn_id(node),
                self.config.link_latency,
            );
            self.push(
                at,
                Event::ToSupernodeFromClient {
                    node,
                    conn,
                    message: transmit.message,
                },
            );
        }
        while let Some(event) = self.clients[client].homing.poll_event() {
            let now = self.now;
            let c = &mut self.clients[client];
            match event {
                HomingEvent::Homed { supernode } => c.log.homed = Some((now, supernode.key)),
                HomingEvent::Lost { .. } => {
                    c.log.lost += 1;
                    c.log.homed = None;
                }
                HomingEvent::Disconnect { supernode } => {
                    if let Some(conn) = c.conns.remove(&supernode.key)
                        && let Some(&node) = self.by_key.get(&supernode.key)
                    {
                        let at = self.link(
                            Self::client_id(client),
                            Self::sn_id(node),
                            self.config.link_latency,
                        );
                        self.push(at, Event::ClientDisconnected { node, conn });
                    }
                }
                HomingEvent::Message(message) => Self::record(c, now, message),
                HomingEvent::Refused { .. } | HomingEvent::NeedSupernodes => {}
            }
        }
        let next = self.clients[client].homing.poll_timeout();
        if next != self.client_armed[client]
            && let Some(at) = next
        {
            self.client_armed[client] = Some(at);
            self.push(at.max(self.now), Event::ClientTimer(client));
        }
    }

    fn record(c: &mut SimClient, now: Instant, message: SupernodeToClient) {
        match message {
            SupernodeToClient::PresenceChanged { user, presence } => {
                c.log.presence.push((now, user.clone(), presence.clone()));
                c.log.view.insert(user, presence);
            }
            SupernodeToClient::SearchResults { query_id, .. }
            | SupernodeToClient::SearchFailed { query_id, .. } => {
                if let Some(entry) = c.log.searches.get_mut(&query_id) {
                    entry.1 = Some((now, message));
                }
            }
            SupernodeToClient::Routed { from, payload, .. } => {
                c.log.routed.push((now, from, payload));
            }
            SupernodeToClient::RouteStatus { id, .. } => {
                c.log.route_status.insert(id, message);
            }
            _ => {}
        }
    }

    // ---------------------------------------------------------------- client actions -

    pub fn set_presence(&mut self, client: usize, presence: Presence) {
        self.clients[client].homing.set_presence(presence);
        self.flush_client(client);
    }

    pub fn set_authorized(&mut self, client: usize, contacts: Vec<UserName>) {
        self.clients[client].homing.set_authorized(contacts);
        self.flush_client(client);
    }

    pub fn set_watch(&mut self, client: usize, contacts: Vec<UserName>) {
        self.clients[client].homing.set_watch(contacts);
        self.flush_client(client);
    }

    /// Starts a search from `client`; `None` when it is not homed.
    pub fn search(&mut self, client: usize, query: SearchQuery) -> Option<u32> {
        let id = self.clients[client].homing.search(query).ok();
        self.flush_client(client);
        id
    }

    /// Routes a payload from `client` to `to`; `None` when it is not homed.
    pub fn route(&mut self, client: usize, to: UserName, payload: Vec<u8>) -> Option<u64> {
        let id = self.clients[client].homing.route(to, None, payload).ok();
        self.flush_client(client);
        id
    }

    /// The name of account `i` (clients first, then offline-only accounts).
    pub fn user(&self, i: usize) -> UserName {
        user_name(i)
    }

    /// The index of the supernode with this key.
    pub fn supernode_index(&self, key: &PublicKey) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    /// How many clients are homed right now.
    pub fn homed_clients(&self) -> usize {
        self.clients
            .iter()
            .filter(|c| c.alive && c.homing.home().is_some())
            .count()
    }

    /// Sum of every supernode's counters.
    pub fn total_stats(&self) -> crate::core::Stats {
        let mut total = crate::core::Stats::default();
        for s in &self.supernodes {
            let st = s.core.stats();
            total.searches += st.searches;
            total.searches_local += st.searches_local;
            total.searches_cached += st.searches_cached;
            total.searches_mesh += st.searches_mesh;
            total.searches_login += st.searches_login;
            total.searches_failed += st.searches_failed;
            total.search_messages += st.search_messages;
            total.presence_notifies += st.presence_notifies;
            total.presence_fanout += st.presence_fanout;
            total.presence_deliveries += st.presence_deliveries;
            total.mesh_messages_out += st.mesh_messages_out;
            total.sessions += st.sessions;
        }
        total
    }

    /// Users homed on each supernode (for picking victims).
    pub fn clients_by_home(&self) -> BTreeMap<usize, BTreeSet<usize>> {
        let mut map: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for (i, c) in self.clients.iter().enumerate() {
            if let Some(home) = c.homing.home()
                && let Some(node) = self.supernode_index(&home.key)
            {
                map.entry(node).or_default().insert(i);
            }
        }
        map
    }
}
