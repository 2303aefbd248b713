//! A virtual-time network of devices running `ChatCore`s, joined by a simulated supernode
//! router (a seeded `netsim` impairment: loss, delay, jitter, reordering, duplication) and
//! a simulated offline mailbox. Senders can be killed and rebuilt from what a shell would
//! have persisted (the outbox rows and sequence counters, updated from returned entries and
//! events).

#![allow(dead_code)]

use client_core::chat::{
    ChatConfig, ChatCore, ChatEvent, ChatState, DeviceCrypto, OutboxEntry, OutboxStage, PeerCrypto,
};
use netsim::{Impairment, ImpairmentConfig};
use proto::credential::DEFAULT_CREDENTIAL_LIFETIME;
use proto::login::Envelope;
use proto::peer::{PeerEnvelopeError, PeerToPeer};
use proto::supernode::RouteOutcome;
use proto::{
    Credential, DisplayName, MessageId, PublicKey, SecretKey, SignedCredential, UnixTime, UserName,
};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

pub const WALL: UnixTime = UnixTime::from_secs(1_800_000_000);

pub fn user(name: &str) -> UserName {
    UserName::new(name).expect("valid")
}

/// Stands in for real sealing in runs of many thousands of messages (Curve25519 in a debug
/// build costs milliseconds per operation): the same addressing and sender identity, no
/// cryptography. The real `DeviceCrypto` runs in the smaller simulations.
pub struct PlainCrypto {
    credential: Credential,
}

impl PlainCrypto {
    pub fn new(name: &str, device: PublicKey) -> Self {
        Self {
            credential: Credential {
                serial: 0,
                user: user(name),
                display_name: DisplayName::default(),
                device_key: device,
                issued_at: WALL,
                expires_at: WALL.saturating_add(DEFAULT_CREDENTIAL_LIFETIME),
            },
        }
    }
}

fn malformed<E>(_: E) -> PeerEnvelopeError {
    PeerEnvelopeError::Malformed
}

impl PeerCrypto for PlainCrypto {
    fn local_user(&self) -> &UserName {
        &self.credential.user
    }
    fn seal(&self, to: &PublicKey, message: &PeerToPeer) -> Result<Vec<u8>, PeerEnvelopeError> {
        postcard::to_allocvec(&(vec![*to], &self.credential, message)).map_err(malformed)
    }
    fn seal_offline(
        &self,
        to: &[PublicKey],
        message: &PeerToPeer,
    ) -> Result<Vec<u8>, PeerEnvelopeError> {
        postcard::to_allocvec(&(to.to_vec(), &self.credential, message)).map_err(malformed)
    }
    fn open(
        &self,
        _wall: UnixTime,
        payload: &[u8],
    ) -> Result<(Credential, PeerToPeer), PeerEnvelopeError> {
        let (to, sender, message): (Vec<PublicKey>, Credential, PeerToPeer) =
            postcard::from_bytes(payload).map_err(malformed)?;
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

#[derive(Clone)]
pub struct Packet {
    pub to_device: PublicKey,
    pub payload: Vec<u8>,
}

/// What the shell would have persisted for one device.
#[derive(Default, Clone)]
pub struct Persisted {
    pub outbox: BTreeMap<MessageId, OutboxEntry>,
    pub next_seq: BTreeMap<UserName, u64>,
}

impl Persisted {
    fn sent(&mut self, entry: &OutboxEntry) {
        self.next_seq
            .insert(entry.to.clone(), entry.message.seq + 1);
        self.outbox.insert(entry.message.id, entry.clone());
    }

    fn apply(&mut self, event: &ChatEvent) {
        match event {
            ChatEvent::Accepted { id, stored, .. } => {
                if let Some(e) = self.outbox.get_mut(id) {
                    e.accepted = true;
                    if *stored {
                        e.stage = OutboxStage::Stored;
                    }
                }
            }
            ChatEvent::Delivered { id, .. } | ChatEvent::ReceiptAbandoned { id, .. } => {
                self.outbox.remove(id);
            }
            ChatEvent::StoreOffline { envelope } => {
                if let Some(e) = self.outbox.get_mut(&envelope.id) {
                    e.stage = OutboxStage::StoringOffline;
                }
            }
            _ => {}
        }
    }

    fn state(&self, windows: ChatState) -> ChatState {
        ChatState {
            outbox: self.outbox.values().cloned().collect(),
            next_seq: self.next_seq.clone(),
            windows: windows.windows,
        }
    }
}

pub struct Device {
    pub name: String,
    pub key: PublicKey,
    pub crypto: Box<dyn Fn() -> Box<dyn PeerCrypto>>,
    pub core: ChatCore,
    pub online: bool,
    pub persisted: Persisted,
    pub incarnation: u64,
    /// Received messages as shown: (sender device, seq, id, text, late).
    pub shown: Vec<(PublicKey, u64, MessageId, String, bool)>,
    pub accepted: BTreeMap<MessageId, bool>,
    pub delivered: BTreeSet<MessageId>,
    pub gaps: u64,
}

pub struct Sim {
    pub now: Instant,
    pub start: Instant,
    pub devices: BTreeMap<PublicKey, Device>,
    pub link: Impairment<Packet>,
    /// Chance (0..1) that the home supernode fails a route (status `Unreachable`, dropped).
    pub route_failure: f64,
    rng: StdRng,
    pub authority: SecretKey,
    pub mailbox: BTreeMap<UserName, BTreeMap<MessageId, Envelope>>,
    store_acks: Vec<(Instant, PublicKey, MessageId)>,
    pub config: ChatConfig,
    pub kills: u32,
}

impl Sim {
    pub fn new(link: ImpairmentConfig, seed: u64) -> Self {
        let now = Instant::now();
        Self {
            now,
            start: now,
            devices: BTreeMap::new(),
            link: Impairment::new(link, seed),
            route_failure: 0.0,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            authority: SecretKey::generate(),
            mailbox: BTreeMap::new(),
            store_acks: Vec::new(),
            config: ChatConfig::default(),
            kills: 0,
        }
    }

    /// A device with the real end-to-end crypto (`real`) or the plain stand-in.
    pub fn add_device(&mut self, name: &str, real: bool) -> PublicKey {
        // Keys come from the seeded generator: device order (a BTreeMap by key) decides the
        // order of events, and a run must be reproducible from its seed.
        let secret = SecretKey::generate_with(&mut self.rng);
        let key = secret.public();
        let crypto: Box<dyn Fn() -> Box<dyn PeerCrypto>> = if real {
            let claims = Credential {
                serial: 1,
                user: user(name),
                display_name: DisplayName::default(),
                device_key: key,
                issued_at: WALL,
                expires_at: WALL.saturating_add(DEFAULT_CREDENTIAL_LIFETIME),
            };
            let cred = SignedCredential::issue(&claims, &self.authority);
            let authority = self.authority.public();
            Box::new(move || {
                Box::new(
                    DeviceCrypto::new(secret.clone(), cred.clone(), authority)
                        .expect("credential names the key"),
                )
            })
        } else {
            let name = name.to_string();
            Box::new(move || Box::new(PlainCrypto::new(&name, key)))
        };
        let seed = self.rng.random();
        let core = ChatCore::new(crypto(), self.config.clone(), seed);
        self.devices.insert(
            key,
            Device {
                name: name.to_string(),
                key,
                crypto,
                core,
                online: true,
                persisted: Persisted::default(),
                incarnation: 0,
                shown: Vec::new(),
                accepted: BTreeMap::new(),
                delivered: BTreeSet::new(),
                gaps: 0,
            },
        );
        key
    }

    pub fn device(&mut self, key: PublicKey) -> &mut Device {
        self.devices.get_mut(&key).expect("device exists")
    }

    pub fn send(
        &mut self,
        from: PublicKey,
        to: &str,
        devices: Vec<PublicKey>,
        text: String,
    ) -> bool {
        let now = self.now;
        let millis = 1_800_000_000_000 + (now - self.start).as_millis() as u64;
        let dev = self.device(from);
        match dev.core.send(now, millis, user(to), devices, text) {
            Ok(entry) => {
                dev.persisted.sent(&entry);
                true
            }
            Err(client_core::chat::ChatError::OutboxFull) => false,
            Err(e) => panic!("send failed: {e}"),
        }
    }

    /// Kills a device's process: everything in memory is gone, the core is rebuilt from what
    /// was persisted.
    pub fn kill(&mut self, key: PublicKey) {
        let now = self.now;
        let seed = self.rng.random();
        let config = self.config.clone();
        let dev = self.device(key);
        // Receive windows are persisted with the history they describe.
        let windows = dev.core.snapshot();
        let state = dev.persisted.state(windows);
        dev.core = ChatCore::restore(now, (dev.crypto)(), config, seed, state);
        dev.incarnation += 1;
        self.kills += 1;
    }

    /// Takes `key` offline (`online: false`) or back online, fetching its mailbox.
    pub fn set_online(&mut self, key: PublicKey, online: bool) {
        self.device(key).online = online;
        if online {
            let name = user(&self.devices[&key].name);
            let envelopes: Vec<Envelope> = self
                .mailbox
                .get(&name)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            let now = self.now;
            for envelope in envelopes {
                let dev = self.devices.get_mut(&key).expect("exists");
                if dev.core.handle_mailbox(now, WALL, &envelope).is_ok()
                    && let Some(m) = self.mailbox.get_mut(&name)
                {
                    m.remove(&envelope.id);
                }
                self.drain();
            }
        }
    }

    /// Every online device fetches its user's mailbox, as the engine does periodically: a
    /// message can be stored offline while its recipient is online (a route reported
    /// `Offline` spuriously), and must still arrive.
    pub fn poll_mailboxes(&mut self) {
        let online: Vec<PublicKey> = self
            .devices
            .iter()
            .filter(|(_, d)| d.online)
            .map(|(k, _)| *k)
            .collect();
        for key in online {
            self.set_online(key, true);
        }
    }

    fn drain(&mut self) {
        loop {
            let mut moved = false;
            let keys: Vec<PublicKey> = self.devices.keys().copied().collect();
            for key in keys {
                loop {
                    let now = self.now;
                    let fail =
                        self.route_failure > 0.0 && self.rng.random::<f64>() < self.route_failure;
                    let dev = self.devices.get_mut(&key).expect("exists");
                    let Some(t) = dev.core.poll_transmit() else {
                        break;
                    };
                    moved = true;
                    let online = self.devices.get(&t.to_device).is_some_and(|d| d.online);
                    let outcome = if fail {
                        RouteOutcome::Unreachable
                    } else if online {
                        self.link.handle_packet(
                            now,
                            Packet {
                                to_device: t.to_device,
                                payload: t.payload,
                            },
                        );
                        RouteOutcome::Delivered
                    } else {
                        RouteOutcome::Offline
                    };
                    let dev = self.devices.get_mut(&key).expect("exists");
                    dev.core.handle_route_status(now, t.token, outcome);
                }
                loop {
                    let dev = self.devices.get_mut(&key).expect("exists");
                    let Some(event) = dev.core.poll_event() else {
                        break;
                    };
                    moved = true;
                    dev.persisted.apply(&event);
                    match event {
                        ChatEvent::Received {
                            device,
                            message,
                            late,
                            ..
                        } => dev
                            .shown
                            .push((device, message.seq, message.id, message.text, late)),
                        ChatEvent::Accepted { id, stored, .. } => {
                            assert!(dev.accepted.insert(id, stored).is_none(), "accepted twice");
                        }
                        ChatEvent::Delivered { id, .. } => {
                            dev.delivered.insert(id);
                        }
                        ChatEvent::Gap { missing, .. } => dev.gaps += missing,
                        ChatEvent::ReceiptAbandoned { id, .. } => {
                            panic!("receipt for {id:?} abandoned: the cap is far above this run")
                        }
                        ChatEvent::StoreOffline { envelope } => {
                            let at = self.now + Duration::from_millis(40);
                            self.store_acks.push((at, key, envelope.id));
                            self.mailbox
                                .entry(envelope.to.clone())
                                .or_default()
                                .entry(envelope.id)
                                .or_insert(envelope);
                        }
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Runs the network until `until` (virtual time).
    pub fn run_until(&mut self, until: Instant) {
        loop {
            self.drain();
            let mut next = self.link.poll_timeout();
            let mut consider = |t: Option<Instant>| {
                if let Some(t) = t {
                    next = Some(next.map_or(t, |n: Instant| n.min(t)));
                }
            };
            for d in self.devices.values() {
                consider(d.core.poll_timeout());
            }
            for (at, _, _) in &self.store_acks {
                consider(Some(*at));
            }
            let Some(next) = next.filter(|n| *n <= until) else {
                break;
            };
            self.now = self.now.max(next);
            let now = self.now;
            while let Some(p) = self.link.poll_packet(now) {
                if let Some(dev) = self.devices.get_mut(&p.to_device)
                    && dev.online
                {
                    let _ = dev.core.handle_routed(now, WALL, &p.payload);
                }
            }
            let due: Vec<_> = self
                .store_acks
                .iter()
                .filter(|(at, _, _)| *at <= now)
                .cloned()
                .collect();
            self.store_acks.retain(|(at, _, _)| *at > now);
            for (_, key, id) in due {
                if let Some(dev) = self.devices.get_mut(&key) {
                    dev.core.handle_stored(now, id);
                }
            }
            for d in self.devices.values_mut() {
                if d.core.poll_timeout().is_some_and(|t| t <= now) {
                    d.core.handle_timeout(now);
                }
            }
        }
        self.now = self.now.max(until);
        self.drain();
    }

    pub fn run_for(&mut self, span: Duration) {
        let until = self.now + span;
        self.run_until(until);
    }

    pub fn roll(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }
}

/// Checks what one user's devices showed from one sending device: every message in `sent`
/// shown at least once across them, none twice on one device, in order on each device
/// (late arrivals after a released gap excepted).
pub fn check_conversation(sim: &Sim, from: PublicKey, receivers: &[PublicKey], sent: &[String]) {
    let mut union = BTreeSet::new();
    for r in receivers {
        let shown: Vec<_> = sim.devices[r]
            .shown
            .iter()
            .filter(|(d, ..)| *d == from)
            .collect();
        let mut ids = BTreeSet::new();
        let mut last_seq = None;
        for (_, seq, id, text, late) in &shown {
            assert!(ids.insert(*id), "message shown twice on one device");
            if !late {
                if let Some(last) = last_seq {
                    assert!(*seq > last, "order broken: {seq} after {last}");
                }
                last_seq = Some(*seq);
            }
            // The text at seq n is the n-th message sent.
            assert_eq!(&sent[*seq as usize], text, "seq maps to the wrong text");
            union.insert(*seq);
        }
    }
    let lost: Vec<usize> = (0..sent.len())
        .filter(|i| !union.contains(&(*i as u64)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} messages lost, first {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
