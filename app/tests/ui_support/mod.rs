//! The desktop window under egui_kittest, as the window tests drive it: a detached
//! `DesktopApp` (no engine) whose model is fed events, stepped a few frames at a time, and
//! whose sent `UiAction`s are taken back.
#![allow(dead_code)]

use app::events::{Event, PathKind, Status};
use app::ui::model::{Authorization, ContactEntry};
use app::ui::{DesktopApp, Now, UiAction, UiEvent, UiModel};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use proto::UserName;

pub const T0_UNIX_MILLIS: u64 = 1_764_000_000_000;

pub type Window = Harness<'static, DesktopApp>;

pub fn user(name: &str) -> UserName {
    name.parse().expect("valid user name")
}

pub fn contact(name: &str, display: &str, status: Status) -> ContactEntry {
    ContactEntry {
        user: user(name),
        display_name: display.into(),
        status,
        authorization: Authorization::Contact,
    }
}

/// A model logged in as alice (without a supernode), then given `events`.
pub fn alice_logged_in(events: Vec<UiEvent>) -> UiModel {
    let mut model = UiModel::new();
    let now = Now::default();
    model.handle(
        now,
        UiEvent::Engine(Event::LoggedIn {
            user: user("alice"),
            supernode: None,
        }),
    );
    for event in events {
        model.handle(now, event);
    }
    model
}

/// A window of `size` points drawing `model`.
pub fn window(model: UiModel, size: [f32; 2]) -> Window {
    Harness::builder().with_size(size).build_ui_state(
        |ui, app: &mut DesktopApp| {
            app.logic_step(ui.ctx());
            app.draw(ui);
        },
        DesktopApp::detached(model, T0_UNIX_MILLIS),
    )
}

/// Lets the window process input and redraw (a few frames: spinners never settle).
pub fn step(harness: &mut Window) {
    harness.run_steps(4);
}

/// Hands the model an event at the window's time and redraws.
pub fn feed(harness: &mut Window, event: UiEvent) {
    let now = harness.state().now(&harness.ctx);
    harness.state_mut().model.handle(now, event);
    step(harness);
}

/// Hands the model an engine event and redraws.
pub fn engine(harness: &mut Window, event: Event) {
    feed(harness, UiEvent::Engine(event));
}

/// The engine reports a call connected to `peer`.
pub fn connected(harness: &mut Window, call_id: &str, peer: &str, path: PathKind, setup_ms: u64) {
    engine(
        harness,
        Event::CallConnected {
            call_id: call_id.into(),
            peer: user(peer),
            path,
            setup_ms,
        },
    );
}

/// What the window asked of the engine since last asked, after a redraw.
pub fn actions(harness: &mut Window) -> Vec<UiAction> {
    step(harness);
    harness.state_mut().take_sent_actions()
}

pub fn open_settings(harness: &mut Window) {
    harness
        .get_by_role_and_label(Role::Button, "Settings")
        .click();
    step(harness);
}

/// The node's numeric value (a meter's fill in percent).
pub fn meter_percent(h: &Window, label: &str) -> f64 {
    h.get_by_role_and_label(Role::Meter, label)
        .accesskit_node()
        .numeric_value()
        .expect("a meter has a value")
}
