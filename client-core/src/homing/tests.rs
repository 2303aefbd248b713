use super::*;
use proto::{Credential, DisplayName, SecretKey, UnixTime};

fn contact(i: u8) -> SupernodeContact {
    SupernodeContact {
        key: SecretKey::from_bytes(&[i; 32]).public(),
        addr: format!("192.0.2.{i}:7500").parse().expect("addr"),
    }
}

fn credential() -> SignedCredential {
    let authority = SecretKey::from_bytes(&[200; 32]);
    SignedCredential::issue(
        &Credential {
            serial: 1,
            user: UserName::new("alice").expect("valid"),
            display_name: DisplayName::new("Alice").expect("valid"),
            device_key: SecretKey::from_bytes(&[201; 32]).public(),
            issued_at: UnixTime::from_secs(0),
            expires_at: UnixTime::from_secs(u64::MAX / 2),
        },
        &authority,
    )
}

fn cache(n: u8) -> HostCache {
    let mut cache = HostCache::new();
    for i in 1..=n {
        cache.insert(contact(i));
    }
    cache
}

fn drain(h: &mut Homing) -> Vec<Transmit> {
    std::iter::from_fn(|| h.poll_transmit()).collect()
}

fn events(h: &mut Homing) -> Vec<HomingEvent> {
    std::iter::from_fn(|| h.poll_event()).collect()
}

fn welcome(from: &SupernodeContact) -> SupernodeToClient {
    SupernodeToClient::Welcome {
        version: proto::PROTOCOL_VERSION,
        supernode: from.key,
        keepalive_secs: 25,
        host_cache: vec![],
    }
}

/// Answers every ping in `sent` after the RTT `rtt_of(supernode)`; `None` = dead.
fn answer_pings(
    h: &mut Homing,
    sent: &[Transmit],
    at: Instant,
    rtt_of: impl Fn(&SupernodeContact) -> Option<u64>,
) {
    let mut answers: Vec<(Instant, SupernodeContact, u64)> = sent
        .iter()
        .filter_map(|t| match t.message {
            ClientToSupernode::Ping { nonce } => {
                rtt_of(&t.to).map(|rtt| (at + Duration::from_millis(rtt), t.to, nonce))
            }
            _ => None,
        })
        .collect();
    answers.sort_by_key(|a| a.0);
    for (when, from, nonce) in answers {
        h.handle_message(
            when,
            from.key,
            SupernodeToClient::Pong {
                nonce,
                load_percent: 0,
            },
        );
    }
}

fn home_via_probes(seed: u64, t0: Instant) -> (Homing, SupernodeContact) {
    let mut h = Homing::new(
        HomingConfig::default(),
        credential(),
        Presence::new(proto::supernode::PresenceStatus::Online),
        cache(4),
        seed,
        t0,
    );
    let probes = drain(&mut h);
    assert_eq!(
        probes.len(),
        4,
        "probes every cached supernode up to the fanout"
    );
    // Supernode 3 is nearest, then 1; the others are far.
    answer_pings(&mut h, &probes, t0, |c| {
        Some(match c.addr.to_string().as_str() {
            "192.0.2.3:7500" => 10,
            "192.0.2.1:7500" => 100,
            _ => 300,
        })
    });
    let hello = drain(&mut h);
    let target = hello
        .iter()
        .find(|t| matches!(t.message, ClientToSupernode::Hello { .. }))
        .expect("hello sent")
        .to;
    h.handle_message(
        t0 + Duration::from_millis(500),
        target.key,
        welcome(&target),
    );
    (h, target)
}

#[test]
fn the_home_is_the_lowest_rtt_supernode_and_the_next_best_is_standby() {
    let t0 = Instant::now();
    let (mut h, home) = home_via_probes(1, t0);
    assert_eq!(home, contact(3));
    assert_eq!(h.home(), Some(contact(3)));
    assert_eq!(h.standby(), Some(contact(1)));
    assert!(events(&mut h).contains(&HomingEvent::Homed {
        supernode: contact(3)
    }));
    assert!(
        h.host_cache()
            .entry(&contact(3).key)
            .and_then(|e| e.rtt_millis)
            .is_some()
    );
}

#[test]
fn keepalives_flow_and_a_dead_home_is_noticed_within_ten_seconds() {
    let t0 = Instant::now();
    let (mut h, home) = home_via_probes(2, t0);
    events(&mut h);
    let homed_at = t0 + Duration::from_millis(500);
    // Alive for a minute: pings at most 25 s apart, each answered.
    let mut now = homed_at;
    let mut last_ping = homed_at;
    let mut max_gap = Duration::ZERO;
    while now < homed_at + Duration::from_secs(60) {
        now = h.poll_timeout().expect("armed").max(now);
        h.handle_timeout(now);
        let sent = drain(&mut h);
        for t in &sent {
            if matches!(t.message, ClientToSupernode::Ping { .. }) && t.to == home {
                max_gap = max_gap.max(now - last_ping);
                last_ping = now;
            }
        }
        answer_pings(&mut h, &sent, now, |_| Some(20));
    }
    assert!(max_gap > Duration::ZERO && max_gap <= Duration::from_secs(25));
    assert_eq!(h.home(), Some(home));
    // The home dies right after its last answer.
    let died = now;
    let mut lost_at = None;
    while lost_at.is_none() && now < died + Duration::from_secs(30) {
        now = h.poll_timeout().expect("armed").max(now);
        h.handle_timeout(now);
        let sent = drain(&mut h);
        answer_pings(&mut h, &sent, now, |c| (*c != home).then_some(20));
        if events(&mut h)
            .iter()
            .any(|e| matches!(e, HomingEvent::Lost { .. }))
        {
            lost_at = Some(now);
        }
    }
    let lost_at = lost_at.expect("loss noticed");
    assert!(
        lost_at - died <= Duration::from_secs(10),
        "{:?}",
        lost_at - died
    );
    // It re-homes at the standby first.
    let mut now = lost_at;
    for _ in 0..10 {
        now = h.poll_timeout().expect("armed").max(now);
        h.handle_timeout(now);
        let sent = drain(&mut h);
        if let Some(hello) = sent
            .iter()
            .find(|t| matches!(t.message, ClientToSupernode::Hello { .. }))
        {
            assert_eq!(hello.to, contact(1), "the standby is tried first");
            assert!(now - lost_at <= HomingConfig::default().rehome_jitter);
            h.handle_message(now, hello.to.key, welcome(&hello.to));
            break;
        }
    }
    assert_eq!(h.home(), Some(contact(1)));
}

#[test]
fn rehoming_is_jittered_and_backs_off_exponentially() {
    let t0 = Instant::now();
    let mut first_attempts = Vec::new();
    for seed in 0..20 {
        let (mut h, home) = home_via_probes(seed, t0);
        let now = t0 + Duration::from_secs(1);
        h.handle_connection_failed(now, home.key);
        let retry_at = h.poll_timeout().expect("armed");
        first_attempts.push(retry_at - now);
        // Every further attempt fails: the delays grow (capped) rather than hammering.
        let mut at = retry_at;
        let mut delays = Vec::new();
        for _ in 0..8 {
            h.handle_timeout(at);
            let sent = drain(&mut h);
            let Some(hello) = sent
                .iter()
                .find(|t| matches!(t.message, ClientToSupernode::Hello { .. }))
            else {
                at = h.poll_timeout().expect("armed");
                continue;
            };
            h.handle_connection_failed(at, hello.to.key);
            let next = h.poll_timeout().expect("armed");
            delays.push(next - at);
            at = next;
        }
        let total: Duration = delays.iter().sum();
        assert!(total > Duration::from_secs(2), "backs off: {delays:?}");
        assert!(
            delays
                .iter()
                .all(|d| *d <= HomingConfig::default().backoff_max)
        );
    }
    first_attempts.sort();
    first_attempts.dedup();
    assert!(first_attempts.len() >= 15, "spread out: {first_attempts:?}");
    assert!(first_attempts.iter().all(|d| *d <= Duration::from_secs(1)));
}

#[test]
fn a_busy_supernode_sends_the_client_to_an_alternative() {
    let t0 = Instant::now();
    let mut h = Homing::new(
        HomingConfig::default(),
        credential(),
        Presence::offline(),
        cache(1),
        7,
        t0,
    );
    let probes = drain(&mut h);
    answer_pings(&mut h, &probes, t0, |_| Some(5));
    let hello = drain(&mut h);
    assert_eq!(hello[0].to, contact(1));
    h.handle_message(
        t0 + Duration::from_millis(10),
        contact(1).key,
        SupernodeToClient::Busy {
            alternatives: vec![contact(9)],
        },
    );
    let next = drain(&mut h);
    assert!(
        next.iter()
            .any(|t| t.to == contact(9) && matches!(t.message, ClientToSupernode::Hello { .. })),
        "{next:?}"
    );
}

#[test]
fn contact_lists_are_replayed_on_every_new_home() {
    let t0 = Instant::now();
    let (mut h, home) = home_via_probes(3, t0);
    let bob = UserName::new("bob").expect("valid");
    h.set_authorized(vec![bob.clone()]);
    h.set_watch(vec![bob.clone()]);
    let sent = drain(&mut h);
    assert!(sent.iter().all(|t| t.to == home));
    assert_eq!(sent.len(), 2);
    let now = t0 + Duration::from_secs(2);
    h.handle_message(
        now,
        home.key,
        SupernodeToClient::Goodbye {
            reason: GoodbyeReason::ShuttingDown,
        },
    );
    assert_eq!(h.home(), None);
    assert_eq!(h.search(SearchQuery::Exact(bob.clone())), Err(NotHomed));
    let at = h.poll_timeout().expect("armed");
    h.handle_timeout(at);
    let hello = drain(&mut h);
    let target = hello[0].to;
    h.handle_message(at, target.key, welcome(&target));
    let replay = drain(&mut h);
    assert!(replay.contains(&Transmit {
        to: target,
        message: ClientToSupernode::SetAuthorized {
            contacts: vec![bob.clone()]
        }
    }));
    assert!(replay.contains(&Transmit {
        to: target,
        message: ClientToSupernode::Watch {
            contacts: vec![bob]
        }
    }));
}

#[test]
fn a_refused_credential_stops_homing_until_a_new_one_arrives() {
    let t0 = Instant::now();
    let mut h = Homing::new(
        HomingConfig::default(),
        credential(),
        Presence::offline(),
        cache(2),
        9,
        t0,
    );
    let probes = drain(&mut h);
    answer_pings(&mut h, &probes, t0, |_| Some(5));
    let hello = drain(&mut h);
    h.handle_message(
        t0,
        hello[0].to.key,
        SupernodeToClient::Error {
            code: ErrorCode::CredentialRefused {
                reason: "expired".into(),
            },
        },
    );
    assert!(
        events(&mut h)
            .iter()
            .any(|e| matches!(e, HomingEvent::Refused { .. }))
    );
    assert_eq!(h.poll_timeout(), None);
    h.set_credential(t0, credential());
    assert!(!drain(&mut h).is_empty());
}

// ---------------------------------------------------------------- parking ------------

const PARK_KEY: [u8; 32] = [8; 32];
const TOKEN: ParkToken = ParkToken([4; 16]);

fn server_seal(kind: ParkKind, counter: u64) -> Vec<u8> {
    park::seal(&ParkKey::from_exporter(PARK_KEY), kind, TOKEN, counter)
}

/// Homes, then parks at `t`; returns the homing, its home and when it parked.
fn parked(seed: u64, t0: Instant) -> (Homing, SupernodeContact, Instant) {
    let (mut h, home) = home_via_probes(seed, t0);
    drain(&mut h);
    events(&mut h);
    let t = t0 + Duration::from_secs(1);
    h.handle_park_key(home.key, ParkKey::from_exporter(PARK_KEY));
    h.handle_message(t, home.key, SupernodeToClient::ParkOffer { token: TOKEN });
    let sent = drain(&mut h);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, home);
    assert_eq!(
        sent[0].message,
        ClientToSupernode::ParkAccept { token: TOKEN }
    );
    h.handle_message(t, home.key, SupernodeToClient::Parked { token: TOKEN });
    let standby = h.standby().expect("a standby");
    assert_eq!(
        events(&mut h),
        vec![
            HomingEvent::Disconnect { supernode: home },
            HomingEvent::Disconnect { supernode: standby }
        ],
        "the connections to the home and the standby may close"
    );
    assert!(h.is_parked());
    assert_eq!(h.home(), Some(home));
    (h, home, t)
}

/// Runs timers from `from` to `to` in 100 ms steps, answering each heartbeat with `answer`
/// (or not at all); returns the heartbeats sent.
fn run_parked(
    h: &mut Homing,
    from: Instant,
    to: Instant,
    mut answer: impl FnMut(u64) -> Option<Vec<u8>>,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut sent = Vec::new();
    let mut now = from;
    while now < to {
        now = (now + Duration::from_millis(100)).min(to);
        h.handle_timeout(now);
        while let Some((addr, datagram)) = h.poll_datagram() {
            let counter = park::decode_header(&datagram)
                .expect("a park datagram")
                .counter;
            if let Some(reply) = answer(counter) {
                h.handle_datagram(now, addr, &reply);
            }
            sent.push((addr, datagram));
        }
    }
    sent
}

#[test]
fn a_parked_session_heartbeats_instead_of_pinging_and_stays_homed() {
    let t0 = Instant::now();
    let (mut h, home, t) = parked(1, t0);
    let mut acks = 0;
    let sent = run_parked(&mut h, t, t + Duration::from_secs(60), |_| {
        acks += 1;
        Some(server_seal(ParkKind::HeartbeatAck, acks))
    });
    assert!(
        drain(&mut h)
            .iter()
            .all(|tx| !matches!(tx.message, ClientToSupernode::Ping { .. })),
        "no pings to the parked home or the standby: no connection is needed"
    );
    let interval = HomingConfig::default().keepalive_interval.as_secs();
    assert!(
        sent.len() as u64 >= 60 / interval - 1,
        "{} heartbeats",
        sent.len()
    );
    let mut window = ReplayWindow::default();
    for (addr, datagram) in &sent {
        assert_eq!(*addr, home.addr, "to the supernode's QUIC port");
        let header = park::open(
            &ParkKey::from_exporter(PARK_KEY),
            TOKEN,
            ParkDirection::ClientToSupernode,
            &mut window,
            datagram,
        )
        .expect("a heartbeat opens under the park key");
        assert_eq!(header.kind, ParkKind::Heartbeat);
    }
    assert!(h.is_parked());
    assert!(
        !events(&mut h)
            .iter()
            .any(|e| matches!(e, HomingEvent::Lost { .. })),
        "the parked home is not lost"
    );
}

#[test]
fn a_wake_resumes_on_a_new_connection_and_replayed_or_forged_wakes_do_not() {
    let t0 = Instant::now();
    let (mut h, home, t) = parked(2, t0);
    let wake = server_seal(ParkKind::Wake, 1);
    let forged = park::seal(&ParkKey::from_exporter([9; 32]), ParkKind::Wake, TOKEN, 2);
    h.handle_datagram(t, home.addr, &forged);
    assert!(drain(&mut h).is_empty(), "a forged wake is ignored");
    h.handle_datagram(t, home.addr, &wake);
    let sent = drain(&mut h);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, home);
    let ClientToSupernode::Resume { token, proof } = &sent[0].message else {
        panic!("expected Resume, got {:?}", sent[0].message);
    };
    assert_eq!(*token, TOKEN);
    let mut window = ReplayWindow::default();
    park::open(
        &ParkKey::from_exporter(PARK_KEY),
        TOKEN,
        ParkDirection::ClientToSupernode,
        &mut window,
        proof,
    )
    .expect("the proof opens under the park key");
    h.handle_message(t, home.key, SupernodeToClient::Resumed);
    assert!(!h.is_parked());
    assert_eq!(h.home(), Some(home));
    h.handle_message(
        t,
        home.key,
        SupernodeToClient::PresenceChanged {
            user: UserName::new("bob").expect("valid"),
            presence: Presence::new(proto::supernode::PresenceStatus::Away),
        },
    );
    assert!(matches!(
        events(&mut h)[..],
        [HomingEvent::Message(
            SupernodeToClient::PresenceChanged { .. }
        )]
    ));

    // Parked again: the recorded wake of the first park does not wake it.
    h.handle_park_key(home.key, ParkKey::from_exporter(PARK_KEY));
    h.handle_message(t, home.key, SupernodeToClient::ParkOffer { token: TOKEN });
    h.handle_message(t, home.key, SupernodeToClient::Parked { token: TOKEN });
    drain(&mut h);
    // A new park starts a new window, so the replay is of this park's own wake.
    let second = server_seal(ParkKind::Wake, 1);
    h.handle_datagram(t, home.addr, &second);
    h.handle_message(t, home.key, SupernodeToClient::Resumed);
    drain(&mut h);
    h.handle_park_key(home.key, ParkKey::from_exporter(PARK_KEY));
    h.handle_message(t, home.key, SupernodeToClient::ParkOffer { token: TOKEN });
    h.handle_message(t, home.key, SupernodeToClient::Parked { token: TOKEN });
    drain(&mut h);
    h.handle_datagram(t, home.addr, &second);
    h.handle_datagram(t, home.addr, &second);
    let sent = drain(&mut h);
    assert_eq!(sent.len(), 1, "one resume for a wake delivered twice");
}

#[test]
fn what_the_app_sends_while_parked_waits_for_the_resume() {
    let t0 = Instant::now();
    let (mut h, home, t) = parked(3, t0);
    h.set_presence(Presence::new(proto::supernode::PresenceStatus::Busy));
    let id = h
        .route(UserName::new("bob").expect("valid"), None, vec![1, 2])
        .expect("homed while parked");
    let sent = drain(&mut h);
    assert!(
        matches!(sent[..], [Transmit { message: ClientToSupernode::Resume { .. }, to }] if to == home),
        "{sent:?}"
    );
    h.handle_message(
        t + Duration::from_millis(50),
        home.key,
        SupernodeToClient::Resumed,
    );
    let sent: Vec<ClientToSupernode> = drain(&mut h).into_iter().map(|t| t.message).collect();
    assert!(matches!(
        &sent[..],
        [ClientToSupernode::SetPresence { .. }, ClientToSupernode::Route { id: r, .. }] if *r == id
    ));
}

#[test]
fn a_silent_supernode_is_noticed_while_parked_and_the_client_rehomes() {
    let t0 = Instant::now();
    let (mut h, home, t) = parked(4, t0);
    let dead_after = HomingConfig::default().dead_after;
    run_parked(
        &mut h,
        t,
        t + dead_after + Duration::from_millis(200),
        |_| None,
    );
    let seen = events(&mut h);
    assert!(
        seen.contains(&HomingEvent::Lost { supernode: home }),
        "{seen:?}"
    );
    assert!(!h.is_parked());
    // Re-homing goes on as it does for a live session.
    let mut now = t + dead_after + Duration::from_millis(200);
    let mut hello_to = None;
    for _ in 0..50 {
        now += Duration::from_millis(100);
        h.handle_timeout(now);
        if let Some(tx) = drain(&mut h)
            .into_iter()
            .find(|t| matches!(t.message, ClientToSupernode::Hello { .. }))
        {
            hello_to = Some(tx.to);
            break;
        }
    }
    assert!(hello_to.is_some_and(|to| to != home), "re-homes elsewhere");
}

#[test]
fn a_refused_resume_homes_again_with_the_credential() {
    let t0 = Instant::now();
    let (mut h, home, t) = parked(5, t0);
    h.handle_datagram(t, home.addr, &server_seal(ParkKind::Wake, 1));
    drain(&mut h);
    h.handle_message(
        t,
        home.key,
        SupernodeToClient::Error {
            code: ErrorCode::NotAuthenticated,
        },
    );
    let sent = drain(&mut h);
    assert!(
        matches!(sent[..], [Transmit { message: ClientToSupernode::Hello { .. }, to }] if to == home)
    );
    h.handle_message(t, home.key, welcome(&home));
    assert_eq!(h.home(), Some(home));
    assert!(!h.is_parked());
}

#[test]
fn without_a_park_key_an_offer_is_ignored() {
    let t0 = Instant::now();
    let (mut h, home) = home_via_probes(6, t0);
    drain(&mut h);
    h.handle_message(t0, home.key, SupernodeToClient::ParkOffer { token: TOKEN });
    assert!(drain(&mut h).is_empty());
    assert!(!h.is_parked());
}

#[test]
fn a_standby_connection_opened_later_does_not_hide_the_home_connections_park_key() {
    let t0 = Instant::now();
    let (mut h, home) = home_via_probes(7, t0);
    drain(&mut h);
    h.handle_park_key(home.key, ParkKey::from_exporter(PARK_KEY));
    let standby = h.standby().expect("a standby");
    h.handle_park_key(standby.key, ParkKey::from_exporter([1; 32]));
    h.handle_message(t0, home.key, SupernodeToClient::ParkOffer { token: TOKEN });
    assert_eq!(
        drain(&mut h)
            .into_iter()
            .map(|t| t.message)
            .collect::<Vec<_>>(),
        vec![ClientToSupernode::ParkAccept { token: TOKEN }]
    );
}

#[test]
fn lost_heartbeat_answers_are_retried_and_do_not_lose_the_home() {
    let t0 = Instant::now();
    let (mut h, _home, t) = parked(8, t0);
    let keepalive = HomingConfig::default().keepalive_interval;
    // Every second answer is lost (heavy loss): the home must stay.
    let mut acks = 0;
    let mut heartbeats = 0u64;
    let sent = run_parked(&mut h, t, t + Duration::from_secs(60), |_| {
        heartbeats += 1;
        if heartbeats.is_multiple_of(2) {
            acks += 1;
            Some(server_seal(ParkKind::HeartbeatAck, acks))
        } else {
            None
        }
    });
    assert!(h.is_parked(), "not lost to dropped datagrams");
    assert!(
        !events(&mut h)
            .iter()
            .any(|e| matches!(e, HomingEvent::Lost { .. }))
    );
    // One retry per lost answer, a second after it: twice the heartbeats of a clean link.
    let clean = 60 / keepalive.as_secs();
    assert!(
        (sent.len() as u64) <= 2 * clean + 2,
        "{} heartbeats in 60 s",
        sent.len()
    );
}

#[test]
fn two_heartbeats_lost_in_a_row_do_not_lose_the_home_and_a_dead_one_is_noticed_within_10_s() {
    let config = HomingConfig::default();
    assert!(
        config.dead_after < Duration::from_secs(10),
        "a dead supernode is noticed within 10 s of its last answer"
    );
    // Attempts at the interval and every retry after it, strictly before `dead_after`.
    let attempts = (config.dead_after - config.keepalive_interval)
        .as_millis()
        .div_ceil(HEARTBEAT_RETRY.as_millis());
    assert!(attempts >= 3, "{attempts} attempts before dead_after");
    let t0 = Instant::now();
    let (mut h, _home, t) = parked(9, t0);
    // Of every three heartbeats only the third is answered: each answer follows two
    // datagrams lost in a row.
    let mut acks = 0;
    let mut heartbeats = 0u64;
    let sent = run_parked(&mut h, t, t + Duration::from_secs(60), |_| {
        heartbeats += 1;
        heartbeats.is_multiple_of(3).then(|| {
            acks += 1;
            server_seal(ParkKind::HeartbeatAck, acks)
        })
    });
    assert!(h.is_parked(), "not lost to two dropped datagrams in a row");
    assert!(
        !events(&mut h)
            .iter()
            .any(|e| matches!(e, HomingEvent::Lost { .. }))
    );
    assert!(
        acks >= 60 / (config.keepalive_interval.as_secs() + 2) - 1,
        "{acks} answers in 60 s"
    );
    assert!(sent.len() as u64 >= 3 * acks);
}
