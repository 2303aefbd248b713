//! Which peer addresses the relay may send to.
//!
//! A relay that forwards to any address lets anyone reach the operator's internal network
//! (loopback admin ports, RFC 1918 hosts, cloud metadata at 169.254.169.254) or reflect
//! traffic back into itself. By default [`PeerPolicy`] refuses every range that is not a
//! globally routable unicast destination, and the relay's own addresses; IPv4 addresses
//! embedded in IPv6 (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64
//! `64:ff9b::/96`, 6to4 `2002::/16`) are judged as the IPv4 address they carry. Operators open
//! ranges with an allowlist (`--allow-relay-to`), which wins over every refusal.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address range such as `10.0.0.0/8` or `fe80::/10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// A CIDR string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a CIDR range (ADDRESS/PREFIX or ADDRESS): {0:?}")]
pub struct CidrParseError(String);

impl Cidr {
    /// A range; host bits of `network` are cleared. `None` when `prefix_len` is too long.
    pub fn new(network: IpAddr, prefix_len: u8) -> Option<Self> {
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return None;
        }
        let network = match network {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix_len))),
        };
        Some(Self {
            network,
            prefix_len,
        })
    }

    /// Whether `addr` lies in this range (an IPv4 range never holds an IPv6 address).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                u32::from(a) & mask32(self.prefix_len) == u32::from(n)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                u128::from(a) & mask128(self.prefix_len) == u128::from(n)
            }
            _ => false,
        }
    }

    /// The first address of the range.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The number of fixed leading bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

fn mask32(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask128(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrParseError(s.to_owned());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let prefix_len = match len {
            Some(l) => l.trim().parse().map_err(|_| err())?,
            None if network.is_ipv4() => 32,
            None => 128,
        };
        Self::new(network, prefix_len).ok_or_else(err)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// Why a peer address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    /// 127.0.0.0/8 or ::1.
    #[error("loopback")]
    Loopback,
    /// RFC 1918 or IPv6 unique-local.
    #[error("private")]
    Private,
    /// 169.254.0.0/16 or fe80::/10.
    #[error("link-local")]
    LinkLocal,
    /// 100.64.0.0/10 (RFC 6598 shared address space).
    #[error("carrier-grade NAT")]
    CarrierGradeNat,
    /// 224.0.0.0/4 or ff00::/8.
    #[error("multicast")]
    Multicast,
    /// 0.0.0.0/8, :: or port 0.
    #[error("unspecified")]
    Unspecified,
    /// 255.255.255.255.
    #[error("broadcast")]
    Broadcast,
    /// 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 (RFC 5737, RFC 3849).
    #[error("documentation range")]
    Documentation,
    /// 240.0.0.0/4, 192.0.0.0/24, 198.18.0.0/15 and other special-purpose ranges.
    #[error("reserved")]
    Reserved,
    /// One of the relay's own addresses.
    #[error("the relay's own address")]
    OwnAddress,
}

/// Decides which peer addresses a relay may send to.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    allow: Vec<Cidr>,
    own: Vec<IpAddr>,
}

impl PeerPolicy {
    /// A policy refusing the default ranges and `own_addrs`, except inside `allow`.
    pub fn new(allow: Vec<Cidr>, own_addrs: Vec<IpAddr>) -> Self {
        let own = own_addrs.into_iter().map(canonical).collect();
        Self { allow, own }
    }

    /// The allowlist.
    pub fn allowed(&self) -> &[Cidr] {
        &self.allow
    }

    /// `Ok` when the relay may send to `addr`.
    pub fn check(&self, addr: IpAddr) -> Result<(), PeerRefusal> {
        let canon = canonical(addr);
        if self
            .allow
            .iter()
            .any(|c| c.contains(addr) || c.contains(canon))
        {
            return Ok(());
        }
        if self.own.contains(&canon) {
            return Err(PeerRefusal::OwnAddress);
        }
        match canon {
            IpAddr::V4(a) => refuse_v4(a),
            IpAddr::V6(a) => refuse_v6(a),
        }
    }
}

/// The IPv4 address an IPv6 address carries, if it is one of the embedding forms.
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let o = a.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if s[..5] == [0; 5] && (s[5] == 0xffff || (s[5] == 0 && u32::from(tail) > 1)) {
        return Some(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => embedded_v4(a).map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn refuse_v4(a: Ipv4Addr) -> Result<(), PeerRefusal> {
    let o = a.octets();
    let refusal = if a.is_loopback() {
        PeerRefusal::Loopback
    } else if a.is_private() {
        PeerRefusal::Private
    } else if a.is_link_local() {
        PeerRefusal::LinkLocal
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        PeerRefusal::CarrierGradeNat
    } else if a.is_multicast() {
        PeerRefusal::Multicast
    } else if a.is_broadcast() {
        PeerRefusal::Broadcast
    } else if o[0] == 0 {
        PeerRefusal::Unspecified
    } else if a.is_documentation() {
        PeerRefusal::Documentation
    } else if o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
    {
        PeerRefusal::Reserved
    } else {
        return Ok(());
    };
    Err(refusal)
}

fn refuse_v6(a: Ipv6Addr) -> Result<(), PeerRefusal> {
    let s0 = a.segments()[0];
    let refusal = if a.is_loopback() {
        PeerRefusal::Loopback
    } else if a.is_unspecified() {
        PeerRefusal::Unspecified
    } else if (s0 & 0xfe00) == 0xfc00 {
        PeerRefusal::Private
    } else if (s0 & 0xffc0) == 0xfe80 {
        PeerRefusal::LinkLocal
    } else if a.is_multicast() {
        PeerRefusal::Multicast
    } else if s0 == 0x2001 && a.segments()[1] == 0x0db8 {
        PeerRefusal::Documentation
    } else if (s0 & 0xe000) != 0x2000 {
        // Only 2000::/3 is allocated for global unicast.
        PeerRefusal::Reserved
    } else {
        return Ok(());
    };
    Err(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn default_policy_refuses_internal_ranges_in_every_spelling() {
        let p = PeerPolicy::new(vec![], vec![ip("198.18.5.5"), ip("8.8.4.4")]);
        let cases = [
            ("127.0.0.1", PeerRefusal::Loopback),
            ("::1", PeerRefusal::Loopback),
            ("::ffff:127.0.0.1", PeerRefusal::Loopback),
            ("::127.0.0.1", PeerRefusal::Loopback),
            ("64:ff9b::a00:1", PeerRefusal::Private),
            ("2002:c0a8:0101::1", PeerRefusal::Private),
            ("10.1.2.3", PeerRefusal::Private),
            ("172.16.0.1", PeerRefusal::Private),
            ("192.168.1.1", PeerRefusal::Private),
            ("fd00::1", PeerRefusal::Private),
            ("169.254.169.254", PeerRefusal::LinkLocal),
            ("::ffff:169.254.169.254", PeerRefusal::LinkLocal),
            ("fe80::1", PeerRefusal::LinkLocal),
            ("100.64.0.1", PeerRefusal::CarrierGradeNat),
            ("100.127.255.254", PeerRefusal::CarrierGradeNat),
            ("224.0.0.1", PeerRefusal::Multicast),
            ("ff02::1", PeerRefusal::Multicast),
            ("0.0.0.0", PeerRefusal::Unspecified),
            ("::", PeerRefusal::Unspecified),
            ("255.255.255.255", PeerRefusal::Broadcast),
            ("203.0.113.7", PeerRefusal::Documentation),
            ("2001:db8::1", PeerRefusal::Documentation),
            ("8.8.4.4", PeerRefusal::OwnAddress),
            ("::ffff:8.8.4.4", PeerRefusal::OwnAddress),
        ];
        for (addr, why) in cases {
            assert_eq!(p.check(ip(addr)), Err(why), "{addr}");
        }
        for ok in [
            "8.8.8.8",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert_eq!(p.check(ip(ok)), Ok(()), "{ok}");
        }
    }

    #[test]
    fn allowlist_opens_ranges_including_mapped_forms() {
        let allow = vec![
            "127.0.0.0/8".parse().expect("cidr"),
            "100.64.0.0/10".parse().expect("cidr"),
        ];
        let p = PeerPolicy::new(allow, vec![ip("127.0.0.1")]);
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("::ffff:127.0.0.2")), Ok(()));
        assert_eq!(p.check(ip("100.100.1.1")), Ok(()));
        assert_eq!(p.check(ip("10.0.0.1")), Err(PeerRefusal::Private));
    }

    #[test]
    fn cidr_parses_and_clears_host_bits() {
        let c: Cidr = "10.1.2.3/8".parse().expect("cidr");
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        let all: Cidr = "::/0".parse().expect("cidr");
        assert!(all.contains(ip("2001:db8::1")));
        assert_eq!("1.2.3.4".parse::<Cidr>().map(|c| c.prefix_len()), Ok(32));
    }
}
