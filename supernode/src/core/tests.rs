//! Unit tests of one supernode core on virtual time; the many-node behaviour is tested
//! through [`crate::sim`] in `tests/`.

use super::*;
use proto::supernode::{ErrorCode, PresenceStatus};
use proto::{Credential, DisplayName, SecretKey};

const WALL: u64 = 1_800_000_000;

struct Fixture {
    authority: SecretKey,
    core: Supernode,
    t0: Instant,
    others: Vec<SupernodeContact>,
}

fn contact(i: u8) -> SupernodeContact {
    SupernodeContact {
        key: SecretKey::from_bytes(&[i; 32]).public(),
        addr: format!("192.0.2.{i}:7500").parse().expect("addr"),
    }
}

fn fixture(config: Config) -> Fixture {
    let authority = SecretKey::from_bytes(&[99; 32]);
    let t0 = Instant::now();
    let mut core = Supernode::new(
        config,
        contact(1),
        authority.public(),
        t0,
        UnixTime::from_secs(WALL),
        5,
    );
    let others: Vec<SupernodeContact> = (2..6).map(contact).collect();
    let mut all = others.clone();
    all.push(contact(1));
    core.handle_members(t0, all);
    Fixture {
        authority,
        core,
        t0,
        others,
    }
}

fn user(name: &str) -> UserName {
    UserName::new(name).expect("valid")
}

fn credential(
    authority: &SecretKey,
    name: &str,
    device: &SecretKey,
    expires: u64,
) -> SignedCredential {
    SignedCredential::issue(
        &Credential {
            serial: 42,
            user: user(name),
            display_name: DisplayName::new(name.to_uppercase()).expect("valid"),
            device_key: device.public(),
            issued_at: UnixTime::from_secs(WALL - 10),
            expires_at: UnixTime::from_secs(expires),
        },
        authority,
    )
}

fn commands(core: &mut Supernode) -> Vec<Command> {
    std::iter::from_fn(|| core.poll_command()).collect()
}

fn to_client(commands: &[Command], id: ClientId) -> Vec<SupernodeToClient> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::SendToClient { client, message } if *client == id => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn hello(f: &mut Fixture, id: u64, name: &str) -> (ClientId, Vec<Command>) {
    let device = SecretKey::generate();
    let client = ClientId(id);
    f.core
        .handle_client_connected(f.t0, client, device.public());
    let credential = credential(&f.authority, name, &device, WALL + 3600);
    f.core.handle_client_message(
        f.t0,
        client,
        ClientToSupernode::Hello {
            version: proto::PROTOCOL_VERSION,
            credential,
            presence: Presence::new(PresenceStatus::Online),
        },
    );
    (client, commands(&mut f.core))
}

#[test]
fn a_valid_credential_is_welcomed_and_published_to_the_responsible_supernodes() {
    let mut f = fixture(Config::default());
    let (client, out) = hello(&mut f, 1, "alice");
    let messages = to_client(&out, client);
    assert!(
        matches!(messages[0], SupernodeToClient::Welcome { .. }),
        "{messages:?}"
    );
    let responsible = ring::responsible(
        f.others.iter().map(|c| &c.key).chain([&contact(1).key]),
        &user("alice"),
        2,
    );
    let published: BTreeSet<PublicKey> = out
        .iter()
        .filter_map(|c| match c {
            Command::SendToSupernode {
                to,
                message: SupernodeToSupernode::PublishRecord { .. },
            } => Some(to.key),
            _ => None,
        })
        .collect();
    let expected: BTreeSet<PublicKey> = responsible
        .into_iter()
        .filter(|k| *k != contact(1).key)
        .collect();
    assert_eq!(published, expected);
    assert!(out.iter().any(|c| matches!(c, Command::ReportHomed { .. })));
    assert_eq!(f.core.stats().sessions, 1);
}

#[test]
fn credentials_for_another_key_or_expired_or_revoked_are_refused() {
    let mut f = fixture(Config::default());
    let device = SecretKey::generate();
    let other = SecretKey::generate();
    let cases = [
        credential(&f.authority, "alice", &other, WALL + 3600),
        credential(&f.authority, "alice", &device, WALL - 1),
        credential(&SecretKey::generate(), "alice", &device, WALL + 3600),
    ];
    for (i, credential) in cases.into_iter().enumerate() {
        let client = ClientId(i as u64);
        f.core
            .handle_client_connected(f.t0, client, device.public());
        f.core.handle_client_message(
            f.t0,
            client,
            ClientToSupernode::Hello {
                version: proto::PROTOCOL_VERSION,
                credential,
                presence: Presence::offline(),
            },
        );
        let out = commands(&mut f.core);
        assert!(matches!(
            to_client(&out, client)[0],
            SupernodeToClient::Error {
                code: ErrorCode::CredentialRefused { .. }
            }
        ));
        assert!(out.contains(&Command::CloseClient { client }));
    }
    // Revoked after login: the session ends.
    let (client, _) = hello(&mut f, 10, "bob");
    f.core.handle_revocations(f.t0, [42]);
    let out = commands(&mut f.core);
    assert!(
        to_client(&out, client).contains(&SupernodeToClient::Goodbye {
            reason: GoodbyeReason::CredentialInvalid
        })
    );
    assert_eq!(f.core.stats().sessions, 0);
}

#[test]
fn over_capacity_the_answer_is_busy_with_alternatives() {
    let mut f = fixture(Config {
        max_clients: 2,
        ..Config::default()
    });
    hello(&mut f, 1, "alice");
    hello(&mut f, 2, "bob");
    let (client, out) = hello(&mut f, 3, "carol");
    let Some(SupernodeToClient::Busy { alternatives }) = to_client(&out, client).first().cloned()
    else {
        panic!("expected busy: {out:?}");
    };
    assert!(!alternatives.is_empty());
    assert!(alternatives.iter().all(|a| a.key != contact(1).key));
    assert_eq!(f.core.stats().sessions, 2);
}

#[test]
fn messages_before_hello_are_refused_but_pings_are_answered() {
    let mut f = fixture(Config::default());
    let client = ClientId(1);
    f.core
        .handle_client_connected(f.t0, client, SecretKey::generate().public());
    f.core
        .handle_client_message(f.t0, client, ClientToSupernode::Ping { nonce: 7 });
    f.core.handle_client_message(
        f.t0,
        client,
        ClientToSupernode::Search {
            query_id: 1,
            query: SearchQuery::Exact(user("alice")),
        },
    );
    let out = to_client(&commands(&mut f.core), client);
    assert!(matches!(out[0], SupernodeToClient::Pong { nonce: 7, .. }));
    assert_eq!(
        out[1],
        SupernodeToClient::Error {
            code: ErrorCode::NotAuthenticated
        }
    );
}

#[test]
fn searches_are_rate_limited_per_client() {
    let mut f = fixture(Config {
        search_burst: 3,
        searches_per_sec: 1.0,
        ..Config::default()
    });
    let (client, _) = hello(&mut f, 1, "alice");
    for i in 0..5 {
        f.core.handle_client_message(
            f.t0,
            client,
            ClientToSupernode::Search {
                query_id: i,
                query: SearchQuery::Exact(user("alice")),
            },
        );
    }
    let out = to_client(&commands(&mut f.core), client);
    let limited = out
        .iter()
        .filter(|m| {
            matches!(
                m,
                SupernodeToClient::SearchFailed {
                    error: SearchError::RateLimited { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(limited, 2);
    assert_eq!(f.core.stats().searches_rate_limited, 2);
}

#[test]
fn a_silent_client_is_dropped_and_unpublished() {
    let mut f = fixture(Config::default());
    let (client, _) = hello(&mut f, 1, "alice");
    let mut now = f.t0;
    let deadline = f.t0 + Duration::from_secs(60);
    let mut closed_at = None;
    while now < deadline && closed_at.is_none() {
        now = f.core.poll_timeout().expect("armed");
        f.core.handle_timeout(now);
        let out = commands(&mut f.core);
        if out.contains(&Command::CloseClient { client }) {
            closed_at = Some(now);
            assert!(
                out.iter().any(|c| matches!(
                    c,
                    Command::SendToSupernode {
                        message: SupernodeToSupernode::Unpublish { .. },
                        ..
                    }
                )) || ring::responsible(f.core.members.keys(), &user("alice"), 2)
                    == vec![contact(1).key]
            );
        }
    }
    let closed_at = closed_at.expect("dropped");
    assert!(
        closed_at - f.t0 >= Duration::from_secs(25),
        "keep-alive interval respected"
    );
    assert!(closed_at - f.t0 <= Duration::from_secs(56));
    assert_eq!(f.core.stats().clients, 0);
}

#[test]
fn a_forged_publish_cannot_put_another_key_under_a_users_name() {
    let mut f = fixture(Config::default());
    let liar = f.others[0];
    let alice_device = SecretKey::generate();
    let mallory_device = SecretKey::generate();
    // A valid credential for mallory, published as alice's record.
    let forged = credential(&f.authority, "mallory", &mallory_device, WALL + 3600);
    f.core.handle_supernode_message(
        f.t0,
        liar.key,
        SupernodeToSupernode::PublishRecord {
            user: user("alice"),
            device: mallory_device.public(),
            seq: 1,
            record: DeviceRecord {
                credential: forged,
                home: liar,
                presence: Presence::new(PresenceStatus::Online),
            },
            authorized: vec![],
        },
    );
    let _ = alice_device;
    assert_eq!(f.core.stats().records, 0);
    f.core.handle_supernode_message(
        f.t0,
        liar.key,
        SupernodeToSupernode::Lookup {
            query_id: 1,
            user: user("alice"),
            viewer: user("bob"),
        },
    );
    let out = commands(&mut f.core);
    assert!(out.iter().any(|c| matches!(
        c,
        Command::SendToSupernode {
            message: SupernodeToSupernode::LookupResult { record: None, .. },
            ..
        }
    )));
}

#[test]
fn turn_credentials_are_minted_for_homed_clients_only_when_a_relay_runs() {
    let secret = b"relay secret".to_vec();
    let mut f = fixture(Config {
        turn: Some(TurnService {
            shared_secret: secret.clone(),
            urls: vec!["turn:192.0.2.1:3478?transport=udp".into()],
            ttl: Duration::from_secs(600),
        }),
        ..Config::default()
    });
    let (client, _) = hello(&mut f, 1, "alice");
    f.core
        .handle_client_message(f.t0, client, ClientToSupernode::TurnCredentialsRequest);
    let out = to_client(&commands(&mut f.core), client);
    let Some(SupernodeToClient::TurnCredentials {
        urls,
        username,
        password,
        ttl_s,
    }) = out.first().cloned()
    else {
        panic!("{out:?}");
    };
    assert_eq!(urls.len(), 1);
    assert_eq!(ttl_s, 600);
    let verified = nat::turn::credentials::verify(&secret, &username, &password, WALL + 10)
        .expect("the relay accepts them");
    assert_eq!(verified.user, "alice");

    let mut plain = fixture(Config::default());
    let (client, _) = hello(&mut plain, 1, "bob");
    plain
        .core
        .handle_client_message(plain.t0, client, ClientToSupernode::TurnCredentialsRequest);
    assert_eq!(
        to_client(&commands(&mut plain.core), client),
        vec![SupernodeToClient::Error {
            code: ErrorCode::Unavailable
        }]
    );
}

#[test]
fn a_peer_that_was_unreachable_gets_its_records_and_subscriptions_again() {
    let mut f = fixture(Config::default());
    let (client, _) = hello(&mut f, 1, "alice");
    let everyone: Vec<PublicKey> = f
        .others
        .iter()
        .map(|c| c.key)
        .chain([contact(1).key])
        .collect();
    let peer = ring::responsible(everyone.iter(), &user("alice"), 2)
        .into_iter()
        .find(|k| *k != contact(1).key)
        .expect("another supernode holds alice's record");
    // A watched user the same peer is responsible for.
    let watched = (0..1000)
        .map(|i| user(&format!("friend{i}")))
        .find(|u| ring::responsible(everyone.iter(), u, 2).contains(&peer))
        .expect("some user maps to the peer");
    f.core.handle_client_message(
        f.t0,
        client,
        ClientToSupernode::Watch {
            contacts: vec![watched.clone()],
        },
    );
    commands(&mut f.core);

    // The link to the peer failed: whatever was queued on it is lost.
    f.core.handle_supernode_unreachable(f.t0, peer);
    assert!(commands(&mut f.core).is_empty());
    let later = f.t0 + Config::default().unreachable_backoff + Duration::from_secs(1);
    f.core.handle_timeout(later);
    let out = commands(&mut f.core);
    let to_peer: Vec<&SupernodeToSupernode> = out
        .iter()
        .filter_map(|c| match c {
            Command::SendToSupernode { to, message } if to.key == peer => Some(message),
            _ => None,
        })
        .collect();
    assert!(
        to_peer.iter().any(|m| matches!(m,
            SupernodeToSupernode::PublishRecord { user: u, .. } if *u == user("alice"))),
        "{to_peer:?}"
    );
    assert!(
        to_peer.iter().any(|m| matches!(m,
            SupernodeToSupernode::Subscribe { pairs }
                if pairs.contains(&(user("alice"), watched.clone())))),
        "{to_peer:?}"
    );
    // Nothing for supernodes that never failed.
    assert!(out.iter().all(|c| !matches!(c,
        Command::SendToSupernode { to, .. } if to.key != peer)));
}

// ---------------------------------------------------------------- parked sessions ----

const PARK_KEY: [u8; 32] = [5; 32];

fn client_addr() -> SocketAddr {
    "198.51.100.7:40000".parse().expect("addr")
}

/// Homes `name` on a parkable connection; returns its device key too.
fn hello_parkable(f: &mut Fixture, id: u64, name: &str) -> (ClientId, SecretKey) {
    let device = SecretKey::generate();
    let client = ClientId(id);
    f.core
        .handle_client_connected(f.t0, client, device.public());
    f.core
        .handle_client_park_link(client, ParkKey::from_exporter(PARK_KEY), client_addr());
    let credential = credential(&f.authority, name, &device, WALL + 3600);
    f.core.handle_client_message(
        f.t0,
        client,
        ClientToSupernode::Hello {
            version: proto::PROTOCOL_VERSION,
            credential,
            presence: Presence::new(PresenceStatus::Online),
        },
    );
    commands(&mut f.core);
    (client, device)
}

/// Runs the core's timers from `from` to `to` in 250 ms steps; returns what it did.
fn run(core: &mut Supernode, from: Instant, to: Instant) -> Vec<Command> {
    let mut out = Vec::new();
    let mut now = from;
    while now < to {
        now = (now + Duration::from_millis(250)).min(to);
        core.handle_timeout(now);
        out.extend(commands(core));
    }
    out
}

fn datagrams(out: &[Command]) -> Vec<(SocketAddr, Vec<u8>)> {
    out.iter()
        .filter_map(|c| match c {
            Command::SendDatagram { to, datagram } => Some((*to, datagram.clone())),
            _ => None,
        })
        .collect()
}

fn park_config() -> Config {
    Config {
        park_after: Duration::from_secs(30),
        ..Config::default()
    }
}

/// Idles `client` until offered, accepts; returns the token and when it was parked.
/// Alice (client 1) homes on a parkable connection, watches bob, and is parked.
fn alice_watching_bob_parked(f: &mut Fixture) -> (ClientId, SecretKey, ParkToken, Instant) {
    let (alice, device) = hello_parkable(f, 1, "alice");
    f.core.handle_client_message(
        f.t0,
        alice,
        ClientToSupernode::Watch {
            contacts: vec![user("bob")],
        },
    );
    commands(&mut f.core);
    let (token, parked_at) = park(f, alice);
    (alice, device, token, parked_at)
}

fn park(f: &mut Fixture, client: ClientId) -> (ParkToken, Instant) {
    let offered_by = f.t0 + Duration::from_secs(31);
    let out = run(&mut f.core, f.t0, offered_by);
    let token = to_client(&out, client)
        .into_iter()
        .find_map(|m| match m {
            SupernodeToClient::ParkOffer { token } => Some(token),
            _ => None,
        })
        .expect("an idle session is offered parking");
    f.core
        .handle_client_message(offered_by, client, ClientToSupernode::ParkAccept { token });
    let out = commands(&mut f.core);
    assert_eq!(
        to_client(&out, client),
        vec![SupernodeToClient::Parked { token }]
    );
    assert!(
        out.iter()
            .any(|c| matches!(c, Command::ParkClient { client: c } if *c == client))
    );
    (token, offered_by)
}

fn heartbeat(token: ParkToken, counter: u64) -> Vec<u8> {
    park::seal(
        &ParkKey::from_exporter(PARK_KEY),
        ParkKind::Heartbeat,
        token,
        counter,
    )
}

#[test]
fn an_idle_session_is_parked_and_stays_homed_after_its_connection_closes() {
    let mut f = fixture(park_config());
    let (alice, _) = hello_parkable(&mut f, 1, "alice");
    // A session without a park key (TCP) is never offered parking.
    let (bob, _) = hello(&mut f, 2, "bob");
    let (_, parked_at) = park(&mut f, alice);
    let out = run(&mut f.core, f.t0, parked_at);
    assert!(
        to_client(&out, bob)
            .iter()
            .all(|m| !matches!(m, SupernodeToClient::ParkOffer { .. }))
    );
    f.core.handle_client_disconnected(parked_at, alice);
    assert!(commands(&mut f.core).is_empty(), "no unpublish");
    assert!(f.core.homes(&user("alice")));
    let stats = f.core.stats();
    assert_eq!((stats.sessions, stats.parked), (2, 1));
}

#[test]
fn heartbeats_keep_a_parked_session_and_silence_drops_it_within_60_s() {
    let mut f = fixture(park_config());
    let (alice, _) = hello_parkable(&mut f, 1, "alice");
    let (token, parked_at) = park(&mut f, alice);
    f.core.handle_client_disconnected(parked_at, alice);
    let mut now = parked_at;
    let mut window = ReplayWindow::default();
    for counter in 1..=8 {
        let out = run(&mut f.core, now, now + Duration::from_secs(25));
        now += Duration::from_secs(25);
        assert!(
            f.core.homes(&user("alice")),
            "alive after {counter} heartbeats"
        );
        assert!(datagrams(&out).is_empty(), "nothing waits: no wake");
        let from: SocketAddr = "198.51.100.7:40001".parse().expect("addr");
        f.core
            .handle_park_datagram(now, from, &heartbeat(token, counter));
        let answers = datagrams(&commands(&mut f.core));
        assert_eq!(answers.len(), 1, "every heartbeat is answered");
        assert_eq!(answers[0].0, from, "to where the heartbeat came from");
        let header = park::open(
            &ParkKey::from_exporter(PARK_KEY),
            token,
            ParkDirection::SupernodeToClient,
            &mut window,
            &answers[0].1,
        )
        .expect("the answer opens under the park key");
        assert_eq!(header.kind, ParkKind::HeartbeatAck);
    }
    let out = run(&mut f.core, now, now + Duration::from_secs(60));
    assert!(!f.core.homes(&user("alice")));
    assert_eq!(f.core.stats().parked, 0);
    assert!(out.iter().any(|c| matches!(
        c,
        Command::SendToSupernode {
            message: SupernodeToSupernode::Unpublish { .. },
            ..
        }
    )));
    assert!(
        datagrams(&out).is_empty(),
        "no wake for a dropped client's goodbye"
    );
}

#[test]
fn forged_and_replayed_heartbeats_are_ignored_and_do_not_keep_a_session_alive() {
    let mut f = fixture(park_config());
    let (alice, _) = hello_parkable(&mut f, 1, "alice");
    let (token, parked_at) = park(&mut f, alice);
    let recorded = heartbeat(token, 1);
    f.core
        .handle_park_datagram(parked_at, client_addr(), &recorded);
    assert_eq!(datagrams(&commands(&mut f.core)).len(), 1);
    let forged = park::seal(
        &ParkKey::from_exporter([6; 32]),
        ParkKind::Heartbeat,
        token,
        2,
    );
    let mut now = parked_at;
    for _ in 0..12 {
        now += Duration::from_secs(10);
        run(&mut f.core, now - Duration::from_secs(10), now);
        for datagram in [&recorded, &forged, &heartbeat(ParkToken([1; 16]), 9)] {
            f.core.handle_park_datagram(now, client_addr(), datagram);
            assert!(datagrams(&commands(&mut f.core)).is_empty());
        }
    }
    assert!(
        !f.core.homes(&user("alice")),
        "replays and forgeries did not keep it online"
    );
    assert!(f.core.stats().park_refused >= 36);
}

#[test]
fn a_message_for_a_parked_client_waits_wakes_it_and_is_flushed_on_resume() {
    let mut f = fixture(park_config());
    let (alice, device, token, parked_at) = alice_watching_bob_parked(&mut f);
    f.core.handle_client_disconnected(parked_at, alice);
    let notify = |presence| SupernodeToSupernode::PresenceNotify {
        target: user("bob"),
        presence: Presence::new(presence),
        watchers: vec![user("alice")],
    };
    let other = contact(2).key;
    f.core
        .handle_supernode_message(parked_at, other, notify(PresenceStatus::Online));
    f.core
        .handle_supernode_message(parked_at, other, notify(PresenceStatus::Away));
    let out = commands(&mut f.core);
    assert!(
        to_client(&out, alice).is_empty(),
        "nothing on a closed connection"
    );
    let wakes = datagrams(&out);
    assert_eq!(wakes.len(), 1, "one wake for both changes");
    let mut window = ReplayWindow::default();
    let key = ParkKey::from_exporter(PARK_KEY);
    let opened = park::open(
        &key,
        token,
        ParkDirection::SupernodeToClient,
        &mut window,
        &wakes[0].1,
    )
    .expect("opens");
    assert_eq!(opened.kind, ParkKind::Wake);
    // Retried with backoff while the client does not come.
    let retries = datagrams(&run(
        &mut f.core,
        parked_at,
        parked_at + Duration::from_secs(4),
    ));
    assert!(
        (2..=4).contains(&retries.len()),
        "{} retries in 4 s",
        retries.len()
    );

    // A stranger's device cannot resume it, nor can a replayed proof.
    let now = parked_at + Duration::from_secs(4);
    let stranger = ClientId(7);
    f.core
        .handle_client_connected(now, stranger, SecretKey::generate().public());
    f.core.handle_client_message(
        now,
        stranger,
        ClientToSupernode::Resume {
            token,
            proof: heartbeat(token, 1),
        },
    );
    assert_eq!(
        to_client(&commands(&mut f.core), stranger),
        vec![SupernodeToClient::Error {
            code: ErrorCode::NotAuthenticated
        }]
    );
    let resumed = ClientId(8);
    f.core
        .handle_client_connected(now, resumed, device.public());
    f.core.handle_client_message(
        now,
        resumed,
        ClientToSupernode::Resume {
            token,
            proof: park::seal(
                &ParkKey::from_exporter([6; 32]),
                ParkKind::Heartbeat,
                token,
                1,
            ),
        },
    );
    assert!(matches!(
        to_client(&commands(&mut f.core), resumed)[..],
        [SupernodeToClient::Error { .. }]
    ));
    f.core.handle_client_message(
        now,
        resumed,
        ClientToSupernode::Resume {
            token,
            proof: heartbeat(token, 1),
        },
    );
    let messages = to_client(&commands(&mut f.core), resumed);
    assert_eq!(
        messages,
        vec![
            SupernodeToClient::Resumed,
            SupernodeToClient::PresenceChanged {
                user: user("bob"),
                presence: Presence::new(PresenceStatus::Away),
            },
        ]
    );
    let stats = f.core.stats();
    assert_eq!((stats.sessions, stats.parked), (1, 0));
    // The proof cannot be used again, and the session now lives on the new connection.
    f.core.handle_client_message(
        now,
        ClientId(9),
        ClientToSupernode::Resume {
            token,
            proof: heartbeat(token, 1),
        },
    );
    f.core.handle_client_disconnected(now, alice);
    assert!(f.core.homes(&user("alice")));
    f.core
        .handle_supernode_message(now, other, notify(PresenceStatus::Busy));
    assert_eq!(
        to_client(&commands(&mut f.core), resumed).len(),
        1,
        "delivered live"
    );
}

#[test]
fn a_parked_client_that_never_resumes_is_dropped_after_the_wake_deadline() {
    let mut f = fixture(park_config());
    let (_, _, token, parked_at) = alice_watching_bob_parked(&mut f);
    f.core.handle_supernode_message(
        parked_at,
        contact(2).key,
        SupernodeToSupernode::PresenceNotify {
            target: user("bob"),
            presence: Presence::new(PresenceStatus::Online),
            watchers: vec![user("alice")],
        },
    );
    commands(&mut f.core);
    // Heartbeats go on (answered by wakes), but the client never connects.
    let mut now = parked_at;
    for counter in 1..=4 {
        now += Duration::from_secs(5);
        run(&mut f.core, now - Duration::from_secs(5), now);
        f.core
            .handle_park_datagram(now, client_addr(), &heartbeat(token, counter));
        let answers = datagrams(&commands(&mut f.core));
        if f.core.homes(&user("alice")) {
            let mut window = ReplayWindow::default();
            let header = park::open(
                &ParkKey::from_exporter(PARK_KEY),
                token,
                ParkDirection::SupernodeToClient,
                &mut window,
                &answers[0].1,
            )
            .expect("opens");
            assert_eq!(
                header.kind,
                ParkKind::Wake,
                "a heartbeat learns of the wait"
            );
        }
    }
    run(&mut f.core, now, parked_at + Duration::from_secs(25));
    assert!(!f.core.homes(&user("alice")));
}

#[test]
fn the_parked_queue_is_bounded_and_keeps_the_newest_presence_per_user() {
    let mut queue = VecDeque::new();
    for i in 0..(PARK_QUEUE * 3) {
        queue_for_parked(
            &mut queue,
            SupernodeToClient::PresenceChanged {
                user: user(&format!("user{}", i % (PARK_QUEUE * 2))),
                presence: Presence::new(PresenceStatus::Online),
            },
        );
        queue_for_parked(
            &mut queue,
            SupernodeToClient::RouteStatus {
                id: i as u64,
                outcome: RouteOutcome::Delivered,
            },
        );
        assert!(queue.len() <= PARK_QUEUE);
    }
    assert!(
        queue
            .iter()
            .all(|m| matches!(m, SupernodeToClient::RouteStatus { .. }))
    );
    assert!(matches!(
        queue.back(),
        Some(SupernodeToClient::RouteStatus { id, .. }) if *id == (PARK_QUEUE * 3 - 1) as u64
    ));
}

proptest::proptest! {
    #[test]
    fn random_datagrams_never_panic_a_core_or_keep_a_parked_session_alive(
        inputs in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 1..40),
    ) {
        let mut f = fixture(park_config());
        let (alice, _) = hello_parkable(&mut f, 1, "alice");
        let (token, parked_at) = park(&mut f, alice);
        for mut datagram in inputs {
            // Half of them look like park datagrams of this very session.
            if datagram.len() % 2 == 0 {
                datagram.resize(park::PARK_DATAGRAM_LEN, 0);
                datagram[0] = park::PARK_FIRST_BYTE;
                datagram[1] = ParkKind::Heartbeat as u8;
                datagram[2..18].copy_from_slice(&token.0);
            }
            f.core.handle_park_datagram(parked_at, client_addr(), &datagram);
            proptest::prop_assert!(datagrams(&commands(&mut f.core)).is_empty());
        }
        run(&mut f.core, parked_at, parked_at + Duration::from_secs(60));
        proptest::prop_assert!(!f.core.homes(&user("alice")));
    }
}
