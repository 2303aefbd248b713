//! Relay port allocation: binds UDP sockets from the configured range.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;

/// Hands out ports of a range round-robin, skipping those in use here or elsewhere.
#[derive(Debug)]
pub(super) struct PortPool {
    range: RangeInclusive<u16>,
    next: u16,
    in_use: HashSet<u16>,
}

impl PortPool {
    pub(super) fn new(range: RangeInclusive<u16>) -> Self {
        let next = *range.start();
        Self {
            range,
            next,
            in_use: HashSet::new(),
        }
    }

    /// Binds a socket on `ip` and a free port of the range (even when `even`).
    pub(super) fn bind(
        &mut self,
        ip: IpAddr,
        even: bool,
        buffer_bytes: usize,
    ) -> Option<UdpSocket> {
        let span = u32::from(*self.range.end()) - u32::from(*self.range.start()) + 1;
        for _ in 0..span {
            let port = self.next;
            self.next = if port >= *self.range.end() {
                *self.range.start()
            } else {
                port + 1
            };
            if self.in_use.contains(&port) || (even && port % 2 == 1) {
                continue;
            }
            if let Ok(socket) = UdpSocket::bind(SocketAddr::new(ip, port)) {
                if socket.set_nonblocking(true).is_err() {
                    continue;
                }
                super::task::set_buffers(&socket, buffer_bytes);
                self.in_use.insert(port);
                return Some(socket);
            }
        }
        None
    }

    pub(super) fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }
}
