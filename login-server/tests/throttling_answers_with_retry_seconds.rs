//! Throttling answers explicitly ("try again in N s"): per account, per address, and
//! registrations per address.

mod support;
use login_server::client::ClientError;
use proto::login::LoginError;
use support::*;

fn throttled_secs(err: &ClientError) -> Option<u32> {
    match err {
        ClientError::Server(LoginError::Throttled { retry_after_secs }) => Some(*retry_after_secs),
        _ => None,
    }
}

#[tokio::test]
async fn an_account_is_throttled_after_five_failures_even_for_the_right_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = VirtualClock::new();
    let mut cfg = config(dir.path(), None);
    clock.install(&mut cfg);
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    let device = Device::new();
    let conn = device.connect(&server).await;
    conn.register(
        &user("frank"),
        &display("Frank"),
        &password("frank's password"),
    )
    .await
    .expect("register");
    for _ in 0..5 {
        let err = conn
            .login(&user("frank"), &password("wrong"))
            .await
            .expect_err("wrong password");
        assert!(matches!(
            err,
            ClientError::Server(LoginError::InvalidCredentials)
        ));
    }
    let err = conn
        .login(&user("frank"), &password("frank's password"))
        .await
        .expect_err("throttled");
    assert_eq!(throttled_secs(&err), Some(1), "{err}");
    clock.advance_secs(1);
    let err = conn
        .login(&user("frank"), &password("wrong"))
        .await
        .expect_err("wrong again");
    assert!(matches!(
        err,
        ClientError::Server(LoginError::InvalidCredentials)
    ));
    let err = conn
        .login(&user("frank"), &password("frank's password"))
        .await
        .expect_err("backoff doubled");
    assert_eq!(throttled_secs(&err), Some(2), "{err}");
    clock.advance_secs(2);
    conn.login(&user("frank"), &password("frank's password"))
        .await
        .expect("allowed after the backoff");
    // Success cleared the streak: five more free failures.
    for _ in 0..5 {
        let err = conn
            .login(&user("frank"), &password("wrong"))
            .await
            .expect_err("wrong");
        assert!(matches!(
            err,
            ClientError::Server(LoginError::InvalidCredentials)
        ));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn spraying_many_accounts_from_one_address_is_throttled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = VirtualClock::new();
    let mut cfg = config(dir.path(), None);
    clock.install(&mut cfg);
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    let conn = Device::new().connect(&server).await;
    let mut throttled = None;
    for i in 0..40 {
        match conn
            .login(&user(&format!("victim{i}")), &password("Summer2026"))
            .await
        {
            Err(ClientError::Server(LoginError::InvalidCredentials)) => {}
            Err(e) => {
                throttled = throttled_secs(&e).map(|s| (i, s));
                break;
            }
            Ok(_) => panic!("no such accounts"),
        }
    }
    let (after, secs) = throttled.expect("the address is throttled");
    assert_eq!(after, 20, "20 free failures per address");
    assert!(secs >= 1);
    server.shutdown().await;
}

#[tokio::test]
async fn registrations_per_address_are_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), None);
    cfg.service.registrations_per_hour = 2;
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    let conn = Device::new().connect(&server).await;
    for name in ["reg1", "reg2"] {
        conn.register(&user(name), &display(name), &password("a fine password"))
            .await
            .expect("register");
    }
    let err = conn
        .register(
            &user("reg3"),
            &display("reg3"),
            &password("a fine password"),
        )
        .await
        .expect_err("third registration this hour");
    let secs = throttled_secs(&err).expect("throttled");
    assert!(secs > 3500 && secs <= 3600, "{secs}");
    server.shutdown().await;
}
