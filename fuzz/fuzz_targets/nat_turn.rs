//! Fuzzes TURN datagram decoding (STUN with TURN attributes, ChannelData) and feeds the
//! bytes to the TURN server and client cores: nothing may panic.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use nat::stun::IntegrityKey;
use nat::turn::client::{ClientConfig, TurnClient};
use nat::turn::server::{ServerConfig, TurnServer};
use nat::turn::wire::{TurnDatagram, decode_datagram};

fuzz_target!(|data: &[u8]| {
    if let Ok(TurnDatagram::Stun(message)) = decode_datagram(data) {
        let _ = message.verify_integrity(&IntegrityKey::long_term("u", "r", "p"));
        let _ = message.channel_number();
    }
    let now = Instant::now();
    let from = "192.0.2.1:1000".parse().expect("literal address");
    let server_addr = "198.51.100.1:3478".parse().expect("literal address");
    let mut server = TurnServer::new(ServerConfig::new("peer", b"s".to_vec()), now, 0, [0; 32])
        .expect("valid config");
    server.handle_listen_datagram(now, from, data);
    while server.poll_command().is_some() {}
    let mut client = TurnClient::new(ClientConfig::new(server_addr, "1:u", "p"), [0; 32]);
    let _ = client.allocate(now);
    client.handle_datagram(now, server_addr, data);
    while client.poll_transmit().is_some() {}
    while client.poll_event().is_some() {}
});
