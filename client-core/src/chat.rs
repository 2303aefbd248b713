//! Reliable end-to-end chat delivery between users' devices.
//!
//! [`ChatCore`] is one device's chat engine for all its conversations:
//! - **Sending**: every message gets a unique [`MessageId`] and a per-conversation `seq`. It is
//!   sealed to each of the recipient's devices and routed through the supernodes; it is sent
//!   again with exponential backoff until a [`PeerToPeer::ChatDelivered`] receipt comes back
//!   from any device of the recipient (at-least-once). When every copy of an attempt comes
//!   back [`RouteOutcome::Offline`], the core asks the shell to put a sealed bundle into the
//!   login server's offline mailbox ([`ChatEvent::StoreOffline`]); once the shell reports it
//!   durable ([`ChatCore::handle_stored`]) the message counts as accepted
//!   (`chat_accepted{stored: true}`). A stored message stays in the outbox
//!   ([`OutboxStage::Stored`]) and is offered again directly at a slow, growing interval until
//!   its receipt comes back: a receipt is a single routed message, and one lost on the way
//!   (or queued by a recipient process that died) would otherwise never be sent again.
//! - **Receiving**: de-duplication with bounded memory (per sending device a `seq` window, the
//!   set of skipped seqs, and the most recent ids), per-device order by `seq` with a bounded
//!   hold-back for out-of-order messages (then released with a [`ChatEvent::Gap`]), and
//!   batched delivery receipts. A message is acknowledged only after it was handed to the
//!   shell ([`ChatEvent::Received`]), never while it is held back, so a crash loses nothing
//!   the sender believes delivered.
//! - **Persistence**: the outbox and windows are plain serde data ([`ChatState`]). The shell
//!   persists each [`OutboxEntry`] returned by [`ChatCore::send`] before telling the user the
//!   message was sent, applies the events ([`ChatEvent::Delivered`] deletes it,
//!   [`ChatEvent::StoreOffline`] / [`ChatEvent::Accepted`] update it) and rebuilds the core
//!   after a crash with [`ChatCore::restore`]; every unacknowledged message is sent again.
//!
//! Sans-IO: after every `handle_*` / [`ChatCore::send`], drain [`ChatCore::poll_transmit`]
//! (route each [`PeerTransmit`] with `ClientToSupernode::Route` and report its
//! `RouteStatus` with [`ChatCore::handle_route_status`]), then [`ChatCore::poll_event`], then
//! arm a timer for [`ChatCore::poll_timeout`].
//!
//! What it does not do: no IO, no clock, no history or search (the shell's SQLite), no
//! direct peer sessions (a later path layer), no fetching of the mailbox (the shell feeds
//! envelopes to [`ChatCore::handle_mailbox`]).

use proto::login::Envelope;
use proto::peer::{
    ChatMessage, MAX_RECEIPT_IDS, PeerEnvelopeError, PeerToPeer, open_offline_bundle,
    open_peer_message, seal_offline_bundle, seal_peer_message,
};
use proto::supernode::RouteOutcome;
use proto::{Credential, CredentialError, MessageId, PublicKey, SecretKey, SignedCredential};
use proto::{UnixTime, UserName};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// One end-to-end sealed payload for the shell to route to one device of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTransmit {
    /// Echo it in `handle_route_status` with the supernode's outcome for this payload.
    pub token: u64,
    pub to: UserName,
    pub to_device: PublicKey,
    /// The `Route` payload (a sealed envelope).
    pub payload: Vec<u8>,
}

/// How a core seals and opens device-to-device messages. [`DeviceCrypto`] is the real one;
/// simulations may substitute a cheaper one to run many thousands of messages.
pub trait PeerCrypto: Send {
    /// The local user, as our credential names it.
    fn local_user(&self) -> &UserName;
    /// Seals a message to one device: a `Route` payload.
    fn seal(&self, to: &PublicKey, message: &PeerToPeer) -> Result<Vec<u8>, PeerEnvelopeError>;
    /// Seals a message to several devices: an offline-mailbox `Envelope::sealed`.
    fn seal_offline(
        &self,
        to: &[PublicKey],
        message: &PeerToPeer,
    ) -> Result<Vec<u8>, PeerEnvelopeError>;
    /// Opens a `Routed` payload; the credential is the verified sender.
    fn open(
        &self,
        wall: UnixTime,
        payload: &[u8],
    ) -> Result<(Credential, PeerToPeer), PeerEnvelopeError>;
    /// Opens an offline-mailbox bundle.
    fn open_offline(
        &self,
        wall: UnixTime,
        sealed: &[u8],
    ) -> Result<(Credential, PeerToPeer), PeerEnvelopeError>;
}

/// This device's identity: its key, its credential and the authority key that certifies
/// every peer.
#[derive(Clone)]
pub struct DeviceCrypto {
    key: SecretKey,
    credential: SignedCredential,
    authority: PublicKey,
    user: UserName,
}

impl std::fmt::Debug for DeviceCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceCrypto({} {:?})", self.user, self.key.public())
    }
}

impl DeviceCrypto {
    /// Fails when the credential does not decode or names another key.
    pub fn new(
        key: SecretKey,
        credential: SignedCredential,
        authority: PublicKey,
    ) -> Result<Self, CredentialError> {
        let claims = credential.claims_unverified()?;
        if claims.device_key != key.public() {
            return Err(CredentialError::WrongKey {
                expected_user: claims.user,
                expected_key: claims.device_key,
            });
        }
        Ok(Self {
            key,
            credential,
            authority,
            user: claims.user,
        })
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    pub fn credential(&self) -> &SignedCredential {
        &self.credential
    }

    pub fn authority(&self) -> &PublicKey {
        &self.authority
    }

    /// Presents a refreshed credential from now on.
    pub fn set_credential(&mut self, credential: SignedCredential) -> Result<(), CredentialError> {
        *self = Self::new(self.key.clone(), credential, self.authority)?;
        Ok(())
    }
}

impl PeerCrypto for DeviceCrypto {
    fn local_user(&self) -> &UserName {
        &self.user
    }

    fn seal(&self, to: &PublicKey, message: &PeerToPeer) -> Result<Vec<u8>, PeerEnvelopeError> {
        seal_peer_message(&self.key, &self.credential, to, message)
    }

    fn seal_offline(
        &self,
        to: &[PublicKey],
        message: &PeerToPeer,
    ) -> Result<Vec<u8>, PeerEnvelopeError> {
        seal_offline_bundle(&self.key, &self.credential, to, message)
    }

    fn open(
        &self,
        wall: UnixTime,
        payload: &[u8],
    ) -> Result<(Credential, PeerToPeer), PeerEnvelopeError> {
        open_peer_message(&self.key, &self.authority, wall, payload)
    }

    fn open_offline(
        &self,
        wall: UnixTime,
        sealed: &[u8],
    ) -> Result<(Credential, PeerToPeer), PeerEnvelopeError> {
        open_offline_bundle(&self.key, &self.authority, wall, sealed)
    }
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// The first retransmission waits this long; each further one twice as long.
    pub retransmit_initial: Duration,
    /// The longest wait between two retransmissions.
    pub retransmit_max: Duration,
    /// How long an out-of-order message waits for the ones before it.
    pub hold_back: Duration,
    /// The most messages held back per sending device; beyond it the gap is released.
    pub max_held_per_device: usize,
    /// Receipts wait this long so several go out in one message.
    pub receipt_delay: Duration,
    /// The most unacknowledged messages; `send` fails with [`ChatError::OutboxFull`] beyond.
    pub max_outbox: usize,
    /// A stored-offline message is offered again directly after this long, then at twice
    /// the previous interval, so a lost receipt is asked for again.
    pub stored_reoffer_initial: Duration,
    /// The longest interval between two offers of a stored message.
    pub stored_reoffer_max: Duration,
    /// The most stored-offline messages whose receipt is still awaited (oldest forgotten
    /// with [`ChatEvent::ReceiptAbandoned`]: only their `chat_delivered` event is lost,
    /// never the message, which is in the mailbox).
    pub max_awaiting_receipt: usize,
    /// The most sending devices whose windows are kept (least recently heard forgotten).
    pub max_windows: usize,
    /// Per sending device: the most recent ids remembered, and the most skipped seqs.
    pub recent_ids_per_device: usize,
    pub max_missing_per_device: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            retransmit_initial: Duration::from_secs(1),
            retransmit_max: Duration::from_secs(30),
            hold_back: Duration::from_secs(3),
            max_held_per_device: 512,
            receipt_delay: Duration::from_millis(50),
            max_outbox: 4096,
            stored_reoffer_initial: Duration::from_secs(60),
            stored_reoffer_max: Duration::from_secs(30 * 60),
            max_awaiting_receipt: 16_384,
            max_windows: 256,
            recent_ids_per_device: 1024,
            max_missing_per_device: 4096,
        }
    }
}

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("too many unacknowledged messages; try again later")]
    OutboxFull,
    #[error("the recipient has no known device")]
    NoDevices,
    #[error(transparent)]
    Invalid(#[from] proto::peer::PeerMessageError),
    #[error("message cannot be sealed: {0}")]
    Seal(#[from] PeerEnvelopeError),
}

/// Why an incoming payload was refused (log it; nothing else to do).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatInputError {
    #[error(transparent)]
    Envelope(#[from] PeerEnvelopeError),
    #[error("not a chat message")]
    NotChat,
    #[error("mailbox envelope's sender does not match the sealed sender")]
    SenderMismatch,
}

/// Where an unacknowledged message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxStage {
    /// Being routed to the recipient's devices until a receipt arrives.
    Sending,
    /// Handed to the shell for the offline mailbox; not yet confirmed durable.
    StoringOffline,
    /// Durable in the offline mailbox (accepted); offered again now and then until the
    /// receipt arrives.
    Stored,
}

/// One unacknowledged message, as the shell persists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub to: UserName,
    /// The recipient's devices it is sealed to.
    pub devices: Vec<PublicKey>,
    pub message: ChatMessage,
    pub stage: OutboxStage,
    /// `chat_accepted` was reported.
    pub accepted: bool,
}

/// Receive-side state for one sending device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveWindow {
    /// The next `seq` to hand over; `None` before the first message.
    pub next_seq: Option<u64>,
    /// Seqs skipped when a gap was released: they are new if they still arrive.
    pub missing: BTreeSet<u64>,
    /// The most recent ids handed over, oldest first.
    pub recent_ids: VecDeque<MessageId>,
}

/// Everything the shell persists to rebuild the core after a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatState {
    pub outbox: Vec<OutboxEntry>,
    /// The next `seq` per conversation.
    pub next_seq: BTreeMap<UserName, u64>,
    /// Receive windows per sending device (user, device).
    pub windows: Vec<(UserName, PublicKey, ReceiveWindow)>,
}

/// What the shell must show, persist or do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A new message, in order per sending device (`late`: it arrived after its gap was
    /// released). Persist it before the next `handle_*` call: the receipt follows.
    Received {
        from: UserName,
        device: PublicKey,
        message: ChatMessage,
        late: bool,
    },
    /// `chat_accepted`: handed to a device of the recipient, or stored offline.
    Accepted {
        to: UserName,
        id: MessageId,
        stored: bool,
    },
    /// `chat_delivered`: a device of the recipient confirmed it. Delete it from the outbox.
    Delivered { to: UserName, id: MessageId },
    /// Too many stored messages await their receipt: this one (the oldest) is no longer
    /// asked for. It stays in the mailbox; delete it from the outbox.
    ReceiptAbandoned { to: UserName, id: MessageId },
    /// Messages from this device never came within the hold-back time; later ones were
    /// handed over without them.
    Gap {
        from: UserName,
        device: PublicKey,
        missing: u64,
    },
    /// Command: put this envelope into the login server's offline mailbox
    /// (`UserRequest::StoreOffline`), then call [`ChatCore::handle_stored`] once it answers
    /// `Stored`, or [`ChatCore::handle_store_failed`].
    StoreOffline { envelope: Envelope },
}

#[derive(Debug)]
struct Pending {
    entry: OutboxEntry,
    attempt: u32,
    copies: usize,
    offline: usize,
    next_at: Instant,
}

#[derive(Debug, Default)]
struct Window {
    user: Option<UserName>,
    state: ReceiveWindow,
    held: BTreeMap<u64, ChatMessage>,
    held_since: Option<Instant>,
    last_heard: u64,
}

/// One device's chat engine; see the module docs.
pub struct ChatCore {
    crypto: Box<dyn PeerCrypto>,
    config: ChatConfig,
    rng: StdRng,
    outbox: BTreeMap<MessageId, Pending>,
    timers: BTreeSet<(Instant, MessageId)>,
    tokens: BTreeMap<u64, (MessageId, u32)>,
    next_token: u64,
    next_seq: BTreeMap<UserName, u64>,
    /// Stored offline, receipt awaited (stage [`OutboxStage::Stored`]).
    stored: BTreeMap<MessageId, Pending>,
    /// `stored` ids, oldest first, for eviction (ids already removed are skipped).
    stored_order: VecDeque<MessageId>,
    windows: BTreeMap<PublicKey, Window>,
    heard_counter: u64,
    receipts: BTreeMap<(UserName, PublicKey), Vec<MessageId>>,
    receipt_deadline: Option<Instant>,
    transmits: VecDeque<PeerTransmit>,
    events: VecDeque<ChatEvent>,
}

impl std::fmt::Debug for ChatCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChatCore({}, {} unacknowledged)",
            self.crypto.local_user(),
            self.outbox.len()
        )
    }
}

impl ChatCore {
    /// A core with no history. `seed` feeds message ids: pass OS randomness in the shell.
    pub fn new(crypto: Box<dyn PeerCrypto>, config: ChatConfig, seed: u64) -> Self {
        Self {
            crypto,
            config,
            rng: StdRng::seed_from_u64(seed),
            outbox: BTreeMap::new(),
            timers: BTreeSet::new(),
            tokens: BTreeMap::new(),
            next_token: 0,
            next_seq: BTreeMap::new(),
            stored: BTreeMap::new(),
            stored_order: VecDeque::new(),
            windows: BTreeMap::new(),
            heard_counter: 0,
            receipts: BTreeMap::new(),
            receipt_deadline: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Rebuilds a core from persisted state (after a crash or restart). Unacknowledged
    /// messages are sent again at the first `handle_timeout`; messages that were being stored
    /// offline are handed to the mailbox again (it de-duplicates by id). Use a fresh `seed`.
    pub fn restore(
        now: Instant,
        crypto: Box<dyn PeerCrypto>,
        config: ChatConfig,
        seed: u64,
        state: ChatState,
    ) -> Self {
        let mut core = Self::new(crypto, config, seed);
        core.next_seq = state.next_seq;
        for entry in state.outbox {
            if entry.stage == OutboxStage::Stored {
                let floor = entry.message.seq.saturating_add(1);
                let next = core.next_seq.entry(entry.to.clone()).or_insert(floor);
                *next = (*next).max(floor);
                core.remember_stored(now, entry);
                continue;
            }
            let floor = entry.message.seq.saturating_add(1);
            let next = core.next_seq.entry(entry.to.clone()).or_insert(floor);
            *next = (*next).max(floor);
            let id = entry.message.id;
            core.outbox.insert(
                id,
                Pending {
                    entry,
                    attempt: 0,
                    copies: 0,
                    offline: 0,
                    next_at: now,
                },
            );
            core.timers.insert((now, id));
        }
        for (user, device, window) in state.windows {
            core.heard_counter += 1;
            core.windows.insert(
                device,
                Window {
                    user: Some(user),
                    state: window,
                    last_heard: core.heard_counter,
                    ..Window::default()
                },
            );
        }
        core
    }

    /// The whole persistent state (for shells that store snapshots rather than rows).
    pub fn snapshot(&self) -> ChatState {
        ChatState {
            outbox: self
                .outbox
                .values()
                .chain(self.stored.values())
                .map(|p| p.entry.clone())
                .collect(),
            next_seq: self.next_seq.clone(),
            windows: self
                .windows
                .iter()
                .filter_map(|(device, w)| {
                    w.user.clone().map(|user| (user, *device, w.state.clone()))
                })
                .collect(),
        }
    }

    /// One sending device's receive window as it stands now (`None` before its first
    /// message or after it was forgotten). Shells that persist rows rather than snapshots
    /// store it in the same transaction as the [`ChatEvent::Received`] messages it covers.
    pub fn receive_window(&self, device: &PublicKey) -> Option<(UserName, ReceiveWindow)> {
        let window = self.windows.get(device)?;
        Some((window.user.clone()?, window.state.clone()))
    }

    /// Whether message `id` is held back waiting for earlier ones (received, not yet handed
    /// over, so not yet acknowledged: a mailbox copy of it must not be deleted yet).
    pub fn is_held(&self, id: &MessageId) -> bool {
        self.windows
            .values()
            .any(|w| w.held.values().any(|m| &m.id == id))
    }

    /// The unacknowledged or receipt-awaiting message `id` as the shell should persist it.
    pub fn outbox_entry(&self, id: &MessageId) -> Option<&OutboxEntry> {
        self.outbox
            .get(id)
            .or_else(|| self.stored.get(id))
            .map(|p| &p.entry)
    }

    /// Replaces the sealing identity (a refreshed credential); state is kept.
    pub fn set_crypto(&mut self, crypto: Box<dyn PeerCrypto>) {
        self.crypto = crypto;
    }

    /// How many messages are neither acknowledged by a recipient device nor durable in the
    /// mailbox.
    pub fn unacknowledged(&self) -> usize {
        self.outbox.len()
    }

    /// How many messages are stored offline and still await their receipt.
    pub fn awaiting_receipt(&self) -> usize {
        self.stored.len()
    }

    /// Sends `text` to `to`'s `devices`. Returns the entry to persist before telling the
    /// user (its `message.id` is the `id` of later events). The first attempt is queued at
    /// once.
    pub fn send(
        &mut self,
        now: Instant,
        sent_at_millis: u64,
        to: UserName,
        devices: Vec<PublicKey>,
        text: String,
    ) -> Result<OutboxEntry, ChatError> {
        if self.outbox.len() >= self.config.max_outbox {
            return Err(ChatError::OutboxFull);
        }
        let mut devices = devices;
        devices.sort();
        devices.dedup();
        devices.truncate(proto::supernode::MAX_DEVICES_PER_USER);
        let Some(first) = devices.first().copied() else {
            return Err(ChatError::NoDevices);
        };
        let seq = self.next_seq.get(&to).copied().unwrap_or(0);
        let message = ChatMessage {
            id: MessageId::random(&mut self.rng),
            sent_at_millis,
            seq,
            text,
        };
        message.validate()?;
        // Sealing once up front turns a message too large to route into an error now
        // rather than a retransmission loop.
        self.crypto
            .seal(&first, &PeerToPeer::Chat(message.clone()))?;
        self.next_seq.insert(to.clone(), seq.saturating_add(1));
        let entry = OutboxEntry {
            to,
            devices,
            message,
            stage: OutboxStage::Sending,
            accepted: false,
        };
        let id = entry.message.id;
        self.outbox.insert(
            id,
            Pending {
                entry: entry.clone(),
                attempt: 0,
                copies: 0,
                offline: 0,
                next_at: now,
            },
        );
        self.attempt(now, id);
        Ok(entry)
    }

    /// The recipient's device list changed (a new login, a device gone): unacknowledged
    /// messages to `user` go to these devices from the next attempt on.
    pub fn set_peer_devices(&mut self, user: &UserName, devices: Vec<PublicKey>) {
        let mut devices = devices;
        devices.sort();
        devices.dedup();
        devices.truncate(proto::supernode::MAX_DEVICES_PER_USER);
        if devices.is_empty() {
            return;
        }
        for pending in self.outbox.values_mut() {
            if &pending.entry.to == user {
                pending.entry.devices = devices.clone();
            }
        }
    }

    /// The supernode's `RouteStatus` for a transmit's token.
    pub fn handle_route_status(&mut self, now: Instant, token: u64, outcome: RouteOutcome) {
        let Some((id, attempt)) = self.tokens.remove(&token) else {
            return;
        };
        let Some(pending) = self.outbox.get_mut(&id) else {
            return;
        };
        match outcome {
            RouteOutcome::Delivered => {
                if !pending.entry.accepted {
                    pending.entry.accepted = true;
                    self.events.push_back(ChatEvent::Accepted {
                        to: pending.entry.to.clone(),
                        id,
                        stored: false,
                    });
                }
            }
            RouteOutcome::Offline => {
                if attempt != pending.attempt || pending.entry.stage != OutboxStage::Sending {
                    return;
                }
                pending.offline += 1;
                if pending.offline >= pending.copies {
                    self.store_offline(now, id);
                }
            }
            // Retransmission covers these.
            RouteOutcome::RateLimited | RouteOutcome::Unreachable | RouteOutcome::TooLarge => {}
        }
    }

    /// The login server answered `Stored { id }`: the message is durable in the mailbox.
    pub fn handle_stored(&mut self, now: Instant, id: MessageId) {
        let Some(pending) = self.outbox.get(&id) else {
            return;
        };
        if pending.entry.stage != OutboxStage::StoringOffline {
            return;
        }
        let Some(pending) = self.remove_pending(id) else {
            return;
        };
        let mut entry = pending.entry;
        if !entry.accepted {
            entry.accepted = true;
            self.events.push_back(ChatEvent::Accepted {
                to: entry.to.clone(),
                id,
                stored: true,
            });
        }
        self.remember_stored(now, entry);
    }

    /// Storing in the mailbox failed (login server unreachable, mailbox full): routing
    /// resumes with backoff.
    pub fn handle_store_failed(&mut self, now: Instant, id: MessageId) {
        let backoff = self.config.retransmit_initial;
        let Some(pending) = self.outbox.get_mut(&id) else {
            return;
        };
        if pending.entry.stage != OutboxStage::StoringOffline {
            return;
        }
        pending.entry.stage = OutboxStage::Sending;
        let old = pending.next_at;
        pending.next_at = now + backoff;
        let next = pending.next_at;
        self.timers.remove(&(old, id));
        self.timers.insert((next, id));
    }

    /// Opens a `Routed` payload and handles it when it is a chat message or receipt.
    /// Call messages come back as `Err(NotChat)`: open once with [`PeerCrypto::open`] and
    /// dispatch by [`PeerToPeer::call_id`] instead when both cores run.
    pub fn handle_routed(
        &mut self,
        now: Instant,
        wall: UnixTime,
        payload: &[u8],
    ) -> Result<(), ChatInputError> {
        let (sender, message) = self.crypto.open(wall, payload)?;
        self.handle_message(now, &sender, message)
    }

    /// Handles an opened message from a verified sender.
    pub fn handle_message(
        &mut self,
        now: Instant,
        sender: &Credential,
        message: PeerToPeer,
    ) -> Result<(), ChatInputError> {
        match message {
            PeerToPeer::Chat(chat) => {
                self.receive(now, sender, chat);
                Ok(())
            }
            PeerToPeer::ChatDelivered { ids } => {
                self.receipts_arrived(&sender.user, &ids);
                Ok(())
            }
            _ => Err(ChatInputError::NotChat),
        }
    }

    /// One envelope from the offline mailbox. On `Ok` the shell may acknowledge it to the
    /// mailbox once the events are persisted (duplicates are `Ok` too).
    pub fn handle_mailbox(
        &mut self,
        now: Instant,
        wall: UnixTime,
        envelope: &Envelope,
    ) -> Result<(), ChatInputError> {
        let (sender, message) = self.crypto.open_offline(wall, &envelope.sealed)?;
        if sender.user != envelope.from {
            return Err(ChatInputError::SenderMismatch);
        }
        self.handle_message(now, &sender, message)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let stage = self.outbox.get(&id).map(|p| p.entry.stage);
            match stage {
                Some(OutboxStage::Sending) => self.attempt(now, id),
                // The shell never answered: ask again (the mailbox de-duplicates by id).
                Some(OutboxStage::StoringOffline) => self.store_offline(now, id),
                Some(OutboxStage::Stored) => {}
                None => self.reoffer(now, id),
            }
        }
        let expired: Vec<PublicKey> = self
            .windows
            .iter()
            .filter(|(_, w)| {
                w.held_since
                    .is_some_and(|since| since + self.config.hold_back <= now)
            })
            .map(|(device, _)| *device)
            .collect();
        for device in expired {
            self.release_gap(now, device);
        }
        if self.receipt_deadline.is_some_and(|at| at <= now) {
            self.flush_receipts();
        }
    }

    pub fn poll_transmit(&mut self) -> Option<PeerTransmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ChatEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.timers.first().map(|(at, _)| *at);
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        consider(self.receipt_deadline);
        for w in self.windows.values() {
            consider(w.held_since.map(|since| since + self.config.hold_back));
        }
        next
    }

    fn attempt(&mut self, now: Instant, id: MessageId) {
        let Some(pending) = self.outbox.get_mut(&id) else {
            return;
        };
        pending.attempt = pending.attempt.saturating_add(1);
        pending.offline = 0;
        pending.copies = 0;
        let message = PeerToPeer::Chat(pending.entry.message.clone());
        for device in &pending.entry.devices {
            // Sealing succeeded in `send`; a failure here means the message cannot go to
            // this device at all, which retransmission cannot fix either.
            let Ok(payload) = self.crypto.seal(device, &message) else {
                continue;
            };
            let token = self.next_token;
            self.next_token = self.next_token.wrapping_add(1);
            self.tokens.insert(token, (id, pending.attempt));
            pending.copies += 1;
            self.transmits.push_back(PeerTransmit {
                token,
                to: pending.entry.to.clone(),
                to_device: *device,
                payload,
            });
        }
        let exponent = pending.attempt.saturating_sub(1).min(16);
        let backoff = self
            .config
            .retransmit_initial
            .saturating_mul(1 << exponent)
            .min(self.config.retransmit_max);
        self.timers.remove(&(pending.next_at, id));
        pending.next_at = now + backoff;
        self.timers.insert((pending.next_at, id));
        // Statuses that never come back must not grow the token map without bound.
        let cap = self.config.max_outbox.saturating_mul(4).max(64);
        while self.tokens.len() > cap {
            self.tokens.pop_first();
        }
    }

    fn store_offline(&mut self, now: Instant, id: MessageId) {
        let retry = self.config.retransmit_max;
        let Some(pending) = self.outbox.get_mut(&id) else {
            return;
        };
        let message = PeerToPeer::Chat(pending.entry.message.clone());
        let Ok(sealed) = self.crypto.seal_offline(&pending.entry.devices, &message) else {
            return;
        };
        pending.entry.stage = OutboxStage::StoringOffline;
        let envelope = Envelope {
            id,
            from: self.crypto.local_user().clone(),
            to: pending.entry.to.clone(),
            sent_at: UnixTime::from_secs(pending.entry.message.sent_at_millis / 1000),
            sealed,
        };
        self.timers.remove(&(pending.next_at, id));
        pending.next_at = now + retry;
        self.timers.insert((pending.next_at, id));
        self.events.push_back(ChatEvent::StoreOffline { envelope });
    }

    fn remove_pending(&mut self, id: MessageId) -> Option<Pending> {
        let pending = self.outbox.remove(&id)?;
        self.timers.remove(&(pending.next_at, id));
        Some(pending)
    }

    fn remember_stored(&mut self, now: Instant, mut entry: OutboxEntry) {
        entry.stage = OutboxStage::Stored;
        entry.accepted = true;
        let id = entry.message.id;
        let next_at = now + self.config.stored_reoffer_initial;
        let pending = Pending {
            entry,
            attempt: 0,
            copies: 0,
            offline: 0,
            next_at,
        };
        if let Some(old) = self.stored.insert(id, pending) {
            self.timers.remove(&(old.next_at, id));
        } else {
            self.stored_order.push_back(id);
        }
        self.timers.insert((next_at, id));
        while self.stored.len() > self.config.max_awaiting_receipt {
            let Some(old) = self.stored_order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.stored.remove(&old) {
                self.timers.remove(&(evicted.next_at, old));
                self.events.push_back(ChatEvent::ReceiptAbandoned {
                    to: evicted.entry.to,
                    id: old,
                });
            }
        }
        // Ids delivered meanwhile linger in the order queue; keep it proportionate.
        if self.stored_order.len() > self.stored.len().saturating_mul(2).max(64) {
            let stored = &self.stored;
            self.stored_order.retain(|id| stored.contains_key(id));
        }
    }

    /// Offers a stored message directly again: a device that already has it answers with a
    /// receipt, one that does not shows it (it may also come from the mailbox; ids
    /// de-duplicate). Route statuses of these copies are ignored.
    fn reoffer(&mut self, now: Instant, id: MessageId) {
        let Some(pending) = self.stored.get_mut(&id) else {
            return;
        };
        pending.attempt = pending.attempt.saturating_add(1);
        let message = PeerToPeer::Chat(pending.entry.message.clone());
        for device in &pending.entry.devices {
            let Ok(payload) = self.crypto.seal(device, &message) else {
                continue;
            };
            let token = self.next_token;
            self.next_token = self.next_token.wrapping_add(1);
            self.transmits.push_back(PeerTransmit {
                token,
                to: pending.entry.to.clone(),
                to_device: *device,
                payload,
            });
        }
        let exponent = pending.attempt.min(16);
        let interval = self
            .config
            .stored_reoffer_initial
            .saturating_mul(1 << exponent)
            .min(self.config.stored_reoffer_max);
        pending.next_at = now + interval;
        self.timers.insert((pending.next_at, id));
    }

    fn receipts_arrived(&mut self, from: &UserName, ids: &[MessageId]) {
        for id in ids {
            if self.outbox.get(id).is_some_and(|p| &p.entry.to == from) {
                if let Some(pending) = self.remove_pending(*id) {
                    if !pending.entry.accepted {
                        self.events.push_back(ChatEvent::Accepted {
                            to: from.clone(),
                            id: *id,
                            stored: false,
                        });
                    }
                    self.events.push_back(ChatEvent::Delivered {
                        to: from.clone(),
                        id: *id,
                    });
                }
            } else if self.stored.get(id).is_some_and(|p| &p.entry.to == from) {
                if let Some(pending) = self.stored.remove(id) {
                    self.timers.remove(&(pending.next_at, *id));
                }
                self.events.push_back(ChatEvent::Delivered {
                    to: from.clone(),
                    id: *id,
                });
            }
        }
    }

    fn window(&mut self, user: &UserName, device: PublicKey) -> &mut Window {
        self.heard_counter += 1;
        if !self.windows.contains_key(&device) && self.windows.len() >= self.config.max_windows {
            let oldest = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.last_heard)
                .map(|(d, _)| *d);
            if let Some(oldest) = oldest {
                self.windows.remove(&oldest);
            }
        }
        let counter = self.heard_counter;
        let window = self.windows.entry(device).or_default();
        window.last_heard = counter;
        window.user = Some(user.clone());
        window
    }

    fn receive(&mut self, now: Instant, sender: &Credential, message: ChatMessage) {
        let device = sender.device_key;
        let user = sender.user.clone();
        let max_held = self.config.max_held_per_device;
        let window = self.window(&user, device);
        if window.state.recent_ids.contains(&message.id) {
            self.queue_receipt(now, &user, device, message.id);
            return;
        }
        let seq = message.seq;
        match window.state.next_seq {
            None if seq != 0 => {
                // A conversation seen from its middle (a new device of ours): wait briefly
                // for earlier messages, then start from the lowest seen.
                window.held.entry(seq).or_insert(message);
                window.held_since.get_or_insert(now);
                if window.held.len() > max_held {
                    self.release_gap(now, device);
                }
                return;
            }
            None => window.state.next_seq = Some(0),
            Some(next) if seq < next => {
                if window.state.missing.remove(&seq) {
                    self.deliver(now, &user, device, message, true);
                } else {
                    self.queue_receipt(now, &user, device, message.id);
                }
                return;
            }
            Some(next) if seq > next => {
                window.held.entry(seq).or_insert(message);
                window.held_since.get_or_insert(now);
                if window.held.len() > max_held {
                    self.release_gap(now, device);
                }
                return;
            }
            Some(_) => {}
        }
        self.deliver(now, &user, device, message, false);
        self.drain_held(now, &user, device);
    }

    /// Hands over every held message that is now in order.
    fn drain_held(&mut self, now: Instant, user: &UserName, device: PublicKey) {
        let mut progressed = false;
        loop {
            let Some(window) = self.windows.get_mut(&device) else {
                return;
            };
            let Some(next) = window.state.next_seq else {
                return;
            };
            match window.held.remove(&next) {
                Some(message) => {
                    progressed = true;
                    self.deliver(now, user, device, message, false);
                }
                None => break,
            }
        }
        if let Some(window) = self.windows.get_mut(&device) {
            if window.held.is_empty() {
                window.held_since = None;
            } else if progressed {
                window.held_since = Some(now);
            }
        }
    }

    fn release_gap(&mut self, now: Instant, device: PublicKey) {
        let max_missing = self.config.max_missing_per_device;
        let Some(window) = self.windows.get_mut(&device) else {
            return;
        };
        let Some(user) = window.user.clone() else {
            return;
        };
        let Some((&first, _)) = window.held.first_key_value() else {
            window.held_since = None;
            return;
        };
        let skipped = match window.state.next_seq {
            Some(next) if first > next => {
                // Remember only the newest skipped seqs: a sender cannot make us allocate
                // by jumping far ahead.
                let start = first.saturating_sub(max_missing as u64).max(next);
                window.state.missing.extend(start..first);
                while window.state.missing.len() > max_missing {
                    window.state.missing.pop_first();
                }
                first - next
            }
            _ => 0,
        };
        window.state.next_seq = Some(first);
        window.held_since = None;
        if skipped > 0 {
            self.events.push_back(ChatEvent::Gap {
                from: user.clone(),
                device,
                missing: skipped,
            });
        }
        self.drain_held(now, &user, device);
    }

    fn deliver(
        &mut self,
        now: Instant,
        user: &UserName,
        device: PublicKey,
        message: ChatMessage,
        late: bool,
    ) {
        let recent_cap = self.config.recent_ids_per_device;
        if let Some(window) = self.windows.get_mut(&device) {
            if !late {
                window.state.next_seq = Some(message.seq.saturating_add(1));
            }
            window.state.recent_ids.push_back(message.id);
            while window.state.recent_ids.len() > recent_cap {
                window.state.recent_ids.pop_front();
            }
        }
        self.queue_receipt(now, user, device, message.id);
        self.events.push_back(ChatEvent::Received {
            from: user.clone(),
            device,
            message,
            late,
        });
    }

    fn queue_receipt(&mut self, now: Instant, user: &UserName, device: PublicKey, id: MessageId) {
        let ids = self.receipts.entry((user.clone(), device)).or_default();
        ids.push(id);
        let full = ids.len() >= MAX_RECEIPT_IDS;
        self.receipt_deadline
            .get_or_insert(now + self.config.receipt_delay);
        if full {
            self.flush_receipts();
        }
    }

    fn flush_receipts(&mut self) {
        self.receipt_deadline = None;
        for ((user, device), ids) in std::mem::take(&mut self.receipts) {
            for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                let message = PeerToPeer::ChatDelivered {
                    ids: chunk.to_vec(),
                };
                let Ok(payload) = self.crypto.seal(&device, &message) else {
                    continue;
                };
                let token = self.next_token;
                self.next_token = self.next_token.wrapping_add(1);
                self.transmits.push_back(PeerTransmit {
                    token,
                    to: user.clone(),
                    to_device: device,
                    payload,
                });
            }
        }
    }
}
