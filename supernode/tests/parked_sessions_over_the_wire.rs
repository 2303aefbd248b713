//! A real supernode on loopback parks an idle client's session: the client's QUIC
//! connection closes, sealed heartbeats from its QUIC socket are answered, replayed and
//! forged ones are not, the parked count shows in the metrics, and a client that stops
//! heartbeating is dropped after the session timeout (shortened here).

mod real_support;

use login_server::LoginServer;
use login_server::config::ServerConfig;
use proto::park::{self, ParkDirection, ParkKey, ParkKind, ParkToken, ReplayWindow};
use proto::supernode::{ClientToSupernode, Presence, PresenceStatus, SupernodeToClient};
use real_support::{WAIT, account, http_get};
use std::time::Duration;
use supernode::shell::{RunningSupernode, ShellConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use transport::{Endpoint, PeerPolicy, RawUdp, Tuning};

async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let wait = async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(WAIT * 3, wait)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen in time"));
}

async fn recv(recv: &mut transport::RecvStream) -> SupernodeToClient {
    let read = async {
        let mut header = [0u8; 4];
        recv.read_exact(&mut header).await.expect("header");
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        recv.read_exact(&mut body).await.expect("body");
        SupernodeToClient::decode(&body).expect("decode")
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a message in time")
}

async fn answer(raw: &RawUdp) -> Vec<u8> {
    tokio::time::timeout(WAIT, raw.recv_from())
        .await
        .expect("an answer in time")
        .expect("socket open")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_session_lives_on_authentic_heartbeats_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let login = LoginServer::start(ServerConfig::local(dir.path().join("login")))
        .await
        .expect("login server");
    let mut config = ShellConfig::new(
        login.quic_addr(),
        login.authority_key(),
        dir.path().join("sn"),
    );
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.heartbeat = Duration::from_secs(2);
    config.core.park_after = Duration::from_secs(1);
    config.core.client_timeout = Duration::from_secs(6);
    let supernode = RunningSupernode::start(config)
        .await
        .expect("supernode starts");
    let (device, credential) = account(login.quic_addr(), login.authority_key(), "alice").await;

    let (endpoint, raw) =
        Endpoint::bind_with_raw("127.0.0.1:0".parse().expect("addr"), &device, None).expect("bind");
    let conn = endpoint
        .connect(
            supernode.quic_addr(),
            PeerPolicy::Key(supernode.key()),
            &Tuning::client(),
        )
        .await
        .expect("connect");
    let key = ParkKey::from_exporter(
        conn.export_keying_material(park::PARK_EXPORTER_LABEL)
            .expect("QUIC exports"),
    );
    let (mut send, mut stream) = conn.open_bi().await.expect("stream");
    let hello = ClientToSupernode::Hello {
        version: proto::PROTOCOL_VERSION,
        credential,
        presence: Presence::new(PresenceStatus::Online),
    };
    send.write_all(&hello.encode_frame().expect("encode"))
        .await
        .expect("write");
    let token: ParkToken = loop {
        if let SupernodeToClient::ParkOffer { token } = recv(&mut stream).await {
            break token;
        }
    };
    let accept = ClientToSupernode::ParkAccept { token };
    send.write_all(&accept.encode_frame().expect("encode"))
        .await
        .expect("write");
    assert_eq!(recv(&mut stream).await, SupernodeToClient::Parked { token });
    // The supernode closes the connection; the session stays.
    let closed = tokio::time::timeout(WAIT, conn.closed()).await;
    assert!(closed.is_ok(), "the parked connection closes");
    let metrics = supernode.metrics_addr().expect("metrics");
    eventually("the parked gauge", async || {
        http_get(metrics, "/metrics")
            .await
            .contains("supernode_parked_sessions 1")
    })
    .await;
    assert_eq!(supernode.stats().sessions, 1);

    // Heartbeats from the QUIC socket are answered, sealed, until the client stops.
    let mut window = ReplayWindow::default();
    let first = park::seal(&key, ParkKind::Heartbeat, token, 1);
    for counter in 1..=3 {
        let heartbeat = park::seal(&key, ParkKind::Heartbeat, token, counter);
        raw.send_to(&heartbeat, supernode.quic_addr())
            .await
            .expect("send");
        let header = park::open(
            &key,
            token,
            ParkDirection::SupernodeToClient,
            &mut window,
            &answer(&raw).await,
        )
        .expect("the answer opens");
        assert_eq!(header.kind, ParkKind::HeartbeatAck);
    }

    // From now on only a replay and a forgery arrive: they are refused, and the session
    // is dropped once the session timeout has passed since the last authentic heartbeat.
    let forged = park::seal(
        &ParkKey::from_exporter([1; 32]),
        ParkKind::Heartbeat,
        token,
        9,
    );
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    eventually("the parked session's drop", async || {
        for datagram in [&first, &forged] {
            let _ = attacker.send_to(datagram, supernode.quic_addr()).await;
        }
        supernode.stats().sessions == 0
    })
    .await;
    let stats = supernode.stats();
    assert_eq!(stats.parked, 0);
    assert!(stats.park_refused >= 2, "{stats:?}");
    supernode.shutdown().await;
    login.shutdown().await;
}
