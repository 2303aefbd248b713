//! Which supernodes may join the directory.
//!
//! Two policies: `Open` admits any supernode, at most `max_per_ip` per source address (so
//! one host cannot flood the directory), and `Allowlist` admits only operator-listed keys.
//! Supernodes on loopback (their source address or the address they advertise) are refused
//! unless `allow_loopback` is set, which local and test networks do: a loopback address in
//! a public directory would send every client to itself.

use proto::PublicKey;
use proto::directory::SupernodeAddrs;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The operator's admission rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionRule {
    /// Anyone, at most this many live supernodes per source IP address.
    Open { max_per_ip: usize },
    /// Only these keys.
    Allowlist(BTreeSet<PublicKey>),
}

/// The admission policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionPolicy {
    pub rule: AdmissionRule,
    pub allow_loopback: bool,
}

impl Default for AdmissionPolicy {
    fn default() -> Self {
        Self {
            rule: AdmissionRule::Open { max_per_ip: 2 },
            allow_loopback: false,
        }
    }
}

/// Why a supernode was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this key is not on the operator's allowlist")]
    NotAllowlisted,
    #[error("{0} supernodes already run from this address")]
    TooManyFromAddress(usize),
    #[error("loopback supernodes are not admitted here")]
    Loopback,
    #[error("advertised address is unspecified")]
    UnspecifiedAddress,
}

impl AdmissionPolicy {
    /// Decides on `key` connecting from `source`, advertising `addrs`, while
    /// `others_from_source` other live supernodes already use that source address.
    pub fn decide(
        &self,
        key: &PublicKey,
        source: IpAddr,
        addrs: &SupernodeAddrs,
        others_from_source: usize,
    ) -> Result<(), Refusal> {
        let advertised = [Some(addrs.quic), addrs.turn, addrs.tcp];
        if advertised
            .iter()
            .flatten()
            .any(|a| a.ip().is_unspecified() || a.port() == 0)
        {
            return Err(Refusal::UnspecifiedAddress);
        }
        let loopback =
            source.is_loopback() || advertised.iter().flatten().any(|a| a.ip().is_loopback());
        if loopback && !self.allow_loopback {
            return Err(Refusal::Loopback);
        }
        match &self.rule {
            AdmissionRule::Allowlist(keys) if !keys.contains(key) => Err(Refusal::NotAllowlisted),
            AdmissionRule::Allowlist(_) => Ok(()),
            AdmissionRule::Open { max_per_ip } if others_from_source >= *max_per_ip => {
                Err(Refusal::TooManyFromAddress(others_from_source))
            }
            AdmissionRule::Open { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::SecretKey;

    fn addrs(ip: &str) -> SupernodeAddrs {
        SupernodeAddrs {
            quic: format!("{ip}:7500").parse().expect("addr"),
            turn: None,
            tcp: None,
        }
    }

    #[test]
    fn open_admission_allows_two_per_address() {
        let policy = AdmissionPolicy::default();
        let key = SecretKey::generate().public();
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(policy.decide(&key, ip, &addrs("198.51.100.7"), 0), Ok(()));
        assert_eq!(policy.decide(&key, ip, &addrs("198.51.100.7"), 1), Ok(()));
        assert_eq!(
            policy.decide(&key, ip, &addrs("198.51.100.7"), 2),
            Err(Refusal::TooManyFromAddress(2))
        );
    }

    #[test]
    fn loopback_needs_the_local_network_switch() {
        let mut policy = AdmissionPolicy::default();
        let key = SecretKey::generate().public();
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(
            policy.decide(&key, lo, &addrs("127.0.0.1"), 0),
            Err(Refusal::Loopback)
        );
        policy.allow_loopback = true;
        assert_eq!(policy.decide(&key, lo, &addrs("127.0.0.1"), 0), Ok(()));
        assert_eq!(
            policy.decide(&key, lo, &addrs("0.0.0.0"), 0),
            Err(Refusal::UnspecifiedAddress)
        );
    }

    #[test]
    fn the_allowlist_admits_only_listed_keys() {
        let listed = SecretKey::generate().public();
        let policy = AdmissionPolicy {
            rule: AdmissionRule::Allowlist([listed].into_iter().collect()),
            allow_loopback: false,
        };
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(policy.decide(&listed, ip, &addrs("203.0.113.9"), 5), Ok(()));
        let other = SecretKey::generate().public();
        assert_eq!(
            policy.decide(&other, ip, &addrs("203.0.113.9"), 0),
            Err(Refusal::NotAllowlisted)
        );
    }
}
