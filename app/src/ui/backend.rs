//! The real [`Backend`]: the UI's actions carried out with [`crate::login_client`] (register,
//! log in), the [`Engine`] (everything once logged in) and [`crate::netcheck`].
//!
//! Slow requests (dial, search, netcheck, buddy-list changes) run as tasks of their own so
//! one slow lookup never holds up a chat message; replies go to the [`EventSink`].
//!
//! What it does not do: decide anything the user sees (the model does), or keep state
//! beyond the running engine.

use super::audio_check::{MicMonitor, MicReport};
use super::link::{Backend, EventSink};
use super::model::{
    AudioDevice, AudioDevices, Authorization, ContactEntry, HistoryLine, MyStatus, NatReport,
    NetworkInfo, Tick, UiAction, UiEvent,
};
use crate::cli::{CliError, Context, LogFormat, Options, Output};
use crate::engine::{CallDevices, ContactAction, Engine, EngineConfig, EngineHandle};
use crate::events::{Event, Status};
use crate::history::{Direction, Durability, History, MessageState};
use crate::login_client::{self, FlowError, LoginTarget};
use crate::profile::Profile;
use media::device::{DeviceError, DeviceInfo};
use proto::login::{Contact, ContactState, Password};
use proto::supernode::{Presence, StatusMessage};
use proto::{CallId, DisplayName, SignedCredential, UserName};
use tokio::task::JoinHandle;

/// How often the engine reports a running call's figures and levels (the meters and the
/// quality indicator).
const LIVE_CALL_STATS: std::time::Duration = std::time::Duration::from_millis(200);

/// Talks to the network on behalf of the UI.
#[derive(Debug)]
pub struct NetworkBackend {
    profile: Profile,
    target: LoginTarget,
    network: NetworkInfo,
    engine: Option<EngineHandle>,
    forward: Option<JoinHandle<()>>,
    presence: MyStatus,
    /// The status message contacts see.
    status_message: String,
    /// The settings page's microphone meter, while it runs.
    mic: Option<MicMonitor>,
}

impl NetworkBackend {
    /// A backend for the login server `target`, described to the person by `network`.
    pub fn new(profile: Profile, target: LoginTarget, network: NetworkInfo) -> Self {
        Self {
            profile,
            target,
            network,
            engine: None,
            forward: None,
            presence: MyStatus::Online,
            status_message: String::new(),
            mic: None,
        }
    }

    async fn start_engine(&mut self, credential: SignedCredential, sink: &EventSink) {
        self.stop_engine().await;
        let mut config = EngineConfig::new(self.profile.clone(), self.target, credential);
        config.presence = self.presence.to_wire();
        config.live_call_stats = Some(LIVE_CALL_STATS);
        match Engine::start(config).await {
            Ok((handle, events)) => {
                let devices = self.chosen_devices();
                if let Err(e) = handle.set_devices(devices.input, devices.output).await {
                    sink.error(format!("Sound cards: {e}")).await;
                }
                // A broken preferences file was reported at start; calls then use defaults.
                let prefs = super::prefs::load(self.profile.dir()).unwrap_or_default();
                if let Err(e) = handle.set_capture(prefs.capture()).await {
                    sink.error(format!("Sound processing: {e}")).await;
                }
                self.forward = Some(tokio::spawn(super::link::forward_events(
                    events,
                    sink.clone(),
                )));
                if !self.status_message.is_empty()
                    && let Err(e) = handle.set_status(self.wire_presence()).await
                {
                    sink.error(format!("Status message: {e}")).await;
                }
                let engine = handle.clone();
                self.engine = Some(handle);
                let sink = sink.clone();
                let profile_dir = self.profile.dir().to_owned();
                tokio::spawn(async move {
                    if let Some(peers) = refresh_contacts(&engine, ContactAction::List, &sink).await
                    {
                        load_history(&profile_dir, peers, &sink).await;
                    }
                });
            }
            Err(e) => {
                sink.send(UiEvent::LoginFailed {
                    message: format!("Cannot start: {e}"),
                })
                .await;
            }
        }
    }

    /// The machine's sound cards (none when it has no audio system) and the chosen ones.
    async fn devices(&self) -> AudioDevices {
        fn listed(list: Result<Vec<DeviceInfo>, DeviceError>) -> Vec<AudioDevice> {
            list.unwrap_or_default()
                .into_iter()
                .map(|d| AudioDevice {
                    id: d.id.to_string(),
                    name: d.name,
                })
                .collect()
        }
        // Listing probes the sound system, which can block for a while.
        let lists = tokio::task::spawn_blocking(|| {
            (
                listed(media::device::input_devices()),
                listed(media::device::output_devices()),
            )
        })
        .await;
        let (inputs, outputs) = lists.unwrap_or_default();
        let chosen = self.chosen_devices();
        AudioDevices {
            inputs,
            outputs,
            input: chosen.input,
            output: chosen.output,
        }
    }

    /// The sound cards remembered in the profile (the system defaults when it has none
    /// or cannot be read).
    fn chosen_devices(&self) -> CallDevices {
        self.profile
            .settings()
            .map(|s| CallDevices {
                input: s.input_device,
                output: s.output_device,
            })
            .unwrap_or_default()
    }

    /// Remembers the sound cards in the profile and hands them to the running engine.
    async fn set_devices(
        &mut self,
        input: Option<String>,
        output: Option<String>,
        sink: &EventSink,
    ) {
        let saved = self.profile.settings().and_then(|mut settings| {
            settings.input_device = input.clone();
            settings.output_device = output.clone();
            self.profile.save_settings(&settings)
        });
        if let Err(e) = saved {
            sink.error(format!("Cannot remember the sound cards: {e}"))
                .await;
        }
        if let Some(engine) = self.engine()
            && let Err(e) = engine.set_devices(input, output).await
        {
            sink.error(format!("Sound cards: {e}")).await;
        }
    }

    /// The status and message as the supernode takes them (a message it would refuse is
    /// left out rather than failing the status).
    fn wire_presence(&self) -> Presence {
        Presence {
            status: self.presence.to_wire(),
            message: StatusMessage::new(self.status_message.clone()).unwrap_or_default(),
        }
    }

    /// Starts (or restarts, after a device change) the microphone meter.
    fn start_mic_monitor(&mut self, sink: &EventSink) {
        self.mic = None;
        let handle = tokio::runtime::Handle::current();
        let reports = sink.clone();
        let report = move |report: MicReport| {
            let event = match report {
                MicReport::Level(level) => UiEvent::MicLevel(level),
                MicReport::Unavailable(message) => UiEvent::MicUnavailable(message),
            };
            // The meter thread is not a runtime thread: it may wait for the UI's queue.
            handle.block_on(reports.send(event));
        };
        match MicMonitor::start(self.chosen_devices().input, report) {
            Ok(monitor) => self.mic = Some(monitor),
            Err(e) => {
                let sink = sink.clone();
                tokio::spawn(async move {
                    sink.send(UiEvent::MicUnavailable(format!("cannot measure: {e}")))
                        .await;
                });
            }
        }
    }

    fn test_speaker(&self, sink: &EventSink) {
        let handle = tokio::runtime::Handle::current();
        let reports = sink.clone();
        let done = move |error: Option<String>| {
            handle.block_on(reports.send(UiEvent::SpeakerTestDone { error }));
        };
        if let Err(e) = super::audio_check::play_speaker_test(self.chosen_devices().output, done) {
            let sink = sink.clone();
            tokio::spawn(async move {
                sink.send(UiEvent::SpeakerTestDone {
                    error: Some(e.to_string()),
                })
                .await;
            });
        }
    }

    async fn change_password(&mut self, old: String, new: String, sink: &EventSink) {
        let result = async {
            let user = match self.engine() {
                Some(engine) => engine.user().clone(),
                None => return Err("Not signed in".to_string()),
            };
            let old = Password::new(old).map_err(|e| format!("Password: {e}"))?;
            let new = Password::new(new).map_err(|e| format!("New password: {e}"))?;
            login_client::change_password(&self.profile, &self.target, &user, &old, &new)
                .await
                .map_err(|e| match e {
                    FlowError::WrongPassword => "The current password is wrong.".to_string(),
                    other => flow_message(&other),
                })
        }
        .await;
        match result {
            Ok(credential) => {
                // The login server revoked the old credential: the session restarts.
                self.start_engine(credential, sink).await;
                sink.send(UiEvent::PasswordChanged).await;
            }
            Err(message) => sink.send(UiEvent::PasswordChangeFailed(message)).await,
        }
    }

    async fn set_display_name(&mut self, display_name: String, sink: &EventSink) {
        let result = async {
            let engine = self.engine().ok_or_else(|| "Not signed in".to_string())?;
            let name = proto::DisplayName::new(display_name.clone())
                .map_err(|e| format!("Display name: {e}"))?;
            let fresh = login_client::set_display_name(
                &self.profile,
                &self.target,
                &engine.credential(),
                &name,
            )
            .await
            .map_err(|e| match e {
                FlowError::Throttled(secs) => {
                    format!("Too many display-name changes. Try again in {secs} s.")
                }
                other => flow_message(&other),
            })?;
            // Peers learn the name from the credential: the session switches to the new one.
            engine
                .adopt_credential(fresh)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(()) => sink.send(UiEvent::DisplayNameChanged(display_name)).await,
            Err(message) => sink.send(UiEvent::DisplayNameChangeFailed(message)).await,
        }
    }

    async fn stop_engine(&mut self) {
        if let Some(engine) = self.engine.take() {
            engine.shutdown().await;
        }
        if let Some(forward) = self.forward.take() {
            forward.abort();
        }
    }

    fn context(&self) -> Context {
        Context {
            out: Output { json: false },
            profile: self.profile.clone(),
            options: Options {
                profile_dir: self.profile.dir().to_owned(),
                login_server: Some(self.target.addr),
                authority_key: Some(self.target.authority),
                json: false,
                log_format: LogFormat::Text,
            },
        }
    }

    async fn register(
        &mut self,
        user: UserName,
        display_name: String,
        password: String,
        sink: &EventSink,
    ) {
        let result = async {
            let password = Password::new(password).map_err(|e| format!("Password: {e}"))?;
            password.check_new().map_err(|e| format!("Password: {e}"))?;
            let display_name =
                DisplayName::new(display_name.trim()).map_err(|e| format!("Display name: {e}"))?;
            login_client::register(&self.profile, &self.target, &user, &display_name, &password)
                .await
                .map_err(|e| flow_message(&e))
        }
        .await;
        match result {
            Ok(credential) => {
                sink.engine(Event::Registered { user }).await;
                self.start_engine(credential, sink).await;
            }
            Err(message) => sink.send(UiEvent::LoginFailed { message }).await,
        }
    }

    async fn login(&mut self, user: UserName, password: String, sink: &EventSink) {
        let result = async {
            let password = Password::new(password).map_err(|e| format!("Password: {e}"))?;
            login_client::login(&self.profile, &self.target, &user, &password)
                .await
                .map_err(|e| flow_message(&e))
        }
        .await;
        match result {
            Ok(credential) => self.start_engine(credential, sink).await,
            Err(message) => sink.send(UiEvent::LoginFailed { message }).await,
        }
    }

    fn engine(&self) -> Option<EngineHandle> {
        self.engine.clone()
    }
}

/// The person's words for a login failure.
fn flow_message(e: &FlowError) -> String {
    match e {
        FlowError::WrongPassword => "Wrong user name or password.".into(),
        FlowError::Throttled(secs) => format!("Too many attempts. Try again in {secs} s."),
        FlowError::Unreachable { addr, .. } => {
            format!("Cannot reach the login server at {addr}. Check the address or your network.")
        }
        FlowError::NameTaken(user) => format!("The user name {user} is already taken."),
        other => other.to_string(),
    }
}

fn parse_call(call_id: &str) -> Result<CallId, String> {
    call_id
        .parse()
        .map_err(|_| format!("unknown call {call_id}"))
}

/// The buddy list as the model wants it.
fn contacts_event(list: Vec<Contact>) -> UiEvent {
    let mut contacts = Vec::new();
    let mut requests = Vec::new();
    for contact in list {
        let authorization = match contact.state {
            ContactState::Accepted => Authorization::Contact,
            ContactState::RequestSent => Authorization::Requested,
            ContactState::RequestReceived => {
                requests.push(contact.user);
                continue;
            }
            ContactState::Blocked => continue,
        };
        contacts.push(ContactEntry {
            user: contact.user,
            display_name: contact.display_name.as_str().to_string(),
            status: Status::Offline,
            authorization,
        });
    }
    UiEvent::Contacts { contacts, requests }
}

/// Fetches (and changes) the buddy list; returns who is on it.
async fn refresh_contacts(
    engine: &EngineHandle,
    action: ContactAction,
    sink: &EventSink,
) -> Option<Vec<UserName>> {
    match engine.contacts(action).await {
        Ok(list) => {
            let peers = list.iter().map(|c| c.user.clone()).collect();
            sink.send(contacts_event(list)).await;
            Some(peers)
        }
        Err(e) => {
            sink.error(format!("Contacts: {e}")).await;
            None
        }
    }
}

/// Lines of stored history shown per conversation when the app starts.
const HISTORY_LINES: u32 = 200;

/// Shows the stored conversations with `peers` (the engine keeps writing the same store;
/// SQLite's WAL lets this connection read alongside).
async fn load_history(profile_dir: &std::path::Path, peers: Vec<UserName>, sink: &EventSink) {
    let history = match History::open_in_profile(profile_dir, Durability::PowerLoss).await {
        Ok(history) => history,
        Err(e) => {
            sink.error(format!("Chat history: {e}")).await;
            return;
        }
    };
    for peer in peers {
        let Ok(entries) = history.conversation(&peer, HISTORY_LINES, None).await else {
            continue;
        };
        if entries.is_empty() {
            continue;
        }
        let lines = entries
            .into_iter()
            .map(|e| HistoryLine {
                id: e.id.to_string(),
                from_me: e.direction == Direction::Outgoing,
                text: e.text,
                sent_at_millis: e.sent_at_millis,
                tick: match e.state {
                    MessageState::Sending => Some(Tick::Sending),
                    MessageState::Accepted => Some(Tick::Accepted),
                    MessageState::Stored => Some(Tick::Stored),
                    MessageState::Delivered => Some(Tick::Delivered),
                    MessageState::Received => None,
                },
            })
            .collect();
        sink.send(UiEvent::History { peer, lines }).await;
    }
    history.close().await;
}

async fn netcheck(ctx: Context, sink: EventSink) {
    let result: Result<NatReport, String> = async {
        let servers = crate::netcheck::stun_servers(&ctx)
            .await
            .map_err(|e: CliError| e.to_string())?;
        let Some(&server) = servers.first() else {
            return Err("no supernode offers STUN; cannot check the NAT".to_string());
        };
        let secondary = servers.iter().copied().find(|s| s.ip() != server.ip());
        let report = crate::netcheck::discover(server, secondary)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_value(crate::netcheck::report_json(&report, server))
            .map_err(|e| format!("unexpected report: {e}"))
    }
    .await;
    sink.send(match result {
        Ok(report) => UiEvent::Netcheck(report),
        Err(message) => UiEvent::NetcheckFailed { message },
    })
    .await;
}

impl Backend for NetworkBackend {
    async fn start(&mut self, sink: &EventSink) {
        sink.send(UiEvent::Network(self.network.clone())).await;
        sink.send(UiEvent::Devices(self.devices().await)).await;
        match super::prefs::load(self.profile.dir()) {
            Ok(prefs) => sink.send(UiEvent::Prefs(prefs)).await,
            Err(e) => sink.error(format!("Preferences: {e}")).await,
        }
        // A remembered, still valid credential signs in without a password.
        let resumed = login_client::ensure_credential(&self.profile, &self.target, || {
            Err(FlowError::Password("needed".into()))
        })
        .await;
        match resumed {
            Ok((_user, credential)) => self.start_engine(credential, sink).await,
            Err(_) => sink.send(UiEvent::SignedOut).await,
        }
    }

    async fn close(&mut self) {
        self.mic = None;
        self.stop_engine().await;
    }

    async fn perform(&mut self, action: UiAction, sink: &EventSink) {
        match action {
            UiAction::Register {
                user,
                display_name,
                password,
            } => self.register(user, display_name, password.0, sink).await,
            UiAction::Login { user, password } => self.login(user, password.0, sink).await,
            // The profile keeps its credential: the next start signs in again by itself.
            UiAction::LogOut => self.stop_engine().await,
            UiAction::SetDevices { input, output } => {
                self.set_devices(input, output, sink).await;
                if self.mic.is_some() {
                    self.start_mic_monitor(sink);
                }
            }
            UiAction::MonitorMicrophone(true) => self.start_mic_monitor(sink),
            UiAction::MonitorMicrophone(false) => self.mic = None,
            UiAction::TestSpeaker => self.test_speaker(sink),
            UiAction::SetPrefs(prefs) => {
                if let Err(e) = super::prefs::save(self.profile.dir(), &prefs) {
                    sink.error(format!("Cannot remember the preferences: {e}"))
                        .await;
                }
                if let Some(engine) = self.engine()
                    && let Err(e) = engine.set_capture(prefs.capture()).await
                {
                    sink.error(format!("Sound processing: {e}")).await;
                }
            }
            UiAction::ChangePassword { old, new } => {
                self.change_password(old.0, new.0, sink).await;
            }
            UiAction::SetDisplayName { display_name } => {
                self.set_display_name(display_name, sink).await;
            }
            UiAction::Netcheck => {
                tokio::spawn(netcheck(self.context(), sink.clone()));
            }
            UiAction::UseServer {
                login_server,
                authority_key,
            } => {
                self.stop_engine().await;
                self.target = LoginTarget {
                    addr: login_server,
                    authority: authority_key,
                };
                self.network = NetworkInfo {
                    login_server: login_server.to_string(),
                    embedded: false,
                    echo_user: None,
                };
                if let Err(e) = login_client::resolve_target(
                    &self.profile,
                    Some(login_server),
                    Some(authority_key),
                ) {
                    sink.error(format!("Cannot remember the server: {e}")).await;
                }
                sink.send(UiEvent::Network(self.network.clone())).await;
            }
            action => {
                let Some(engine) = self.engine() else {
                    sink.error("Not signed in").await;
                    return;
                };
                let action = match action {
                    UiAction::SetPresence(status) => {
                        self.presence = status;
                        OnlineAction::Status(self.wire_presence())
                    }
                    UiAction::SetStatusMessage(message) => {
                        self.status_message = message;
                        OnlineAction::Status(self.wire_presence())
                    }
                    action => OnlineAction::Ui(action),
                };
                let sink = sink.clone();
                tokio::spawn(async move { perform_online(engine, action, sink).await });
            }
        }
    }
}

/// What the engine is asked to do.
enum OnlineAction {
    /// Status and message together (the supernode keeps one presence per device).
    Status(Presence),
    Ui(UiAction),
}

/// Actions that need a running engine.
async fn perform_online(engine: EngineHandle, action: OnlineAction, sink: EventSink) {
    let action = match action {
        OnlineAction::Status(presence) => {
            if let Err(e) = engine.set_status(presence).await {
                sink.error(format!("Status: {e}")).await;
            }
            return;
        }
        OnlineAction::Ui(action) => action,
    };
    let result: Result<(), String> = match action {
        UiAction::SetPresence(_) | UiAction::SetStatusMessage(_) => Ok(()),
        UiAction::Search { query } => match engine.search(&query).await {
            Ok(results) => {
                sink.send(UiEvent::SearchResults { query, results }).await;
                Ok(())
            }
            Err(e) => {
                sink.send(UiEvent::SearchResults {
                    query,
                    results: Vec::new(),
                })
                .await;
                Err(format!("Search: {e}"))
            }
        },
        UiAction::AddContact { user } => {
            refresh_contacts(&engine, ContactAction::Add(user), &sink).await;
            Ok(())
        }
        UiAction::AcceptContact { user } => {
            refresh_contacts(&engine, ContactAction::Accept(user), &sink).await;
            Ok(())
        }
        UiAction::DeclineContact { user } => {
            refresh_contacts(&engine, ContactAction::Decline(user), &sink).await;
            Ok(())
        }
        UiAction::SendChat { to, local_id, text } => {
            match engine.send_chat(to.clone(), text).await {
                Ok(id) => {
                    sink.send(UiEvent::ChatQueued {
                        to,
                        local_id,
                        id: id.to_string(),
                    })
                    .await;
                }
                Err(e) => {
                    sink.send(UiEvent::ChatFailed {
                        to,
                        local_id,
                        message: e.to_string(),
                    })
                    .await;
                }
            }
            Ok(())
        }
        UiAction::Dial { to } => {
            match engine.dial(to.clone()).await {
                Ok(call_id) => {
                    sink.send(UiEvent::CallPlaced {
                        peer: to,
                        call_id: call_id.to_string(),
                    })
                    .await;
                }
                Err(e) => {
                    sink.send(UiEvent::DialFailed {
                        peer: to,
                        message: e.to_string(),
                    })
                    .await;
                }
            }
            Ok(())
        }
        UiAction::Answer { call_id } => call_request(&call_id, |id| engine.accept(id)).await,
        UiAction::Decline { call_id } => call_request(&call_id, |id| engine.decline(id)).await,
        UiAction::HangUp { call_id, .. } => match call_id {
            Some(call_id) => call_request(&call_id, |id| engine.hangup(id)).await,
            // The model hangs up once the engine names the call.
            None => Ok(()),
        },
        UiAction::AddParticipant { call_id, user } => {
            call_request(&call_id, |id| engine.add_participant(id, user)).await
        }
        UiAction::RemoveParticipant { call_id, user } => {
            call_request(&call_id, |id| engine.remove_participant(id, user)).await
        }
        UiAction::Hold { call_id } => call_request(&call_id, |id| engine.hold(id)).await,
        UiAction::Resume { call_id } => call_request(&call_id, |id| engine.resume(id)).await,
        UiAction::SetMuted { call_id, muted } => match call_id {
            Some(call_id) => call_request(&call_id, |id| engine.mute(id, muted)).await,
            None => Ok(()),
        },
        UiAction::Register { .. }
        | UiAction::Login { .. }
        | UiAction::LogOut
        | UiAction::Netcheck
        | UiAction::SetDevices { .. }
        | UiAction::UseServer { .. }
        | UiAction::MonitorMicrophone(_)
        | UiAction::TestSpeaker
        | UiAction::SetPrefs(_)
        | UiAction::ChangePassword { .. }
        | UiAction::SetDisplayName { .. } => Ok(()),
    };
    if let Err(message) = result {
        sink.error(message).await;
    }
}

async fn call_request<F, Fut>(call_id: &str, request: F) -> Result<(), String>
where
    F: FnOnce(CallId) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::engine::EngineError>>,
{
    let id = parse_call(call_id)?;
    request(id).await.map_err(|e| format!("Call: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::link::{Repaint, channel};

    #[tokio::test]
    async fn chosen_sound_cards_are_remembered_in_the_profile() {
        let dir = tempfile::tempdir().expect("temp dir");
        let profile = Profile::open(dir.path()).expect("profile");
        let target = LoginTarget {
            addr: "127.0.0.1:7400".parse().expect("addr"),
            authority: proto::SecretKey::generate().public(),
        };
        let network = NetworkInfo {
            login_server: target.addr.to_string(),
            embedded: false,
            echo_user: None,
        };
        let mut backend = NetworkBackend::new(profile.clone(), target, network);
        let (mut ui, glue) = channel(Repaint::new());
        backend
            .perform(
                UiAction::SetDevices {
                    input: Some("alsa:hw:CARD=USB,DEV=0".into()),
                    output: None,
                },
                &glue.sink,
            )
            .await;
        // Not signed in: remembering needs no engine and reports nothing.
        assert!(ui.try_recv().is_none());
        let settings = profile.settings().expect("settings");
        assert_eq!(
            settings.input_device.as_deref(),
            Some("alsa:hw:CARD=USB,DEV=0")
        );
        assert_eq!(settings.output_device, None);

        // The next start shows the remembered choice and hands it to the engine.
        let restarted = NetworkBackend::new(profile, target, backend.network.clone());
        let devices = restarted.devices().await;
        assert_eq!(devices.input.as_deref(), Some("alsa:hw:CARD=USB,DEV=0"));
        assert_eq!(devices.output, None);
        assert_eq!(
            restarted.chosen_devices(),
            CallDevices {
                input: Some("alsa:hw:CARD=USB,DEV=0".into()),
                output: None,
            }
        );
    }
}
