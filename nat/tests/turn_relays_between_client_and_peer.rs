//! Data flows both ways through permissions (Send/Data indications) and channels
//! (ChannelData), and stops when permissions or channels are missing or expired.

mod turn_support;

use std::time::Duration;

use nat::turn::client::ClientEvent;
use nat::turn::wire::{self, TurnAttribute};
use stun_codec::rfc5766::attributes::{
    ChannelNumber, Lifetime, RequestedTransport, XorPeerAddress,
};
use stun_codec::rfc5766::methods::{ALLOCATE, CREATE_PERMISSION};
use turn_support::{PeerDatagram, World, addr, raw, test_config};

#[test]
fn send_and_data_indications_carry_data_both_ways() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    let relayed = w.allocated(c);
    let peer = addr("203.0.113.5:7000");
    let now = w.now;
    w.client(c)
        .create_permission(now, peer.ip())
        .expect("allocated");
    w.pump();
    assert_eq!(
        w.events(c),
        vec![ClientEvent::PermissionCreated { peer: peer.ip() }]
    );

    w.client(c).send_to(peer, b"hello peer").expect("allocated");
    w.pump();
    assert_eq!(
        w.peer_received(),
        vec![PeerDatagram {
            from_relay: relayed,
            to_peer: peer,
            payload: b"hello peer".to_vec()
        }]
    );
    w.peer_sends(peer, relayed, b"hello client");
    assert_eq!(
        w.events(c),
        vec![ClientEvent::Data {
            peer,
            payload: b"hello client".to_vec()
        }]
    );
}

#[test]
fn channel_data_carries_data_both_ways() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    let relayed = w.allocated(c);
    let peer = addr("203.0.113.5:7000");
    let now = w.now;
    let channel = w.client(c).bind_channel(now, peer).expect("allocated");
    w.pump();
    assert_eq!(
        w.events(c),
        vec![ClientEvent::ChannelBound { peer, channel }]
    );
    assert_eq!(w.client(c).channel(peer), Some(channel));

    w.client(c)
        .send_to(peer, b"over the channel")
        .expect("allocated");
    let t = w.client(c).poll_transmit().expect("a datagram");
    // ChannelData: 4-byte header, then the data.
    assert_eq!(u16::from_be_bytes([t.payload[0], t.payload[1]]), channel);
    assert_eq!(&t.payload[4..], b"over the channel");
    let from = addr("192.0.2.10:5000");
    w.raw_to_server(from, &t.payload);
    assert_eq!(w.peer_received()[0].payload, b"over the channel");

    w.peer_sends(peer, relayed, b"back");
    assert_eq!(
        w.events(c),
        vec![ClientEvent::Data {
            peer,
            payload: b"back".to_vec()
        }]
    );
    assert_eq!(w.server.stats().packets_to_peers, 1);
    assert_eq!(w.server.stats().packets_to_clients, 1);
}

#[test]
fn peers_without_permission_are_not_relayed() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    let relayed = w.allocated(c);
    let stranger = addr("203.0.113.66:7000");
    w.peer_sends(stranger, relayed, b"let me in");
    assert!(w.events(c).is_empty());
    w.client(c)
        .send_to(stranger, b"no permission")
        .expect("allocated");
    w.pump();
    assert!(w.peer_received().is_empty());
    assert_eq!(w.server.stats().dropped_no_permission, 2);
}

#[test]
fn permissions_and_channels_stay_alive_while_the_client_refreshes() {
    let mut w = World::new(test_config());
    let c = w.add_client(addr("192.0.2.10:5000"), "alice");
    let relayed = w.allocated(c);
    let (p1, p2) = (addr("203.0.113.5:7000"), addr("203.0.113.6:7000"));
    let now = w.now;
    w.client(c)
        .create_permission(now, p1.ip())
        .expect("allocated");
    w.client(c).bind_channel(now, p2).expect("allocated");
    w.advance(Duration::from_secs(1800));
    w.events(c);
    w.peer_sends(p1, relayed, b"one");
    w.peer_sends(p2, relayed, b"two");
    let data: Vec<_> = w
        .events(c)
        .into_iter()
        .filter(|e| matches!(e, ClientEvent::Data { .. }))
        .collect();
    assert_eq!(data.len(), 2);
}

#[test]
fn unrefreshed_permission_expires_after_five_minutes() {
    let mut w = World::new(test_config());
    let from = addr("192.0.2.20:6000");
    let c = turn_support::credentials_for("bob");
    let nonce = raw::nonce(&mut w, from);
    let alloc = raw::signed(
        ALLOCATE,
        1,
        vec![
            RequestedTransport::new(17).into(),
            Lifetime::from_u32(3600).into(),
        ],
        &c.username,
        &c.password,
        &nonce,
    );
    let reply = raw::exchange(&mut w, from, &alloc).expect("allocate answered");
    assert_eq!(reply.class(), stun_codec::MessageClass::SuccessResponse);
    let relayed = *w.relay_ports.values().next().expect("a relay port");
    let peer = addr("203.0.113.5:7000");
    let perm = raw::signed(
        CREATE_PERMISSION,
        2,
        vec![XorPeerAddress::new(peer).into()],
        &c.username,
        &c.password,
        &nonce,
    );
    let reply = raw::exchange(&mut w, from, &perm).expect("permission answered");
    assert_eq!(reply.class(), stun_codec::MessageClass::SuccessResponse);

    w.advance(Duration::from_secs(299));
    w.peer_sends(peer, relayed, b"still allowed");
    assert_eq!(w.raw_inbox.len(), 1, "data indication before expiry");
    w.raw_inbox.clear();
    w.advance(Duration::from_secs(2));
    w.peer_sends(peer, relayed, b"too late");
    assert!(w.raw_inbox.is_empty(), "permission outlived 300 s");
}

#[test]
fn channel_expires_after_ten_minutes_without_rebinding() {
    let mut w = World::new(test_config());
    let from = addr("192.0.2.20:6000");
    let c = turn_support::credentials_for("bob");
    let nonce = raw::nonce(&mut w, from);
    let alloc = raw::signed(
        ALLOCATE,
        1,
        vec![
            RequestedTransport::new(17).into(),
            Lifetime::from_u32(3600).into(),
        ],
        &c.username,
        &c.password,
        &nonce,
    );
    raw::exchange(&mut w, from, &alloc).expect("allocate answered");
    let peer = addr("203.0.113.5:7000");
    let bind: Vec<TurnAttribute> = vec![
        ChannelNumber::new(0x4000).expect("valid").into(),
        XorPeerAddress::new(peer).into(),
    ];
    let req = raw::signed(
        stun_codec::rfc5766::methods::CHANNEL_BIND,
        2,
        bind.clone(),
        &c.username,
        &c.password,
        &nonce,
    );
    let reply = raw::exchange(&mut w, from, &req).expect("bind answered");
    assert_eq!(reply.class(), stun_codec::MessageClass::SuccessResponse);
    let mut cd = Vec::new();
    assert!(wire::encode_channel_data(0x4000, b"x", &mut cd));

    // Keep the permission (not the channel) alive past the channel's lifetime.
    for (step, id) in [(290u64, 3u8), (290, 4)] {
        w.advance(Duration::from_secs(step));
        let perm = raw::signed(
            CREATE_PERMISSION,
            id,
            vec![XorPeerAddress::new(peer).into()],
            &c.username,
            &c.password,
            &nonce_refreshed(&mut w, from),
        );
        raw::exchange(&mut w, from, &perm).expect("permission answered");
    }
    w.raw_to_server(from, &cd);
    assert_eq!(w.peer_received().len(), 1, "channel alive at 580 s");
    w.advance(Duration::from_secs(25));
    w.raw_to_server(from, &cd);
    assert!(w.peer_received().is_empty(), "channel outlived 600 s");
}

fn nonce_refreshed(
    w: &mut World,
    from: std::net::SocketAddr,
) -> stun_codec::rfc5389::attributes::Nonce {
    raw::nonce(w, from)
}
