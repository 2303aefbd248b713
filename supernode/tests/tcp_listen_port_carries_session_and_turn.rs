//! The `--tcp-listen` port carries both what a client whose UDP is blocked needs: its TLS
//! session and TURN over TCP, sorted per connection by the first bytes. Clients are handed
//! a `turn:…?transport=tcp` URL for that port first; a TURN client allocates and relays
//! through it while a TLS session on the same port works; a silent client holds up no one;
//! a connection that opens with neither protocol is closed.

mod real_support;
mod turn_stream_support;

use login_server::LoginServer;
use login_server::config::ServerConfig;
use nat::turn::client::{ClientConfig, ClientEvent, TurnClient};
use proto::supernode::{ClientToSupernode, Presence, PresenceStatus, SupernodeToClient};
use proto::{SecretKey, SignedCredential};
use real_support::{WAIT, account};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use supernode::shell::{RunningSupernode, ShellConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use transport::{Conn, PeerPolicy, RecvStream, SendStream, Tuning};

/// A session over TLS-over-TCP, as a client whose UDP is blocked has it.
struct TcpSession {
    _conn: Conn,
    send: SendStream,
    recv: RecvStream,
}

impl TcpSession {
    async fn open(
        addr: SocketAddr,
        supernode: &RunningSupernode,
        device: &SecretKey,
        credential: &SignedCredential,
    ) -> Self {
        let conn = transport::connect_tcp(
            addr,
            device,
            PeerPolicy::Key(supernode.key()),
            &Tuning::client(),
        )
        .await
        .expect("TLS session over the --tcp-listen port");
        let (send, recv) = conn.open_bi().await.expect("stream");
        let mut session = Self {
            _conn: conn,
            send,
            recv,
        };
        session
            .send(&ClientToSupernode::Hello {
                version: proto::PROTOCOL_VERSION,
                credential: credential.clone(),
                presence: Presence::new(PresenceStatus::Online),
            })
            .await;
        let welcome = session.recv().await;
        assert!(
            matches!(welcome, SupernodeToClient::Welcome { .. }),
            "{welcome:?}"
        );
        session
    }

    async fn send(&mut self, message: &ClientToSupernode) {
        let frame = message.encode_frame().expect("encode");
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

    /// The TURN URLs and credentials the supernode hands this client.
    async fn turn_credentials(&mut self) -> (Vec<String>, String, String) {
        self.send(&ClientToSupernode::TurnCredentialsRequest).await;
        loop {
            if let SupernodeToClient::TurnCredentials {
                urls,
                username,
                password,
                ..
            } = self.recv().await
            {
                return (urls, username, password);
            }
        }
    }
}

async fn start_supernode(
    dir: &std::path::Path,
    login: &LoginServer,
    turn_listen: SocketAddr,
    relay_ports: std::ops::RangeInclusive<u16>,
) -> RunningSupernode {
    let mut config = ShellConfig::new(login.quic_addr(), login.authority_key(), dir.to_path_buf());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.tcp_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.turn_listen = Some(turn_listen);
    config.relay_ports = Some(relay_ports);
    config.allow_relay_to = vec!["127.0.0.0/8".parse().expect("cidr")];
    RunningSupernode::start(config)
        .await
        .expect("supernode starts")
}

/// Drives `client` on `stream` until `done` accepts an event (returned).
async fn drive(
    client: &mut TurnClient,
    stream: &mut TcpStream,
    done: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    turn_stream_support::drive(client, stream, 2048, WAIT, done).await
}

async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(WAIT, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_over_tcp_and_the_tls_session_share_the_tcp_listen_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let login = LoginServer::start(ServerConfig::local(dir.path().join("login")))
        .await
        .expect("login server");
    let supernode = start_supernode(
        &dir.path().join("sn"),
        &login,
        "127.0.0.1:0".parse().expect("addr"),
        41400..=41419,
    )
    .await;
    let shared = supernode.tcp_addr().expect("a --tcp-listen port");
    let turn_port = supernode.turn_addr().expect("a TURN port");

    // A connection that never speaks, opened first: sorting it must hold up no one.
    let mut silent = TcpStream::connect(shared).await.expect("connects");

    let (device, credential) = account(login.quic_addr(), login.authority_key(), "alice").await;
    let mut session = TcpSession::open(shared, &supernode, &device, &credential).await;
    // Had the accept loop waited on the silent connection, the session would have come
    // only after the handshake timeout closed it.
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(1), silent.read(&mut byte))
            .await
            .is_err(),
        "the silent connection is still waiting while the session is served"
    );
    let (urls, username, password) = session.turn_credentials().await;
    let shared_url = format!("turn:{shared}?transport=tcp");
    let turn_port_url = format!("turn:{turn_port}?transport=tcp");
    let position = |url: &str| urls.iter().position(|u| u == url);
    assert!(
        matches!((position(&shared_url), position(&turn_port_url)), (Some(a), Some(b)) if a < b),
        "the --tcp-listen URL is offered, before the TURN port's: {urls:?}"
    );

    let mut client = TurnClient::new(
        ClientConfig::new(shared, username, password).over_stream(),
        rand::random(),
    );
    let mut stream = TcpStream::connect(shared).await.expect("connects");
    client.allocate(Instant::now()).expect("idle");
    let ClientEvent::Allocated { relayed, .. } = drive(&mut client, &mut stream, |e| {
        matches!(
            e,
            ClientEvent::Allocated { .. } | ClientEvent::AllocationFailed(_)
        )
    })
    .await
    else {
        panic!("allocation over the --tcp-listen port failed");
    };

    // Media goes both ways between the TCP client and a UDP peer.
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    let peer_addr = peer.local_addr().expect("addr");
    client
        .bind_channel(Instant::now(), peer_addr)
        .expect("allocated");
    drive(&mut client, &mut stream, |e| {
        matches!(e, ClientEvent::ChannelBound { .. })
    })
    .await;
    let media = b"sealed opus frame".to_vec();
    client.send_to(peer_addr, &media).expect("allocated");
    while let Some(t) = client.poll_transmit() {
        stream.write_all(&t.payload).await.expect("write");
    }
    let mut buf = [0u8; 256];
    let (n, from) = tokio::time::timeout(WAIT, peer.recv_from(&mut buf))
        .await
        .expect("the peer gets the media")
        .expect("recv");
    assert_eq!((from, &buf[..n]), (relayed, &media[..]));
    peer.send_to(b"answer", relayed).await.expect("send");
    let got = drive(&mut client, &mut stream, |e| {
        matches!(e, ClientEvent::Data { .. })
    })
    .await;
    assert_eq!(
        got,
        ClientEvent::Data {
            peer: peer_addr,
            payload: b"answer".to_vec()
        }
    );

    // The TLS session on the same port still answers.
    session.send(&ClientToSupernode::Ping { nonce: 77 }).await;
    loop {
        if let SupernodeToClient::Pong { nonce: 77, .. } = session.recv().await {
            break;
        }
    }

    // Neither TLS nor TURN: closed.
    let mut garbage = TcpStream::connect(shared).await.expect("connects");
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed(&mut garbage).await,
        "a non-TLS, non-TURN connection is closed"
    );
    supernode.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tcp_listen_port_serves_turn_when_the_turn_ports_tcp_side_is_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let login = LoginServer::start(ServerConfig::local(dir.path().join("login")))
        .await
        .expect("login server");
    // Something else holds the TURN port's TCP side; its UDP side is free.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let turn_listen = squatter.local_addr().expect("addr");
    let supernode =
        start_supernode(&dir.path().join("sn"), &login, turn_listen, 41420..=41439).await;
    let shared = supernode.tcp_addr().expect("a --tcp-listen port");
    assert_eq!(
        supernode.turn_addr(),
        Some(turn_listen),
        "the UDP relay runs"
    );

    let (device, credential) = account(login.quic_addr(), login.authority_key(), "bob").await;
    let mut session = TcpSession::open(shared, &supernode, &device, &credential).await;
    let (urls, username, password) = session.turn_credentials().await;
    let tcp_urls: Vec<&String> = urls
        .iter()
        .filter(|u| u.ends_with("?transport=tcp"))
        .collect();
    assert_eq!(
        tcp_urls,
        [&format!("turn:{shared}?transport=tcp")],
        "only the port that serves TURN over TCP is offered: {urls:?}"
    );

    let mut client = TurnClient::new(
        ClientConfig::new(shared, username, password).over_stream(),
        rand::random(),
    );
    let mut stream = TcpStream::connect(shared).await.expect("connects");
    client.allocate(Instant::now()).expect("idle");
    let allocated = drive(&mut client, &mut stream, |e| {
        matches!(
            e,
            ClientEvent::Allocated { .. } | ClientEvent::AllocationFailed(_)
        )
    })
    .await;
    assert!(
        matches!(allocated, ClientEvent::Allocated { relayed, .. } if (41420..=41439).contains(&relayed.port())),
        "{allocated:?}"
    );
    drop(squatter);
    supernode.shutdown().await;
}
