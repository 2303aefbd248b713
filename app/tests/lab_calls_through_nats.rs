//! Real `peerphone` calls through real Linux NATs (the `lab` crate's network namespaces):
//! two users registered at the lab's login server, each behind its own lab NAT, the callee
//! running `online --auto-answer`, the caller `call --seconds 2`, both with `--play` and
//! `--json`. For every pair of the NAT traversal issue's matrix the call connects, media
//! flows both ways (`packets_received > 0` in both `call_ended` stats), and the path is what
//! the two NATs allow: direct where hole punching can open a pair, the home supernode's
//! relay for symmetric against symmetric or port-restricted, and the relay reached over TCP
//! (TURN over TCP on the relay's port) from behind a router that drops all outbound UDP.
//!
//! Root only, and needs the workspace's `login-server` and `supernode` binaries; prints SKIP
//! otherwise. Prints the matrix (docs/nat-matrix.md) with `--nocapture`. Pairs run one
//! after the other so setup times are not skewed by the other calls.

use std::path::Path;
use std::time::{Duration, Instant};

use lab::servers::{ProductBinaries, PublicSide};
use lab::{Behind, Host, Lab, LabProcess, NatKind};
use serde_json::Value;

const TEST: &str = "lab_calls_through_nats";
const PASSWORD: &str = "correct horse battery staple";
const CALL_SECONDS: &str = "2";
/// Generous bounds for single events; the whole matrix takes about a minute.
const EVENT_TIMEOUT: Duration = Duration::from_secs(45);

const FULL: Behind = Behind::Nat(NatKind::FullCone);
const ADDR: Behind = Behind::Nat(NatKind::AddressRestricted);
const PORT: Behind = Behind::Nat(NatKind::PortRestricted);
const SYM: Behind = Behind::Nat(NatKind::Symmetric);
/// A home router (full cone) behind a carrier's port-restricted NAT: a port-restricted cone.
const DOUBLE_PORT: Behind = Behind::DoubleNat {
    outer: NatKind::PortRestricted,
    inner: NatKind::FullCone,
};
/// A router that drops every outbound UDP datagram (TCP passes).
const UDP_BLOCKED: Behind = Behind::Nat(NatKind::UdpBlocked);
/// A home router (full cone) behind a carrier's symmetric NAT: symmetric.
const DOUBLE_SYM: Behind = Behind::DoubleNat {
    outer: NatKind::Symmetric,
    inner: NatKind::FullCone,
};

/// (name, caller, callee, path both sides must end on).
const PAIRS: [(&str, Behind, Behind, &str); 12] = [
    ("public + public", Behind::Public, Behind::Public, "direct"),
    ("public + symmetric", Behind::Public, SYM, "direct"),
    ("full-cone + full-cone", FULL, FULL, "direct"),
    ("address-restricted + port-restricted", ADDR, PORT, "direct"),
    ("port-restricted + port-restricted", PORT, PORT, "direct"),
    ("symmetric + full-cone", SYM, FULL, "direct"),
    ("symmetric + address-restricted", SYM, ADDR, "direct"),
    (
        "double NAT (port-restricted) + port-restricted",
        DOUBLE_PORT,
        PORT,
        "direct",
    ),
    ("symmetric + port-restricted", SYM, PORT, "relay"),
    ("symmetric + symmetric", SYM, SYM, "relay"),
    (
        "double NAT (symmetric) + symmetric",
        DOUBLE_SYM,
        SYM,
        "relay",
    ),
    ("UDP blocked + full-cone", UDP_BLOCKED, FULL, "relay"),
];

/// One registered user in a lab host.
struct User {
    name: String,
    host: Host,
    profile: std::path::PathBuf,
}

struct Env<'a> {
    peerphone: &'a Path,
    public: &'a PublicSide,
}

impl Env<'_> {
    fn spawn(&self, user: &User, args: &[&str]) -> LabProcess {
        let mut command = user.host.command(self.peerphone);
        command
            .env("PEERPHONE_PASSWORD", PASSWORD)
            .arg("--profile")
            .arg(&user.profile)
            .args(["--login-server", &self.public.login.addr.to_string()])
            .args(["--authority-key", &self.public.login.authority_key])
            .arg("--json")
            .args(args);
        user.host.spawn(command).expect("peerphone")
    }
}

fn events(process: &LabProcess) -> Vec<Value> {
    process
        .stdout_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

fn is_event(line: &str, event: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|v| v["event"] == event)
}

fn event<'a>(events: &'a [Value], name: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["event"] == name)
}

/// The path a side ended on: its last `call_path`, else its `call_connected` path.
fn final_path(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["event"] == "call_connected" || e["event"] == "call_path")
        .filter_map(|e| e["path"].as_str())
        .next_back()
        .unwrap_or("none")
        .to_string()
}

fn packets_received(events: &[Value]) -> u64 {
    event(events, "call_ended")
        .and_then(|e| e["stats"]["packets_received"].as_u64())
        .unwrap_or(0)
}

/// A 48 kHz mono 16-bit WAV of a tone, for `--play` (so media is never silence).
fn write_tone(path: &Path, frequency_hz: f64, seconds: f64) {
    let rate: u32 = 48_000;
    let count = (f64::from(rate) * seconds) as u32;
    let mut bytes = Vec::with_capacity(44 + 2 * count as usize);
    let data_len = 2 * count;
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&(rate * 2).to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..count {
        let t = f64::from(i) / f64::from(rate);
        let sample = (0.3 * (2.0 * std::f64::consts::PI * frequency_hz * t).sin() * 32767.0) as i16;
        bytes.extend_from_slice(&sample.to_le_bytes());
    }
    std::fs::write(path, bytes).expect("write tone");
}

/// Outcome of one call, for the table and the assertions.
struct Outcome {
    /// `None` when it did not exit in time (or died of a signal).
    caller_exit: Option<i32>,
    caller: Vec<Value>,
    callee: Vec<Value>,
    caller_stderr: String,
    callee_stderr: String,
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "caller events {:?}\ncallee events {:?}\ncaller stderr (tail):\n{}\ncallee stderr (tail):\n{}",
            self.caller,
            self.callee,
            tail(&self.caller_stderr),
            tail(&self.callee_stderr)
        )
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The callee goes online with auto-answer; the caller calls it for `CALL_SECONDS`; both
/// are waited for on their JSON events.
fn call(env: &Env<'_>, caller: &User, callee: &User, tone: &Path) -> Outcome {
    let tone = tone.to_str().expect("utf-8 path");
    let mut online = env.spawn(callee, &["online", "--auto-answer", "--play", tone]);
    online
        .wait_for_stdout(EVENT_TIMEOUT, |l| is_event(l, "logged_in"))
        .unwrap_or_else(|e| panic!("{} never logged in: {e}", callee.name));
    let mut dial = env.spawn(
        caller,
        &[
            "call",
            &callee.name,
            "--play",
            tone,
            "--seconds",
            CALL_SECONDS,
        ],
    );
    // Either side may fail; collect what happened rather than panic here.
    let _ = dial.wait_for_stdout(EVENT_TIMEOUT, |l| is_event(l, "call_ended"));
    let caller_exit = dial
        .wait_with_output(EVENT_TIMEOUT)
        .ok()
        .and_then(|s| s.code());
    let _ = online.wait_for_stdout(Duration::from_secs(15), |l| is_event(l, "call_ended"));
    let _ = online.terminate();
    let _ = online.wait_with_output(Duration::from_secs(10));
    Outcome {
        caller_exit,
        caller: events(&dial),
        callee: events(&online),
        caller_stderr: dial.stderr_text(),
        callee_stderr: online.stderr_text(),
    }
}

struct Lab2 {
    lab: Lab,
    public: PublicSide,
    data: tempfile::TempDir,
}

fn start(label: &str) -> Option<Lab2> {
    if !lab::require_root(TEST) {
        return None;
    }
    let binaries = ProductBinaries::find(TEST)?;
    let data = tempfile::tempdir().expect("temp dir");
    let mut lab = Lab::new(label).expect("lab");
    let public = PublicSide::start(&mut lab, &binaries, data.path(), 2, Duration::from_secs(30))
        .expect("login server and supernodes");
    Some(Lab2 { lab, public, data })
}

/// Places `name` behind `behind` and registers it (run by the caller of `register_all`).
fn place(lab: &mut Lab, data: &Path, name: &str, behind: Behind) -> User {
    let client = lab.client(name, behind).expect("client");
    User {
        name: name.to_string(),
        host: client.host,
        profile: data.join(name),
    }
}

fn register_all(env: &Env<'_>, users: &[&User]) {
    let running: Vec<(String, LabProcess)> = users
        .iter()
        .map(|u| (u.name.clone(), env.spawn(u, &["register", &u.name])))
        .collect();
    for (name, mut process) in running {
        let ok = process
            .wait_with_output(Duration::from_secs(90))
            .is_ok_and(|s| s.success());
        assert!(ok, "register {name}: {}", process.stderr_text());
    }
}

#[test]
fn calls_connect_through_every_lab_nat_pair_on_the_path_the_nats_allow() {
    let Some(Lab2 {
        mut lab,
        public,
        data,
    }) = start("calls")
    else {
        return;
    };
    let peerphone = Path::new(env!("CARGO_BIN_EXE_peerphone"));
    let tone = data.path().join("tone.wav");
    write_tone(&tone, 440.0, 4.0);
    let mut pairs = Vec::new();
    for (index, (name, caller, callee, expected)) in PAIRS.iter().enumerate() {
        let a = place(&mut lab, data.path(), &format!("c{index}a"), *caller);
        let b = place(&mut lab, data.path(), &format!("c{index}b"), *callee);
        pairs.push((*name, a, b, *expected));
    }
    let env = Env {
        peerphone,
        public: &public,
    };
    let everyone: Vec<&User> = pairs.iter().flat_map(|(_, a, b, _)| [a, b]).collect();
    register_all(&env, &everyone);

    let mut table = vec![
        "| caller + callee | path (caller / callee) | expected | setup_ms | packets received (caller / callee) | wall time (s) |".to_string(),
        "| --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    let mut wrong = Vec::new();
    for (name, a, b, expected) in &pairs {
        let started = Instant::now();
        let outcome = call(&env, a, b, &tone);
        let wall_s = started.elapsed().as_secs_f64();
        let paths = [final_path(&outcome.caller), final_path(&outcome.callee)];
        let received = [
            packets_received(&outcome.caller),
            packets_received(&outcome.callee),
        ];
        let setup_ms = event(&outcome.caller, "call_connected").map(|e| e["setup_ms"].clone());
        let row = format!(
            "| {name} | {} / {} | {expected} | {} | {} / {} | {wall_s:.1} |",
            paths[0],
            paths[1],
            setup_ms.map_or("-".to_string(), |v| v.to_string()),
            received[0],
            received[1],
        );
        eprintln!("{row}");
        table.push(row);
        let connected = event(&outcome.caller, "call_connected").is_some()
            && event(&outcome.callee, "call_connected").is_some();
        if !connected
            || outcome.caller_exit != Some(0)
            || paths.iter().any(|p| p != expected)
            || received.contains(&0)
        {
            wrong.push(format!(
                "{name}: expected connected on {expected} with media both ways, got paths {paths:?}, received {received:?}, caller exit {:?}\n{}",
                outcome.caller_exit,
                outcome.describe()
            ));
        }
    }
    eprintln!("calls through lab NATs:\n{}", table.join("\n"));
    drop(public);
    lab.teardown().expect("teardown");
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// Behind a router that drops all outbound UDP the client logs in over TLS-over-TCP, its
/// media path finds UDP to the relay unanswered and allocates over TCP instead (TURN over
/// TCP on the supernode's `--turn-listen` port), and the call connects on the relay with
/// media both ways. Nothing of this call can use UDP from the caller's side, so every
/// packet it receives came through the TCP allocation.
#[test]
fn a_call_from_behind_a_udp_blocking_router_connects_through_the_relay_over_tcp() {
    let Some(Lab2 {
        mut lab,
        public,
        data,
    }) = start("calls-udp")
    else {
        return;
    };
    let peerphone = Path::new(env!("CARGO_BIN_EXE_peerphone"));
    let tone = data.path().join("tone.wav");
    write_tone(&tone, 440.0, 4.0);
    let a = place(&mut lab, data.path(), "udp-caller", UDP_BLOCKED);
    let b = place(&mut lab, data.path(), "udp-callee", FULL);
    let env = Env {
        peerphone,
        public: &public,
    };
    register_all(&env, &[&a, &b]);
    let started = Instant::now();
    let outcome = call(&env, &a, &b, &tone);
    let received = [
        packets_received(&outcome.caller),
        packets_received(&outcome.callee),
    ];
    let row = format!(
        "udp-blocked + full-cone: connected {}, paths {} / {}, setup {:?} ms, received {} / {}, ended {:?}, {:.1} s",
        event(&outcome.caller, "call_connected").is_some(),
        final_path(&outcome.caller),
        final_path(&outcome.callee),
        event(&outcome.caller, "call_connected").map(|e| e["setup_ms"].clone()),
        received[0],
        received[1],
        event(&outcome.caller, "call_ended").map(|e| e["reason"].clone()),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{row}");
    let detail = outcome.describe();
    drop(public);
    lab.teardown().expect("teardown");
    for (side, events) in [("caller", &outcome.caller), ("callee", &outcome.callee)] {
        let connected = event(events, "call_connected")
            .unwrap_or_else(|| panic!("the {side} connects: {detail}"));
        assert_eq!(connected["path"], "relay", "{side}: {detail}");
        assert_eq!(
            final_path(events),
            "relay",
            "{side} stays on the relay: {detail}"
        );
    }
    assert_eq!(outcome.caller_exit, Some(0), "{detail}");
    // 2 s of 20 ms frames is about 100 packets each way; well over half must arrive.
    assert!(
        received.iter().all(|&n| n >= 50),
        "media both ways through the relay: {received:?}\n{detail}"
    );
    assert_eq!(
        event(&outcome.caller, "call_ended").map(|e| e["reason"].clone()),
        Some(Value::from("hangup")),
        "{detail}"
    );
}
