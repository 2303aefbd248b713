//! What one client can make a server hold: a connection budget shared by the server's QUIC
//! and TCP listeners, a cap per source address, and a bounded number of yamux streams.

mod common;

use common::*;
use std::sync::Arc;
use tokio::io::AsyncWriteExt as _;
use tokio_util::compat::{FuturesAsyncReadCompatExt as _, TokioAsyncReadCompatExt as _};
use transport::{
    ConnectError, ConnectionLimiter, Endpoint, FrameLimits, PeerPolicy, ServerOptions, TcpListener,
    Tuning,
};

struct Server {
    quic: Endpoint,
    tcp_addr: std::net::SocketAddr,
    key: proto::PublicKey,
    events: tokio::sync::mpsc::Receiver<ServerEvent>,
    _tcp_events: tokio::sync::mpsc::Receiver<ServerEvent>,
}

/// A server with both listeners built from clones of one `ServerOptions`, as the
/// login server and supernodes do.
async fn server(options: ServerOptions) -> Server {
    let identity = key();
    let quic = Endpoint::bind(loopback(), &identity, Some(options.clone())).expect("bind quic");
    let tcp = Arc::new(
        TcpListener::bind(loopback(), &identity, options)
            .await
            .expect("bind tcp"),
    );
    let tcp_addr = tcp.local_addr().expect("addr");
    let events = serve(FrameLimits::default(), {
        let quic = quic.clone();
        move || {
            let quic = quic.clone();
            async move { quic.accept().await }
        }
    });
    let tcp_events = serve(FrameLimits::default(), move || {
        let tcp = tcp.clone();
        async move { tcp.accept().await }
    });
    Server {
        quic,
        tcp_addr,
        key: identity.public(),
        events,
        _tcp_events: tcp_events,
    }
}

async fn dial_quic(server: &Server) -> Result<transport::Conn, ConnectError> {
    Endpoint::bind(loopback(), &key(), None)
        .expect("bind client")
        .connect(
            server.quic.local_addr().expect("addr"),
            PeerPolicy::Key(server.key),
            &Tuning::client(),
        )
        .await
}

async fn dial_tcp(server: &Server) -> Result<transport::Conn, ConnectError> {
    transport::connect_tcp(
        server.tcp_addr,
        &key(),
        PeerPolicy::Key(server.key),
        &Tuning::client(),
    )
    .await
}

async fn echo(conn: &transport::Conn, text: &str) -> Result<Response, transport::RequestError> {
    transport::request(conn, &Request::Echo(text.into()), FrameLimits::default()).await
}

#[tokio::test]
async fn quic_and_tcp_listeners_of_one_server_share_one_connection_budget() {
    let limiter = ConnectionLimiter::new(1);
    let mut server = server(ServerOptions {
        connections: limiter.clone(),
        ..ServerOptions::default()
    })
    .await;
    let quic = dial_quic(&server).await.expect("the first connection fits");
    assert!(matches!(
        next_event(&mut server.events).await,
        ServerEvent::Connected(_)
    ));
    let tcp = match dial_tcp(&server).await {
        // TLS 1.3 clients may finish before the server ends the socket; the refusal then
        // shows on the first request.
        Ok(conn) => echo(&conn, "over budget").await.map(drop),
        Err(error) => Err(transport::RequestError::Frame(
            transport::FrameIoError::Decode(error.to_string()),
        )),
    };
    assert!(
        tcp.is_err(),
        "a TCP connection beyond the shared budget was served"
    );
    assert_eq!(limiter.open_connections(), 1);

    quic.close(0, "done");
    drop(quic);
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    while limiter.open_connections() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let tcp = dial_tcp(&server)
        .await
        .expect("the freed slot is usable over TCP");
    assert_eq!(
        echo(&tcp, "fits").await.expect("served"),
        Response::Echo("fits".into())
    );
}

#[tokio::test]
async fn one_source_address_is_capped_across_both_transports() {
    let limiter = ConnectionLimiter::new(100)
        .with_max_per_ip(2)
        .with_loopback_exempt(false);
    let mut server = server(ServerOptions {
        connections: limiter.clone(),
        ..ServerOptions::default()
    })
    .await;
    let first = dial_quic(&server).await.expect("first");
    let second = dial_tcp(&server).await.expect("second");
    assert_eq!(
        echo(&second, "two").await.expect("served"),
        Response::Echo("two".into())
    );
    assert!(matches!(
        next_event(&mut server.events).await,
        ServerEvent::Connected(_)
    ));
    let third = dial_quic(&server).await;
    assert!(matches!(third, Err(ConnectError::Refused(_))), "{third:?}");
    assert_eq!(
        limiter.open_connections_from("127.0.0.1".parse().expect("ip")),
        2
    );
    assert_eq!(
        echo(&first, "still served").await.expect("served"),
        Response::Echo("still served".into())
    );
}

#[tokio::test]
async fn loopback_clients_are_exempt_from_the_per_address_cap_by_default() {
    let server = server(ServerOptions::default()).await;
    let per_ip = ServerOptions::default()
        .connections
        .max_connections_per_ip();
    let mut conns = Vec::new();
    for i in 0..per_ip + 2 {
        let conn = dial_tcp(&server).await.expect("loopback is not capped");
        assert_eq!(
            echo(&conn, &i.to_string()).await.expect("served"),
            Response::Echo(i.to_string())
        );
        conns.push(conn);
    }
}

#[tokio::test]
async fn a_tcp_peer_opening_more_streams_than_the_limit_loses_its_connection() {
    let server = server(ServerOptions::default()).await;
    let config =
        transport::tls::client_config(&key(), PeerPolicy::Key(server.key)).expect("client config");
    let stream = tokio::net::TcpStream::connect(server.tcp_addr)
        .await
        .expect("tcp");
    let name = rustls::pki_types::ServerName::IpAddress(server.tcp_addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .expect("tls");
    // A peer that ignores our stream limit: yamux's own default allows it 512 streams.
    let mut connection =
        yamux::Connection::new(tls.compat(), yamux::Config::default(), yamux::Mode::Client);
    let mut streams = Vec::new();
    // Twice the limit, and far below the 64 a server used to allow.
    const STREAMS: usize = 16;
    const { assert!(transport::tcp::YAMUX_MAX_STREAMS < STREAMS) };
    for _ in 0..STREAMS {
        let stream = std::future::poll_fn(|cx| connection.poll_new_outbound(cx))
            .await
            .expect("open locally");
        streams.push(stream.compat());
    }
    let writes = async {
        for stream in &mut streams {
            // Streams reach the server with their first data frame.
            if stream.write_all(&[0]).await.is_err() || stream.flush().await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await
    };
    let driven = async {
        loop {
            match std::future::poll_fn(|cx| connection.poll_next_inbound(cx)).await {
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return,
            }
        }
    };
    tokio::time::timeout(PROMPTLY, async {
        tokio::select! {
            () = driven => {}
            () = writes => {}
        }
    })
    .await
    .expect("the server must end a connection with too many streams");
}
