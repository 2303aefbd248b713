//! Starts a real coturn (`turnserver`, Debian package coturn) on loopback for the TURN
//! client tests: REST-API shared-secret auth, loopback peers allowed, listening on UDP or
//! on TCP only, killed when the test ends.

// Each test binary that includes this module uses only one of the transports.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const REALM: &str = "peerphone.test";

/// Whether `turnserver` is on the PATH (the tests skip, with a message, when it is not).
pub fn installed() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("turnserver").is_file())
    })
}

/// Which transport coturn listens on; the other is switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Udp,
    Tcp,
}

/// A running coturn; killed on drop, whatever happens.
pub struct Coturn {
    child: Child,
    _dir: tempfile::TempDir,
    pub log: PathBuf,
    pub addr: SocketAddr,
}

impl Coturn {
    /// Starts coturn with `secret` as its static auth secret. It may take a moment to open
    /// its sockets: callers wait until it answers.
    pub fn start(secret: &str, listen: Listen) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = match listen {
            Listen::Udp => UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()),
            Listen::Tcp => TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()),
        }
        .map(|a| a.port())
        .expect("a free loopback port");
        // A relay range unlikely to collide with other tests: derived from the listen port.
        let min_port = 20_000 + (port % 20_000);
        let log = dir.path().join("turn.log");
        let child = Command::new("turnserver")
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--relay-ip=127.0.0.1",
                &format!("--min-port={min_port}"),
                &format!("--max-port={}", min_port + 200),
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
                &format!("--realm={REALM}"),
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
                match listen {
                    Listen::Udp => "--no-tcp",
                    Listen::Tcp => "--no-udp",
                },
                "--no-cli",
                "--simple-log",
                &format!("--log-file={}", log.display()),
                &format!("--pidfile={}", dir.path().join("turn.pid").display()),
                &format!("--userdb={}", dir.path().join("turndb").display()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        Self {
            child,
            _dir: dir,
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// coturn's log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
