//! A call whose media flows directly keeps going when the caller's home supernode — a real
//! `supernode` process — is killed with SIGKILL mid-call: no goodbye, no graceful close. The
//! call lasts its full length, ends by its own hang-up, which reaches the callee at once
//! (over the call's media path: the dead supernode's connection has not timed out yet), and
//! both sides keep hearing each other after the kill.
//!
//! Layout: an in-process login server; an in-process supernode that admits two clients (bob,
//! the callee, and carol, who only fills the second place so that alice is turned away as
//! "busy"); and the killable `supernode` process, which is therefore alice's home. Carol goes
//! offline once the call is up, so alice has somewhere to re-home after the kill.

mod cli_net;

use cli_net::{
    CallWavs, Net, RATE, WAIT, hung_up, power_at, read_samples, start_login, supernode_config,
};
use login_server::LoginServer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use supernode::shell::RunningSupernode;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

const CALL_SECONDS: u64 = 8;
const KILL_AFTER: Duration = Duration::from_secs(2);

/// The `supernode` binary next to `peerphone`, built on demand when cargo did not build it
/// for this test run.
fn supernode_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_peerphone")).with_file_name("supernode");
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "supernode", "--bin", "supernode"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the supernode binary failed");
    }
    assert!(path.is_file(), "no supernode binary at {}", path.display());
    path
}

fn relay_base() -> u16 {
    46_000 + (std::process::id() % 100) as u16 * 40
}

/// The killable supernode process, admitted by the login server; its QUIC address.
async fn spawn_supernode_process(login: &LoginServer, data_dir: &Path) -> (Child, String) {
    let low = relay_base() + 20;
    let mut child = Command::new(supernode_binary())
        .args(["--login-server", &login.quic_addr().to_string()])
        .args(["--authority-key", &login.authority_key().to_string()])
        .args(["--listen", "127.0.0.1:0"])
        .args(["--turn-listen", "127.0.0.1:0"])
        .args(["--relay-ports", &format!("{low}-{}", low + 19)])
        .args(["--allow-relay-to", "127.0.0.0/8"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn supernode");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let admitted = async {
        let mut quic_addr = None;
        while let Some(line) = lines.next_line().await.expect("read supernode stderr") {
            eprintln!("[supernode process] {line}");
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let fields = &value["fields"];
            if fields["message"] == "supernode started" {
                quic_addr = fields["quic_addr"].as_str().map(str::to_owned);
            }
            if fields["message"] == "admitted by the login server" {
                return quic_addr.expect("started before admitted");
            }
        }
        panic!("the supernode process exited before it was admitted");
    };
    let quic_addr = tokio::time::timeout(WAIT, admitted)
        .await
        .expect("supernode process admitted in time");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[supernode process] {line}");
        }
    });
    (child, quic_addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_goes_on_when_the_callers_supernode_process_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let login = start_login(dir.path()).await;
    let mut config = supernode_config(&login, dir.path().join("sn-in-process"));
    config.turn_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let low = relay_base();
    config.relay_ports = Some(low..=low + 19);
    config.allow_relay_to = vec!["127.0.0.0/8".parse().expect("cidr")];
    config.directory_poll = Duration::from_millis(300);
    config.revocation_poll = Duration::from_secs(1);
    config.heartbeat = Duration::from_secs(2);
    config.core.max_clients = 2;
    let in_process = RunningSupernode::start(config)
        .await
        .expect("supernode starts");
    let in_process_addr = in_process.quic_addr().to_string();
    let net = Net {
        dir,
        login,
        supernodes: vec![in_process],
    };

    let alice = net.registered("alice").await;
    let bob = net.registered("bob").await;
    let carol = net.registered("carol").await;
    let files = net.dir.path();
    let wavs = CallWavs::tones(files, CALL_SECONDS as f64 + 4.0);

    // Bob and carol fill the in-process supernode while it is the only one.
    let mut bob_online = bob.spawn(&wavs.answering_args());
    let bob_in = bob_online.wait_event("logged_in", &[("user", "bob")]).await;
    assert_eq!(bob_in["supernode"], in_process_addr.as_str(), "{bob_in}");
    let mut carol_online = carol.spawn(&["online"]);
    let carol_in = carol_online
        .wait_event("logged_in", &[("user", "carol")])
        .await;
    assert_eq!(
        carol_in["supernode"],
        in_process_addr.as_str(),
        "{carol_in}"
    );

    let (mut killable, killable_addr) =
        spawn_supernode_process(&net.login, &files.join("sn-process")).await;

    let seconds = CALL_SECONDS.to_string();
    let mut call = alice.spawn(&wavs.call_args(&seconds, &[]));
    let alice_in = call.wait_event("logged_in", &[("user", "alice")]).await;
    assert_eq!(
        alice_in["supernode"],
        killable_addr.as_str(),
        "alice must home on the supernode process: {alice_in}"
    );
    let connected = call.wait_event("call_connected", &[("peer", "bob")]).await;
    let connected_at = tokio::time::Instant::now();
    assert_eq!(connected["path"], "direct", "{connected}");
    let call_id = connected["call_id"].as_str().expect("id").to_owned();

    // A free place for alice to re-home once her supernode is gone.
    carol_online.stop().await;

    tokio::time::sleep_until(connected_at + KILL_AFTER).await;
    killable
        .start_kill()
        .expect("SIGKILL the supernode process");
    let status = killable.wait().await.expect("wait for the supernode");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );

    let ended = hung_up(call, &call_id).await;
    let call_lasted = connected_at.elapsed();
    let stats = &ended["stats"];
    assert!(
        stats["duration_s"].as_f64().expect("duration") >= CALL_SECONDS as f64 - 1.0,
        "{stats}"
    );
    // 50 packets a second: at least 80 % of the call arrived, most of it after the kill.
    let enough = CALL_SECONDS * 50 * 8 / 10;
    assert!(
        stats["packets_received"].as_u64().expect("received") >= enough,
        "{stats}"
    );
    // Bob's call also outlives the kill, and alice's hang-up reaches him promptly although
    // her home supernode is dead and its connection not yet timed out: call control also
    // takes the call's media path. Both calls last the same time, give or take the media
    // stopping on each side.
    let bob_ended = bob_online
        .wait_event("call_ended", &[("call_id", &call_id)])
        .await;
    let bob_stats = &bob_ended["stats"];
    assert_eq!(bob_ended["reason"], "hangup", "{bob_ended}");
    let alice_duration = stats["duration_s"].as_f64().expect("duration");
    let bob_duration = bob_stats["duration_s"].as_f64().expect("duration");
    assert!(
        bob_duration >= CALL_SECONDS as f64 - 1.0 && bob_duration <= alice_duration + 1.0,
        "bob's call lasted {bob_duration} s, alice's {alice_duration} s: {bob_ended}"
    );
    assert!(
        bob_stats["packets_received"].as_u64().expect("received") >= enough,
        "{bob_ended}"
    );
    eprintln!("bob's call ended {}", bob_ended["reason"]);
    bob_online.stop().await;

    // Seconds 4 to 7 of each recording, well after the kill (bob's goes on recording silence
    // after alice left), carry the other side's tone.
    let after_kill = RATE as usize * 4..RATE as usize * 7;
    for (rec, theirs, own) in [
        (&wavs.alice_rec, 1000.0, 440.0),
        (&wavs.bob_rec, 440.0, 1000.0),
    ] {
        let samples = read_samples(rec);
        assert!(
            samples.len() >= after_kill.end,
            "{} recorded {} samples",
            rec.display(),
            samples.len()
        );
        let end = &samples[after_kill.clone()];
        let (heard, echo) = (power_at(end, theirs), power_at(end, own));
        assert!(
            heard > 1e-3 && heard > 10.0 * echo,
            "{}: the other side's tone {heard} vs own {echo}",
            rec.display()
        );
    }
    eprintln!(
        "call lasted {:.1} s after connecting",
        call_lasted.as_secs_f64()
    );
    net.stop().await;
}
