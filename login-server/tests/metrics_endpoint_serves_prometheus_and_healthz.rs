//! `--metrics-listen`: Prometheus text at /metrics (logins, failures, registrations,
//! request latency) and liveness at /healthz.

mod support;
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn metrics_and_healthz_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), None);
    cfg.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    let addr = server.metrics_addr().expect("metrics bound");
    let conn = Device::new().connect(&server).await;
    conn.register(&user("kim"), &display("Kim"), &password("kim's password"))
        .await
        .expect("register");
    conn.login(&user("kim"), &password("kim's password"))
        .await
        .expect("login");
    let _ = conn.login(&user("kim"), &password("wrong")).await;

    let health = get(addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = get(addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for name in [
        "login_registrations_total 1",
        "login_logins_total 1",
        "login_failures_total 1",
        "login_request_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "missing {name} in:\n{metrics}");
    }
    assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    server.shutdown().await;
}
