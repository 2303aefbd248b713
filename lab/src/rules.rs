//! The nftables recipes of the lab's NAT routers and impairments, as text for `nft -f`.
//!
//! Every router has an interface `wan` (its public or upstream side) and a bridge `lan` (its
//! private LAN). docs/nat-lab.md explains why each recipe yields its RFC 4787 behaviour.

use serde::{Deserialize, Serialize};

/// The NAT behaviours the lab builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatKind {
    /// Endpoint-independent mapping and filtering ("full cone").
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering ("restricted cone").
    AddressRestricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering ("port-restricted
    /// cone", plain `masquerade`).
    PortRestricted,
    /// Address-and-port-dependent mapping and filtering (`masquerade fully-random`, iptables' `--random-fully`).
    Symmetric,
    /// Outbound UDP dropped, TCP masqueraded.
    UdpBlocked,
}

impl NatKind {
    /// All kinds.
    pub const ALL: [NatKind; 5] = [
        NatKind::FullCone,
        NatKind::AddressRestricted,
        NatKind::PortRestricted,
        NatKind::Symmetric,
        NatKind::UdpBlocked,
    ];

    /// A short name for namespaces, test output and docs.
    pub fn name(self) -> &'static str {
        match self {
            NatKind::FullCone => "full-cone",
            NatKind::AddressRestricted => "address-restricted",
            NatKind::PortRestricted => "port-restricted",
            NatKind::Symmetric => "symmetric",
            NatKind::UdpBlocked => "udp-blocked",
        }
    }

    /// The `nat_type` that `peerphone netcheck` must report behind this NAT (the netcheck
    /// JSON spelling of CONTRACT.md).
    pub fn netcheck_nat_type(self) -> &'static str {
        match self {
            NatKind::FullCone => "full-cone",
            NatKind::AddressRestricted => "restricted-cone",
            NatKind::PortRestricted => "port-restricted-cone",
            NatKind::Symmetric => "symmetric",
            NatKind::UdpBlocked => "udp-blocked",
        }
    }

    /// RFC 4787 mapping behaviour in netcheck spelling (`unknown` when UDP cannot pass).
    pub fn mapping(self) -> &'static str {
        match self {
            NatKind::FullCone | NatKind::AddressRestricted | NatKind::PortRestricted => {
                "endpoint-independent"
            }
            NatKind::Symmetric => "address-and-port-dependent",
            NatKind::UdpBlocked => "unknown",
        }
    }

    /// RFC 4787 filtering behaviour in netcheck spelling (`unknown` when UDP cannot pass).
    pub fn filtering(self) -> &'static str {
        match self {
            NatKind::FullCone => "endpoint-independent",
            NatKind::AddressRestricted => "address-dependent",
            NatKind::PortRestricted | NatKind::Symmetric => "address-and-port-dependent",
            NatKind::UdpBlocked => "unknown",
        }
    }
}

/// How long the cone recipes remember a mapping after its last outbound packet, in seconds
/// (longer than conntrack's UDP stream timeout of 120 s, so the DNAT never outlives a quiet
/// but still-open binding by surprise in the other direction).
pub const MAPPING_TIMEOUT_SECS: u32 = 180;

/// The ruleset of a router of `kind`: table `ip lab_nat`.
pub fn nat_ruleset(kind: NatKind) -> String {
    let mut out = String::new();
    out.push_str("table ip lab_nat {\n");
    let cone_dnat = matches!(kind, NatKind::FullCone | NatKind::AddressRestricted);
    if cone_dnat {
        out.push_str(&format!(
            "  map mapped_ports {{\n    type inet_service : ipv4_addr . inet_service\n    \
             flags dynamic,timeout\n    timeout {MAPPING_TIMEOUT_SECS}s\n  }}\n"
        ));
    }
    if kind == NatKind::AddressRestricted {
        out.push_str(&format!(
            "  set contacted {{\n    type ipv4_addr . inet_service\n    \
             flags dynamic,timeout\n    timeout {MAPPING_TIMEOUT_SECS}s\n  }}\n"
        ));
    }
    // The router itself serves nothing: dropping unsolicited packets before conntrack
    // confirms them keeps them from occupying a public port that a client's later outbound
    // flow would need (Linux would otherwise pick another port and break the cone).
    out.push_str(
        "  chain input {\n    type filter hook input priority filter; policy drop;\n    \
         iifname \"lo\" accept\n    ct state established,related accept\n  }\n",
    );
    out.push_str("  chain forward {\n    type filter hook forward priority filter; policy drop;\n");
    if kind == NatKind::UdpBlocked {
        out.push_str("    iifname \"lan\" meta l4proto udp drop\n");
    }
    out.push_str("    ct state established,related accept\n");
    out.push_str("    iifname \"lan\" oifname \"wan\" accept\n");
    if cone_dnat {
        out.push_str("    iifname \"wan\" oifname \"lan\" ct status dnat accept\n");
    }
    out.push_str("  }\n");
    if cone_dnat {
        out.push_str(
            "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n",
        );
        let filter = if kind == NatKind::AddressRestricted {
            "ip saddr . udp dport @contacted "
        } else {
            ""
        };
        out.push_str(&format!(
            "    iifname \"wan\" meta l4proto udp {filter}dnat ip to udp dport map @mapped_ports\n"
        ));
        out.push_str("  }\n");
    }
    let masquerade = if kind == NatKind::Symmetric {
        "masquerade fully-random"
    } else {
        "masquerade"
    };
    out.push_str(&format!(
        "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
         oifname \"wan\" {masquerade}\n  }}\n"
    ));
    if cone_dnat {
        // After srcnat the reply tuple holds the public port the flow was given.
        out.push_str(
            "  chain record {\n    type filter hook postrouting priority srcnat + 10; policy accept;\n",
        );
        out.push_str(
            "    oifname \"wan\" meta l4proto udp ct direction original update @mapped_ports \
             { ct reply proto-dst : ct original ip saddr . ct original proto-src }\n",
        );
        if kind == NatKind::AddressRestricted {
            out.push_str(
                "    oifname \"wan\" meta l4proto udp ct direction original update @contacted \
                 { ip daddr . ct reply proto-dst }\n",
            );
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

/// Random loss of `loss_percent` % of the packets forwarded by a router (`family` `ip`) or
/// bridged by the public segment (`family` `bridge`): table `<family> lab_impair`, replaced
/// as a whole. Loss is applied on a forwarding hop, never in a sender's output hook (where
/// a drop makes `sendto` fail with EPERM instead of losing the packet).
pub fn loss_ruleset(family: &str, loss_percent: u8) -> String {
    let mut out = format!(
        "table {family} lab_impair {{\n  chain forward {{\n    \
         type filter hook forward priority -200; policy accept;\n  }}\n}}\n\
         flush table {family} lab_impair\n"
    );
    if loss_percent > 0 {
        out.push_str(&format!(
            "table {family} lab_impair {{\n  chain forward {{\n    \
             numgen random mod 100 < {} drop\n  }}\n}}\n",
            loss_percent.min(100)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_randomises_ports_and_cones_do_not() {
        assert!(nat_ruleset(NatKind::Symmetric).contains("masquerade fully-random"));
        for kind in [
            NatKind::FullCone,
            NatKind::AddressRestricted,
            NatKind::PortRestricted,
        ] {
            assert!(!nat_ruleset(kind).contains("random"), "{kind:?}");
        }
    }

    #[test]
    fn only_cones_with_open_filters_forward_unsolicited_inbound() {
        assert!(nat_ruleset(NatKind::FullCone).contains("dnat ip to udp dport map"));
        assert!(nat_ruleset(NatKind::AddressRestricted).contains("@contacted dnat"));
        for kind in [
            NatKind::PortRestricted,
            NatKind::Symmetric,
            NatKind::UdpBlocked,
        ] {
            assert!(!nat_ruleset(kind).contains("dnat"), "{kind:?}");
        }
    }

    #[test]
    fn udp_blocked_drops_udp_before_accepting_anything() {
        let rules = nat_ruleset(NatKind::UdpBlocked);
        let drop = rules.find("udp drop").expect("a udp drop rule");
        let accept = rules.find("established,related accept\n    iifname \"lan\" oifname");
        assert!(accept.is_some_and(|a| drop < a));
    }

    #[test]
    fn zero_loss_only_flushes() {
        assert!(!loss_ruleset("ip", 0).contains("numgen"));
        assert!(loss_ruleset("bridge", 7).contains("numgen random mod 100 < 7 drop"));
    }
}
