//! Random and corrupted datagrams never panic the TURN decoder, server or client.

mod turn_support;

use std::time::Instant;

use nat::turn::client::{ClientConfig, TurnClient};
use nat::turn::server::TurnServer;
use nat::turn::wire::{self, TurnDatagram};
use proptest::prelude::*;
use stun_codec::rfc5766::attributes::{Lifetime, RequestedTransport, XorPeerAddress};
use stun_codec::rfc5766::methods::ALLOCATE;
use turn_support::{EPOCH_UNIX, addr, credentials_for, raw, server_addr, test_config};

fn valid_samples() -> Vec<Vec<u8>> {
    let c = credentials_for("fuzz");
    let nonce = stun_codec::rfc5389::attributes::Nonce::new("6b49d2a0aabbccddeeff0011".into())
        .expect("nonce");
    let mut cd = Vec::new();
    assert!(wire::encode_channel_data(0x4001, b"payload bytes", &mut cd));
    vec![
        raw::signed(
            ALLOCATE,
            1,
            vec![
                RequestedTransport::new(17).into(),
                Lifetime::from_u32(600).into(),
            ],
            &c.username,
            &c.password,
            &nonce,
        ),
        wire::encode_stun(
            wire::send_indication(
                stun_codec::TransactionId::new([3; 12]),
                addr("203.0.113.5:7000"),
                b"data",
            )
            .expect("fits"),
            None,
        )
        .expect("encodes"),
        {
            let mut m = wire::TurnMessage::new(
                stun_codec::MessageClass::Request,
                stun_codec::rfc5766::methods::CREATE_PERMISSION,
                stun_codec::TransactionId::new([4; 12]),
            );
            m.add_attribute(XorPeerAddress::new(addr("[2001:db8::1]:9")));
            wire::encode_stun(m, None).expect("encodes")
        },
        cd,
    ]
}

fn feed_everyone(bytes: &[u8]) {
    let _ = wire::decode_datagram(bytes);
    let now = Instant::now();
    let mut server = TurnServer::new(test_config(), now, EPOCH_UNIX, [1; 32]).expect("config");
    server.handle_listen_datagram(now, addr("192.0.2.1:1000"), bytes);
    while server.poll_command().is_some() {}
    let c = credentials_for("fuzz");
    let mut client = TurnClient::new(
        ClientConfig::new(server_addr(), c.username, c.password),
        [2; 32],
    );
    client.allocate(now).expect("starts");
    client.handle_datagram(now, server_addr(), bytes);
    while client.poll_transmit().is_some() {}
    while client.poll_event().is_some() {}
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        feed_everyone(&bytes);
    }

    #[test]
    fn corrupted_valid_messages_never_panic(
        which in 0usize..4,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = valid_samples()[which].clone();
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        let keep = cut % (bytes.len() + 1);
        feed_everyone(&bytes);
        feed_everyone(&bytes[..keep]);
    }
}

#[test]
fn valid_samples_decode() {
    for s in valid_samples() {
        assert!(wire::decode_datagram(&s).is_ok());
    }
    assert!(matches!(
        wire::decode_datagram(&valid_samples()[3]),
        Ok(TurnDatagram::ChannelData {
            channel: 0x4001,
            ..
        })
    ));
}

#[test]
fn a_flipped_bit_breaks_message_integrity_or_fingerprint() {
    let from = addr("192.0.2.1:1000");
    let c = credentials_for("fuzz");
    let request = |nonce: &stun_codec::rfc5389::attributes::Nonce| {
        raw::signed(
            ALLOCATE,
            1,
            vec![
                RequestedTransport::new(17).into(),
                Lifetime::from_u32(600).into(),
            ],
            &c.username,
            &c.password,
            nonce,
        )
    };
    let grants = |bytes: &[u8]| {
        let mut w = turn_support::World::new(test_config());
        let nonce = raw::nonce(&mut w, from);
        // The nonce depends only on the server seed, the time and the address: the same in
        // every fresh world.
        let _ = &nonce;
        w.raw_to_server(from, bytes);
        !w.relay_ports.is_empty()
    };
    let mut w = turn_support::World::new(test_config());
    let nonce = raw::nonce(&mut w, from);
    let original = request(&nonce);
    assert!(grants(&original), "the unmodified request allocates");
    // Turning FINGERPRINT's type or length into another attribute's makes a valid message
    // with an ignored attribute after MESSAGE-INTEGRITY (RFC 8489 §14.5); every other byte
    // is covered.
    let fingerprint_header = original.len() - 8..original.len() - 4;
    for i in (0..original.len()).filter(|i| !fingerprint_header.contains(i)) {
        for bit in [0x01u8, 0x80] {
            let mut bytes = original.clone();
            bytes[i] ^= bit;
            assert!(
                !grants(&bytes),
                "byte {i} bit {bit:#x} flipped and still allocated"
            );
        }
    }
}
