//! The desktop app's main window, rendered by egui_kittest and driven like a person would:
//! find widgets by their accessible names, click, type, and check the resulting
//! `UiAction`s and what the window shows.

mod ui_support;

use app::events::{CallStats, EndReason, Event, PathKind, Status};
use app::ui::model::{CallPhase, LoginMode, NetworkInfo, Screen, Tick};
use app::ui::{DesktopApp, Now, UiAction, UiEvent, UiModel};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ui_support::{
    T0_UNIX_MILLIS, Window, actions, alice_logged_in, connected, contact, engine, feed,
    meter_percent, presence, press, step, user,
};

/// A window logged in as alice with bob (online) and carol (offline).
fn logged_in() -> Window {
    harness(alice_logged_in(vec![UiEvent::Contacts {
        contacts: vec![
            contact("bob", "Bob", Status::Online),
            contact("carol", "Carol", Status::Offline),
        ],
        requests: vec![],
    }]))
}

fn harness(model: UiModel) -> Window {
    ui_support::window(model, [960.0, 640.0])
}

#[test]
fn contact_list_shows_presence_and_follows_presence_events() {
    let mut h = logged_in();
    h.get_by_label("bob is online");
    h.get_by_label("carol is offline");
    presence(&mut h, "carol", Status::Busy, String::new());
    h.get_by_label("carol is busy");
    assert!(h.query_by_label("carol is offline").is_none());
    // Online contacts come first.
    let bob_y = h.get_by_label("Chat with bob").rect().top();
    let carol_y = h.get_by_label("Chat with carol").rect().top();
    assert!(bob_y < carol_y, "bob {bob_y} above carol {carol_y}");
}

#[test]
fn search_box_filters_contacts_and_searches_the_directory() {
    let mut h = logged_in();
    h.get_by_label("Search contacts").click();
    step(&mut h);
    h.get_by_label("Search contacts").type_text("car");
    step(&mut h);
    assert!(h.query_by_label("Chat with bob").is_none());
    h.get_by_label("Chat with carol");
    assert_eq!(
        press(&mut h, "Find"),
        vec![UiAction::Search {
            query: "car".into()
        }]
    );
    feed(
        &mut h,
        UiEvent::SearchResults {
            query: "car".into(),
            results: vec![app::events::SearchResult {
                user: user("carlos"),
                display_name: "Carlos".into(),
                status: Status::Away,
            }],
        },
    );
    h.get_by_label("carlos is away");
    h.get_by_label("Add carlos").click();
    assert_eq!(
        actions(&mut h),
        vec![UiAction::AddContact {
            user: user("carlos")
        }]
    );
    h.get_by_label_contains("waiting for authorization");
}

#[test]
fn sending_a_chat_shows_it_with_a_tick_that_advances() {
    let mut h = logged_in();
    h.get_by_label("Chat with bob").click();
    step(&mut h);
    h.get_by_label("Message").click();
    step(&mut h);
    h.get_by_label("Message").type_text("hello bob");
    step(&mut h);
    let sent = press(&mut h, "Send");
    let [UiAction::SendChat { to, local_id, text }] = sent.as_slice() else {
        panic!("expected one SendChat, got {sent:?}");
    };
    assert_eq!((to, text.as_str()), (&user("bob"), "hello bob"));
    h.get_by_label("hello bob");
    h.get_by_label("sending");
    // The input is cleared for the next message.
    assert_eq!(h.get_by_label("Message").value().as_deref(), Some(""));

    feed(
        &mut h,
        UiEvent::ChatQueued {
            to: user("bob"),
            local_id: *local_id,
            id: "0a1b".into(),
        },
    );
    engine(
        &mut h,
        Event::ChatAccepted {
            to: user("bob"),
            id: "0a1b".into(),
            stored: false,
        },
    );
    h.get_by_label("sent");
    assert!(h.query_by_label("sending").is_none());
    engine(
        &mut h,
        Event::ChatDelivered {
            to: user("bob"),
            id: "0a1b".into(),
        },
    );
    h.get_by_label("delivered");
    assert!(h.query_by_label("sent").is_none());
}

#[test]
fn enter_sends_and_a_message_to_an_offline_contact_is_marked_stored() {
    let mut h = logged_in();
    h.get_by_label("Chat with carol").click();
    step(&mut h);
    h.get_by_label("Message").click();
    step(&mut h);
    h.get_by_label("Message").type_text("see you");
    step(&mut h);
    h.key_press(egui::Key::Enter);
    let sent = actions(&mut h);
    let [UiAction::SendChat { local_id, .. }] = sent.as_slice() else {
        panic!("Enter did not send: {sent:?}");
    };
    feed(
        &mut h,
        UiEvent::ChatQueued {
            to: user("carol"),
            local_id: *local_id,
            id: "77".into(),
        },
    );
    engine(
        &mut h,
        Event::ChatAccepted {
            to: user("carol"),
            id: "77".into(),
            stored: true,
        },
    );
    h.get_by_label("stored for later");
}

#[test]
fn incoming_messages_count_as_unread_until_opened() {
    let mut h = logged_in();
    for (i, text) in ["one", "two"].into_iter().enumerate() {
        engine(
            &mut h,
            Event::Chat {
                from: user("bob"),
                id: format!("m{i}"),
                text: text.into(),
                sent_at: T0_UNIX_MILLIS,
            },
        );
    }
    h.get_by_label("2 unread");
    h.get_by_label("Chat with bob").click();
    step(&mut h);
    assert!(h.query_by_label("2 unread").is_none());
    h.get_by_label("one");
    h.get_by_label("two");
}

#[test]
fn incoming_call_dialog_answers() {
    let mut h = logged_in();
    engine(
        &mut h,
        Event::CallIncoming {
            from: user("bob"),
            call_id: "c1".into(),
        },
    );
    h.get_by_label("Incoming call");
    h.get_by_label("Bob");
    assert!(h.state().model.ringing());
    assert_eq!(
        press(&mut h, "Answer"),
        vec![UiAction::Answer {
            call_id: "c1".into()
        }]
    );
    assert!(h.query_by_label("Incoming call").is_none());
    assert!(!h.state().model.ringing());
    connected(&mut h, "c1", "bob", PathKind::Direct, 120);
    h.get_by_label("In call with bob");
    h.get_by_label("direct");
    h.get_by_label_contains("Call timer 00:0");
}

#[test]
fn incoming_call_dialog_declines_with_the_button_or_escape() {
    let mut h = logged_in();
    engine(
        &mut h,
        Event::CallIncoming {
            from: user("bob"),
            call_id: "c1".into(),
        },
    );
    assert_eq!(
        press(&mut h, "Decline"),
        vec![UiAction::Decline {
            call_id: "c1".into()
        }]
    );
    assert!(h.query_by_label("Incoming call").is_none());

    engine(
        &mut h,
        Event::CallIncoming {
            from: user("carol"),
            call_id: "c2".into(),
        },
    );
    h.get_by_label("Incoming call");
    h.key_press(egui::Key::Escape);
    assert_eq!(
        actions(&mut h),
        vec![UiAction::Decline {
            call_id: "c2".into()
        }]
    );
    assert!(h.query_by_label("Incoming call").is_none());
}

#[test]
fn call_controls_dial_hold_mute_and_hang_up() {
    let mut h = logged_in();
    h.get_by_label("Call bob").click();
    assert_eq!(actions(&mut h), vec![UiAction::Dial { to: user("bob") }]);
    h.get_by_label("Calling bob…");
    engine(
        &mut h,
        Event::CallRinging {
            call_id: "c9".into(),
            setup_ms: 40,
        },
    );
    h.get_by_label("Ringing bob…");
    connected(&mut h, "c9", "bob", PathKind::Relay, 300);
    h.get_by_label("In call with bob");
    h.get_by_label("relayed");
    feed(
        &mut h,
        UiEvent::CallStats {
            call_id: "c9".into(),
            stats: CallStats {
                mos: 4.2,
                loss_pct: 0.5,
                rtt_ms: 40.0,
                jitter_ms: 3.0,
                ..CallStats::default()
            },
        },
    );
    h.get_by_label_contains("Call quality excellent");

    assert_eq!(
        press(&mut h, "Hold"),
        vec![UiAction::Hold {
            call_id: "c9".into()
        }]
    );
    engine(
        &mut h,
        Event::CallHeld {
            call_id: "c9".into(),
        },
    );
    h.get_by_label("bob (on hold)");
    assert_eq!(
        press(&mut h, "Resume"),
        vec![UiAction::Resume {
            call_id: "c9".into()
        }]
    );

    assert_eq!(
        press(&mut h, "Mute"),
        vec![UiAction::SetMuted {
            call_id: Some("c9".into()),
            muted: true
        }]
    );
    h.get_by_role_and_label(Role::Button, "Unmute");

    assert_eq!(
        press(&mut h, "Hang up"),
        vec![UiAction::HangUp {
            call_id: Some("c9".into()),
            peer: user("bob"),
        }]
    );
    assert!(h.state().model.call.is_none());
}

#[test]
fn the_call_timer_counts_connected_time() {
    let mut h = logged_in();
    h.get_by_label("Call bob").click();
    step(&mut h);
    connected(&mut h, "c3", "bob", PathKind::Direct, 80);
    let call = h.state().model.call.clone().expect("call");
    assert_eq!(call.phase, CallPhase::Connected);
    let later = Now {
        elapsed: call.connected_at.expect("connected") + std::time::Duration::from_secs(75),
        unix_millis: 0,
    };
    assert_eq!(
        app::ui::model::format_duration(call.duration(later)),
        "01:15"
    );
}

#[test]
fn a_declined_call_ends_with_a_toast() {
    let mut h = logged_in();
    h.get_by_label("Call bob").click();
    step(&mut h);
    engine(
        &mut h,
        Event::CallRinging {
            call_id: "c5".into(),
            setup_ms: 10,
        },
    );
    engine(
        &mut h,
        Event::CallEnded {
            call_id: "c5".into(),
            reason: EndReason::Declined,
            stats: CallStats::default(),
            detail: None,
        },
    );
    h.get_by_label("bob declined the call");
    assert!(h.state().model.call.is_none());
}

#[test]
fn errors_show_as_dismissable_toasts() {
    let mut h = logged_in();
    engine(
        &mut h,
        Event::Error {
            message: "cannot reach the supernode".into(),
        },
    );
    h.get_by_label("cannot reach the supernode");
    h.get_by_label("Dismiss").click();
    step(&mut h);
    assert!(h.query_by_label("cannot reach the supernode").is_none());
}

#[test]
fn contact_requests_can_be_accepted_or_declined() {
    let mut h = logged_in();
    engine(&mut h, Event::ContactRequest { from: user("dave") });
    engine(&mut h, Event::ContactRequest { from: user("erin") });
    h.get_by_label("Accept dave").click();
    assert_eq!(
        actions(&mut h),
        vec![UiAction::AcceptContact { user: user("dave") }]
    );
    h.get_by_label("Chat with dave");
    h.get_by_label("Decline erin").click();
    assert_eq!(
        actions(&mut h),
        vec![UiAction::DeclineContact { user: user("erin") }]
    );
    assert!(h.query_by_label("Accept erin").is_none());
}

#[test]
fn status_selector_sets_presence() {
    let mut h = logged_in();
    h.get_by_label("My status").click();
    step(&mut h);
    h.get_by_label("Away").click();
    assert_eq!(
        actions(&mut h),
        vec![UiAction::SetPresence(app::ui::model::MyStatus::Away)]
    );
}

#[test]
fn register_form_sends_register_and_shows_login_errors() {
    let mut model = UiModel::new();
    model.handle(
        Now::default(),
        UiEvent::Network(NetworkInfo {
            login_server: "127.0.0.1:7400".into(),
            embedded: true,
            echo_user: Some(user("echo")),
        }),
    );
    let mut h = harness(model);
    assert_eq!(h.state().model.screen, Screen::Login);
    h.get_by_label_contains("Built-in local network on 127.0.0.1:7400");
    h.get_by_label("User name").click();
    step(&mut h);
    h.get_by_label("User name").type_text("alice");
    h.get_by_label("Password").click();
    step(&mut h);
    h.get_by_label("Password")
        .type_text("correct horse battery");
    step(&mut h);
    let sent = press(&mut h, "Create account and sign in");
    let [
        UiAction::Register {
            user: u,
            display_name,
            ..
        },
    ] = sent.as_slice()
    else {
        panic!("expected Register, got {sent:?}");
    };
    assert_eq!((u, display_name.as_str()), (&user("alice"), "alice"));
    h.get_by_label("Creating account…");

    feed(
        &mut h,
        UiEvent::LoginFailed {
            message: "user name alice is already taken".into(),
        },
    );
    h.get_by_label("user name alice is already taken");
    h.get_by_label("I have an account").click();
    step(&mut h);
    assert_eq!(h.state().model.login.mode, LoginMode::Login);
    let sent = press(&mut h, "Sign in");
    assert!(
        matches!(sent.as_slice(), [UiAction::Login { user: u, .. }] if *u == user("alice")),
        "{sent:?}"
    );
    engine(
        &mut h,
        Event::LoggedIn {
            user: user("alice"),
            supernode: None,
        },
    );
    assert_eq!(h.state().model.screen, Screen::Main);
    h.get_by_label_contains("Call the echo test service")
        .click();
    assert_eq!(actions(&mut h), vec![UiAction::Dial { to: user("echo") }]);
}

#[test]
fn a_bad_user_name_is_refused_before_anything_is_sent() {
    let mut h = harness(UiModel::new());
    h.get_by_label("User name").click();
    step(&mut h);
    h.get_by_label("User name").type_text("A!");
    h.get_by_label("Password").click();
    step(&mut h);
    h.get_by_label("Password").type_text("whatever password");
    step(&mut h);
    assert!(press(&mut h, "Create account and sign in").is_empty());
    h.get_by_label_contains("User name:");
}

#[test]
fn settings_show_the_nat_report() {
    let mut h = logged_in();
    h.get_by_role_and_label(Role::Button, "Settings").click();
    step(&mut h);
    assert_eq!(actions(&mut h), vec![UiAction::MonitorMicrophone(true)]);
    assert_eq!(press(&mut h, "Run network check"), vec![UiAction::Netcheck]);
    feed(
        &mut h,
        UiEvent::Netcheck(app::ui::model::NatReport {
            udp: true,
            public_addr: Some("203.0.113.7:40000".into()),
            mapping: "endpoint-independent".into(),
            filtering: "address-dependent".into(),
            hairpin: Some(false),
            nat_type: "restricted-cone".into(),
            supernode_rtt_ms: Some(12.0),
        }),
    );
    h.get_by_label("restricted-cone");
    h.get_by_label("203.0.113.7:40000");
    h.get_by_label("12 ms");
}

#[test]
fn ticks_never_go_backwards() {
    let mut h = logged_in();
    h.get_by_label("Chat with bob").click();
    step(&mut h);
    h.state_mut().model.draft = "x".into();
    let now = h.state().now(&h.ctx);
    h.state_mut().model.send_draft(now);
    let sent = actions(&mut h);
    let [UiAction::SendChat { local_id, .. }] = sent.as_slice() else {
        panic!("{sent:?}");
    };
    feed(
        &mut h,
        UiEvent::ChatQueued {
            to: user("bob"),
            local_id: *local_id,
            id: "ff".into(),
        },
    );
    engine(
        &mut h,
        Event::ChatDelivered {
            to: user("bob"),
            id: "ff".into(),
        },
    );
    engine(
        &mut h,
        Event::ChatAccepted {
            to: user("bob"),
            id: "ff".into(),
            stored: false,
        },
    );
    let line = h
        .state()
        .model
        .conversation(&user("bob"))
        .expect("chat")
        .lines[0]
        .clone();
    assert_eq!(line.tick, Some(Tick::Delivered));
}

#[test]
fn the_login_screen_switches_to_another_login_server() {
    let mut h = harness(UiModel::new());
    h.get_by_label("Use another login server").click();
    step(&mut h);
    h.get_by_label("Login server").click();
    step(&mut h);
    h.get_by_label("Login server").type_text("203.0.113.5:7400");
    step(&mut h);
    h.get_by_label("Authority key").click();
    step(&mut h);
    h.get_by_label("Authority key").type_text("not a key");
    step(&mut h);
    assert!(press(&mut h, "Use this server").is_empty());
    h.get_by_label_contains("Authority key:");

    let key = proto::SecretKey::generate().public().to_string();
    h.state_mut().model.login.server_key = key.clone();
    step(&mut h);
    let sent = press(&mut h, "Use this server");
    let [
        UiAction::UseServer {
            login_server,
            authority_key,
        },
    ] = sent.as_slice()
    else {
        panic!("expected UseServer, got {sent:?}");
    };
    assert_eq!(login_server.to_string(), "203.0.113.5:7400");
    assert_eq!(authority_key.to_string(), key);
    h.get_by_label_contains("Login server 203.0.113.5:7400");
}

/// The engine's periodic figures for a call, with the sound levels the meters show.
fn live_stats(
    h: &mut Window,
    call_id: &str,
    stats: CallStats,
    input_level: f32,
    output_level: f32,
) {
    engine(
        h,
        Event::CallStats {
            call_id: call_id.into(),
            stats,
            input_level,
            output_level,
        },
    );
}

#[test]
fn live_call_stats_drive_the_level_meters_and_the_quality_indicator() {
    let mut h = logged_in();
    h.get_by_label("Call bob").click();
    step(&mut h);
    feed(
        &mut h,
        UiEvent::CallPlaced {
            peer: user("bob"),
            call_id: "c5".into(),
        },
    );
    connected(&mut h, "c5", "bob", PathKind::Relay, 300);
    h.get_by_label("relayed");
    assert_eq!(meter_percent(&h, "Microphone level"), 0.0);
    assert_eq!(meter_percent(&h, "Speaker level"), 0.0);
    assert!(h.query_by_label_contains("Call quality").is_none());

    let stats = |mos: f64, loss_pct: f64| CallStats {
        duration_s: 3.0,
        packets_sent: 150,
        packets_received: 140,
        loss_pct,
        jitter_ms: 4.0,
        rtt_ms: 38.0,
        mos,
    };
    live_stats(&mut h, "c5", stats(4.3, 0.0), 0.5, 0.001);
    // 0.5 is -6 dBFS (90% of a -60 dB meter), 0.001 is -60 dBFS (empty).
    assert_eq!(meter_percent(&h, "Microphone level"), 90.0);
    assert_eq!(meter_percent(&h, "Speaker level"), 0.0);
    h.get_by_label_contains("Call quality excellent (MOS 4.3, loss 0.0%, round trip 38 ms");
    h.get_by_label("MOS 4.3 · loss 0.0% · RTT 38 ms · jitter 4 ms");

    // The next figures replace the last ones; another call's figures are ignored.
    live_stats(&mut h, "c5", stats(2.8, 12.5), 1.0, 0.1);
    live_stats(&mut h, "other", stats(4.4, 0.0), 0.0, 0.0);
    assert_eq!(meter_percent(&h, "Microphone level"), 100.0);
    assert_eq!(meter_percent(&h, "Speaker level"), 67.0);
    h.get_by_label_contains("Call quality poor (MOS 2.8, loss 12.5%");
    h.get_by_label("MOS 2.8 · loss 12.5% · RTT 38 ms · jitter 4 ms");
}

#[test]
fn my_status_message_is_published_and_contacts_messages_are_shown() {
    let mut h = logged_in();
    h.get_by_label("Status message").click();
    step(&mut h);
    h.get_by_label("Status message")
        .type_text("  at lunch, back at 2\u{7}  ");
    step(&mut h);
    h.key_press(egui::Key::Enter);
    assert_eq!(
        actions(&mut h),
        vec![UiAction::SetStatusMessage("at lunch, back at 2".into())]
    );
    // Publishing the same text again asks for nothing.
    h.get_by_label("Status message").click();
    step(&mut h);
    h.key_press(egui::Key::Enter);
    assert_eq!(actions(&mut h), vec![]);

    presence(&mut h, "bob", Status::Busy, "in a meeting".into());
    h.get_by_label("busy · in a meeting");
    h.get_by_label("Chat with bob").click();
    step(&mut h);
    h.get_by_label("bob · busy · \u{201c}in a meeting\u{201d}");
    // A re-read buddy list keeps what presence said; going offline clears the message.
    feed(
        &mut h,
        UiEvent::Contacts {
            contacts: vec![contact("bob", "Bob", Status::Offline)],
            requests: vec![],
        },
    );
    h.get_by_label("busy · in a meeting");
    presence(&mut h, "bob", Status::Offline, "in a meeting".into());
    assert!(h.query_by_label_contains("in a meeting").is_none());
    // In the contact list and the conversation's header.
    assert_eq!(h.query_all_by_label("bob is offline").count(), 2);
}

#[test]
fn add_participant_invites_a_contact_into_the_call() {
    let mut h = logged_in();
    presence(&mut h, "carol", Status::Online, String::new());
    // Only the caller of a connected call hosts a conference.
    assert!(
        h.query_by_role_and_label(Role::Button, "Add participant")
            .is_none()
    );
    h.get_by_label("Call bob").click();
    step(&mut h);
    feed(
        &mut h,
        UiEvent::CallPlaced {
            peer: user("bob"),
            call_id: "c8".into(),
        },
    );
    assert!(
        h.query_by_role_and_label(Role::Button, "Add participant")
            .is_none()
    );
    connected(&mut h, "c8", "bob", PathKind::Direct, 50);
    let _ = actions(&mut h);
    h.get_by_role_and_label(Role::Button, "Add participant")
        .click();
    step(&mut h);
    // bob is already in the call; carol can be added.
    assert!(h.query_by_label("Add bob to the call").is_none());
    h.get_by_label("Add carol to the call").click();
    assert_eq!(
        actions(&mut h),
        vec![UiAction::AddParticipant {
            call_id: "c8".into(),
            user: user("carol"),
        }]
    );
    h.get_by_label_contains("Inviting carol");
    connected(&mut h, "c8", "carol", PathKind::Relay, 400);
    h.get_by_label("In call with bob, carol");
    // Nobody is left to add.
    h.get_by_role_and_label(Role::Button, "Add participant")
        .click();
    step(&mut h);
    h.get_by_label("No other contact to add");
}

/// Keeps the notifications the app shows.
#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<app::ui::notify::DesktopNote>>>);

impl app::ui::notify::Notifier for Recorder {
    fn notify(&mut self, note: app::ui::notify::DesktopNote) {
        self.0.lock().expect("not poisoned").push(note);
    }
}

impl Recorder {
    fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock().expect("not poisoned"))
            .into_iter()
            .map(|n| (n.title, n.body))
            .collect()
    }
}

/// Delivers `event` and draws one frame with the window focused or not.
fn deliver(h: &mut Window, event: Event, focused: bool) {
    let now = h.state().now(&h.ctx);
    h.state_mut().model.handle(now, UiEvent::Engine(event));
    let input = h.input_mut();
    input.focused = focused;
    input
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .focused = Some(focused);
    h.step();
}

#[test]
fn calls_and_messages_notify_the_desktop_only_while_the_window_is_in_the_background() {
    let mut model = UiModel::new();
    model.handle(
        Now::default(),
        UiEvent::Engine(Event::LoggedIn {
            user: user("alice"),
            supernode: None,
        }),
    );
    model.handle(
        Now::default(),
        UiEvent::Contacts {
            contacts: vec![contact("bob", "Bob", Status::Online)],
            requests: vec![],
        },
    );
    let recorder = Recorder::default();
    let mut h = Harness::builder().with_size([960.0, 640.0]).build_ui_state(
        |ui, app: &mut DesktopApp| {
            app.logic_step(ui.ctx());
            app.draw(ui);
        },
        DesktopApp::detached(model, T0_UNIX_MILLIS).with_notifier(Box::new(recorder.clone())),
    );
    let chat = |id: &str| Event::Chat {
        from: user("bob"),
        id: id.into(),
        text: "are you there?".into(),
        sent_at: T0_UNIX_MILLIS,
    };

    deliver(&mut h, chat("m1"), true);
    assert_eq!(recorder.take(), vec![], "a focused window shows it itself");

    deliver(&mut h, chat("m2"), false);
    assert_eq!(
        recorder.take(),
        vec![("Message from Bob".into(), "are you there?".into())]
    );
    deliver(
        &mut h,
        Event::CallIncoming {
            from: user("bob"),
            call_id: "c3".into(),
        },
        false,
    );
    assert_eq!(
        recorder.take(),
        vec![("Incoming call".into(), "Bob is calling".into())]
    );
    // Escape declines the ringing call.
    h.key_press(egui::Key::Escape);
    assert_eq!(
        actions(&mut h),
        vec![UiAction::Decline {
            call_id: "c3".into()
        }]
    );
}

#[test]
fn ctrl_f_focuses_the_search_box_and_enter_searches() {
    let mut h = logged_in();
    assert!(!h.get_by_label("Search contacts").is_focused());
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::F);
    step(&mut h);
    assert!(h.get_by_label("Search contacts").is_focused());
    h.get_by_label("Search contacts").type_text("bo");
    step(&mut h);
    h.key_press(egui::Key::Enter);
    assert_eq!(
        actions(&mut h),
        vec![UiAction::Search { query: "bo".into() }]
    );
}
