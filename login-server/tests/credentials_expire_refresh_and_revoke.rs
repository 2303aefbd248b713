//! Credentials: refused by the server when expired or tampered with, refreshed before
//! expiry, revoked on account deletion.

mod support;
use login_server::client::ClientError;
use proto::login::LoginError;
use support::*;

#[tokio::test]
async fn expired_credentials_are_refused_and_refresh_extends_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = VirtualClock::new();
    let mut cfg = config(dir.path(), None);
    clock.install(&mut cfg);
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    let device = Device::new();
    let conn = device.connect(&server).await;
    conn.register(
        &user("heidi"),
        &display("Heidi"),
        &password("heidi's password"),
    )
    .await
    .expect("register");
    let cred = conn
        .login(&user("heidi"), &password("heidi's password"))
        .await
        .expect("login");
    clock.advance_secs(23 * 3600);
    let fresh = conn.refresh(&cred).await.expect("refresh before expiry");
    let claims = fresh
        .verify_for_key(&server.authority_key(), clock.now(), &device.key.public())
        .expect("valid");
    assert_eq!(claims.issued_at, clock.now());
    clock.advance_secs(3600);
    let err = conn.contacts(&cred).await.expect_err("the old one expired");
    assert!(
        matches!(err, ClientError::Server(LoginError::NotAuthenticated(_))),
        "{err}"
    );
    conn.contacts(&fresh)
        .await
        .expect("the refreshed one works");

    // A credential presented from another device's TLS key is refused.
    let thief = Device::new().connect(&server).await;
    let err = thief.contacts(&fresh).await.expect_err("wrong device");
    assert!(
        matches!(err, ClientError::Server(LoginError::NotAuthenticated(_))),
        "{err}"
    );

    // Deleting the account revokes everything.
    conn.delete_account(&user("heidi"), &password("heidi's password"))
        .await
        .expect("delete");
    let err = conn.contacts(&fresh).await.expect_err("deleted");
    assert!(
        matches!(err, ClientError::Server(LoginError::NotAuthenticated(_))),
        "{err}"
    );
    let err = conn
        .login(&user("heidi"), &password("heidi's password"))
        .await
        .expect_err("gone");
    assert!(
        matches!(err, ClientError::Server(LoginError::InvalidCredentials)),
        "{err}"
    );
    server.shutdown().await;
}
