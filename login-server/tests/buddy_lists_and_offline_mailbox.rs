//! Buddy lists follow the user (server-side) and the offline mailbox keeps what it
//! acknowledged, until acknowledged or 30 days old.

mod support;
use login_server::client::{ClientError, LoginConnection};
use proto::login::{ContactState, Envelope, LoginError, MAX_SEALED_BYTES, UserRequest};
use proto::{MessageId, SignedCredential};
use support::*;

async fn account(
    server: &login_server::LoginServer,
    name: &str,
) -> (Device, LoginConnection, SignedCredential) {
    let device = Device::new();
    let conn = device.connect(server).await;
    conn.register(
        &user(name),
        &display(&name.to_uppercase()),
        &password("a good password"),
    )
    .await
    .expect("register");
    let cred = conn
        .login(&user(name), &password("a good password"))
        .await
        .expect("login");
    (device, conn, cred)
}

fn states(contacts: &[proto::login::Contact]) -> Vec<(String, ContactState)> {
    contacts
        .iter()
        .map(|c| (c.user.to_string(), c.state))
        .collect()
}

#[tokio::test]
async fn authorization_requests_are_accepted_declined_removed_and_blocked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), None).await;
    let (_a, alice, alice_cred) = account(&server, "alice").await;
    let (_b, bob, bob_cred) = account(&server, "bob").await;
    let (_c, carol, carol_cred) = account(&server, "carol").await;

    alice
        .contact_change(&alice_cred, UserRequest::AddContact { user: user("bob") })
        .await
        .expect("add");
    carol
        .contact_change(&carol_cred, UserRequest::AddContact { user: user("bob") })
        .await
        .expect("add");
    assert_eq!(
        states(&alice.contacts(&alice_cred).await.expect("list")),
        vec![("bob".into(), ContactState::RequestSent)]
    );
    assert_eq!(
        states(&bob.contacts(&bob_cred).await.expect("list")),
        vec![
            ("alice".into(), ContactState::RequestReceived),
            ("carol".into(), ContactState::RequestReceived)
        ]
    );
    bob.contact_change(
        &bob_cred,
        UserRequest::AcceptContact {
            user: user("alice"),
        },
    )
    .await
    .expect("accept");
    bob.contact_change(
        &bob_cred,
        UserRequest::DeclineContact {
            user: user("carol"),
        },
    )
    .await
    .expect("decline");
    assert_eq!(
        states(&alice.contacts(&alice_cred).await.expect("list")),
        vec![("bob".into(), ContactState::Accepted)]
    );
    assert_eq!(
        states(&bob.contacts(&bob_cred).await.expect("list")),
        vec![("alice".into(), ContactState::Accepted)]
    );
    assert!(carol.contacts(&carol_cred).await.expect("list").is_empty());
    let err = bob
        .contact_change(
            &bob_cred,
            UserRequest::AcceptContact {
                user: user("carol"),
            },
        )
        .await
        .expect_err("nothing to accept");
    assert!(matches!(err, ClientError::Server(LoginError::NotAllowed)));
    let err = bob
        .contact_change(
            &bob_cred,
            UserRequest::AddContact {
                user: user("nosuchuser"),
            },
        )
        .await
        .expect_err("no such user");
    assert!(matches!(err, ClientError::Server(LoginError::NoSuchUser)));

    // The list follows the user to a new device.
    let new_device = Device::new();
    let alice2 = new_device.connect(&server).await;
    let cred2 = alice2
        .login(&user("alice"), &password("a good password"))
        .await
        .expect("login");
    assert_eq!(alice2.contacts(&cred2).await.expect("list").len(), 1);

    // Remove is mutual; block hides requests from the blocked user.
    alice2
        .contact_change(&cred2, UserRequest::RemoveContact { user: user("bob") })
        .await
        .expect("remove");
    assert!(bob.contacts(&bob_cred).await.expect("list").is_empty());
    bob.contact_change(
        &bob_cred,
        UserRequest::BlockContact {
            user: user("carol"),
        },
    )
    .await
    .expect("block");
    carol
        .contact_change(&carol_cred, UserRequest::AddContact { user: user("bob") })
        .await
        .expect("add looks fine");
    assert_eq!(
        states(&bob.contacts(&bob_cred).await.expect("list")),
        vec![("carol".into(), ContactState::Blocked)]
    );
    server.shutdown().await;
}

fn envelope(from: &str, to: &str, n: u8, size: usize) -> Envelope {
    Envelope {
        id: MessageId([n; 16]),
        from: user(from),
        to: user(to),
        sent_at: proto::UnixTime::from_secs(1_800_000_000 + u64::from(n)),
        sealed: vec![n; size],
    }
}

#[tokio::test]
async fn offline_envelopes_survive_a_restart_until_acknowledged_and_expire_after_30_days() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = VirtualClock::new();
    let mut cfg = config(dir.path(), None);
    clock.install(&mut cfg);
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    let (_a, alice, alice_cred) = account(&server, "alice").await;
    let (bob_device, _bob, _) = account(&server, "bob").await;
    for n in 1..=3 {
        let id = alice
            .store_offline(&alice_cred, envelope("alice", "bob", n, 100))
            .await
            .expect("stored");
        assert_eq!(id, MessageId([n; 16]));
    }
    // Storing the same id again is idempotent.
    alice
        .store_offline(&alice_cred, envelope("alice", "bob", 1, 100))
        .await
        .expect("stored again");
    // Senders cannot forge the sender, nor exceed the size bound.
    let err = alice
        .store_offline(&alice_cred, envelope("bob", "alice", 9, 10))
        .await
        .expect_err("forged");
    assert!(matches!(err, ClientError::Server(LoginError::NotAllowed)));
    let err = alice
        .store_offline(
            &alice_cred,
            envelope("alice", "bob", 9, MAX_SEALED_BYTES + 1),
        )
        .await
        .expect_err("too big");
    assert!(
        matches!(
            err,
            ClientError::Server(LoginError::TooLarge | LoginError::Malformed)
        ),
        "{err}"
    );
    server.shutdown().await;

    // Acknowledged to the sender means durable: a new process sees all three.
    let mut cfg = config(dir.path(), None);
    clock.install(&mut cfg);
    let server = login_server::LoginServer::start(cfg)
        .await
        .expect("restart");
    let bob = bob_device.connect(&server).await;
    let bob_cred = bob
        .login(&user("bob"), &password("a good password"))
        .await
        .expect("login");
    let (first, more) = bob.fetch_mailbox(&bob_cred, 2).await.expect("fetch");
    assert!(more);
    assert_eq!(
        first.iter().map(|e| e.id.0[0]).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(first[0].sealed, vec![1; 100]);
    bob.ack_mailbox(&bob_cred, first.iter().map(|e| e.id).collect())
        .await
        .expect("ack");
    let (rest, more) = bob.fetch_mailbox(&bob_cred, 10).await.expect("fetch");
    assert!(!more);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, MessageId([3; 16]));

    // Unacknowledged envelopes expire after 30 days.
    clock.advance_secs(30 * 24 * 3600 + 1);
    let bob_cred = bob
        .login(&user("bob"), &password("a good password"))
        .await
        .expect("login");
    let (left, _) = bob.fetch_mailbox(&bob_cred, 10).await.expect("fetch");
    assert!(left.is_empty());
    server.service().housekeeping().await.expect("housekeeping");
    assert_eq!(
        server
            .service()
            .store()
            .mailbox_depth()
            .await
            .expect("depth"),
        0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_mailbox_refuses_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), None);
    cfg.service.mailbox.max_envelopes = 3;
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    let (_a, alice, alice_cred) = account(&server, "alice").await;
    let _bob = account(&server, "bob").await;
    for n in 1..=3 {
        alice
            .store_offline(&alice_cred, envelope("alice", "bob", n, 10))
            .await
            .expect("stored");
    }
    let err = alice
        .store_offline(&alice_cred, envelope("alice", "bob", 4, 10))
        .await
        .expect_err("full");
    assert!(matches!(err, ClientError::Server(LoginError::MailboxFull)));
    server.shutdown().await;
}
