//! CONTRACT.md "Network labs": hosts use only 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24
//! and 100.64.0.0/10, and send nothing outside them. Every address and route in every
//! namespace of a full lab lies in those ranges, and the host's own namespace gains no
//! interface. Root only (prints SKIP otherwise).

use std::net::Ipv4Addr;
use std::process::Command;

use lab::{Behind, Lab, NatKind};

fn in_contract_ranges(addr: Ipv4Addr) -> bool {
    let [a, b, c, _] = addr.octets();
    [a, b, c] == [192, 0, 2]
        || [a, b, c] == [198, 51, 100]
        || [a, b, c] == [203, 0, 113]
        || (a == 100 && (64..128).contains(&b))
        || addr.is_loopback()
}

fn ip_json(netns: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["-n", netns, "-j"])
        .args(args)
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ip -j output")
}

fn root_links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect()
}

#[test]
fn every_lab_address_and_route_is_in_the_contract_ranges() {
    if !lab::require_root("lab_stays_inside_the_contract_ranges") {
        return;
    }
    let links_before = root_links();
    let mut lab = Lab::new("ranges").expect("lab");
    lab.public_host("sn1", 2).expect("public host");
    for kind in NatKind::ALL {
        lab.client(kind.name(), Behind::Nat(kind)).expect("client");
    }
    lab.client(
        "double",
        Behind::DoubleNat {
            outer: NatKind::Symmetric,
            inner: NatKind::PortRestricted,
        },
    )
    .expect("double");
    lab.client("open", Behind::Public).expect("public client");

    let mut checked = 0;
    for netns in lab.netns_names() {
        for link in ip_json(netns, &["-4", "addr"]).as_array().expect("links") {
            for info in link["addr_info"].as_array().into_iter().flatten() {
                let local: Ipv4Addr = info["local"].as_str().expect("local").parse().expect("ip");
                assert!(in_contract_ranges(local), "{netns}: address {local}");
                checked += 1;
            }
        }
        for route in ip_json(netns, &["-4", "route", "show", "table", "all"])
            .as_array()
            .expect("routes")
        {
            let dst = route["dst"].as_str().unwrap_or("");
            if let Some(gateway) = route["gateway"].as_str() {
                let gateway: Ipv4Addr = gateway.parse().expect("gateway");
                assert!(in_contract_ranges(gateway), "{netns}: via {gateway}");
            }
            let network = dst.split('/').next().unwrap_or("");
            if let Ok(network) = network.parse::<Ipv4Addr>() {
                let local_table = route["table"].as_str() == Some("local");
                assert!(
                    in_contract_ranges(network) || (local_table && network.is_broadcast()),
                    "{netns}: route {route}"
                );
            } else {
                assert_eq!(dst, "default", "{netns}: route {route}");
            }
        }
    }
    assert!(checked >= 20, "addresses checked: {checked}");
    assert_eq!(
        root_links(),
        links_before,
        "no interface appears in the host's namespace"
    );
    lab.teardown().expect("teardown");
}
