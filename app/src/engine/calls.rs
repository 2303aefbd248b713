//! Calls in the engine: [`client_core::call::Calls`] (signalling and the end-to-end
//! handshake) turned into CONTRACT events, with auto-answer and the bookkeeping the events
//! need (`setup_ms`, `stats`).
//!
//! What it does not do: no signalling decisions (the core makes them), no sockets (the
//! engine routes the core's sealed messages).

use super::{EngineError, TurnCredentials};
use crate::events::{CallStats, EndReason, Event, PathKind};
use client_core::call::{CallConfig, CallError, CallEvent, Calls};
use client_core::chat::{DeviceCrypto, PeerTransmit};
use proto::peer::{MediaParams, PeerEnvelopeError, PeerToPeer};
use proto::supernode::RouteOutcome;
use proto::{CallId, Credential, PublicKey, UnixTime, UserName};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How this device takes part in calls.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Answer incoming calls by themselves.
    pub auto_answer: bool,
    /// A WAV file standing in for the microphone.
    pub play: Option<PathBuf>,
    /// Where to write what the speaker would play.
    pub record: Option<PathBuf>,
    /// Echo what is heard (`echo-service`).
    pub echo: Option<crate::cli::EchoMode>,
}

/// A request about an existing call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallCommand {
    Accept(CallId),
    Decline(CallId),
    Hangup(CallId),
    Hold(CallId, bool),
    Mute(CallId, bool),
}

#[derive(Debug)]
struct CallInfo {
    connected_at: Option<Instant>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct CallGlue {
    calls: Calls,
    options: CallOptions,
    live: BTreeMap<CallId, CallInfo>,
    outputs: VecDeque<Event>,
    turn: Option<TurnCredentials>,
}

fn call_error(e: CallError) -> EngineError {
    EngineError::Call(e.to_string())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl CallGlue {
    pub(crate) fn new(crypto: DeviceCrypto, options: CallOptions) -> Self {
        Self {
            calls: Calls::new(crypto, CallConfig::default()),
            options,
            live: BTreeMap::new(),
            outputs: VecDeque::new(),
            turn: None,
        }
    }

    pub(crate) fn set_crypto(&mut self, crypto: DeviceCrypto) {
        *self.calls.crypto_mut() = crypto;
    }

    /// TURN credentials of the home supernode, for relayed media paths.
    pub(crate) fn set_turn(&mut self, turn: TurnCredentials) {
        self.turn = Some(turn);
    }

    pub(crate) fn dial(
        &mut self,
        now: Instant,
        user: UserName,
        devices: Vec<PublicKey>,
    ) -> Result<CallId, EngineError> {
        let call_id = CallId::random(&mut rand::rng());
        self.calls
            .dial(now, call_id, user, devices, MediaParams::default())
            .map_err(call_error)?;
        self.live.insert(call_id, CallInfo { connected_at: None });
        Ok(call_id)
    }

    pub(crate) fn command(
        &mut self,
        now: Instant,
        command: CallCommand,
    ) -> Result<(), EngineError> {
        match command {
            CallCommand::Accept(id) => self.calls.accept(now, id),
            CallCommand::Decline(id) => self.calls.decline(now, id),
            CallCommand::Hangup(id) => self.calls.hangup(now, id),
            CallCommand::Hold(id, hold) => self.calls.set_hold(now, id, hold),
            CallCommand::Mute(id, muted) => self.calls.set_muted(id, muted),
        }
        .map_err(call_error)
    }

    /// Hangs up every live call (the engine is stopping).
    pub(crate) fn shutdown(&mut self, now: Instant) {
        let ids: Vec<CallId> = self.live.keys().copied().collect();
        for id in ids {
            let _ = self.calls.hangup(now, id);
        }
    }

    pub(crate) fn handle_message(
        &mut self,
        now: Instant,
        wall: UnixTime,
        sender: &Credential,
        message: PeerToPeer,
    ) {
        if let Err(error) = self.calls.handle_message(now, wall, sender, message) {
            tracing::debug!(%error, "call message refused");
        }
    }

    pub(crate) fn handle_open_failure(
        &mut self,
        now: Instant,
        device: PublicKey,
        error: &PeerEnvelopeError,
    ) {
        self.calls.handle_open_failure(now, device, error);
    }

    pub(crate) fn handle_route_status(&mut self, now: Instant, token: u64, outcome: RouteOutcome) {
        self.calls.handle_route_status(now, token, outcome);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.calls.handle_timeout(now);
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<PeerTransmit> {
        self.calls.poll_transmit()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.calls.poll_timeout()
    }

    /// The next event for the user; drives auto-answer on the way.
    pub(crate) fn poll_output(&mut self, now: Instant) -> Option<Event> {
        while let Some(event) = self.calls.poll_event() {
            self.on_event(now, event);
        }
        self.outputs.pop_front()
    }

    fn on_event(&mut self, now: Instant, event: CallEvent) {
        match event {
            CallEvent::Incoming { call_id, from, .. } => {
                self.live.insert(call_id, CallInfo { connected_at: None });
                self.outputs.push_back(Event::CallIncoming {
                    from,
                    call_id: call_id.to_string(),
                });
                if self.options.auto_answer
                    && let Err(error) = self.calls.accept(now, call_id)
                {
                    tracing::debug!(%error, "cannot auto-answer");
                }
            }
            CallEvent::Ringing { call_id, setup, .. } => {
                self.outputs.push_back(Event::CallRinging {
                    call_id: call_id.to_string(),
                    setup_ms: millis(setup),
                });
            }
            CallEvent::MediaKeys { .. } => {}
            CallEvent::Connected {
                call_id,
                peer,
                setup,
                ..
            } => {
                if let Some(info) = self.live.get_mut(&call_id) {
                    info.connected_at = Some(now);
                }
                self.outputs.push_back(Event::CallConnected {
                    call_id: call_id.to_string(),
                    peer,
                    path: PathKind::Direct,
                    setup_ms: millis(setup),
                });
            }
            CallEvent::Held { call_id, .. } => self.outputs.push_back(Event::CallHeld {
                call_id: call_id.to_string(),
            }),
            CallEvent::Resumed { call_id, .. } => self.outputs.push_back(Event::CallResumed {
                call_id: call_id.to_string(),
            }),
            CallEvent::Muted { .. } | CallEvent::Candidates { .. } => {}
            CallEvent::Ended {
                call_id,
                reason,
                error,
                duration,
                ..
            } => {
                let info = self.live.remove(&call_id);
                let duration = duration
                    .or_else(|| {
                        info.and_then(|i| i.connected_at)
                            .map(|t| now.saturating_duration_since(t))
                    })
                    .unwrap_or_default();
                self.outputs.push_back(Event::CallEnded {
                    call_id: call_id.to_string(),
                    reason: EndReason::from(reason),
                    stats: CallStats {
                        duration_s: duration.as_secs_f64(),
                        ..CallStats::default()
                    },
                    detail: error.map(|e| e.to_string()),
                });
            }
        }
    }
}
