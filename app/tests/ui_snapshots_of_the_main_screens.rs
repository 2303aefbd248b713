//! Image snapshots of the desktop app's main screens, rendered by egui_kittest through wgpu
//! (Mesa llvmpipe here). A changed look fails the test; `UPDATE_SNAPSHOTS=1` rewrites the
//! images under `app/tests/snapshots/` after a deliberate change (look at them first).

use app::events::{CallStats, Event, PathKind, Status};
use app::ui::model::{Authorization, ContactEntry, NetworkInfo};
use app::ui::{DesktopApp, Now, UiEvent, UiModel};
use egui_kittest::{Harness, SnapshotOptions};
use proto::UserName;

/// 2025-11-24 10:30 UTC: message times in the images never change.
const T0_UNIX_MILLIS: u64 = 1_763_980_200_000;

fn user(name: &str) -> UserName {
    name.parse().expect("valid user name")
}

fn options() -> SnapshotOptions {
    SnapshotOptions::new().output_path(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots"))
}

fn harness(model: UiModel) -> Harness<'static, DesktopApp> {
    Harness::builder().with_size([900.0, 560.0]).build_ui_state(
        |ui, app: &mut DesktopApp| {
            app.logic_step(ui.ctx());
            app.draw(ui);
        },
        DesktopApp::detached(model, T0_UNIX_MILLIS),
    )
}

fn network() -> UiEvent {
    UiEvent::Network(NetworkInfo {
        login_server: "127.0.0.1:7400".into(),
        embedded: true,
        echo_user: Some(user("echo")),
    })
}

fn main_model() -> UiModel {
    let mut m = UiModel::new();
    let now = Now {
        elapsed: std::time::Duration::ZERO,
        unix_millis: T0_UNIX_MILLIS,
    };
    m.handle(now, network());
    m.handle(
        now,
        UiEvent::Engine(Event::LoggedIn {
            user: user("alice"),
            supernode: None,
        }),
    );
    let entry = |name: &str, display: &str, status| ContactEntry {
        user: user(name),
        display_name: display.into(),
        status,
        authorization: Authorization::Contact,
    };
    m.handle(
        now,
        UiEvent::Contacts {
            contacts: vec![
                entry("bob", "Bob Builder", Status::Online),
                entry("carol", "Carol Danvers", Status::Away),
                entry("erin", "Erin Brockovich", Status::Busy),
                entry("frank", "Frank Zappa", Status::Offline),
            ],
            requests: vec![user("dave")],
        },
    );
    m.handle(
        now,
        UiEvent::Engine(Event::Chat {
            from: user("bob"),
            id: "b1".into(),
            text: "Morning! Did the parcel arrive?".into(),
            sent_at: T0_UNIX_MILLIS - 120_000,
        }),
    );
    m.select(&user("bob"));
    m.draft = "Yes, thanks! Call you in five?".into();
    m.send_draft(now);
    for action in m.take_actions() {
        if let app::ui::UiAction::SendChat { to, local_id, .. } = action {
            m.handle(
                now,
                UiEvent::ChatQueued {
                    to: to.clone(),
                    local_id,
                    id: "a1".into(),
                },
            );
            m.handle(
                now,
                UiEvent::Engine(Event::ChatDelivered {
                    to,
                    id: "a1".into(),
                }),
            );
        }
    }
    m.handle(
        now,
        UiEvent::Engine(Event::Chat {
            from: user("carol"),
            id: "c1".into(),
            text: "Lunch tomorrow?".into(),
            sent_at: T0_UNIX_MILLIS,
        }),
    );
    m.take_sound_cues();
    m
}

#[test]
fn snapshots_of_the_main_screens() {
    let mut results = Vec::new();

    let mut login = UiModel::new();
    login.handle(Now::default(), network());
    let mut h = harness(login);
    results.push(h.try_snapshot_options("ui_login", &options()));

    let mut h = harness(main_model());
    h.run();
    results.push(h.try_snapshot_options("ui_main_chat", &options()));

    let now = h.state().now(&h.ctx);
    let model = &mut h.state_mut().model;
    model.handle(
        now,
        UiEvent::Engine(Event::CallConnected {
            call_id: "k1".into(),
            peer: user("bob"),
            path: PathKind::Relay,
            setup_ms: 180,
        }),
    );
    model.handle(
        now,
        UiEvent::Engine(Event::CallStats {
            call_id: "k1".into(),
            stats: CallStats {
                mos: 3.8,
                loss_pct: 1.5,
                rtt_ms: 60.0,
                jitter_ms: 8.0,
                ..CallStats::default()
            },
            input_level: 0.3,
            output_level: 0.08,
        }),
    );
    h.run_steps(3);
    results.push(h.try_snapshot_options("ui_in_call", &options()));

    let now = h.state().now(&h.ctx);
    h.state_mut().model.handle(
        now,
        UiEvent::Engine(Event::CallIncoming {
            from: user("carol"),
            call_id: "k2".into(),
        }),
    );
    h.run_steps(3);
    results.push(h.try_snapshot_options("ui_incoming_call", &options()));

    for result in results {
        result.expect("snapshot matches");
    }
}
