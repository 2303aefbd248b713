//! NAT behaviour discovery (RFC 5780 §4), the engine of `peerphone netcheck`.
//!
//! A sans-IO client state machine run from one local UDP socket against a STUN server that
//! has an alternate address (a supernode started with `--alternate-addr`):
//!
//! 1. Test I: Binding to the primary address gives the mapped (public) address, the server's
//!    OTHER-ADDRESS and the round-trip time. No answer after the RFC 8489 retransmissions:
//!    UDP is blocked.
//! 2. Filtering (§4.4), before anything is sent to the alternate address, which would open
//!    the NAT's filter to it: CHANGE-REQUEST "change IP and port" answered means
//!    endpoint-independent filtering, else "change port" answered means address-dependent,
//!    else address-and-port-dependent. Hairpinning (§4.5) is tested at the same time: a
//!    Binding request sent to our own mapped address must come back to us.
//! 3. Mapping (§4.3): Binding to (alternate IP, primary port); the same mapped address means
//!    endpoint-independent mapping; else Binding to (alternate IP, alternate port): the same
//!    mapped address as the previous test means address-dependent, else
//!    address-and-port-dependent.
//!
//! Without OTHER-ADDRESS, mapping is compared against `secondary_server` when one is given
//! and filtering stays unknown. The result is a [`NatReport`] with exactly the fields of
//! `peerphone netcheck --json`. Does not: use TCP, test IPv6 and IPv4 separately, or detect
//! binding lifetimes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::stun::attributes::{ChangeRequest, OtherAddress, XorMappedAddress};
use crate::stun::{MessageClass, TransactionId, binding_request, decode, encode, methods};
use crate::{Transmit, Via};

/// RFC 8489 §6.2.1 retransmission schedule of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitPolicy {
    /// First retransmission timeout (RTO), doubled after each retransmission.
    pub initial_rto: Duration,
    /// Transmissions in total (Rc).
    pub max_transmissions: u32,
    /// After the last transmission, wait this many initial RTOs (Rm) before giving up.
    pub last_wait_multiplier: u32,
}

impl RetransmitPolicy {
    /// The RFC 8489 defaults: RTO 500 ms, Rc 7, Rm 16 (gives up after 39.5 s).
    pub const RFC8489: RetransmitPolicy = RetransmitPolicy {
        initial_rto: Duration::from_millis(500),
        max_transmissions: 7,
        last_wait_multiplier: 16,
    };

    /// For tests whose expected result is silence (filtering, hairpin): 3 transmissions at
    /// 0, 0.5 and 1.5 s, then 2 s of waiting.
    pub const NEGATIVE_TEST: RetransmitPolicy = RetransmitPolicy {
        initial_rto: Duration::from_millis(500),
        max_transmissions: 3,
        last_wait_multiplier: 4,
    };

    /// Time from the first transmission until the request is given up.
    pub fn give_up_after(&self) -> Duration {
        let mut total = Duration::ZERO;
        let mut rto = self.initial_rto;
        for _ in 1..self.max_transmissions.max(1) {
            total += rto;
            rto *= 2;
        }
        total + self.initial_rto * self.last_wait_multiplier
    }
}

/// Mapping or filtering behaviour (RFC 4787 terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatBehavior {
    /// The same for every remote endpoint.
    EndpointIndependent,
    /// Depends on the remote IP address.
    AddressDependent,
    /// Depends on the remote IP address and port.
    AddressAndPortDependent,
    /// Could not be tested.
    Unknown,
}

/// The classic name of a NAT, as `peerphone netcheck` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatType {
    /// No NAT and no filtering firewall.
    Open,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestrictedCone,
    /// Mapping depends on the destination.
    Symmetric,
    /// No UDP answer from the server.
    UdpBlocked,
}

/// The discovery result: the fields of `peerphone netcheck` (CONTRACT.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NatReport {
    /// Whether the server answered over UDP at all.
    pub udp: bool,
    /// The mapped (server-reflexive) address, as the server saw us.
    pub public_addr: Option<SocketAddr>,
    /// Mapping behaviour.
    pub mapping: NatBehavior,
    /// Filtering behaviour.
    pub filtering: NatBehavior,
    /// Whether the NAT loops packets to our own public address back to us; `None` untested.
    pub hairpin: Option<bool>,
    /// The classic name derived from the rest.
    pub nat_type: NatType,
    /// Round-trip time of an unambiguous Binding transaction with the server.
    pub supernode_rtt_ms: Option<f64>,
}

impl NatType {
    /// The classic name for a measured behaviour. `behind_nat` is false when the mapped
    /// address is one of our own. Unknown mapping with a NAT counts as endpoint-independent
    /// (the common case) unless `mapping_varies`.
    pub fn classify(
        behind_nat: bool,
        mapping: NatBehavior,
        filtering: NatBehavior,
        mapping_varies: bool,
    ) -> NatType {
        let by_filtering = |open_if_eif: bool| match filtering {
            NatBehavior::EndpointIndependent if open_if_eif => NatType::Open,
            NatBehavior::Unknown if open_if_eif => NatType::Open,
            NatBehavior::EndpointIndependent => NatType::FullCone,
            NatBehavior::AddressDependent => NatType::RestrictedCone,
            NatBehavior::AddressAndPortDependent | NatBehavior::Unknown => {
                NatType::PortRestrictedCone
            }
        };
        if !behind_nat {
            return by_filtering(true);
        }
        match mapping {
            NatBehavior::AddressDependent | NatBehavior::AddressAndPortDependent => {
                NatType::Symmetric
            }
            NatBehavior::Unknown if mapping_varies => NatType::Symmetric,
            NatBehavior::EndpointIndependent | NatBehavior::Unknown => by_filtering(false),
        }
    }
}

/// What the discovery client talks to and how patiently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// The STUN server's primary address (a supernode's `--turn-listen` address).
    pub server: SocketAddr,
    /// Another STUN server, for the mapping test when `server` has no alternate address.
    pub secondary_server: Option<SocketAddr>,
    /// This host's own addresses with the socket's port: a mapped address among them means
    /// there is no NAT.
    pub local_addrs: Vec<SocketAddr>,
    /// Schedule of requests expected to be answered.
    pub retransmit: RetransmitPolicy,
    /// Schedule of requests whose silence is a result (filtering, hairpin).
    pub negative_retransmit: RetransmitPolicy,
    /// Run the filtering, hairpin and mapping tests; `false` stops after Test I (public
    /// address and RTT only, e.g. to gather a server-reflexive candidate before a call; the
    /// report's behaviours are then `unknown` and its `nat_type` a guess).
    pub behaviour_tests: bool,
}

impl DiscoveryConfig {
    /// Discovery against `server` from a socket with addresses `local_addrs`.
    pub fn new(server: SocketAddr, local_addrs: Vec<SocketAddr>) -> Self {
        DiscoveryConfig {
            server,
            secondary_server: None,
            local_addrs,
            retransmit: RetransmitPolicy::RFC8489,
            negative_retransmit: RetransmitPolicy::NEGATIVE_TEST,
            behaviour_tests: true,
        }
    }

    /// Only Test I against `server`: the public address and the RTT, one round trip.
    pub fn mapped_address_only(server: SocketAddr, local_addrs: Vec<SocketAddr>) -> Self {
        DiscoveryConfig {
            behaviour_tests: false,
            ..Self::new(server, local_addrs)
        }
    }
}

/// Progress of a [`NatDiscovery`].
#[derive(Debug, Clone, PartialEq)]
pub enum DiscoveryEvent {
    /// Discovery is over.
    Finished(NatReport),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Test1,
    FilterChangeIpPort,
    FilterChangePort,
    Hairpin,
    MappingAltIp,
    MappingAltIpPort,
    MappingSecondary,
}

#[derive(Debug, Clone)]
struct Transaction {
    probe: Probe,
    id: TransactionId,
    destination: SocketAddr,
    payload: Vec<u8>,
    policy: RetransmitPolicy,
    transmissions: u32,
    rto: Duration,
    first_sent: Instant,
    last_sent: Instant,
    next: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Pending,
    Yes,
    No,
}

/// The RFC 5780 discovery client. Sans-IO: after every `handle_*`, drain
/// [`poll_transmit`](Self::poll_transmit), then [`poll_event`](Self::poll_event), then arm a
/// timer for [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct NatDiscovery {
    config: DiscoveryConfig,
    rng: StdRng,
    in_flight: Vec<Transaction>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DiscoveryEvent>,
    mapped: Option<SocketAddr>,
    other: Option<SocketAddr>,
    rtt: Option<Duration>,
    filter_ip_port: Answer,
    filter_port: Answer,
    hairpin: Answer,
    mapped_alt_ip: Option<SocketAddr>,
    mapping: NatBehavior,
    mapping_varies: bool,
    mapping_started: bool,
    report: Option<NatReport>,
}

impl NatDiscovery {
    /// Starts discovery at `now`; `seed` seeds the transaction IDs (give it real randomness
    /// outside tests: IDs protect against off-path spoofing).
    pub fn new(config: DiscoveryConfig, now: Instant, seed: [u8; 32]) -> Self {
        let mut discovery = NatDiscovery {
            config,
            rng: StdRng::from_seed(seed),
            in_flight: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            mapped: None,
            other: None,
            rtt: None,
            filter_ip_port: Answer::Pending,
            filter_port: Answer::Pending,
            hairpin: Answer::Pending,
            mapped_alt_ip: None,
            mapping: NatBehavior::Unknown,
            mapping_varies: false,
            mapping_started: false,
            report: None,
        };
        let server = discovery.config.server;
        let policy = discovery.config.retransmit;
        discovery.start(now, Probe::Test1, server, None, policy);
        discovery
    }

    /// The report, once finished.
    pub fn report(&self) -> Option<&NatReport> {
        self.report.as_ref()
    }

    /// Whether discovery is over.
    pub fn is_finished(&self) -> bool {
        self.report.is_some()
    }

    /// A datagram arrived on the discovery socket. Returns whether it was ours (a response
    /// to one of our requests, or our own hairpinned request).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) -> bool {
        if self.report.is_some() {
            return false;
        }
        let Ok(decoded) = decode(payload) else {
            return false;
        };
        let message = decoded.message();
        if message.method() != methods::BINDING {
            return false;
        }
        let Some(index) = self
            .in_flight
            .iter()
            .position(|t| t.id == message.transaction_id())
        else {
            return false;
        };
        let probe = self.in_flight[index].probe;
        let expected_class = if probe == Probe::Hairpin {
            MessageClass::Request
        } else {
            MessageClass::SuccessResponse
        };
        if message.class() != expected_class {
            return false;
        }
        let transaction = self.in_flight.swap_remove(index);
        // Karn: an RTT is only unambiguous from a request sent once. Test I's counts first;
        // the mapping tests reach the same server host and stand in when Test I was retried.
        let unambiguous_rtt = (transaction.transmissions == 1)
            .then(|| now.saturating_duration_since(transaction.first_sent));
        if self.rtt.is_none() && matches!(probe, Probe::MappingAltIp | Probe::MappingAltIpPort) {
            self.rtt = unambiguous_rtt;
        }
        let mapped = message
            .get_attribute::<XorMappedAddress>()
            .map(XorMappedAddress::address);
        match probe {
            Probe::Test1 => {
                let Some(mapped) = mapped else {
                    self.in_flight.push(transaction);
                    return false;
                };
                self.rtt = unambiguous_rtt;
                self.mapped = Some(mapped);
                self.other = message
                    .get_attribute::<OtherAddress>()
                    .map(OtherAddress::address)
                    .filter(|o| {
                        o.ip() != self.config.server.ip() && o.is_ipv4() == mapped.is_ipv4()
                    });
                self.after_test1(now);
            }
            Probe::FilterChangeIpPort => {
                let moved = from.ip() != self.config.server.ip()
                    && from.port() != self.config.server.port();
                self.filter_ip_port = if moved { Answer::Yes } else { Answer::No };
            }
            Probe::FilterChangePort => {
                let moved = from.ip() == self.config.server.ip()
                    && from.port() != self.config.server.port();
                self.filter_port = if moved { Answer::Yes } else { Answer::No };
            }
            Probe::Hairpin => self.hairpin = Answer::Yes,
            Probe::MappingAltIp => {
                self.mapped_alt_ip = mapped;
                match (mapped, self.mapped) {
                    (Some(m2), Some(m1)) if m2 == m1 => {
                        self.mapping = NatBehavior::EndpointIndependent;
                    }
                    (Some(_), Some(_)) => {
                        if let Some(other) = self.other {
                            let policy = self.config.retransmit;
                            self.start(now, Probe::MappingAltIpPort, other, None, policy);
                        }
                    }
                    _ => {}
                }
            }
            Probe::MappingAltIpPort => {
                self.mapping = match (mapped, self.mapped_alt_ip) {
                    (Some(m3), Some(m2)) if m3 == m2 => NatBehavior::AddressDependent,
                    (Some(_), Some(_)) => NatBehavior::AddressAndPortDependent,
                    _ => NatBehavior::Unknown,
                };
            }
            Probe::MappingSecondary => {
                if let (Some(m2), Some(m1)) = (mapped, self.mapped) {
                    if m2 == m1 {
                        self.mapping = NatBehavior::EndpointIndependent;
                    } else {
                        self.mapping_varies = true;
                    }
                }
            }
        }
        self.advance(now);
        true
    }

    /// The timer armed from [`poll_timeout`](Self::poll_timeout) fired.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.report.is_some() {
            return;
        }
        let mut expired = Vec::new();
        let mut index = 0;
        while index < self.in_flight.len() {
            let transaction = &mut self.in_flight[index];
            if transaction.next > now {
                index += 1;
                continue;
            }
            if transaction.transmissions < transaction.policy.max_transmissions {
                transaction.transmissions += 1;
                transaction.last_sent = now;
                transaction.rto *= 2;
                transaction.next = if transaction.transmissions
                    < transaction.policy.max_transmissions
                {
                    now + transaction.rto
                } else {
                    now + transaction.policy.initial_rto * transaction.policy.last_wait_multiplier
                };
                self.transmits.push_back(Transmit {
                    via: Via::Direct,
                    destination: transaction.destination,
                    payload: transaction.payload.clone(),
                });
                index += 1;
            } else {
                expired.push(self.in_flight.swap_remove(index).probe);
            }
        }
        for probe in expired {
            match probe {
                Probe::Test1 => {
                    self.finish(false);
                    return;
                }
                Probe::FilterChangeIpPort => self.filter_ip_port = Answer::No,
                Probe::FilterChangePort => self.filter_port = Answer::No,
                Probe::Hairpin => self.hairpin = Answer::No,
                Probe::MappingAltIp | Probe::MappingAltIpPort | Probe::MappingSecondary => {}
            }
        }
        self.advance(now);
    }

    /// The next datagram to send (always [`Via::Direct`], from the discovery socket).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DiscoveryEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.report.is_some() {
            return None;
        }
        self.in_flight.iter().map(|t| t.next).min()
    }

    fn start(
        &mut self,
        now: Instant,
        probe: Probe,
        destination: SocketAddr,
        change: Option<ChangeRequest>,
        policy: RetransmitPolicy,
    ) {
        let id = crate::stun::new_transaction_id(&mut self.rng);
        let mut request = binding_request(id);
        if let Some(change) = change {
            request.add_attribute(change);
        }
        let Ok(payload) = encode(request, None, true) else {
            return;
        };
        let next = if policy.max_transmissions > 1 {
            now + policy.initial_rto
        } else {
            now + policy.initial_rto * policy.last_wait_multiplier
        };
        self.transmits.push_back(Transmit {
            via: Via::Direct,
            destination,
            payload: payload.clone(),
        });
        self.in_flight.push(Transaction {
            probe,
            id,
            destination,
            payload,
            policy,
            transmissions: 1,
            rto: policy.initial_rto,
            first_sent: now,
            last_sent: now,
            next,
        });
    }

    fn after_test1(&mut self, now: Instant) {
        if !self.config.behaviour_tests {
            self.mapping_started = true;
            self.filter_ip_port = Answer::No;
            self.filter_port = Answer::No;
            return;
        }
        let server = self.config.server;
        let negative = self.config.negative_retransmit;
        if self.other.is_some() {
            self.start(
                now,
                Probe::FilterChangeIpPort,
                server,
                Some(ChangeRequest::new(true, true)),
                negative,
            );
            self.start(
                now,
                Probe::FilterChangePort,
                server,
                Some(ChangeRequest::new(false, true)),
                negative,
            );
        } else {
            self.filter_ip_port = Answer::No;
            self.filter_port = Answer::No;
        }
        if let Some(mapped) = self.mapped {
            self.start(now, Probe::Hairpin, mapped, None, negative);
        }
    }

    fn advance(&mut self, now: Instant) {
        if self.mapped.is_none() || self.report.is_some() {
            return;
        }
        let filtering_done =
            self.filter_ip_port != Answer::Pending && self.filter_port != Answer::Pending;
        if filtering_done && self.hairpin != Answer::Pending && !self.mapping_started {
            self.mapping_started = true;
            let policy = self.config.retransmit;
            if self.behind_nat() {
                if let Some(other) = self.other {
                    let alt_ip = SocketAddr::new(other.ip(), self.config.server.port());
                    self.start(now, Probe::MappingAltIp, alt_ip, None, policy);
                } else if let Some(secondary) = self.config.secondary_server {
                    self.start(now, Probe::MappingSecondary, secondary, None, policy);
                }
            } else {
                self.mapping = NatBehavior::EndpointIndependent;
            }
        }
        if self.mapping_started && self.in_flight.is_empty() {
            self.finish(true);
        }
    }

    fn behind_nat(&self) -> bool {
        self.mapped
            .is_none_or(|mapped| !self.config.local_addrs.contains(&mapped))
    }

    fn finish(&mut self, udp: bool) {
        self.in_flight.clear();
        let report = if udp {
            let filtering = if self.other.is_none() || !self.config.behaviour_tests {
                NatBehavior::Unknown
            } else if self.filter_ip_port == Answer::Yes {
                NatBehavior::EndpointIndependent
            } else if self.filter_port == Answer::Yes {
                NatBehavior::AddressDependent
            } else {
                NatBehavior::AddressAndPortDependent
            };
            NatReport {
                udp: true,
                public_addr: self.mapped,
                mapping: self.mapping,
                filtering,
                hairpin: match self.hairpin {
                    Answer::Pending => None,
                    answer => Some(answer == Answer::Yes),
                },
                nat_type: NatType::classify(
                    self.behind_nat(),
                    self.mapping,
                    filtering,
                    self.mapping_varies,
                ),
                supernode_rtt_ms: self
                    .rtt
                    .map(|rtt| (rtt.as_secs_f64() * 10_000.0).round() / 10.0),
            }
        } else {
            NatReport {
                udp: false,
                public_addr: None,
                mapping: NatBehavior::Unknown,
                filtering: NatBehavior::Unknown,
                hairpin: None,
                nat_type: NatType::UdpBlocked,
                supernode_rtt_ms: None,
            }
        };
        self.report = Some(report.clone());
        self.events.push_back(DiscoveryEvent::Finished(report));
    }
}
