//! The product's ICE-like core (`holepunch-probe`) with relayed candidates allocated on a
//! real supernode's TURN relay (`nat::turn::client` against `--turn-listen`): pairs that
//! cannot punch (symmetric against symmetric or port-restricted, symmetric behind a double
//! NAT) connect through the relay, and a pair that can punch still ends on the direct path.
//! Root only; needs the workspace's `login-server` and `supernode` binaries, else SKIP.

use std::io::Write;
use std::time::Duration;

use lab::servers::{ProductBinaries, PublicSide};
use lab::{Behind, Lab, LabProcess, NatKind};
use serde_json::{Value, json};

const TEST: &str = "ice_core_falls_back_to_the_supernode_relay";
const SYM: Behind = Behind::Nat(NatKind::Symmetric);
const PORT: Behind = Behind::Nat(NatKind::PortRestricted);
const FULL: Behind = Behind::Nat(NatKind::FullCone);
const DOUBLE: Behind = Behind::DoubleNat {
    outer: NatKind::PortRestricted,
    inner: NatKind::PortRestricted,
};

/// (name, caller, callee, final path expected).
const PAIRS: [(&str, Behind, Behind, &str); 4] = [
    ("sym+sym", SYM, SYM, "relay"),
    ("sym+port", SYM, PORT, "relay"),
    ("double+sym", DOUBLE, SYM, "relay"),
    ("full+full", FULL, FULL, "direct"),
];

fn offer(probe: &mut LabProcess) -> Value {
    let line = probe
        .wait_for_stdout(Duration::from_secs(40), |l| l.starts_with('{'))
        .unwrap_or_else(|e| panic!("offer: {e}"));
    serde_json::from_str(&line).expect("offer JSON")
}

fn answer(probe: &mut LabProcess, role: &str, peer_offer: &Value) {
    let line = json!({
        "role": role,
        "credentials": peer_offer["credentials"],
        "candidates": peer_offer["candidates"],
    });
    let stdin = probe.stdin().expect("stdin");
    writeln!(stdin, "{line}").expect("write answer");
    stdin.flush().expect("flush");
}

/// Every result line the probe printed, once it has exited.
fn results(probe: &mut LabProcess) -> Vec<Value> {
    let status = probe
        .wait_with_output(Duration::from_secs(60))
        .expect("probe exits");
    assert!(status.success(), "probe failed: {}", probe.stderr_text());
    probe
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("result").is_some())
        .collect()
}

#[test]
fn ice_core_uses_the_supernode_relay_where_punching_cannot_work() {
    if !lab::require_root(TEST) {
        return;
    }
    let Some(binaries) = ProductBinaries::find(TEST) else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let mut lab = Lab::new("relay").expect("lab");
    let public = PublicSide::start(&mut lab, &binaries, data.path(), 1, Duration::from_secs(30))
        .expect("login server and a supernode");
    let supernode = &public.supernodes[0];

    let mut running = Vec::new();
    for (index, (name, caller, callee, _)) in PAIRS.iter().enumerate() {
        let mut probes = [(*caller, "a"), (*callee, "b")].map(|(behind, side)| {
            let client = lab
                .client(&format!("r{index}{side}"), behind)
                .expect("client");
            let credentials = supernode
                .turn_credentials(&format!("r{index}{side}"), 600)
                .expect("TURN credentials");
            let mut cmd = client.host.command(env!("CARGO_BIN_EXE_holepunch-probe"));
            cmd.args(["--stun", &supernode.turn_addr.to_string()])
                .args(["--turn", &supernode.turn_addr.to_string()])
                .args(["--turn-username", &credentials.username])
                .args(["--turn-password", &credentials.password])
                .args(["--connect-timeout-ms", "8000", "--linger-ms", "2000"]);
            client.host.spawn(cmd).expect("holepunch-probe")
        });
        let offers = [offer(&mut probes[0]), offer(&mut probes[1])];
        answer(&mut probes[0], "controlling", &offers[1]);
        answer(&mut probes[1], "controlled", &offers[0]);
        running.push((*name, probes));
    }

    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for ((name, mut probes), (_, _, _, expected)) in running.into_iter().zip(PAIRS) {
        let sides = [results(&mut probes[0]), results(&mut probes[1])];
        let finals: Vec<String> = sides
            .iter()
            .map(|lines| {
                lines
                    .last()
                    .and_then(|l| l["path"].as_str())
                    .unwrap_or("none")
                    .to_string()
            })
            .collect();
        table.push(format!(
            "{name}: caller {} callee {}",
            Value::from(sides[0].clone()),
            Value::from(sides[1].clone())
        ));
        if finals.iter().any(|path| path != expected) {
            wrong.push(format!(
                "{name}: expected {expected}, got {finals:?}: {sides:?}"
            ));
        }
    }
    eprintln!("ICE core with the supernode relay:\n{}", table.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    drop(public);
    lab.teardown().expect("teardown");
}
