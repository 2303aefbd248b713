//! The real desktop app (model, view, link, `NetworkBackend`, engine) on an embedded local
//! network, driven through its window by egui_kittest: register, find and add a contact,
//! call the echo account (live quality figures and level meters while it runs), hang up,
//! change the password.

mod ui_support;

use app::cli::EchoMode;
use app::login_client;
use app::profile::Profile;
use app::ui::model::{Authorization, CallPhase, NetworkInfo, Screen};
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use proto::DisplayName;
use proto::login::Password;
use ui_support::{Window, close_real_app, local_network, real_app, runtime, step_until, user};

fn type_into(h: &mut Window, label: &str, text: &str) {
    h.get_by_label(label).click();
    h.run_steps(2);
    h.get_by_label(label).type_text(text);
    h.run_steps(2);
}

#[test]
fn register_add_a_contact_call_echo_and_hang_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime();
    let network = local_network(&runtime, dir.path(), |options| {
        options.echo_mode = EchoMode::Live;
    });
    let target = network.target();

    // bob exists in the directory for alice to find.
    let bob_profile = Profile::open(dir.path().join("bob")).expect("bob profile");
    runtime
        .block_on(login_client::register(
            &bob_profile,
            &target,
            &user("bob"),
            &DisplayName::new("Bob Builder").expect("display name"),
            &Password::new("bob's long password").expect("password"),
        ))
        .expect("register bob");

    let info = NetworkInfo {
        login_server: target.addr.to_string(),
        embedded: true,
        echo_user: Some(user("echo")),
    };
    let alice_profile = Profile::open(dir.path().join("alice")).expect("alice profile");
    let (mut h, glue) = real_app(&runtime, alice_profile, target, info, [960.0, 640.0]);

    step_until(&mut h, "the network info", |app| {
        app.model.network.is_some()
    });
    type_into(&mut h, "User name", "alice");
    type_into(&mut h, "Password", "alice's long password");
    h.get_by_role_and_label(Role::Button, "Create account and sign in")
        .click();
    step_until(&mut h, "logged_in", |app| app.model.screen == Screen::Main);
    assert_eq!(h.state().model.me, Some(user("alice")));

    type_into(&mut h, "Search contacts", "bob");
    h.get_by_role_and_label(Role::Button, "Find").click();
    step_until(&mut h, "search results", |app| {
        !app.model.search.pending && !app.model.search.results.is_empty()
    });
    h.get_by_label("Add bob").click();
    step_until(&mut h, "bob on the buddy list", |app| {
        app.model
            .contacts
            .get(&user("bob"))
            .is_some_and(|c| c.authorization == Authorization::Requested)
    });
    h.get_by_label("Chat with bob");

    h.get_by_label_contains("Call the echo test service")
        .click();
    step_until(&mut h, "the echo call to connect", |app| {
        app.model
            .call
            .as_ref()
            .is_some_and(|c| c.phase == CallPhase::Connected)
    });
    h.get_by_label("In call with echo");
    // While the call is up the engine reports live figures: the echo sends back what it
    // hears, so packets arrive and the quality indicator and meters show.
    step_until(&mut h, "live call figures", |app| {
        app.model
            .call
            .as_ref()
            .and_then(|c| c.stats.as_ref())
            .is_some_and(|s| s.packets_received > 0 && s.mos > 0.0)
    });
    h.get_by_label_contains("Call quality");
    h.get_by_role_and_label(Role::Meter, "Microphone level");
    h.get_by_role_and_label(Role::Meter, "Speaker level");
    h.get_by_role_and_label(Role::Button, "Hang up").click();
    step_until(&mut h, "the call to end", |app| {
        app.model.call.is_none()
            && app
                .model
                .last_call
                .as_ref()
                .is_some_and(|c| c.peer == user("echo"))
    });

    // The password changes at the login server; the session goes on with a fresh
    // credential and the new password logs in.
    h.get_by_role_and_label(Role::Button, "Settings").click();
    h.run_steps(3);
    // The settings window takes a few frames to appear (egui sizes it invisibly first);
    // events from the network keep repainting meanwhile.
    for attempt in 0..40 {
        if h.query_by_label("Current password").is_some() {
            break;
        }
        // A click lands once the window takes input; another only long after it, so a
        // slowly opening section is not closed again.
        if attempt % 10 == 0
            && let Some(header) = h.query_by_label("Change password")
        {
            header.click();
        }
        h.run_steps(3);
    }
    type_into(&mut h, "Current password", "alice's long password");
    type_into(&mut h, "New password", "alice's new password");
    h.get_by_role_and_label(Role::Button, "Change password")
        .click();
    step_until(&mut h, "the password change", |app| {
        app.model.account.notice.is_some() || app.model.account.error.is_some()
    });
    assert_eq!(h.state().model.account.error, None);
    step_until(&mut h, "the session to restart", |app| {
        app.model.screen == Screen::Main && app.model.me == Some(user("alice"))
    });
    let check = Profile::open(dir.path().join("alice-check")).expect("profile");
    runtime
        .block_on(login_client::login(
            &check,
            &target,
            &user("alice"),
            &Password::new("alice's new password").expect("password"),
        ))
        .expect("the new password logs in");

    close_real_app(&runtime, h, glue, network);
}
