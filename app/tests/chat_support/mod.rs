//! Two or more `ChatService`s (each over its own profile's SQLite store) joined by an
//! in-memory, seeded, lossy router on virtual time, with an offline mailbox. A node can be
//! killed at any step boundary: its service is dropped without closing (everything in
//! memory is gone: held-back messages, queued receipts, timers, unpolled transmits) and
//! reopened from its database, possibly after a while offline.

#![allow(dead_code)]

use app::engine::chat::{ChatOutput, ChatService};
use app::events::Event;
use app::history::{Durability, History};
use client_core::chat::{ChatConfig, DeviceCrypto, PeerCrypto};
use proto::credential::DEFAULT_CREDENTIAL_LIFETIME;
use proto::login::Envelope;
use proto::peer::{PeerEnvelopeError, PeerToPeer};
use proto::supernode::RouteOutcome;
use proto::{Credential, DisplayName, PublicKey, SecretKey, SignedCredential, UnixTime, UserName};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

pub const WALL: UnixTime = UnixTime::from_secs(1_800_000_000);

pub fn user(name: &str) -> UserName {
    UserName::new(name).expect("valid user name")
}

/// Stands in for real sealing in runs of thousands of messages (the same addressing and
/// sender identity, no cryptography); the real `DeviceCrypto` runs in the smaller tests.
pub struct PlainCrypto {
    credential: Credential,
}

impl PlainCrypto {
    pub fn new(credential: Credential) -> Self {
        Self { credential }
    }
}

pub fn claims(name: &str, device: PublicKey) -> Credential {
    Credential {
        serial: 1,
        user: user(name),
        display_name: DisplayName::default(),
        device_key: device,
        issued_at: WALL,
        expires_at: WALL.saturating_add(DEFAULT_CREDENTIAL_LIFETIME),
    }
}

fn malformed<E>(_: E) -> PeerEnvelopeError {
    PeerEnvelopeError::Malformed
}

/// What a payload carries between test nodes: recipients, sender, message.
pub fn open_plain(
    payload: &[u8],
) -> Result<(Vec<PublicKey>, Credential, PeerToPeer), PeerEnvelopeError> {
    serde_json::from_slice(payload).map_err(malformed)
}

impl PeerCrypto for PlainCrypto {
    fn local_user(&self) -> &UserName {
        &self.credential.user
    }
    fn seal(&self, to: &PublicKey, message: &PeerToPeer) -> Result<Vec<u8>, PeerEnvelopeError> {
        serde_json::to_vec(&(vec![*to], &self.credential, message)).map_err(malformed)
    }
    fn seal_offline(
        &self,
        to: &[PublicKey],
        message: &PeerToPeer,
    ) -> Result<Vec<u8>, PeerEnvelopeError> {
        serde_json::to_vec(&(to.to_vec(), &self.credential, message)).map_err(malformed)
    }
    fn open(
        &self,
        _wall: UnixTime,
        payload: &[u8],
    ) -> Result<(Credential, PeerToPeer), PeerEnvelopeError> {
        let (to, sender, message) = open_plain(payload)?;
        if !to.contains(&self.credential.device_key) {
            return Err(PeerEnvelopeError::NotForUs);
        }
        Ok((sender, message))
    }
    fn open_offline(
        &self,
        wall: UnixTime,
        sealed: &[u8],
    ) -> Result<(Credential, PeerToPeer), PeerEnvelopeError> {
        self.open(wall, sealed)
    }
}

/// One device: its profile directory, its service (None while killed and offline) and
/// what it showed and learned across all its incarnations.
pub struct Node {
    pub name: UserName,
    pub key: PublicKey,
    pub profile: tempfile::TempDir,
    make_crypto: Box<dyn Fn() -> Box<dyn PeerCrypto>>,
    pub service: Option<ChatService>,
    /// `chat` events shown: (from, id, text).
    pub shown: Vec<(UserName, String, String)>,
    pub accepted: BTreeMap<String, bool>,
    pub delivered: BTreeSet<String>,
    pub kills: u32,
}

impl Node {
    pub fn service(&mut self) -> &mut ChatService {
        self.service.as_mut().expect("node is online")
    }
}

struct InFlight {
    at: Instant,
    order: u64,
    to: PublicKey,
    payload: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

pub struct Net {
    pub now: Instant,
    pub start: Instant,
    pub rng: StdRng,
    pub nodes: BTreeMap<PublicKey, Node>,
    /// Chance a routed payload is lost on the way.
    pub loss: f64,
    pub delay_millis: std::ops::Range<u64>,
    pub config: ChatConfig,
    pub durability: Durability,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    /// The login server's offline mailbox per user, in storing order.
    pub mailbox: BTreeMap<UserName, Vec<Envelope>>,
    store_acks: Vec<(Instant, PublicKey, proto::MessageId)>,
    /// When each offline node comes back.
    pub offline_until: BTreeMap<PublicKey, Instant>,
    pub authority: SecretKey,
}

impl Net {
    pub fn new(seed: u64, config: ChatConfig) -> Self {
        let now = Instant::now();
        Self {
            now,
            start: now,
            rng: StdRng::seed_from_u64(seed),
            nodes: BTreeMap::new(),
            loss: 0.0,
            delay_millis: 5..40,
            config,
            durability: Durability::ProcessCrash,
            in_flight: BinaryHeap::new(),
            order: 0,
            mailbox: BTreeMap::new(),
            store_acks: Vec::new(),
            offline_until: BTreeMap::new(),
            authority: SecretKey::generate_with(&mut StdRng::seed_from_u64(seed ^ 0xa11)),
        }
    }

    pub fn wall_millis(&self) -> u64 {
        WALL.as_secs() * 1000 + u64::try_from((self.now - self.start).as_millis()).expect("fits")
    }

    /// Adds a device with real end-to-end crypto (`real`) or the plain stand-in.
    pub async fn add_node(&mut self, name: &str, real: bool) -> PublicKey {
        let secret = SecretKey::generate_with(&mut self.rng);
        let key = secret.public();
        let credential = claims(name, key);
        let make_crypto: Box<dyn Fn() -> Box<dyn PeerCrypto>> = if real {
            let signed = SignedCredential::issue(&credential, &self.authority);
            let authority = self.authority.public();
            Box::new(move || {
                Box::new(
                    DeviceCrypto::new(secret.clone(), signed.clone(), authority)
                        .expect("credential names the key"),
                )
            })
        } else {
            Box::new(move || Box::new(PlainCrypto::new(credential.clone())))
        };
        let mut node = Node {
            name: user(name),
            key,
            profile: tempfile::tempdir().expect("temp dir"),
            make_crypto,
            service: None,
            shown: Vec::new(),
            accepted: BTreeMap::new(),
            delivered: BTreeSet::new(),
            kills: 0,
        };
        node.service = Some(self.open_service(&node).await);
        self.nodes.insert(key, node);
        key
    }

    async fn open_service(&self, node: &Node) -> ChatService {
        let history = History::open_in_profile(node.profile.path(), self.durability)
            .await
            .expect("history opens");
        ChatService::with_history(history, (node.make_crypto)(), self.config.clone(), self.now)
            .await
            .expect("state loads")
    }

    /// Kills `key`'s process: drops its service unclosed, loses every payload in flight to
    /// or from it, keeps it offline for `offline`, then reopens it from its database.
    pub fn kill(&mut self, key: PublicKey, offline: Duration) {
        let node = self.nodes.get_mut(&key).expect("node exists");
        node.service = None;
        node.kills += 1;
        let others: Vec<_> = std::mem::take(&mut self.in_flight)
            .into_iter()
            .filter(|Reverse(p)| p.to != key)
            .collect();
        self.in_flight = others.into_iter().collect();
        self.store_acks.retain(|(_, k, _)| *k != key);
        self.offline_until.insert(key, self.now + offline);
    }

    async fn revive_due(&mut self) {
        let due: Vec<PublicKey> = self
            .offline_until
            .iter()
            .filter(|(_, at)| **at <= self.now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            self.offline_until.remove(&key);
            let service = self.open_service(&self.nodes[&key]).await;
            self.nodes.get_mut(&key).expect("exists").service = Some(service);
            self.fetch_mailbox(key).await;
        }
    }

    /// The engine's mailbox fetch: hand every envelope over, delete the ones it may.
    pub async fn fetch_mailbox(&mut self, key: PublicKey) {
        let now = self.now;
        let name = self.nodes[&key].name.clone();
        let envelopes = self.mailbox.get(&name).cloned().unwrap_or_default();
        for envelope in envelopes {
            let Some(service) = self.nodes.get_mut(&key).and_then(|n| n.service.as_mut()) else {
                return;
            };
            let ack = service
                .handle_mailbox(now, WALL, &envelope)
                .await
                .expect("mailbox envelope handled");
            if ack && let Some(list) = self.mailbox.get_mut(&name) {
                list.retain(|e| e.id != envelope.id);
            }
            self.drain().await;
        }
    }

    pub async fn fetch_all_mailboxes(&mut self) {
        let online: Vec<PublicKey> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.service.is_some())
            .map(|(k, _)| *k)
            .collect();
        for key in online {
            self.fetch_mailbox(key).await;
        }
    }

    pub async fn send(&mut self, from: PublicKey, to: PublicKey, text: String) -> String {
        let now = self.now;
        let wall = self.wall_millis();
        let to_name = self.nodes[&to].name.clone();
        let id = self
            .nodes
            .get_mut(&from)
            .expect("sender exists")
            .service()
            .send(now, wall, to_name, vec![to], text)
            .await
            .expect("message accepted and stored");
        self.drain().await;
        id.to_string()
    }

    /// Routes every transmit and takes every output, until nothing moves.
    pub async fn drain(&mut self) {
        loop {
            let mut moved = false;
            let keys: Vec<PublicKey> = self.nodes.keys().copied().collect();
            for key in keys {
                loop {
                    let now = self.now;
                    let Some(t) = self
                        .nodes
                        .get_mut(&key)
                        .and_then(|n| n.service.as_mut())
                        .and_then(|s| s.poll_transmit())
                    else {
                        break;
                    };
                    moved = true;
                    let online = self
                        .nodes
                        .get(&t.to_device)
                        .is_some_and(|n| n.service.is_some());
                    let outcome = if online {
                        if self.rng.random::<f64>() >= self.loss {
                            let delay = self.rng.random_range(self.delay_millis.clone());
                            self.order += 1;
                            self.in_flight.push(Reverse(InFlight {
                                at: now + Duration::from_millis(delay),
                                order: self.order,
                                to: t.to_device,
                                payload: t.payload,
                            }));
                        }
                        RouteOutcome::Delivered
                    } else {
                        RouteOutcome::Offline
                    };
                    self.nodes
                        .get_mut(&key)
                        .expect("exists")
                        .service()
                        .handle_route_status(now, t.token, outcome);
                }
                while let Some(node) = self.nodes.get_mut(&key) {
                    let Some(service) = node.service.as_mut() else {
                        break;
                    };
                    let Some(output) = service.next_output().await.expect("history writes") else {
                        break;
                    };
                    moved = true;
                    match output {
                        ChatOutput::Event(Event::Chat { from, id, text, .. }) => {
                            node.shown.push((from, id, text));
                        }
                        ChatOutput::Event(Event::ChatAccepted { id, stored, .. }) => {
                            assert!(
                                node.accepted.insert(id, stored).is_none(),
                                "chat_accepted twice"
                            );
                        }
                        ChatOutput::Event(Event::ChatDelivered { id, .. }) => {
                            assert!(node.delivered.insert(id), "chat_delivered twice");
                        }
                        ChatOutput::Event(other) => panic!("unexpected event {other:?}"),
                        ChatOutput::StoreOffline(envelope) => {
                            let list = self.mailbox.entry(envelope.to.clone()).or_default();
                            if !list.iter().any(|e| e.id == envelope.id) {
                                list.push(envelope.clone());
                            }
                            self.store_acks.push((
                                self.now + Duration::from_millis(30),
                                key,
                                envelope.id,
                            ));
                        }
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// The next instant something happens, if before `until`.
    fn next_event(&self, until: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.in_flight.peek().map(|Reverse(p)| p.at));
        for node in self.nodes.values() {
            consider(node.service.as_ref().and_then(|s| s.poll_timeout()));
        }
        for (at, _, _) in &self.store_acks {
            consider(Some(*at));
        }
        for at in self.offline_until.values() {
            consider(Some(*at));
        }
        next.filter(|n| *n <= until)
    }

    /// Runs the network until `until` (virtual time).
    pub async fn run_until(&mut self, until: Instant) {
        loop {
            self.drain().await;
            let Some(next) = self.next_event(until) else {
                break;
            };
            self.now = self.now.max(next);
            let now = self.now;
            self.revive_due().await;
            while self.in_flight.peek().is_some_and(|Reverse(p)| p.at <= now) {
                let Some(Reverse(packet)) = self.in_flight.pop() else {
                    break;
                };
                let Some(node) = self.nodes.get_mut(&packet.to) else {
                    continue;
                };
                let Some(service) = node.service.as_mut() else {
                    continue;
                };
                // The engine opens routed payloads once and hands chat ones over.
                let crypto = (node.make_crypto)();
                let Ok((sender, message)) = crypto.open(WALL, &packet.payload) else {
                    panic!("payload does not open");
                };
                service
                    .handle_message(now, &sender, message)
                    .await
                    .expect("chat message handled");
                self.drain().await;
            }
            let due: Vec<_> = self
                .store_acks
                .iter()
                .filter(|(at, _, _)| *at <= now)
                .copied()
                .collect();
            self.store_acks.retain(|(at, _, _)| *at > now);
            for (_, key, id) in due {
                if let Some(service) = self.nodes.get_mut(&key).and_then(|n| n.service.as_mut()) {
                    service
                        .handle_stored(now, id)
                        .await
                        .expect("history writes");
                }
            }
            for node in self.nodes.values_mut() {
                if let Some(service) = node.service.as_mut()
                    && service.poll_timeout().is_some_and(|t| t <= now)
                {
                    service.handle_timeout(now).await.expect("history writes");
                }
            }
        }
        self.now = self.now.max(until);
        self.revive_due().await;
        self.drain().await;
    }

    pub async fn run_for(&mut self, span: Duration) {
        let until = self.now + span;
        self.run_until(until).await;
    }
}
