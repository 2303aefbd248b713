//! Shared set-up for the tests with real supernodes on loopback: a bare client speaking the
//! session protocol over QUIC, accounts at a real login server, supernodes with test timings.
#![allow(dead_code)]

use login_server::LoginServer;
use login_server::client::LoginConnection;
use proto::login::Password;
use proto::supernode::{ClientToSupernode, Presence, PresenceStatus, SupernodeToClient};
use proto::{DisplayName, SecretKey, SignedCredential, UnixTime, UserName};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use supernode::shell::{RunningSupernode, ShellConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use transport::{Endpoint, PeerPolicy, RecvStream, SendStream, Tuning};

pub const WAIT: Duration = Duration::from_secs(20);

/// The whole response to one `GET path` (the metrics endpoint closes after answering).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

pub struct Client {
    _endpoint: Endpoint,
    send: SendStream,
    recv: RecvStream,
}

impl Client {
    pub async fn connect(device: &SecretKey, supernode: &RunningSupernode) -> Client {
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

    pub async fn send(&mut self, message: &ClientToSupernode) {
        let frame = message.encode_frame().expect("encode");
        self.send.write_all(&frame).await.expect("write");
    }

    pub async fn send_raw(&mut self, body: &[u8]) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.send.write_all(&frame).await.expect("write");
    }

    pub async fn recv(&mut self) -> SupernodeToClient {
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
    pub async fn until<T>(&mut self, mut pick: impl FnMut(&SupernodeToClient) -> Option<T>) -> T {
        loop {
            let message = self.recv().await;
            if let Some(found) = pick(&message) {
                return found;
            }
        }
    }
}

pub fn user(name: &str) -> UserName {
    UserName::new(name).expect("valid")
}

pub async fn account(
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

pub async fn supernode(
    dir: &std::path::Path,
    login: &LoginServer,
    metrics: bool,
) -> RunningSupernode {
    supernode_polling(dir, login, metrics, Duration::from_millis(300)).await
}

pub async fn supernode_polling(
    dir: &std::path::Path,
    login: &LoginServer,
    metrics: bool,
    directory_poll: Duration,
) -> RunningSupernode {
    let mut config = ShellConfig::new(login.quic_addr(), login.authority_key(), dir.to_path_buf());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.directory_poll = directory_poll;
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

pub async fn hello(client: &mut Client, credential: &SignedCredential) {
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

/// Waits until the login server's directory lists `key` (the supernode was admitted).
pub async fn admitted(login: &LoginServer, key: proto::PublicKey) {
    let listed = async {
        loop {
            let signed = login.service().directory().await.expect("directory");
            let directory = signed
                .verify(
                    &login.authority_key(),
                    UnixTime::from_system(SystemTime::now()),
                )
                .expect("verifies");
            if directory.entries.iter().any(|e| e.key == key) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, listed)
        .await
        .expect("admitted in time");
}
