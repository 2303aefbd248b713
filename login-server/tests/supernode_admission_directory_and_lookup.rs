//! Supernodes are admitted per policy, listed in the signed directory while they
//! heartbeat, and may look users up (existence, display name, credentials, home).

mod support;
use login_server::client::ClientError;
use login_server::core::admission::AdmissionRule;
use proto::directory::SupernodeAddrs;
use proto::login::LoginError;
use support::*;

fn addrs(port: u16) -> SupernodeAddrs {
    SupernodeAddrs {
        quic: format!("127.0.0.1:{port}").parse().expect("addr"),
        turn: Some(format!("127.0.0.1:{}", port + 1).parse().expect("addr")),
        tcp: None,
    }
}

#[tokio::test]
async fn open_admission_lists_live_supernodes_and_drops_stale_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = VirtualClock::new();
    let mut cfg = config(dir.path(), None);
    cfg.service.admission.rule = AdmissionRule::Open { max_per_ip: 2 };
    clock.install(&mut cfg);
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    let authority = server.authority_key();
    let sn1 = Device::new();
    let sn2 = Device::new();
    let sn3 = Device::new();
    let c1 = sn1.connect(&server).await;
    let c2 = sn2.connect(&server).await;
    let c3 = sn3.connect(&server).await;
    let dir1 = c1.admit(addrs(7500)).await.expect("admit 1");
    let dir1 = dir1.verify(&authority, clock.now()).expect("signed");
    assert_eq!(dir1.entries.len(), 1);
    assert_eq!(dir1.entries[0].key, sn1.key.public());
    assert_eq!(dir1.entries[0].addrs, addrs(7500));
    c2.admit(addrs(7600)).await.expect("admit 2");
    let err = c3
        .admit(addrs(7700))
        .await
        .expect_err("a third from one address");
    assert!(
        matches!(err, ClientError::Server(LoginError::NotAdmitted(_))),
        "{err}"
    );

    // Clients see both; the directory is signed with the Directory domain.
    let device = Device::new();
    let client = device.connect(&server).await;
    let listed = client
        .directory()
        .await
        .expect("directory")
        .verify(&authority, clock.now())
        .expect("signed");
    assert_eq!(listed.entries.len(), 2);

    // Only sn1 heartbeats; after 30 s sn2 drops out and sn3 gets its place.
    clock.advance_secs(20);
    c1.heartbeat(3).await.expect("heartbeat");
    clock.advance_secs(15);
    let listed = c1
        .supernode_directory()
        .await
        .expect("directory")
        .verify(&authority, clock.now())
        .expect("signed");
    assert_eq!(
        listed.entries.iter().map(|e| e.key).collect::<Vec<_>>(),
        vec![sn1.key.public()]
    );
    let err = c2.heartbeat(0).await.expect_err("stale");
    assert!(
        matches!(err, ClientError::Server(LoginError::NotAdmitted(_))),
        "{err}"
    );
    c3.admit(addrs(7700)).await.expect("room again");
    assert!(listed.version > dir1.version);
    server.shutdown().await;
}

#[tokio::test]
async fn loopback_and_unlisted_supernodes_are_refused_by_a_strict_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listed = Device::new();
    let mut cfg = config(dir.path(), None);
    cfg.service.admission.rule =
        AdmissionRule::Allowlist([listed.key.public()].into_iter().collect());
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    listed
        .connect(&server)
        .await
        .admit(addrs(7500))
        .await
        .expect("allowlisted");
    let err = Device::new()
        .connect(&server)
        .await
        .admit(addrs(7600))
        .await
        .expect_err("not listed");
    assert!(
        matches!(err, ClientError::Server(LoginError::NotAdmitted(_))),
        "{err}"
    );
    server.shutdown().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), None);
    cfg.service.admission.allow_loopback = false;
    let server = login_server::LoginServer::start(cfg).await.expect("start");
    let err = Device::new()
        .connect(&server)
        .await
        .admit(addrs(7500))
        .await
        .expect_err("loopback");
    assert!(
        matches!(err, ClientError::Server(LoginError::NotAdmitted(_))),
        "{err}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn supernodes_look_users_up_and_search_display_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), None).await;
    let device = Device::new();
    let conn = device.connect(&server).await;
    for (name, shown) in [
        ("ivan", "Ivan Petrov"),
        ("ivy", "Ivy Lane"),
        ("judy", "Judy Ivanova"),
    ] {
        conn.register(&user(name), &display(shown), &password("a good password"))
            .await
            .expect("register");
    }
    let cred = conn
        .login(&user("ivan"), &password("a good password"))
        .await
        .expect("login");
    let sn = Device::new();
    let sc = sn.connect(&server).await;
    let err = sc
        .supernode_lookup(&user("ivan"))
        .await
        .expect_err("not admitted yet");
    assert!(
        matches!(err, ClientError::Server(LoginError::NotAdmitted(_))),
        "{err}"
    );
    sc.admit(addrs(7500)).await.expect("admit");
    sc.user_homed(&cred).await.expect("homed");
    let info = sc
        .supernode_lookup(&user("ivan"))
        .await
        .expect("lookup")
        .expect("exists");
    assert_eq!(info.display_name, display("Ivan Petrov"));
    assert_eq!(info.home_supernode, Some(sn.key.public()));
    assert!(info.last_seen.is_some());
    assert_eq!(info.credentials, vec![cred.clone()]);
    assert_eq!(
        sc.supernode_lookup(&user("nobody")).await.expect("lookup"),
        None
    );
    let found = sc.supernode_search("IV", 10).await.expect("search");
    assert_eq!(
        found.iter().map(|u| u.user.to_string()).collect::<Vec<_>>(),
        vec!["ivan", "ivy"]
    );
    let exact = sc.supernode_search("judy", 10).await.expect("search");
    assert_eq!(exact[0].user, user("judy"));
    let bounded = sc.supernode_search("i", 1).await.expect("search");
    assert_eq!(bounded.len(), 1);
    // Devices can search too.
    let by_client = conn.search(&cred, "ivy", 5).await.expect("search");
    assert_eq!(by_client[0].user, user("ivy"));
    server.shutdown().await;
}
