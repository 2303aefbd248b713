//! A call through a lossy, reordering, duplicating router: every device of the callee rings,
//! the first answer wins, both sides hold matching media keys; hold, resume, mute, hang-up
//! and a three-way conference.

mod call_sim;

use call_sim::{Sim, end_reason, lossy, user};
use client_core::call::{CallError, CallEvent, CallRole};
use proto::CallId;
use proto::peer::MediaParams;
use std::time::Duration;

#[test]
fn the_first_device_to_answer_wins_and_both_sides_hold_matching_keys() {
    for seed in 0..5 {
        let mut sim = Sim::new(lossy(), seed);
        let alice = sim.add_device("alice");
        let bob_phone = sim.add_device("bob");
        let bob_laptop = sim.add_device("bob");
        let call = CallId([seed as u8; 16]);
        let now = sim.now;
        sim.calls(alice)
            .dial(
                now,
                call,
                user("bob"),
                vec![bob_phone, bob_laptop],
                MediaParams::default(),
            )
            .expect("dial");
        sim.run_for(Duration::from_secs(3));
        assert!(sim.names(bob_phone).contains(&"incoming"), "seed {seed}");
        assert!(sim.names(bob_laptop).contains(&"incoming"), "seed {seed}");
        let ringing: Vec<_> = sim
            .events(alice)
            .iter()
            .filter_map(|(_, e)| match e {
                CallEvent::Ringing { setup, .. } => Some(*setup),
                _ => None,
            })
            .collect();
        assert_eq!(ringing.len(), 1, "one ringing event, seed {seed}");
        assert!(ringing[0] < Duration::from_secs(3));

        // The laptop answers first; the phone answers a moment later and loses.
        let now = sim.now;
        sim.calls(bob_laptop).accept(now, call).expect("accept");
        sim.run_for(Duration::from_millis(5));
        let now = sim.now;
        let _ = sim.calls(bob_phone).accept(now, call);
        sim.run_for(Duration::from_secs(5));

        assert!(
            sim.names(alice).contains(&"connected"),
            "seed {seed}: {:?}",
            sim.names(alice)
        );
        // Whichever acceptance reached alice first won; exactly one device holds keys.
        let with_keys: Vec<_> = [bob_laptop, bob_phone]
            .into_iter()
            .filter(|k| sim.media_keys(*k).is_some())
            .collect();
        assert_eq!(with_keys.len(), 1, "seed {seed}: one winner");
        let (winner, loser) = if with_keys[0] == bob_laptop {
            (bob_laptop, bob_phone)
        } else {
            (bob_phone, bob_laptop)
        };
        let connected_device = sim.events(alice).iter().find_map(|(_, e)| match e {
            CallEvent::Connected { device, .. } => Some(*device),
            _ => None,
        });
        assert_eq!(connected_device, Some(winner));
        let a = sim.media_keys(alice).expect("alice has keys");
        let b = sim.media_keys(winner).expect("winner has keys");
        assert_eq!(*a.send_key, *b.recv_key);
        assert_eq!(*a.recv_key, *b.send_key);
        assert_eq!(a.transcript_hash, b.transcript_hash);
        assert_eq!(a.peer.user, user("bob"));
        assert_eq!(b.peer.user, user("alice"));
        let loser_end = sim.ended(loser);
        assert!(
            matches!(end_reason(loser_end), Some("answered_elsewhere")),
            "seed {seed}: {:?}",
            sim.names(loser)
        );
        let roles: Vec<CallRole> = [alice, winner]
            .iter()
            .filter_map(|k| {
                sim.events(*k).iter().find_map(|(_, e)| match e {
                    CallEvent::Connected { role, .. } => Some(*role),
                    _ => None,
                })
            })
            .collect();
        assert_eq!(roles, vec![CallRole::Caller, CallRole::Callee]);
        assert!(sim.ended(alice).is_none() && sim.ended(winner).is_none());
    }
}

#[test]
fn hold_resume_mute_and_hangup_reach_both_sides() {
    let mut sim = Sim::new(lossy(), 42);
    let alice = sim.add_device("alice");
    let bob = sim.add_device("bob");
    let call = CallId([7; 16]);
    let now = sim.now;
    sim.calls(alice)
        .dial(now, call, user("bob"), vec![bob], MediaParams::default())
        .expect("dial");
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    sim.calls(bob).accept(now, call).expect("accept");
    sim.run_for(Duration::from_secs(3));
    assert!(sim.names(alice).contains(&"connected"));
    assert!(sim.names(bob).contains(&"connected"));

    let now = sim.now;
    sim.calls(alice).set_hold(now, call, true).expect("hold");
    sim.run_for(Duration::from_secs(4));
    let now = sim.now;
    sim.calls(alice).set_hold(now, call, false).expect("resume");
    sim.run_for(Duration::from_secs(4));
    let now = sim.now;
    sim.calls(bob).set_hold(now, call, true).expect("hold");
    sim.run_for(Duration::from_secs(4));
    let now = sim.now;
    sim.calls(bob).set_hold(now, call, false).expect("resume");
    sim.run_for(Duration::from_secs(4));
    sim.calls(alice).set_muted(call, true).expect("mute");
    sim.run_for(Duration::from_secs(1));

    let holds = |sim: &Sim, k| -> Vec<(&'static str, bool)> {
        sim.events(k)
            .iter()
            .filter_map(|(_, e)| match e {
                CallEvent::Held { by_peer, .. } => Some(("held", *by_peer)),
                CallEvent::Resumed { by_peer, .. } => Some(("resumed", *by_peer)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        holds(&sim, alice),
        vec![
            ("held", false),
            ("resumed", false),
            ("held", true),
            ("resumed", true)
        ]
    );
    assert_eq!(
        holds(&sim, bob),
        vec![
            ("held", true),
            ("resumed", true),
            ("held", false),
            ("resumed", false)
        ]
    );
    assert!(sim.names(alice).contains(&"muted"));
    assert!(!sim.names(bob).contains(&"muted"), "mute is local only");

    let now = sim.now;
    sim.calls(bob).hangup(now, call).expect("hangup");
    sim.run_for(Duration::from_secs(5));
    for k in [alice, bob] {
        match sim.ended(k) {
            Some(CallEvent::Ended {
                reason, duration, ..
            }) => {
                assert_eq!(reason.as_str(), "hangup");
                assert!(duration.expect("connected") >= Duration::from_secs(16));
            }
            other => panic!("not ended: {other:?}"),
        }
        assert!(!sim.calls(k).in_call());
    }
}

#[test]
fn the_initiator_adds_participants_to_a_conference_up_to_five() {
    let mut sim = Sim::new(lossy(), 9);
    let alice = sim.add_device("alice");
    let others: Vec<_> = ["bob", "carol", "dave", "erin", "frank"]
        .iter()
        .map(|n| (user(n), sim.add_device(n)))
        .collect();
    let call = CallId([1; 16]);
    let (bob_name, bob) = others[0].clone();
    let now = sim.now;
    sim.calls(alice)
        .dial(
            now,
            call,
            bob_name.clone(),
            vec![bob],
            MediaParams::default(),
        )
        .expect("dial");
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    sim.calls(bob).accept(now, call).expect("accept");
    sim.run_for(Duration::from_secs(3));

    for (i, (name, device)) in others.iter().enumerate().skip(1) {
        let now = sim.now;
        let added = sim
            .calls(alice)
            .add_participant(now, call, name.clone(), vec![*device]);
        if i >= 4 {
            assert_eq!(added, Err(CallError::ConferenceFull));
            continue;
        }
        added.expect("room in the conference");
        sim.run_for(Duration::from_secs(2));
        let conference = sim
            .events(*device)
            .iter()
            .find_map(|(_, e)| match e {
                CallEvent::Incoming { conference, .. } => Some(conference.clone()),
                _ => None,
            })
            .expect("invited");
        let mut expected: Vec<_> = others[..i].iter().map(|(n, _)| n.clone()).collect();
        expected.push(user("alice"));
        let mut got = conference.clone();
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "invitation lists the members");
        let now = sim.now;
        sim.calls(*device).accept(now, call).expect("accept");
        sim.run_for(Duration::from_secs(3));
        assert!(sim.media_keys(*device).is_some());
    }
    let mut members = sim.calls(alice).members(call);
    members.sort();
    let expected: Vec<_> = others[..4].iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(members, expected);
    // Every leg has its own keys.
    let alice_keys: Vec<[u8; 32]> = sim
        .events(alice)
        .iter()
        .filter_map(|(_, e)| match e {
            CallEvent::MediaKeys { keys, .. } => Some(keys.transcript_hash),
            _ => None,
        })
        .collect();
    assert_eq!(alice_keys.len(), 4);
    let now = sim.now;
    sim.calls(alice).hangup(now, call).expect("hangup");
    sim.run_for(Duration::from_secs(5));
    for (_, device) in &others[..4] {
        assert_eq!(end_reason(sim.ended(*device)), Some("hangup"));
    }
}

#[test]
fn candidates_pass_through_once_the_peer_device_is_known() {
    use proto::peer::{Candidate, CandidateKind};
    let mut sim = Sim::new(netsim::ImpairmentConfig::default(), 11);
    let alice = sim.add_device("alice");
    let bob = sim.add_device("bob");
    let call = CallId([11; 16]);
    let now = sim.now;
    sim.calls(alice)
        .dial(now, call, user("bob"), vec![bob], MediaParams::default())
        .expect("dial");
    sim.run_for(Duration::from_millis(10));
    let candidate = Candidate {
        kind: CandidateKind::ServerReflexive,
        addr: "203.0.113.9:4000".parse().expect("addr"),
        priority: 7,
    };
    // The caller does not know which device will answer yet.
    assert_eq!(
        sim.calls(alice).send_candidates(
            call,
            &user("bob"),
            "u".into(),
            "p".into(),
            vec![candidate]
        ),
        Err(CallError::WrongState)
    );
    // The ringing callee knows the caller's device already.
    sim.calls(bob)
        .send_candidates(
            call,
            &user("alice"),
            "uf".into(),
            "pw".into(),
            vec![candidate],
        )
        .expect("candidates");
    sim.run_for(Duration::from_millis(10));
    let got = sim.events(alice).iter().find_map(|(_, e)| match e {
        CallEvent::Candidates {
            ufrag, candidates, ..
        } => Some((ufrag.clone(), candidates.clone())),
        _ => None,
    });
    assert_eq!(got, Some(("uf".to_string(), vec![candidate])));
    assert_eq!(
        sim.calls(bob).send_candidates(
            call,
            &user("alice"),
            "u".into(),
            "p".into(),
            vec![candidate; 17]
        ),
        Err(CallError::TooManyCandidates)
    );
}
