//! The settings page beyond the device pickers, and accessibility, rendered by
//! egui_kittest and driven like a person would: the microphone meter runs while the page
//! is open, the speaker test, noise suppression and echo cancellation switches, the text
//! size (also Ctrl +), the password change and log out; and every control the main
//! screens show carries an accessible name.

mod ui_support;

use app::events::{Event, PathKind, Status};
use app::ui::model::{Prefs, Screen};
use app::ui::{UiAction, UiEvent};
use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use ui_support::{
    Window, actions, alice_logged_in, contact, feed, meter_percent, open_settings, press, step,
    user, window,
};

fn logged_in() -> Window {
    let mut harness = window(
        alice_logged_in(vec![UiEvent::Contacts {
            contacts: vec![contact("bob", "Bob", Status::Online)],
            requests: vec![user("dave")],
        }]),
        [960.0, 900.0],
    );
    step(&mut harness);
    harness
}

/// Scrolls the settings page to a control (at large text it is one long column) and
/// clicks it.
fn scroll_and_click(h: &mut Window, role: Role, label: &str) {
    h.get_by_role_and_label(role, label).scroll_to_me();
    step(h);
    h.get_by_role_and_label(role, label).click();
}

#[test]
fn the_microphone_meter_runs_only_while_settings_are_open() {
    let mut h = logged_in();
    assert_eq!(actions(&mut h), vec![]);
    open_settings(&mut h);
    assert_eq!(actions(&mut h), vec![UiAction::MonitorMicrophone(true)]);
    assert_eq!(meter_percent(&h, "Microphone level"), 0.0);

    feed(&mut h, UiEvent::MicLevel(0.1));
    // 0.1 is -20 dBFS: two thirds of a -60 dB meter.
    assert_eq!(meter_percent(&h, "Microphone level"), 67.0);
    feed(&mut h, UiEvent::MicLevel(0.0));
    assert_eq!(meter_percent(&h, "Microphone level"), 0.0);

    feed(
        &mut h,
        UiEvent::MicUnavailable("no microphone: no device".into()),
    );
    h.get_by_label("no microphone: no device");

    // Closing the page (its × button) stops the meter.
    assert_eq!(
        press(&mut h, "Settings"),
        vec![UiAction::MonitorMicrophone(false)]
    );
    assert!(
        h.query_by_role_and_label(Role::Meter, "Microphone level")
            .is_none()
    );
    // A late level from the stopped meter is ignored.
    feed(&mut h, UiEvent::MicLevel(0.9));
    assert_eq!(h.state().model.mic_level, 0.0);
}

#[test]
fn the_speaker_test_plays_once_until_it_is_done() {
    let mut h = logged_in();
    open_settings(&mut h);
    let _ = actions(&mut h);
    assert_eq!(
        press(&mut h, "Play test sound"),
        vec![UiAction::TestSpeaker]
    );
    let playing = h.get_by_role_and_label(Role::Button, "Playing test sound…");
    assert!(playing.accesskit_node().is_disabled());
    feed(
        &mut h,
        UiEvent::SpeakerTestDone {
            error: Some("no speaker: no device".into()),
        },
    );
    h.get_by_label_contains("Speaker test: no speaker");
    assert!(
        !h.get_by_role_and_label(Role::Button, "Play test sound")
            .accesskit_node()
            .is_disabled()
    );
}

#[test]
fn sound_processing_switches_and_text_size_are_remembered() {
    let mut h = logged_in();
    feed(
        &mut h,
        UiEvent::Prefs(Prefs {
            noise_suppression: true,
            echo_cancellation: true,
            text_scale: 1.2,
        }),
    );
    // The remembered text size scales the whole window.
    assert_eq!(h.ctx.zoom_factor(), 1.2);
    open_settings(&mut h);
    let _ = actions(&mut h);

    scroll_and_click(&mut h, Role::CheckBox, "Noise suppression");
    let expected = Prefs {
        noise_suppression: false,
        echo_cancellation: true,
        text_scale: 1.2,
    };
    assert_eq!(actions(&mut h), vec![UiAction::SetPrefs(expected)]);
    scroll_and_click(&mut h, Role::CheckBox, "Echo cancellation");
    let expected = Prefs {
        echo_cancellation: false,
        ..expected
    };
    assert_eq!(actions(&mut h), vec![UiAction::SetPrefs(expected)]);
    h.get_by_role_and_label(Role::Slider, "Text size");

    // Ctrl + makes text larger and is remembered like the slider.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Plus);
    let sent = actions(&mut h);
    let expected = Prefs {
        text_scale: 1.3,
        ..expected
    };
    assert_eq!(sent, vec![UiAction::SetPrefs(expected)]);
    assert!((h.ctx.zoom_factor() - 1.3).abs() < 0.001);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Minus);
    step(&mut h);
    assert!((h.state().model.prefs.text_scale - 1.2).abs() < 0.001);
}

#[test]
fn the_password_is_changed_from_the_account_section() {
    let mut h = logged_in();
    open_settings(&mut h);
    let _ = actions(&mut h);
    h.get_by_label("Change password").click();
    step(&mut h);

    let type_into = |h: &mut Window, label: &str, text: &str| {
        h.get_by_label(label).click();
        step(h);
        h.get_by_label(label).type_text(text);
        step(h);
    };
    type_into(&mut h, "Current password", "old password 1");
    type_into(&mut h, "New password", "short");
    assert_eq!(press(&mut h, "Change password"), vec![]);
    h.get_by_label("The new password needs at least 8 characters");

    type_into(&mut h, "New password", " but longer now");
    let sent = press(&mut h, "Change password");
    let [UiAction::ChangePassword { old, new }] = sent.as_slice() else {
        panic!("expected one ChangePassword, got {sent:?}");
    };
    assert_eq!(old.0, "old password 1");
    assert_eq!(new.0, "short but longer now");
    // The fields are cleared and the button waits for the answer.
    assert!(h.state().model.account.old_password.is_empty());
    assert!(
        h.get_by_role_and_label(Role::Button, "Changing password…")
            .accesskit_node()
            .is_disabled()
    );

    feed(
        &mut h,
        UiEvent::PasswordChangeFailed("The current password is wrong.".into()),
    );
    h.get_by_label("The current password is wrong.");
    feed(&mut h, UiEvent::PasswordChanged);
    // Said on the page and in a toast.
    assert_eq!(h.query_all_by_label("Password changed").count(), 2);
    assert!(h.query_by_label("The current password is wrong.").is_none());
}

#[test]
fn log_out_returns_to_the_login_screen_and_keeps_the_preferences() {
    let mut h = logged_in();
    feed(
        &mut h,
        UiEvent::Prefs(Prefs {
            text_scale: 1.5,
            ..Prefs::default()
        }),
    );
    open_settings(&mut h);
    let _ = actions(&mut h);
    assert_eq!(
        press(&mut h, "Log out"),
        vec![UiAction::MonitorMicrophone(false), UiAction::LogOut]
    );
    assert_eq!(h.state().model.screen, Screen::Login);
    assert_eq!(h.state().model.prefs.text_scale, 1.5);
    h.get_by_role_and_label(Role::Button, "Create account and sign in");
}

/// Roles a person operates; each must have a name a screen reader can say.
const CONTROL_ROLES: [Role; 9] = [
    Role::Button,
    Role::CheckBox,
    Role::ComboBox,
    Role::TextInput,
    Role::PasswordInput,
    Role::MultilineTextInput,
    Role::Slider,
    Role::Meter,
    Role::Link,
];

fn unnamed_controls(h: &Window) -> (usize, Vec<String>) {
    let mut controls = 0;
    let mut unnamed = Vec::new();
    for node in h.root().children_recursive() {
        let node = node.accesskit_node();
        if !CONTROL_ROLES.contains(&node.role()) {
            continue;
        }
        controls += 1;
        if node.label().is_none_or(|l| l.trim().is_empty()) {
            unnamed.push(format!("{:?} at {:?}", node.role(), node.bounding_box()));
        }
    }
    (controls, unnamed)
}

#[test]
fn every_control_on_the_main_screens_has_an_accessible_name() {
    let mut h = logged_in();
    h.get_by_label("Chat with bob").click();
    step(&mut h);
    let now = h.state().now(&h.ctx);
    let model = &mut h.state_mut().model;
    for event in [
        Event::CallConnected {
            call_id: "c1".into(),
            peer: "bob".parse().expect("valid"),
            path: PathKind::Direct,
            setup_ms: 90,
        },
        Event::CallIncoming {
            from: "dave".parse().expect("valid"),
            call_id: "c2".into(),
        },
    ] {
        model.handle(now, UiEvent::Engine(event));
    }
    step(&mut h);
    let (controls, unnamed) = unnamed_controls(&h);
    assert!(controls >= 10, "only {controls} controls found");
    assert!(unnamed.is_empty(), "controls without a name: {unnamed:?}");

    h.get_by_role_and_label(Role::Button, "Decline").click();
    step(&mut h);
    open_settings(&mut h);
    h.get_by_label("Change password").click();
    step(&mut h);
    let (controls, unnamed) = unnamed_controls(&h);
    assert!(controls >= 15, "only {controls} controls found");
    assert!(unnamed.is_empty(), "controls without a name: {unnamed:?}");
}
