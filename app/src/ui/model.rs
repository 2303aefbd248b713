//! The desktop app's state, with no egui and no IO: [`UiModel`].
//!
//! Inputs are [`UiEvent`]s (the engine's CONTRACT [`Event`]s plus replies to commands) and
//! the user's intents (methods such as [`UiModel::send_draft`]); outputs are
//! [`UiAction`]s for the engine ([`UiModel::take_actions`]) and [`SoundCue`]s for the
//! speaker ([`UiModel::take_sound_cues`]). Time is an input ([`Now`]), so tests drive it.
//!
//! Everything that grows with network input is bounded: chat history per contact, toasts,
//! search results, early delivery receipts.

use super::notify::DesktopNote;
use crate::events::{CallStats, EndReason, Event, PathKind, SearchResult, Status};
use proto::UserName;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

/// Chat lines kept per contact; older ones are dropped from view (the history store keeps
/// them).
pub const MAX_LINES_PER_CONVERSATION: usize = 2_000;
/// Toasts shown at once; the oldest goes first.
pub const MAX_TOASTS: usize = 5;
/// Search results kept.
pub const MAX_SEARCH_RESULTS: usize = 100;
/// Delivery receipts that arrive before the engine told us the message's id.
const MAX_EARLY_RECEIPTS: usize = 256;
/// Characters of a message shown in a desktop notification.
pub const NOTE_BODY_CHARS: usize = 200;
/// How long an error toast stays.
pub const ERROR_TOAST_SECS: u64 = 10;
/// How long an information toast stays.
pub const INFO_TOAST_SECS: u64 = 6;

/// The two clocks the model needs: a monotonic one (call timer, toast expiry) and the wall
/// clock (a sent message's time stamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// Since the app started.
    pub elapsed: Duration,
    /// Milliseconds since the Unix epoch.
    pub unix_millis: u64,
}

/// A password on its way to the engine; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The status this user chooses (others see `invisible` as offline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MyStatus {
    #[default]
    Online,
    Away,
    Busy,
    Invisible,
}

impl MyStatus {
    pub const ALL: [MyStatus; 4] = [
        MyStatus::Online,
        MyStatus::Away,
        MyStatus::Busy,
        MyStatus::Invisible,
    ];

    pub fn label(self) -> &'static str {
        match self {
            MyStatus::Online => "Online",
            MyStatus::Away => "Away",
            MyStatus::Busy => "Do not disturb",
            MyStatus::Invisible => "Invisible",
        }
    }

    /// How this user appears in their own contact list.
    pub fn shown_as(self) -> Status {
        match self {
            MyStatus::Online => Status::Online,
            MyStatus::Away => Status::Away,
            MyStatus::Busy => Status::Busy,
            MyStatus::Invisible => Status::Offline,
        }
    }

    pub fn to_wire(self) -> proto::supernode::PresenceStatus {
        use proto::supernode::PresenceStatus as P;
        match self {
            MyStatus::Online => P::Online,
            MyStatus::Away => P::Away,
            MyStatus::Busy => P::Busy,
            MyStatus::Invisible => P::Invisible,
        }
    }
}

/// A command for the engine, recorded by the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum UiAction {
    /// Create the account, then log in.
    Register {
        user: UserName,
        display_name: String,
        password: Secret,
    },
    Login {
        user: UserName,
        password: Secret,
    },
    LogOut,
    SetPresence(MyStatus),
    /// The status message contacts see (empty: none).
    SetStatusMessage(String),
    /// Search the directory (exact user name or display-name prefix).
    Search {
        query: String,
    },
    /// Send an authorization request.
    AddContact {
        user: UserName,
    },
    AcceptContact {
        user: UserName,
    },
    DeclineContact {
        user: UserName,
    },
    /// Send a chat message. `local_id` ties the engine's reply ([`UiEvent::ChatQueued`])
    /// to the line shown with a "sending" tick.
    SendChat {
        to: UserName,
        local_id: u64,
        text: String,
    },
    Dial {
        to: UserName,
    },
    Answer {
        call_id: String,
    },
    Decline {
        call_id: String,
    },
    /// Hang up (or cancel before the call has an id).
    HangUp {
        call_id: Option<String>,
        peer: UserName,
    },
    Hold {
        call_id: String,
    },
    Resume {
        call_id: String,
    },
    /// Stop or restart sending the microphone (`call_id` is `None` while the call has no
    /// id yet; the engine then has nothing to mute).
    SetMuted {
        call_id: Option<String>,
        muted: bool,
    },
    /// Invite `user` into the connected call this device placed (a conference).
    AddParticipant {
        call_id: String,
        user: UserName,
    },
    /// Drop `user` from the conference this device hosts; the others go on.
    RemoveParticipant {
        call_id: String,
        user: UserName,
    },
    /// Run NAT discovery.
    Netcheck,
    /// Use these sound cards for calls from now on (device ids; `None` is the system
    /// default). Remembered in the profile.
    SetDevices {
        input: Option<String>,
        output: Option<String>,
    },
    /// Use this login server from now on (remembered in the profile).
    UseServer {
        login_server: std::net::SocketAddr,
        authority_key: proto::PublicKey,
    },
    /// Start (`true`) or stop measuring the chosen microphone's level (the settings page's
    /// meter); levels come back as [`UiEvent::MicLevel`].
    MonitorMicrophone(bool),
    /// Play the test sound on the chosen speaker; [`UiEvent::SpeakerTestDone`] follows.
    TestSpeaker,
    /// Remember these preferences in the profile (and apply the sound ones to calls).
    SetPrefs(Prefs),
    /// Change the account's password at the login server.
    ChangePassword {
        old: Secret,
        new: Secret,
    },
    /// Change the account's display name at the login server (already checked against
    /// the registration rules).
    SetDisplayName {
        display_name: String,
    },
}

/// The person's preferences, remembered in the profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Prefs {
    /// Filter steady background noise out of the microphone signal in calls.
    pub noise_suppression: bool,
    /// Remove the speaker's sound from the microphone signal in calls.
    pub echo_cancellation: bool,
    /// Text and controls are drawn this much larger (1.0 = normal).
    pub text_scale: f32,
}

impl Default for Prefs {
    fn default() -> Self {
        Self {
            noise_suppression: true,
            echo_cancellation: true,
            text_scale: 1.0,
        }
    }
}

/// The smallest and largest text scale offered.
pub const TEXT_SCALE_RANGE: std::ops::RangeInclusive<f32> = 0.75..=2.0;

impl Prefs {
    /// A text scale within [`TEXT_SCALE_RANGE`], rounded to 5% steps (NaN reads as 1.0).
    pub fn clamp_text_scale(scale: f32) -> f32 {
        if !scale.is_finite() {
            return 1.0;
        }
        let scale = scale.clamp(*TEXT_SCALE_RANGE.start(), *TEXT_SCALE_RANGE.end());
        (scale * 20.0).round() / 20.0
    }
}

/// The settings page's account form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountForm {
    pub old_password: String,
    pub new_password: String,
    /// A password change is under way.
    pub busy: bool,
    pub error: Option<String>,
    /// The last change's success message.
    pub notice: Option<String>,
    pub display_name: DisplayNameForm,
}

/// The settings page's display-name field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisplayNameForm {
    pub name: String,
    /// A change is under way.
    pub busy: bool,
    pub error: Option<String>,
    /// The last change's success message.
    pub notice: Option<String>,
}

/// A sound card as the settings panel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDevice {
    /// Stable id, stored in the profile and handed to the engine.
    pub id: String,
    /// What the user reads.
    pub name: String,
}

/// The sound cards the machine has and the ones chosen for calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioDevices {
    pub inputs: Vec<AudioDevice>,
    pub outputs: Vec<AudioDevice>,
    /// The chosen microphone's id; `None` follows the system default.
    pub input: Option<String>,
    /// The chosen speaker's id; `None` follows the system default.
    pub output: Option<String>,
}

impl AudioDevices {
    /// The name shown for a choice: the device's name, the id of a device that is gone,
    /// or "System default".
    pub fn label(list: &[AudioDevice], choice: Option<&str>) -> String {
        match choice {
            None => SYSTEM_DEFAULT_DEVICE.to_string(),
            Some(id) => list
                .iter()
                .find(|d| d.id == id)
                .map_or_else(|| id.to_string(), |d| d.name.clone()),
        }
    }
}

/// The label of the "follow the system default" choice.
pub const SYSTEM_DEFAULT_DEVICE: &str = "System default";

/// A sound the app should play; the shell turns these into audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundCue {
    StartRingtone,
    StopRingtone,
    MessageChime,
    HangupTone,
}

/// The state of one entry in the buddy list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Authorization {
    /// Both sides agreed: presence, chat and calls.
    Contact,
    /// This user asked them; no answer yet.
    Requested,
}

/// One entry of the buddy list as the engine reports it at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactEntry {
    pub user: UserName,
    pub display_name: String,
    pub status: Status,
    pub authorization: Authorization,
}

/// The `netcheck` report (CONTRACT.md), as text for display.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NatReport {
    pub udp: bool,
    pub public_addr: Option<String>,
    pub mapping: String,
    pub filtering: String,
    pub hairpin: Option<bool>,
    pub nat_type: String,
    pub supernode_rtt_ms: Option<f64>,
}

/// What reaches the model.
#[derive(Debug, Clone, PartialEq)]
pub enum UiEvent {
    /// A CONTRACT event from the engine.
    Engine(Event),
    /// The engine took the message sent with `local_id` and named it `id` (the id later
    /// `chat_accepted` / `chat_delivered` carry).
    ChatQueued {
        to: UserName,
        local_id: u64,
        id: String,
    },
    /// The engine could not take the message.
    ChatFailed {
        to: UserName,
        local_id: u64,
        message: String,
    },
    /// The engine placed the call and named it.
    CallPlaced {
        peer: UserName,
        call_id: String,
    },
    /// The engine could not place the call.
    DialFailed {
        peer: UserName,
        message: String,
    },
    /// No session could be resumed from the profile: the login form waits for a password.
    SignedOut,
    /// The buddy list and pending requests (replaces what the model had).
    Contacts {
        contacts: Vec<ContactEntry>,
        requests: Vec<UserName>,
    },
    /// Earlier messages with one contact, oldest first.
    History {
        peer: UserName,
        lines: Vec<HistoryLine>,
    },
    SearchResults {
        query: String,
        results: Vec<SearchResult>,
    },
    /// Statistics of the running call (sent periodically by the engine, if it can).
    CallStats {
        call_id: String,
        stats: CallStats,
    },
    Netcheck(NatReport),
    NetcheckFailed {
        message: String,
    },
    /// Register or login failed; the message says why (wrong password, throttled,
    /// unreachable server, name taken).
    LoginFailed {
        message: String,
    },
    /// Which network the app is on.
    Network(NetworkInfo),
    /// The machine's sound cards and the ones the profile remembers.
    Devices(AudioDevices),
    /// The microphone's peak level (0.0 to 1.0) since the last one, while monitored.
    MicLevel(f32),
    /// The microphone cannot be opened for the level meter.
    MicUnavailable(String),
    /// The speaker test finished (or could not play: `error`).
    SpeakerTestDone {
        error: Option<String>,
    },
    /// The preferences the profile remembers.
    Prefs(Prefs),
    /// The password was changed (the session goes on with a fresh credential).
    PasswordChanged,
    PasswordChangeFailed(String),
    /// The login server took the new display name (the session goes on with a credential
    /// carrying it).
    DisplayNameChanged(String),
    DisplayNameChangeFailed(String),
}

/// A stored chat line for [`UiEvent::History`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    pub id: String,
    pub from_me: bool,
    pub text: String,
    pub sent_at_millis: u64,
    pub tick: Option<Tick>,
}

/// The login server the app talks to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkInfo {
    /// `IP:PORT`.
    pub login_server: String,
    /// True when it is the embedded local network started by the app itself.
    pub embedded: bool,
    /// An account that answers calls by echoing, if the network has one.
    pub echo_user: Option<UserName>,
}

/// Delivery state of a message this user sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tick {
    /// Handed to the engine, no answer yet.
    Sending,
    /// The network accepted it; the recipient is online.
    Accepted,
    /// The network stored it until the recipient comes online.
    Stored,
    /// The recipient's device has it.
    Delivered,
    /// It could not be sent.
    Failed,
}

impl Tick {
    /// A short symbol and its accessible description.
    pub fn symbol(self) -> (&'static str, &'static str) {
        match self {
            Tick::Sending => ("🕓", "sending"),
            Tick::Accepted => ("✔", "sent"),
            Tick::Stored => ("✉", "stored for later"),
            Tick::Delivered => ("✔✔", "delivered"),
            Tick::Failed => ("⚠", "not sent"),
        }
    }

    /// Ticks only move forward: a late `chat_accepted` never undoes `chat_delivered`.
    fn advance(current: Tick, next: Tick) -> Tick {
        match (current, next) {
            (Tick::Delivered, _) => Tick::Delivered,
            (_, Tick::Delivered) => Tick::Delivered,
            (Tick::Failed, n) => n,
            (c, n) => c.max(n),
        }
    }
}

/// One line of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// The engine's id, once known.
    pub id: Option<String>,
    /// Set for lines sent from this app run.
    pub local_id: Option<u64>,
    pub from_me: bool,
    pub text: String,
    pub sent_at_millis: u64,
    /// Only on this user's messages.
    pub tick: Option<Tick>,
}

/// The chat with one contact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    pub lines: VecDeque<ChatLine>,
    pub unread: u32,
}

impl Conversation {
    fn push(&mut self, line: ChatLine) {
        if self.lines.len() >= MAX_LINES_PER_CONVERSATION {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    fn line_by_id(&mut self, id: &str) -> Option<&mut ChatLine> {
        self.lines
            .iter_mut()
            .rev()
            .find(|l| l.id.as_deref() == Some(id))
    }
}

/// One contact as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub user: UserName,
    pub display_name: String,
    pub status: Status,
    pub authorization: Authorization,
    /// What they say about themselves ("in a meeting"); empty when nothing.
    pub status_message: String,
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    /// Placed, no answer from the network yet.
    Dialing,
    /// The callee's device rings.
    Ringing,
    /// Answered here, media not yet flowing.
    Connecting,
    Connected,
}

/// Call quality as a person reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quality {
    Poor,
    Fair,
    Good,
    Excellent,
}

impl Quality {
    /// From an estimated MOS (1 to 4.5).
    pub fn from_mos(mos: f64) -> Self {
        if mos >= 4.0 {
            Quality::Excellent
        } else if mos >= 3.6 {
            Quality::Good
        } else if mos >= 3.1 {
            Quality::Fair
        } else {
            Quality::Poor
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Quality::Poor => "poor",
            Quality::Fair => "fair",
            Quality::Good => "good",
            Quality::Excellent => "excellent",
        }
    }

    /// Bars out of four.
    pub fn bars(self) -> u8 {
        match self {
            Quality::Poor => 1,
            Quality::Fair => 2,
            Quality::Good => 3,
            Quality::Excellent => 4,
        }
    }
}

/// The call in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct CallView {
    pub peer: UserName,
    pub call_id: Option<String>,
    pub outgoing: bool,
    pub phase: CallPhase,
    pub connected_at: Option<Duration>,
    pub held: bool,
    pub muted: bool,
    pub path: Option<PathKind>,
    pub setup_ms: Option<u64>,
    pub stats: Option<CallStats>,
    /// The latest peak levels (0.0 to 1.0) of the microphone and the speaker.
    pub levels: Levels,
    /// Further people in this conference (connected legs beyond `peer`).
    pub participants: BTreeSet<UserName>,
    /// People invited who have not joined yet.
    pub inviting: BTreeSet<UserName>,
}

/// Peak audio levels for the meters, 0.0 (silence) to 1.0 (full scale).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Levels {
    pub input: f32,
    pub output: f32,
}

impl Levels {
    /// Clamped to 0.0..=1.0 (NaN reads as silence).
    pub fn new(input: f32, output: f32) -> Self {
        let clamp = |v: f32| {
            if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        Self {
            input: clamp(input),
            output: clamp(output),
        }
    }
}

/// A level meter's fill (0.0 to 1.0) for a peak level, on a decibel scale from -60 dBFS,
/// so speech at normal loudness fills about half the meter rather than a sliver.
pub fn meter_fill(peak: f32) -> f32 {
    const FLOOR_DB: f32 = -60.0;
    if !peak.is_finite() || peak <= 0.0 {
        return 0.0;
    }
    let db = 20.0 * peak.min(1.0).log10();
    ((db - FLOOR_DB) / -FLOOR_DB).clamp(0.0, 1.0)
}

impl CallView {
    /// The call timer: time since it connected.
    pub fn duration(&self, now: Now) -> Duration {
        self.connected_at
            .map(|at| now.elapsed.saturating_sub(at))
            .unwrap_or_default()
    }

    pub fn quality(&self) -> Option<Quality> {
        self.stats
            .as_ref()
            .filter(|s| s.mos > 0.0)
            .map(|s| Quality::from_mos(s.mos))
    }
}

/// A call that rings here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingCall {
    pub from: UserName,
    pub call_id: String,
}

/// How the last call ended.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedCall {
    pub call_id: Option<String>,
    pub peer: UserName,
    pub reason: EndReason,
    pub stats: CallStats,
}

/// Toast severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToastKind {
    Info,
    Error,
}

/// A short message in the corner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toast {
    pub id: u64,
    pub kind: ToastKind,
    pub text: String,
    pub expires_at: Duration,
}

/// Which tab of the login screen is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoginMode {
    #[default]
    Register,
    Login,
}

/// The login / register form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginForm {
    pub mode: LoginMode,
    pub user: String,
    pub display_name: String,
    pub password: String,
    /// A request is under way; the button is disabled.
    pub busy: bool,
    /// "Use another login server": `IP:PORT` and the authority key as typed.
    pub server_addr: String,
    pub server_key: String,
    pub error: Option<String>,
}

/// Which screen is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Screen {
    #[default]
    Login,
    Main,
}

/// The directory search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchState {
    /// The query the results answer.
    pub query: String,
    pub results: Vec<SearchResult>,
    pub pending: bool,
}

/// The whole state of the desktop app.
#[derive(Debug, Default)]
pub struct UiModel {
    pub screen: Screen,
    pub login: LoginForm,
    pub network: Option<NetworkInfo>,
    pub me: Option<UserName>,
    pub my_status: MyStatus,
    /// The status message as typed.
    pub status_message: String,
    /// The status message last handed to the engine.
    pub status_message_sent: String,
    pub contacts: BTreeMap<UserName, Contact>,
    /// Incoming authorization requests awaiting an answer.
    pub requests: BTreeSet<UserName>,
    pub conversations: BTreeMap<UserName, Conversation>,
    pub selected: Option<UserName>,
    /// The contact-list filter and directory search box.
    pub filter: String,
    /// The message being typed.
    pub draft: String,
    pub search: SearchState,
    pub call: Option<CallView>,
    pub incoming: Option<IncomingCall>,
    pub last_call: Option<EndedCall>,
    pub toasts: VecDeque<Toast>,
    pub settings_open: bool,
    pub devices: AudioDevices,
    pub nat: Option<NatReport>,
    pub netcheck_pending: bool,
    pub netcheck_error: Option<String>,
    pub prefs: Prefs,
    pub account: AccountForm,
    /// The microphone's level while the settings page measures it.
    pub mic_level: f32,
    /// Why the microphone cannot be measured.
    pub mic_error: Option<String>,
    /// The speaker test is playing.
    pub speaker_test_running: bool,
    actions: Vec<UiAction>,
    cues: Vec<SoundCue>,
    notes: Vec<DesktopNote>,
    next_local_id: u64,
    next_toast_id: u64,
    early_receipts: BTreeMap<String, Tick>,
}

impl UiModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// The commands recorded since the last call.
    pub fn take_actions(&mut self) -> Vec<UiAction> {
        std::mem::take(&mut self.actions)
    }

    /// The sounds to start or stop since the last call.
    pub fn take_sound_cues(&mut self) -> Vec<SoundCue> {
        std::mem::take(&mut self.cues)
    }

    /// Desktop notifications for what arrived since the last call (the shell shows them
    /// only while the window is in the background).
    pub fn take_notes(&mut self) -> Vec<DesktopNote> {
        std::mem::take(&mut self.notes)
    }

    /// Whether actions, sound cues or notifications wait to be taken.
    pub fn has_pending_output(&self) -> bool {
        !self.actions.is_empty() || !self.cues.is_empty() || !self.notes.is_empty()
    }

    fn note(&mut self, title: String, body: String) {
        // Bounded: a flood of messages while nobody drains them keeps only the newest.
        if self.notes.len() >= MAX_TOASTS {
            self.notes.remove(0);
        }
        self.notes.push(DesktopNote { title, body });
    }

    fn display_name(&self, user: &UserName) -> String {
        self.contacts
            .get(user)
            .map_or_else(|| user.to_string(), |c| c.display_name.clone())
    }

    fn act(&mut self, action: UiAction) {
        self.actions.push(action);
    }

    // ----- sound cards -----

    /// Replaces the listed sound cards (the shell reads them from the system; tests
    /// inject them). The choices stay even when their device is missing right now: a
    /// headset unplugged today is still the one wanted tomorrow.
    pub fn set_device_lists(&mut self, inputs: Vec<AudioDevice>, outputs: Vec<AudioDevice>) {
        self.devices.inputs = inputs;
        self.devices.outputs = outputs;
    }

    /// Shows the choices remembered in the profile, without asking for a change.
    pub fn show_chosen_devices(&mut self, input: Option<String>, output: Option<String>) {
        self.devices.input = input;
        self.devices.output = output;
    }

    /// Uses these sound cards for calls (`None`: the system default).
    pub fn choose_devices(&mut self, input: Option<String>, output: Option<String>) {
        if self.devices.input == input && self.devices.output == output {
            return;
        }
        self.devices.input = input.clone();
        self.devices.output = output.clone();
        self.act(UiAction::SetDevices { input, output });
    }

    // ----- toasts -----

    /// Shows a toast.
    pub fn toast(&mut self, now: Now, kind: ToastKind, text: impl Into<String>) {
        let secs = match kind {
            ToastKind::Info => INFO_TOAST_SECS,
            ToastKind::Error => ERROR_TOAST_SECS,
        };
        if self.toasts.len() >= MAX_TOASTS {
            self.toasts.pop_front();
        }
        self.next_toast_id += 1;
        self.toasts.push_back(Toast {
            id: self.next_toast_id,
            kind,
            text: text.into(),
            expires_at: now.elapsed + Duration::from_secs(secs),
        });
    }

    pub fn dismiss_toast(&mut self, id: u64) {
        self.toasts.retain(|t| t.id != id);
    }

    /// Drops expired toasts; returns when the next one expires (for a repaint timer).
    pub fn expire(&mut self, now: Now) -> Option<Duration> {
        self.toasts.retain(|t| t.expires_at > now.elapsed);
        self.toasts
            .iter()
            .map(|t| t.expires_at.saturating_sub(now.elapsed))
            .min()
    }

    // ----- user intents -----

    /// Submits the login or register form.
    pub fn submit_login(&mut self) {
        if self.login.busy {
            return;
        }
        let user: UserName = match self.login.user.trim().parse() {
            Ok(user) => user,
            Err(e) => {
                self.login.error = Some(format!("User name: {e}"));
                return;
            }
        };
        if self.login.password.is_empty() {
            self.login.error = Some("Enter a password".into());
            return;
        }
        let password = Secret(self.login.password.clone());
        self.login.error = None;
        self.login.busy = true;
        match self.login.mode {
            LoginMode::Register => {
                let display_name = match self.login.display_name.trim() {
                    "" => user.to_string(),
                    name => name.to_string(),
                };
                self.act(UiAction::Register {
                    user,
                    display_name,
                    password,
                });
            }
            LoginMode::Login => self.act(UiAction::Login { user, password }),
        }
    }

    /// Switches to the login server typed in the login form.
    pub fn use_server(&mut self) {
        let login_server: std::net::SocketAddr = match self.login.server_addr.trim().parse() {
            Ok(addr) => addr,
            Err(_) => {
                self.login.error = Some("Login server: expected IP:PORT".into());
                return;
            }
        };
        let authority_key: proto::PublicKey = match self.login.server_key.trim().parse() {
            Ok(key) => key,
            Err(e) => {
                self.login.error = Some(format!("Authority key: {e}"));
                return;
            }
        };
        self.login.error = None;
        self.network = Some(NetworkInfo {
            login_server: login_server.to_string(),
            embedded: false,
            echo_user: None,
        });
        self.act(UiAction::UseServer {
            login_server,
            authority_key,
        });
    }

    pub fn log_out(&mut self) {
        self.close_settings();
        self.act(UiAction::LogOut);
        let network = self.network.take();
        let devices = std::mem::take(&mut self.devices);
        let toasts = std::mem::take(&mut self.toasts);
        let actions = std::mem::take(&mut self.actions);
        *self = Self {
            network,
            devices,
            prefs: self.prefs,
            toasts,
            actions,
            next_toast_id: self.next_toast_id,
            next_local_id: self.next_local_id,
            ..Self::default()
        };
    }

    /// Publishes the typed status message (trimmed, control characters dropped, at most
    /// [`proto::supernode::MAX_STATUS_MESSAGE_CHARS`] characters).
    pub fn submit_status_message(&mut self) {
        let clean: String = self
            .status_message
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .trim()
            .chars()
            .take(proto::supernode::MAX_STATUS_MESSAGE_CHARS)
            .collect();
        self.status_message = clean.clone();
        if clean != self.status_message_sent {
            self.status_message_sent = clean.clone();
            self.act(UiAction::SetStatusMessage(clean));
        }
    }

    pub fn set_my_status(&mut self, status: MyStatus) {
        if self.my_status != status {
            self.my_status = status;
            self.act(UiAction::SetPresence(status));
        }
    }

    /// Opens the chat with `user` and marks it read.
    pub fn select(&mut self, user: &UserName) {
        self.selected = Some(user.clone());
        if let Some(c) = self.conversations.get_mut(user) {
            c.unread = 0;
        }
    }

    /// Searches the directory for the filter box's text.
    pub fn search_directory(&mut self) {
        let query = self.filter.trim().to_string();
        if query.is_empty() {
            return;
        }
        self.search.query = query.clone();
        self.search.pending = true;
        self.act(UiAction::Search { query });
    }

    pub fn clear_search(&mut self) {
        self.search = SearchState::default();
    }

    pub fn add_contact(&mut self, now: Now, user: UserName) {
        if self.contacts.contains_key(&user) || self.me.as_ref() == Some(&user) {
            return;
        }
        let display_name = self
            .search
            .results
            .iter()
            .find(|r| r.user == user)
            .map(|r| r.display_name.clone())
            .unwrap_or_else(|| user.to_string());
        self.toast(
            now,
            ToastKind::Info,
            format!("Contact request sent to {user}"),
        );
        self.contacts.insert(
            user.clone(),
            Contact {
                user: user.clone(),
                display_name,
                status: Status::Offline,
                authorization: Authorization::Requested,
                status_message: String::new(),
            },
        );
        self.act(UiAction::AddContact { user });
    }

    pub fn accept_request(&mut self, user: UserName) {
        if self.requests.remove(&user) {
            self.contacts.entry(user.clone()).or_insert(Contact {
                user: user.clone(),
                display_name: user.to_string(),
                status: Status::Offline,
                authorization: Authorization::Contact,
                status_message: String::new(),
            });
            self.act(UiAction::AcceptContact { user });
        }
    }

    pub fn decline_request(&mut self, user: UserName) {
        if self.requests.remove(&user) {
            self.act(UiAction::DeclineContact { user });
        }
    }

    /// Sends the draft to the selected contact.
    pub fn send_draft(&mut self, now: Now) {
        let text = self.draft.trim().to_string();
        let Some(to) = self.selected.clone() else {
            return;
        };
        if text.is_empty() {
            return;
        }
        self.draft.clear();
        self.next_local_id += 1;
        let local_id = self.next_local_id;
        self.conversations
            .entry(to.clone())
            .or_default()
            .push(ChatLine {
                id: None,
                local_id: Some(local_id),
                from_me: true,
                text: text.clone(),
                sent_at_millis: now.unix_millis,
                tick: Some(Tick::Sending),
            });
        self.act(UiAction::SendChat { to, local_id, text });
    }

    /// Calls `user`.
    pub fn dial(&mut self, now: Now, user: UserName) {
        if self.call.is_some() {
            self.toast(now, ToastKind::Error, "Hang up the current call first");
            return;
        }
        self.call = Some(CallView {
            peer: user.clone(),
            call_id: None,
            outgoing: true,
            phase: CallPhase::Dialing,
            connected_at: None,
            held: false,
            muted: false,
            path: None,
            setup_ms: None,
            stats: None,
            levels: Levels::default(),
            participants: BTreeSet::new(),
            inviting: BTreeSet::new(),
        });
        self.act(UiAction::Dial { to: user });
    }

    /// Answers the ringing call (hanging up the current one, if any).
    pub fn answer(&mut self) {
        let Some(incoming) = self.incoming.take() else {
            return;
        };
        self.cues.push(SoundCue::StopRingtone);
        if self.call.is_some() {
            self.hang_up();
        }
        self.call = Some(CallView {
            peer: incoming.from.clone(),
            call_id: Some(incoming.call_id.clone()),
            outgoing: false,
            phase: CallPhase::Connecting,
            connected_at: None,
            held: false,
            muted: false,
            path: None,
            setup_ms: None,
            stats: None,
            levels: Levels::default(),
            participants: BTreeSet::new(),
            inviting: BTreeSet::new(),
        });
        self.act(UiAction::Answer {
            call_id: incoming.call_id,
        });
    }

    pub fn decline(&mut self) {
        let Some(incoming) = self.incoming.take() else {
            return;
        };
        self.cues.push(SoundCue::StopRingtone);
        self.act(UiAction::Decline {
            call_id: incoming.call_id,
        });
    }

    pub fn hang_up(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        if call.phase == CallPhase::Connected {
            self.cues.push(SoundCue::HangupTone);
            // Shown at once; the engine's `call_ended` fills in the statistics.
            self.last_call = Some(EndedCall {
                call_id: call.call_id.clone(),
                peer: call.peer.clone(),
                reason: EndReason::Hangup,
                stats: CallStats::default(),
            });
        }
        self.act(UiAction::HangUp {
            call_id: call.call_id,
            peer: call.peer,
        });
    }

    /// Most people one conference holds besides this user (the call media's limit).
    pub const MAX_PARTICIPANTS: usize = 4;

    /// Whether this user can invite someone into the current call: they placed it, it is
    /// connected, and it has room.
    pub fn can_add_participant(&self) -> bool {
        self.call.as_ref().is_some_and(|c| {
            c.outgoing
                && c.phase == CallPhase::Connected
                && c.call_id.is_some()
                && 1 + c.participants.len() + c.inviting.len() < Self::MAX_PARTICIPANTS
        })
    }

    /// Contacts who could be invited into the current call.
    pub fn invitable_contacts(&self) -> Vec<&Contact> {
        let Some(call) = self.call.as_ref() else {
            return Vec::new();
        };
        self.visible_contacts()
            .into_iter()
            .filter(|c| {
                c.authorization == Authorization::Contact
                    && c.user != call.peer
                    && !call.participants.contains(&c.user)
                    && !call.inviting.contains(&c.user)
            })
            .collect()
    }

    /// Invites `user` into the current call (a conference hosted here).
    pub fn add_participant(&mut self, now: Now, user: UserName) {
        if !self.can_add_participant() {
            return;
        }
        let Some(call) = self.call.as_mut() else {
            return;
        };
        let Some(call_id) = call.call_id.clone() else {
            return;
        };
        if user == call.peer
            || call.participants.contains(&user)
            || !call.inviting.insert(user.clone())
        {
            return;
        }
        self.toast(
            now,
            ToastKind::Info,
            format!("Inviting {user} into the call"),
        );
        self.act(UiAction::AddParticipant { call_id, user });
    }

    /// Whether the call bar lists each participant with a "Remove" control: a connected
    /// conference this user hosts.
    pub fn can_remove_participants(&self) -> bool {
        self.call.as_ref().is_some_and(|c| {
            c.outgoing
                && c.phase == CallPhase::Connected
                && c.call_id.is_some()
                && !c.participants.is_empty()
        })
    }

    /// Drops `user` from the conference hosted here; they leave the list once the engine
    /// says so (`call_participant_left`).
    pub fn remove_participant(&mut self, user: UserName) {
        if !self.can_remove_participants() {
            return;
        }
        let Some(call) = self.call.as_ref() else {
            return;
        };
        let Some(call_id) = call.call_id.clone() else {
            return;
        };
        if call.peer != user && !call.participants.contains(&user) {
            return;
        }
        self.act(UiAction::RemoveParticipant { call_id, user });
    }

    pub fn toggle_hold(&mut self) {
        let Some(call) = self.call.as_mut() else {
            return;
        };
        let Some(call_id) = call.call_id.clone() else {
            return;
        };
        if call.phase != CallPhase::Connected {
            return;
        }
        call.held = !call.held;
        let action = if call.held {
            UiAction::Hold { call_id }
        } else {
            UiAction::Resume { call_id }
        };
        self.act(action);
    }

    pub fn toggle_mute(&mut self) {
        let Some(call) = self.call.as_mut() else {
            return;
        };
        call.muted = !call.muted;
        let muted = call.muted;
        let call_id = call.call_id.clone();
        self.act(UiAction::SetMuted { call_id, muted });
    }

    // ----- settings -----

    /// Opens the settings page; its microphone meter starts measuring.
    pub fn open_settings(&mut self) {
        if !self.settings_open {
            self.settings_open = true;
            self.mic_level = 0.0;
            self.mic_error = None;
            self.act(UiAction::MonitorMicrophone(true));
        }
    }

    /// Closes the settings page and stops measuring the microphone.
    pub fn close_settings(&mut self) {
        if self.settings_open {
            self.settings_open = false;
            self.mic_level = 0.0;
            self.act(UiAction::MonitorMicrophone(false));
        }
    }

    pub fn toggle_settings(&mut self) {
        if self.settings_open {
            self.close_settings();
        } else {
            self.open_settings();
        }
    }

    /// Plays the test sound on the chosen speaker.
    pub fn test_speaker(&mut self) {
        if !self.speaker_test_running {
            self.speaker_test_running = true;
            self.act(UiAction::TestSpeaker);
        }
    }

    /// Changes the preferences (and has them remembered) when they differ.
    pub fn set_prefs(&mut self, mut prefs: Prefs) {
        prefs.text_scale = Prefs::clamp_text_scale(prefs.text_scale);
        if prefs != self.prefs {
            self.prefs = prefs;
            self.act(UiAction::SetPrefs(prefs));
        }
    }

    /// Scales text and controls (keyboard zoom or the settings slider).
    pub fn set_text_scale(&mut self, scale: f32) {
        let prefs = Prefs {
            text_scale: scale,
            ..self.prefs
        };
        self.set_prefs(prefs);
    }

    /// Submits the password form.
    pub fn change_password(&mut self) {
        let form = &mut self.account;
        if form.busy {
            return;
        }
        form.notice = None;
        if form.old_password.is_empty() {
            form.error = Some("Enter your current password".into());
            return;
        }
        if form.new_password.chars().count() < proto::login::MIN_PASSWORD_CHARS {
            form.error = Some(format!(
                "The new password needs at least {} characters",
                proto::login::MIN_PASSWORD_CHARS
            ));
            return;
        }
        if form.new_password == form.old_password {
            form.error = Some("The new password is the same as the current one".into());
            return;
        }
        form.error = None;
        form.busy = true;
        let old = Secret(std::mem::take(&mut form.old_password));
        let new = Secret(std::mem::take(&mut form.new_password));
        self.act(UiAction::ChangePassword { old, new });
    }

    /// Submits the display-name field: the registration rules apply (checked here for a
    /// quick answer; the login server checks them again).
    pub fn set_display_name(&mut self) {
        let form = &mut self.account.display_name;
        if form.busy {
            return;
        }
        form.notice = None;
        let name = form.name.trim();
        if name.is_empty() {
            form.error = Some("Enter a display name".into());
            return;
        }
        if let Err(e) = proto::DisplayName::new(name) {
            form.error = Some(match e {
                proto::names::NameError::DisplayNameLength => format!(
                    "The display name can have at most {} characters",
                    proto::DisplayName::MAX_CHARS
                ),
                _ => "The display name cannot contain control or invisible characters".into(),
            });
            return;
        }
        let display_name = name.to_string();
        form.error = None;
        form.busy = true;
        self.act(UiAction::SetDisplayName { display_name });
    }

    pub fn run_netcheck(&mut self) {
        if !self.netcheck_pending {
            self.netcheck_pending = true;
            self.netcheck_error = None;
            self.act(UiAction::Netcheck);
        }
    }

    // ----- queries for the view -----

    /// Contacts matching the filter box, online ones first, then by name.
    pub fn visible_contacts(&self) -> Vec<&Contact> {
        let filter = self.filter.trim().to_lowercase();
        let mut list: Vec<&Contact> = self
            .contacts
            .values()
            .filter(|c| {
                filter.is_empty()
                    || c.user.as_str().contains(&filter)
                    || c.display_name.to_lowercase().contains(&filter)
            })
            .collect();
        list.sort_by_key(|c| (c.status == Status::Offline, c.display_name.to_lowercase()));
        list
    }

    pub fn unread(&self, user: &UserName) -> u32 {
        self.conversations.get(user).map_or(0, |c| c.unread)
    }

    pub fn conversation(&self, user: &UserName) -> Option<&Conversation> {
        self.conversations.get(user)
    }

    /// Whether the ringtone should be playing.
    pub fn ringing(&self) -> bool {
        self.incoming.is_some()
    }

    // ----- events -----

    /// Applies one event.
    pub fn handle(&mut self, now: Now, event: UiEvent) {
        match event {
            UiEvent::Engine(event) => self.handle_engine(now, event),
            UiEvent::ChatQueued { to, local_id, id } => {
                let early = self.early_receipts.remove(&id);
                if let Some(line) = self.conversations.get_mut(&to).and_then(|c| {
                    c.lines
                        .iter_mut()
                        .rev()
                        .find(|l| l.local_id == Some(local_id))
                }) {
                    line.id = Some(id);
                    if let Some(tick) = early {
                        line.tick = Some(Tick::advance(line.tick.unwrap_or(tick), tick));
                    }
                }
            }
            UiEvent::ChatFailed {
                to,
                local_id,
                message,
            } => {
                if let Some(line) = self.conversations.get_mut(&to).and_then(|c| {
                    c.lines
                        .iter_mut()
                        .rev()
                        .find(|l| l.local_id == Some(local_id))
                }) {
                    line.tick = Some(Tick::Failed);
                }
                self.toast(
                    now,
                    ToastKind::Error,
                    format!("Message to {to} not sent: {message}"),
                );
            }
            UiEvent::CallPlaced { peer, call_id } => match self.call.as_mut() {
                Some(call) if call.peer == peer && call.call_id.is_none() => {
                    call.call_id = Some(call_id);
                    if call.muted {
                        let call_id = call.call_id.clone();
                        self.act(UiAction::SetMuted {
                            call_id,
                            muted: true,
                        });
                    }
                }
                Some(call) if call.call_id.as_deref() == Some(call_id.as_str()) => {}
                // Hung up before the engine named the call: end it now.
                _ => self.act(UiAction::HangUp {
                    call_id: Some(call_id),
                    peer,
                }),
            },
            UiEvent::DialFailed { peer, message } => {
                if self
                    .call
                    .as_ref()
                    .is_some_and(|c| c.peer == peer && c.call_id.is_none())
                {
                    self.call = None;
                }
                self.toast(
                    now,
                    ToastKind::Error,
                    format!("Cannot call {peer}: {message}"),
                );
            }
            UiEvent::SignedOut => {
                self.login.busy = false;
            }
            UiEvent::Contacts { contacts, requests } => {
                // The buddy list knows no presence: what presence events said stays.
                let mut known = std::mem::take(&mut self.contacts);
                self.contacts = contacts
                    .into_iter()
                    .map(|e| {
                        let (status, status_message) = match known.remove(&e.user) {
                            Some(old) if e.status == Status::Offline => {
                                (old.status, old.status_message)
                            }
                            _ => (e.status, String::new()),
                        };
                        (
                            e.user.clone(),
                            Contact {
                                user: e.user,
                                display_name: e.display_name,
                                status,
                                authorization: e.authorization,
                                status_message,
                            },
                        )
                    })
                    .collect();
                self.requests = requests.into_iter().collect();
            }
            UiEvent::History { peer, lines } => {
                let conversation = self.conversations.entry(peer).or_default();
                let known: BTreeSet<String> = conversation
                    .lines
                    .iter()
                    .filter_map(|l| l.id.clone())
                    .collect();
                let mut merged: VecDeque<ChatLine> = lines
                    .into_iter()
                    .filter(|l| !known.contains(&l.id))
                    .map(|l| ChatLine {
                        id: Some(l.id),
                        local_id: None,
                        from_me: l.from_me,
                        text: l.text,
                        sent_at_millis: l.sent_at_millis,
                        tick: l.tick,
                    })
                    .collect();
                merged.extend(conversation.lines.drain(..));
                while merged.len() > MAX_LINES_PER_CONVERSATION {
                    merged.pop_front();
                }
                conversation.lines = merged;
            }
            UiEvent::SearchResults { query, mut results } => {
                if query == self.search.query {
                    results.truncate(MAX_SEARCH_RESULTS);
                    self.search.results = results;
                    self.search.pending = false;
                }
            }
            UiEvent::CallStats { call_id, stats } => {
                if let Some(call) = self.call.as_mut()
                    && call.call_id.as_deref() == Some(call_id.as_str())
                {
                    call.stats = Some(stats);
                }
            }
            UiEvent::Netcheck(report) => {
                self.nat = Some(report);
                self.netcheck_pending = false;
            }
            UiEvent::NetcheckFailed { message } => {
                self.netcheck_pending = false;
                self.netcheck_error = Some(message);
            }
            UiEvent::LoginFailed { message } => {
                self.login.busy = false;
                self.login.error = Some(message);
            }
            UiEvent::Network(info) => {
                self.network = Some(info);
            }
            UiEvent::MicLevel(level) => {
                if self.settings_open {
                    self.mic_level = Levels::new(level, 0.0).input;
                    self.mic_error = None;
                }
            }
            UiEvent::MicUnavailable(message) => {
                self.mic_level = 0.0;
                self.mic_error = Some(message);
            }
            UiEvent::SpeakerTestDone { error } => {
                self.speaker_test_running = false;
                if let Some(error) = error {
                    self.toast(now, ToastKind::Error, format!("Speaker test: {error}"));
                }
            }
            UiEvent::Prefs(mut prefs) => {
                prefs.text_scale = Prefs::clamp_text_scale(prefs.text_scale);
                self.prefs = prefs;
            }
            UiEvent::PasswordChanged => {
                self.account.busy = false;
                self.account.error = None;
                self.account.notice = Some("Password changed".into());
                self.toast(now, ToastKind::Info, "Password changed");
            }
            UiEvent::PasswordChangeFailed(message) => {
                self.account.busy = false;
                self.account.error = Some(message);
            }
            UiEvent::DisplayNameChanged(name) => {
                let form = &mut self.account.display_name;
                form.busy = false;
                form.error = None;
                form.notice = Some(format!("Display name changed to {name}"));
                self.toast(now, ToastKind::Info, "Display name changed");
            }
            UiEvent::DisplayNameChangeFailed(message) => {
                self.account.display_name.busy = false;
                self.account.display_name.error = Some(message);
            }
            UiEvent::Devices(devices) => {
                self.set_device_lists(devices.inputs, devices.outputs);
                self.show_chosen_devices(devices.input, devices.output);
            }
        }
    }

    fn handle_engine(&mut self, now: Now, event: Event) {
        match event {
            Event::Registered { .. } => {}
            Event::LoggedIn { user, .. } => {
                self.me = Some(user);
                self.screen = Screen::Main;
                self.login.busy = false;
                self.login.error = None;
                self.login.password.clear();
            }
            Event::Presence {
                user,
                status,
                message,
            } => {
                if let Some(contact) = self.contacts.get_mut(&user) {
                    contact.status = status;
                    contact.status_message = if status == Status::Offline {
                        String::new()
                    } else {
                        message
                            .chars()
                            .filter(|c| !c.is_control())
                            .take(proto::supernode::MAX_STATUS_MESSAGE_CHARS)
                            .collect()
                    };
                }
                for result in self.search.results.iter_mut().filter(|r| r.user == user) {
                    result.status = status;
                }
            }
            Event::ContactRequest { from } => {
                if !self.contacts.contains_key(&from) {
                    self.toast(
                        now,
                        ToastKind::Info,
                        format!("{from} asks to add you as a contact"),
                    );
                    self.requests.insert(from);
                }
            }
            Event::ContactAdded { user } => {
                self.requests.remove(&user);
                let contact = self.contacts.entry(user.clone()).or_insert(Contact {
                    user: user.clone(),
                    display_name: user.to_string(),
                    status: Status::Offline,
                    authorization: Authorization::Contact,
                    status_message: String::new(),
                });
                contact.authorization = Authorization::Contact;
            }
            Event::Chat {
                from,
                id,
                text,
                sent_at,
            } => {
                let selected = self.selected.as_ref() == Some(&from);
                let title = format!("Message from {}", self.display_name(&from));
                let body: String = text.chars().take(NOTE_BODY_CHARS).collect();
                let conversation = self.conversations.entry(from).or_default();
                if conversation.line_by_id(&id).is_some() {
                    return;
                }
                conversation.push(ChatLine {
                    id: Some(id),
                    local_id: None,
                    from_me: false,
                    text,
                    sent_at_millis: sent_at,
                    tick: None,
                });
                if !selected {
                    conversation.unread = conversation.unread.saturating_add(1);
                }
                self.cues.push(SoundCue::MessageChime);
                self.note(title, body);
            }
            Event::ChatAccepted { to, id, stored } => {
                let tick = if stored { Tick::Stored } else { Tick::Accepted };
                self.receipt(&to, id, tick);
            }
            Event::ChatDelivered { to, id } => self.receipt(&to, id, Tick::Delivered),
            Event::CallIncoming { from, call_id } => {
                if self.incoming.is_none() {
                    self.cues.push(SoundCue::StartRingtone);
                    let who = self.display_name(&from);
                    self.note("Incoming call".into(), format!("{who} is calling"));
                }
                self.incoming = Some(IncomingCall { from, call_id });
            }
            Event::CallRinging { call_id, setup_ms } => {
                if let Some(call) = self.call.as_mut()
                    && call.outgoing
                    && call.call_id.as_ref().is_none_or(|id| *id == call_id)
                {
                    call.call_id = Some(call_id);
                    call.phase = CallPhase::Ringing;
                    call.setup_ms = Some(setup_ms);
                }
            }
            Event::CallConnected {
                call_id,
                peer,
                path,
                setup_ms,
            } => {
                let call = self.call.get_or_insert_with(|| CallView {
                    peer: peer.clone(),
                    call_id: None,
                    outgoing: false,
                    phase: CallPhase::Connecting,
                    connected_at: None,
                    held: false,
                    muted: false,
                    path: None,
                    setup_ms: None,
                    stats: None,
                    levels: Levels::default(),
                    participants: BTreeSet::new(),
                    inviting: BTreeSet::new(),
                });
                if call.peer != peer {
                    // Another leg of this conference joined.
                    if call.call_id.as_deref() == Some(call_id.as_str()) {
                        call.inviting.remove(&peer);
                        call.participants.insert(peer);
                    }
                    return;
                }
                call.call_id = Some(call_id);
                call.phase = CallPhase::Connected;
                call.connected_at.get_or_insert(now.elapsed);
                call.path = Some(path);
                call.setup_ms = Some(setup_ms);
            }
            Event::CallParticipantJoined { call_id, user } => {
                if let Some(call) = self.call_mut(&call_id)
                    && call.peer != user
                {
                    call.inviting.remove(&user);
                    call.participants.insert(user);
                }
            }
            Event::CallParticipantLeft { call_id, user, .. } => {
                if let Some(call) = self.call_mut(&call_id) {
                    call.inviting.remove(&user);
                    call.participants.remove(&user);
                    // The first one to connect left: the call goes on with the others, so
                    // one of them takes the title.
                    if call.peer == user
                        && let Some(next) = call.participants.pop_first()
                    {
                        call.peer = next;
                    }
                }
                self.toast(now, ToastKind::Info, format!("{user} left the call"));
            }
            Event::CallPath { call_id, path } => {
                if let Some(call) = self.call_mut(&call_id) {
                    call.path = Some(path);
                }
            }
            Event::CallHeld { call_id } => {
                if let Some(call) = self.call_mut(&call_id) {
                    call.held = true;
                }
            }
            Event::CallResumed { call_id } => {
                if let Some(call) = self.call_mut(&call_id) {
                    call.held = false;
                }
            }
            Event::CallEnded {
                call_id,
                reason,
                stats,
                detail,
            } => self.call_ended(now, call_id, reason, stats, detail),
            Event::CallStats {
                call_id,
                stats,
                input_level,
                output_level,
            } => {
                if let Some(call) = self.call_mut(&call_id) {
                    call.stats = Some(stats);
                    call.levels = Levels::new(input_level, output_level);
                }
            }
            Event::CredentialExpiring { .. } => {
                let text = event_text(&event);
                self.toast(now, ToastKind::Error, text);
            }
            Event::Error { message } => {
                if self.login.busy {
                    self.login.busy = false;
                    self.login.error = Some(message.clone());
                }
                self.toast(now, ToastKind::Error, message);
            }
        }
    }

    fn call_mut(&mut self, call_id: &str) -> Option<&mut CallView> {
        self.call
            .as_mut()
            .filter(|c| c.call_id.as_deref() == Some(call_id))
    }

    fn receipt(&mut self, to: &UserName, id: String, tick: Tick) {
        let line = self
            .conversations
            .get_mut(to)
            .and_then(|c| c.line_by_id(&id));
        match line {
            Some(line) => {
                line.tick = Some(Tick::advance(line.tick.unwrap_or(tick), tick));
            }
            None => {
                if self.early_receipts.len() >= MAX_EARLY_RECEIPTS {
                    self.early_receipts.pop_first();
                }
                let entry = self.early_receipts.entry(id).or_insert(tick);
                *entry = Tick::advance(*entry, tick);
            }
        }
    }

    fn call_ended(
        &mut self,
        now: Now,
        call_id: String,
        reason: EndReason,
        stats: CallStats,
        detail: Option<String>,
    ) {
        if self.incoming.as_ref().is_some_and(|i| i.call_id == call_id) {
            let from = self.incoming.take().map(|i| i.from);
            self.cues.push(SoundCue::StopRingtone);
            if let Some(from) = from
                && reason != EndReason::AnsweredElsewhere
            {
                self.toast(now, ToastKind::Info, format!("Missed call from {from}"));
            }
            return;
        }
        let matches = self.call.as_ref().is_some_and(|c| {
            c.call_id.as_deref() == Some(call_id.as_str()) || (c.call_id.is_none() && c.outgoing)
        });
        if !matches {
            if let Some(last) = self.last_call.as_mut()
                && last.call_id.as_deref() == Some(call_id.as_str())
            {
                last.stats = stats;
            }
            return;
        }
        let Some(call) = self.call.take() else {
            return;
        };
        if call.phase == CallPhase::Connected {
            self.cues.push(SoundCue::HangupTone);
        }
        let peer = call.peer.clone();
        let why = match reason {
            EndReason::Hangup => None,
            EndReason::Declined => Some(format!("{peer} declined the call")),
            EndReason::Busy => Some(format!("{peer} is busy")),
            EndReason::Timeout => Some(format!("{peer} did not answer")),
            EndReason::Unreachable => Some(format!("{peer} cannot be reached")),
            EndReason::Failed => Some(match &detail {
                Some(detail) => format!("The call failed: {detail}"),
                None => "The call failed".to_string(),
            }),
            EndReason::AnsweredElsewhere => None,
        };
        if let Some(why) = why {
            let kind = if reason == EndReason::Failed {
                ToastKind::Error
            } else {
                ToastKind::Info
            };
            self.toast(now, kind, why);
        }
        self.last_call = Some(EndedCall {
            call_id: Some(call_id),
            peer,
            reason,
            stats,
        });
    }
}

fn event_text(event: &Event) -> String {
    event.to_text()
}

/// `mm:ss`, or `h:mm:ss` past an hour.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

/// `HH:MM` (UTC) of a Unix time in milliseconds.
pub fn format_clock(unix_millis: u64) -> String {
    let minutes = unix_millis / 60_000;
    format!("{:02}:{:02}", (minutes / 60) % 24, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserName {
        name.parse().expect("valid name")
    }

    fn at(secs: u64) -> Now {
        Now {
            elapsed: Duration::from_secs(secs),
            unix_millis: 1_700_000_000_000 + secs * 1000,
        }
    }

    #[test]
    fn a_late_accept_never_undoes_delivered() {
        assert_eq!(
            Tick::advance(Tick::Delivered, Tick::Accepted),
            Tick::Delivered
        );
        assert_eq!(Tick::advance(Tick::Sending, Tick::Stored), Tick::Stored);
        assert_eq!(
            Tick::advance(Tick::Stored, Tick::Delivered),
            Tick::Delivered
        );
    }

    #[test]
    fn a_receipt_before_the_id_is_applied_when_the_id_arrives() {
        let mut m = UiModel::new();
        m.select(&user("bob"));
        m.draft = "hi".into();
        m.send_draft(at(1));
        let Some(UiAction::SendChat { local_id, .. }) = m.take_actions().pop() else {
            panic!("no SendChat");
        };
        m.handle(
            at(2),
            UiEvent::Engine(Event::ChatDelivered {
                to: user("bob"),
                id: "aa".into(),
            }),
        );
        m.handle(
            at(2),
            UiEvent::ChatQueued {
                to: user("bob"),
                local_id,
                id: "aa".into(),
            },
        );
        let line = &m.conversation(&user("bob")).expect("conversation").lines[0];
        assert_eq!(line.tick, Some(Tick::Delivered));
    }

    #[test]
    fn toasts_are_bounded_and_expire() {
        let mut m = UiModel::new();
        for i in 0..20 {
            m.toast(at(0), ToastKind::Error, format!("e{i}"));
        }
        assert_eq!(m.toasts.len(), MAX_TOASTS);
        assert_eq!(m.toasts.back().map(|t| t.text.as_str()), Some("e19"));
        m.expire(at(ERROR_TOAST_SECS + 1));
        assert!(m.toasts.is_empty());
    }

    #[test]
    fn conversations_are_bounded() {
        let mut m = UiModel::new();
        for i in 0..(MAX_LINES_PER_CONVERSATION + 10) {
            m.handle(
                at(0),
                UiEvent::Engine(Event::Chat {
                    from: user("bob"),
                    id: format!("{i:x}"),
                    text: "x".into(),
                    sent_at: 0,
                }),
            );
        }
        let c = m.conversation(&user("bob")).expect("conversation");
        assert_eq!(c.lines.len(), MAX_LINES_PER_CONVERSATION);
        assert_eq!(c.unread as usize, MAX_LINES_PER_CONVERSATION + 10);
    }

    #[test]
    fn a_missed_call_stops_the_ringtone() {
        let mut m = UiModel::new();
        m.handle(
            at(0),
            UiEvent::Engine(Event::CallIncoming {
                from: user("bob"),
                call_id: "c1".into(),
            }),
        );
        assert!(m.ringing());
        m.handle(
            at(30),
            UiEvent::Engine(Event::CallEnded {
                call_id: "c1".into(),
                reason: EndReason::Timeout,
                stats: CallStats::default(),
                detail: None,
            }),
        );
        assert!(!m.ringing());
        assert_eq!(
            m.take_sound_cues(),
            vec![SoundCue::StartRingtone, SoundCue::StopRingtone]
        );
        assert!(m.toasts.iter().any(|t| t.text.contains("Missed call")));
    }

    #[test]
    fn a_call_hung_up_before_it_had_an_id_is_ended_once_named() {
        let mut m = UiModel::new();
        m.dial(at(0), user("bob"));
        m.hang_up();
        assert_eq!(
            m.take_actions(),
            vec![
                UiAction::Dial { to: user("bob") },
                UiAction::HangUp {
                    call_id: None,
                    peer: user("bob")
                }
            ]
        );
        m.handle(
            at(1),
            UiEvent::CallPlaced {
                peer: user("bob"),
                call_id: "c7".into(),
            },
        );
        assert_eq!(
            m.take_actions(),
            vec![UiAction::HangUp {
                call_id: Some("c7".into()),
                peer: user("bob")
            }]
        );
    }

    #[test]
    fn a_failed_dial_clears_the_call_and_says_why() {
        let mut m = UiModel::new();
        m.dial(at(0), user("bob"));
        m.handle(
            at(1),
            UiEvent::DialFailed {
                peer: user("bob"),
                message: "bob has no device that can be reached".into(),
            },
        );
        assert!(m.call.is_none());
        assert!(m.toasts.iter().any(|t| t.text.contains("Cannot call bob")));
    }

    #[test]
    fn durations_read_like_a_call_timer() {
        assert_eq!(format_duration(Duration::from_secs(65)), "01:05");
        assert_eq!(format_duration(Duration::from_secs(3_725)), "1:02:05");
        assert_eq!(format_clock(13 * 3_600_000 + 7 * 60_000), "13:07");
    }
}
