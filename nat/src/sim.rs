//! A model of NAT boxes and a tiny virtual-time internet, for tests (feature `sim`).
//!
//! [`NatBox`] implements RFC 4787 behaviours: endpoint-independent, address-dependent or
//! address-and-port-dependent mapping and filtering, port preservation, sequential or random
//! ports (`random-fully`), hairpinning, and binding expiry refreshed by outbound traffic.
//! [`World`] connects sockets (public, or behind one NAT), delivers datagrams through a
//! seeded `netsim` impairment, and drives [`SimAgent`]s on virtual time.
//!
//! Relayed candidates are modelled as an ideal TURN relay: a relayed address is a public
//! socket owned by the agent, so a datagram "sent via the relay" leaves from it. Does not
//! model: double NAT, ICMP, TCP, IPv6, MTU.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use netsim::{Impairment, ImpairmentConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::discovery::NatBehavior;

/// How a NAT picks the external port of a new mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortAllocation {
    /// The internal port when free, else the next free one (Linux masquerade).
    Preserve,
    /// Uniformly random (Linux masquerade `random-fully`).
    Random,
}

/// Behaviour of a [`NatBox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    /// Its public IP.
    pub public_ip: IpAddr,
    /// Mapping behaviour (`Unknown` is taken as endpoint-independent).
    pub mapping: NatBehavior,
    /// Filtering behaviour (`Unknown` is taken as address-and-port-dependent).
    pub filtering: NatBehavior,
    /// Port choice.
    pub ports: PortAllocation,
    /// Whether it loops datagrams to its own public IP back inside.
    pub hairpin: bool,
    /// Idle time after which a mapping is forgotten.
    pub mapping_lifetime: Duration,
}

impl NatConfig {
    /// A NAT on `public_ip` with the given mapping and filtering, port preservation, no
    /// hairpinning and a 120 s binding lifetime.
    pub fn new(public_ip: IpAddr, mapping: NatBehavior, filtering: NatBehavior) -> Self {
        NatConfig {
            public_ip,
            mapping,
            filtering,
            ports: PortAllocation::Preserve,
            hairpin: false,
            mapping_lifetime: Duration::from_secs(120),
        }
    }

    /// "Full cone": endpoint-independent mapping and filtering.
    pub fn full_cone(public_ip: IpAddr) -> Self {
        Self::new(
            public_ip,
            NatBehavior::EndpointIndependent,
            NatBehavior::EndpointIndependent,
        )
    }

    /// "Restricted cone": endpoint-independent mapping, address-dependent filtering.
    pub fn restricted_cone(public_ip: IpAddr) -> Self {
        Self::new(
            public_ip,
            NatBehavior::EndpointIndependent,
            NatBehavior::AddressDependent,
        )
    }

    /// "Port-restricted cone" (Linux masquerade): endpoint-independent mapping,
    /// address-and-port-dependent filtering.
    pub fn port_restricted_cone(public_ip: IpAddr) -> Self {
        Self::new(
            public_ip,
            NatBehavior::EndpointIndependent,
            NatBehavior::AddressAndPortDependent,
        )
    }

    /// "Symmetric" (Linux masquerade `random-fully`): a random port per destination,
    /// address-and-port-dependent filtering.
    pub fn symmetric(public_ip: IpAddr) -> Self {
        let mut config = Self::new(
            public_ip,
            NatBehavior::AddressAndPortDependent,
            NatBehavior::AddressAndPortDependent,
        );
        config.ports = PortAllocation::Random;
        config
    }
}

#[derive(Debug, Clone)]
struct Mapping {
    internal: SocketAddr,
    external_port: u16,
    last_outbound: Instant,
    contacted: BTreeSet<SocketAddr>,
}

/// One NAT box. See the module docs.
#[derive(Debug)]
pub struct NatBox {
    config: NatConfig,
    /// Key: internal address and the part of the destination the mapping depends on.
    mappings: BTreeMap<(SocketAddr, Option<SocketAddr>), Mapping>,
    rng: StdRng,
}

impl NatBox {
    /// A NAT with `config`; `seed` drives random port choice.
    pub fn new(config: NatConfig, seed: u64) -> Self {
        NatBox {
            config,
            mappings: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    fn expire(&mut self, now: Instant) {
        let lifetime = self.config.mapping_lifetime;
        self.mappings
            .retain(|_, m| now.saturating_duration_since(m.last_outbound) < lifetime);
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.mappings.values().any(|m| m.external_port == port)
    }

    /// Translates an outbound datagram from `internal` to `destination`; returns the
    /// external source address.
    pub fn outbound(
        &mut self,
        now: Instant,
        internal: SocketAddr,
        destination: SocketAddr,
    ) -> SocketAddr {
        self.expire(now);
        let dependency = match self.config.mapping {
            NatBehavior::EndpointIndependent | NatBehavior::Unknown => None,
            NatBehavior::AddressDependent => Some(SocketAddr::new(destination.ip(), 0)),
            NatBehavior::AddressAndPortDependent => Some(destination),
        };
        let key = (internal, dependency);
        if !self.mappings.contains_key(&key) {
            let mut port = match self.config.ports {
                PortAllocation::Preserve => internal.port(),
                PortAllocation::Random => self.rng.next_u32() as u16 | 1024,
            };
            let mut tries = 0u32;
            while port < 1024 || self.port_in_use(port) {
                port = match self.config.ports {
                    PortAllocation::Preserve => port.wrapping_add(1),
                    PortAllocation::Random => self.rng.next_u32() as u16 | 1024,
                };
                tries += 1;
                if tries > 70_000 {
                    break;
                }
            }
            self.mappings.insert(
                key,
                Mapping {
                    internal,
                    external_port: port,
                    last_outbound: now,
                    contacted: BTreeSet::new(),
                },
            );
        }
        let mapping = self
            .mappings
            .get_mut(&key)
            .expect("invariant: inserted above");
        mapping.last_outbound = now;
        mapping.contacted.insert(destination);
        SocketAddr::new(self.config.public_ip, mapping.external_port)
    }

    /// Filters and translates an inbound datagram from `source` to `external`; returns the
    /// internal destination, or `None` when the NAT drops it.
    pub fn inbound(
        &mut self,
        now: Instant,
        source: SocketAddr,
        external: SocketAddr,
    ) -> Option<SocketAddr> {
        self.expire(now);
        if external.ip() != self.config.public_ip {
            return None;
        }
        let filtering = self.config.filtering;
        self.mappings
            .values()
            .filter(|m| m.external_port == external.port())
            .find(|m| match filtering {
                NatBehavior::EndpointIndependent => true,
                NatBehavior::AddressDependent => m.contacted.iter().any(|c| c.ip() == source.ip()),
                NatBehavior::AddressAndPortDependent | NatBehavior::Unknown => {
                    m.contacted.contains(&source)
                }
            })
            .map(|m| m.internal)
    }
}

/// A datagram an agent sends: from one of its sockets (or relayed addresses) to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTransmit {
    /// The agent's local socket or relayed address it leaves from.
    pub from: SocketAddr,
    /// Destination.
    pub to: SocketAddr,
    /// Bytes.
    pub payload: Vec<u8>,
}

/// Something the [`World`] drives: a protocol state machine behind one or more sockets.
pub trait SimAgent {
    /// Local sockets and relayed addresses this agent receives on.
    fn sockets(&self) -> Vec<SocketAddr>;
    /// A datagram from `from` arrived on `local`.
    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        payload: &[u8],
    );
    /// The agent's timer fired.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<SimTransmit>;
    /// When the agent's timer is due.
    fn poll_timeout(&self) -> Option<Instant>;
}

#[derive(Debug, Clone)]
struct Packet {
    from: SocketAddr,
    to: SocketAddr,
    payload: Vec<u8>,
}

/// Identifies a NAT in a [`World`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatId(usize);

/// The virtual internet. See the module docs.
#[derive(Debug)]
pub struct World {
    nats: Vec<NatBox>,
    /// Socket → the NAT it sits behind (`None`: public).
    hosts: BTreeMap<SocketAddr, Option<NatId>>,
    internet: Impairment<Packet>,
    lan: Impairment<Packet>,
    /// Sockets whose traffic is cut (a dead path), both directions.
    cut: BTreeSet<SocketAddr>,
    delivered: VecDeque<Packet>,
    /// Datagrams that reached their destination agent.
    pub delivered_count: u64,
}

impl World {
    /// An internet whose core impairs every datagram per `internet`; `seed` drives it.
    pub fn new(internet: ImpairmentConfig, seed: u64) -> Self {
        let lan = ImpairmentConfig {
            delay: Duration::from_millis(1),
            ..ImpairmentConfig::default()
        };
        World {
            nats: Vec::new(),
            hosts: BTreeMap::new(),
            internet: Impairment::new(internet, seed),
            lan: Impairment::new(lan, seed ^ 0x5eed),
            cut: BTreeSet::new(),
            delivered: VecDeque::new(),
            delivered_count: 0,
        }
    }

    /// Adds a NAT box.
    pub fn add_nat(&mut self, config: NatConfig, seed: u64) -> NatId {
        self.nats.push(NatBox::new(config, seed));
        NatId(self.nats.len() - 1)
    }

    /// The NAT box `id`.
    pub fn nat(&self, id: NatId) -> &NatBox {
        &self.nats[id.0]
    }

    /// Adds a socket, public or behind `nat`.
    pub fn add_socket(&mut self, addr: SocketAddr, nat: Option<NatId>) {
        self.hosts.insert(addr, nat);
    }

    /// Cuts (`true`) or restores all internet traffic to and from `addr` (port 0: the whole IP).
    pub fn set_cut(&mut self, addr: SocketAddr, cut: bool) {
        if cut {
            self.cut.insert(addr);
        } else {
            self.cut.remove(&addr);
        }
    }

    fn is_cut(&self, packet: &Packet) -> bool {
        self.cut.iter().any(|c| {
            let matches = |a: SocketAddr| {
                if c.port() == 0 {
                    a.ip() == c.ip()
                } else {
                    a == *c
                }
            };
            matches(packet.from) || matches(packet.to)
        })
    }

    /// Sends a datagram from a registered socket at `now`.
    pub fn send(&mut self, now: Instant, transmit: SimTransmit) {
        let Some(&behind) = self.hosts.get(&transmit.from) else {
            return;
        };
        let mut packet = Packet {
            from: transmit.from,
            to: transmit.to,
            payload: transmit.payload,
        };
        if let Some(nat) = behind {
            if self.hosts.get(&packet.to) == Some(&Some(nat)) {
                self.lan.handle_packet(now, packet);
                return;
            }
            let nat_box = &mut self.nats[nat.0];
            packet.from = nat_box.outbound(now, packet.from, packet.to);
            if packet.to.ip() == nat_box.config.public_ip {
                if nat_box.config.hairpin
                    && let Some(internal) = nat_box.inbound(now, packet.from, packet.to)
                {
                    packet.to = internal;
                    self.lan.handle_packet(now, packet);
                }
                return;
            }
        }
        if self.is_cut(&packet) {
            return;
        }
        self.internet.handle_packet(now, packet);
    }

    fn route_arrivals(&mut self, now: Instant) {
        while let Some(packet) = self.lan.poll_packet(now) {
            self.delivered.push_back(packet);
        }
        while let Some(mut packet) = self.internet.poll_packet(now) {
            if self.is_cut(&packet) {
                continue;
            }
            if let Some(nat) = self
                .nats
                .iter_mut()
                .find(|n| n.config.public_ip == packet.to.ip())
            {
                match nat.inbound(now, packet.from, packet.to) {
                    Some(internal) => packet.to = internal,
                    None => continue,
                }
            }
            self.delivered.push_back(packet);
        }
    }

    /// Runs everything due at `now`: arrivals to agents, agent timers, agent transmits.
    /// Returns when anything is next due.
    pub fn step(&mut self, now: Instant, agents: &mut [&mut dyn SimAgent]) -> Option<Instant> {
        for agent in agents.iter_mut() {
            if agent.poll_timeout().is_some_and(|t| t <= now) {
                agent.handle_timeout(now);
            }
        }
        for _ in 0..16 {
            self.route_arrivals(now);
            while let Some(packet) = self.delivered.pop_front() {
                if let Some(agent) = agents.iter_mut().find(|a| a.sockets().contains(&packet.to)) {
                    self.delivered_count += 1;
                    agent.handle_datagram(now, packet.to, packet.from, &packet.payload);
                }
            }
            let mut sent = false;
            for agent in agents.iter_mut() {
                while let Some(transmit) = agent.poll_transmit() {
                    sent = true;
                    self.send(now, transmit);
                }
            }
            if !sent {
                break;
            }
        }
        [self.internet.poll_timeout(), self.lan.poll_timeout()]
            .into_iter()
            .chain(agents.iter().map(|a| a.poll_timeout()))
            .flatten()
            .min()
    }
}

/// Drives `agents` from `start` until `deadline` or until nothing is pending; returns the
/// time it stopped. Tests that inspect agents between steps call [`World::step`] themselves.
pub fn run_until(
    world: &mut World,
    agents: &mut [&mut dyn SimAgent],
    start: Instant,
    deadline: Instant,
) -> Instant {
    let mut now = start;
    while now <= deadline {
        match world.step(now, agents) {
            Some(next) => now = next.max(now + Duration::from_micros(1)),
            None => break,
        }
    }
    now.min(deadline)
}

/// A [`crate::stun::server::StunServer`] as a [`SimAgent`], listening on all its sockets.
#[derive(Debug)]
pub struct SimStunServer {
    /// The server core.
    pub server: crate::stun::server::StunServer,
}

impl SimAgent for SimStunServer {
    fn sockets(&self) -> Vec<SocketAddr> {
        self.server.sockets().into_iter().map(|(_, a)| a).collect()
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        payload: &[u8],
    ) {
        if let Some((socket, _)) = self.server.sockets().into_iter().find(|(_, a)| *a == local) {
            self.server.handle_datagram(now, socket, from, payload);
        }
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(&mut self) -> Option<SimTransmit> {
        let transmit = self.server.poll_transmit()?;
        let from = self.server.socket_addr(transmit.from)?;
        Some(SimTransmit {
            from,
            to: transmit.destination,
            payload: transmit.payload,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

/// A [`crate::discovery::NatDiscovery`] on one socket, as a [`SimAgent`].
#[derive(Debug)]
pub struct SimDiscovery {
    /// The local socket.
    pub socket: SocketAddr,
    /// The discovery client.
    pub discovery: crate::discovery::NatDiscovery,
}

impl SimAgent for SimDiscovery {
    fn sockets(&self) -> Vec<SocketAddr> {
        vec![self.socket]
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        _local: SocketAddr,
        from: SocketAddr,
        payload: &[u8],
    ) {
        self.discovery.handle_datagram(now, from, payload);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.discovery.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<SimTransmit> {
        let transmit = self.discovery.poll_transmit()?;
        Some(SimTransmit {
            from: self.socket,
            to: transmit.destination,
            payload: transmit.payload,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.discovery.poll_timeout()
    }
}

/// A [`crate::holepunch::HolePunch`] behind one host socket and, optionally, one relayed
/// address, as a [`SimAgent`]; it records every event with its time.
#[derive(Debug)]
pub struct SimPunch {
    /// The host socket.
    pub socket: SocketAddr,
    /// The relayed address of its (ideal) TURN allocation.
    pub relayed: Option<SocketAddr>,
    /// The agent.
    pub agent: crate::holepunch::HolePunch,
    /// Events so far, with when they happened.
    pub events: Vec<(Instant, crate::holepunch::PunchEvent)>,
}

impl SimPunch {
    /// Wraps `agent`.
    pub fn new(
        socket: SocketAddr,
        relayed: Option<SocketAddr>,
        agent: crate::holepunch::HolePunch,
    ) -> Self {
        SimPunch {
            socket,
            relayed,
            agent,
            events: Vec::new(),
        }
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(event) = self.agent.poll_event() {
            self.events.push((now, event));
        }
    }
}

impl SimAgent for SimPunch {
    fn sockets(&self) -> Vec<SocketAddr> {
        let mut sockets = vec![self.socket];
        sockets.extend(self.relayed);
        sockets
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        payload: &[u8],
    ) {
        if Some(local) == self.relayed {
            self.agent
                .handle_relayed_datagram(now, local, from, payload);
        } else {
            self.agent.handle_datagram(now, from, payload);
        }
        self.drain_events(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.agent.handle_timeout(now);
        self.drain_events(now);
    }

    fn poll_transmit(&mut self) -> Option<SimTransmit> {
        let transmit = self.agent.poll_transmit()?;
        let from = match transmit.via {
            crate::Via::Direct => self.socket,
            crate::Via::Relay { relayed } => relayed,
        };
        Some(SimTransmit {
            from,
            to: transmit.destination,
            payload: transmit.payload,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.agent.poll_timeout()
    }
}

/// Where a simulated peer sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimSide {
    /// On a public address.
    Public,
    /// Behind a NAT with this configuration (its `public_ip` is replaced per peer).
    Behind(NatConfig),
}

/// The STUN server [`TwoPeers`] uses to learn server-reflexive candidates.
pub const TWO_PEERS_STUN_SERVER: &str = "198.51.100.1:3478";

/// Two [`crate::holepunch::HolePunch`] peers in one [`World`], candidates gathered (host,
/// server-reflexive through a STUN server core, and optionally an ideal relay each) and
/// exchanged; A is controlling. Used by the virtual-time hole punching tests.
#[derive(Debug)]
pub struct TwoPeers {
    /// The network.
    pub world: World,
    /// Controlling peer.
    pub a: SimPunch,
    /// Controlled peer.
    pub b: SimPunch,
    /// The address that carries A's direct traffic on the internet (its NAT's public IP
    /// with port 0, or its public socket); cut it with [`World::set_cut`] to kill direct paths.
    pub a_public: SocketAddr,
    /// Same for B.
    pub b_public: SocketAddr,
    /// When the agents started.
    pub start: Instant,
    /// Virtual time now.
    pub now: Instant,
}

impl TwoPeers {
    /// Builds the pair; `tweak` adjusts both agents' configuration before they start.
    pub fn new(
        a_side: &SimSide,
        b_side: &SimSide,
        relays: bool,
        network: ImpairmentConfig,
        seed: u64,
        tweak: impl Fn(&mut crate::holepunch::HolePunchConfig),
    ) -> Self {
        use crate::holepunch::{Candidate, HolePunch, HolePunchConfig, IceCredentials, Role};
        let stun_server: SocketAddr = TWO_PEERS_STUN_SERVER
            .parse()
            .expect("invariant: constant address");
        let mut world = World::new(network, seed);
        world.add_socket(stun_server, None);
        let start = Instant::now();
        let (a_socket, a_public) = place(&mut world, a_side, 1, seed);
        let (b_socket, b_public) = place(&mut world, b_side, 2, seed);
        let a_srflx = server_reflexive(&mut world, stun_server, a_socket, start, 1);
        let b_srflx = server_reflexive(&mut world, stun_server, b_socket, start, 2);
        let (a_relay, b_relay) = if relays {
            let a = SocketAddr::from(([198, 51, 100, 200], 40001));
            let b = SocketAddr::from(([198, 51, 100, 200], 40002));
            world.add_socket(a, None);
            world.add_socket(b, None);
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let a_credentials = IceCredentials::random(&mut rng);
        let b_credentials = IceCredentials::random(&mut rng);
        let t0 = start + Duration::from_secs(1);
        let mut a_config = HolePunchConfig::new(
            Role::Controlling,
            7,
            a_credentials.clone(),
            b_credentials.clone(),
        );
        let mut b_config = HolePunchConfig::new(Role::Controlled, 3, b_credentials, a_credentials);
        tweak(&mut a_config);
        tweak(&mut b_config);
        let seed_bytes = seed.to_le_bytes();
        let mut a_seed = [1u8; 32];
        let mut b_seed = [2u8; 32];
        a_seed[..8].copy_from_slice(&seed_bytes);
        b_seed[..8].copy_from_slice(&seed_bytes);
        let mut a = HolePunch::new(a_config, t0, a_seed);
        let mut b = HolePunch::new(b_config, t0, b_seed);
        let candidates =
            |socket: SocketAddr, srflx: Option<SocketAddr>, relay: Option<SocketAddr>| {
                let mut list = vec![Candidate::host(socket)];
                list.extend(
                    srflx
                        .filter(|s| *s != socket)
                        .map(Candidate::server_reflexive),
                );
                list.extend(relay.map(Candidate::relayed));
                list
            };
        for c in candidates(a_socket, a_srflx, a_relay) {
            a.add_local_candidate(c);
            b.add_remote_candidate(t0, c);
        }
        for c in candidates(b_socket, b_srflx, b_relay) {
            b.add_local_candidate(c);
            a.add_remote_candidate(t0, c);
        }
        TwoPeers {
            world,
            a: SimPunch::new(a_socket, a_relay, a),
            b: SimPunch::new(b_socket, b_relay, b),
            a_public,
            b_public,
            start: t0,
            now: t0,
        }
    }

    /// Runs both agents until `until`.
    pub fn run_until(&mut self, until: Instant) {
        while self.now < until {
            let next = self.world.step(self.now, &mut [&mut self.a, &mut self.b]);
            self.now = match next {
                Some(next) if next > self.now => next.min(until),
                Some(_) => self.now + Duration::from_millis(1),
                None => until,
            };
        }
        self.world.step(self.now, &mut [&mut self.a, &mut self.b]);
    }

    /// Runs both agents for `duration`.
    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }
}

fn place(world: &mut World, side: &SimSide, index: u8, seed: u64) -> (SocketAddr, SocketAddr) {
    match side {
        SimSide::Public => {
            let socket = SocketAddr::from(([203, 0, 113, 100 + index], 5000));
            world.add_socket(socket, None);
            (socket, socket)
        }
        SimSide::Behind(config) => {
            let mut config = config.clone();
            config.public_ip = IpAddr::from([203, 0, 113, 10 + index]);
            let public = SocketAddr::new(config.public_ip, 0);
            let nat = world.add_nat(config, seed.wrapping_add(u64::from(index)));
            let socket = SocketAddr::from(([100, 64, index, 2], 5000));
            world.add_socket(socket, Some(nat));
            (socket, public)
        }
    }
}

fn server_reflexive(
    world: &mut World,
    server_addr: SocketAddr,
    socket: SocketAddr,
    start: Instant,
    seed: u8,
) -> Option<SocketAddr> {
    use crate::discovery::{DiscoveryConfig, NatDiscovery};
    use crate::stun::server::{ServerConfig, StunServer};
    let mut server = SimStunServer {
        server: StunServer::new(ServerConfig::new(server_addr)).ok()?,
    };
    let config = DiscoveryConfig::mapped_address_only(server_addr, vec![socket]);
    let mut client = SimDiscovery {
        socket,
        discovery: NatDiscovery::new(config, start, [seed; 32]),
    };
    let mut now = start;
    while !client.discovery.is_finished() {
        match world.step(now, &mut [&mut client, &mut server]) {
            Some(next) => now = next.max(now + Duration::from_micros(1)),
            None => break,
        }
    }
    client.discovery.report().and_then(|r| r.public_addr)
}
