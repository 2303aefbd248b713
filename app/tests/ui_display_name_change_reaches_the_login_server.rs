//! The account section of the settings page changes the display name: the field checks
//! the registration rules before sending, shows the server's answer, and (on the real app
//! over an embedded local network) the login server's search finds the user by the new
//! name afterwards.

mod ui_support;

use app::login_client;
use app::profile::Profile;
use app::ui::model::{NetworkInfo, Screen};
use app::ui::{UiAction, UiEvent};
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use proto::DisplayName;
use proto::login::Password;
use ui_support::{
    Window, alice_logged_in, close_real_app, feed, local_network, real_app, runtime, step_until,
    user, window,
};

fn open_account_section(h: &mut Window) {
    h.get_by_role_and_label(Role::Button, "Settings").click();
    h.run_steps(4);
    h.get_by_label("Display name").scroll_to_me();
    h.run_steps(2);
}

fn type_display_name(h: &mut Window, text: &str) {
    h.state_mut().model.account.display_name.name.clear();
    h.get_by_label("Display name").click();
    h.run_steps(2);
    h.get_by_label("Display name").type_text(text);
    h.run_steps(2);
}

#[test]
fn the_display_name_field_checks_the_rules_and_shows_the_answer() {
    let mut h = window(alice_logged_in(vec![]), [960.0, 900.0]);
    h.run_steps(4);
    open_account_section(&mut h);

    // A control character breaks the registration rules: refused here, nothing sent.
    type_display_name(&mut h, "Alice\u{7}");
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.run_steps(4);
    h.get_by_label("The display name cannot contain control or invisible characters");
    assert!(
        !h.state_mut()
            .take_sent_actions()
            .iter()
            .any(|a| matches!(a, UiAction::SetDisplayName { .. }))
    );

    type_display_name(&mut h, "  Alice Liddell ");
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.run_steps(4);
    let sent: Vec<UiAction> = h
        .state_mut()
        .take_sent_actions()
        .into_iter()
        .filter(|a| matches!(a, UiAction::SetDisplayName { .. }))
        .collect();
    let [UiAction::SetDisplayName { display_name }] = sent.as_slice() else {
        panic!("expected one SetDisplayName, got {sent:?}");
    };
    assert_eq!(display_name, "Alice Liddell");
    assert!(
        h.query_by_label("The display name cannot contain control or invisible characters")
            .is_none()
    );
    h.get_by_role_and_label(Role::Button, "Saving…");

    feed(
        &mut h,
        UiEvent::DisplayNameChangeFailed(
            "Too many display-name changes. Try again in 60 s.".into(),
        ),
    );
    h.get_by_label("Too many display-name changes. Try again in 60 s.");
    h.get_by_role_and_label(Role::Button, "Save");

    feed(&mut h, UiEvent::DisplayNameChanged("Alice Liddell".into()));
    h.get_by_label("Display name changed to Alice Liddell");
    assert!(
        h.query_by_label("Too many display-name changes. Try again in 60 s.")
            .is_none()
    );
}

#[test]
fn a_new_display_name_is_found_by_search_at_the_login_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime();
    let network = local_network(&runtime, dir.path(), |_| {});
    let target = network.target();

    // Both accounts exist; alice's profile holds her credential, so the app signs in by
    // itself; bob searches at the login server afterwards.
    let password = Password::new("a long enough password").expect("password");
    let mut profiles = Vec::new();
    for (name, shown) in [("alice", "Alice"), ("bob", "Bob")] {
        let profile = Profile::open(dir.path().join(name)).expect("profile");
        runtime
            .block_on(login_client::register(
                &profile,
                &target,
                &user(name),
                &DisplayName::new(shown).expect("display name"),
                &password,
            ))
            .expect("register");
        profiles.push(profile);
    }
    let bob_profile = profiles.pop().expect("bob");
    let alice_profile = profiles.pop().expect("alice");

    let info = NetworkInfo {
        login_server: target.addr.to_string(),
        embedded: true,
        echo_user: None,
    };
    let (mut h, glue) = real_app(&runtime, alice_profile, target, info, [960.0, 900.0]);
    step_until(&mut h, "the resumed session", |app| {
        app.model.screen == Screen::Main
    });

    open_account_section(&mut h);
    type_display_name(&mut h, "Xenia Nova");
    h.get_by_role_and_label(Role::Button, "Save").click();
    step_until(&mut h, "the display-name change", |app| {
        let form = &app.model.account.display_name;
        !form.busy && (form.notice.is_some() || form.error.is_some())
    });
    assert_eq!(h.state().model.account.display_name.error, None);
    h.get_by_label("Display name changed to Xenia Nova");

    runtime.block_on(async {
        let credential = login_client::login(&bob_profile, &target, &user("bob"), &password)
            .await
            .expect("bob logs in");
        let conn = login_client::connect(&bob_profile, &target)
            .await
            .expect("connect");
        let found = conn.search(&credential, "xenia", 10).await.expect("search");
        assert_eq!(
            found
                .iter()
                .map(|u| (u.user.to_string(), u.display_name.to_string()))
                .collect::<Vec<_>>(),
            vec![("alice".to_string(), "Xenia Nova".to_string())]
        );
        assert!(
            conn.search(&credential, "alice", 10)
                .await
                .expect("search")
                .iter()
                .all(|u| u.display_name.as_str() == "Xenia Nova"),
            "the old name is gone"
        );
        conn.close();
    });

    close_real_app(&runtime, h, glue, network);
}
