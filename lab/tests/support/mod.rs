//! Shared set-up of the lab tests: a public reflector host with two addresses and two ports.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use lab::agent::{Agent, SocketId};
use lab::{Host, Lab};

/// The reflector's primary and alternate ports.
pub const PORT_PRIMARY: u16 = 3478;
pub const PORT_ALTERNATE: u16 = 3479;

pub fn agent_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lab-agent"))
}

/// A public host with two addresses, reflecting on both ports of both.
pub struct Reflector {
    pub host: Host,
    pub agent: Agent,
    /// (A1:P1, A1:P2, A2:P1, A2:P2) as sockets and addresses.
    pub sockets: [(SocketId, SocketAddr); 4],
}

impl Reflector {
    pub fn start(lab: &mut Lab) -> Reflector {
        let host = lab.public_host("reflector", 2).expect("reflector host");
        let mut agent = Agent::start(&host, agent_binary()).expect("reflector agent");
        let [a1, a2] = [IpAddr::V4(host.addrs()[0]), IpAddr::V4(host.addrs()[1])];
        let addrs = [
            SocketAddr::new(a1, PORT_PRIMARY),
            SocketAddr::new(a1, PORT_ALTERNATE),
            SocketAddr::new(a2, PORT_PRIMARY),
            SocketAddr::new(a2, PORT_ALTERNATE),
        ];
        let sockets = addrs.map(|addr| {
            let (sock, local) = agent.bind(addr).expect("reflector bind");
            agent.reflect(sock).expect("reflect");
            (sock, local)
        });
        Reflector {
            host,
            agent,
            sockets,
        }
    }

    pub fn addr(&self, index: usize) -> SocketAddr {
        self.sockets[index].1
    }
}

pub const ANSWER_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long silence must last before a filtered datagram counts as dropped.
pub const SILENCE: Duration = Duration::from_millis(1500);

/// Waits for a datagram with payload `marker` on `sock`, skipping others, for `SILENCE`.
pub fn received_marker(agent: &mut Agent, sock: SocketId, marker: &str) -> Option<SocketAddr> {
    let deadline = std::time::Instant::now() + SILENCE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        match agent.recv(sock, left).expect("recv") {
            Some((from, data)) if data == marker => return Some(from),
            Some(_) => {}
            None => return None,
        }
    }
}
