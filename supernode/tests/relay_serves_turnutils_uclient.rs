//! coturn's standard TURN test client, `turnutils_uclient`, relays through the supernode's
//! relay (REST-API shared-secret credentials, channels) to `turnutils_peer` and loses
//! nothing. Skipped, with a message, when the coturn tools are not installed.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use supernode::relay::{RelayConfig, RelayServer};

fn which(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Kills a helper process when the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `N` of the line `Total lost packets N (P%)`.
fn lost_packets(output: &str) -> Option<u64> {
    let line = output.lines().find(|l| l.contains("Total lost packets"))?;
    let after = line.split("Total lost packets").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

/// The `M` of the last `tot_recv_msgs=M`.
fn received_messages(output: &str) -> Option<u64> {
    let line = output
        .lines()
        .rev()
        .find(|l| l.contains("tot_recv_msgs=") && !l.contains("msz="))?;
    let after = line.split("tot_recv_msgs=").nth(1)?;
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnutils_uclient_relays_without_loss() {
    if !which("turnutils_uclient") || !which("turnutils_peer") {
        eprintln!(
            "SKIPPED: turnutils_uclient/turnutils_peer (Debian package coturn) not installed"
        );
        return;
    }
    let secret = "uclient-test-secret";
    let mut config = RelayConfig::new("127.0.0.1:0".parse().expect("addr"), secret.as_bytes());
    config.relay_ports = 52000..=52999;
    config.allow_relay_to = vec!["127.0.0.0/8".parse().expect("cidr")];
    let relay = RelayServer::start(config).await.expect("relay starts");
    let server = relay.listen_addr();

    let peer_port = free_udp_port();
    let _peer = Reaped(
        Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer starts"),
    );

    let (clients, messages) = (4u64, 40u64);
    let uclient = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args([
                "60",
                "turnutils_uclient",
                "-p",
                &server.port().to_string(),
                "-e",
                "127.0.0.1",
                "-r",
                &peer_port.to_string(),
                "-W",
                secret,
                "-u",
                "uclient",
                "-c",
                "-m",
                &clients.to_string(),
                "-n",
                &messages.to_string(),
                "-l",
                "160",
                "127.0.0.1",
            ])
            .output()
            .expect("turnutils_uclient runs")
    });
    let output = tokio::time::timeout(Duration::from_secs(90), uclient)
        .await
        .expect("uclient finishes")
        .expect("blocking task");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "uclient failed:\n{text}");
    assert_eq!(lost_packets(&text), Some(0), "loss reported:\n{text}");
    assert_eq!(
        received_messages(&text),
        Some(clients * messages),
        "not every message came back:\n{text}"
    );
    let stats = relay.stats().await.expect("relay running");
    assert!(
        stats.turn.packets_to_peers >= clients * messages,
        "{stats:?}"
    );
    assert!(
        stats.turn.packets_to_clients >= clients * messages,
        "{stats:?}"
    );
    assert_eq!(stats.turn.malformed, 0, "{stats:?}");
    relay.shutdown().await;
}
