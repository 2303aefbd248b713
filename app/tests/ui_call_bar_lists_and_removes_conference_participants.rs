//! The call bar of a conference this device hosts, rendered by egui_kittest: each
//! participant is listed with a "Remove" control that asks the engine to drop them, and the
//! list follows the engine's `call_participant_joined` / `call_participant_left`.

mod ui_support;

use app::events::{EndReason, Event, PathKind, Status};
use app::ui::{Now, UiAction, UiEvent};
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use ui_support::{Window, actions, alice_logged_in, connected, engine, press, step, user, window};

fn contact(name: &str) -> app::ui::model::ContactEntry {
    ui_support::contact(name, &name.to_uppercase(), Status::Online)
}

/// A window logged in as alice with bob, carol and dave online.
fn logged_in() -> Window {
    window(
        alice_logged_in(vec![UiEvent::Contacts {
            contacts: vec![contact("bob"), contact("carol"), contact("dave")],
            requests: vec![],
        }]),
        [960.0, 640.0],
    )
}

fn remove_button(name: &str) -> String {
    format!("Remove {name} from the call")
}

#[test]
fn the_host_removes_participants_and_those_who_leave_disappear() {
    let mut h = logged_in();
    h.get_by_label("Call bob").click();
    step(&mut h);
    h.state_mut().model.handle(
        Now::default(),
        UiEvent::CallPlaced {
            peer: user("bob"),
            call_id: "c9".into(),
        },
    );
    connected(&mut h, "c9", "bob", PathKind::Direct, 50);
    let _ = actions(&mut h);
    // A two-party call lists nobody: hanging up is how bob goes.
    assert!(h.query_by_label(&remove_button("bob")).is_none());

    for invitee in ["carol", "dave"] {
        h.get_by_role_and_label(Role::Button, "Add participant")
            .click();
        step(&mut h);
        h.get_by_label(&format!("Add {invitee} to the call"))
            .click();
        assert_eq!(
            actions(&mut h),
            vec![UiAction::AddParticipant {
                call_id: "c9".into(),
                user: user(invitee),
            }]
        );
        engine(
            &mut h,
            Event::CallParticipantJoined {
                call_id: "c9".into(),
                user: user(invitee),
            },
        );
    }
    h.get_by_label("In call with bob, carol, dave");
    for name in ["bob", "carol", "dave"] {
        h.get_by_role_and_label(Role::Button, &remove_button(name));
    }

    // Removing asks the engine; carol stays listed until her leg has ended.
    assert_eq!(
        press(&mut h, &remove_button("carol")),
        vec![UiAction::RemoveParticipant {
            call_id: "c9".into(),
            user: user("carol"),
        }]
    );
    h.get_by_label(&remove_button("carol"));
    engine(
        &mut h,
        Event::CallParticipantLeft {
            call_id: "c9".into(),
            user: user("carol"),
            reason: EndReason::Hangup,
        },
    );
    assert!(h.query_by_label(&remove_button("carol")).is_none());
    h.get_by_label("In call with bob, dave");

    // Bob, the first to answer, hangs up on his own: dave takes over the title and the
    // call goes on as an ordinary one, with no list left.
    engine(
        &mut h,
        Event::CallParticipantLeft {
            call_id: "c9".into(),
            user: user("bob"),
            reason: EndReason::Hangup,
        },
    );
    h.get_by_label("In call with dave");
    assert!(h.query_by_label(&remove_button("bob")).is_none());
    assert!(h.query_by_label(&remove_button("dave")).is_none());
    h.get_by_label_contains("bob left the call");
    // Carol can be invited again.
    h.get_by_role_and_label(Role::Button, "Add participant")
        .click();
    step(&mut h);
    h.get_by_label("Add carol to the call");
}
