//! A supernode admitted after another joins the mesh at once: the one admitted earlier
//! takes the newcomer's connection for the mesh link it is (fetching the directory again)
//! instead of waiting for its next directory poll, so nothing sent over it is lost.

mod real_support;

use login_server::LoginServer;
use login_server::config::ServerConfig;
use proto::supernode::{ClientToSupernode, Presence, PresenceStatus, SupernodeToClient};
use real_support::{Client, account, admitted, hello, supernode_polling, user};
use std::time::Duration;

/// The supernode admitted first knows only itself until it next polls the directory. The
/// one admitted later connects to it at once (it is responsible for users homed there), and
/// that connection must be taken for the mesh link it is, not for a client: otherwise every
/// record, subscription and presence notice sent over it is lost until a directory poll.
/// Here nobody polls again for an hour, so presence crosses only if the first supernode
/// recognises the newcomer when it connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newly_admitted_supernode_is_a_mesh_peer_before_the_next_directory_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let login = LoginServer::start(ServerConfig::local(dir.path().join("login")))
        .await
        .expect("login server");
    let hour = Duration::from_secs(3600);
    let a = supernode_polling(&dir.path().join("a"), &login, false, hour).await;
    admitted(&login, a.key()).await;
    let b = supernode_polling(&dir.path().join("b"), &login, false, hour).await;
    admitted(&login, b.key()).await;
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
    for (client, friend) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        let seen = client
            .until(|m| match m {
                SupernodeToClient::PresenceChanged { user: u, presence }
                    if u.as_str() == friend =>
                {
                    Some(presence.status)
                }
                _ => None,
            })
            .await;
        assert_eq!(seen, PresenceStatus::Online, "{friend}");
    }
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
    a.shutdown().await;
    b.shutdown().await;
    login.shutdown().await;
}
