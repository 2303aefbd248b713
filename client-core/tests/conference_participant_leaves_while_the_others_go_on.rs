//! A conference host drops one participant (`hangup_leg`): that participant's call ends
//! `hangup`, the other leg stays connected and still carries hold; the host's own hang-up
//! then ends the rest.

mod call_sim;

use call_sim::{Sim, end_reason, lossy, user};
use client_core::call::{CallError, CallEvent};
use proto::CallId;
use proto::peer::MediaParams;
use std::time::Duration;

#[test]
fn dropping_one_participant_leaves_the_others_connected() {
    let mut sim = Sim::new(lossy(), 21);
    let alice = sim.add_device("alice");
    let bob = sim.add_device("bob");
    let carol = sim.add_device("carol");
    let call = CallId([21; 16]);
    let now = sim.now;
    sim.calls(alice)
        .dial(now, call, user("bob"), vec![bob], MediaParams::default())
        .expect("dial");
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    sim.calls(bob).accept(now, call).expect("bob answers");
    sim.run_for(Duration::from_secs(3));
    let now = sim.now;
    sim.calls(alice)
        .add_participant(now, call, user("carol"), vec![carol])
        .expect("room for carol");
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    sim.calls(carol).accept(now, call).expect("carol answers");
    sim.run_for(Duration::from_secs(3));
    assert!(
        sim.names(carol).contains(&"connected"),
        "{:?}",
        sim.names(carol)
    );

    let now = sim.now;
    sim.calls(alice)
        .hangup_leg(now, call, &user("bob"))
        .expect("bob is in the call");
    sim.run_for(Duration::from_secs(5));
    assert_eq!(end_reason(sim.ended(bob)), Some("hangup"));
    assert_eq!(end_reason(sim.ended(carol)), None, "carol stays");
    let host_ended: Vec<_> = sim
        .events(alice)
        .iter()
        .filter_map(|(_, e)| match e {
            CallEvent::Ended { peer, .. } => Some(peer.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(host_ended, vec![user("bob")], "only bob's leg ended");
    assert!(sim.calls(alice).in_call());
    assert_eq!(
        sim.calls(alice).hangup_leg(now, call, &user("bob")),
        Err(CallError::UnknownCall),
        "bob already left"
    );

    // The remaining leg still works: hold reaches carol.
    let now = sim.now;
    sim.calls(alice).set_hold(now, call, true).expect("hold");
    sim.run_for(Duration::from_secs(2));
    assert!(
        sim.events(carol)
            .iter()
            .any(|(_, e)| matches!(e, CallEvent::Held { by_peer: true, .. })),
        "{:?}",
        sim.names(carol)
    );

    let now = sim.now;
    sim.calls(alice)
        .hangup(now, call)
        .expect("hang up the rest");
    sim.run_for(Duration::from_secs(5));
    assert_eq!(end_reason(sim.ended(carol)), Some("hangup"));
    assert!(!sim.calls(alice).in_call());
}

#[test]
fn only_leg_ending_transmits_are_marked_for_a_second_path() {
    let mut sim = Sim::new(netsim::ImpairmentConfig::default(), 22);
    let alice = sim.add_device("alice");
    let bob = sim.add_device("bob");
    let call = CallId([22; 16]);
    let now = sim.now;
    sim.calls(alice)
        .dial(now, call, user("bob"), vec![bob], MediaParams::default())
        .expect("dial");
    let invite = sim.calls(alice).poll_transmit().expect("an invitation");
    assert!(!sim.calls(alice).ends_a_leg(invite.token));
    sim.run_for(Duration::from_secs(1));
    let now = sim.now;
    sim.calls(bob).accept(now, call).expect("bob answers");
    sim.run_for(Duration::from_secs(1));
    let now = sim.now;
    sim.calls(alice).set_hold(now, call, true).expect("hold");
    let hold = sim.calls(alice).poll_transmit().expect("a hold");
    assert!(
        !sim.calls(alice).ends_a_leg(hold.token),
        "hold is order-sensitive"
    );
    sim.calls(alice).hangup(now, call).expect("hang up");
    let hangup = sim.calls(alice).poll_transmit().expect("a hang-up");
    assert!(sim.calls(alice).ends_a_leg(hangup.token));
}
