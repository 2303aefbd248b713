//! Calls' media paths through real Linux NATs (the `lab` crate's network namespaces): each
//! side runs `app::media_path` with a real supernode's STUN and TURN relay; pairs that hole
//! punching can open end on the direct path, the others (symmetric against symmetric or
//! port-restricted) on the relay, and media flows both ways either way.
//!
//! Root only, and needs the workspace's `login-server` and `supernode` binaries; prints SKIP
//! otherwise. Each side is this test binary re-run inside a lab host as the ignored test
//! `media_path_probe`, talking JSON lines marked `PROBE ` on stdout, and one JSON answer on stdin.

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use app::events::PathKind;
use app::media_path::{MediaPath, PathConfig, TurnServer};
use lab::servers::{ProductBinaries, PublicSide};
use lab::{Behind, Lab, LabProcess, NatKind};
use proto::peer::Candidate;
use serde_json::{Value, json};

const TEST: &str = "media_path_through_lab_nats";
const PROBE_ENV: &str = "PEERPHONE_MEDIA_PATH_PROBE";
/// How long each probe runs after it got the peer's offer.
const PROBE_SECONDS: u64 = 12;

const FULL: Behind = Behind::Nat(NatKind::FullCone);
const ADDR: Behind = Behind::Nat(NatKind::AddressRestricted);
const PORT: Behind = Behind::Nat(NatKind::PortRestricted);
const SYM: Behind = Behind::Nat(NatKind::Symmetric);

/// (name, caller, callee, final path expected), from the NAT traversal issue's matrix.
const PAIRS: [(&str, Behind, Behind, &str); 7] = [
    ("public+symmetric", Behind::Public, SYM, "direct"),
    ("full+full", FULL, FULL, "direct"),
    ("port-restricted+port-restricted", PORT, PORT, "direct"),
    ("symmetric+full", SYM, FULL, "direct"),
    ("symmetric+address-restricted", SYM, ADDR, "direct"),
    ("symmetric+port-restricted", SYM, PORT, "relay"),
    ("symmetric+symmetric", SYM, SYM, "relay"),
];

fn probe_line(value: &Value) {
    println!("PROBE {value}");
    let _ = std::io::stdout().flush();
}

/// One side of a call, run inside a lab host by the matrix test below.
#[test]
#[ignore = "a helper process of media_path_calls_through_every_lab_nat_pair"]
fn media_path_probe() {
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    if std::env::var(PROBE_ENV).is_err() {
        eprintln!("SKIP media_path_probe: a helper process, run by the matrix test");
        return;
    }
    let stun: SocketAddr = env("PROBE_STUN").parse().expect("PROBE_STUN");
    let turn = TurnServer::new(
        vec![format!("turn:{stun}?transport=udp")],
        env("PROBE_TURN_USERNAME"),
        env("PROBE_TURN_PASSWORD"),
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (mut path, offer) = runtime
        .block_on(MediaPath::bind(PathConfig {
            stun_server: Some(stun),
            turn: Some(turn),
            ..PathConfig::default()
        }))
        .expect("bind");
    probe_line(&json!({
        "ufrag": offer.ufrag,
        "password": offer.password,
        "candidates": offer.candidates,
    }));
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .expect("answer");
    let answer: Value = serde_json::from_str(line.trim()).expect("answer JSON");
    let candidates: Vec<Candidate> =
        serde_json::from_value(answer["candidates"].clone()).expect("candidates");
    let started = Instant::now();
    runtime.block_on(async move {
        let mut channels = path
            .start(
                answer["controlling"].as_bool().expect("controlling"),
                answer["ufrag"].as_str().expect("ufrag").to_string(),
                answer["password"].as_str().expect("password").to_string(),
                candidates,
            )
            .expect("start");
        let end = tokio::time::Instant::now() + Duration::from_secs(PROBE_SECONDS);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut received = 0u64;
        let mut sent = 0u64;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(end) => break,
                changed = channels.path.changed() => {
                    if changed.is_err() {
                        probe_line(&json!({"ended": true}));
                        break;
                    }
                    let kind = *channels.path.borrow_and_update();
                    let name = match kind {
                        Some(PathKind::Direct) => "direct",
                        Some(PathKind::Relay) => "relay",
                        None => "none",
                    };
                    probe_line(&json!({
                        "path": name,
                        "elapsed_ms": started.elapsed().as_millis(),
                    }));
                }
                _ = tick.tick() => {
                    if channels.path.borrow().is_some() {
                        sent += 1;
                        let _ = channels.outgoing.try_send(vec![0x80; 100]);
                    }
                }
                media = channels.incoming.recv() => {
                    match media {
                        Some(_) => received += 1,
                        None => {
                            probe_line(&json!({"ended": true}));
                            break;
                        }
                    }
                }
            }
        }
        probe_line(&json!({"sent": sent, "received": received}));
        drop(path);
    });
}

fn probe_json(process: &mut LabProcess) -> Value {
    let line = process
        .wait_for_stdout(Duration::from_secs(60), |l| l.contains("PROBE "))
        .unwrap_or_else(|e| panic!("probe line: {e}: {}", process.stderr_text()));
    serde_json::from_str(probe_payload(&line).expect("matched")).expect("probe JSON")
}

/// The JSON after `PROBE ` (libtest may print `test media_path_probe ... ` before it).
fn probe_payload(line: &str) -> Option<&str> {
    line.find("PROBE ").map(|at| &line[at + "PROBE ".len()..])
}

fn answer(process: &mut LabProcess, controlling: bool, peer: &Value) {
    let line = json!({
        "controlling": controlling,
        "ufrag": peer["ufrag"],
        "password": peer["password"],
        "candidates": peer["candidates"],
    });
    let stdin = process.stdin().expect("stdin");
    writeln!(stdin, "{line}").expect("write answer");
    stdin.flush().expect("flush");
}

fn report(process: &mut LabProcess) -> Vec<Value> {
    let status = process
        .wait_with_output(Duration::from_secs(PROBE_SECONDS + 60))
        .expect("probe exits");
    assert!(status.success(), "probe failed: {}", process.stderr_text());
    process
        .stdout_lines()
        .iter()
        .filter_map(|l| probe_payload(l))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

#[test]
fn media_path_calls_through_every_lab_nat_pair() {
    if !lab::require_root(TEST) {
        return;
    }
    let Some(binaries) = ProductBinaries::find(TEST) else {
        return;
    };
    let me = std::env::current_exe().expect("test binary");
    let data = tempfile::tempdir().expect("temp dir");
    let mut lab = Lab::new("media-path").expect("lab");
    let public = PublicSide::start(&mut lab, &binaries, data.path(), 1, Duration::from_secs(30))
        .expect("login server and a supernode");
    let supernode = &public.supernodes[0];

    let mut running = Vec::new();
    for (index, (name, caller, callee, expected)) in PAIRS.iter().enumerate() {
        let mut sides = [(*caller, "a"), (*callee, "b")].map(|(behind, side)| {
            let user = format!("m{index}{side}");
            let client = lab.client(&user, behind).expect("client");
            let credentials = supernode
                .turn_credentials(&user, 600)
                .expect("TURN credentials");
            let mut cmd = client.host.command(&me);
            cmd.args([
                "--ignored",
                "--exact",
                "media_path_probe",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(PROBE_ENV, "1")
            .env("PROBE_STUN", supernode.turn_addr.to_string())
            .env("PROBE_TURN_USERNAME", &credentials.username)
            .env("PROBE_TURN_PASSWORD", &credentials.password);
            client.host.spawn(cmd).expect("probe")
        });
        let offers = [probe_json(&mut sides[0]), probe_json(&mut sides[1])];
        answer(&mut sides[0], true, &offers[1]);
        answer(&mut sides[1], false, &offers[0]);
        running.push((*name, *expected, sides));
    }

    let mut table = vec![
        "| caller + callee | final path (caller / callee) | first path after (ms) | media received (caller / callee) |".to_string(),
        "| --- | --- | --- | --- |".to_string(),
    ];
    let mut wrong = Vec::new();
    for (name, expected, mut sides) in running {
        let reports = [report(&mut sides[0]), report(&mut sides[1])];
        let last_path = |lines: &[Value]| {
            lines
                .iter()
                .filter_map(|l| l["path"].as_str())
                .next_back()
                .unwrap_or("none")
                .to_string()
        };
        let first_ms = |lines: &[Value]| {
            lines
                .iter()
                .find(|l| l["path"].is_string())
                .and_then(|l| l["elapsed_ms"].as_u64())
        };
        let received = |lines: &[Value]| {
            lines
                .iter()
                .find_map(|l| l["received"].as_u64())
                .unwrap_or(0)
        };
        let finals = [last_path(&reports[0]), last_path(&reports[1])];
        let counts = [received(&reports[0]), received(&reports[1])];
        table.push(format!(
            "| {name} | {} / {} | {:?} / {:?} | {} / {} |",
            finals[0],
            finals[1],
            first_ms(&reports[0]),
            first_ms(&reports[1]),
            counts[0],
            counts[1]
        ));
        if finals.iter().any(|p| p != expected) || counts.contains(&0) {
            wrong.push(format!(
                "{name}: expected {expected} with media both ways, got {finals:?} {counts:?}: {reports:?}"
            ));
        }
    }
    eprintln!("media path through lab NATs:\n{}", table.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    drop(public);
    lab.teardown().expect("teardown");
}
