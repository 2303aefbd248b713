//! The same service over TLS-over-TCP, for clients whose UDP is blocked.

mod support;
use login_server::client::LoginConnection;
use support::*;

#[tokio::test]
async fn register_and_log_in_over_tcp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), None).await;
    let tcp = server.tcp_addr().expect("TCP listener runs by default");
    assert_eq!(
        tcp.port(),
        server.quic_addr().port(),
        "same port as QUIC, on TCP"
    );
    let key = proto::SecretKey::generate();
    let conn = transport::connect_tcp(
        tcp,
        &key,
        transport::PeerPolicy::Key(server.authority_key()),
        &transport::Tuning::client(),
    )
    .await
    .expect("TCP connection");
    assert_eq!(conn.kind(), transport::ConnKind::Tcp);
    let conn = LoginConnection::from_conn(conn);
    conn.register(
        &user("tcpuser"),
        &display("Over TCP"),
        &password("a good password"),
    )
    .await
    .expect("register over TCP");
    let credential = conn
        .login(&user("tcpuser"), &password("a good password"))
        .await
        .expect("login over TCP");
    credential
        .verify_for_key(
            &server.authority_key(),
            proto::UnixTime::from_system(std::time::SystemTime::now()),
            &key.public(),
        )
        .expect("bound to the TCP client's TLS key");
    server.shutdown().await;
}
