//! With `listen = 127.0.0.1:0` the TCP listener shares the port the kernel picked for QUIC.
//! That port number can already be in use over TCP (another listener, or an outgoing
//! connection's local port); the server must then pick another port instead of failing to
//! start. CI once failed on exactly this.
//!
//! The test runs itself again inside a private network namespace (`unshare --net`, root
//! only) whose ephemeral range is 8 ports, 7 of them held over TCP: without the retry the
//! server fails to start 7 times in 8.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;

const IN_NAMESPACE: &str = "PEERPHONE_TEST_IN_PRIVATE_NETNS";
const FIRST: u16 = 40_000;
const LAST: u16 = 40_007;

#[test]
fn an_ephemeral_quic_port_whose_tcp_side_is_taken_is_skipped() {
    if std::env::var_os(IN_NAMESPACE).is_none() {
        if !lab::require_root("an_ephemeral_quic_port_whose_tcp_side_is_taken_is_skipped") {
            return;
        }
        let exe = std::env::current_exe().expect("test executable path");
        let output = Command::new("unshare")
            .arg("--net")
            .arg(exe)
            .args([
                "--exact",
                "an_ephemeral_quic_port_whose_tcp_side_is_taken_is_skipped",
                "--nocapture",
            ])
            .env(IN_NAMESPACE, "1")
            .output()
            .expect("run unshare (util-linux)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "the run inside the namespace failed:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("1 passed"),
            "the test did not run inside the namespace:\n{stdout}\n{stderr}"
        );
        return;
    }

    let lo = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip (iproute2)");
    assert!(lo.success(), "cannot bring up lo in the namespace");
    std::fs::write(
        "/proc/sys/net/ipv4/ip_local_port_range",
        format!("{FIRST} {LAST}"),
    )
    .expect("narrow the namespace's ephemeral port range");
    let held: Vec<TcpListener> = (FIRST..LAST)
        .map(|port| {
            TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).expect("hold a TCP port")
        })
        .collect();

    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = support::start(dir.path(), None).await;
        assert_eq!(
            server.quic_addr().port(),
            LAST,
            "the only port free over both UDP and TCP"
        );
        assert_eq!(server.tcp_addr().map(|a| a.port()), Some(LAST));
    });
    drop(held);
}
