//! A chat service straight over [`ChatCore`], without persistence: the seam the engine uses
//! until the profile-backed chat service (`engine::chat`) is wired in. Same shape: events
//! come out as CONTRACT [`Event`]s, mailbox hand-offs as [`ChatOutput::StoreOffline`].
//!
//! What it does not do: no history, no outbox on disk (a process that exits forgets its
//! unacknowledged messages).

use crate::events::Event;
use client_core::chat::{ChatConfig, ChatCore, ChatEvent, DeviceCrypto, PeerTransmit};
use proto::login::Envelope;
use proto::peer::PeerToPeer;
use proto::supernode::RouteOutcome;
use proto::{Credential, MessageId, PublicKey, UnixTime, UserName};
use std::collections::VecDeque;
use std::time::Instant;

/// What the engine must show or do.
#[derive(Debug, Clone)]
pub enum ChatOutput {
    Event(Event),
    /// Put this envelope into the login server's mailbox, then report
    /// `handle_stored` / `handle_store_failed`.
    StoreOffline(Envelope),
}

/// Why a chat operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatServiceError {
    #[error(transparent)]
    Chat(#[from] client_core::chat::ChatError),
    #[error(transparent)]
    Input(#[from] client_core::chat::ChatInputError),
}

/// See the module docs.
#[derive(Debug)]
pub struct ChatService {
    core: ChatCore,
    outputs: VecDeque<ChatOutput>,
}

impl ChatService {
    pub fn open(crypto: DeviceCrypto, seed: u64) -> Self {
        Self {
            core: ChatCore::new(Box::new(crypto), ChatConfig::default(), seed),
            outputs: VecDeque::new(),
        }
    }

    pub fn set_crypto(&mut self, crypto: DeviceCrypto) {
        self.core.set_crypto(Box::new(crypto));
    }

    pub fn send(
        &mut self,
        now: Instant,
        wall_millis: u64,
        to: UserName,
        devices: Vec<PublicKey>,
        text: String,
    ) -> Result<MessageId, ChatServiceError> {
        let entry = self.core.send(now, wall_millis, to, devices, text)?;
        Ok(entry.message.id)
    }

    pub fn handle_message(&mut self, now: Instant, sender: &Credential, message: PeerToPeer) {
        if let Err(error) = self.core.handle_message(now, sender, message) {
            tracing::debug!(%error, "chat message refused");
        }
    }

    /// True when the envelope may be acknowledged (handled, or never going to open).
    pub fn handle_mailbox(
        &mut self,
        now: Instant,
        wall: UnixTime,
        envelope: &Envelope,
    ) -> Result<bool, ChatServiceError> {
        if let Err(error) = self.core.handle_mailbox(now, wall, envelope) {
            tracing::debug!(%error, "mailbox envelope refused");
        }
        Ok(true)
    }

    pub fn handle_route_status(&mut self, now: Instant, token: u64, outcome: RouteOutcome) {
        self.core.handle_route_status(now, token, outcome);
    }

    pub fn handle_stored(&mut self, now: Instant, id: MessageId) {
        self.core.handle_stored(now, id);
    }

    pub fn handle_store_failed(&mut self, now: Instant, id: MessageId) {
        self.core.handle_store_failed(now, id);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    pub fn poll_transmit(&mut self) -> Option<PeerTransmit> {
        self.core.poll_transmit()
    }

    pub fn next_output(&mut self) -> Option<ChatOutput> {
        while let Some(event) = self.core.poll_event() {
            let output = match event {
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
                ChatEvent::ReceiptAbandoned { .. } | ChatEvent::Gap { .. } => continue,
            };
            self.outputs.push_back(output);
        }
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }
}
