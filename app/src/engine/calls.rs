//! Calls in the engine: [`client_core::call::Calls`] (signalling and the end-to-end
//! handshake) joined to each leg's UDP path ([`crate::media_path`]) and the call's audio
//! ([`crate::call_media`]), turned into CONTRACT events.
//!
//! A call has one leg per peer: an ordinary call has one; the host of a conference
//! ([`CallGlue::add_participant`]) has one per participant, all under the call's id, each
//! with its own handshake keys and its own path, and one [`CallMedia`] mixes them
//! (mix-minus: every leg hears the host's microphone and the other legs). A participant
//! sees an ordinary call with the host.
//!
//! Per leg: both sides gather candidates as soon as the leg exists (the caller when it
//! invites, the callee when it rings) on the home supernode's STUN/TURN service; the callee
//! signals them while ringing, the caller once the leg connects. When the leg is connected
//! and the peer device's candidates are known, its path starts (the caller controls the
//! checks); once it selects a pair, the leg's audio starts (the call's audio, or a further
//! leg of it) and `call_connected` names the leg's peer and path (`call_path` on every later
//! change); a conference's further legs are announced as `call_participant_joined`. When a
//! leg ends while others go on, its audio leaves the mix, `call_participant_left` names it
//! and the call goes on; when the last one ends, `call_ended` waits for the audio to stop
//! so its statistics (and a `--record` file) are complete.
//!
//! The end of a leg also takes the media path: a sealed hang-up, cancel or decline for a
//! peer device with an open path is sent there too (one [`CONTROL_MARKER`] byte, then the
//! same sealed envelope the supernodes route), and such datagrams from the path are opened
//! like routed ones. A hang-up then reaches the peer even when this side's home supernode
//! died without a word and its connection has not timed out yet. Only these messages take
//! both ways: they may arrive twice and in any order (an ended leg's tombstone swallows the
//! second copy), while hold and resume must not overtake each other. A leg's path stays
//! open for [`CONTROL_LINGER`] after the leg ends, so the repeated hang-up can take it.
//!
//! What it does not do: no signalling decisions (the core makes them), no supernode IO (the
//! engine routes the core's sealed messages).

use super::{EngineError, TurnCredentials};
use crate::call_media::{
    AudioLevels, CallMedia, CallMediaConfig, CaptureOptions, LegConfig, LegId, MediaKeys, Sink,
    Source,
};
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
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// How long `call_ended` waits for the audio to stop and flush.
const MEDIA_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// The most remote candidates kept per device of a call (the hole puncher's own limit).
const MAX_REMOTE_CANDIDATES: usize = 32;
/// How long an ended leg's path stays open: the core repeats a hang-up for 2 s.
pub(crate) const CONTROL_LINGER: Duration = Duration::from_millis(2_500);
/// First byte of a call-control datagram on a media path. Media packets start with their
/// version (1); this value is outside every range RFC 7983 assigns (STUN, ZRTP, DTLS, TURN
/// channels, RTP/RTCP), so no packet of those kinds is taken for control either.
pub(crate) const CONTROL_MARKER: u8 = 0xE0;
/// The largest control datagram sent on a path: clear of IP fragmentation.
const MAX_CONTROL_BYTES: usize = 1_200;
/// Control datagrams from one path opened per second at most (each costs signature
/// checks); the rest are dropped, their supernode-routed copies still count.
const MAX_CONTROL_PER_SECOND: u32 = 20;
/// Datagrams queued between a leg's path and its audio (the path's own depth).
const MEDIA_QUEUE: usize = 64;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallCommand {
    Accept(CallId),
    Decline(CallId),
    Hangup(CallId),
    Hold(CallId, bool),
    Mute(CallId, bool),
    /// The conference host drops one participant; the others go on.
    RemoveParticipant(CallId, UserName),
}

/// Results of the glue's own tasks, fed back through the engine.
#[derive(Debug)]
pub(crate) enum CallInput {
    Gathered {
        call_id: CallId,
        peer: UserName,
        result: Box<Result<(MediaPath, LocalCandidates), PathError>>,
    },
    Path {
        call_id: CallId,
        peer: UserName,
        /// `None`: the path is gone.
        path: Option<PathKind>,
    },
    MediaStopped {
        call_id: CallId,
        stats: CallStats,
    },
    /// A sealed call message that came over the media path from `device`.
    Control {
        device: PublicKey,
        payload: Vec<u8>,
    },
}

struct Remote {
    ufrag: String,
    password: String,
    candidates: Vec<Candidate>,
}

/// One leg: the media of this device with one peer.
#[derive(Default)]
struct LegInfo {
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
    held_remote: bool,
    /// The leg in the call's audio, once it joined.
    leg_id: Option<LegId>,
    /// Why this side ended the leg on its own (no media path, media failure).
    failure: Option<String>,
}

#[derive(Default)]
struct CallInfo {
    role: Option<CallRole>,
    /// Live legs by peer.
    legs: BTreeMap<UserName, LegInfo>,
    media: Option<CallMedia>,
    first_connected: Option<Instant>,
    /// A leg's connection was announced (`call_connected`); later legs are announced as
    /// `call_participant_joined`.
    announced: bool,
    held_local: bool,
    muted: bool,
    /// The last leg's end, waiting for the audio to stop.
    ended: Option<(EndReason, Option<String>, Duration)>,
}

impl CallInfo {
    /// Holds the audio when this side holds, or when every leg carrying audio is held by
    /// its peer.
    fn apply_hold(&self) {
        let Some(media) = &self.media else {
            return;
        };
        let mut started = self.legs.values().filter(|l| l.started).peekable();
        let all_held_remote = started.peek().is_some() && started.all(|l| l.held_remote);
        media.set_hold(self.held_local || all_held_remote);
    }
}

impl std::fmt::Debug for CallInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallInfo")
            .field("legs", &self.legs.len())
            .field("ended", &self.ended.is_some())
            .finish_non_exhaustive()
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct CallGlue {
    calls: Calls,
    options: CallOptions,
    devices: CallDevices,
    /// Noise suppression and echo cancellation for sound-card microphones.
    capture: CaptureOptions,
    live: BTreeMap<CallId, CallInfo>,
    /// The outgoing media channel of each peer device's path, for call control.
    controls: BTreeMap<(UserName, PublicKey), mpsc::Sender<Vec<u8>>>,
    outputs: VecDeque<Event>,
    turn: Option<TurnCredentials>,
    inputs: mpsc::Sender<CallInput>,
    /// Paths of ended legs, lingering for the repeated hang-up and then closed; the engine
    /// waits for them at shutdown so their relay allocations are given back.
    closing_paths: JoinSet<()>,
    /// Set at shutdown: lingering paths close at once.
    stopping: watch::Sender<bool>,
}

fn call_error(e: CallError) -> EngineError {
    EngineError::Call(e.to_string())
}

/// Closes `path` after [`CONTROL_LINGER`] (at once when `stopping` turns true).
fn close_path_later(closing: &mut JoinSet<()>, stopping: &watch::Sender<bool>, path: MediaPath) {
    while closing.try_join_next().is_some() {}
    let mut stopping = stopping.subscribe();
    closing.spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(CONTROL_LINGER) => {}
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
        path.close().await;
    });
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
            capture: CaptureOptions::ON,
            live: BTreeMap::new(),
            controls: BTreeMap::new(),
            outputs: VecDeque::new(),
            turn: None,
            inputs,
            closing_paths: JoinSet::new(),
            stopping: watch::channel(false).0,
        }
    }

    /// At shutdown, after the calls ended: closes every lingering path now and waits
    /// (bounded) until each has given its relay allocation back.
    pub(crate) async fn close_paths(&mut self) {
        self.stopping.send_replace(true);
        let all = async { while self.closing_paths.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), all).await;
    }

    /// Uses these sound cards from the next call on (a running call keeps its own).
    pub(crate) fn set_devices(&mut self, devices: CallDevices) {
        self.devices = devices;
    }

    /// Switches noise suppression and echo cancellation, for running calls too. Files,
    /// silence and the echo modes are never processed (their audio must arrive as is).
    pub(crate) fn set_capture(&mut self, capture: CaptureOptions) {
        self.capture = capture;
        if matches!(self.options.source(&self.devices), Source::Device(_)) {
            for media in self.live.values().filter_map(|info| info.media.as_ref()) {
                media.set_capture(capture);
            }
        }
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
                role: Some(CallRole::Caller),
                legs: BTreeMap::from([(user.clone(), LegInfo::default())]),
                ..CallInfo::default()
            },
        );
        self.gather(call_id, user);
        Ok(call_id)
    }

    /// Invites `user` (on `devices`) into a call this device placed and that is connected:
    /// a further leg, mixed into the call's audio once it connects.
    pub(crate) fn add_participant(
        &mut self,
        now: Instant,
        call_id: CallId,
        user: UserName,
        devices: Vec<PublicKey>,
    ) -> Result<(), EngineError> {
        let info = self
            .live
            .get(&call_id)
            .filter(|info| info.ended.is_none())
            .ok_or_else(|| call_error(CallError::UnknownCall))?;
        if info.legs.contains_key(&user) {
            return Err(EngineError::Call(format!("{user} is already in the call")));
        }
        self.calls
            .add_participant(now, call_id, user.clone(), devices)
            .map_err(call_error)?;
        if let Some(info) = self.live.get_mut(&call_id) {
            info.legs.insert(user.clone(), LegInfo::default());
        }
        self.gather(call_id, user);
        Ok(())
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
            CallCommand::RemoveParticipant(id, user) => self.calls.hangup_leg(now, id, &user),
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

    pub(crate) fn handle_forged_from(
        &mut self,
        now: Instant,
        from: &UserName,
        error: &PeerEnvelopeError,
    ) {
        self.calls.handle_forged_from(now, from, error);
    }

    pub(crate) fn handle_route_status(&mut self, now: Instant, token: u64, outcome: RouteOutcome) {
        self.calls.handle_route_status(now, token, outcome);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.calls.handle_timeout(now);
    }

    /// The next sealed call message for the supernodes to route; a copy of one that ends a
    /// leg also takes the peer device's media path when one is open.
    pub(crate) fn poll_transmit(&mut self) -> Option<PeerTransmit> {
        let transmit = self.calls.poll_transmit()?;
        self.send_on_path(&transmit);
        Some(transmit)
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
            CallInput::Gathered {
                call_id,
                peer,
                result,
            } => {
                let Some(leg) = self
                    .live
                    .get_mut(&call_id)
                    .filter(|info| info.ended.is_none())
                    .and_then(|info| info.legs.get_mut(&peer))
                else {
                    // The leg ended while its path was being gathered: give back the
                    // relay allocation it may already hold.
                    if let Ok((path, _)) = *result {
                        close_path_later(&mut self.closing_paths, &self.stopping, path);
                    }
                    return;
                };
                match *result {
                    Ok((path, local)) => {
                        leg.path = Some(path);
                        leg.local = Some(local);
                        self.send_candidates(call_id, &peer);
                        self.try_start(now, call_id, &peer);
                    }
                    Err(error) => {
                        warn!(%error, "cannot set up a media path");
                        self.fail_leg(now, call_id, &peer, format!("no media path: {error}"));
                    }
                }
            }
            CallInput::Path {
                call_id,
                peer,
                path,
            } => self.path_changed(now, call_id, &peer, path),
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
            CallInput::Control { device, payload } => {
                if let Err(error) =
                    self.calls
                        .handle_routed(now, super::wall_now(), device, &payload)
                {
                    debug!(%error, "call control from the media path refused");
                }
            }
        }
    }

    /// Copies a leg-ending call message onto the media path of its device, if one is open.
    fn send_on_path(&mut self, transmit: &PeerTransmit) {
        if !self.calls.ends_a_leg(transmit.token) {
            return;
        }
        let key = (transmit.to.clone(), transmit.to_device);
        let Some(control) = self.controls.get(&key) else {
            return;
        };
        if transmit.payload.len() >= MAX_CONTROL_BYTES {
            debug!(
                bytes = transmit.payload.len(),
                "call message too large for the media path; routed only"
            );
            return;
        }
        let mut datagram = Vec::with_capacity(transmit.payload.len() + 1);
        datagram.push(CONTROL_MARKER);
        datagram.extend_from_slice(&transmit.payload);
        match control.try_send(datagram) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!("media path queue full; call message routed only");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.controls.remove(&key);
            }
        }
    }

    fn gather(&mut self, call_id: CallId, peer: UserName) {
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
                    peer,
                    result: Box::new(result),
                })
                .await;
        });
    }

    /// Signals our candidates once the core knows the peer's device.
    fn send_candidates(&mut self, call_id: CallId, peer: &UserName) {
        let Some(info) = self.live.get_mut(&call_id) else {
            return;
        };
        let role = info.role;
        let Some(leg) = info.legs.get_mut(peer) else {
            return;
        };
        if leg.candidates_sent {
            return;
        }
        let Some(local) = &leg.local else {
            return;
        };
        let ready = match role {
            Some(CallRole::Callee) => true,
            Some(CallRole::Caller) => leg.connected.is_some(),
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
            Ok(()) => leg.candidates_sent = true,
            Err(error) => debug!(%error, "cannot signal candidates yet"),
        }
    }

    /// Starts a leg's path once it is connected with the peer device's candidates in hand,
    /// and its audio: the call's audio for the first leg, a further leg of it otherwise.
    fn try_start(&mut self, now: Instant, call_id: CallId, peer: &UserName) {
        let source = self.options.source(&self.devices);
        let sink = self.options.sink(&self.devices);
        let Some(info) = self.live.get_mut(&call_id) else {
            return;
        };
        if info.ended.is_some() {
            return;
        }
        let controlling = info.role == Some(CallRole::Caller);
        let Some(leg) = info.legs.get_mut(peer) else {
            return;
        };
        if leg.started {
            return;
        }
        let Some((device, media_params, ..)) = leg.connected else {
            return;
        };
        let Some(remote) = leg.remote.get(&device) else {
            return;
        };
        // The handshake's keys come with the connection; wait for them if they lag.
        let Some(keys) = leg.keys.get(&device).map(MediaKeys::from) else {
            return;
        };
        let Some(path) = leg.path.as_mut() else {
            return;
        };
        let channels = match path.start(
            controlling,
            remote.ufrag.clone(),
            remote.password.clone(),
            remote.candidates.clone(),
        ) {
            Ok(channels) => channels,
            Err(error) => {
                let reason = format!("no media path: {error}");
                self.fail_leg(now, call_id, peer, reason);
                return;
            }
        };
        leg.started = true;
        let (to_media, from_path) = mpsc::channel(MEDIA_QUEUE);
        tokio::spawn(split_control(
            channels.incoming,
            to_media,
            self.inputs.clone(),
            device,
        ));
        let control = channels.outgoing.clone();
        // The audio sends nothing until the path selects a pair.
        let leg_config = LegConfig {
            keys,
            local_params: media_params,
            remote_params: media_params,
            outgoing: channels.outgoing,
            incoming: from_path,
        };
        let mut failure = None;
        match info.media.as_mut() {
            None => match CallMedia::start(CallMediaConfig {
                capture: matches!(source, Source::Device(_)).then_some(self.capture),
                leg: leg_config,
                source,
                sink,
            }) {
                Ok(media) => {
                    media.set_muted(info.muted);
                    leg.leg_id = Some(LegId(1));
                    info.media = Some(media);
                }
                Err(error) => {
                    warn!(%error, "call audio did not start");
                    self.outputs.push_back(Event::Error {
                        message: format!("call audio did not start: {error}"),
                    });
                }
            },
            Some(media) => match media.add_leg(leg_config) {
                Ok(id) => leg.leg_id = Some(id),
                Err(error) => failure = Some(format!("cannot mix this participant: {error}")),
            },
        }
        info.apply_hold();
        self.controls.retain(|_, sender| !sender.is_closed());
        self.controls.insert((peer.clone(), device), control);
        if let Some(reason) = failure {
            self.fail_leg(now, call_id, peer, reason);
            return;
        }
        let mut watch = channels.path;
        let inputs = self.inputs.clone();
        let peer = peer.clone();
        tokio::spawn(async move {
            loop {
                let path = *watch.borrow_and_update();
                if path.is_some()
                    && inputs
                        .send(CallInput::Path {
                            call_id,
                            peer: peer.clone(),
                            path,
                        })
                        .await
                        .is_err()
                {
                    return;
                }
                if watch.changed().await.is_err() {
                    let _ = inputs
                        .send(CallInput::Path {
                            call_id,
                            peer,
                            path: None,
                        })
                        .await;
                    return;
                }
            }
        });
    }

    fn path_changed(
        &mut self,
        now: Instant,
        call_id: CallId,
        peer: &UserName,
        path: Option<PathKind>,
    ) {
        let Some(leg) = self
            .live
            .get_mut(&call_id)
            .filter(|info| info.ended.is_none())
            .and_then(|info| info.legs.get_mut(peer))
        else {
            return;
        };
        let Some(kind) = path else {
            self.fail_leg(now, call_id, peer, "the media path was lost".into());
            return;
        };
        if leg.current_path == Some(kind) {
            return;
        }
        leg.current_path = Some(kind);
        if !leg.announced {
            leg.announced = true;
            if let Some((_, _, setup, connected_at)) = leg.connected {
                let further = self
                    .live
                    .get_mut(&call_id)
                    .is_some_and(|info| std::mem::replace(&mut info.announced, true));
                if further {
                    self.outputs.push_back(Event::CallParticipantJoined {
                        call_id: call_id.to_string(),
                        user: peer.clone(),
                    });
                    return;
                }
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

    /// Ends a leg this side cannot carry; it ends `failed` with `reason`.
    fn fail_leg(&mut self, now: Instant, call_id: CallId, peer: &UserName, reason: String) {
        if let Some(leg) = self
            .live
            .get_mut(&call_id)
            .and_then(|info| info.legs.get_mut(peer))
            && leg.failure.is_none()
        {
            leg.failure = Some(reason);
        }
        if let Err(error) = self.calls.hangup_leg(now, call_id, peer) {
            // The core no longer knows the leg, so no `Ended` will come from it: end it
            // here, or its path and media would live on.
            debug!(%error, "cannot hang up a failed leg");
            self.leg_ended(now, call_id, peer, EndReason::Failed, None, None);
        }
    }

    fn on_event(&mut self, now: Instant, event: CallEvent) {
        match event {
            CallEvent::Incoming { call_id, from, .. } => {
                self.live.insert(
                    call_id,
                    CallInfo {
                        role: Some(CallRole::Callee),
                        legs: BTreeMap::from([(from.clone(), LegInfo::default())]),
                        ..CallInfo::default()
                    },
                );
                self.outputs.push_back(Event::CallIncoming {
                    from: from.clone(),
                    call_id: call_id.to_string(),
                });
                self.gather(call_id, from);
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
                peer,
                device,
                keys,
            } => {
                if let Some(leg) = self
                    .live
                    .get_mut(&call_id)
                    .and_then(|info| info.legs.get_mut(&peer))
                {
                    leg.keys.insert(device, keys);
                }
                self.try_start(now, call_id, &peer);
            }
            CallEvent::Candidates {
                call_id,
                peer,
                device,
                ufrag,
                password,
                candidates,
            } => {
                if let Some(leg) = self
                    .live
                    .get_mut(&call_id)
                    .and_then(|info| info.legs.get_mut(&peer))
                {
                    match leg.remote.get_mut(&device) {
                        // Trickled candidates of the same session.
                        Some(remote) if remote.ufrag == ufrag => {
                            if leg.started
                                && let Some(path) = leg.path.as_mut()
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
                            leg.remote.insert(
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
                self.try_start(now, call_id, &peer);
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
                if info.ended.is_some() {
                    return;
                }
                info.role.get_or_insert(role);
                info.first_connected.get_or_insert(now);
                let leg = info.legs.entry(peer.clone()).or_default();
                leg.connected = Some((device, media, setup, now));
                // Only the answering device's keys and candidates matter from now on.
                leg.keys.retain(|d, _| *d == device);
                leg.remote.retain(|d, _| *d == device);
                self.send_candidates(call_id, &peer);
                self.try_start(now, call_id, &peer);
            }
            CallEvent::Held {
                call_id,
                peer,
                by_peer,
            } => self.set_hold(call_id, &peer, by_peer, true),
            CallEvent::Resumed {
                call_id,
                peer,
                by_peer,
            } => self.set_hold(call_id, &peer, by_peer, false),
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
                peer,
                reason,
                error,
                duration,
            } => self.leg_ended(
                now,
                call_id,
                &peer,
                reason,
                error.map(|e| e.describe(&peer)),
                duration,
            ),
        }
    }

    /// Hold by this side applies to every leg (the core tells each): one `call_held`. A
    /// peer's hold is told as it comes.
    fn set_hold(&mut self, call_id: CallId, peer: &UserName, by_peer: bool, hold: bool) {
        let Some(info) = self.live.get_mut(&call_id) else {
            return;
        };
        let changed = if by_peer {
            match info.legs.get_mut(peer) {
                Some(leg) => {
                    leg.held_remote = hold;
                    true
                }
                None => false,
            }
        } else {
            let changed = info.held_local != hold;
            info.held_local = hold;
            changed
        };
        info.apply_hold();
        if !changed {
            return;
        }
        let call_id = call_id.to_string();
        self.outputs.push_back(if hold {
            Event::CallHeld { call_id }
        } else {
            Event::CallResumed { call_id }
        });
    }

    /// One leg ended. While others go on, its audio leaves the mix; the last one ends the
    /// call.
    fn leg_ended(
        &mut self,
        now: Instant,
        call_id: CallId,
        peer: &UserName,
        reason: EndReason,
        detail: Option<String>,
        duration: Option<Duration>,
    ) {
        let info = self.live.entry(call_id).or_default();
        if info.ended.is_some() {
            return;
        }
        let mut leg = info.legs.remove(peer).unwrap_or_default();
        // It lingers so the repeated hang-up can use it.
        if let Some(path) = leg.path.take() {
            close_path_later(&mut self.closing_paths, &self.stopping, path);
        }
        let (reason, detail) = match leg.failure.take() {
            Some(failure) => (EndReason::Failed, Some(failure)),
            None => (reason, detail),
        };
        if !info.legs.is_empty() {
            if let (Some(media), Some(id)) = (info.media.as_mut(), leg.leg_id) {
                media.remove_leg(id);
            }
            info.apply_hold();
            debug!(reason = reason.as_str(), ?detail, "a conference leg ended");
            if leg.announced {
                self.outputs.push_back(Event::CallParticipantLeft {
                    call_id: call_id.to_string(),
                    user: peer.clone(),
                    reason,
                });
            }
            // Someone invited into the conference who never joined: the host asked for
            // them, so say why (busy, declined, unreachable, …).
            if leg.connected.is_none() && reason != EndReason::Hangup {
                let mut message = format!("{peer} did not join the call: {}", reason.as_str());
                if let Some(detail) = detail {
                    message.push_str(&format!(" ({detail})"));
                }
                self.outputs.push_back(Event::Error { message });
            }
            return;
        }
        let duration = info
            .first_connected
            .map(|at| now.saturating_duration_since(at))
            .or(duration)
            .or_else(|| {
                leg.connected
                    .map(|(.., at)| now.saturating_duration_since(at))
            })
            .unwrap_or_default();
        // The audio stops first so the recording ends with the call.
        let media = info.media.take();
        info.ended = Some((reason, detail, duration));
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

/// Splits what a leg's path delivers: call-control datagrams go to the engine (at most
/// [`MAX_CONTROL_PER_SECOND`]), the rest to the audio. Runs until the path closes, also
/// after the audio stopped, so the path lives as long as its handle.
async fn split_control(
    mut from_path: mpsc::Receiver<Vec<u8>>,
    to_media: mpsc::Sender<Vec<u8>>,
    inputs: mpsc::Sender<CallInput>,
    device: PublicKey,
) {
    let mut window = tokio::time::Instant::now();
    let mut in_window = 0u32;
    while let Some(datagram) = from_path.recv().await {
        let Some((&CONTROL_MARKER, payload)) = datagram.split_first() else {
            // A full or closed audio queue drops, as the path itself does.
            let _ = to_media.try_send(datagram);
            continue;
        };
        let now = tokio::time::Instant::now();
        if now.duration_since(window) >= Duration::from_secs(1) {
            window = now;
            in_window = 0;
        }
        in_window += 1;
        if in_window > MAX_CONTROL_PER_SECOND {
            continue;
        }
        let control = CallInput::Control {
            device,
            payload: payload.to_vec(),
        };
        if inputs.try_send(control).is_err() {
            debug!("engine busy; a call message from the media path was dropped");
        }
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

    #[tokio::test]
    async fn the_path_splits_call_control_from_media_and_caps_it() {
        let (path_tx, from_path) = mpsc::channel(64);
        let (to_media, mut media) = mpsc::channel(64);
        let (inputs, mut controls) = mpsc::channel(64);
        let device = proto::SecretKey::from_bytes(&[5; 32]).public();
        let task = tokio::spawn(split_control(from_path, to_media, inputs, device));
        // A media packet (version 1), then more control datagrams than a second allows.
        path_tx.send(vec![1, 0, 0, 0]).await.expect("open");
        for n in 0..MAX_CONTROL_PER_SECOND + 5 {
            path_tx
                .send(vec![CONTROL_MARKER, n as u8])
                .await
                .expect("open");
        }
        path_tx.send(vec![1, 9]).await.expect("open");
        drop(path_tx);
        task.await.expect("the task ends with the path");
        assert_eq!(media.recv().await, Some(vec![1, 0, 0, 0]));
        assert_eq!(media.recv().await, Some(vec![1, 9]));
        let mut opened = Vec::new();
        while let Ok(input) = controls.try_recv() {
            let CallInput::Control {
                device: from,
                payload,
            } = input
            else {
                panic!("only control reaches the engine: {input:?}");
            };
            assert_eq!(from, device);
            opened.push(payload[0]);
        }
        // The whole burst fits in one second of a debug build on a loaded machine; should it
        // not, a second window lets more through, never fewer than the cap.
        assert!(
            opened.len() >= MAX_CONTROL_PER_SECOND as usize,
            "{opened:?}"
        );
        assert_eq!(opened[..3], [0, 1, 2], "the marker byte is taken off");
    }

    #[tokio::test]
    async fn the_path_outlives_the_audio_for_call_control() {
        let (path_tx, from_path) = mpsc::channel(8);
        let (to_media, media) = mpsc::channel(8);
        let (inputs, mut controls) = mpsc::channel(8);
        let device = proto::SecretKey::from_bytes(&[5; 32]).public();
        let task = tokio::spawn(split_control(from_path, to_media, inputs, device));
        drop(media);
        path_tx.send(vec![1, 0]).await.expect("open");
        path_tx
            .send(vec![CONTROL_MARKER, 7])
            .await
            .expect("still open");
        let Some(CallInput::Control { payload, .. }) = controls.recv().await else {
            panic!("control after the audio stopped");
        };
        assert_eq!(payload, [7]);
        assert!(!task.is_finished(), "the path's receiver stays open");
        drop(path_tx);
        task.await.expect("ends with the path");
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
