//! Path policy: direct over relay, stay on the current path among equals, move relay ->
//! direct when direct opens, fall back to the relay when direct dies; and the hole punching
//! matrix of NAT types.

use nat::discovery::{NatBehavior, NatReport, NatType};
use nat::path::{PathKind, PathOption, direct_path_expected, select_path};

fn option(id: u32, kind: PathKind, priority: u64, alive: bool) -> PathOption<u32> {
    PathOption {
        id,
        kind,
        priority,
        alive,
    }
}

#[test]
fn direct_beats_relay_even_with_lower_priority() {
    let options = [
        option(1, PathKind::Relay, 900, true),
        option(2, PathKind::Direct, 100, true),
    ];
    assert_eq!(select_path(None, &options), Some(2));
    assert_eq!(
        select_path(Some(1), &options),
        Some(2),
        "relay -> direct once direct opens"
    );
}

#[test]
fn falls_back_to_relay_when_direct_dies() {
    let options = [
        option(1, PathKind::Relay, 900, true),
        option(2, PathKind::Direct, 100, false),
    ];
    assert_eq!(select_path(Some(2), &options), Some(1));
    let none = [option(1, PathKind::Relay, 900, false)];
    assert_eq!(select_path(Some(1), &none), None);
}

#[test]
fn current_path_stays_among_equals() {
    let options = [
        option(1, PathKind::Direct, 100, true),
        option(2, PathKind::Direct, 200, true),
    ];
    assert_eq!(select_path(Some(1), &options), Some(1));
    assert_eq!(select_path(None, &options), Some(2));
}

fn report(mapping: NatBehavior, filtering: NatBehavior, nat_type: NatType) -> NatReport {
    NatReport {
        udp: nat_type != NatType::UdpBlocked,
        public_addr: None,
        mapping,
        filtering,
        hairpin: None,
        nat_type,
        supernode_rtt_ms: None,
    }
}

#[test]
fn matrix_matches_the_issue() {
    use NatBehavior::*;
    let open = report(EndpointIndependent, EndpointIndependent, NatType::Open);
    let full = report(EndpointIndependent, EndpointIndependent, NatType::FullCone);
    let restricted = report(
        EndpointIndependent,
        AddressDependent,
        NatType::RestrictedCone,
    );
    let port_restricted = report(
        EndpointIndependent,
        AddressAndPortDependent,
        NatType::PortRestrictedCone,
    );
    let symmetric = report(
        AddressAndPortDependent,
        AddressAndPortDependent,
        NatType::Symmetric,
    );
    let blocked = report(Unknown, Unknown, NatType::UdpBlocked);
    let cases = [
        (&open, &symmetric, true),
        (&full, &port_restricted, true),
        (&port_restricted, &port_restricted, true),
        (&symmetric, &full, true),
        (&symmetric, &restricted, true),
        (&symmetric, &port_restricted, false),
        (&symmetric, &symmetric, false),
        (&blocked, &open, false),
    ];
    for (a, b, expected) in cases {
        assert_eq!(
            direct_path_expected(a, b),
            expected,
            "{:?} vs {:?}",
            a.nat_type,
            b.nat_type
        );
        assert_eq!(
            direct_path_expected(b, a),
            expected,
            "symmetric in its arguments"
        );
    }
}
