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
