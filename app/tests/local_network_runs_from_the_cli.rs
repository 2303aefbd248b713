//! `peerphone local` as a process, the way a newcomer uses it: it prints the login server
//! and authority key (one JSON object with `--json`), a user registers against them and
//! finds the `echo` test account through the local supernodes, and SIGTERM stops the whole
//! network cleanly within 5 s.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PEERPHONE: &str = env!("CARGO_BIN_EXE_peerphone");
/// Generous: the first start creates keys and a database, and CI machines are slow.
const STARTUP: Duration = Duration::from_secs(60);

struct Local {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Local {
    fn start(profile: &Path) -> Self {
        let mut child = Command::new(PEERPHONE)
            .arg("--profile")
            .arg(profile)
            .args(["--json", "local"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start peerphone local");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The next JSON event on stdout.
    fn event(&self, wait: Duration) -> serde_json::Value {
        let line = self
            .lines
            .recv_timeout(wait)
            .expect("peerphone local printed a line in time");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// SIGTERM; returns how long it took to exit, and the exit status.
    fn terminate(mut self) -> (Duration, std::process::ExitStatus, Vec<String>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let sent = Instant::now();
        let deadline = sent + Duration::from_secs(10);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                break exit;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("peerphone local did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = sent.elapsed();
        let rest = self.lines.try_iter().collect();
        (took, exit, rest)
    }
}

fn peerphone(profile: &Path, args: &[&str]) -> Output {
    Command::new(PEERPHONE)
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env("PEERPHONE_PASSWORD", "correct horse battery staple")
        .stdin(Stdio::null())
        .output()
        .expect("run peerphone")
}

fn events(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn local_prints_its_addresses_serves_registration_and_search_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = Local::start(&dir.path().join("local-profile"));
    let network = local.event(STARTUP);
    assert_eq!(network["event"], "local_network", "{network}");
    let login = network["login_server"].as_str().expect("login_server");
    let authority = network["authority_key"].as_str().expect("authority_key");
    assert!(login.starts_with("127.0.0.1:"), "{login}");
    assert!(
        ["fixed", "ephemeral"].contains(&network["login_ports"].as_str().unwrap_or("")),
        "{network}"
    );
    let supernodes = network["supernodes"].as_array().expect("supernodes");
    assert_eq!(supernodes.len(), 1, "{network}");
    assert!(
        supernodes[0]["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    assert!(supernodes[0]["turn"].as_str().is_some(), "a relay runs");
    assert_eq!(network["echo"]["user"], "echo");
    assert_eq!(network["echo"]["running"], true, "{network}");

    let user = dir.path().join("alice");
    let out = peerphone(
        &user,
        &[
            "--login-server",
            login,
            "--authority-key",
            authority,
            "--json",
            "register",
            "alice",
        ],
    );
    assert!(
        out.status.success(),
        "register: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        events(&out)
            .iter()
            .any(|e| e["event"] == "registered" && e["user"] == "alice"),
        "{out:?}"
    );

    // The profile remembers the local login server; search homes at a local supernode.
    let out = peerphone(&user, &["--json", "search", "echo"]);
    assert!(
        out.status.success(),
        "search: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        events(&out).iter().any(|e| e["user"] == "echo"),
        "the echo account is found: {out:?}"
    );

    let (took, exit, rest) = local.terminate();
    assert!(exit.success(), "peerphone local exited with {exit}");
    assert!(
        took < Duration::from_secs(5),
        "stopped in {took:?}, CONTRACT.md allows 5 s"
    );
    assert!(
        rest.iter().any(|l| l.contains("local_network_stopped")),
        "{rest:?}"
    );
}
