//! Which working path carries a call: the policy behind hole punching's nominations.
//!
//! Rules, in order: only live paths count; a direct path beats any relayed one (lower
//! latency, no relay cost); among paths of the same kind the current one stays (no flapping
//! between equivalent paths); otherwise the highest priority wins. So a call that starts on
//! the relay moves to the direct path as soon as that opens, and falls back to the relay
//! when the direct path dies. Also [`direct_path_expected`]: which NAT pairs can be hole
//! punched at all (the matrix of the NAT traversal issue).
//!
//! Pure functions: no state beyond what the caller passes in.

use crate::discovery::{NatBehavior, NatReport, NatType};

/// Whether a path goes straight between the peers or through a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathKind {
    /// Peer to peer.
    Direct,
    /// Through a TURN relay on at least one side.
    Relay,
}

/// One path the selector may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathOption<K> {
    /// The caller's identifier of the path.
    pub id: K,
    /// Direct or relayed.
    pub kind: PathKind,
    /// Higher is better (ICE pair priority).
    pub priority: u64,
    /// Whether the path currently works.
    pub alive: bool,
}

/// The path to use given the `current` one and the `options`; `None` when nothing is alive.
pub fn select_path<K: Copy + Eq>(current: Option<K>, options: &[PathOption<K>]) -> Option<K> {
    let alive = || options.iter().filter(|o| o.alive);
    let best_kind = if alive().any(|o| o.kind == PathKind::Direct) {
        PathKind::Direct
    } else {
        PathKind::Relay
    };
    if let Some(current) = current
        && alive().any(|o| o.id == current && o.kind == best_kind)
    {
        return Some(current);
    }
    alive()
        .filter(|o| o.kind == best_kind)
        .max_by_key(|o| o.priority)
        .map(|o| o.id)
}

/// Whether hole punching can open a direct path between hosts with these NATs: a public
/// side; both sides mapping endpoint-independently; or one symmetric side against an
/// endpoint-independent mapping whose filtering is no stricter than address-dependent.
/// Everything else (symmetric against symmetric or port-restricted, blocked UDP) needs the
/// relay.
pub fn direct_path_expected(a: &NatReport, b: &NatReport) -> bool {
    if a.nat_type == NatType::UdpBlocked || b.nat_type == NatType::UdpBlocked {
        return false;
    }
    let open = |r: &NatReport| r.nat_type == NatType::Open;
    let eim = |r: &NatReport| {
        r.nat_type != NatType::Symmetric
            && r.mapping != NatBehavior::AddressDependent
            && r.mapping != NatBehavior::AddressAndPortDependent
    };
    let lenient_filter = |r: &NatReport| {
        matches!(
            r.filtering,
            NatBehavior::EndpointIndependent | NatBehavior::AddressDependent
        )
    };
    if open(a) || open(b) {
        return true;
    }
    match (eim(a), eim(b)) {
        (true, true) => true,
        (true, false) => lenient_filter(a),
        (false, true) => lenient_filter(b),
        (false, false) => false,
    }
}
