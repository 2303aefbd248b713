//! A virtual-time network of devices running `Calls` cores, connected by a simulated
//! supernode router that delivers `Route` payloads through a seeded `netsim` impairment.

#![allow(dead_code)]

use client_core::call::{CallConfig, CallEvent, Calls};
use client_core::chat::DeviceCrypto;
use netsim::{Impairment, ImpairmentConfig, LossModel};
use proto::credential::DEFAULT_CREDENTIAL_LIFETIME;
use proto::supernode::RouteOutcome;
use proto::{Credential, DisplayName, PublicKey, SecretKey, SignedCredential, UnixTime, UserName};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const WALL: UnixTime = UnixTime::from_secs(1_800_000_000);

#[derive(Clone)]
pub struct Packet {
    pub from_device: PublicKey,
    pub to_device: PublicKey,
    pub payload: Vec<u8>,
}

pub struct Device {
    pub user: UserName,
    pub key: PublicKey,
    pub calls: Calls,
    pub events: Vec<(Instant, CallEvent)>,
    pub online: bool,
}

pub struct Sim {
    pub now: Instant,
    pub start: Instant,
    pub authority: SecretKey,
    pub devices: BTreeMap<PublicKey, Device>,
    pub link: Impairment<Packet>,
    /// Payloads routed to these keys are delivered to the mapped device instead (a lying
    /// supernode's key substitution).
    pub redirect: BTreeMap<PublicKey, PublicKey>,
}

pub fn user(name: &str) -> UserName {
    UserName::new(name).expect("valid")
}

pub fn lossy() -> ImpairmentConfig {
    ImpairmentConfig {
        loss: LossModel::Bernoulli { loss_pct: 10.0 },
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(20),
        reorder_pct: 5.0,
        duplicate_pct: 5.0,
        ..ImpairmentConfig::default()
    }
}

pub fn credential(authority: &SecretKey, name: &str, key: &SecretKey) -> SignedCredential {
    let claims = Credential {
        serial: 1,
        user: user(name),
        display_name: DisplayName::default(),
        device_key: key.public(),
        issued_at: WALL,
        expires_at: WALL.saturating_add(DEFAULT_CREDENTIAL_LIFETIME),
    };
    SignedCredential::issue(&claims, authority)
}

impl Sim {
    pub fn new(link: ImpairmentConfig, seed: u64) -> Self {
        let now = Instant::now();
        Self {
            now,
            start: now,
            authority: SecretKey::generate(),
            devices: BTreeMap::new(),
            link: Impairment::new(link, seed),
            redirect: BTreeMap::new(),
        }
    }

    /// Adds a device of `name` certified by the sim's authority.
    pub fn add_device(&mut self, name: &str) -> PublicKey {
        let authority = self.authority.clone();
        self.add_device_certified_by(name, &authority)
    }

    /// Adds a device whose credential is signed by `issuer` (a forger when it is not the
    /// sim's authority); it verifies others against the real authority.
    pub fn add_device_certified_by(&mut self, name: &str, issuer: &SecretKey) -> PublicKey {
        let key = SecretKey::generate();
        let cred = credential(issuer, name, &key);
        let crypto = DeviceCrypto::new(key.clone(), cred, self.authority.public())
            .expect("credential names the key");
        let public = key.public();
        self.devices.insert(
            public,
            Device {
                user: user(name),
                key: public,
                calls: Calls::new(crypto, CallConfig::default()),
                events: Vec::new(),
                online: true,
            },
        );
        public
    }

    pub fn device(&mut self, key: PublicKey) -> &mut Device {
        self.devices.get_mut(&key).expect("device exists")
    }

    pub fn calls(&mut self, key: PublicKey) -> &mut Calls {
        &mut self.device(key).calls
    }

    /// Moves every pending transmit into the router and every event into the logs.
    fn drain(&mut self) {
        loop {
            let mut moved = false;
            let keys: Vec<PublicKey> = self.devices.keys().copied().collect();
            for key in keys {
                loop {
                    let now = self.now;
                    let dev = self.devices.get_mut(&key).expect("exists");
                    let Some(t) = dev.calls.poll_transmit() else {
                        break;
                    };
                    moved = true;
                    let target = self
                        .redirect
                        .get(&t.to_device)
                        .copied()
                        .unwrap_or(t.to_device);
                    let online = self.devices.get(&target).is_some_and(|d| d.online);
                    let outcome = if online {
                        self.link.handle_packet(
                            now,
                            Packet {
                                from_device: key,
                                to_device: target,
                                payload: t.payload,
                            },
                        );
                        RouteOutcome::Delivered
                    } else {
                        RouteOutcome::Offline
                    };
                    let dev = self.devices.get_mut(&key).expect("exists");
                    dev.calls.handle_route_status(now, t.token, outcome);
                }
                let dev = self.devices.get_mut(&key).expect("exists");
                while let Some(e) = dev.calls.poll_event() {
                    dev.events.push((self.now, e));
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Runs the network for `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        let until = self.now + span;
        loop {
            self.drain();
            let mut next = self.link.poll_timeout();
            for d in self.devices.values() {
                if let Some(t) = d.calls.poll_timeout() {
                    next = Some(next.map_or(t, |n: Instant| n.min(t)));
                }
            }
            let Some(next) = next.filter(|n| *n <= until) else {
                break;
            };
            self.now = self.now.max(next);
            while let Some(p) = self.link.poll_packet(self.now) {
                let now = self.now;
                if let Some(dev) = self.devices.get_mut(&p.to_device)
                    && dev.online
                {
                    let _ = dev
                        .calls
                        .handle_routed(now, WALL, p.from_device, &p.payload);
                }
            }
            let now = self.now;
            for d in self.devices.values_mut() {
                if d.calls.poll_timeout().is_some_and(|t| t <= now) {
                    d.calls.handle_timeout(now);
                }
            }
        }
        self.now = until;
        self.drain();
    }

    pub fn events(&self, key: PublicKey) -> &[(Instant, CallEvent)] {
        &self.devices[&key].events
    }

    /// The names of the events a device saw, in order.
    pub fn names(&self, key: PublicKey) -> Vec<&'static str> {
        self.events(key).iter().map(|(_, e)| name(e)).collect()
    }

    pub fn ended(&self, key: PublicKey) -> Option<&CallEvent> {
        self.events(key)
            .iter()
            .map(|(_, e)| e)
            .find(|e| matches!(e, CallEvent::Ended { .. }))
    }

    pub fn media_keys(&self, key: PublicKey) -> Option<&proto::e2e::SessionKeys> {
        self.events(key).iter().find_map(|(_, e)| match e {
            CallEvent::MediaKeys { keys, .. } => Some(keys),
            _ => None,
        })
    }
}

pub fn name(e: &CallEvent) -> &'static str {
    match e {
        CallEvent::Incoming { .. } => "incoming",
        CallEvent::Ringing { .. } => "ringing",
        CallEvent::MediaKeys { .. } => "media_keys",
        CallEvent::Connected { .. } => "connected",
        CallEvent::Held { .. } => "held",
        CallEvent::Resumed { .. } => "resumed",
        CallEvent::Muted { .. } => "muted",
        CallEvent::Candidates { .. } => "candidates",
        CallEvent::Ended { .. } => "ended",
    }
}

pub fn end_reason(e: Option<&CallEvent>) -> Option<&'static str> {
    match e {
        Some(CallEvent::Ended { reason, .. }) => Some(reason.as_str()),
        _ => None,
    }
}
