//! The real product on the lab: a `login-server` and a `supernode` (STUN on
//! `--turn-listen`, RFC 5780 with `--alternate-addr` on its second address) on the public
//! segment, and one client behind each lab NAT running `netcheck-probe` against the
//! supernode. Every NAT must be named correctly. Root only; needs the workspace's
//! `login-server` and `supernode` binaries (built by `cargo test --workspace`), else SKIP.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use lab::{Behind, Lab, LabProcess, NatKind};
use serde_json::Value;

fn product_binary(name: &str) -> Option<PathBuf> {
    let found = lab::target_binary(name);
    if found.is_none() {
        eprintln!("**************************************************************");
        eprintln!("SKIP netcheck_against_real_supernode: `{name}` is not built");
        eprintln!("(run `cargo test --workspace`, or `cargo build -p {name}` first)");
        eprintln!("**************************************************************");
    }
    found
}

#[test]
fn netcheck_names_every_lab_nat_against_a_real_supernode() {
    if !lab::require_root("netcheck_against_real_supernode") {
        return;
    }
    let (Some(login_bin), Some(supernode_bin)) =
        (product_binary("login-server"), product_binary("supernode"))
    else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let login_dir = data.path().join("login");
    let supernode_dir = data.path().join("supernode");

    let mut lab = Lab::new("real-supernode").expect("lab");
    let login_host = lab.public_host("login", 1).expect("login host");
    let supernode_host = lab.public_host("sn1", 2).expect("supernode host");

    let login_addr = SocketAddr::new(IpAddr::V4(login_host.ip()), 7400);
    let mut login_cmd = login_host.command(&login_bin);
    login_cmd
        .arg("--listen")
        .arg(login_addr.to_string())
        .arg("--data-dir")
        .arg(&login_dir);
    let mut login = login_host.spawn(login_cmd).expect("login-server");
    let ready = login
        .wait_for_stdout(Duration::from_secs(30), |l| l.starts_with("listening"))
        .expect("login-server ready");
    let authority = ready
        .split_whitespace()
        .find_map(|field| field.strip_prefix("authority="))
        .expect("authority key in the ready line")
        .to_string();

    let turn = SocketAddr::new(IpAddr::V4(supernode_host.addrs()[0]), 3478);
    let alternate = SocketAddr::new(IpAddr::V4(supernode_host.addrs()[1]), 3479);
    let mut supernode_cmd = supernode_host.command(&supernode_bin);
    supernode_cmd
        .args(["--login-server", &login_addr.to_string()])
        .args(["--authority-key", &authority])
        .args(["--listen", &format!("{}:7500", supernode_host.ip())])
        .args(["--turn-listen", &turn.to_string()])
        .args(["--alternate-addr", &alternate.to_string()])
        .arg("--data-dir")
        .arg(&supernode_dir);
    let supernode = supernode_host.spawn(supernode_cmd).expect("supernode");
    supernode
        .wait_for_stderr(Duration::from_secs(30), |l| {
            l.contains("STUN/TURN relay listening")
        })
        .unwrap_or_else(|e| panic!("supernode relay up: {e}\n{}", supernode.stderr_text()));

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
        let mut cmd = client.host.command(env!("CARGO_BIN_EXE_netcheck-probe"));
        cmd.args([
            "--server",
            &turn.to_string(),
            "--rto-ms",
            "200",
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
    drop((supernode, login));
    lab.teardown().expect("teardown");
}
