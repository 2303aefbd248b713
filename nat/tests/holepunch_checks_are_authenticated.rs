//! Connectivity checks are answered only when USERNAME, MESSAGE-INTEGRITY and FINGERPRINT are
//! right; an authentic check from an unknown address teaches a peer-reflexive candidate and
//! triggers a check back; random bytes never panic the agent nor make it talk.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nat::Via;
use nat::holepunch::{Candidate, HolePunch, HolePunchConfig, IceCredentials, Role};
use nat::stun::attributes::{IceControlling, Priority, Username, XorMappedAddress};
use nat::stun::{IntegrityKey, MessageClass, TransactionId, binding_request, decode, encode};
use proptest::prelude::*;

fn credentials(ufrag: &str, pwd: &str) -> IceCredentials {
    IceCredentials {
        ufrag: ufrag.to_owned(),
        pwd: pwd.to_owned(),
    }
}

fn agent(now: Instant) -> HolePunch {
    let config = HolePunchConfig::new(
        Role::Controlled,
        1,
        credentials("local", "local-password-0123456789"),
        credentials("remote", "remote-password-012345678"),
    );
    let mut agent = HolePunch::new(config, now, [9; 32]);
    agent.add_local_candidate(Candidate::host("100.64.0.2:5000".parse().expect("addr")));
    agent
}

fn check(username: &str, password: &str, fingerprint: bool) -> Vec<u8> {
    let mut request = binding_request(TransactionId::new([4; 12]));
    request.add_attribute(Username::new(username.to_owned()).expect("short"));
    request.add_attribute(Priority::new(0x6e00_01ff));
    request.add_attribute(IceControlling::new(99));
    encode(
        request,
        Some(&IntegrityKey::short_term(password)),
        fingerprint,
    )
    .expect("encode")
}

const PEER: &str = "203.0.113.9:7000";

fn peer() -> SocketAddr {
    PEER.parse().expect("addr")
}

#[test]
fn authentic_check_is_answered_and_triggers_a_check_back() {
    let now = Instant::now();
    let mut agent = agent(now);
    agent.handle_datagram(
        now,
        peer(),
        &check("local:remote", "local-password-0123456789", true),
    );
    let answer = agent.poll_transmit().expect("answer");
    assert_eq!(answer.via, Via::Direct);
    assert_eq!(answer.destination, peer());
    let decoded = decode(&answer.payload).expect("decodes");
    assert!(decoded.has_fingerprint());
    decoded
        .verify_integrity(&IntegrityKey::short_term("local-password-0123456789"))
        .expect("signed with our password");
    let message = decoded.message();
    assert_eq!(message.class(), MessageClass::SuccessResponse);
    assert_eq!(message.transaction_id(), TransactionId::new([4; 12]));
    assert_eq!(
        message
            .get_attribute::<XorMappedAddress>()
            .expect("mapped")
            .address(),
        peer()
    );

    // The unknown source became a peer-reflexive candidate with a triggered check.
    agent.handle_timeout(now + Duration::from_millis(1));
    let triggered = agent.poll_transmit().expect("triggered check");
    assert_eq!(triggered.destination, peer());
    let decoded = decode(&triggered.payload).expect("decodes");
    decoded
        .verify_integrity(&IntegrityKey::short_term("remote-password-012345678"))
        .expect("signed with the peer's password");
    assert_eq!(
        decoded
            .message()
            .get_attribute::<Username>()
            .expect("username")
            .name(),
        "remote:local"
    );
}

#[test]
fn checks_with_wrong_credentials_or_no_fingerprint_are_ignored() {
    let now = Instant::now();
    for bytes in [
        check("local:remote", "wrong-password", true),
        check("local:someone", "local-password-0123456789", true),
        check("local:remote", "local-password-0123456789", false),
    ] {
        let mut agent = agent(now);
        agent.handle_datagram(now, peer(), &bytes);
        assert!(agent.poll_transmit().is_none());
        agent.handle_timeout(now + Duration::from_millis(1));
        assert!(agent.poll_transmit().is_none(), "no candidate learnt");
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic_nor_make_it_talk(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let now = Instant::now();
        let mut agent = agent(now);
        agent.handle_datagram(now, peer(), &bytes);
        agent.handle_relayed_datagram(now, "198.51.100.7:9".parse().expect("addr"), peer(), &bytes);
        prop_assert!(agent.poll_transmit().is_none());
        prop_assert!(agent.poll_event().is_none());
    }
}
