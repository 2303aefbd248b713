//! The UI's channel boundary: actions recorded by the window reach a backend through the
//! glue task, and the backend's replies come back as events the window shows, without the
//! UI thread ever blocking.

use app::events::{Event, PathKind};
use app::ui::link::{self, Backend, EventSink, Repaint};
use app::ui::model::{CallPhase, Tick};
use app::ui::sound::Silent;
use app::ui::{DesktopApp, Now, UiAction, UiEvent, UiModel};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use proto::UserName;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn user(name: &str) -> UserName {
    name.parse().expect("valid user name")
}

/// A stand-in engine: logs anyone in, delivers every message, connects every call, and
/// reports each action it saw.
struct FakeEngine {
    seen: mpsc::UnboundedSender<UiAction>,
    next_id: u32,
}

impl Backend for FakeEngine {
    async fn perform(&mut self, action: UiAction, sink: &EventSink) {
        let _ = self.seen.send(action.clone());
        match action {
            UiAction::Login { user, .. } => {
                sink.engine(Event::LoggedIn {
                    user,
                    supernode: Some("127.0.0.1:7500".into()),
                })
                .await;
            }
            UiAction::SendChat { to, local_id, .. } => {
                self.next_id += 1;
                let id = format!("{:032x}", self.next_id);
                sink.send(UiEvent::ChatQueued {
                    to: to.clone(),
                    local_id,
                    id: id.clone(),
                })
                .await;
                sink.engine(Event::ChatAccepted {
                    to: to.clone(),
                    id: id.clone(),
                    stored: false,
                })
                .await;
                sink.engine(Event::ChatDelivered { to, id }).await;
            }
            UiAction::Dial { to } => {
                sink.send(UiEvent::CallPlaced {
                    peer: to.clone(),
                    call_id: "call-1".into(),
                })
                .await;
                sink.engine(Event::CallConnected {
                    call_id: "call-1".into(),
                    peer: to,
                    path: PathKind::Direct,
                    setup_ms: 5,
                })
                .await;
            }
            _ => {}
        }
    }
}

/// Steps the window until `done` holds (the glue runs on other threads), with a generous
/// deadline instead of a fixed sleep.
fn step_until(
    h: &mut Harness<'static, DesktopApp>,
    what: &str,
    done: impl Fn(&DesktopApp) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::yield_now();
    }
    h.run_steps(2);
}

#[test]
fn actions_reach_the_backend_and_replies_reach_the_window() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let (ui_link, glue_end) = link::channel(Repaint::new());
    let glue = runtime.spawn(link::run_glue(
        FakeEngine {
            seen: seen_tx,
            next_id: 0,
        },
        glue_end,
    ));

    let mut model = UiModel::new();
    model.login.mode = app::ui::model::LoginMode::Login;
    let app = DesktopApp::new(model, ui_link, Box::new(Silent));
    let mut h = Harness::builder().with_size([960.0, 640.0]).build_ui_state(
        |ui, app: &mut DesktopApp| {
            app.logic_step(ui.ctx());
            app.draw(ui);
        },
        app,
    );

    h.get_by_label("User name").click();
    h.run_steps(2);
    h.get_by_label("User name").type_text("alice");
    h.get_by_label("Password").click();
    h.run_steps(2);
    h.get_by_label("Password")
        .type_text("a long enough password");
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Sign in").click();
    step_until(&mut h, "logged_in", |app| app.model.me.is_some());
    assert_eq!(h.state().model.me, Some(user("alice")));

    // A chat to bob: the tick goes all the way to delivered through the real channels.
    let now = Now::default();
    h.state_mut().model.select(&user("bob"));
    h.state_mut().model.draft = "hello over the link".into();
    h.state_mut().model.send_draft(now);
    step_until(&mut h, "delivery", |app| {
        app.model
            .conversation(&user("bob"))
            .and_then(|c| c.lines.back())
            .and_then(|l| l.tick)
            == Some(Tick::Delivered)
    });
    h.get_by_label("delivered");

    h.get_by_label("Call bob").click();
    step_until(&mut h, "call connected", |app| {
        app.model
            .call
            .as_ref()
            .is_some_and(|c| c.phase == CallPhase::Connected)
    });
    h.get_by_label("In call with bob");
    h.get_by_role_and_label(Role::Button, "Hang up").click();
    h.run_steps(2);

    // Closing the window closes the link; the glue task then ends by itself.
    drop(h);
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), glue).await })
        .expect("glue ends once the UI is gone")
        .expect("glue task");

    let mut seen = Vec::new();
    while let Ok(action) = seen_rx.try_recv() {
        seen.push(action);
    }
    let kinds: Vec<&str> = seen
        .iter()
        .map(|a| match a {
            UiAction::Login { .. } => "login",
            UiAction::SendChat { .. } => "chat",
            UiAction::Dial { .. } => "dial",
            UiAction::HangUp { .. } => "hangup",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["login", "chat", "dial", "hangup"], "{seen:?}");
    assert!(matches!(
        &seen[3],
        UiAction::HangUp { call_id: Some(id), .. } if id == "call-1"
    ));
}

#[test]
fn a_full_action_queue_is_reported_not_blocking() {
    let (ui_link, _glue_end) = link::channel(Repaint::new());
    // Nobody drains the glue end: the queue fills and `send` says so at once.
    let mut refused = 0;
    for i in 0..(link::ACTION_QUEUE + 5) {
        if ui_link
            .send(UiAction::Search {
                query: format!("q{i}"),
            })
            .is_err()
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 5);
}
