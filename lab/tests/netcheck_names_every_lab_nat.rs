//! `netcheck-probe` (the `nat::discovery` client over a real socket) names every lab NAT
//! correctly against `stun-server` (the `nat::stun::server` core, RFC 5780 with two
//! addresses and two ports) on the public segment. Root only (prints SKIP otherwise).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use lab::{Behind, Lab, NatKind};
use serde_json::Value;

const STUN_PORT: u16 = 3478;
const STUN_ALT_PORT: u16 = 3479;

fn netcheck(behind: Behind, label: &str) -> (Value, Option<IpAddr>) {
    let mut lab = Lab::new(label).expect("lab");
    let stun_host = lab.public_host("stun", 2).expect("stun host");
    let primary = SocketAddr::new(IpAddr::V4(stun_host.addrs()[0]), STUN_PORT);
    let alternate = SocketAddr::new(IpAddr::V4(stun_host.addrs()[1]), STUN_ALT_PORT);
    let mut server_cmd = stun_host.command(env!("CARGO_BIN_EXE_stun-server"));
    server_cmd
        .arg("--primary")
        .arg(primary.to_string())
        .arg("--alternate")
        .arg(alternate.to_string());
    let mut server = stun_host.spawn(server_cmd).expect("stun-server");
    server
        .wait_for_stdout(Duration::from_secs(10), |line| line == "ready")
        .expect("stun-server ready");

    let client = lab.client("client", behind).expect("client");
    let mut probe_cmd = client
        .host
        .command(Path::new(env!("CARGO_BIN_EXE_netcheck-probe")));
    probe_cmd.args([
        "--server",
        &primary.to_string(),
        "--rto-ms",
        "300",
        "--max-transmissions",
        "4",
    ]);
    let mut probe = client.host.spawn(probe_cmd).expect("netcheck-probe");
    let status = probe
        .wait_with_output(Duration::from_secs(60))
        .expect("netcheck-probe finishes");
    assert!(status.success(), "netcheck-probe: {}", probe.stderr_text());
    let line = probe.stdout_lines().join("\n");
    let report: Value = serde_json::from_str(&line).expect("one JSON object");
    eprintln!("netcheck {label}: {line}");
    let public = client.routers.first().map(|r| IpAddr::V4(r.wan_ip()));
    drop((probe, server));
    lab.teardown().expect("teardown");
    (report, public)
}

fn check(kind: NatKind) {
    if !lab::require_root(&format!("netcheck_names_every_lab_nat::{}", kind.name())) {
        return;
    }
    let (report, public) = netcheck(Behind::Nat(kind), kind.name());
    assert_eq!(report["nat_type"], kind.netcheck_nat_type(), "{report}");
    assert_eq!(report["mapping"], kind.mapping(), "{report}");
    assert_eq!(report["filtering"], kind.filtering(), "{report}");
    if kind == NatKind::UdpBlocked {
        assert_eq!(report["udp"], false, "{report}");
    } else {
        assert_eq!(report["udp"], true, "{report}");
        let mapped: SocketAddr = report["public_addr"]
            .as_str()
            .expect("public_addr")
            .parse()
            .expect("an address");
        assert_eq!(Some(mapped.ip()), public, "{report}");
        assert_eq!(
            report["hairpin"], false,
            "lab NATs do not hairpin: {report}"
        );
        assert!(report["supernode_rtt_ms"].as_f64().is_some(), "{report}");
    }
}

#[test]
fn netcheck_names_full_cone() {
    check(NatKind::FullCone);
}

#[test]
fn netcheck_names_restricted_cone() {
    check(NatKind::AddressRestricted);
}

#[test]
fn netcheck_names_port_restricted_cone() {
    check(NatKind::PortRestricted);
}

#[test]
fn netcheck_names_symmetric() {
    check(NatKind::Symmetric);
}

#[test]
fn netcheck_names_udp_blocked() {
    check(NatKind::UdpBlocked);
}

#[test]
fn netcheck_names_double_nat_by_its_stricter_router() {
    if !lab::require_root("netcheck_names_every_lab_nat::double_nat") {
        return;
    }
    let (report, public) = netcheck(
        Behind::DoubleNat {
            outer: NatKind::PortRestricted,
            inner: NatKind::FullCone,
        },
        "double",
    );
    assert_eq!(report["nat_type"], "port-restricted-cone", "{report}");
    let mapped: SocketAddr = report["public_addr"]
        .as_str()
        .expect("public_addr")
        .parse()
        .expect("an address");
    assert_eq!(Some(mapped.ip()), public, "{report}");
}

#[test]
fn netcheck_names_public_host_open() {
    if !lab::require_root("netcheck_names_every_lab_nat::public") {
        return;
    }
    let (report, _) = netcheck(Behind::Public, "public");
    assert_eq!(report["nat_type"], "open", "{report}");
    assert_eq!(report["mapping"], "endpoint-independent", "{report}");
    assert_eq!(report["filtering"], "endpoint-independent", "{report}");
}

#[test]
fn netcheck_names_double_nat_with_symmetric_carrier_nat_symmetric() {
    if !lab::require_root("netcheck_names_every_lab_nat::double_nat_symmetric_outer") {
        return;
    }
    let (report, _) = netcheck(
        Behind::DoubleNat {
            outer: NatKind::Symmetric,
            inner: NatKind::FullCone,
        },
        "double-sym",
    );
    assert_eq!(report["nat_type"], "symmetric", "{report}");
    assert_eq!(report["mapping"], "address-and-port-dependent", "{report}");
}
