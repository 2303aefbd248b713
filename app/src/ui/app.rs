//! The eframe application: `logic()` drains engine events into the model and sends the
//! model's actions; `ui()` only draws.

use super::link::{SendError, UiLink};
use super::model::{Now, SoundCue, ToastKind, UiAction, UiModel};
use super::notify::{NoNotifications, Notifier};
use super::sound::{Silent, SoundPlayer};
use super::{theme, view};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Events applied per frame at most, so a flood cannot freeze the window.
const MAX_EVENTS_PER_FRAME: usize = 256;

/// Which wall clock stamps sent messages.
#[derive(Debug, Clone, Copy)]
enum WallClock {
    System,
    /// Tests and screenshots: a fixed instant plus the UI's elapsed time.
    Fixed {
        start_unix_millis: u64,
    },
}

/// The desktop app.
pub struct DesktopApp {
    pub model: UiModel,
    link: Option<UiLink>,
    /// Actions recorded while no link is attached (tests).
    outbox: Vec<UiAction>,
    sounds: Box<dyn SoundPlayer>,
    notifier: Box<dyn Notifier>,
    wall_clock: WallClock,
    title: Option<String>,
    themed: bool,
    /// The text scale last handed to egui (its zoom factor).
    applied_zoom: Option<f32>,
}

impl std::fmt::Debug for DesktopApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesktopApp")
            .field("model", &self.model)
            .field("linked", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl DesktopApp {
    /// An app talking to the engine through `link` and playing sounds with `sounds`.
    pub fn new(model: UiModel, link: UiLink, sounds: Box<dyn SoundPlayer>) -> Self {
        Self {
            model,
            link: Some(link),
            outbox: Vec::new(),
            sounds,
            notifier: Box::new(NoNotifications),
            wall_clock: WallClock::System,
            title: None,
            themed: false,
            applied_zoom: None,
        }
    }

    /// An app with no engine: actions collect in [`Self::take_sent_actions`]; silent; the
    /// wall clock starts at `start_unix_millis` (deterministic tests and screenshots).
    pub fn detached(model: UiModel, start_unix_millis: u64) -> Self {
        Self {
            model,
            link: None,
            outbox: Vec::new(),
            sounds: Box::new(Silent),
            notifier: Box::new(NoNotifications),
            wall_clock: WallClock::Fixed { start_unix_millis },
            title: None,
            themed: false,
            applied_zoom: None,
        }
    }

    /// Shows desktop notifications with `notifier` (none by default).
    pub fn with_notifier(mut self, notifier: Box<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Uses a fixed wall clock (for screenshots).
    pub fn with_fixed_clock(mut self, start_unix_millis: u64) -> Self {
        self.wall_clock = WallClock::Fixed { start_unix_millis };
        self
    }

    /// Actions recorded by a detached app.
    pub fn take_sent_actions(&mut self) -> Vec<UiAction> {
        std::mem::take(&mut self.outbox)
    }

    /// The model's clocks at this frame.
    pub fn now(&self, ctx: &egui::Context) -> Now {
        let elapsed = Duration::from_secs_f64(ctx.input(|i| i.time).max(0.0));
        let unix_millis = match self.wall_clock {
            WallClock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            WallClock::Fixed { start_unix_millis } => start_unix_millis
                .saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
        };
        Now {
            elapsed,
            unix_millis,
        }
    }

    /// Drains events, sends actions, plays sounds, schedules the next repaint.
    pub fn logic_step(&mut self, ctx: &egui::Context) {
        if !self.themed {
            theme::apply(ctx);
            self.themed = true;
        }
        self.sync_text_scale(ctx);
        let now = self.now(ctx);
        if let Some(link) = self.link.as_mut() {
            for _ in 0..MAX_EVENTS_PER_FRAME {
                let Some(event) = link.try_recv() else {
                    break;
                };
                self.model.handle(now, event);
            }
        }
        self.flush(ctx);
        if let Some(next) = self.model.expire(now) {
            ctx.request_repaint_after(next);
        }
        if self.model.call.is_some() {
            // The call timer ticks every second.
            ctx.request_repaint_after(Duration::from_millis(500));
        }
        let title = match &self.model.me {
            Some(me) => format!("Peerphone - {me}"),
            None => "Peerphone".to_string(),
        };
        if self.title.as_ref() != Some(&title) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = Some(title);
        }
    }

    /// Keeps egui's zoom factor and the text-size preference in step: Ctrl +/- (egui's
    /// keyboard zoom) changes the preference, the settings slider changes the zoom.
    fn sync_text_scale(&mut self, ctx: &egui::Context) {
        let zoom = ctx.zoom_factor();
        if let Some(applied) = self.applied_zoom
            && (zoom - applied).abs() > 0.001
        {
            self.model.set_text_scale(zoom);
        }
        let wanted = self.model.prefs.text_scale;
        if self.applied_zoom != Some(wanted) {
            ctx.set_zoom_factor(wanted);
            self.applied_zoom = Some(wanted);
        }
    }

    /// Sends what the model recorded and plays its sound cues.
    fn flush(&mut self, ctx: &egui::Context) {
        let now = self.now(ctx);
        for action in self.model.take_actions() {
            match &self.link {
                None => self.outbox.push(action),
                Some(link) => match link.send(action) {
                    Ok(()) => {}
                    Err(e @ (SendError::Busy(_) | SendError::Closed(_))) => {
                        self.model.toast(now, ToastKind::Error, e.to_string());
                    }
                },
            }
        }
        let unfocused = ctx.input(|i| i.viewport().focused) == Some(false);
        for cue in self.model.take_sound_cues() {
            // While the window is in the background, the desktop flags it (taskbar, dock).
            let attention = match cue {
                SoundCue::StartRingtone => Some(egui::UserAttentionType::Critical),
                SoundCue::MessageChime => Some(egui::UserAttentionType::Informational),
                SoundCue::StopRingtone | SoundCue::HangupTone => None,
            };
            if let Some(kind) = attention.filter(|_| unfocused) {
                ctx.send_viewport_cmd(egui::ViewportCommand::RequestUserAttention(kind));
            }
            self.sounds.cue(cue);
        }
        for note in self.model.take_notes() {
            if unfocused {
                self.notifier.notify(note);
            }
        }
    }

    /// Draws the app. What the drawing recorded is sent by the next [`Self::logic_step`],
    /// which this asks for at once.
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        let now = self.now(ui.ctx());
        view::app_ui(ui, &mut self.model, now);
        if self.model.has_pending_output() {
            ui.ctx().request_repaint();
        }
    }
}

impl eframe::App for DesktopApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.logic_step(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.draw(ui);
    }
}
