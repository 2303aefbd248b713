//! An unknown user and a wrong password get byte-identical answers.

mod support;
use proto::login::ClientToLogin;
use support::*;

#[tokio::test]
async fn unknown_user_and_wrong_password_answers_are_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), None).await;
    let device = Device::new();
    device
        .connect(&server)
        .await
        .register(
            &user("erin"),
            &display("Erin"),
            &password("erin's password"),
        )
        .await
        .expect("register");
    let conn = raw_conn(&device, &server).await;
    let wrong = raw_exchange(
        &conn,
        &client_frames(&ClientToLogin::Login {
            user: user("erin"),
            password: password("not erin's password"),
        }),
    )
    .await;
    let unknown = raw_exchange(
        &conn,
        &client_frames(&ClientToLogin::Login {
            user: user("nobody"),
            password: password("not erin's password"),
        }),
    )
    .await;
    assert_eq!(wrong, unknown);
    assert_eq!(
        decode_answer(&wrong),
        proto::login::LoginToClient::Error(proto::login::LoginError::InvalidCredentials)
    );
    // Past the free failures, both are throttled the same way too.
    for _ in 0..4 {
        for name in ["erin", "nobody"] {
            raw_exchange(
                &conn,
                &client_frames(&ClientToLogin::Login {
                    user: user(name),
                    password: password("guess"),
                }),
            )
            .await;
        }
    }
    let wrong = decode_answer(
        &raw_exchange(
            &conn,
            &client_frames(&ClientToLogin::Login {
                user: user("erin"),
                password: password("guess"),
            }),
        )
        .await,
    );
    let unknown = decode_answer(
        &raw_exchange(
            &conn,
            &client_frames(&ClientToLogin::Login {
                user: user("nobody"),
                password: password("guess"),
            }),
        )
        .await,
    );
    assert!(
        matches!(
            wrong,
            proto::login::LoginToClient::Error(proto::login::LoginError::Throttled { .. })
        ),
        "{wrong:?}"
    );
    assert!(
        matches!(
            unknown,
            proto::login::LoginToClient::Error(proto::login::LoginError::Throttled { .. })
        ),
        "{unknown:?}"
    );
    server.shutdown().await;
}
