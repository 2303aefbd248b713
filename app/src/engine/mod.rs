//! The client engine shared by the CLI and the desktop app: one tokio task that owns the
//! session and drives the sans-IO cores of `client-core` with real connections.
//!
//! [`Engine::start`] logs nothing in by itself: it takes a valid credential (the CLI and the
//! app get one with [`crate::login_client`]), fetches the signed supernode directory, homes
//! with [`Homing`] over real QUIC connections ([`links`]), keeps the buddy list in step with
//! the login server (presence rights and watch list, `contact_request` / `contact_added`),
//! refreshes the credential before it expires, opens each routed payload once and hands
//! call signalling to [`calls`] and chat to [`chat::ChatService`] (the profile's history),
//! fetches the offline mailbox and keeps TURN credentials of the home supernode for call
//! paths. Everything it learns goes out as CONTRACT
//! [`Event`]s on the receiver `start` returns; requests come in through the cloneable
//! [`EngineHandle`].
//!
//! The shell is IO only: every protocol decision (which supernode, when to retransmit, what
//! a call or chat message means) stays in the cores. Calls and chats between homed users go
//! on while the login server is down; when the credential nears expiry and the login server
//! cannot be reached, [`Event::CredentialExpiring`] says so.
//!
//! What it does not do: no passwords (log in before starting), no UI, no audio (calls hand
//! their media to [`crate::call_media`] through [`calls`]).

pub mod calls;
pub mod chat;
pub mod commands;
mod links;
mod live_stats;

use crate::events::{Event, SearchResult, Status};
use crate::login_client::LoginTarget;
use crate::profile::Profile;
use chat::{ChatOutput, ChatService};
use client_core::chat::{DeviceCrypto, PeerTransmit};
use client_core::{HomingConfig, HomingEvent, HostCache, verify_hit};
use links::{Link, LinkInput, LoginLink};
use login_server::client::ClientError;
use proto::login::{Contact, ContactState, Envelope, UserInfo, UserRequest};
use proto::supernode::{
    ClientToSupernode, Presence, PresenceStatus, RouteOutcome, SearchHit, SearchPrefix,
    SearchQuery, SupernodeContact, SupernodeToClient,
};
use proto::{CallId, MessageId, PublicKey, SignedCredential, UnixTime, UserName};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

pub use calls::{CallDevices, CallOptions};
pub use client_core::Homing;

/// Events buffered for the consumer before further ones are dropped (with a warning).
const EVENT_QUEUE: usize = 4096;
/// Requests buffered for the engine task.
const COMMAND_QUEUE: usize = 64;
/// How long a search or a device lookup waits for its answers.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer a device lookup waits for the login server once the supernode answered.
const LOGIN_LOOKUP_GRACE: Duration = Duration::from_secs(1);
/// Route ids remembered for their `RouteStatus` (oldest forgotten beyond).
const MAX_ROUTES: usize = 8192;
/// Mailbox envelopes fetched per request.
const MAILBOX_BATCH: u16 = 64;
/// TURN credentials are asked for again at least this long apart.
const TURN_RETRY: Duration = Duration::from_secs(60);
/// Before expiry, a refresh that keeps failing is reported this often.
const EXPIRY_WARNING_EVERY: Duration = Duration::from_secs(60);

/// How to run the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub profile: Profile,
    pub target: LoginTarget,
    /// A credential valid for this profile's device key (see
    /// [`crate::login_client::ensure_credential`]).
    pub credential: SignedCredential,
    /// The presence to home with (`Invisible` for one-shot commands, so nobody sees the
    /// device flash online).
    pub presence: PresenceStatus,
    /// How often the buddy list is fetched from the login server.
    pub contacts_poll: Duration,
    /// Fetch the offline mailbox once homed and then this often; `None`: never.
    pub mailbox_poll: Option<Duration>,
    pub homing: HomingConfig,
    /// Home at a supernode; `false` for commands that only talk to the login server (the
    /// buddy list), so they never disturb the same device's running session.
    pub home: bool,
    /// How calls answer and which media they use.
    pub calls: CallOptions,
    /// While a call's audio runs, send [`Event::CallStats`] this often; `None`: never.
    pub live_call_stats: Option<Duration>,
}

impl EngineConfig {
    pub fn new(profile: Profile, target: LoginTarget, credential: SignedCredential) -> Self {
        Self {
            profile,
            target,
            credential,
            presence: PresenceStatus::Online,
            contacts_poll: Duration::from_secs(5),
            mailbox_poll: Some(Duration::from_secs(60)),
            homing: HomingConfig::default(),
            home: true,
            calls: CallOptions::default(),
            live_call_stats: None,
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    #[error("the stored credential is unusable: {0}")]
    Credential(String),
    #[error("network: {0}")]
    Network(String),
    #[error("not connected to any supernode yet")]
    NotHomed,
    #[error("login server: {0}")]
    Login(String),
    #[error("{0} did not answer in time")]
    Timeout(&'static str),
    #[error("search failed: {0}")]
    Search(String),
    #[error("user {0} was not found")]
    NoSuchUser(UserName),
    #[error("{0} has no device that can be reached")]
    NoDevices(UserName),
    #[error("chat: {0}")]
    Chat(String),
    #[error("call: {0}")]
    Call(String),
    /// A peer's key or credential failed the checks against the login server's authority
    /// (a supernode substituting keys); the message starts with "identity check failed".
    #[error("{0}")]
    Identity(String),
    #[error("the supernode runs no TURN relay")]
    NoRelay,
    #[error("the engine has stopped")]
    Stopped,
}

impl From<ClientError> for EngineError {
    fn from(e: ClientError) -> Self {
        Self::Login(e.to_string())
    }
}

/// A buddy-list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactAction {
    List,
    Add(UserName),
    Accept(UserName),
    Decline(UserName),
    Remove(UserName),
    Block(UserName),
}

/// TURN credentials from the home supernode (CONTRACT's `turn-credentials` object).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TurnCredentials {
    pub urls: Vec<String>,
    pub username: String,
    pub password: String,
    pub ttl_s: u32,
}

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

enum Command {
    Search {
        query: String,
        reply: Reply<Vec<SearchResult>>,
    },
    ContactsChanged(Vec<Contact>),
    SendChat {
        to: UserName,
        text: String,
        reply: Reply<MessageId>,
    },
    Dial {
        to: UserName,
        reply: Reply<CallId>,
    },
    AddParticipant {
        call_id: CallId,
        user: UserName,
        reply: Reply<()>,
    },
    Call(calls::CallCommand, Reply<()>),
    SetPresence(PresenceStatus),
    SetStatus(Presence),
    SetDevices(calls::CallDevices),
    SetCapture(crate::call_media::CaptureOptions),
    TurnCredentials(Reply<TurnCredentials>),
    FetchMailbox,
    Home(Reply<Option<SocketAddr>>),
    Shutdown(oneshot::Sender<()>),
    /// A fresh credential issued outside the engine (a display-name change).
    AdoptCredential(SignedCredential),
}

/// Requests to a running engine. Cheap to clone; every method fails with
/// [`EngineError::Stopped`] once the engine is gone.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    login: LoginLink,
    credential: tokio::sync::watch::Receiver<SignedCredential>,
    user: UserName,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print message text.
        f.write_str(match self {
            Self::Search { .. } => "Search",
            Self::ContactsChanged(_) => "ContactsChanged",
            Self::SendChat { .. } => "SendChat",
            Self::Dial { .. } => "Dial",
            Self::AddParticipant { .. } => "AddParticipant",
            Self::Call(..) => "Call",
            Self::SetPresence(_) => "SetPresence",
            Self::SetStatus(_) => "SetStatus",
            Self::SetDevices(_) => "SetDevices",
            Self::SetCapture(_) => "SetCapture",
            Self::TurnCredentials(_) => "TurnCredentials",
            Self::FetchMailbox => "FetchMailbox",
            Self::Home(_) => "Home",
            Self::Shutdown(_) => "Shutdown",
            Self::AdoptCredential(_) => "AdoptCredential",
        })
    }
}

impl EngineHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// This engine's user.
    pub fn user(&self) -> &UserName {
        &self.user
    }

    /// The credential the engine uses now (it refreshes it on its own).
    pub fn credential(&self) -> SignedCredential {
        self.credential.borrow().clone()
    }

    /// Makes the engine use `credential` from now on, as after its own refresh (e.g. the
    /// one [`crate::login_client::set_display_name`] returns, so peers see the new name).
    /// A credential for another user or device is refused there and logged.
    pub async fn adopt_credential(&self, credential: SignedCredential) -> Result<(), EngineError> {
        self.commands
            .send(Command::AdoptCredential(credential))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// Exact user name or display-name prefix, with presence as we may see it.
    pub async fn search(&self, query: &str) -> Result<Vec<SearchResult>, EngineError> {
        let query = query.to_owned();
        self.ask(|reply| Command::Search { query, reply }).await
    }

    /// Changes the buddy list at the login server (for `List`, nothing) and returns it.
    pub async fn contacts(&self, action: ContactAction) -> Result<Vec<Contact>, EngineError> {
        let credential = self.credential.borrow().clone();
        let request = match action {
            ContactAction::List => None,
            ContactAction::Add(user) => Some(UserRequest::AddContact { user }),
            ContactAction::Accept(user) => Some(UserRequest::AcceptContact { user }),
            ContactAction::Decline(user) => Some(UserRequest::DeclineContact { user }),
            ContactAction::Remove(user) => Some(UserRequest::RemoveContact { user }),
            ContactAction::Block(user) => Some(UserRequest::BlockContact { user }),
        };
        let list = self
            .login
            .run(|conn| async move {
                if let Some(request) = request {
                    conn.contact_change(&credential, request).await?;
                }
                conn.contacts(&credential).await
            })
            .await?;
        let _ = self
            .commands
            .send(Command::ContactsChanged(list.clone()))
            .await;
        Ok(list)
    }

    /// Sends a chat message; its id names the later `chat_accepted` / `chat_delivered`.
    pub async fn send_chat(&self, to: UserName, text: String) -> Result<MessageId, EngineError> {
        self.ask(|reply| Command::SendChat { to, text, reply })
            .await
    }

    /// Calls `to` on all their devices.
    pub async fn dial(&self, to: UserName) -> Result<CallId, EngineError> {
        self.ask(|reply| Command::Dial { to, reply }).await
    }

    /// Adds `user` (all their devices ring) to a call this device placed and that is
    /// connected: a conference of up to five people, mixed here. Returns once the
    /// invitation is out; the new leg reports `call_ringing` and `call_connected` (with
    /// `peer: user`) under the same `call_id`. A participant who leaves, or never joins,
    /// ends only their own leg.
    pub async fn add_participant(
        &self,
        call_id: CallId,
        user: UserName,
    ) -> Result<(), EngineError> {
        self.ask(|reply| Command::AddParticipant {
            call_id,
            user,
            reply,
        })
        .await
    }

    /// Drops one participant from a conference this device hosts; the others go on.
    pub async fn remove_participant(
        &self,
        call_id: CallId,
        user: UserName,
    ) -> Result<(), EngineError> {
        self.ask(|reply| Command::Call(calls::CallCommand::RemoveParticipant(call_id, user), reply))
            .await
    }

    pub async fn accept(&self, call_id: CallId) -> Result<(), EngineError> {
        self.ask(|reply| Command::Call(calls::CallCommand::Accept(call_id), reply))
            .await
    }

    pub async fn decline(&self, call_id: CallId) -> Result<(), EngineError> {
        self.ask(|reply| Command::Call(calls::CallCommand::Decline(call_id), reply))
            .await
    }

    pub async fn hangup(&self, call_id: CallId) -> Result<(), EngineError> {
        self.ask(|reply| Command::Call(calls::CallCommand::Hangup(call_id), reply))
            .await
    }

    pub async fn hold(&self, call_id: CallId) -> Result<(), EngineError> {
        self.ask(|reply| Command::Call(calls::CallCommand::Hold(call_id, true), reply))
            .await
    }

    pub async fn resume(&self, call_id: CallId) -> Result<(), EngineError> {
        self.ask(|reply| Command::Call(calls::CallCommand::Hold(call_id, false), reply))
            .await
    }

    pub async fn mute(&self, call_id: CallId, muted: bool) -> Result<(), EngineError> {
        self.ask(|reply| Command::Call(calls::CallCommand::Mute(call_id, muted), reply))
            .await
    }

    /// Sets this device's presence.
    pub async fn set_presence(&self, status: PresenceStatus) -> Result<(), EngineError> {
        self.commands
            .send(Command::SetPresence(status))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// Sets this device's presence with a status message that contacts see (an
    /// invisible device's message reaches no one).
    pub async fn set_status(&self, presence: Presence) -> Result<(), EngineError> {
        self.commands
            .send(Command::SetStatus(presence))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// Uses these sound cards (device ids; `None`: the system default) from the next
    /// call on.
    pub async fn set_devices(
        &self,
        input: Option<String>,
        output: Option<String>,
    ) -> Result<(), EngineError> {
        self.commands
            .send(Command::SetDevices(calls::CallDevices { input, output }))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// Switches noise suppression and echo cancellation of sound-card microphones (the
    /// settings switches), for running calls and the next ones.
    pub async fn set_capture(
        &self,
        capture: crate::call_media::CaptureOptions,
    ) -> Result<(), EngineError> {
        self.commands
            .send(Command::SetCapture(capture))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// Short-lived TURN credentials from the home supernode.
    pub async fn turn_credentials(&self) -> Result<TurnCredentials, EngineError> {
        tokio::time::timeout(LOOKUP_TIMEOUT, self.ask(Command::TurnCredentials))
            .await
            .map_err(|_| EngineError::Timeout("the home supernode"))?
    }

    /// Fetches the offline mailbox now.
    pub async fn fetch_mailbox(&self) -> Result<(), EngineError> {
        self.commands
            .send(Command::FetchMailbox)
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// The home supernode's address, when homed.
    pub async fn home(&self) -> Result<Option<SocketAddr>, EngineError> {
        self.ask(Command::Home).await
    }

    /// Logs off (peers told, the supernode told goodbye) and stops the engine.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(4), rx).await;
        }
        self.login.close();
    }
}

/// Results of login-server requests the engine started.
enum LoginResult {
    Directory(Result<Vec<SupernodeContact>, String>),
    Contacts(Result<Vec<Contact>, ClientError>),
    Refreshed(Result<SignedCredential, ClientError>),
    Stored {
        id: MessageId,
        ok: bool,
    },
    Mailbox(Result<(Vec<Envelope>, bool), ClientError>),
    Lookup {
        resolve: u64,
        result: Result<Option<UserInfo>, ClientError>,
    },
}

/// Where a route id's `RouteStatus` goes.
#[derive(Debug, Clone, Copy)]
enum RouteOwner {
    Chat(u64),
    Call(u64),
}

/// What a finished device lookup is for.
enum ResolveThen {
    Chat {
        text: String,
        reply: Reply<MessageId>,
    },
    Dial {
        reply: Reply<CallId>,
    },
    AddParticipant {
        call_id: CallId,
        reply: Reply<()>,
    },
}

struct Resolve {
    user: UserName,
    devices: BTreeSet<PublicKey>,
    search: Option<u32>,
    login: bool,
    found: bool,
    /// A search answer carried a key for this user that the login server never certified:
    /// the supernode is substituting keys (see `HitError::is_forgery`).
    forged: Option<String>,
    deadline: Instant,
    then: ResolveThen,
}

struct PendingSearch {
    waiting: Vec<u32>,
    hits: Vec<SearchHit>,
    failure: Option<String>,
    deadline: Instant,
    reply: Reply<Vec<SearchResult>>,
}

/// The engine task. See the module docs.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// Starts the engine task. Fails when the profile or credential is unusable or no
    /// socket can be bound; unreachable servers are retried in the background.
    pub async fn start(
        config: EngineConfig,
    ) -> Result<(EngineHandle, mpsc::Receiver<Event>), EngineError> {
        let key = config.profile.device_key()?;
        // Only one process may act as this device on the network (see `Profile::lock`).
        let profile_lock = if config.home {
            Some(config.profile.lock()?)
        } else {
            None
        };
        let claims = config
            .credential
            .claims_unverified()
            .map_err(|e| EngineError::Credential(e.to_string()))?;
        let crypto = DeviceCrypto::new(
            key.clone(),
            config.credential.clone(),
            config.target.authority,
        )
        .map_err(|e| EngineError::Credential(e.to_string()))?;
        let bind: SocketAddr = if config.target.addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        // The raw side of the socket carries parked sessions' heartbeats and wakes, which
        // must leave from the QUIC port (the NAT binding the supernode knows).
        let (endpoint, raw) = transport::Endpoint::bind_with_raw(bind, &key, None)
            .map_err(|e| EngineError::Network(e.to_string()))?;
        let raw = std::sync::Arc::new(raw);
        let login = LoginLink::new(endpoint.clone(), config.target);
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (net_tx, net_rx) = mpsc::channel(1024);
        tokio::spawn(links::forward_park_datagrams(raw.clone(), net_tx.clone()));
        let (login_tx, login_rx) = mpsc::channel(256);
        let (credential_tx, credential_rx) = tokio::sync::watch::channel(config.credential.clone());

        let now = Instant::now();
        let cache = load_host_cache(&config.profile);
        let homing = Homing::new(
            config.homing.clone(),
            config.credential.clone(),
            Presence::new(config.presence),
            cache,
            rand::random(),
            now,
        );
        let (calls_tx, calls_rx) = mpsc::channel(256);
        let calls = calls::CallGlue::new(crypto.clone(), config.calls.clone(), calls_tx);
        let chat = if config.home {
            Some(
                ChatService::open(config.profile.dir(), crypto.clone(), now)
                    .await
                    .map_err(|e| EngineError::Chat(format!("history: {e}")))?,
            )
        } else {
            None
        };
        let refresh_at = refresh_time(&config.credential, now);
        let mut actor = Actor {
            user: claims.user.clone(),
            profile: config.profile.clone(),
            endpoint,
            raw,
            login: login.clone(),
            login_tx,
            net_tx,
            events: events_tx,
            credential_tx,
            key,
            authority: config.target.authority,
            credential: config.credential.clone(),
            homing,
            calls,
            chat,
            chat_store_failing: false,
            links: BTreeMap::new(),
            next_generation: 1,
            routes: BTreeMap::new(),
            searches: BTreeMap::new(),
            resolves: BTreeMap::new(),
            next_resolve: 1,
            turn_waiters: Vec::new(),
            contacts: None,
            contacts_poll: config.contacts_poll,
            next_contacts: now,
            contacts_in_flight: false,
            mailbox_poll: config.mailbox_poll,
            next_mailbox: None,
            mailbox_in_flight: false,
            refresh_at,
            refresh_in_flight: false,
            last_expiry_warning: None,
            home_reported: None,
            next_turn_refresh: None,
            directory_fetched: false,
            homing_enabled: config.home,
            stopping: false,
            _profile_lock: profile_lock,
            replays: client_core::guard::ReplayGuard::default(),
            forgery_alarms: client_core::guard::ForgeryAlarms::default(),
            live_stats: live_stats::LiveStats::new(config.live_call_stats, now),
        };
        if config.home {
            actor.fetch_directory();
        }
        let user = claims.user;
        tokio::spawn(async move {
            actor.run(commands_rx, net_rx, login_rx, calls_rx).await;
        });
        Ok((
            EngineHandle {
                commands: commands_tx,
                login,
                credential: credential_rx,
                user,
            },
            events_rx,
        ))
    }
}

fn wall_now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

fn wall_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// When to refresh: two thirds into the credential's lifetime.
fn refresh_time(credential: &SignedCredential, now: Instant) -> Instant {
    let Ok(claims) = credential.claims_unverified() else {
        return now;
    };
    let wall = wall_now();
    let lifetime = claims.issued_at.until(claims.expires_at);
    let refresh_wall = claims.issued_at.saturating_add(lifetime * 2 / 3);
    now + wall.until(refresh_wall)
}

fn host_cache_path(profile: &Profile) -> std::path::PathBuf {
    profile.dir().join("hostcache")
}

fn load_host_cache(profile: &Profile) -> HostCache {
    std::fs::read(host_cache_path(profile))
        .ok()
        .and_then(|bytes| HostCache::from_bytes(&bytes).ok())
        .unwrap_or_default()
}

fn save_host_cache(profile: &Profile, cache: &HostCache) {
    let path = host_cache_path(profile);
    let tmp = path.with_extension("tmp");
    let result = std::fs::write(&tmp, cache.to_bytes()).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(error) = result {
        debug!(%error, "cannot store the host cache");
    }
}

struct Actor {
    user: UserName,
    profile: Profile,
    endpoint: transport::Endpoint,
    /// The endpoint socket's raw side, for park datagrams.
    raw: std::sync::Arc<transport::RawUdp>,
    login: LoginLink,
    login_tx: mpsc::Sender<LoginResult>,
    net_tx: mpsc::Sender<LinkInput>,
    events: mpsc::Sender<Event>,
    credential_tx: tokio::sync::watch::Sender<SignedCredential>,
    key: proto::SecretKey,
    authority: PublicKey,
    credential: SignedCredential,
    homing: Homing,
    calls: calls::CallGlue,
    /// The chat service; `None` when not homing (one-shot buddy-list commands).
    chat: Option<ChatService>,
    /// The chat store is failing and the user was told (once per failing stretch).
    chat_store_failing: bool,
    links: BTreeMap<PublicKey, Link>,
    next_generation: u64,
    routes: BTreeMap<u64, RouteOwner>,
    searches: BTreeMap<u64, PendingSearch>,
    resolves: BTreeMap<u64, Resolve>,
    next_resolve: u64,
    turn_waiters: Vec<Reply<TurnCredentials>>,
    /// The last buddy list seen, by user.
    contacts: Option<BTreeMap<UserName, ContactState>>,
    contacts_poll: Duration,
    next_contacts: Instant,
    contacts_in_flight: bool,
    mailbox_poll: Option<Duration>,
    next_mailbox: Option<Instant>,
    mailbox_in_flight: bool,
    refresh_at: Instant,
    refresh_in_flight: bool,
    last_expiry_warning: Option<Instant>,
    home_reported: Option<PublicKey>,
    /// When to ask the home supernode for fresh TURN credentials (half their lifetime).
    next_turn_refresh: Option<Instant>,
    directory_fetched: bool,
    homing_enabled: bool,
    stopping: bool,
    /// Held for the engine's lifetime while it acts as this device on the network.
    _profile_lock: Option<std::sync::Arc<crate::profile::ProfileLock>>,
    /// Routed envelopes already handled, so a supernode's replay is not acted on again.
    replays: client_core::guard::ReplayGuard,
    /// When to tell the user about forged envelopes.
    forgery_alarms: client_core::guard::ForgeryAlarms,
    live_stats: live_stats::LiveStats,
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut net: mpsc::Receiver<LinkInput>,
        mut login: mpsc::Receiver<LoginResult>,
        mut call_inputs: mpsc::Receiver<calls::CallInput>,
    ) {
        let mut shutdown_reply = None;
        loop {
            self.pump().await;
            let deadline = self.next_deadline();
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                    Some(command) => self.handle_command(command).await,
                    None => break,
                },
                Some(input) = net.recv() => self.handle_link(input),
                Some(result) = login.recv() => self.handle_login(result).await,
                Some(input) = call_inputs.recv() => self.calls.handle_input(Instant::now(), input),
                () = sleep => self.handle_timeout().await,
            }
        }
        self.stopping = true;
        let now = Instant::now();
        self.calls.shutdown(now);
        self.pump().await;
        // Calls end with their audio stopped and recordings flushed.
        let drain = async {
            while self.calls.stopping_media() {
                match call_inputs.recv().await {
                    Some(input) => self.calls.handle_input(Instant::now(), input),
                    None => break,
                }
                self.pump().await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(2500), drain).await;
        self.calls.close_paths().await;
        self.homing.shutdown();
        self.pump().await;
        // The history (cloned: the chat core is not `Sync`, so no borrow of the service may
        // live across an await) is checkpointed and closed.
        if let Some(history) = self.chat.as_ref().map(|c| c.history().clone()) {
            history.close().await;
        }
        save_host_cache(&self.profile, self.homing.host_cache());
        // Dropping the links flushes their queues (the goodbye included) and closes them.
        self.links.clear();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// A peer's bad message is only logged; a failing chat store is told to the user once
    /// per failing stretch (nothing is lost: senders retransmit and the mailbox keeps what
    /// was not acknowledged, but nothing new arrives until it works again).
    fn chat_input_result(&mut self, result: Result<(), chat::ChatInputError>) {
        match result {
            Ok(()) => self.chat_store_failing = false,
            Err(chat::ChatInputError::Refused(error)) => {
                debug!(%error, "chat message not taken");
            }
            Err(chat::ChatInputError::History(error)) => {
                warn!(%error, "chat history cannot be written");
                if !self.chat_store_failing {
                    self.chat_store_failing = true;
                    self.emit(Event::Error {
                        message: format!(
                            "chat history cannot be written ({error}); incoming messages \
                             wait until it can"
                        ),
                    });
                }
            }
        }
    }

    fn emit(&self, event: Event) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            warn!("event consumer is too slow; an event was dropped");
        }
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut deadline = now + Duration::from_secs(30);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                deadline = deadline.min(t);
            }
        };
        consider(self.homing.poll_timeout());
        consider(self.calls.poll_timeout());
        consider(self.chat.as_ref().and_then(ChatService::poll_timeout));
        consider(Some(self.next_contacts));
        consider(self.next_mailbox);
        consider(Some(self.refresh_at));
        consider(self.next_turn_refresh);
        consider(self.live_stats.deadline());
        consider(self.searches.values().map(|s| s.deadline).min());
        consider(self.resolves.values().map(|r| r.deadline).min());
        deadline.max(now)
    }

    /// Drains every core's output until all are quiet.
    async fn pump(&mut self) {
        for _ in 0..64 {
            let mut busy = false;
            if !self.homing_enabled {
                while self.homing.poll_transmit().is_some() {}
                while self.homing.poll_event().is_some() {}
            }
            while let Some((to, datagram)) = self.homing.poll_datagram() {
                // A full socket buffer drops it: heartbeats repeat.
                let _ = self.raw.try_send_to(&datagram, to);
            }
            while let Some(transmit) = self.homing.poll_transmit() {
                busy = true;
                self.transmit(transmit.to, transmit.message);
            }
            while let Some(event) = self.homing.poll_event() {
                busy = true;
                self.handle_homing_event(event).await;
            }
            while let Some(transmit) = self.calls.poll_transmit() {
                busy = true;
                self.route(RouteOwner::Call(transmit.token), transmit);
            }
            let now = Instant::now();
            while let Some(event) = self.calls.poll_output(now) {
                busy = true;
                self.emit(event);
            }
            while let Some(transmit) = self.chat.as_mut().and_then(ChatService::poll_transmit) {
                busy = true;
                self.route(RouteOwner::Chat(transmit.token), transmit);
            }
            while let Some(chat) = self.chat.as_mut() {
                let output = match chat.next_output().await {
                    Ok(Some(output)) => output,
                    Ok(None) => break,
                    Err(error) => {
                        warn!(%error, "cannot write the chat history; chat waits");
                        break;
                    }
                };
                busy = true;
                match output {
                    ChatOutput::Event(event) => self.emit(event),
                    ChatOutput::StoreOffline(envelope) => self.store_offline(envelope),
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn transmit(&mut self, to: SupernodeContact, message: ClientToSupernode) {
        // While stopping, only a parked session's resume and goodbye open a link: the user
        // goes offline at once instead of when the supernode misses the heartbeats.
        if self.stopping
            && !self.links.contains_key(&to.key)
            && !matches!(
                message,
                ClientToSupernode::Resume { .. } | ClientToSupernode::Goodbye
            )
        {
            return;
        }
        if !self.links.contains_key(&to.key) {
            let generation = self.next_generation;
            self.next_generation += 1;
            let link = links::open_link(&self.endpoint, to, generation, self.net_tx.clone());
            self.links.insert(to.key, link);
        }
        if let Some(link) = self.links.get(&to.key)
            && !link.send(message)
        {
            debug!("supernode link queue full; a message was dropped");
        }
    }

    fn route(&mut self, owner: RouteOwner, transmit: PeerTransmit) {
        let now = Instant::now();
        match self
            .homing
            .route(transmit.to, Some(transmit.to_device), transmit.payload)
        {
            Ok(id) => {
                if self.routes.len() >= MAX_ROUTES {
                    self.routes.pop_first();
                }
                self.routes.insert(id, owner);
            }
            Err(_not_homed) => self.route_status(now, owner, RouteOutcome::Unreachable),
        }
    }

    fn route_status(&mut self, now: Instant, owner: RouteOwner, outcome: RouteOutcome) {
        match owner {
            RouteOwner::Chat(token) => {
                if let Some(chat) = self.chat.as_mut() {
                    chat.handle_route_status(now, token, outcome);
                }
            }
            RouteOwner::Call(token) => self.calls.handle_route_status(now, token, outcome),
        }
    }

    async fn handle_homing_event(&mut self, event: HomingEvent) {
        match event {
            HomingEvent::Homed { supernode } => {
                debug!(supernode = ?supernode, "homed");
                save_host_cache(&self.profile, self.homing.host_cache());
                // The home's STUN/TURN service carries call paths.
                let _ = self.homing.send(ClientToSupernode::TurnCredentialsRequest);
                if self.home_reported != Some(supernode.key) {
                    self.home_reported = Some(supernode.key);
                    self.emit(Event::LoggedIn {
                        user: self.user.clone(),
                        supernode: Some(supernode.addr.to_string()),
                    });
                }
                if self.mailbox_poll.is_some() && self.next_mailbox.is_none() {
                    self.next_mailbox = Some(Instant::now());
                }
            }
            HomingEvent::Lost { supernode } => {
                debug!(supernode = ?supernode, "lost the home supernode; re-homing");
            }
            HomingEvent::Refused { error } => {
                warn!(%error, "supernode refused the session");
                self.emit(Event::Error {
                    message: format!("supernode refused the session: {error}"),
                });
                // A refreshed credential may be what it wants.
                self.refresh_at = Instant::now();
            }
            HomingEvent::Message(message) => self.handle_supernode_message(message).await,
            HomingEvent::Disconnect { supernode } => {
                self.links.remove(&supernode.key);
            }
            HomingEvent::NeedSupernodes => {
                if !self.directory_fetched {
                    return;
                }
                self.directory_fetched = false;
                self.fetch_directory();
            }
        }
    }

    async fn handle_supernode_message(&mut self, message: SupernodeToClient) {
        let now = Instant::now();
        match message {
            SupernodeToClient::PresenceChanged { user, presence } => {
                self.emit(Event::Presence {
                    user,
                    status: Status::from(presence.status),
                    message: presence.message.as_str().to_owned(),
                });
            }
            SupernodeToClient::SearchResults { query_id, hits, .. } => {
                self.search_answer(u64::from(query_id), Ok(hits)).await;
            }
            SupernodeToClient::SearchFailed { query_id, error } => {
                self.search_answer(u64::from(query_id), Err(error.to_string()))
                    .await;
            }
            SupernodeToClient::Routed {
                from,
                from_device,
                payload,
            } => self.routed(now, &from, from_device, &payload).await,
            SupernodeToClient::RouteStatus { id, outcome } => {
                if let Some(owner) = self.routes.remove(&id) {
                    self.route_status(now, owner, outcome);
                }
            }
            SupernodeToClient::TurnCredentials {
                urls,
                username,
                password,
                ttl_s,
            } => {
                let credentials = TurnCredentials {
                    urls,
                    username,
                    password,
                    ttl_s,
                };
                let half_life = Duration::from_secs(u64::from(ttl_s) / 2);
                self.next_turn_refresh = Some(now + half_life.max(TURN_RETRY));
                self.calls.set_turn(credentials.clone());
                for waiter in self.turn_waiters.drain(..) {
                    let _ = waiter.send(Ok(credentials.clone()));
                }
            }
            SupernodeToClient::Error { code } => {
                if code == proto::supernode::ErrorCode::Unavailable {
                    for waiter in self.turn_waiters.drain(..) {
                        let _ = waiter.send(Err(EngineError::NoRelay));
                    }
                }
                debug!(%code, "supernode reported an error");
            }
            _ => {}
        }
    }

    /// `from` is the supernode's (unverified) claim of who sent it.
    async fn routed(
        &mut self,
        now: Instant,
        from: &UserName,
        from_device: PublicKey,
        payload: &[u8],
    ) {
        let wall = wall_now();
        match proto::peer::open_peer_message(&self.key, &self.authority, wall, payload) {
            Ok((sender, message)) => {
                if self
                    .replays
                    .check(wall, payload, sender.expires_at)
                    .is_err()
                {
                    debug!("a routed envelope arrived again (replayed); dropped");
                    return;
                }
                if message.call_id().is_some() {
                    self.calls.handle_message(now, wall, &sender, message);
                } else {
                    if let Some(chat) = self.chat.as_mut() {
                        let result = chat.handle_message(now, &sender, message).await;
                        self.chat_input_result(result);
                    }
                }
            }
            Err(error) => {
                debug!(%error, "a routed payload did not open");
                if client_core::guard::is_forged(&error)
                    && self.forgery_alarms.should_tell(now, from)
                {
                    self.emit(Event::Error {
                        message: format!(
                            "identity check failed: a message said to be from {from} is not \
                             signed by a key the login server certified for them (a supernode \
                             on the way substituted it); ignored: {error}"
                        ),
                    });
                }
                self.calls.handle_open_failure(now, from_device, &error);
                if client_core::guard::is_forged(&error) {
                    self.calls.handle_forged_from(now, from, &error);
                }
            }
        }
    }

    async fn search_answer(&mut self, query_id: u64, answer: Result<Vec<SearchHit>, String>) {
        // A device lookup's search?
        let resolve = self
            .resolves
            .iter()
            .find(|(_, r)| r.search.map(u64::from) == Some(query_id))
            .map(|(id, _)| *id);
        if let Some(id) = resolve {
            if let Some(r) = self.resolves.get_mut(&id) {
                r.search = None;
                if let Ok(hits) = answer {
                    let wall = wall_now();
                    for hit in hits {
                        if let Ok(claims) = verify_hit(&hit, &self.authority, wall)
                            && claims.user == r.user
                        {
                            r.found = true;
                            r.devices.insert(claims.device_key);
                        } else if hit.user == r.user {
                            r.found = true;
                            if let Err(error) = verify_hit(&hit, &self.authority, wall)
                                && error.is_forgery()
                            {
                                r.forged = Some(error.to_string());
                                r.deadline = Instant::now();
                            }
                        }
                    }
                }
                if r.login && !r.devices.is_empty() {
                    // The home supernode's answer is enough to go on with; the login
                    // server (which may be down) only adds other devices.
                    r.deadline = r.deadline.min(Instant::now() + LOGIN_LOOKUP_GRACE);
                }
            }
            self.maybe_finish_resolve(id).await;
            return;
        }
        let Some(search) = self
            .searches
            .values_mut()
            .find(|s| s.waiting.iter().any(|q| u64::from(*q) == query_id))
        else {
            return;
        };
        search.waiting.retain(|q| u64::from(*q) != query_id);
        match answer {
            Ok(hits) => search.hits.extend(hits),
            Err(reason) => search.failure = Some(reason),
        }
        self.finish_searches(Instant::now(), false);
    }

    fn finish_searches(&mut self, now: Instant, _timer: bool) {
        let done: Vec<u64> = self
            .searches
            .iter()
            .filter(|(_, s)| s.waiting.is_empty() || now >= s.deadline)
            .map(|(id, _)| *id)
            .collect();
        let wall = wall_now();
        for id in done {
            let Some(search) = self.searches.remove(&id) else {
                continue;
            };
            if search.hits.is_empty() {
                if let Some(reason) = search.failure {
                    let _ = search.reply.send(Err(EngineError::Search(reason)));
                    continue;
                }
                if !search.waiting.is_empty() {
                    let _ = search
                        .reply
                        .send(Err(EngineError::Timeout("the supernode")));
                    continue;
                }
            }
            let mut results: BTreeMap<UserName, SearchResult> = BTreeMap::new();
            for hit in search.hits {
                let display_name = match verify_hit(&hit, &self.authority, wall) {
                    Ok(claims) => claims.display_name.as_str().to_owned(),
                    // The login server's account record: nothing to verify, nothing to call.
                    Err(client_core::HitError::NoCredential) => {
                        hit.display_name.as_str().to_owned()
                    }
                    Err(error) => {
                        warn!(%error, "a search result failed verification; dropped");
                        continue;
                    }
                };
                results.entry(hit.user.clone()).or_insert(SearchResult {
                    user: hit.user,
                    display_name,
                    status: Status::from(hit.presence.status),
                });
            }
            let _ = search.reply.send(Ok(results.into_values().collect()));
        }
    }

    async fn handle_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Search { query, reply } => self.start_search(now, query, reply),
            Command::ContactsChanged(list) => self.apply_contacts(list),
            Command::SendChat { to, text, reply } => {
                self.start_resolve(now, to, ResolveThen::Chat { text, reply });
            }
            Command::Dial { to, reply } => {
                self.start_resolve(now, to, ResolveThen::Dial { reply });
            }
            Command::AddParticipant {
                call_id,
                user,
                reply,
            } => {
                self.start_resolve(now, user, ResolveThen::AddParticipant { call_id, reply });
            }
            Command::Call(command, reply) => {
                let _ = reply.send(self.calls.command(now, command));
            }
            Command::SetPresence(status) => self.homing.set_presence(Presence::new(status)),
            Command::SetStatus(presence) => self.homing.set_presence(presence),
            Command::SetDevices(devices) => self.calls.set_devices(devices),
            Command::SetCapture(capture) => self.calls.set_capture(capture),
            Command::TurnCredentials(reply) => {
                match self.homing.send(ClientToSupernode::TurnCredentialsRequest) {
                    Ok(()) => self.turn_waiters.push(reply),
                    Err(_) => {
                        let _ = reply.send(Err(EngineError::NotHomed));
                    }
                }
            }
            Command::FetchMailbox => self.fetch_mailbox(),
            Command::Home(reply) => {
                let _ = reply.send(Ok(self.homing.home().map(|h| h.addr)));
            }
            Command::Shutdown(_) => {}
            Command::AdoptCredential(credential) => self.adopt_credential(now, credential),
        }
    }

    fn start_search(&mut self, now: Instant, query: String, reply: Reply<Vec<SearchResult>>) {
        let mut queries = Vec::new();
        if let Ok(user) = UserName::new(query.as_str()) {
            queries.push(SearchQuery::Exact(user));
        }
        if let Ok(prefix) = SearchPrefix::new(query.as_str()) {
            queries.push(SearchQuery::DisplayNamePrefix(prefix));
        }
        if queries.is_empty() {
            let _ = reply.send(Err(EngineError::Search(
                "the query is neither a user name nor a display-name prefix".into(),
            )));
            return;
        }
        let mut waiting = Vec::new();
        for query in queries {
            match self.homing.search(query) {
                Ok(id) => waiting.push(id),
                Err(_) => {
                    let _ = reply.send(Err(EngineError::NotHomed));
                    return;
                }
            }
        }
        let id = u64::from(waiting[0]);
        self.searches.insert(
            id,
            PendingSearch {
                waiting,
                hits: Vec::new(),
                failure: None,
                deadline: now + LOOKUP_TIMEOUT,
                reply,
            },
        );
    }

    /// Finds `user`'s devices: the home supernode's search (verified credential) and the
    /// login server's lookup (every recent device), whichever answer in time.
    fn start_resolve(&mut self, now: Instant, user: UserName, then: ResolveThen) {
        let id = self.next_resolve;
        self.next_resolve += 1;
        let search = self.homing.search(SearchQuery::Exact(user.clone())).ok();
        let credential = self.credential.clone();
        let lookup_user = user.clone();
        let login = self.login.clone();
        let tx = self.login_tx.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(
                LOOKUP_TIMEOUT,
                login.run(|conn| async move { conn.lookup(&credential, &lookup_user).await }),
            )
            .await
            .unwrap_or(Err(ClientError::TimedOut(LOOKUP_TIMEOUT)));
            let _ = tx
                .send(LoginResult::Lookup {
                    resolve: id,
                    result,
                })
                .await;
        });
        self.resolves.insert(
            id,
            Resolve {
                user,
                devices: BTreeSet::new(),
                search,
                login: true,
                found: false,
                forged: None,
                deadline: now + LOOKUP_TIMEOUT,
                then,
            },
        );
    }

    async fn maybe_finish_resolve(&mut self, id: u64) {
        let now = Instant::now();
        let ready = self
            .resolves
            .get(&id)
            .is_some_and(|r| (r.search.is_none() && !r.login) || now >= r.deadline);
        if !ready {
            return;
        }
        let Some(resolve) = self.resolves.remove(&id) else {
            return;
        };
        let devices: Vec<PublicKey> = resolve.devices.into_iter().collect();
        let user = resolve.user;
        // Nothing goes out through a supernode caught substituting keys, even to the devices
        // the login server certified: the person is told instead.
        let forged = resolve.forged.map(|why| {
            format!(
                "identity check failed: the key a supernode gave for {user} is not one the \
                 login server certified ({why})"
            )
        });
        let missing = || {
            if resolve.found {
                EngineError::NoDevices(user.clone())
            } else {
                EngineError::NoSuchUser(user.clone())
            }
        };
        match resolve.then {
            ResolveThen::Chat { text, reply } => {
                if let Some(detail) = forged {
                    let _ = reply.send(Err(EngineError::Identity(detail)));
                    return;
                }
                if devices.is_empty() {
                    let _ = reply.send(Err(missing()));
                    return;
                }
                let result = match self.chat.as_mut() {
                    Some(chat) => chat
                        .send(now, wall_millis(), user.clone(), devices, text)
                        .await
                        .map_err(|e| EngineError::Chat(e.to_string())),
                    None => Err(EngineError::Chat("chat is off in this session".into())),
                };
                let _ = reply.send(result);
            }
            ResolveThen::Dial { reply } => {
                if let Some(detail) = forged {
                    // A call that fails before it starts: no media, nothing sent.
                    let call_id = CallId::random(&mut rand::rng());
                    self.emit(Event::CallEnded {
                        call_id: call_id.to_string(),
                        reason: crate::events::EndReason::Failed,
                        stats: crate::events::CallStats::default(),
                        detail: Some(detail),
                    });
                    let _ = reply.send(Ok(call_id));
                    return;
                }
                if devices.is_empty() {
                    let _ = reply.send(Err(missing()));
                    return;
                }
                let _ = reply.send(self.calls.dial(now, user.clone(), devices));
            }
            ResolveThen::AddParticipant { call_id, reply } => {
                if let Some(detail) = forged {
                    let _ = reply.send(Err(EngineError::Identity(detail)));
                    return;
                }
                if devices.is_empty() {
                    let _ = reply.send(Err(missing()));
                    return;
                }
                let result = self
                    .calls
                    .add_participant(now, call_id, user.clone(), devices);
                let _ = reply.send(result);
            }
        }
    }

    fn handle_link(&mut self, input: LinkInput) {
        let now = Instant::now();
        match input {
            LinkInput::Message { from, message } => self.homing.handle_message(now, from, message),
            LinkInput::ParkKey {
                key,
                generation,
                park_key,
            } => {
                if self
                    .links
                    .get(&key)
                    .is_some_and(|l| l.generation == generation)
                {
                    self.homing.handle_park_key(key, park_key);
                }
            }
            LinkInput::Datagram { from, datagram } => {
                self.homing.handle_datagram(now, from, &datagram);
            }
            LinkInput::Ended { key, generation } => {
                if self
                    .links
                    .get(&key)
                    .is_some_and(|l| l.generation == generation)
                {
                    self.links.remove(&key);
                    self.homing.handle_connection_failed(now, key);
                }
            }
        }
    }

    async fn handle_timeout(&mut self) {
        let now = Instant::now();
        self.homing.handle_timeout(now);
        self.calls.handle_timeout(now);
        self.emit_live_stats(now);
        if let Some(chat) = self.chat.as_mut()
            && let Err(error) = chat.handle_timeout(now).await
        {
            warn!(%error, "cannot write the chat history");
        }
        self.finish_searches(now, true);
        let due: Vec<u64> = self
            .resolves
            .iter()
            .filter(|(_, r)| now >= r.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.maybe_finish_resolve(id).await;
        }
        if now >= self.next_contacts && !self.contacts_in_flight {
            self.fetch_contacts();
        }
        if self.next_mailbox.is_some_and(|t| now >= t) && !self.mailbox_in_flight {
            self.fetch_mailbox();
        }
        if self.next_turn_refresh.is_some_and(|t| now >= t) {
            // Answered by fresh credentials (which set the next refresh) or not at all.
            self.next_turn_refresh = Some(now + TURN_RETRY);
            let _ = self.homing.send(ClientToSupernode::TurnCredentialsRequest);
        }
        if now >= self.refresh_at && !self.refresh_in_flight {
            self.refresh_credential();
        }
    }

    // ---- the login server ----

    fn spawn_login<F>(&self, work: F)
    where
        F: std::future::Future<Output = LoginResult> + Send + 'static,
    {
        let tx = self.login_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(work.await).await;
        });
    }

    fn fetch_directory(&mut self) {
        let login = self.login.clone();
        let authority = self.authority;
        self.spawn_login(async move {
            let result = login
                .run(|conn| async move { conn.directory().await })
                .await
                .map_err(|e| e.to_string())
                .and_then(|signed| {
                    signed
                        .verify(&authority, wall_now())
                        .map_err(|e| e.to_string())
                })
                .map(|directory| {
                    directory
                        .entries
                        .iter()
                        .map(|e| SupernodeContact {
                            key: e.key,
                            addr: e.addrs.quic,
                        })
                        .collect()
                });
            LoginResult::Directory(result)
        });
    }

    fn fetch_contacts(&mut self) {
        self.contacts_in_flight = true;
        let login = self.login.clone();
        let credential = self.credential.clone();
        self.spawn_login(async move {
            LoginResult::Contacts(
                login
                    .run(|conn| async move { conn.contacts(&credential).await })
                    .await,
            )
        });
    }

    fn fetch_mailbox(&mut self) {
        if self.mailbox_in_flight {
            return;
        }
        self.mailbox_in_flight = true;
        let login = self.login.clone();
        let credential = self.credential.clone();
        self.spawn_login(async move {
            LoginResult::Mailbox(
                login
                    .run(|conn| async move { conn.fetch_mailbox(&credential, MAILBOX_BATCH).await })
                    .await,
            )
        });
    }

    fn store_offline(&mut self, envelope: Envelope) {
        let login = self.login.clone();
        let credential = self.credential.clone();
        let id = envelope.id;
        self.spawn_login(async move {
            let ok = login
                .run(|conn| async move { conn.store_offline(&credential, envelope).await })
                .await
                .is_ok();
            LoginResult::Stored { id, ok }
        });
    }

    fn adopt_credential(&mut self, now: Instant, credential: SignedCredential) {
        let same_holder = match (
            credential.claims_unverified(),
            self.credential.claims_unverified(),
        ) {
            (Ok(new), Ok(old)) => new.user == old.user && new.device_key == old.device_key,
            _ => false,
        };
        if same_holder {
            self.set_credential(now, credential);
        } else {
            warn!("refused a credential for another user or device");
        }
    }

    fn refresh_credential(&mut self) {
        self.refresh_in_flight = true;
        let login = self.login.clone();
        let credential = self.credential.clone();
        self.spawn_login(async move {
            LoginResult::Refreshed(
                login
                    .run(|conn| async move { conn.refresh(&credential).await })
                    .await,
            )
        });
    }

    async fn handle_login(&mut self, result: LoginResult) {
        let now = Instant::now();
        match result {
            LoginResult::Directory(Ok(contacts)) => {
                self.directory_fetched = true;
                self.homing.add_supernodes(now, contacts);
            }
            LoginResult::Directory(Err(reason)) => {
                self.directory_fetched = true;
                warn!(%reason, "cannot fetch the supernode directory");
                if self.homing.host_cache().is_empty() {
                    self.emit(Event::Error {
                        message: format!("cannot fetch the supernode directory: {reason}"),
                    });
                }
            }
            LoginResult::Contacts(result) => {
                self.contacts_in_flight = false;
                self.next_contacts = now + self.contacts_poll;
                match result {
                    Ok(list) => self.apply_contacts(list),
                    Err(error) => debug!(%error, "cannot fetch the buddy list"),
                }
            }
            LoginResult::Refreshed(Ok(credential)) => {
                self.refresh_in_flight = false;
                self.set_credential(now, credential);
            }
            LoginResult::Refreshed(Err(error)) => {
                self.refresh_in_flight = false;
                debug!(%error, "cannot refresh the credential");
                let left = self
                    .credential
                    .claims_unverified()
                    .map(|c| wall_now().until(c.expires_at))
                    .unwrap_or_default();
                self.refresh_at =
                    now + (left / 8).clamp(Duration::from_secs(2), Duration::from_secs(30));
                if self
                    .last_expiry_warning
                    .is_none_or(|t| now.saturating_duration_since(t) >= EXPIRY_WARNING_EVERY)
                {
                    self.last_expiry_warning = Some(now);
                    self.emit(Event::CredentialExpiring {
                        expires_in_s: left.as_secs(),
                    });
                }
            }
            LoginResult::Stored { id, ok } => {
                if let Some(chat) = self.chat.as_mut() {
                    let result = if ok {
                        chat.handle_stored(now, id).await
                    } else {
                        chat.handle_store_failed(now, id).await
                    };
                    if let Err(error) = result {
                        warn!(%error, "cannot write the chat history");
                    }
                }
            }
            LoginResult::Mailbox(result) => {
                self.mailbox_in_flight = false;
                self.next_mailbox = self.mailbox_poll.map(|every| now + every);
                match result {
                    Ok((envelopes, more)) => {
                        self.mailbox(now, envelopes).await;
                        if more {
                            self.next_mailbox = Some(now);
                        }
                    }
                    Err(error) => debug!(%error, "cannot fetch the mailbox"),
                }
            }
            LoginResult::Lookup { resolve, result } => {
                if let Some(r) = self.resolves.get_mut(&resolve) {
                    r.login = false;
                    if let Ok(Some(info)) = result {
                        let wall = wall_now();
                        r.found = true;
                        for credential in info.credentials {
                            if let Ok(claims) = credential.verify(&self.authority, wall)
                                && claims.user == r.user
                            {
                                r.devices.insert(claims.device_key);
                            }
                        }
                    }
                }
                self.maybe_finish_resolve(resolve).await;
            }
        }
    }

    fn set_credential(&mut self, now: Instant, credential: SignedCredential) {
        let crypto = match DeviceCrypto::new(self.key.clone(), credential.clone(), self.authority) {
            Ok(crypto) => crypto,
            Err(error) => {
                warn!(%error, "the login server issued an unusable credential");
                self.refresh_at = now + Duration::from_secs(30);
                return;
            }
        };
        if let Err(error) = self.profile.save_credential(&credential) {
            warn!(%error, "cannot store the refreshed credential");
        }
        self.credential = credential.clone();
        let _ = self.credential_tx.send(credential.clone());
        self.homing.set_credential(now, credential.clone());
        self.calls.set_crypto(crypto.clone());
        if let Some(chat) = self.chat.as_mut() {
            chat.set_crypto(crypto);
        }
        self.refresh_at = refresh_time(&credential, now);
        self.last_expiry_warning = None;
    }

    async fn mailbox(&mut self, now: Instant, envelopes: Vec<Envelope>) {
        let wall = wall_now();
        let mut acks = Vec::new();
        for envelope in &envelopes {
            let Some(chat) = self.chat.as_mut() else {
                return;
            };
            match chat.handle_mailbox(now, wall, envelope).await {
                Ok(true) => {
                    acks.push(envelope.id);
                    self.chat_input_result(Ok(()));
                }
                Ok(false) => {}
                Err(error) => self.chat_input_result(Err(error)),
            }
        }
        // The chat service persisted what it handed over; events go out before the ack.
        self.pump().await;
        if acks.is_empty() {
            return;
        }
        let login = self.login.clone();
        let credential = self.credential.clone();
        tokio::spawn(async move {
            if let Err(error) = login
                .run(|conn| async move { conn.ack_mailbox(&credential, acks).await })
                .await
            {
                debug!(%error, "cannot acknowledge mailbox envelopes");
            }
        });
    }

    fn apply_contacts(&mut self, list: Vec<Contact>) {
        let new: BTreeMap<UserName, ContactState> =
            list.iter().map(|c| (c.user.clone(), c.state)).collect();
        let first = self.contacts.is_none();
        let old = self.contacts.take().unwrap_or_default();
        for (user, state) in &new {
            let before = old.get(user);
            match state {
                ContactState::RequestReceived if before != Some(state) => {
                    self.emit(Event::ContactRequest { from: user.clone() });
                }
                ContactState::Accepted if before != Some(state) && !first => {
                    self.emit(Event::ContactAdded { user: user.clone() });
                }
                _ => {}
            }
        }
        let accepted: Vec<UserName> = new
            .iter()
            .filter(|(_, s)| **s == ContactState::Accepted)
            .map(|(u, _)| u.clone())
            .collect();
        let old_accepted: Vec<UserName> = old
            .iter()
            .filter(|(_, s)| **s == ContactState::Accepted)
            .map(|(u, _)| u.clone())
            .collect();
        if first || accepted != old_accepted {
            self.homing.set_authorized(accepted.clone());
            self.homing.set_watch(accepted);
        }
        self.contacts = Some(new);
    }
}
