//! The real product on the lab: a `login-server` and a `supernode` (STUN on
//! `--turn-listen`, RFC 5780 with `--alternate-addr` on its second address) on the public
//! segment, and one client behind each lab NAT running `netcheck-probe` against the
//! supernode. Every NAT must be named correctly. Root only; needs the workspace's
//! `login-server` and `supernode` binaries (built by `cargo test --workspace`), else SKIP.

use std::time::Duration;

use lab::servers::{ProductBinaries, PublicSide};
use lab::{Behind, Lab, LabProcess, NatKind};
use serde_json::Value;

#[test]
fn netcheck_names_every_lab_nat_against_a_real_supernode() {
    if !lab::require_root("netcheck_against_real_supernode") {
        return;
    }
    let Some(binaries) = ProductBinaries::find("netcheck_against_real_supernode") else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let mut lab = Lab::new("real-supernode").expect("lab");
    let public = PublicSide::start(&mut lab, &binaries, data.path(), 2, Duration::from_secs(30))
        .expect("login server and two admitted supernodes");

    let mut cases: Vec<(String, Behind, &str)> = NatKind::ALL
        .iter()
        .map(|&kind| {
            (
                kind.name().to_string(),
                Behind::Nat(kind),
                kind.netcheck_nat_type(),
            )
        })
        .collect();
    cases.push(("public".into(), Behind::Public, "open"));
    cases.push((
        "double".into(),
        Behind::DoubleNat {
            outer: NatKind::PortRestricted,
            inner: NatKind::FullCone,
        },
        "port-restricted-cone",
    ));
    let mut probes: Vec<(String, &str, LabProcess)> = Vec::new();
    for (index, (name, behind, expected)) in cases.into_iter().enumerate() {
        let client = lab.client(&format!("c{index}"), behind).expect("client");
        // Alternate between the two supernodes' STUN services.
        let turn = public.supernodes[index % 2].turn_addr;
        let mut cmd = client.host.command(env!("CARGO_BIN_EXE_netcheck-probe"));
        cmd.args([
            "--server",
            &turn.to_string(),
            "--rto-ms",
            "300",
            "--max-transmissions",
            "4",
        ]);
        // All probes run at once: the slowest (UDP blocked) bounds the test's duration.
        probes.push((
            name,
            expected,
            client.host.spawn(cmd).expect("netcheck-probe"),
        ));
    }
    let mut table = Vec::new();
    for (name, expected, mut probe) in probes {
        let status = probe
            .wait_with_output(Duration::from_secs(60))
            .expect("netcheck-probe finishes");
        assert!(status.success(), "{name}: {}", probe.stderr_text());
        let line = probe.stdout_lines().join("\n");
        let report: Value = serde_json::from_str(&line).expect("JSON report");
        table.push(format!("{name}: {line}"));
        assert_eq!(report["nat_type"], expected, "{name}: {report}");
    }
    eprintln!("netcheck against the supernode:\n{}", table.join("\n"));
    drop(public);
    lab.teardown().expect("teardown");
}
