//! The `supernode` binary as CONTRACT.md says: usage errors exit 2, `--help` exits 0, a bad
//! flag value is a usage error with a one-line cause, `--config` supplies flags, and SIGTERM
//! shuts it down cleanly (exit 0) within 5 s.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_supernode");

fn authority() -> String {
    proto::SecretKey::generate().public().to_string()
}

#[test]
fn usage_errors_exit_two_with_a_cause() {
    let out = Command::new(BIN).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--login-server"));
    let out = Command::new(BIN)
        .args([
            "--login-server",
            "127.0.0.1:7400",
            "--authority-key",
            "not-a-key",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--authority-key"));
    let out = Command::new(BIN)
        .args(["--login-server", "not-an-address"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).arg("--help").output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--login-server",
        "--authority-key",
        "--listen",
        "--turn-listen",
        "--tcp-listen",
        "--public-addr",
        "--alternate-addr",
        "--relay-ports",
        "--allow-relay-to",
        "--data-dir",
        "--metrics-listen",
        "--config",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help lists {flag}");
    }
}

#[test]
fn sigterm_shuts_down_cleanly_within_five_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("supernode.toml");
    // Flags come from the config file; the login server does not exist, which the
    // supernode survives (it keeps retrying admission).
    std::fs::write(
        &config,
        format!(
            "login-server = \"127.0.0.1:9\"\nauthority-key = \"{}\"\nlisten = \"127.0.0.1:0\"\n\
             turn-listen = \"127.0.0.1:0\"\ntcp-listen = \"127.0.0.1:0\"\nrelay-ports = \"42000-42010\"\n\
             data-dir = \"{}\"\n",
            authority(),
            dir.path().join("data").display()
        ),
    )
    .expect("write config");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // Ready once it logs its start (its signal handlers are installed before that).
    let stderr = child.stderr.take().expect("piped");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("supernode started") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("logs that it started");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let signalled = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("status") {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
