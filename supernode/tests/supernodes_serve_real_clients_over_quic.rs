//! The real thing in one process: a login server and two supernodes on loopback, clients
//! over QUIC with credentials from the login server. Presence crosses supernodes, search
//! finds a user on the other supernode with a verifiable credential, routed payloads arrive,
//! unknown message kinds get a typed error, metrics are served, and shutdown says goodbye.

use client_core::verify_hit;
use login_server::LoginServer;
use login_server::client::LoginConnection;
use login_server::config::ServerConfig;
use proto::login::Password;
use proto::supernode::{
    ClientToSupernode, ErrorCode, GoodbyeReason, Presence, PresenceStatus, RouteOutcome,
    SearchQuery, SupernodeToClient,
};
use proto::{DisplayName, SecretKey, SignedCredential, UnixTime, UserName};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use supernode::shell::{RunningSupernode, ShellConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use transport::{Endpoint, PeerPolicy, RecvStream, SendStream, Tuning};

const WAIT: Duration = Duration::from_secs(20);

struct Client {
    _endpoint: Endpoint,
    send: SendStream,
    recv: RecvStream,
}

impl Client {
    async fn connect(device: &SecretKey, supernode: &RunningSupernode) -> Client {
        let endpoint =
            Endpoint::bind("127.0.0.1:0".parse().expect("addr"), device, None).expect("bind");
        let conn = endpoint
            .connect(
                supernode.quic_addr(),
                PeerPolicy::Key(supernode.key()),
                &Tuning::client(),
            )
            .await
            .expect("connect");
        let (send, recv) = conn.open_bi().await.expect("stream");
        Client {
            _endpoint: endpoint,
            send,
            recv,
        }
    }

    async fn send(&mut self, message: &ClientToSupernode) {
        let frame = message.encode_frame().expect("encode");
        self.send.write_all(&frame).await.expect("write");
    }

    async fn send_raw(&mut self, body: &[u8]) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.send.write_all(&frame).await.expect("write");
    }

    async fn recv(&mut self) -> SupernodeToClient {
        let read = async {
            let mut header = [0u8; 4];
            self.recv.read_exact(&mut header).await.expect("header");
            let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
            self.recv.read_exact(&mut body).await.expect("body");
            SupernodeToClient::decode(&body).expect("decode")
        };
        tokio::time::timeout(WAIT, read)
            .await
            .expect("a message in time")
    }

    /// Reads until `pick` returns something, skipping other messages.
    async fn until<T>(&mut self, mut pick: impl FnMut(&SupernodeToClient) -> Option<T>) -> T {
        loop {
            let message = self.recv().await;
            if let Some(found) = pick(&message) {
                return found;
            }
        }
    }
}

fn user(name: &str) -> UserName {
    UserName::new(name).expect("valid")
}

async fn account(
    login: SocketAddr,
    authority: proto::PublicKey,
    name: &str,
) -> (SecretKey, SignedCredential) {
    let device = SecretKey::generate();
    let endpoint =
        Endpoint::bind("127.0.0.1:0".parse().expect("addr"), &device, None).expect("bind");
    let conn = LoginConnection::connect(&endpoint, login, authority)
        .await
        .expect("login server");
    let password = Password::new("correct horse battery staple").expect("password");
    conn.register(
        &user(name),
        &DisplayName::new(name.to_uppercase()).expect("valid"),
        &password,
    )
    .await
    .expect("register");
    let credential = conn.login(&user(name), &password).await.expect("login");
    (device, credential)
}

async fn supernode(dir: &std::path::Path, login: &LoginServer, metrics: bool) -> RunningSupernode {
    let mut config = ShellConfig::new(login.quic_addr(), login.authority_key(), dir.to_path_buf());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.directory_poll = Duration::from_millis(300);
    config.revocation_poll = Duration::from_secs(1);
    config.heartbeat = Duration::from_secs(2);
    if metrics {
        config.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    } else {
        config.turn_listen = Some("127.0.0.1:0".parse().expect("addr"));
        config.relay_ports = Some(41000..=41099);
    }
    RunningSupernode::start(config)
        .await
        .expect("supernode starts")
}

async fn hello(client: &mut Client, credential: &SignedCredential) {
    client
        .send(&ClientToSupernode::Hello {
            version: proto::PROTOCOL_VERSION,
            credential: credential.clone(),
            presence: Presence::new(PresenceStatus::Online),
        })
        .await;
    let welcome = client.recv().await;
    assert!(
        matches!(welcome, SupernodeToClient::Welcome { .. }),
        "{welcome:?}"
    );
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_search_and_routing_work_between_real_supernodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let login = LoginServer::start(ServerConfig::local(dir.path().join("login")))
        .await
        .expect("login server");
    let a = supernode(&dir.path().join("a"), &login, true).await;
    let b = supernode(&dir.path().join("b"), &login, false).await;
    let (alice_key, alice_cred) = account(login.quic_addr(), login.authority_key(), "alice").await;
    let (bob_key, bob_cred) = account(login.quic_addr(), login.authority_key(), "bob").await;

    let mut alice = Client::connect(&alice_key, &a).await;
    hello(&mut alice, &alice_cred).await;
    let mut bob = Client::connect(&bob_key, &b).await;
    hello(&mut bob, &bob_cred).await;

    for (client, friend) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        client
            .send(&ClientToSupernode::SetAuthorized {
                contacts: vec![user(friend)],
            })
            .await;
        client
            .send(&ClientToSupernode::Watch {
                contacts: vec![user(friend)],
            })
            .await;
    }
    // Presence crosses supernodes (once both know the directory lists them both).
    let seen = alice
        .until(|m| match m {
            SupernodeToClient::PresenceChanged { user: u, presence } if u.as_str() == "bob" => {
                Some(presence.status)
            }
            _ => None,
        })
        .await;
    assert_eq!(seen, PresenceStatus::Online);
    bob.send(&ClientToSupernode::SetPresence {
        presence: Presence::new(PresenceStatus::Away),
    })
    .await;
    alice
        .until(|m| {
            matches!(m, SupernodeToClient::PresenceChanged { presence, .. }
                if presence.status == PresenceStatus::Away)
            .then_some(())
        })
        .await;

    // Search finds bob on the other supernode, with a credential alice can verify.
    alice
        .send(&ClientToSupernode::Search {
            query_id: 9,
            query: SearchQuery::Exact(user("bob")),
        })
        .await;
    let hits = alice
        .until(|m| match m {
            SupernodeToClient::SearchResults {
                query_id: 9, hits, ..
            } => Some(hits.clone()),
            _ => None,
        })
        .await;
    assert_eq!(hits.len(), 1);
    let now = UnixTime::from_system(SystemTime::now());
    let claims = verify_hit(&hits[0], &login.authority_key(), now).expect("verifies");
    assert_eq!(claims.device_key, bob_key.public());
    assert_eq!(hits[0].home.map(|h| h.key), Some(b.key()));

    // A routed payload reaches bob; alice hears it was delivered.
    alice
        .send(&ClientToSupernode::Route {
            id: 5,
            to: user("bob"),
            to_device: None,
            payload: b"sealed".to_vec(),
        })
        .await;
    let payload = bob
        .until(|m| match m {
            SupernodeToClient::Routed { from, payload, .. } if from.as_str() == "alice" => {
                Some(payload.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(payload, b"sealed");
    let outcome = alice
        .until(|m| match m {
            SupernodeToClient::RouteStatus { id: 5, outcome } => Some(*outcome),
            _ => None,
        })
        .await;
    assert_eq!(outcome, RouteOutcome::Delivered);

    // The supernode with a relay mints TURN credentials its relay accepts.
    bob.send(&ClientToSupernode::TurnCredentialsRequest).await;
    let (urls, username) = bob
        .until(|m| match m {
            SupernodeToClient::TurnCredentials { urls, username, .. } => {
                Some((urls.clone(), username.clone()))
            }
            _ => None,
        })
        .await;
    let turn = b.turn_addr().expect("relay runs");
    assert!(
        urls.contains(&format!("turn:{turn}?transport=udp")),
        "{urls:?}"
    );
    assert!(username.ends_with(":bob"));

    // An unknown message kind gets a typed error and the session goes on.
    alice.send_raw(&[200, 1, 0]).await;
    let code = alice
        .until(|m| match m {
            SupernodeToClient::Error { code } => Some(code.clone()),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::UnknownMessage { kind: 200 });
    alice.send(&ClientToSupernode::Ping { nonce: 77 }).await;
    alice
        .until(|m| matches!(m, SupernodeToClient::Pong { nonce: 77, .. }).then_some(()))
        .await;

    // Metrics are served.
    let metrics_addr = a.metrics_addr().expect("metrics");
    let mut sessions_seen = false;
    for _ in 0..50 {
        let text = http_get(metrics_addr, "/metrics").await;
        if text.contains("supernode_sessions 1") {
            sessions_seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sessions_seen, "supernode_sessions gauge");
    assert!(http_get(metrics_addr, "/healthz").await.contains("ok"));

    // Shutdown says goodbye.
    a.shutdown().await;
    let reason = alice
        .until(|m| match m {
            SupernodeToClient::Goodbye { reason } => Some(*reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, GoodbyeReason::ShuttingDown);
    b.shutdown().await;
    login.shutdown().await;
}
