//! `peerphone netcheck` behind a lab NAT that drops all outbound UDP (`NatKind::UdpBlocked`):
//! the directory still comes from the login server over TLS/TCP, the supernode's STUN never
//! answers, and the report says `udp: false`, `nat_type: udp-blocked`. Root only; needs the
//! workspace's `login-server` and `supernode` binaries, else prints SKIP.

use std::time::{Duration, Instant};

use lab::servers::{ProductBinaries, PublicSide};
use lab::{Behind, Lab, NatKind};
use serde_json::Value;

const TEST: &str = "netcheck_reports_udp_blocked_in_the_lab";

#[test]
fn netcheck_behind_blocked_udp_reports_udp_blocked() {
    if !lab::require_root(TEST) {
        return;
    }
    let Some(binaries) = ProductBinaries::find(TEST) else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let mut lab = Lab::new("nc-blocked").expect("lab");
    let public = PublicSide::start(&mut lab, &binaries, data.path(), 1, Duration::from_secs(30))
        .expect("login server and a supernode");
    let client = lab
        .client("blocked", Behind::Nat(NatKind::UdpBlocked))
        .expect("client");
    let mut command = client.host.command(env!("CARGO_BIN_EXE_peerphone"));
    command
        .arg("--profile")
        .arg(data.path().join("profile"))
        .args(["--login-server", &public.login.addr.to_string()])
        .args(["--authority-key", &public.login.authority_key])
        .args(["--json", "netcheck"]);
    let started = Instant::now();
    let mut netcheck = client.host.spawn(command).expect("peerphone");
    let status = netcheck
        .wait_with_output(Duration::from_secs(90))
        .expect("netcheck finishes");
    let elapsed = started.elapsed();
    assert!(status.success(), "netcheck: {}", netcheck.stderr_text());
    let report = netcheck
        .stdout_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|v| v.get("nat_type").is_some())
        .unwrap_or_else(|| panic!("no report in {:?}", netcheck.stdout_lines()));
    eprintln!("UDP blocked: {report} after {elapsed:?}");
    assert_eq!(report["udp"], false, "{report}");
    assert_eq!(report["nat_type"], "udp-blocked", "{report}");
    assert_eq!(report["public_addr"], Value::Null, "{report}");
    drop(public);
    lab.teardown().expect("teardown");
}
