//! Calls in the engine: [`client_core::call::Calls`] (signalling and the end-to-end
//! handshake) joined to the call's UDP path ([`crate::media_path`]) and audio
//! ([`crate::call_media`]), turned into CONTRACT events.
//!
//! Per call: both sides gather candidates as soon as the call exists (the caller when it
//! dials, the callee when it rings) on the home supernode's STUN/TURN service; the callee
//! signals them while ringing, the caller once the call connects. When the call is
//! connected and the peer device's candidates are known, the path starts (the caller
//! controls the checks); once it selects a pair, the audio starts with the handshake's
//! keys and `call_connected` says which path it took (`call_path` on every later change).
//! `call_ended` waits for the audio to stop so its statistics (and a `--record` file) are
//! complete.
//!
//! What it does not do: no signalling decisions (the core makes them), no supernode IO (the
//! engine routes the core's sealed messages). Conference legs beyond the first are not
//! wired to media yet.

use super::{EngineError, TurnCredentials};
use crate::call_media::{AudioLevels, CallMedia, CallMediaConfig, MediaKeys, Sink, Source};
use crate::events::{CallStats, EndReason, Event, PathKind};
use crate::media_path::{LocalCandidates, MediaPath, PathConfig, PathError, TurnServer};
use client_core::call::{CallConfig, CallError, CallEvent, CallRole, Calls};
use client_core::chat::{DeviceCrypto, PeerTransmit};
use media::device::{DeviceId, DeviceSelection};
use proto::e2e::SessionKeys;
use proto::peer::{Candidate, MediaParams, PeerEnvelopeError, PeerToPeer};
use proto::supernode::RouteOutcome;
use proto::{CallId, Credential, PublicKey, UnixTime, UserName};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// How long `call_ended` waits for the audio to stop and flush.
const MEDIA_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// The most remote candidates kept per device of a call (the hole puncher's own limit).
const MAX_REMOTE_CANDIDATES: usize = 32;

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
    /// Offer no host candidates: media goes through the relay (tests, privacy).
    pub relay_only: bool,
}

/// The sound cards calls use when no file or echo mode replaces them (device ids as
/// [`media::device::DeviceInfo::id`] lists them; `None` follows the system default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallDevices {
    pub input: Option<String>,
    pub output: Option<String>,
}

fn selection(id: Option<&String>) -> DeviceSelection {
    id.map_or(DeviceSelection::SystemDefault, |id| {
        DeviceSelection::Id(DeviceId::new(id.clone()))
    })
}

impl CallOptions {
    pub(crate) fn source(&self, devices: &CallDevices) -> Source {
        match (&self.echo, &self.play) {
            (Some(crate::cli::EchoMode::Live), _) => Source::Echo,
            (Some(crate::cli::EchoMode::Record), _) => Source::EchoRecord,
            (None, Some(path)) => Source::Wav(path.clone()),
            (None, None) => Source::Device(selection(devices.input.as_ref())),
        }
    }

    pub(crate) fn sink(&self, devices: &CallDevices) -> Sink {
        match (&self.echo, &self.record) {
            (Some(_), _) => Sink::Discard,
            (None, Some(path)) => Sink::Wav(path.clone()),
            (None, None) => Sink::Device(selection(devices.output.as_ref())),
        }
    }
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

/// Results of the glue's own tasks, fed back through the engine.
#[derive(Debug)]
pub(crate) enum CallInput {
    Gathered {
        call_id: CallId,
        result: Box<Result<(MediaPath, LocalCandidates), PathError>>,
    },
    Path {
        call_id: CallId,
        /// `None`: the path is gone.
        path: Option<PathKind>,
    },
    MediaStopped {
        call_id: CallId,
        stats: CallStats,
    },
}

struct Remote {
    ufrag: String,
    password: String,
    candidates: Vec<Candidate>,
}

#[derive(Default)]
struct CallInfo {
    peer: Option<UserName>,
    role: Option<CallRole>,
    /// Signalling connected: the device, the agreed media, the setup time, when.
    connected: Option<(PublicKey, MediaParams, Duration, Instant)>,
    keys: BTreeMap<PublicKey, SessionKeys>,
    remote: BTreeMap<PublicKey, Remote>,
    path: Option<MediaPath>,
    local: Option<LocalCandidates>,
    candidates_sent: bool,
    started: bool,
    current_path: Option<PathKind>,
    announced: bool,
    media: Option<CallMedia>,
    held_local: bool,
    held_remote: bool,
    muted: bool,
    /// Why this side ended the call on its own (no media path, media failure).
    failure: Option<String>,
    /// The core's end, waiting for the audio to stop.
    ended: Option<(EndReason, Option<String>, Duration)>,
}

impl std::fmt::Debug for CallInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallInfo")
            .field("started", &self.started)
            .field("announced", &self.announced)
            .finish_non_exhaustive()
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct CallGlue {
    calls: Calls,
    options: CallOptions,
    devices: CallDevices,
    live: BTreeMap<CallId, CallInfo>,
    outputs: VecDeque<Event>,
    turn: Option<TurnCredentials>,
    inputs: mpsc::Sender<CallInput>,
}

fn call_error(e: CallError) -> EngineError {
    EngineError::Call(e.to_string())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl CallGlue {
    pub(crate) fn new(
        crypto: DeviceCrypto,
        options: CallOptions,
        inputs: mpsc::Sender<CallInput>,
    ) -> Self {
        Self {
            calls: Calls::new(crypto, CallConfig::default()),
            options,
            devices: CallDevices::default(),
            live: BTreeMap::new(),
            outputs: VecDeque::new(),
            turn: None,
            inputs,
        }
    }

    /// Uses these sound cards from the next call on (a running call keeps its own).
    pub(crate) fn set_devices(&mut self, devices: CallDevices) {
        self.devices = devices;
    }

    pub(crate) fn set_crypto(&mut self, crypto: DeviceCrypto) {
        *self.calls.crypto_mut() = crypto;
    }

    /// TURN credentials of the home supernode: the STUN and relay service of call paths.
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
            .dial(now, call_id, user.clone(), devices, MediaParams::default())
            .map_err(call_error)?;
        self.live.insert(
            call_id,
            CallInfo {
                peer: Some(user),
                role: Some(CallRole::Caller),
                ..CallInfo::default()
            },
        );
        self.gather(call_id);
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

    /// Calls whose audio runs, with their figures so far and peak levels since the last
    /// look (for [`Event::CallStats`]).
    pub(crate) fn live_media_stats(&self) -> Vec<(CallId, CallStats, AudioLevels)> {
        self.live
            .iter()
            .filter(|(_, info)| info.ended.is_none())
            .filter_map(|(id, info)| {
                let media = info.media.as_ref()?;
                Some((*id, media.stats(), media.take_levels()))
            })
            .collect()
    }

    /// True while some call's audio is still being stopped.
    pub(crate) fn stopping_media(&self) -> bool {
        self.live.values().any(|c| c.ended.is_some())
    }

    pub(crate) fn handle_message(
        &mut self,
        now: Instant,
        wall: UnixTime,
        sender: &Credential,
        message: PeerToPeer,
    ) {
        if let Err(error) = self.calls.handle_message(now, wall, sender, message) {
            debug!(%error, "call message refused");
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

    /// The next event for the user; drives auto-answer and the media on the way.
    pub(crate) fn poll_output(&mut self, now: Instant) -> Option<Event> {
        while let Some(event) = self.calls.poll_event() {
            self.on_event(now, event);
        }
        self.outputs.pop_front()
    }

    /// A result of one of the glue's tasks.
    pub(crate) fn handle_input(&mut self, now: Instant, input: CallInput) {
        match input {
            CallInput::Gathered { call_id, result } => {
                let Some(info) = self.live.get_mut(&call_id) else {
                    return;
                };
                if info.ended.is_some() {
                    return;
                }
                match *result {
                    Ok((path, local)) => {
                        info.path = Some(path);
                        info.local = Some(local);
                        self.send_candidates(call_id);
                        self.try_start(now, call_id);
                    }
                    Err(error) => {
                        warn!(%error, "cannot set up a media path");
                        self.fail(now, call_id, format!("no media path: {error}"));
                    }
                }
            }
            CallInput::Path { call_id, path } => self.path_changed(now, call_id, path),
            CallInput::MediaStopped { call_id, stats } => {
                let Some(info) = self.live.remove(&call_id) else {
                    return;
                };
                if let Some((reason, detail, duration)) = info.ended {
                    self.outputs.push_back(Event::CallEnded {
                        call_id: call_id.to_string(),
                        reason,
                        stats: CallStats {
                            duration_s: duration.as_secs_f64(),
                            ..stats
                        },
                        detail,
                    });
                }
            }
        }
    }

    fn gather(&mut self, call_id: CallId) {
        let mut config = PathConfig::default();
        if let Some(turn) = &self.turn {
            let server = TurnServer::new(
                turn.urls.clone(),
                turn.username.clone(),
                turn.password.clone(),
            );
            config.stun_server = server.udp_addr();
            config.turn = Some(server);
        }
        if self.options.relay_only {
            config.host_candidates = false;
            config.stun_server = None;
        }
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let result = MediaPath::bind(config).await;
            let _ = inputs
                .send(CallInput::Gathered {
                    call_id,
                    result: Box::new(result),
                })
                .await;
        });
    }

    /// Signals our candidates once the core knows the peer's device.
    fn send_candidates(&mut self, call_id: CallId) {
        let Some(info) = self.live.get_mut(&call_id) else {
            return;
        };
        if info.candidates_sent {
            return;
        }
        let (Some(local), Some(peer)) = (&info.local, &info.peer) else {
            return;
        };
        let ready = match info.role {
            Some(CallRole::Callee) => true,
            Some(CallRole::Caller) => info.connected.is_some(),
            None => false,
        };
        if !ready {
            return;
        }
        match self.calls.send_candidates(
            call_id,
            peer,
            local.ufrag.clone(),
            local.password.clone(),
            local.candidates.clone(),
        ) {
            Ok(()) => info.candidates_sent = true,
            Err(error) => debug!(%error, "cannot signal candidates yet"),
        }
    }

    /// Starts the path once connected with the peer device's candidates in hand.
    fn try_start(&mut self, now: Instant, call_id: CallId) {
        let Some(info) = self.live.get_mut(&call_id) else {
            return;
        };
        if info.started || info.ended.is_some() {
            return;
        }
        let Some((device, ..)) = info.connected else {
            return;
        };
        let Some(remote) = info.remote.get(&device) else {
            return;
        };
        // The handshake's keys come with the connection; wait for them if they lag.
        if !info.keys.contains_key(&device) {
            return;
        }
        let Some(path) = info.path.as_mut() else {
            return;
        };
        let controlling = info.role == Some(CallRole::Caller);
        let channels = match path.start(
            controlling,
            remote.ufrag.clone(),
            remote.password.clone(),
            remote.candidates.clone(),
        ) {
            Ok(channels) => channels,
            Err(error) => {
                let reason = format!("no media path: {error}");
                self.fail(now, call_id, reason);
                return;
            }
        };
        let Some(info) = self.live.get_mut(&call_id) else {
            return;
        };
        info.started = true;
        let Some((_, media_params, ..)) = info.connected else {
            return;
        };
        // The audio starts now; it sends nothing until the path selects a pair.
        if let Some(keys) = info.keys.get(&device) {
            let config = CallMediaConfig::new(
                MediaKeys::from(keys),
                media_params,
                self.options.source(&self.devices),
                self.options.sink(&self.devices),
                channels.outgoing,
                channels.incoming,
            );
            match CallMedia::start(config) {
                Ok(media) => {
                    media.set_hold(info.held_local || info.held_remote);
                    media.set_muted(info.muted);
                    info.media = Some(media);
                }
                Err(error) => {
                    warn!(%error, "call audio did not start");
                    self.outputs.push_back(Event::Error {
                        message: format!("call audio did not start: {error}"),
                    });
                }
            }
        }
        let mut watch = channels.path;
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            loop {
                let path = *watch.borrow_and_update();
                if path.is_some()
                    && inputs
                        .send(CallInput::Path { call_id, path })
                        .await
                        .is_err()
                {
                    return;
                }
                if watch.changed().await.is_err() {
                    let _ = inputs
                        .send(CallInput::Path {
                            call_id,
                            path: None,
                        })
                        .await;
                    return;
                }
            }
        });
    }

    fn path_changed(&mut self, now: Instant, call_id: CallId, path: Option<PathKind>) {
        let Some(kind) = path else {
            if self.live.get(&call_id).is_some_and(|i| i.ended.is_none()) {
                self.fail(now, call_id, "the media path was lost".into());
            }
            return;
        };
        let Some(info) = self.live.get_mut(&call_id) else {
            return;
        };
        if info.ended.is_some() {
            return;
        }
        if info.current_path == Some(kind) {
            return;
        }
        info.current_path = Some(kind);
        if !info.announced {
            info.announced = true;
            if let (Some((_, _, setup, connected_at)), Some(peer)) = (info.connected, &info.peer) {
                self.outputs.push_back(Event::CallConnected {
                    call_id: call_id.to_string(),
                    peer: peer.clone(),
                    path: kind,
                    setup_ms: millis(setup + now.saturating_duration_since(connected_at)),
                });
            }
        } else {
            self.outputs.push_back(Event::CallPath {
                call_id: call_id.to_string(),
                path: kind,
            });
        }
    }

    /// Ends a call this side cannot carry; `call_ended` says `failed` with `reason`.
    fn fail(&mut self, now: Instant, call_id: CallId, reason: String) {
        if let Some(info) = self.live.get_mut(&call_id)
            && info.failure.is_none()
        {
            info.failure = Some(reason);
        }
        if let Err(error) = self.calls.hangup(now, call_id) {
            // The core no longer knows the call, so no `Ended` will come from it: end it
            // here, or its path and media would live on.
            debug!(%error, "cannot hang up a failed call");
            self.ended(now, call_id, EndReason::Failed, None, None);
        }
    }

    fn on_event(&mut self, now: Instant, event: CallEvent) {
        match event {
            CallEvent::Incoming { call_id, from, .. } => {
                self.live.insert(
                    call_id,
                    CallInfo {
                        peer: Some(from.clone()),
                        role: Some(CallRole::Callee),
                        ..CallInfo::default()
                    },
                );
                self.outputs.push_back(Event::CallIncoming {
                    from,
                    call_id: call_id.to_string(),
                });
                self.gather(call_id);
                if self.options.auto_answer
                    && let Err(error) = self.calls.accept(now, call_id)
                {
                    debug!(%error, "cannot auto-answer");
                }
            }
            CallEvent::Ringing { call_id, setup, .. } => {
                self.outputs.push_back(Event::CallRinging {
                    call_id: call_id.to_string(),
                    setup_ms: millis(setup),
                });
            }
            CallEvent::MediaKeys {
                call_id,
                device,
                keys,
                ..
            } => {
                if let Some(info) = self.live.get_mut(&call_id) {
                    info.keys.insert(device, keys);
                }
                self.try_start(now, call_id);
            }
            CallEvent::Candidates {
                call_id,
                device,
                ufrag,
                password,
                candidates,
                ..
            } => {
                if let Some(info) = self.live.get_mut(&call_id) {
                    match info.remote.get_mut(&device) {
                        // Trickled candidates of the same session.
                        Some(remote) if remote.ufrag == ufrag => {
                            if info.started
                                && let Some(path) = info.path.as_mut()
                                && let Err(error) = path.add_remote_candidates(candidates.clone())
                            {
                                debug!(%error, "cannot add trickled candidates");
                            }
                            // A peer can trickle without end: keep one candidate per
                            // address and no more than the hole puncher checks.
                            let mut seen = std::collections::BTreeSet::new();
                            remote.candidates.extend(candidates);
                            remote.candidates.retain(|c| seen.insert(c.addr));
                            remote.candidates.truncate(MAX_REMOTE_CANDIDATES);
                        }
                        _ => {
                            info.remote.insert(
                                device,
                                Remote {
                                    ufrag,
                                    password,
                                    candidates,
                                },
                            );
                        }
                    }
                }
                self.try_start(now, call_id);
            }
            CallEvent::Connected {
                call_id,
                peer,
                device,
                role,
                media,
                setup,
            } => {
                let info = self.live.entry(call_id).or_default();
                info.peer = Some(peer);
                info.role = Some(role);
                info.connected = Some((device, media, setup, now));
                // Only the answering device's keys and candidates matter from now on.
                info.keys.retain(|d, _| *d == device);
                info.remote.retain(|d, _| *d == device);
                self.send_candidates(call_id);
                self.try_start(now, call_id);
            }
            CallEvent::Held {
                call_id, by_peer, ..
            } => {
                self.set_hold(call_id, by_peer, true);
                self.outputs.push_back(Event::CallHeld {
                    call_id: call_id.to_string(),
                });
            }
            CallEvent::Resumed {
                call_id, by_peer, ..
            } => {
                self.set_hold(call_id, by_peer, false);
                self.outputs.push_back(Event::CallResumed {
                    call_id: call_id.to_string(),
                });
            }
            CallEvent::Muted { call_id, muted } => {
                if let Some(info) = self.live.get_mut(&call_id) {
                    info.muted = muted;
                    if let Some(media) = &info.media {
                        media.set_muted(muted);
                    }
                }
            }
            CallEvent::Ended {
                call_id,
                reason,
                error,
                duration,
                ..
            } => self.ended(now, call_id, reason, error.map(|e| e.to_string()), duration),
        }
    }

    fn set_hold(&mut self, call_id: CallId, by_peer: bool, hold: bool) {
        if let Some(info) = self.live.get_mut(&call_id) {
            if by_peer {
                info.held_remote = hold;
            } else {
                info.held_local = hold;
            }
            if let Some(media) = &info.media {
                media.set_hold(info.held_local || info.held_remote);
            }
        }
    }

    fn ended(
        &mut self,
        now: Instant,
        call_id: CallId,
        reason: EndReason,
        detail: Option<String>,
        duration: Option<Duration>,
    ) {
        let mut info = self.live.remove(&call_id).unwrap_or_default();
        let duration = duration
            .or_else(|| {
                info.connected
                    .map(|(.., at)| now.saturating_duration_since(at))
            })
            .unwrap_or_default();
        let (reason, detail) = match info.failure.take() {
            Some(failure) => (EndReason::Failed, Some(failure)),
            None => (reason, detail),
        };
        // Dropping the path stops its task; the audio stops first so the recording ends
        // with the call.
        let media = info.media.take();
        info.path = None;
        info.ended = Some((reason, detail, duration));
        self.live.insert(call_id, info);
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let stats = match media {
                Some(media) => tokio::time::timeout(MEDIA_STOP_TIMEOUT, media.stop())
                    .await
                    .unwrap_or_default(),
                None => CallStats::default(),
            };
            let _ = inputs
                .send(CallInput::MediaStopped { call_id, stats })
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen() -> CallDevices {
        CallDevices {
            input: Some("alsa:hw:CARD=USB,DEV=0".into()),
            output: Some("alsa:hw:CARD=HDMI,DEV=3".into()),
        }
    }

    #[test]
    fn calls_use_the_chosen_sound_cards() {
        let options = CallOptions::default();
        assert_eq!(
            options.source(&chosen()),
            Source::Device(DeviceSelection::Id(DeviceId::new("alsa:hw:CARD=USB,DEV=0")))
        );
        assert_eq!(
            options.sink(&chosen()),
            Sink::Device(DeviceSelection::Id(DeviceId::new(
                "alsa:hw:CARD=HDMI,DEV=3"
            )))
        );
        let defaults = CallDevices::default();
        assert_eq!(
            options.source(&defaults),
            Source::Device(DeviceSelection::SystemDefault)
        );
        assert_eq!(
            options.sink(&defaults),
            Sink::Device(DeviceSelection::SystemDefault)
        );
    }

    #[test]
    fn files_and_echo_replace_the_chosen_sound_cards() {
        let files = CallOptions {
            play: Some("in.wav".into()),
            record: Some("out.wav".into()),
            ..CallOptions::default()
        };
        assert_eq!(files.source(&chosen()), Source::Wav("in.wav".into()));
        assert_eq!(files.sink(&chosen()), Sink::Wav("out.wav".into()));
        let echo = CallOptions {
            echo: Some(crate::cli::EchoMode::Live),
            ..CallOptions::default()
        };
        assert_eq!(echo.source(&chosen()), Source::Echo);
        assert_eq!(echo.sink(&chosen()), Sink::Discard);
    }
}
