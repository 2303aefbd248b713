//! Scenarios run on both engines.
#![allow(dead_code)]

use super::*;
use login_server::client::ClientError;
use proto::login::LoginError;
use proto::{UnixTime, credential::CredentialError};
use std::time::SystemTime;

fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

/// Register, log in, restart the server on the same data, log in again.
pub async fn register_login_restart(database: Option<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), database.clone()).await;
    let authority = server.authority_key();
    let device = Device::new();
    let conn = device.connect(&server).await;
    conn.register(
        &user("alice"),
        &display("Alice"),
        &password("correct horse"),
    )
    .await
    .expect("register");
    let credential = conn
        .login(&user("alice"), &password("correct horse"))
        .await
        .expect("login");
    let claims = credential
        .verify_for_key(&authority, now(), &device.key.public())
        .expect("the credential verifies offline for this device");
    assert_eq!(claims.user, user("alice"));
    assert_eq!(claims.display_name, display("Alice"));
    let lifetime = claims.issued_at.until(claims.expires_at);
    assert_eq!(lifetime.as_secs(), 24 * 3600);
    conn.close();
    server.shutdown().await;

    let server = start(dir.path(), database).await;
    assert_eq!(
        server.authority_key(),
        authority,
        "the authority key persists"
    );
    let conn = device.connect(&server).await;
    let again = conn
        .login(&user("alice"), &password("correct horse"))
        .await
        .expect("login after restart");
    assert_ne!(
        again.claims_unverified().expect("claims").serial,
        claims.serial
    );
    let err = conn
        .register(&user("alice"), &display("Other"), &password("another pw"))
        .await
        .expect_err("the name is taken");
    assert!(matches!(
        err,
        ClientError::Server(LoginError::UserNameTaken)
    ));
    conn.close();
    server.shutdown().await;
}

/// Changing the password revokes the old credentials; supernodes see it in the signed
/// revocation list and the server refuses the old credential.
pub async fn password_change_revokes(database: Option<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), database).await;
    let device = Device::new();
    let conn = device.connect(&server).await;
    conn.register(&user("bob"), &display("Bob"), &password("first password"))
        .await
        .expect("register");
    let old = conn
        .login(&user("bob"), &password("first password"))
        .await
        .expect("login");
    let supernode = Device::new();
    let sn = supernode.connect(&server).await;
    let before = sn.revocations(0).await.expect("revocations");
    let version_before = before
        .map(|l| l.verify(&server.authority_key()).expect("signed").version)
        .unwrap_or(0);
    let fresh = conn
        .change_password(
            &user("bob"),
            &password("first password"),
            &password("second password"),
        )
        .await
        .expect("change password");
    let list = sn
        .revocations(version_before)
        .await
        .expect("revocations")
        .expect("a newer list");
    let list = list.verify(&server.authority_key()).expect("signed list");
    let old_serial = old.claims_unverified().expect("claims").serial;
    assert!(list.is_revoked(old_serial));
    assert!(!list.is_revoked(fresh.claims_unverified().expect("claims").serial));
    assert!(sn.revocations(list.version).await.expect("poll").is_none());
    // Revoked: refused by the server; the fresh one works.
    let err = conn.contacts(&old).await.expect_err("revoked");
    assert!(matches!(
        err,
        ClientError::Server(LoginError::NotAuthenticated(_))
    ));
    conn.contacts(&fresh).await.expect("fresh credential works");
    let err = conn
        .login(&user("bob"), &password("first password"))
        .await
        .expect_err("old password");
    assert!(matches!(
        err,
        ClientError::Server(LoginError::InvalidCredentials)
    ));
    conn.login(&user("bob"), &password("second password"))
        .await
        .expect("new password");
    let _ = CredentialError::Revoked;
    server.shutdown().await;
}

/// Two processes' worth of servers on one database: an account made on one logs in on
/// the other, a revocation made on one is seen by the other, throttling is shared.
pub async fn two_servers_share_one_database(database: String) {
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let a = start(dir_a.path(), Some(database.clone())).await;
    // Both processes must sign with the same authority key: copy it, as an operator would.
    std::fs::copy(
        dir_a.path().join("authority.key"),
        dir_b.path().join("authority.key"),
    )
    .expect("copy key");
    let b = start(dir_b.path(), Some(database)).await;
    assert_eq!(a.authority_key(), b.authority_key());
    let device = Device::new();
    let on_a = device.connect(&a).await;
    let on_b = device.connect(&b).await;
    on_a.register(
        &user("carol"),
        &display("Carol"),
        &password("carol's password"),
    )
    .await
    .expect("register on A");
    let cred = on_b
        .login(&user("carol"), &password("carol's password"))
        .await
        .expect("login on B");
    on_a.contacts(&cred)
        .await
        .expect("A accepts B's credential");
    on_b.register(
        &user("dave"),
        &display("Dave"),
        &password("dave's password"),
    )
    .await
    .expect("register on B");
    on_a.contact_change(
        &cred,
        proto::login::UserRequest::AddContact { user: user("dave") },
    )
    .await
    .expect("add on A");
    let dave = on_a
        .login(&user("dave"), &password("dave's password"))
        .await
        .expect("dave logs in on A");
    let contacts = on_b.contacts(&dave).await.expect("list on B");
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].state,
        proto::login::ContactState::RequestReceived
    );
    // Failures on A and B add up for the same account.
    for i in 0..5 {
        let conn = if i % 2 == 0 { &on_a } else { &on_b };
        let err = conn
            .login(&user("carol"), &password("wrong guess"))
            .await
            .expect_err("wrong password");
        assert!(
            matches!(err, ClientError::Server(LoginError::InvalidCredentials)),
            "{err}"
        );
    }
    let err = on_b
        .login(&user("carol"), &password("carol's password"))
        .await
        .expect_err("throttled across processes");
    assert!(
        matches!(err, ClientError::Server(LoginError::Throttled { .. })),
        "{err}"
    );
    // Revocation made through B is visible to A.
    on_b.change_password(
        &user("dave"),
        &password("dave's password"),
        &password("dave's new password"),
    )
    .await
    .expect("change password on B");
    let err = on_a.contacts(&dave).await.expect_err("revoked through B");
    assert!(
        matches!(err, ClientError::Server(LoginError::NotAuthenticated(_))),
        "{err}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Search (bytewise prefix order on both engines), contacts and the mailbox.
pub async fn search_contacts_mailbox(database: Option<String>) {
    use proto::login::{ContactState, Envelope, UserRequest};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), database).await;
    let device = Device::new();
    let conn = device.connect(&server).await;
    for (name, shown) in [
        ("zoe", "Zoë Müller"),
        ("zack", "Zack"),
        ("zed", "ZOË Adams"),
    ] {
        conn.register(&user(name), &display(shown), &password("a good password"))
            .await
            .expect("register");
    }
    let zoe = conn
        .login(&user("zoe"), &password("a good password"))
        .await
        .expect("login");
    let found = conn.search(&zoe, "zoë", 10).await.expect("search");
    let mut names: Vec<String> = found.iter().map(|u| u.user.to_string()).collect();
    names.sort();
    assert_eq!(names, vec!["zed", "zoe"]);
    conn.contact_change(&zoe, UserRequest::AddContact { user: user("zack") })
        .await
        .expect("add");
    let zack_device = Device::new();
    let zack_conn = zack_device.connect(&server).await;
    let zack = zack_conn
        .login(&user("zack"), &password("a good password"))
        .await
        .expect("login");
    zack_conn
        .contact_change(&zack, UserRequest::AcceptContact { user: user("zoe") })
        .await
        .expect("accept");
    assert_eq!(
        conn.contacts(&zoe).await.expect("list")[0].state,
        ContactState::Accepted
    );
    let envelope = Envelope {
        id: proto::MessageId([42; 16]),
        from: user("zoe"),
        to: user("zack"),
        sent_at: now(),
        sealed: vec![7; 300],
    };
    conn.store_offline(&zoe, envelope.clone())
        .await
        .expect("store");
    let (got, more) = zack_conn.fetch_mailbox(&zack, 10).await.expect("fetch");
    assert_eq!(got, vec![envelope.clone()]);
    assert!(!more);
    zack_conn
        .ack_mailbox(&zack, vec![envelope.id])
        .await
        .expect("ack");
    assert!(
        zack_conn
            .fetch_mailbox(&zack, 10)
            .await
            .expect("fetch")
            .0
            .is_empty()
    );
    server.shutdown().await;
}

/// A user renames themself: the answer is a credential with the new name, searches and
/// lookups at the login server find the new name (not the old one), a contact's buddy list
/// shows it, the next login carries it, changes are throttled per account. (Invalid names are
/// refused by the decoder: proto's login tests.)
pub async fn display_name_change(database: Option<String>) {
    use proto::login::UserRequest;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), database).await;
    let device = Device::new();
    let conn = device.connect(&server).await;
    for (name, shown) in [("carol", "Carol Old"), ("dave", "Dave")] {
        conn.register(&user(name), &display(shown), &password("a good password"))
            .await
            .expect("register");
    }
    let carol = conn
        .login(&user("carol"), &password("a good password"))
        .await
        .expect("login");
    let dave = conn
        .login(&user("dave"), &password("a good password"))
        .await
        .expect("login");
    conn.contact_change(
        &dave,
        UserRequest::AddContact {
            user: user("carol"),
        },
    )
    .await
    .expect("add");
    let fresh = conn
        .set_display_name(&carol, &display("Xenia Nova"))
        .await
        .expect("rename");
    let claims = fresh
        .verify(&server.authority_key(), now())
        .expect("signed by the authority");
    assert_eq!(claims.display_name.as_str(), "Xenia Nova");
    assert_eq!(claims.user, user("carol"));
    let found = conn.search(&dave, "xenia", 10).await.expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].user, user("carol"));
    assert_eq!(found[0].display_name.as_str(), "Xenia Nova");
    assert!(
        conn.search(&dave, "carol old", 10)
            .await
            .expect("search")
            .is_empty(),
        "the old name is no longer searchable"
    );
    let info = conn
        .lookup(&dave, &user("carol"))
        .await
        .expect("lookup")
        .expect("carol exists");
    assert_eq!(info.display_name.as_str(), "Xenia Nova");
    let listed = conn.contacts(&dave).await.expect("list");
    assert_eq!(listed[0].display_name.as_str(), "Xenia Nova");
    let relogged = conn
        .login(&user("carol"), &password("a good password"))
        .await
        .expect("login");
    assert_eq!(
        relogged
            .claims_unverified()
            .expect("claims")
            .display_name
            .as_str(),
        "Xenia Nova"
    );
    // The old credential still works (a rename is no reason to log other devices out).
    conn.contacts(&carol)
        .await
        .expect("old credential still valid");
    // Throttled per account after the hourly budget, with a retry time.
    let mut throttled = None;
    for i in 0..25 {
        match conn
            .set_display_name(&fresh, &display(&format!("Name {i}")))
            .await
        {
            Ok(_) => {}
            Err(ClientError::Server(LoginError::Throttled { retry_after_secs })) => {
                throttled = Some((i, retry_after_secs));
                break;
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    let (at, retry_after_secs) = throttled.expect("display-name changes are throttled");
    assert!(at >= 10, "throttled too early, after {at} changes");
    assert!(retry_after_secs > 0);
    // Another account is not affected.
    conn.set_display_name(&dave, &display("David"))
        .await
        .expect("dave's budget is his own");
    server.shutdown().await;
}
