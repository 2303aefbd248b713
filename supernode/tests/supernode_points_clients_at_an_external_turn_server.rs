//! An operator can point clients at an external TURN server such as coturn: `--turn-url`
//! (repeatable) replaces the URLs clients are handed with their TURN credentials, and
//! `--turn-secret-file` is the shared secret they are minted with (coturn's
//! `--use-auth-secret --static-auth-secret`), which the built-in relay checks too. The
//! flags are in `--help`, have config keys, and are checked as usage errors.
//! (A call relayed by coturn: `app/tests/cli_call_relays_through_coturn.rs`.)

mod real_support;

use login_server::LoginServer;
use login_server::config::ServerConfig;
use proto::supernode::{ClientToSupernode, SupernodeToClient};
use real_support::{Client, account, hello};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use supernode::shell::{RunningSupernode, ShellConfig, TurnSecret};

const BIN: &str = env!("CARGO_BIN_EXE_supernode");
const SECRET: &str = "shared-with-coturn";

fn authority() -> String {
    proto::SecretKey::generate().public().to_string()
}

/// The URLs and credentials a homed client is handed.
async fn turn_credentials(
    login: &LoginServer,
    supernode: &RunningSupernode,
    name: &str,
) -> (Vec<String>, String, String) {
    let (key, credential) = account(login.quic_addr(), login.authority_key(), name).await;
    let mut client = Client::connect(&key, supernode).await;
    hello(&mut client, &credential).await;
    client
        .send(&ClientToSupernode::TurnCredentialsRequest)
        .await;
    client
        .until(|m| match m {
            SupernodeToClient::TurnCredentials {
                urls,
                username,
                password,
                ..
            } => Some((urls.clone(), username.clone(), password.clone())),
            _ => None,
        })
        .await
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_the_configured_turn_urls_with_credentials_under_the_shared_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let login = LoginServer::start(ServerConfig::local(dir.path().join("login")))
        .await
        .expect("login server");
    let external = vec![
        "turn:192.0.2.7:3478?transport=udp".to_owned(),
        "stun:192.0.2.7:3478".to_owned(),
    ];

    // External URLs and no relay of its own.
    let mut config = ShellConfig::new(
        login.quic_addr(),
        login.authority_key(),
        dir.path().join("a"),
    );
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.turn_urls = external.clone();
    config.turn_secret = Some(TurnSecret(SECRET.as_bytes().to_vec()));
    let a = RunningSupernode::start(config).await.expect("starts");
    let (urls, username, password) = turn_credentials(&login, &a, "alice").await;
    assert_eq!(urls, external);
    let verified =
        nat::turn::credentials::verify(SECRET.as_bytes(), &username, &password, now_unix())
            .expect("the external server accepts the credentials");
    assert_eq!(verified.user, "alice");

    // Its own relay with the shared secret: its own URLs, the same secret.
    let mut config = ShellConfig::new(
        login.quic_addr(),
        login.authority_key(),
        dir.path().join("b"),
    );
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.turn_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.relay_ports = Some(41200..=41209);
    config.turn_secret = Some(TurnSecret(SECRET.as_bytes().to_vec()));
    let b = RunningSupernode::start(config).await.expect("starts");
    let (urls, username, password) = turn_credentials(&login, &b, "bob").await;
    let relay = b.turn_addr().expect("relay runs");
    assert_eq!(urls[0], format!("turn:{relay}?transport=udp"));
    nat::turn::credentials::verify(SECRET.as_bytes(), &username, &password, now_unix())
        .expect("minted under the file's secret");

    a.shutdown().await;
    b.shutdown().await;
    login.shutdown().await;
}

#[test]
fn turn_url_and_secret_file_are_documented_and_checked() {
    let out = Command::new(BIN).arg("--help").output().expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--turn-url"), "{help}");
    assert!(help.contains("--turn-secret-file"), "{help}");

    let dir = tempfile::tempdir().expect("tempdir");
    let authority = authority();
    let base = |extra: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args([
                "--login-server",
                "127.0.0.1:9",
                "--authority-key",
                &authority,
            ])
            .args(["--listen", "127.0.0.1:0", "--turn-listen", "127.0.0.1:0"])
            .args(["--tcp-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra);
        command
    };
    // A URL needs the secret the server checks credentials with.
    let out = base(&["--turn-url", "turn:192.0.2.7:3478"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--turn-secret-file"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let secret_file = dir.path().join("turn-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write secret");
    let secret = secret_file.to_str().expect("utf-8");
    let out = base(&[
        "--turn-url",
        "http://192.0.2.7",
        "--turn-secret-file",
        secret,
    ])
    .output()
    .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--turn-url"));

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    let out = base(&["--turn-secret-file", empty.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));

    // The config keys: the supernode starts with them.
    let config = dir.path().join("supernode.toml");
    std::fs::write(
        &config,
        format!(
            "turn-url = [\"turn:192.0.2.7:3478?transport=udp\", \"stun:192.0.2.7:3478\"]\n\
             turn-secret-file = \"{secret}\"\n"
        ),
    )
    .expect("write config");
    let mut child = base(&["--config", config.to_str().expect("utf-8")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().expect("piped");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("supernode started") {
                let _ = ready_tx.send(());
            }
        }
    });
    let started = ready_rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    started.expect("starts with turn-url and turn-secret-file from the config file");
}
