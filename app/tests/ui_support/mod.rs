//! The desktop window under egui_kittest, as the window tests drive it: a detached
//! `DesktopApp` (no engine) whose model is fed events, stepped a few frames at a time, and
//! whose sent `UiAction`s are taken back; or the real app on an embedded local network,
//! stepped until a condition holds.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use app::events::{Event, PathKind, Status};
use app::local::{LocalNetwork, LocalOptions};
use app::login_client::LoginTarget;
use app::profile::Profile;
use app::ui::backend::NetworkBackend;
use app::ui::link::{self, Repaint};
use app::ui::model::{Authorization, ContactEntry, NetworkInfo};
use app::ui::sound::Silent;
use app::ui::{DesktopApp, Now, UiAction, UiEvent, UiModel};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use proto::UserName;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

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

/// A window of `size` points drawing `model`, with no engine behind it.
pub fn window(model: UiModel, size: [f32; 2]) -> Window {
    window_of(DesktopApp::detached(model, T0_UNIX_MILLIS), size)
}

/// A window of `size` points drawing `app`.
pub fn window_of(app: DesktopApp, size: [f32; 2]) -> Window {
    Harness::builder().with_size(size).build_ui_state(
        |ui, app: &mut DesktopApp| {
            app.logic_step(ui.ctx());
            app.draw(ui);
        },
        app,
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

/// The engine reports a contact's presence.
pub fn presence(harness: &mut Window, who: &str, status: Status, message: String) {
    engine(
        harness,
        Event::Presence {
            user: user(who),
            status,
            message,
        },
    );
}

/// What the window asked of the engine since last asked, after a redraw.
pub fn actions(harness: &mut Window) -> Vec<UiAction> {
    step(harness);
    harness.state_mut().take_sent_actions()
}

/// Clicks the button with the accessible name `label`; what that asked of the engine.
pub fn press(harness: &mut Window, label: &str) -> Vec<UiAction> {
    harness.get_by_role_and_label(Role::Button, label).click();
    actions(harness)
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

// ---- The real app on an embedded local network ----

/// The runtime the network and the app's glue run on while the test steps the window.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// An embedded local network (one supernode) on ports of its own choosing, under
/// `dir/net`, with `adjust` applied to its options.
pub fn local_network(
    runtime: &Runtime,
    dir: &Path,
    adjust: impl FnOnce(&mut LocalOptions),
) -> LocalNetwork {
    let mut options = LocalOptions::new(1);
    options.fixed_ports = false;
    adjust(&mut options);
    runtime
        .block_on(LocalNetwork::start_with(&dir.join("net"), options))
        .expect("local network")
}

/// The real app on `profile` (link, glue and `NetworkBackend` on `runtime`), with a
/// window of `size` points; the glue's task ends once the window is gone.
pub fn real_app(
    runtime: &Runtime,
    profile: Profile,
    target: LoginTarget,
    info: NetworkInfo,
    size: [f32; 2],
) -> (Window, JoinHandle<()>) {
    let (ui_link, glue_end) = link::channel(Repaint::new());
    let glue = runtime.spawn(link::run_glue(
        NetworkBackend::new(profile, target, info),
        glue_end,
    ));
    let app = DesktopApp::new(UiModel::new(), ui_link, Box::new(Silent));
    (window_of(app, size), glue)
}

/// Closes the window, waits for the glue to log off (within 10 s) and stops the network.
pub fn close_real_app(runtime: &Runtime, h: Window, glue: JoinHandle<()>, network: LocalNetwork) {
    drop(h);
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), glue)
            .await
            .expect("glue logs off once the window is gone")
            .expect("glue task");
        network.shutdown().await;
    });
}

/// Steps the window until `done` holds: the network runs on other threads, so this waits
/// on the condition with a generous deadline.
pub fn step_until(h: &mut Window, what: &str, done: impl Fn(&DesktopApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(h.state()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; toasts: {:?}; login error: {:?}",
            h.state().model.toasts,
            h.state().model.login.error
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run_steps(3);
}
