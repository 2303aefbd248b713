//! `login-server` and `peerphone register` / `login` as separate processes, exactly as
//! CONTRACT.md says: flags, JSON events, remembered profile, exit codes, clean shutdown.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `login-server` binary next to `peerphone`. `cargo test --workspace` builds every
/// workspace binary with the same features as the tests; only a run of this crate's tests
/// alone lacks it, and then it is built here (a build of one package resolves features on
/// its own and recompiles much of the dependency tree, so it is not done when not needed).
fn login_server_bin() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_peerphone")).with_file_name("login-server");
    if !path.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "login-server", "--bin", "login-server"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building login-server failed");
    }
    assert!(
        path.is_file(),
        "no login-server binary at {}",
        path.display()
    );
    path
}

struct Server {
    child: Child,
    addr: String,
    authority: String,
}

impl Server {
    fn start(bin: &Path, data_dir: &Path) -> Self {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start login-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
                .to_owned()
        };
        Self {
            addr: field("quic"),
            authority: field("authority"),
            child,
        }
    }

    /// SIGTERM; must exit 0 within 5 s.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "login-server exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "login-server did not stop within 5 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peerphone(profile: &Path, password: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerphone"));
    cmd.arg("--profile").arg(profile).args(args);
    match password {
        Some(p) => cmd.env("PEERPHONE_PASSWORD", p),
        None => cmd.env_remove("PEERPHONE_PASSWORD"),
    };
    cmd.stdin(Stdio::null()).output().expect("run peerphone")
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn register_and_login_as_separate_processes() {
    let bin = login_server_bin();
    let data = tempfile::tempdir().expect("tempdir");
    let profile = tempfile::tempdir().expect("tempdir");
    let profile = profile.path().join("alice");

    let server = Server::start(&bin, data.path());
    let printed = Command::new(&bin)
        .args(["authority-key", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("authority-key");
    assert!(printed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout).trim(),
        server.authority
    );

    let out = peerphone(
        &profile,
        Some("correct horse battery"),
        &[
            "--login-server",
            &server.addr,
            "--authority-key",
            &server.authority,
            "--json",
            "register",
            "alice",
        ],
    );
    assert!(out.status.success(), "register failed: {}", stderr(&out));
    let events = json_lines(&out);
    assert_eq!(
        events[0],
        serde_json::json!({"event": "registered", "user": "alice"})
    );
    assert_eq!(
        events[1],
        serde_json::json!({"event": "logged_in", "user": "alice", "supernode": null})
    );
    let key_mode = std::fs::metadata(profile.join("device.key"))
        .expect("device key")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert!(profile.join("credential").exists());

    // The profile remembers the server, the key and the user.
    let out = peerphone(
        &profile,
        Some("correct horse battery"),
        &["--json", "login"],
    );
    assert!(out.status.success(), "login failed: {}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["event"], "logged_in");

    // Wrong password: exit 1, one clear line; JSON error event.
    let out = peerphone(
        &profile,
        Some("wrong password"),
        &["--json", "login", "alice"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("wrong user name or password"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json_lines(&out)[0]["event"], "error");

    // Restart on the same data directory (new port): logging in again works.
    server.stop();
    let server = Server::start(&bin, data.path());
    let out = peerphone(
        &profile,
        Some("correct horse battery"),
        &["--login-server", &server.addr, "login", "alice"],
    );
    assert!(
        out.status.success(),
        "login after restart: {}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("logged in as alice"));

    // Throttling is explicit.
    let mut last = None;
    for _ in 0..6 {
        last = Some(peerphone(&profile, Some("bad guess"), &["login"]));
    }
    let last = last.expect("ran");
    assert_eq!(last.status.code(), Some(1));
    assert!(stderr(&last).contains("try again in"), "{}", stderr(&last));

    // Taken names are reported as such.
    let other = tempfile::tempdir().expect("tempdir");
    let out = peerphone(
        other.path(),
        Some("another password"),
        &[
            "--login-server",
            &server.addr,
            "--authority-key",
            &server.authority,
            "register",
            "alice",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already taken"), "{}", stderr(&out));
    server.stop();

    // Unreachable server: a clear error, exit 1.
    let out = peerphone(&profile, Some("correct horse battery"), &["login"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach the login server"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    let profile = tempfile::tempdir().expect("tempdir");
    let out = peerphone(profile.path(), None, &["register", "Not A Valid Name"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = peerphone(profile.path(), None, &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = peerphone(profile.path(), None, &["login"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no login server configured"),
        "{}",
        stderr(&out)
    );
}
