//! Homing: choosing a supernode by measured round-trip time, staying homed with
//! keep-alives, noticing a dead supernode within 10 s and re-homing with jittered
//! exponential backoff.
//!
//! Sans-IO: the shell owns the QUIC connections. After every `handle_*` call, drain
//! [`Homing::poll_transmit`] (open a connection to `to` when none is open) and
//! [`Homing::poll_event`], then arm a timer for [`Homing::poll_timeout`].
//!
//! Parking ([`proto::park`]): when the home supernode offers to park an idle session and
//! the shell handed over the connection's exported park key
//! ([`Homing::handle_park_key`]), homing accepts; once `Parked`, it tells the shell to close
//! the connection ([`HomingEvent::Disconnect`]) and sends sealed heartbeat datagrams
//! ([`Homing::poll_datagram`], from the QUIC socket) instead of pings. A wake datagram
//! ([`Homing::handle_datagram`]) or anything the app sends makes it resume on a new
//! connection; messages wait meanwhile. While parked the standby is not pinged either, so
//! an idle client holds no connection. The app sees parking only as latency.
//!
//! What it does not do: verify search results ([`crate::search::verify_hit`]), decrypt routed
//! payloads, or fetch the directory (the app seeds the host cache with
//! [`Homing::add_supernodes`]).

use crate::host_cache::HostCache;
use proto::park::{self, ParkDirection, ParkKey, ParkKind, ParkToken, ReplayWindow};
use proto::supernode::{
    ClientToSupernode, ErrorCode, GoodbyeReason, Presence, SearchQuery, SupernodeContact,
    SupernodeToClient,
};
use proto::{PublicKey, SignedCredential, UserName};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{RngExt as _, SeedableRng as _};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Messages the app sends while a parked session resumes, held until it has; beyond this
/// the oldest are dropped (the cores above retransmit what matters).
pub const MAX_HELD: usize = 256;

/// How soon an unanswered heartbeat is repeated.
pub const HEARTBEAT_RETRY: Duration = Duration::from_secs(1);

/// Park keys remembered, one per supernode connection (home, standby, probes).
const MAX_PARK_KEYS: usize = 8;

/// Tunables. The defaults meet the targets: keep-alive well under 25 s, a dead supernode
/// noticed within 10 s. Every heartbeat costs the supernode a datagram each way, so the
/// interval is the longest that still leaves three attempts (at 6, 7 and 8 s after the last
/// answered one, [`HEARTBEAT_RETRY`] apart) before the 9 s `dead_after`: two lost datagrams
/// in a row do not make a parked client re-home.
#[derive(Debug, Clone)]
pub struct HomingConfig {
    /// How often to ping the home supernode.
    pub keepalive_interval: Duration,
    /// Silence from the home supernode after which it is declared dead.
    pub dead_after: Duration,
    /// How many supernodes to probe when choosing a home.
    pub probe_fanout: usize,
    /// How long to wait for probe answers.
    pub probe_timeout: Duration,
    /// How long to wait for `Welcome` after `Hello`.
    pub connect_timeout: Duration,
    /// The first re-homing attempt after losing a home waits a random delay up to this, so
    /// the clients of a dead supernode do not all reconnect at once.
    pub rehome_jitter: Duration,
    /// Backoff after failed attempts: a random delay up to `base * 2^attempt`, capped.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How often the standby supernode is pinged to keep it known alive.
    pub standby_check_interval: Duration,
    /// Supernodes that failed this recently are tried last.
    pub skip_failed_for: Duration,
    /// Accept the home supernode's offers to park an idle session (heartbeats at
    /// `keepalive_interval`, a silent home declared dead after `dead_after`, as when live).
    pub parking: bool,
}

impl Default for HomingConfig {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(6),
            dead_after: Duration::from_secs(9),
            probe_fanout: 4,
            probe_timeout: Duration::from_millis(1500),
            connect_timeout: Duration::from_secs(3),
            rehome_jitter: Duration::from_secs(1),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            standby_check_interval: Duration::from_secs(30),
            skip_failed_for: Duration::from_secs(60),
            parking: true,
        }
    }
}

/// A message for the shell to send to one supernode.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    pub to: SupernodeContact,
    pub message: ClientToSupernode,
}

/// What happened, for the app.
#[derive(Debug, Clone, PartialEq)]
pub enum HomingEvent {
    /// Homed at this supernode (first time or after re-homing).
    Homed { supernode: SupernodeContact },
    /// The home supernode died or left; re-homing is under way.
    Lost { supernode: SupernodeContact },
    /// The supernode refused the credential or protocol version: homing stopped until
    /// [`Homing::set_credential`].
    Refused { error: ErrorCode },
    /// A message from the home supernode that homing does not consume (presence, search
    /// results, routed payloads, errors).
    Message(SupernodeToClient),
    /// The shell may close its connection to this supernode.
    Disconnect { supernode: SupernodeContact },
    /// The host cache is empty: add supernodes (from the directory).
    NeedSupernodes,
}

/// A request needs a home supernode and there is none right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not homed at a supernode")]
pub struct NotHomed;

#[derive(Debug)]
enum State {
    Probing {
        deadline: Instant,
        answered: Vec<(SupernodeContact, u32)>,
        asked: Vec<SupernodeContact>,
    },
    Waiting {
        until: Instant,
        attempt: u32,
    },
    Connecting {
        target: SupernodeContact,
        deadline: Instant,
        attempt: u32,
    },
    Homed {
        home: SupernodeContact,
        last_rx: Instant,
        next_ping: Instant,
        /// `ParkAccept` sent, `Parked` not yet received: app messages are held.
        parking: Option<Box<ClientPark>>,
    },
    /// No connection: heartbeats keep the session at `home`.
    Parked {
        home: SupernodeContact,
        park: Box<ClientPark>,
        last_rx: Instant,
        next_heartbeat: Instant,
        /// When the oldest heartbeat still unanswered was sent: until an answer comes,
        /// heartbeats repeat every [`HEARTBEAT_RETRY`] (a lost datagram is not a dead home).
        unanswered_since: Option<Instant>,
    },
    /// `Resume` sent on a new connection, `Resumed` not yet received.
    Resuming {
        home: SupernodeContact,
        park: Box<ClientPark>,
        deadline: Instant,
    },
    Stopped,
}

/// One parked session's datagram state.
#[derive(Debug)]
struct ClientPark {
    token: ParkToken,
    key: ParkKey,
    /// When `ParkAccept` was sent: without `Parked` soon, the session stays live.
    accepted_at: Instant,
    tx_counter: u64,
    rx: ReplayWindow,
}

impl ClientPark {
    fn seal(&mut self) -> Vec<u8> {
        self.tx_counter += 1;
        park::seal(&self.key, ParkKind::Heartbeat, self.token, self.tx_counter)
    }
}

/// The homing state machine. See the module docs.
#[derive(Debug)]
pub struct Homing {
    config: HomingConfig,
    credential: SignedCredential,
    presence: Presence,
    authorized: Vec<UserName>,
    watch: Vec<UserName>,
    cache: HostCache,
    rng: StdRng,
    state: State,
    standby: Option<SupernodeContact>,
    next_standby_check: Instant,
    /// Outstanding pings: nonce → (supernode, sent at).
    pings: BTreeMap<u64, (SupernodeContact, Instant)>,
    next_nonce: u64,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<HomingEvent>,
    /// The park key of the newest connection to each supernode (the home, the standby,
    /// probed ones), the newest last; at most [`MAX_PARK_KEYS`].
    park_keys: VecDeque<(PublicKey, ParkKey)>,
    /// App messages waiting for a parked session to resume.
    held: VecDeque<ClientToSupernode>,
    datagrams: VecDeque<(SocketAddr, Vec<u8>)>,
    /// The latest `now` seen, for methods that take none.
    clock: Instant,
}

impl Homing {
    /// Starts choosing a home among the cached supernodes.
    pub fn new(
        config: HomingConfig,
        credential: SignedCredential,
        presence: Presence,
        cache: HostCache,
        seed: u64,
        now: Instant,
    ) -> Self {
        let mut homing = Self {
            next_standby_check: now + config.standby_check_interval,
            config,
            credential,
            presence,
            authorized: Vec::new(),
            watch: Vec::new(),
            cache,
            rng: StdRng::seed_from_u64(seed),
            state: State::Waiting {
                until: now,
                attempt: 0,
            },
            standby: None,
            pings: BTreeMap::new(),
            next_nonce: 1,
            next_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            park_keys: VecDeque::new(),
            held: VecDeque::new(),
            datagrams: VecDeque::new(),
            clock: now,
        };
        homing.start_probing(now);
        homing
    }

    /// The host cache, to store in the profile.
    pub fn host_cache(&self) -> &HostCache {
        &self.cache
    }

    /// The current home, if homed (parked counts).
    pub fn home(&self) -> Option<SupernodeContact> {
        match &self.state {
            State::Homed { home, .. }
            | State::Parked { home, .. }
            | State::Resuming { home, .. } => Some(*home),
            _ => None,
        }
    }

    /// Whether the session is parked (or resuming): no connection to the home is needed.
    pub fn is_parked(&self) -> bool {
        matches!(self.state, State::Parked { .. } | State::Resuming { .. })
    }

    /// The parked session's token, which its datagrams carry: a shell serving many
    /// sessions on one socket routes the supernode's datagrams by it
    /// ([`proto::park::decode_header`]).
    pub fn park_token(&self) -> Option<ParkToken> {
        match &self.state {
            State::Parked { park, .. } | State::Resuming { park, .. } => Some(park.token),
            _ => None,
        }
    }

    /// The shell opened a QUIC connection to `supernode` and exported `key` from it
    /// ([`proto::park::PARK_EXPORTER_LABEL`]): the session on it may be parked.
    pub fn handle_park_key(&mut self, supernode: PublicKey, key: ParkKey) {
        self.park_keys.retain(|(k, _)| *k != supernode);
        if self.park_keys.len() >= MAX_PARK_KEYS {
            self.park_keys.pop_front();
        }
        self.park_keys.push_back((supernode, key));
    }

    /// A datagram with the park first byte on the QUIC socket: a heartbeat's answer keeps
    /// the parked home alive, a wake resumes the session. Its source address does not
    /// matter (only the park key authenticates), so the shell may pass any. Anything that
    /// does not open under the park key is ignored.
    pub fn handle_datagram(&mut self, now: Instant, _from: SocketAddr, datagram: &[u8]) {
        self.clock = now;
        let (State::Parked { park, .. } | State::Resuming { park, .. }) = &mut self.state else {
            return;
        };
        let Ok(header) = park::open(
            &park.key,
            park.token,
            ParkDirection::SupernodeToClient,
            &mut park.rx,
            datagram,
        ) else {
            return;
        };
        if let State::Parked {
            last_rx,
            next_heartbeat,
            unanswered_since,
            ..
        } = &mut self.state
        {
            *last_rx = now;
            if let Some(sent) = unanswered_since.take() {
                *next_heartbeat = sent + self.config.keepalive_interval;
            }
            if header.kind == ParkKind::Wake {
                self.resume(now);
            }
        }
    }

    /// The next park datagram to send from the QUIC socket.
    pub fn poll_datagram(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.datagrams.pop_front()
    }

    /// Opens a new connection (the shell does, for the `Resume` transmit) for a parked
    /// session.
    fn resume(&mut self, now: Instant) {
        let State::Parked { home, park, .. } = std::mem::replace(&mut self.state, State::Stopped)
        else {
            return;
        };
        let mut park = park;
        let proof = park.seal();
        let token = park.token;
        self.state = State::Resuming {
            home,
            park,
            deadline: now + self.config.connect_timeout,
        };
        self.push(home, ClientToSupernode::Resume { token, proof });
    }

    /// Sends an app message to the home: now when the session is live, after resuming
    /// when parked.
    fn push_app(&mut self, message: ClientToSupernode) {
        match &self.state {
            State::Homed {
                home,
                parking: None,
                ..
            } => {
                let home = *home;
                self.push(home, message);
            }
            State::Homed { .. } | State::Parked { .. } | State::Resuming { .. } => {
                if self.held.len() >= MAX_HELD {
                    self.held.pop_front();
                }
                self.held.push_back(message);
                if matches!(self.state, State::Parked { .. }) {
                    self.resume(self.clock);
                }
            }
            _ => {}
        }
    }

    fn flush_held(&mut self, to: SupernodeContact) {
        while let Some(message) = self.held.pop_front() {
            self.push(to, message);
        }
    }

    /// The supernode tried first when the home fails.
    pub fn standby(&self) -> Option<SupernodeContact> {
        self.standby
    }

    /// Adds supernodes (from the directory or a bootstrap list) to the host cache; wakes
    /// homing up if it was waiting for some.
    pub fn add_supernodes(
        &mut self,
        now: Instant,
        contacts: impl IntoIterator<Item = SupernodeContact>,
    ) {
        let was_empty = self.cache.is_empty();
        for contact in contacts {
            self.cache.insert(contact);
        }
        if was_empty && !self.cache.is_empty() && matches!(self.state, State::Waiting { .. }) {
            self.start_probing(now);
        }
    }

    /// Presents a refreshed credential (re-homing after [`HomingEvent::Refused`]).
    pub fn set_credential(&mut self, now: Instant, credential: SignedCredential) {
        self.credential = credential;
        self.clock = now;
        match self.state {
            State::Homed { .. } | State::Parked { .. } | State::Resuming { .. } => {
                self.push_app(self.hello())
            }
            State::Stopped => self.start_probing(now),
            _ => {}
        }
    }

    /// Sets this device's presence (kept across re-homing).
    pub fn set_presence(&mut self, presence: Presence) {
        self.presence = presence.clone();
        if self.home().is_some() {
            self.push_app(ClientToSupernode::SetPresence { presence });
        }
    }

    /// Sets who may see this user's presence (kept across re-homing).
    pub fn set_authorized(&mut self, contacts: Vec<UserName>) {
        self.authorized = contacts.clone();
        if self.home().is_some() {
            self.push_app(ClientToSupernode::SetAuthorized { contacts });
        }
    }

    /// Sets whose presence to receive (kept across re-homing).
    pub fn set_watch(&mut self, contacts: Vec<UserName>) {
        self.watch = contacts.clone();
        if self.home().is_some() {
            self.push_app(ClientToSupernode::Watch { contacts });
        }
    }

    /// Sends any message to the home supernode.
    pub fn send(&mut self, message: ClientToSupernode) -> Result<(), NotHomed> {
        self.home().ok_or(NotHomed)?;
        self.push_app(message);
        Ok(())
    }

    /// Starts a search; the answer arrives as a `Message` event with the returned id.
    pub fn search(&mut self, query: SearchQuery) -> Result<u32, NotHomed> {
        self.home().ok_or(NotHomed)?;
        let query_id = u32::try_from(self.next_id & u64::from(u32::MAX)).unwrap_or(0);
        self.next_id += 1;
        self.push_app(ClientToSupernode::Search { query_id, query });
        Ok(query_id)
    }

    /// Routes an end-to-end encrypted payload; the outcome arrives as a `RouteStatus`
    /// message with the returned id.
    pub fn route(
        &mut self,
        to: UserName,
        to_device: Option<PublicKey>,
        payload: Vec<u8>,
    ) -> Result<u64, NotHomed> {
        self.home().ok_or(NotHomed)?;
        let id = self.next_id;
        self.next_id += 1;
        self.push_app(ClientToSupernode::Route {
            id,
            to,
            to_device,
            payload,
        });
        Ok(id)
    }

    /// Logs off: tells the home supernode and stops.
    pub fn shutdown(&mut self) {
        if matches!(self.state, State::Parked { .. }) {
            // The goodbye follows the resume on the new connection, without waiting.
            self.resume(self.clock);
        }
        if let Some(home) = self.home() {
            self.push(home, ClientToSupernode::Goodbye);
        }
        self.state = State::Stopped;
    }

    fn push(&mut self, to: SupernodeContact, message: ClientToSupernode) {
        self.transmits.push_back(Transmit { to, message });
    }

    fn hello(&self) -> ClientToSupernode {
        ClientToSupernode::Hello {
            version: proto::PROTOCOL_VERSION,
            credential: self.credential.clone(),
            presence: self.presence.clone(),
        }
    }

    fn ping(&mut self, now: Instant, to: SupernodeContact) {
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.pings.insert(nonce, (to, now));
        self.push(to, ClientToSupernode::Ping { nonce });
    }

    fn start_probing(&mut self, now: Instant) {
        let ranked = self.cache.ranked(now, self.config.skip_failed_for);
        if ranked.is_empty() {
            self.state = State::Waiting {
                until: now + self.config.backoff_max,
                attempt: 0,
            };
            self.events.push_back(HomingEvent::NeedSupernodes);
            return;
        }
        let fanout = self.config.probe_fanout.max(1);
        let mut asked: Vec<SupernodeContact> = ranked
            .iter()
            .take(fanout.saturating_sub(1).max(1))
            .copied()
            .collect();
        // One random pick explores supernodes the ranking has not measured yet.
        let rest: Vec<SupernodeContact> = ranked.iter().skip(asked.len()).copied().collect();
        if asked.len() < fanout
            && let Some(extra) = rest.choose(&mut self.rng)
        {
            asked.push(*extra);
        }
        for contact in &asked {
            self.ping(now, *contact);
        }
        self.state = State::Probing {
            deadline: now + self.config.probe_timeout,
            answered: Vec::new(),
            asked,
        };
    }

    fn finish_probing(&mut self, now: Instant) {
        let State::Probing {
            answered, asked, ..
        } = std::mem::replace(&mut self.state, State::Stopped)
        else {
            return;
        };
        let mut answered = answered;
        answered.sort_by_key(|(c, rtt)| (*rtt, c.key));
        for contact in &asked {
            if !answered.iter().any(|(c, _)| c == contact) {
                self.cache.record_failure(&contact.key, now);
            }
        }
        let Some((best, _)) = answered.first().copied() else {
            self.schedule_retry(now, 1);
            return;
        };
        self.standby = answered.get(1).map(|(c, _)| *c);
        for contact in asked {
            if contact != best && Some(contact) != self.standby {
                self.events
                    .push_back(HomingEvent::Disconnect { supernode: contact });
            }
        }
        self.connect(now, best, 0);
    }

    fn connect(&mut self, now: Instant, target: SupernodeContact, attempt: u32) {
        let hello = self.hello();
        self.push(target, hello);
        self.state = State::Connecting {
            target,
            deadline: now + self.config.connect_timeout,
            attempt,
        };
    }

    /// The best candidate: the standby unless it failed recently, else the ranking.
    fn connect_next(&mut self, now: Instant, attempt: u32) {
        let ranked = self.cache.ranked(now, self.config.skip_failed_for);
        let recently_failed = |cache: &HostCache, c: &SupernodeContact| {
            cache
                .entry(&c.key)
                .and_then(|e| e.failed_at)
                .is_some_and(|t| now.saturating_duration_since(t) < self.config.skip_failed_for)
        };
        let target = match self.standby.take() {
            Some(standby) if !recently_failed(&self.cache, &standby) => Some(standby),
            _ => ranked.first().copied(),
        };
        let Some(target) = target else {
            self.events.push_back(HomingEvent::NeedSupernodes);
            self.schedule_retry(now, attempt + 1);
            return;
        };
        self.connect(now, target, attempt);
    }

    fn schedule_retry(&mut self, now: Instant, attempt: u32) {
        let cap = self
            .config
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.config.backoff_max);
        let delay = self.jitter(cap);
        self.state = State::Waiting {
            until: now + delay,
            attempt,
        };
    }

    fn jitter(&mut self, max: Duration) -> Duration {
        let max_millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.rng.random_range(0..=max_millis))
    }

    fn lose_home(&mut self, now: Instant, home: SupernodeContact) {
        self.cache.record_failure(&home.key, now);
        if self.standby == Some(home) {
            self.standby = None;
        }
        self.events.push_back(HomingEvent::Lost { supernode: home });
        self.events
            .push_back(HomingEvent::Disconnect { supernode: home });
        self.pings.retain(|_, (c, _)| *c != home);
        let delay = self.jitter(self.config.rehome_jitter);
        self.state = State::Waiting {
            until: now + delay,
            attempt: 0,
        };
    }

    fn attempt_failed(&mut self, now: Instant, target: SupernodeContact, attempt: u32) {
        self.cache.record_failure(&target.key, now);
        self.events
            .push_back(HomingEvent::Disconnect { supernode: target });
        self.schedule_retry(now, attempt + 1);
    }

    fn choose_standby(&mut self, now: Instant) {
        let home = self.home();
        self.standby = self
            .cache
            .ranked(now, self.config.skip_failed_for)
            .into_iter()
            .find(|c| Some(*c) != home);
    }

    /// A message from supernode `from` (the key its TLS handshake proved).
    pub fn handle_message(&mut self, now: Instant, from: PublicKey, message: SupernodeToClient) {
        self.clock = now;
        if let SupernodeToClient::Pong { nonce, .. } = &message {
            if let Some((contact, sent)) = self.pings.remove(nonce)
                && contact.key == from
            {
                let rtt = u32::try_from(now.saturating_duration_since(sent).as_millis())
                    .unwrap_or(u32::MAX);
                self.cache.record_rtt(&from, rtt);
                if let State::Probing {
                    answered, asked, ..
                } = &mut self.state
                    && asked.contains(&contact)
                {
                    answered.push((contact, rtt));
                    if answered.len() == asked.len() {
                        self.finish_probing(now);
                        return;
                    }
                }
            }
            if let State::Homed { home, last_rx, .. } = &mut self.state
                && home.key == from
            {
                *last_rx = now;
            }
            return;
        }
        match &mut self.state {
            State::Connecting {
                target, attempt, ..
            } if target.key == from => {
                let (target, attempt) = (*target, *attempt);
                match message {
                    SupernodeToClient::Welcome { host_cache, .. } => {
                        for contact in host_cache {
                            self.cache.insert(contact);
                        }
                        self.state = State::Homed {
                            home: target,
                            last_rx: now,
                            next_ping: now + self.config.keepalive_interval,
                            parking: None,
                        };
                        if self.standby.is_none_or(|s| s == target) {
                            self.choose_standby(now);
                        }
                        self.events
                            .push_back(HomingEvent::Homed { supernode: target });
                        if !self.authorized.is_empty() {
                            let contacts = self.authorized.clone();
                            self.push(target, ClientToSupernode::SetAuthorized { contacts });
                        }
                        if !self.watch.is_empty() {
                            let contacts = self.watch.clone();
                            self.push(target, ClientToSupernode::Watch { contacts });
                        }
                        self.flush_held(target);
                    }
                    SupernodeToClient::Busy { alternatives } => {
                        for contact in alternatives {
                            self.cache.insert(contact);
                        }
                        self.cache.record_failure(&target.key, now);
                        self.events
                            .push_back(HomingEvent::Disconnect { supernode: target });
                        // A busy supernode answered quickly: move on without backoff.
                        self.connect_next(now, attempt + 1);
                    }
                    SupernodeToClient::Error { code } => self.on_error(now, target, attempt, code),
                    SupernodeToClient::Goodbye { .. } => self.attempt_failed(now, target, attempt),
                    _ => {}
                }
            }
            State::Homed { home, last_rx, .. } if home.key == from => {
                *last_rx = now;
                let home = *home;
                match message {
                    SupernodeToClient::Goodbye { reason } => {
                        if reason == GoodbyeReason::CredentialInvalid {
                            self.state = State::Stopped;
                            self.events.push_back(HomingEvent::Refused {
                                error: ErrorCode::CredentialRefused {
                                    reason: "credential invalid".into(),
                                },
                            });
                        } else {
                            self.lose_home(now, home);
                        }
                    }
                    SupernodeToClient::HostCache { supernodes } => {
                        for contact in supernodes {
                            self.cache.insert(contact);
                        }
                    }
                    SupernodeToClient::Error {
                        code: code @ ErrorCode::CredentialRefused { .. },
                    } => {
                        self.state = State::Stopped;
                        self.events.push_back(HomingEvent::Refused { error: code });
                    }
                    SupernodeToClient::Welcome { .. } => {}
                    SupernodeToClient::ParkOffer { token } => self.on_park_offer(now, home, token),
                    SupernodeToClient::Parked { token } => self.on_parked(now, home, token),
                    other => self.events.push_back(HomingEvent::Message(other)),
                }
            }
            State::Resuming { home, .. } if home.key == from => {
                let home = *home;
                match message {
                    SupernodeToClient::Resumed => {
                        self.state = State::Homed {
                            home,
                            last_rx: now,
                            next_ping: now + self.config.keepalive_interval,
                            parking: None,
                        };
                        self.flush_held(home);
                    }
                    // The parked session is gone (dropped, or the supernode restarted):
                    // home there again with the credential, on the same connection.
                    SupernodeToClient::Error { .. } => self.connect(now, home, 0),
                    SupernodeToClient::Goodbye { .. } => self.lose_home(now, home),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn on_park_offer(&mut self, now: Instant, home: SupernodeContact, token: ParkToken) {
        if !self.config.parking {
            return;
        }
        let Some(key) = self
            .park_keys
            .iter()
            .find(|(supernode, _)| *supernode == home.key)
            .map(|(_, key)| key.clone())
        else {
            return;
        };
        if let State::Homed { parking, .. } = &mut self.state
            && parking.is_none()
        {
            *parking = Some(Box::new(ClientPark {
                token,
                key,
                accepted_at: now,
                tx_counter: 0,
                rx: ReplayWindow::default(),
            }));
            self.push(home, ClientToSupernode::ParkAccept { token });
        }
    }

    fn on_parked(&mut self, now: Instant, home: SupernodeContact, token: ParkToken) {
        let State::Homed { parking, .. } = &mut self.state else {
            return;
        };
        if parking.as_ref().is_none_or(|p| p.token != token) {
            return;
        }
        let Some(park) = parking.take() else {
            return;
        };
        self.state = State::Parked {
            home,
            park,
            last_rx: now,
            next_heartbeat: now + self.config.keepalive_interval,
            unanswered_since: None,
        };
        // The key belongs to the connection that is closing now.
        self.park_keys.retain(|(k, _)| *k != home.key);
        self.pings.retain(|_, (c, _)| *c != home);
        self.events
            .push_back(HomingEvent::Disconnect { supernode: home });
        // An idle client keeps no connection at all: the standby is checked again once the
        // session is live (it stays the first choice should the home die meanwhile).
        if let Some(standby) = self.standby {
            self.pings.retain(|_, (c, _)| *c != standby);
            self.events
                .push_back(HomingEvent::Disconnect { supernode: standby });
        }
        if !self.held.is_empty() {
            self.resume(now);
        }
    }

    fn on_error(&mut self, now: Instant, target: SupernodeContact, attempt: u32, code: ErrorCode) {
        match code {
            ErrorCode::CredentialRefused { .. } | ErrorCode::UnsupportedVersion { .. } => {
                self.events
                    .push_back(HomingEvent::Disconnect { supernode: target });
                self.state = State::Stopped;
                self.events.push_back(HomingEvent::Refused { error: code });
            }
            _ => self.attempt_failed(now, target, attempt),
        }
    }

    /// The shell could not reach `supernode` (refused, handshake timeout, connection lost).
    pub fn handle_connection_failed(&mut self, now: Instant, supernode: PublicKey) {
        self.clock = now;
        self.pings.retain(|_, (c, _)| c.key != supernode);
        match &self.state {
            // The parked session outlives its connection.
            State::Parked { home, .. } if home.key == supernode => {}
            State::Resuming { home, .. } if home.key == supernode => {
                let home = *home;
                self.lose_home(now, home);
            }
            State::Connecting {
                target, attempt, ..
            } if target.key == supernode => {
                let (target, attempt) = (*target, *attempt);
                self.attempt_failed(now, target, attempt);
            }
            State::Homed { home, .. } if home.key == supernode => {
                let home = *home;
                self.lose_home(now, home);
            }
            State::Probing {
                asked, answered, ..
            } => {
                self.cache.record_failure(&supernode, now);
                let all_done = asked
                    .iter()
                    .filter(|c| c.key != supernode)
                    .all(|c| answered.iter().any(|(a, _)| a == c));
                if let State::Probing { asked, .. } = &mut self.state {
                    asked.retain(|c| c.key != supernode);
                }
                if all_done {
                    self.finish_probing(now);
                }
            }
            _ => {
                self.cache.record_failure(&supernode, now);
            }
        }
        if self.standby.is_some_and(|s| s.key == supernode) {
            self.choose_standby(now);
        }
    }

    /// Runs timers: probes, connection attempts, keep-alives, dead-home detection.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = now;
        // Unanswered pings: a standby that does not answer is replaced.
        let stale: Vec<u64> = self
            .pings
            .iter()
            .filter(|(_, (_, sent))| {
                now.saturating_duration_since(*sent) >= self.config.probe_timeout
            })
            .map(|(n, _)| *n)
            .collect();
        for nonce in stale {
            if let Some((contact, _)) = self.pings.remove(&nonce)
                && self.standby == Some(contact)
            {
                self.cache.record_failure(&contact.key, now);
                self.events
                    .push_back(HomingEvent::Disconnect { supernode: contact });
                self.choose_standby(now);
            }
        }
        match &mut self.state {
            State::Probing { deadline, .. } if now >= *deadline => self.finish_probing(now),
            State::Waiting { until, attempt } if now >= *until => {
                let attempt = *attempt;
                if self.cache.is_empty() {
                    self.start_probing(now);
                } else {
                    self.connect_next(now, attempt);
                }
            }
            State::Connecting {
                target,
                deadline,
                attempt,
            } if now >= *deadline => {
                let (target, attempt) = (*target, *attempt);
                self.attempt_failed(now, target, attempt);
            }
            State::Parked {
                home,
                park,
                last_rx,
                next_heartbeat,
                unanswered_since,
            } => {
                let home = *home;
                if now.saturating_duration_since(*last_rx) >= self.config.dead_after {
                    self.lose_home(now, home);
                    return;
                }
                if now >= *next_heartbeat {
                    unanswered_since.get_or_insert(now);
                    *next_heartbeat = now + HEARTBEAT_RETRY.min(self.config.keepalive_interval);
                    let datagram = park.seal();
                    self.datagrams.push_back((home.addr, datagram));
                }
            }
            State::Resuming { home, deadline, .. } if now >= *deadline => {
                let home = *home;
                self.lose_home(now, home);
            }
            State::Homed {
                home,
                last_rx,
                parking,
                ..
            } => {
                let home = *home;
                if now.saturating_duration_since(*last_rx) >= self.config.dead_after {
                    self.lose_home(now, home);
                    return;
                }
                if parking.as_ref().is_some_and(|p| {
                    now.saturating_duration_since(p.accepted_at) >= self.config.connect_timeout
                }) {
                    // No `Parked`: the session stays live and what waited goes now.
                    *parking = None;
                    self.flush_held(home);
                }
                let State::Homed { next_ping, .. } = &mut self.state else {
                    return;
                };
                if now >= *next_ping {
                    *next_ping = now + self.config.keepalive_interval;
                    self.ping(now, home);
                }
                if now >= self.next_standby_check {
                    self.next_standby_check = now + self.config.standby_check_interval;
                    if let Some(standby) = self.standby {
                        self.ping(now, standby);
                    } else {
                        self.choose_standby(now);
                    }
                }
            }
            _ => {}
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the app.
    pub fn poll_event(&mut self) -> Option<HomingEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = match &self.state {
            State::Probing { deadline, .. } => Some(*deadline),
            State::Waiting { until, .. } => Some(*until),
            State::Connecting { deadline, .. } => Some(*deadline),
            State::Homed {
                last_rx,
                next_ping,
                parking,
                ..
            } => Some(
                (*next_ping)
                    .min(*last_rx + self.config.dead_after)
                    .min(if self.standby.is_some() {
                        self.next_standby_check
                    } else {
                        *next_ping
                    })
                    .min(
                        parking
                            .as_ref()
                            .map_or(*next_ping, |p| p.accepted_at + self.config.connect_timeout),
                    ),
            ),
            State::Parked {
                last_rx,
                next_heartbeat,
                ..
            } => Some((*next_heartbeat).min(*last_rx + self.config.dead_after)),
            State::Resuming { deadline, .. } => Some(*deadline),
            State::Stopped => None,
        };
        let ping = self
            .pings
            .values()
            .map(|(_, sent)| *sent + self.config.probe_timeout)
            .min();
        match (state, ping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests;
