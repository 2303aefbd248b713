//! Loss impairment on a router's forwarding path and on the public segment: about the
//! configured share of datagrams disappears, and none once it is switched off. Root only.

mod support;

use std::time::Duration;

use lab::agent::Agent;
use lab::{Behind, Lab, NatKind};
use support::{Reflector, agent_binary};

const PROBES: usize = 300;
const BATCH: usize = 25;

/// Sends `PROBES` datagrams to the reflector and counts the answers, in batches small
/// enough for the socket's receive buffer.
fn answered(agent: &mut Agent, reflector: &Reflector) -> usize {
    let (sock, _) = agent
        .bind("0.0.0.0:0".parse().expect("addr"))
        .expect("bind");
    let mut count = 0;
    for batch in 0..PROBES / BATCH {
        for i in 0..BATCH {
            agent
                .send(sock, reflector.addr(0), &format!("probe {batch} {i}"))
                .expect("send");
        }
        while agent
            .recv(sock, Duration::from_millis(300))
            .expect("recv")
            .is_some()
        {
            count += 1;
        }
    }
    count
}

#[test]
fn router_and_internet_loss_drop_about_the_configured_share() {
    if !lab::require_root("loss_impairment_drops_forwarded_packets") {
        return;
    }
    let mut lab = Lab::new("loss").expect("lab");
    let reflector = Reflector::start(&mut lab);
    let client = lab
        .client("client", Behind::Nat(NatKind::PortRestricted))
        .expect("client");
    let mut agent = Agent::start(&client.host, agent_binary()).expect("agent");
    let router = &client.routers[0];

    assert_eq!(
        answered(&mut agent, &reflector),
        PROBES,
        "no loss by default"
    );

    // 30 % on each of two crossings of the router: 49 % of round trips survive.
    router.set_loss_percent(30).expect("router loss");
    let through_router = answered(&mut agent, &reflector);
    router.set_loss_percent(0).expect("router loss off");
    assert!(
        (PROBES * 35 / 100..=PROBES * 63 / 100).contains(&through_router),
        "{through_router} of {PROBES} answered at 30 % loss per crossing"
    );

    lab.set_internet_loss_percent(30).expect("internet loss");
    let through_internet = answered(&mut agent, &reflector);
    lab.set_internet_loss_percent(0).expect("internet loss off");
    assert!(
        (PROBES * 35 / 100..=PROBES * 63 / 100).contains(&through_internet),
        "{through_internet} of {PROBES} answered at 30 % loss per crossing"
    );

    assert_eq!(
        answered(&mut agent, &reflector),
        PROBES,
        "loss switched off"
    );
    eprintln!(
        "loss: {through_router}/{PROBES} via router at 30 %, {through_internet}/{PROBES} via internet at 30 %"
    );
    lab.teardown().expect("teardown");
}
