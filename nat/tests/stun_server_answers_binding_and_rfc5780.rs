//! The STUN server core answers Binding requests with XOR-MAPPED-ADDRESS, implements RFC 5780
//! CHANGE-REQUEST / RESPONSE-ORIGIN / OTHER-ADDRESS over its four sockets, rate limits, and
//! never answers garbage with more bytes than it received.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nat::stun::attributes::{
    ChangeRequest, ErrorCode, OtherAddress, ResponseOrigin, Software, UnknownAttributes,
    XorMappedAddress,
};
use nat::stun::server::{DropReason, LocalSocket, Outcome, ServerConfig, StunServer};
use nat::stun::{MessageClass, TransactionId, binding_request, decode, encode, methods};
use proptest::prelude::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

const PRIMARY: &str = "198.51.100.1:3478";
const ALTERNATE: &str = "198.51.100.2:3479";
const CLIENT: &str = "203.0.113.7:40000";

fn request(change: Option<ChangeRequest>, fingerprint: bool) -> Vec<u8> {
    let mut message = binding_request(TransactionId::new([5; 12]));
    if let Some(change) = change {
        message.add_attribute(change);
    }
    encode(message, None, fingerprint).expect("encode")
}

#[test]
fn plain_server_reflects_the_source_address() {
    let mut server = StunServer::new(ServerConfig::new(addr(PRIMARY))).expect("config");
    assert_eq!(
        server.sockets(),
        vec![(LocalSocket::Primary, addr(PRIMARY))]
    );
    let now = Instant::now();
    let outcome = server.handle_datagram(
        now,
        LocalSocket::Primary,
        addr(CLIENT),
        &request(None, true),
    );
    assert_eq!(outcome, Outcome::Answered);
    let transmit = server.poll_transmit().expect("response");
    assert_eq!(transmit.from, LocalSocket::Primary);
    assert_eq!(transmit.destination, addr(CLIENT));
    let response = decode(&transmit.payload).expect("decodes");
    assert!(
        response.has_fingerprint(),
        "FINGERPRINT mirrors the request"
    );
    let message = response.message();
    assert_eq!(message.class(), MessageClass::SuccessResponse);
    assert_eq!(message.transaction_id(), TransactionId::new([5; 12]));
    assert_eq!(
        message
            .get_attribute::<XorMappedAddress>()
            .expect("mapped")
            .address(),
        addr(CLIENT)
    );
    assert!(message.get_attribute::<OtherAddress>().is_none());
    assert!(server.poll_transmit().is_none());
}

#[test]
fn change_request_moves_the_response_source_on_every_socket() {
    let config = ServerConfig::new(addr(PRIMARY)).with_alternate(addr(ALTERNATE));
    let mut server = StunServer::new(config).expect("config");
    assert_eq!(server.sockets().len(), 4);
    let socket_addr = |s| match s {
        LocalSocket::Primary => addr("198.51.100.1:3478"),
        LocalSocket::AltPort => addr("198.51.100.1:3479"),
        LocalSocket::AltIp => addr("198.51.100.2:3478"),
        LocalSocket::AltIpPort => addr("198.51.100.2:3479"),
    };
    let flip = |s: LocalSocket, ip: bool, port: bool| {
        let a = socket_addr(s);
        let alt = addr(ALTERNATE);
        let p = addr(PRIMARY);
        let new_ip = if ip {
            if a.ip() == p.ip() { alt.ip() } else { p.ip() }
        } else {
            a.ip()
        };
        let new_port = if port {
            if a.port() == p.port() {
                alt.port()
            } else {
                p.port()
            }
        } else {
            a.port()
        };
        SocketAddr::new(new_ip, new_port)
    };
    let now = Instant::now();
    for local in LocalSocket::ALL {
        assert_eq!(server.socket_addr(local), Some(socket_addr(local)));
        for (ip, port) in [(false, false), (true, false), (false, true), (true, true)] {
            let outcome = server.handle_datagram(
                now,
                local,
                addr(CLIENT),
                &request(Some(ChangeRequest::new(ip, port)), false),
            );
            assert_eq!(outcome, Outcome::Answered);
            let transmit = server.poll_transmit().expect("response");
            let expected_origin = flip(local, ip, port);
            assert_eq!(server.socket_addr(transmit.from), Some(expected_origin));
            let response = decode(&transmit.payload).expect("decodes");
            let message = response.message();
            assert_eq!(
                message
                    .get_attribute::<ResponseOrigin>()
                    .expect("origin")
                    .address(),
                expected_origin
            );
            assert_eq!(
                message
                    .get_attribute::<OtherAddress>()
                    .expect("other")
                    .address(),
                flip(local, true, true)
            );
            assert_eq!(
                message
                    .get_attribute::<XorMappedAddress>()
                    .expect("mapped")
                    .address(),
                addr(CLIENT)
            );
        }
    }
}

#[test]
fn change_request_without_alternate_is_an_unknown_attribute() {
    let mut server = StunServer::new(ServerConfig::new(addr(PRIMARY))).expect("config");
    let mut message = binding_request(TransactionId::new([6; 12]));
    message.add_attribute(ChangeRequest::new(true, true));
    message.add_attribute(Software::new("peerphone netcheck 0.1".to_owned()).expect("short"));
    let bytes = encode(message, None, true).expect("encode");
    let now = Instant::now();
    assert_eq!(
        server.handle_datagram(now, LocalSocket::Primary, addr(CLIENT), &bytes),
        Outcome::Answered
    );
    let transmit = server.poll_transmit().expect("error response");
    assert!(transmit.payload.len() <= bytes.len());
    let response = decode(&transmit.payload).expect("decodes");
    let message = response.message();
    assert_eq!(message.class(), MessageClass::ErrorResponse);
    assert_eq!(
        message.get_attribute::<ErrorCode>().expect("code").code(),
        420
    );
    let unknown = message
        .get_attribute::<UnknownAttributes>()
        .expect("unknowns");
    assert_eq!(
        unknown
            .unknowns()
            .iter()
            .map(|t| t.as_u16())
            .collect::<Vec<_>>(),
        vec![0x0003]
    );

    // A minimal request would be out-sized by the error: no answer at all.
    let small = request(Some(ChangeRequest::new(true, false)), false);
    assert_eq!(
        server.handle_datagram(now, LocalSocket::Primary, addr(CLIENT), &small),
        Outcome::Dropped(DropReason::WouldAmplify)
    );
    assert!(server.poll_transmit().is_none());
    // Alternate sockets do not exist without an alternate address.
    assert_eq!(
        server.handle_datagram(now, LocalSocket::AltIp, addr(CLIENT), &request(None, false)),
        Outcome::Dropped(DropReason::UnknownSocket)
    );
}

#[test]
fn garbage_and_other_methods_get_no_answer() {
    let mut server = StunServer::new(ServerConfig::new(addr(PRIMARY))).expect("config");
    let now = Instant::now();
    let client = addr(CLIENT);
    assert_eq!(
        server.handle_datagram(now, LocalSocket::Primary, client, b"hello world, not stun"),
        Outcome::NotBinding
    );
    let allocate = encode(
        nat::stun::Message::new(
            MessageClass::Request,
            methods::ALLOCATE,
            TransactionId::new([1; 12]),
        ),
        None,
        false,
    )
    .expect("encode");
    assert_eq!(
        server.handle_datagram(now, LocalSocket::Primary, client, &allocate),
        Outcome::NotBinding
    );
    let mut broken = request(None, true);
    let last = broken.len() - 1;
    broken[last] ^= 1;
    assert_eq!(
        server.handle_datagram(now, LocalSocket::Primary, client, &broken),
        Outcome::Dropped(DropReason::Malformed)
    );
    let response = encode(
        nat::stun::Message::new(
            MessageClass::SuccessResponse,
            methods::BINDING,
            TransactionId::new([1; 12]),
        ),
        None,
        false,
    )
    .expect("encode");
    assert_eq!(
        server.handle_datagram(now, LocalSocket::Primary, client, &response),
        Outcome::Dropped(DropReason::NotARequest)
    );
    assert!(server.poll_transmit().is_none());
}

#[test]
fn answers_are_rate_limited_per_source_and_in_total() {
    let mut config = ServerConfig::new(addr(PRIMARY));
    config.responses_per_second_per_ip = 50;
    config.responses_per_second = 120;
    let mut server = StunServer::new(config).expect("config");
    let start = Instant::now();
    let bytes = request(None, false);
    let answered = |server: &mut StunServer, now, from: &str, n| {
        (0..n)
            .filter(|_| {
                server.handle_datagram(now, LocalSocket::Primary, addr(from), &bytes)
                    == Outcome::Answered
            })
            .count()
    };
    assert_eq!(answered(&mut server, start, "203.0.113.1:1", 200), 50);
    assert_eq!(answered(&mut server, start, "203.0.113.2:1", 200), 50);
    assert_eq!(
        answered(&mut server, start, "203.0.113.3:1", 200),
        20,
        "total budget spent"
    );
    let later = start + Duration::from_millis(100);
    assert_eq!(
        answered(&mut server, later, "203.0.113.1:1", 200),
        5,
        "5 tokens refill in 100 ms"
    );
    while server.poll_transmit().is_some() {}
    assert!(server.stats().rate_limited > 0);
}

proptest! {
    #[test]
    fn garbage_is_never_amplified(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        method_bits in any::<u16>(),
    ) {
        let mut server = StunServer::new(
            ServerConfig::new(addr(PRIMARY)).with_alternate(addr(ALTERNATE)),
        ).expect("config");
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(method_bits & 0x3eef).to_be_bytes());
        bytes.extend_from_slice(&((body.len() / 4 * 4) as u16).to_be_bytes());
        bytes.extend_from_slice(&0x2112_A442u32.to_be_bytes());
        bytes.extend_from_slice(&[3; 12]);
        bytes.extend_from_slice(&body[..body.len() / 4 * 4]);
        let outcome = server.handle_datagram(Instant::now(), LocalSocket::Primary, addr(CLIENT), &bytes);
        if let Some(transmit) = server.poll_transmit() {
            prop_assert_eq!(outcome, Outcome::Answered);
            let response = decode(&transmit.payload).expect("own output decodes");
            if response.message().class() == MessageClass::ErrorResponse {
                prop_assert!(transmit.payload.len() <= bytes.len());
            } else {
                // Success only for a well-formed Binding request.
                let request = decode(&bytes).expect("was a valid request");
                prop_assert_eq!(request.message().method(), methods::BINDING);
                prop_assert_eq!(request.message().class(), MessageClass::Request);
            }
        }
    }
}
