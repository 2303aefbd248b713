//! The real `peerphone` CLI registers an account at the real `login-server` from behind
//! the lab NATs (QUIC over UDP through the NAT; TCP where UDP is blocked). Root only;
//! needs the workspace's `login-server`, `supernode` and `peerphone` binaries, else SKIP.

use std::time::Duration;

use lab::servers::{ProductBinaries, PublicSide};
use lab::{Behind, Lab, NatKind};
use serde_json::Value;

const TEST: &str = "clients_register_through_every_lab_nat";

/// Registers one user behind each of `placements`; returns the failures with stderr.
fn register_behind(label: &str, placements: &[(&str, Behind)]) -> Vec<String> {
    let Some(binaries) = ProductBinaries::find(TEST) else {
        return Vec::new();
    };
    let Some(peerphone) = lab::target_binary("peerphone") else {
        eprintln!("SKIP {TEST}: peerphone is not built");
        return Vec::new();
    };
    let data = tempfile::tempdir().expect("temp dir");
    let mut lab = Lab::new(label).expect("lab");
    let public = PublicSide::start(&mut lab, &binaries, data.path(), 1, Duration::from_secs(30))
        .expect("login server and a supernode");

    // Start every client at once; each is bounded by its own timeout below.
    let mut running = Vec::new();
    for (index, (name, behind)) in placements.iter().enumerate() {
        let client = lab.client(&format!("u{index}"), *behind).expect("client");
        let user = format!("user{index}");
        let mut command = client.host.command(&peerphone);
        command
            .env("PEERPHONE_PASSWORD", "correct horse battery staple")
            .arg("--profile")
            .arg(data.path().join(&user))
            .args(["--login-server", &public.login.addr.to_string()])
            .args(["--authority-key", &public.login.authority_key])
            .args(["--json", "register", &user]);
        running.push((*name, client.host.spawn(command).expect("peerphone")));
    }
    let mut failures = Vec::new();
    for (name, mut process) in running {
        let exited_ok = process
            .wait_with_output(Duration::from_secs(60))
            .is_ok_and(|s| s.success());
        let registered = process.stdout_lines().iter().any(|line| {
            serde_json::from_str::<Value>(line).is_ok_and(|v| v["event"] == "registered")
        });
        eprintln!("register behind {name}: exit ok {exited_ok}, registered {registered}");
        if !(exited_ok && registered) {
            failures.push(format!("{name}: {}", process.stderr_text()));
        }
    }
    drop(public);
    lab.teardown().expect("teardown");
    failures
}

#[test]
fn peerphone_registers_from_behind_every_udp_passing_nat() {
    if !lab::require_root(TEST) {
        return;
    }
    let placements = [
        ("public", Behind::Public),
        ("full-cone", Behind::Nat(NatKind::FullCone)),
        (
            "address-restricted",
            Behind::Nat(NatKind::AddressRestricted),
        ),
        ("port-restricted", Behind::Nat(NatKind::PortRestricted)),
        ("symmetric", Behind::Nat(NatKind::Symmetric)),
        (
            "double",
            Behind::DoubleNat {
                outer: NatKind::Symmetric,
                inner: NatKind::PortRestricted,
            },
        ),
    ];
    let failures = register_behind("register", &placements);
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}

/// Behind a router that drops all outbound UDP, the login client's QUIC handshake gets no
/// answer and it falls back to TLS over TCP on the same address (`--tcp-listen` default).
#[test]
fn peerphone_registers_over_tcp_when_udp_is_blocked() {
    if !lab::require_root(TEST) {
        return;
    }
    let placements = [("udp-blocked", Behind::Nat(NatKind::UdpBlocked))];
    let failures = register_behind("register-tcp", &placements);
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}
