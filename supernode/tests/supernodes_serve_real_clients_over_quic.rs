//! The real thing in one process: a login server and two supernodes on loopback, clients
//! over QUIC with credentials from the login server. Presence crosses supernodes, search
//! finds a user on the other supernode with a verifiable credential, routed payloads arrive,
//! unknown message kinds get a typed error, metrics are served, and shutdown says goodbye.

mod real_support;

use client_core::verify_hit;
use login_server::LoginServer;
use login_server::config::ServerConfig;
use proto::UnixTime;
use proto::supernode::{
    ClientToSupernode, ErrorCode, GoodbyeReason, Presence, PresenceStatus, RouteOutcome,
    SearchQuery, SupernodeToClient,
};
use real_support::{Client, account, hello, http_get, supernode, user};
use std::time::{Duration, SystemTime};

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
