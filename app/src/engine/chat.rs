//! The engine's chat service: [`ChatCore`] (delivery, receipts, mailbox hand-offs) joined to
//! the profile's [`History`], so that nothing acknowledged is lost and nothing is shown twice
//! when the process dies at any point.
//!
//! Ordering rules it enforces for the engine:
//! - [`ChatService::send`] returns only after the message is in the store (message row,
//!   outbox row and `seq` counter in one transaction).
//! - Every core event is written to the store before it is returned by
//!   [`ChatService::next_output`]; received messages are written together with their sending
//!   device's receive window. The `async` inputs that can receive messages
//!   ([`ChatService::handle_message`], [`ChatService::handle_mailbox`],
//!   [`ChatService::handle_timeout`]) persist before they return.
//! - [`ChatService::poll_transmit`] holds everything back (receipts included) while some
//!   event or sent message is not yet in the store, so no receipt can leave for a message a
//!   crash could still lose. A store failure therefore stops chat traffic until a later call
//!   succeeds in writing; it never drops data.
//! - While earlier output is not yet written, [`ChatService::handle_message`] and
//!   [`ChatService::handle_mailbox`] refuse input before it reaches the core, so a failing
//!   store cannot make messages from peers pile up in memory; what is refused comes again
//!   (the sender retransmits what no receipt confirmed, the mailbox keeps envelopes that
//!   are not acknowledged).
//! - Each future is cancel-safe for the data: what it took from the core is kept until it is
//!   written. A future cancelled after its write committed may leave that write's events
//!   unreported (the history has them; a re-write does not report duplicates).
//!
//! Use: after every input, drain [`ChatService::poll_transmit`] (route each payload, report
//! its status with [`ChatService::handle_route_status`]), then
//! [`ChatService::next_output`] until `None`, then arm a timer for
//! [`ChatService::poll_timeout`].
//!
//! What it does not do: no network and no mailbox fetching (the engine does both); it reads
//! the wall clock only to stamp when a message was received.

use crate::events::Event;
use crate::history::{Durability, History, HistoryError};
use client_core::chat::{
    ChatConfig, ChatCore, ChatError, ChatEvent, DeviceCrypto, OutboxEntry, PeerCrypto, PeerTransmit,
};
use proto::login::Envelope;
use proto::peer::PeerToPeer;
use proto::supernode::RouteOutcome;
use proto::{Credential, MessageId, PublicKey, UnixTime, UserName};
use rand::Rng as _;
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::time::{Instant, SystemTime};

/// What the engine must show or do.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatOutput {
    /// `chat`, `chat_accepted` or `chat_delivered`, already in the history.
    Event(Event),
    /// Put this envelope into the login server's offline mailbox
    /// (`UserRequest::StoreOffline`), then call [`ChatService::handle_stored`] or
    /// [`ChatService::handle_store_failed`] with its id.
    StoreOffline(Envelope),
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum ChatSendError {
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// The message could not be written; it is kept in memory, sent once a later write
    /// succeeds, and never lost while the process lives.
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// Why an incoming message or envelope was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ChatInputError {
    /// The peer or the envelope is at fault (log it at DEBUG; nothing else to do).
    #[error(transparent)]
    Refused(#[from] client_core::chat::ChatInputError),
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// See the module docs.
#[derive(Debug)]
pub struct ChatService {
    core: ChatCore,
    history: History,
    /// Taken from the core, not yet written.
    unpersisted: Vec<ChatEvent>,
    /// Returned by the core's `send`, not yet written.
    unrecorded: Vec<OutboxEntry>,
    outputs: VecDeque<ChatOutput>,
}

fn wall_millis_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl ChatService {
    /// Opens `<profile_dir>/history.sqlite` (power-loss durable) and restores the chat core
    /// from it: unacknowledged messages are sent again from the first `handle_timeout`.
    pub async fn open(
        profile_dir: &Path,
        crypto: DeviceCrypto,
        now: Instant,
    ) -> Result<Self, HistoryError> {
        let history = History::open_in_profile(profile_dir, Durability::PowerLoss).await?;
        Self::with_history(history, Box::new(crypto), ChatConfig::default(), now).await
    }

    /// A service over an opened store, with any sealing implementation and tunables
    /// (simulations and tests).
    pub async fn with_history(
        history: History,
        crypto: Box<dyn PeerCrypto>,
        config: ChatConfig,
        now: Instant,
    ) -> Result<Self, HistoryError> {
        let state = history.load_state().await?;
        let mut seed = [0u8; 8];
        rand::rng().fill_bytes(&mut seed);
        let core = ChatCore::restore(now, crypto, config, u64::from_le_bytes(seed), state);
        Ok(Self {
            core,
            history,
            unpersisted: Vec::new(),
            unrecorded: Vec::new(),
            outputs: VecDeque::new(),
        })
    }

    /// The store, for the UI (conversation list, history pages, search, read marks).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Presents a refreshed credential from now on.
    pub fn set_crypto(&mut self, crypto: DeviceCrypto) {
        self.core.set_crypto(Box::new(crypto));
    }

    /// `user`'s devices changed: unacknowledged messages go to these from the next attempt.
    pub fn set_peer_devices(&mut self, user: &UserName, devices: Vec<PublicKey>) {
        self.core.set_peer_devices(user, devices);
    }

    /// How many core events and sent messages wait to be written to the store (zero
    /// unless the store is failing).
    pub fn unwritten(&self) -> usize {
        self.unpersisted.len() + self.unrecorded.len()
    }

    /// How many messages are neither confirmed by a device nor durable in the mailbox.
    pub fn unacknowledged(&self) -> usize {
        self.core.unacknowledged()
    }

    /// Sends `text` to `to`'s `devices`; returns once the message is in the store. Its id
    /// is the `id` of the later `chat_accepted` / `chat_delivered` events.
    pub async fn send(
        &mut self,
        now: Instant,
        wall_millis: u64,
        to: UserName,
        devices: Vec<PublicKey>,
        text: String,
    ) -> Result<MessageId, ChatSendError> {
        let entry = self.core.send(now, wall_millis, to, devices, text)?;
        let id = entry.message.id;
        self.unrecorded.push(entry);
        self.flush().await?;
        Ok(id)
    }

    /// An opened peer message from a verified sender (the engine opens `Routed` payloads
    /// once and dispatches chat messages and receipts here).
    pub async fn handle_message(
        &mut self,
        now: Instant,
        sender: &Credential,
        message: PeerToPeer,
    ) -> Result<(), ChatInputError> {
        self.flush().await?;
        let handled = self.core.handle_message(now, sender, message);
        self.flush().await?;
        Ok(handled?)
    }

    /// One envelope from the offline mailbox. `Ok(true)`: the engine may delete it from the
    /// mailbox (its message is in the history, was a duplicate, or can never be opened);
    /// `Ok(false)`: keep it (its message waits for earlier ones and is not stored yet; it
    /// comes again at the next fetch and is de-duplicated then).
    pub async fn handle_mailbox(
        &mut self,
        now: Instant,
        wall: UnixTime,
        envelope: &Envelope,
    ) -> Result<bool, ChatInputError> {
        self.flush().await?;
        let handled = self.core.handle_mailbox(now, wall, envelope);
        self.flush().await?;
        if let Err(error) = handled {
            tracing::debug!(%error, "mailbox envelope refused");
            return Ok(true);
        }
        Ok(!self.core.is_held(&envelope.id))
    }

    /// The supernode's `RouteStatus` for a transmit's token.
    pub fn handle_route_status(&mut self, now: Instant, token: u64, outcome: RouteOutcome) {
        self.core.handle_route_status(now, token, outcome);
    }

    /// The login server stored envelope `id` in the mailbox.
    pub async fn handle_stored(&mut self, now: Instant, id: MessageId) -> Result<(), HistoryError> {
        self.core.handle_stored(now, id);
        self.flush().await?;
        // The stage change has no event when the message was accepted before.
        if let Some(entry) = self.core.outbox_entry(&id) {
            self.history.update_outbox(entry).await?;
        }
        Ok(())
    }

    /// Storing envelope `id` failed; routing resumes.
    pub async fn handle_store_failed(
        &mut self,
        now: Instant,
        id: MessageId,
    ) -> Result<(), HistoryError> {
        self.core.handle_store_failed(now, id);
        self.flush().await?;
        if let Some(entry) = self.core.outbox_entry(&id) {
            self.history.update_outbox(entry).await?;
        }
        Ok(())
    }

    /// Retransmissions, receipt batches and released gaps that are due.
    pub async fn handle_timeout(&mut self, now: Instant) -> Result<(), HistoryError> {
        self.core.handle_timeout(now);
        self.flush().await
    }

    /// The next payload to route; `None` while something is not yet in the store.
    pub fn poll_transmit(&mut self) -> Option<PeerTransmit> {
        if !self.unpersisted.is_empty() || !self.unrecorded.is_empty() {
            return None;
        }
        self.core.poll_transmit()
    }

    /// The next thing to show or do, written to the store first.
    pub async fn next_output(&mut self) -> Result<Option<ChatOutput>, HistoryError> {
        self.flush().await?;
        Ok(self.outputs.pop_front())
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Closes the store cleanly (at shutdown).
    pub async fn close(&self) {
        self.history.close().await;
    }

    /// Writes what the core produced: sent messages first (their events may follow),
    /// then events with the receive windows they advanced, in one transaction.
    async fn flush(&mut self) -> Result<(), HistoryError> {
        while let Some(event) = self.core.poll_event() {
            self.unpersisted.push(event);
        }
        while let Some(entry) = self.unrecorded.first() {
            self.history.record_sent(entry).await?;
            self.unrecorded.remove(0);
        }
        if self.unpersisted.is_empty() {
            return Ok(());
        }
        let devices: BTreeSet<PublicKey> = self
            .unpersisted
            .iter()
            .filter_map(|event| match event {
                ChatEvent::Received { device, .. } | ChatEvent::Gap { device, .. } => Some(*device),
                _ => None,
            })
            .collect();
        let windows: Vec<_> = devices
            .into_iter()
            .filter_map(|device| {
                self.core
                    .receive_window(&device)
                    .map(|(user, window)| (user, device, window))
            })
            .collect();
        let fresh = self
            .history
            .apply_all(&self.unpersisted, &windows, wall_millis_now())
            .await?;
        for (event, news) in std::mem::take(&mut self.unpersisted).into_iter().zip(fresh) {
            if news && let Some(output) = output(event) {
                self.outputs.push_back(output);
            }
        }
        Ok(())
    }
}

fn output(event: ChatEvent) -> Option<ChatOutput> {
    Some(match event {
        ChatEvent::Received { from, message, .. } => ChatOutput::Event(Event::Chat {
            from,
            id: message.id.to_string(),
            text: message.text,
            sent_at: message.sent_at_millis,
        }),
        ChatEvent::Accepted { to, id, stored } => ChatOutput::Event(Event::ChatAccepted {
            to,
            id: id.to_string(),
            stored,
        }),
        ChatEvent::Delivered { to, id } => ChatOutput::Event(Event::ChatDelivered {
            to,
            id: id.to_string(),
        }),
        ChatEvent::StoreOffline { envelope } => ChatOutput::StoreOffline(envelope),
        ChatEvent::ReceiptAbandoned { .. } | ChatEvent::Gap { .. } => return None,
    })
}
