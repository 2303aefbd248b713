//! A Peerphone call relayed by coturn: the supernode hands its clients coturn's URL with
//! TURN REST credentials minted under coturn's `--static-auth-secret`, both `peerphone`
//! processes offer only relayed candidates (`PEERPHONE_RELAY_ONLY=1`), the call connects on
//! the relay path, audio flows both ways, and coturn's own log shows an allocation and
//! channel binds for each user, each bound to the other's coturn-relayed address. Skipped, with a message, when `turnserver` is not installed.

mod cli_net;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cli_net::{Peer, WAIT, find_event, start_login, supernode_config};
use serde_json::Value;
use supernode::shell::{RunningSupernode, TurnSecret};

const SECRET: &str = "coturn-shared-secret-for-peerphone";

fn turnserver() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("turnserver"))
        .find(|p| p.is_file())
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until a STUN Binding request to `server` is answered (coturn is up).
async fn wait_for_stun(server: SocketAddr) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(b"peerphonetid");
    let answered = async {
        let mut buf = [0u8; 1500];
        loop {
            socket.send_to(&request, server).await.expect("send");
            // Retransmits until the server is up; the answer ends the wait.
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
                && n >= 20
                && buf[..2] == [0x01, 0x01]
            {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, answered)
        .await
        .expect("coturn answers STUN");
}

/// coturn on loopback, killed when the test ends.
struct Coturn {
    child: std::process::Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Coturn {
    async fn start(binary: &Path, dir: &Path) -> Coturn {
        let port = free_udp_port();
        let low = 56_000 + (std::process::id() % 100) as u16 * 40;
        let log = dir.join("coturn.log");
        let child = std::process::Command::new(binary)
            .arg("-n")
            // Verbose: session, allocation and usage lines in the log.
            .arg("-v")
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &port.to_string()])
            .args(["--min-port", &low.to_string()])
            .args(["--max-port", &(low + 39).to_string()])
            .args(["--use-auth-secret", "--static-auth-secret", SECRET])
            .args(["--realm", "coturn.test"])
            // The peers are the other client's relayed address, on loopback too.
            .arg("--allow-loopback-peers")
            .args([
                "--no-tls",
                "--no-dtls",
                "--no-tcp",
                "--no-tcp-relay",
                "--no-cli",
            ])
            .arg("--simple-log")
            .arg(format!("--log-file={}", log.display()))
            .arg(format!("--pidfile={}", dir.join("coturn.pid").display()))
            .arg(format!("--userdb={}", dir.join("turndb").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let coturn = Coturn { child, addr, log };
        wait_for_stun(addr).await;
        coturn
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn packets(stats: &Value, field: &str) -> u64 {
    stats[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {stats}"))
}

/// How many requests of `kind` from `user`'s credentials coturn's verbose log reports as
/// successful.
fn coturn_successes(log: &str, user: &str, kind: &str) -> usize {
    let user = format!(":{user}>");
    let done = format!("incoming packet {kind} processed, success");
    log.lines()
        .filter(|l| l.contains(&user) && l.contains(&done))
        .count()
}

/// The relayed addresses coturn handed out (`Local relay addr: IP:PORT`).
fn coturn_relayed_addrs(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| l.split("Local relay addr: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_between_relay_only_clients_goes_through_coturn() {
    let Some(turnserver) = turnserver() else {
        eprintln!("SKIP: turnserver (Debian package coturn) is not installed");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let coturn = Coturn::start(&turnserver, dir.path()).await;

    let login = start_login(dir.path()).await;
    let mut config = supernode_config(&login, dir.path().join("sn"));
    // No relay of its own: the only TURN server clients hear of is coturn.
    config.turn_listen = None;
    config.turn_urls = vec![format!("turn:{}?transport=udp", coturn.addr)];
    config.turn_secret = Some(TurnSecret(SECRET.as_bytes().to_vec()));
    config.directory_poll = Duration::from_millis(300);
    config.heartbeat = Duration::from_secs(2);
    let supernode = RunningSupernode::start(config)
        .await
        .expect("supernode starts");

    // Relay-only: both processes offer only relayed candidates.
    let peer = |name: &str| {
        Peer::new(&login, dir.path(), name).with_env(app::media_path::RELAY_ONLY_ENV, "1")
    };
    let (alice, bob) = (peer("alice"), peer("bob"));
    for p in [&alice, &bob] {
        p.ok(&["register", &p.name]).await;
    }
    let credentials = alice.ok(&["turn-credentials"]).await;
    assert_eq!(
        credentials[0]["urls"][0],
        format!("turn:{}?transport=udp", coturn.addr),
        "{credentials:?}"
    );

    let mut bob_online = bob.spawn(&["online", "--auto-answer"]);
    bob_online.wait_event("logged_in", &[]).await;
    let lines = alice.ok(&["call", "bob", "--seconds", "3"]).await;
    let connected = find_event(&lines, "call_connected");
    assert_eq!(connected["path"], "relay", "{connected}");
    let alice_stats = &find_event(&lines, "call_ended")["stats"];
    let bob_connected = bob_online.wait_event("call_connected", &[]).await;
    assert_eq!(bob_connected["path"], "relay", "{bob_connected}");
    let bob_stats = bob_online.wait_event("call_ended", &[]).await["stats"].clone();
    bob_online.stop().await;

    // 3 s of 20 ms frames is 150 packets each way.
    for (who, stats) in [("alice", alice_stats), ("bob", &bob_stats)] {
        assert!(packets(stats, "packets_sent") > 100, "{who}: {stats}");
        assert!(packets(stats, "packets_received") > 100, "{who}: {stats}");
    }

    // coturn's own log: an allocation for each user on a relayed address of its own, the
    // permission and channel each client installed for the other's relayed address, and
    // the allocation given back (a Refresh, which a 3 s call needs only for the release)
    // although both processes exited right after the call.
    let proof = async {
        loop {
            let log = coturn.log_text();
            let relays = coturn_relayed_addrs(&log);
            let done = ["ALLOCATE", "CREATE_PERMISSION", "CHANNEL_BIND", "REFRESH"]
                .iter()
                .all(|kind| {
                    ["alice", "bob"]
                        .iter()
                        .all(|user| coturn_successes(&log, user, kind) >= 1)
                });
            if done && relays.len() >= 2 {
                return relays;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let relays = tokio::time::timeout(WAIT, proof).await.unwrap_or_else(|_| {
        panic!(
            "coturn's log does not show the relayed call:\n{}",
            coturn.log_text()
        )
    });
    eprintln!("coturn relayed addresses {relays:?}");

    supernode.shutdown().await;
    login.shutdown().await;
}
