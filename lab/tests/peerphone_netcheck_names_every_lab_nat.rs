//! `peerphone netcheck` (the product's own NAT report, CONTRACT.md) names every lab NAT,
//! run by registered users behind each NAT against the real login server and supernodes
//! (STUN with `--alternate-addr`). Root only; needs `login-server`, `supernode` and a
//! `peerphone` that has the `netcheck` command, else prints SKIP.

use std::time::Duration;

use lab::servers::{ProductBinaries, PublicSide};
use lab::{Behind, Lab, NatKind};
use serde_json::Value;

const TEST: &str = "peerphone_netcheck_names_every_lab_nat";
const PASSWORD: &str = "correct horse battery staple";

#[test]
fn peerphone_netcheck_names_every_udp_passing_lab_nat() {
    if !lab::require_root(TEST) {
        return;
    }
    let Some(binaries) = ProductBinaries::find(TEST) else {
        return;
    };
    let Some(peerphone) = lab::target_binary("peerphone") else {
        eprintln!("SKIP {TEST}: peerphone is not built");
        return;
    };
    let has_netcheck = std::process::Command::new(&peerphone)
        .args(["netcheck", "--help"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_netcheck {
        eprintln!("**************************************************************");
        eprintln!("SKIP {TEST}: this peerphone has no `netcheck` command yet");
        eprintln!("**************************************************************");
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let mut lab = Lab::new("pp-netcheck").expect("lab");
    let public = PublicSide::start(&mut lab, &binaries, data.path(), 2, Duration::from_secs(30))
        .expect("login server and supernodes");
    let mut cases: Vec<(String, Behind, &str)> = [
        NatKind::FullCone,
        NatKind::AddressRestricted,
        NatKind::PortRestricted,
        NatKind::Symmetric,
    ]
    .into_iter()
    .map(|kind| {
        (
            kind.name().to_string(),
            Behind::Nat(kind),
            kind.netcheck_nat_type(),
        )
    })
    .collect();
    cases.push(("public".into(), Behind::Public, "open"));

    let mut running = Vec::new();
    for (index, (name, behind, expected)) in cases.into_iter().enumerate() {
        let client = lab.client(&format!("n{index}"), behind).expect("client");
        let user = format!("netcheck{index}");
        let profile = data.path().join(&user);
        let run = |args: &[&str]| {
            let mut command = client.host.command(&peerphone);
            command
                .env("PEERPHONE_PASSWORD", PASSWORD)
                .arg("--profile")
                .arg(&profile)
                .args(["--login-server", &public.login.addr.to_string()])
                .args(["--authority-key", &public.login.authority_key])
                .arg("--json")
                .args(args);
            client.host.spawn(command).expect("peerphone")
        };
        let mut register = run(&["register", &user]);
        let registered = register
            .wait_with_output(Duration::from_secs(60))
            .is_ok_and(|s| s.success());
        assert!(registered, "{name}: register: {}", register.stderr_text());
        running.push((name, expected, run(&["netcheck"])));
    }
    let mut table = Vec::new();
    for (name, expected, mut netcheck) in running {
        let status = netcheck
            .wait_with_output(Duration::from_secs(90))
            .expect("netcheck finishes");
        assert!(status.success(), "{name}: {}", netcheck.stderr_text());
        let report = netcheck
            .stdout_lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|v| v.get("nat_type").is_some())
            .unwrap_or_else(|| panic!("{name}: no report in {:?}", netcheck.stdout_lines()));
        table.push(format!("{name}: {report}"));
        assert_eq!(report["nat_type"], expected, "{name}: {report}");
    }
    eprintln!("peerphone netcheck:\n{}", table.join("\n"));
    drop(public);
    lab.teardown().expect("teardown");
}
