//! The desktop app (egui/eframe): contacts with presence, chat with delivery ticks, calls,
//! an incoming-call dialog with a ringtone, settings with the NAT report, and toasts.
//!
//! Split between logic and drawing:
//! - [`model`]: [`UiModel`], the whole state, pure: fed [`UiEvent`]s, it records
//!   [`UiAction`]s (commands for the engine) and [`SoundCue`]s. Tested without egui.
//! - [`view`]: draws the model and calls its intent methods; no IO.
//! - [`link`]: the channel boundary to the engine: actions go out over a bounded channel to
//!   a glue task that calls a [`link::Backend`] (the real engine, or a fake in tests), and
//!   events come back over another bounded channel.
//! - [`app`]: the eframe [`eframe::App`]: `logic()` drains events and sends actions,
//!   `ui()` only draws.
//! - [`backend`]: the real [`link::Backend`] (login client, engine, netcheck).
//! - [`launch`]: `peerphone` with no subcommand: the network (embedded when none is
//!   configured), the runtime, the window, the shutdown.
//! - [`theme`], [`resources`], [`sound`]: colours and spacing, assets, and the ringtone.
//! - [`notify`]: desktop notifications for calls and messages while the window is in the
//!   background.
//! - [`audio_check`]: the settings page's microphone meter and speaker test.
//! - [`prefs`]: the person's preferences (sound processing, text size) in the profile.
//!
//! What it does not do: talk to the network or the sound card for calls (the engine does).

pub mod app;
pub mod audio_check;
pub mod backend;
pub mod launch;
pub mod link;
pub mod model;
pub mod notify;
pub mod prefs;
pub mod resources;
pub mod sound;
pub mod theme;
pub mod view;

pub use app::DesktopApp;
pub use model::{Now, SoundCue, UiAction, UiEvent, UiModel};

/// Opens the desktop app (`peerphone` with no subcommand).
pub fn run(options: &crate::cli::Options) -> Result<(), crate::cli::CliError> {
    launch::run(options)
}
