//! Password hashing with argon2id, off the async runtime and with bounded concurrency.
//!
//! Parameters: argon2id, m = 19 MiB, t = 2, p = 1 (OWASP's minimum), a fresh 16-byte salt
//! per hash, stored as a PHC string. Unknown users are verified against a dummy hash made
//! with the same parameters, so they cost the same time as a wrong password.

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Hashing failed (a bug or an exhausted machine, never the user's fault).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2: {0}")]
    Argon2(String),
    #[error("hashing task failed")]
    Task,
}

/// The password hasher. Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<String>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("m_cost_kib", &self.params.m_cost())
            .field("t_cost", &self.params.t_cost())
            .finish()
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &[u8]) -> Result<String, HashError> {
    let salt: [u8; 16] = rand::random();
    argon2(params)
        .hash_password_with_salt(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

impl Hasher {
    /// `max_parallel` hashes run at once (each takes 19 MiB and one core for tens of ms);
    /// further requests wait their turn.
    pub fn new(max_parallel: usize) -> Result<Self, HashError> {
        let params =
            Params::new(19 * 1024, 2, 1, None).map_err(|e| HashError::Argon2(e.to_string()))?;
        let dummy_hash = hash_blocking(&params, b"peerphone dummy password")?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(max_parallel.max(1))),
            dummy_hash: Arc::new(dummy_hash),
        })
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Task)?;
        let params = self.params.clone();
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        tokio::task::spawn_blocking(move || hash_blocking(&params, &password))
            .await
            .map_err(|_| HashError::Task)?
    }

    /// Verifies `password` against `stored` (a PHC string), or against the dummy hash when
    /// `stored` is `None`, which always fails but takes the same time.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Task)?;
        let known = stored.is_some();
        let hash = stored.unwrap_or(self.dummy_hash.as_str()).to_owned();
        let params = self.params.clone();
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        let matches = tokio::task::spawn_blocking(move || {
            argon2(&params)
                .verify_password(&password, hash.as_str())
                .is_ok()
        })
        .await
        .map_err(|_| HashError::Task)?;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_salts_are_unique() {
        let hasher = Hasher::new(2).expect("hasher");
        let a = hasher.hash("correct horse").await.expect("hash");
        let b = hasher.hash("correct horse").await.expect("hash");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(
            hasher
                .verify("correct horse", Some(&a))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify("wrong horse", Some(&a))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify("peerphone dummy password", None)
                .await
                .expect("verify")
        );
    }
}
