//! `peerphone --json netcheck` against an in-process login server and a supernode whose
//! STUN service has an RFC 5780 alternate address (127.0.0.2): on loopback there is no NAT,
//! so the report says UDP works, the public address is our own, and the host is open.

mod cli_net;

use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use cli_net::{start_login, supernode_config};
use login_server::LoginServer;
use proto::UnixTime;
use supernode::shell::RunningSupernode;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

/// A port free on both 127.0.0.1 and 127.0.0.2 (the alternate address's port serves on
/// both IPs).
fn free_alternate_port() -> u16 {
    loop {
        let first = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.2", port)).is_ok() {
            return port;
        }
    }
}

async fn admitted(login: &LoginServer, supernode: &RunningSupernode) {
    let listed = async {
        loop {
            let signed = login.service().directory().await.expect("directory");
            let directory = signed
                .verify(
                    &login.authority_key(),
                    UnixTime::from_system(SystemTime::now()),
                )
                .expect("valid directory");
            if directory
                .entry(&supernode.key())
                .is_some_and(|e| e.addrs.turn.is_some())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    timeout(LIMIT, listed).await.expect("supernode admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netcheck_on_loopback_reports_an_open_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let login = start_login(dir.path()).await;
    let mut config = supernode_config(&login, dir.path().join("sn"));
    config.turn_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.alternate_addr = Some(SocketAddr::from(([127, 0, 0, 2], free_alternate_port())));
    config.relay_ports = Some(42000..=42099);
    config.directory_poll = Duration::from_millis(300);
    let supernode = RunningSupernode::start(config)
        .await
        .expect("supernode starts");
    admitted(&login, &supernode).await;
    let stun = supernode.turn_addr().expect("turn listen");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_peerphone"))
        .arg("--profile")
        .arg(dir.path().join("profile"))
        .args(["--login-server", &login.quic_addr().to_string()])
        .args(["--authority-key", &login.authority_key().to_string()])
        .args(["--json", "netcheck"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = timeout(LIMIT, output)
        .await
        .expect("netcheck finishes")
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "netcheck failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one object: {stdout}");
    let report: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    assert_eq!(report["udp"], true, "{report}");
    let public: SocketAddr = report["public_addr"]
        .as_str()
        .expect("public_addr")
        .parse()
        .expect("an address");
    assert_eq!(public.ip(), stun.ip(), "{report}");
    assert_eq!(report["nat_type"], "open", "{report}");
    assert_eq!(report["filtering"], "endpoint-independent", "{report}");
    assert_eq!(report["hairpin"], true, "{report}");
    assert!(
        report["supernode_rtt_ms"]
            .as_f64()
            .is_some_and(|ms| ms >= 0.0),
        "{report}"
    );
    assert_eq!(report["stun_server"], stun.to_string());
    for field in ["mapping", "filtering"] {
        assert!(
            [
                "endpoint-independent",
                "address-dependent",
                "address-and-port-dependent",
                "unknown"
            ]
            .contains(&report[field].as_str().unwrap_or("")),
            "{field}: {report}"
        );
    }
    supernode.shutdown().await;
}
