//! Random and malformed datagrams aimed at a call's socket (truncated STUN, STUN with a bad
//! FINGERPRINT, ChannelData, plain noise) neither crash the path, nor stop it working, nor
//! reach the call as media.

mod media_path_support;

use app::events::PathKind;
use app::media_path::MediaPath;
use media_path_support::{loopback_config, receive, start_pair, wait_for_path};
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;

fn garbage(rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let len = (rng.next_u32() % 600) as usize;
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    match rng.next_u32() % 4 {
        // Looks like STUN: two zero bits and the magic cookie.
        0 if len >= 20 => {
            bytes[0] &= 0x3f;
            bytes[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        }
        // Looks like ChannelData.
        1 if len >= 4 => bytes[0] = 0x40 | (bytes[0] & 0x3f),
        _ => {}
    }
    bytes
}

#[tokio::test]
async fn garbage_datagrams_never_break_the_path() {
    let config = loopback_config();
    let (mut alice, alice_offer) = MediaPath::bind(config.clone()).await.expect("bind alice");
    let (mut bob, bob_offer) = MediaPath::bind(config).await.expect("bind bob");
    let (mut a, mut b) = start_pair(&mut alice, &alice_offer, &mut bob, &bob_offer);

    let attacker = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for _ in 0..2000 {
        let bytes = garbage(&mut rng);
        attacker
            .send_to(&bytes, alice.local_addr())
            .await
            .expect("send");
        attacker
            .send_to(&bytes, bob.local_addr())
            .await
            .expect("send");
    }

    assert_eq!(wait_for_path(&mut a.path).await, PathKind::Direct);
    wait_for_path(&mut b.path).await;

    // Noise from a stranger never reaches the call: the first datagram bob's call sees
    // is alice's.
    a.outgoing
        .send(b"after the storm".to_vec())
        .await
        .expect("alive");
    let first = receive(&mut b).await;
    assert_eq!(first, b"after the storm");
}
