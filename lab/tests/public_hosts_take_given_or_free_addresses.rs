//! Public hosts get the addresses asked for, or the lowest free ones; taken or foreign
//! addresses are refused. Root only (prints SKIP otherwise).

use std::net::Ipv4Addr;
use std::time::Duration;

use lab::{Lab, LabError};

#[test]
fn public_hosts_take_given_or_free_addresses() {
    if !lab::require_root("public_hosts_take_given_or_free_addresses") {
        return;
    }
    let mut lab = Lab::new("addresses").expect("lab");
    let supernode = lab
        .public_host_at(
            "sn1",
            &[
                Ipv4Addr::new(203, 0, 113, 10),
                Ipv4Addr::new(203, 0, 113, 11),
            ],
        )
        .expect("given addresses");
    assert_eq!(
        supernode.addrs(),
        [
            Ipv4Addr::new(203, 0, 113, 10),
            Ipv4Addr::new(203, 0, 113, 11)
        ]
    );
    let out = supernode
        .run(
            "ip",
            &["-brief", "addr", "show", "eth0"],
            Duration::from_secs(5),
        )
        .expect("ip addr");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("203.0.113.10/24") && text.contains("203.0.113.11/24"),
        "{text}"
    );

    let auto = lab.public_host("auto", 9).expect("free addresses");
    assert_eq!(auto.addrs()[0], Ipv4Addr::new(203, 0, 113, 2));
    assert!(
        !auto.addrs().contains(&Ipv4Addr::new(203, 0, 113, 10)),
        "taken addresses are skipped: {:?}",
        auto.addrs()
    );
    assert_eq!(auto.addrs()[8], Ipv4Addr::new(203, 0, 113, 12));

    for refused in [
        Ipv4Addr::new(203, 0, 113, 10),
        Ipv4Addr::new(203, 0, 113, 100),
        Ipv4Addr::new(192, 0, 2, 5),
    ] {
        assert!(
            matches!(
                lab.public_host_at("refused", &[refused]),
                Err(LabError::BadAddress(a)) if a == refused
            ),
            "{refused}"
        );
    }
    lab.teardown().expect("teardown");
}
