//! Rendezvous (highest-random-weight) hashing over the admitted supernodes.
//!
//! Every supernode holds the same signed directory, so every supernode computes the same
//! responsible set for a user without asking anyone: a one-hop DHT. A departure moves only
//! the users the departed node was responsible for.

use proto::{PublicKey, UserName};
use sha2::{Digest, Sha256};

/// The weight of `node` for `user`: the first 8 bytes of SHA-256(node key ‖ user name).
pub fn weight(node: &PublicKey, user: &UserName) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(node.as_bytes());
    hasher.update(user.as_str().as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The `k` members responsible for `user`, best first.
pub fn responsible<'a>(
    members: impl IntoIterator<Item = &'a PublicKey>,
    user: &UserName,
    k: usize,
) -> Vec<PublicKey> {
    let mut ranked: Vec<(u64, PublicKey)> =
        members.into_iter().map(|m| (weight(m, user), *m)).collect();
    // Ties are practically impossible; the key breaks them so every node agrees anyway.
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.into_iter().take(k).map(|(_, m)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::SecretKey;

    fn keys(n: u8) -> Vec<PublicKey> {
        (1..=n)
            .map(|i| SecretKey::from_bytes(&[i; 32]).public())
            .collect()
    }

    #[test]
    fn every_node_agrees_and_departures_move_few_users() {
        let members = keys(20);
        let users: Vec<UserName> = (0..500)
            .map(|i| UserName::new(format!("user{i}")).expect("valid"))
            .collect();
        let mut reversed = members.clone();
        reversed.reverse();
        let mut moved = 0;
        let remaining: Vec<PublicKey> = members[1..].to_vec();
        for user in &users {
            let a = responsible(&members, user, 2);
            assert_eq!(a, responsible(&reversed, user, 2));
            assert_eq!(a.len(), 2);
            assert_ne!(a[0], a[1]);
            let b = responsible(&remaining, user, 2);
            if a[0] != b[0] {
                moved += 1;
                assert_eq!(a[0], members[0], "only the departed node's users move");
            }
        }
        // 1/20 of the users on average; far from all of them.
        assert!(moved > 5 && moved < 60, "moved {moved}");
    }
}
