//! The product's ICE-like core (`nat::holepunch`, run by `holepunch-probe` over real
//! sockets) between pairs of lab clients, with host and server-reflexive candidates only
//! (no relay): it connects directly exactly where issue 6 says hole punching can work (a
//! public side; both mappings endpoint-independent; symmetric against an endpoint-
//! independent mapping whose filtering is at most address-dependent) and fails where a
//! relay is needed (symmetric against symmetric or port-restricted, UDP blocked).
//! Root only (prints SKIP otherwise).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lab::{Behind, Lab, LabProcess, NatKind};
use serde_json::{Value, json};

const FULL: Behind = Behind::Nat(NatKind::FullCone);
const ADDR: Behind = Behind::Nat(NatKind::AddressRestricted);
const PORT: Behind = Behind::Nat(NatKind::PortRestricted);
const SYM: Behind = Behind::Nat(NatKind::Symmetric);
const BLOCKED: Behind = Behind::Nat(NatKind::UdpBlocked);
const DOUBLE: Behind = Behind::DoubleNat {
    outer: NatKind::PortRestricted,
    inner: NatKind::PortRestricted,
};

/// (caller, callee, direct path expected).
const PAIRS: [(&str, Behind, Behind, bool); 11] = [
    ("full+full", FULL, FULL, true),
    ("port+port", PORT, PORT, true),
    ("addr+port", ADDR, PORT, true),
    ("public+sym", Behind::Public, SYM, true),
    ("sym+full", SYM, FULL, true),
    ("sym+addr", SYM, ADDR, true),
    ("double+port", DOUBLE, PORT, true),
    ("double+sym", DOUBLE, SYM, false),
    ("sym+sym", SYM, SYM, false),
    ("sym+port", SYM, PORT, false),
    ("blocked+full", BLOCKED, FULL, false),
];

fn offer(probe: &mut LabProcess) -> Value {
    let line = probe
        .wait_for_stdout(Duration::from_secs(20), |l| l.starts_with('{'))
        .expect("offer");
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

fn result(probe: &mut LabProcess) -> Value {
    let line = probe
        .wait_for_stdout(Duration::from_secs(40), |l| l.contains("\"result\""))
        .expect("a result");
    serde_json::from_str(&line).expect("result JSON")
}

#[test]
fn ice_core_connects_directly_exactly_where_nats_allow() {
    if !lab::require_root("ice_core_punches_where_nats_allow") {
        return;
    }
    let mut lab = Lab::new("ice").expect("lab");
    let stun_host = lab.public_host("stun", 1).expect("stun host");
    let stun = SocketAddr::new(IpAddr::V4(stun_host.ip()), 3478);
    let mut server_cmd = stun_host.command(env!("CARGO_BIN_EXE_stun-server"));
    server_cmd.args(["--primary", &stun.to_string()]);
    let mut server = stun_host.spawn(server_cmd).expect("stun-server");
    server
        .wait_for_stdout(Duration::from_secs(10), |l| l == "ready")
        .expect("stun-server ready");

    let mut running = Vec::new();
    for (index, (name, caller, callee, _)) in PAIRS.iter().enumerate() {
        let mut probes = [(*caller, "a"), (*callee, "b")].map(|(behind, side)| {
            let client = lab
                .client(&format!("p{index}{side}"), behind)
                .expect("client");
            let mut cmd = client.host.command(env!("CARGO_BIN_EXE_holepunch-probe"));
            cmd.args(["--stun", &stun.to_string(), "--connect-timeout-ms", "6000"]);
            client.host.spawn(cmd).expect("holepunch-probe")
        });
        let offers = [offer(&mut probes[0]), offer(&mut probes[1])];
        answer(&mut probes[0], "controlling", &offers[1]);
        answer(&mut probes[1], "controlled", &offers[0]);
        running.push((*name, probes));
    }

    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for ((name, mut probes), (_, _, _, direct_expected)) in running.into_iter().zip(PAIRS) {
        let results = [result(&mut probes[0]), result(&mut probes[1])];
        let connected = results.iter().all(|r| r["result"] == "connected");
        let failed = results.iter().all(|r| r["result"] == "failed");
        table.push(format!(
            "{name}: caller {} callee {}",
            results[0], results[1]
        ));
        let as_expected = if direct_expected { connected } else { failed };
        if !as_expected {
            wrong.push(format!(
                "{name}: expected {}, got {results:?}; stderr: {} / {}",
                if direct_expected { "direct" } else { "failure" },
                probes[0].stderr_text(),
                probes[1].stderr_text()
            ));
        }
    }
    eprintln!("ICE core through lab NATs:\n{}", table.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    drop(server);
    lab.teardown().expect("teardown");
}
