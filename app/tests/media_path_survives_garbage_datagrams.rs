//! Random and malformed datagrams aimed at a call's socket (truncated STUN, STUN with a bad
//! FINGERPRINT, ChannelData, plain noise) neither crash the path, nor stop it working, nor
//! reach the call as media.

use std::time::Duration;

use app::events::PathKind;
use app::media_path::{MediaPath, PathConfig};
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

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
    let config = PathConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        ..PathConfig::default()
    };
    let (mut alice, alice_offer) = MediaPath::bind(config.clone()).await.expect("bind alice");
    let (mut bob, bob_offer) = MediaPath::bind(config).await.expect("bind bob");
    let mut a = alice
        .start(
            true,
            bob_offer.ufrag.clone(),
            bob_offer.password.clone(),
            bob_offer.candidates.clone(),
        )
        .expect("start alice");
    let mut b = bob
        .start(
            false,
            alice_offer.ufrag.clone(),
            alice_offer.password.clone(),
            alice_offer.candidates.clone(),
        )
        .expect("start bob");

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

    let path = timeout(LIMIT, a.path.wait_for(Option::is_some))
        .await
        .expect("connects despite the noise")
        .expect("alive")
        .expect("some");
    assert_eq!(path, PathKind::Direct);
    timeout(LIMIT, b.path.wait_for(Option::is_some))
        .await
        .expect("bob connects too")
        .expect("alive");

    // Noise from a stranger never reaches the call: the first datagram bob's call sees
    // is alice's.
    a.outgoing
        .send(b"after the storm".to_vec())
        .await
        .expect("alive");
    let first = timeout(LIMIT, b.incoming.recv())
        .await
        .expect("arrives within the limit")
        .expect("alive");
    assert_eq!(first, b"after the storm");
}
