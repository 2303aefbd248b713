//! The signed supernode directory: which supernodes the login server has admitted and where
//! clients reach them.
//!
//! The login server signs the directory with its authority key ([`SigningDomain::Directory`]),
//! so clients and supernodes may pass it on through untrusted hands and still check it
//! against the trust anchor. A holder keeps the directory with the highest `version` it has
//! verified and refuses one past `expires_at`.
//!
//! What it does not do: admission policy and liveness tracking live in the login server.

use crate::keys::{PublicKey, SecretKey, Signature, SigningDomain};
use crate::time::UnixTime;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// How long a signed directory may be used after it was issued.
pub const DIRECTORY_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Directories with more entries than this are refused (bounds memory on every holder).
pub const MAX_DIRECTORY_ENTRIES: usize = 1024;

/// Encoded directories larger than this are refused before decoding.
pub const MAX_DIRECTORY_BYTES: usize = 256 * 1024;

/// Where one supernode is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SupernodeAddrs {
    /// Its QUIC endpoint, for clients and other supernodes.
    pub quic: SocketAddr,
    /// Its STUN/TURN endpoint (UDP), when it runs one.
    pub turn: Option<SocketAddr>,
    /// Its TCP (TLS) endpoint for clients whose UDP is blocked, when it runs one.
    pub tcp: Option<SocketAddr>,
}

/// One admitted supernode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    /// The key its TLS handshake proves.
    pub key: PublicKey,
    pub addrs: SupernodeAddrs,
    /// When the login server first admitted it (stable across heartbeats).
    pub admitted_at: UnixTime,
}

/// The claims of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// Newer directories have higher versions; holders keep the highest they verified.
    pub version: u64,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    /// Sorted by key, at most [`MAX_DIRECTORY_ENTRIES`].
    pub entries: Vec<DirectoryEntry>,
}

impl Directory {
    /// The entry for `key`, if that supernode is admitted.
    pub fn entry(&self, key: &PublicKey) -> Option<&DirectoryEntry> {
        self.entries.iter().find(|e| &e.key == key)
    }
}

/// Why a directory was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory is malformed")]
    Malformed,
    #[error("directory is not signed by the trusted login server")]
    BadSignature,
    #[error("directory expired at {0}")]
    Expired(UnixTime),
    #[error("directory lists {0} supernodes, more than allowed")]
    TooManyEntries(usize),
}

/// A directory as issued: its encoded claims and the authority's signature over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDirectory {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    signature: Signature,
}

impl SignedDirectory {
    /// Signs `directory` with the authority key.
    pub fn issue(directory: &Directory, authority: &SecretKey) -> Self {
        let body = postcard::to_allocvec(directory)
            .expect("invariant: encoding a Directory into a Vec cannot fail");
        let signature = authority.sign(SigningDomain::Directory, &body);
        Self { body, signature }
    }

    /// Verifies the signature against the trust anchor and the expiry at `now`.
    pub fn verify(
        &self,
        authority: &PublicKey,
        now: UnixTime,
    ) -> Result<Directory, DirectoryError> {
        if self.body.len() > MAX_DIRECTORY_BYTES {
            return Err(DirectoryError::Malformed);
        }
        authority
            .verify(SigningDomain::Directory, &self.body, &self.signature)
            .map_err(|_| DirectoryError::BadSignature)?;
        let directory: Directory =
            postcard::from_bytes(&self.body).map_err(|_| DirectoryError::Malformed)?;
        if directory.entries.len() > MAX_DIRECTORY_ENTRIES {
            return Err(DirectoryError::TooManyEntries(directory.entries.len()));
        }
        if now >= directory.expires_at {
            return Err(DirectoryError::Expired(directory.expires_at));
        }
        Ok(directory)
    }

    /// The encoded form, for caching on disk.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("invariant: encoding into a Vec cannot fail")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DirectoryError> {
        if bytes.len() > MAX_DIRECTORY_BYTES + 128 {
            return Err(DirectoryError::Malformed);
        }
        postcard::from_bytes(bytes).map_err(|_| DirectoryError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(now: UnixTime) -> Directory {
        Directory {
            version: 5,
            issued_at: now,
            expires_at: now.saturating_add(DIRECTORY_LIFETIME),
            entries: vec![DirectoryEntry {
                key: SecretKey::generate().public(),
                addrs: SupernodeAddrs {
                    quic: "192.0.2.1:7500".parse().expect("addr"),
                    turn: Some("192.0.2.1:3478".parse().expect("addr")),
                    tcp: None,
                },
                admitted_at: now,
            }],
        }
    }

    #[test]
    fn a_directory_verifies_against_the_anchor_until_it_expires() {
        let authority = SecretKey::generate();
        let now = UnixTime::from_secs(1_800_000_000);
        let dir = directory(now);
        let signed = SignedDirectory::issue(&dir, &authority);
        let restored = SignedDirectory::from_bytes(&signed.to_bytes()).expect("decode");
        assert_eq!(restored.verify(&authority.public(), now), Ok(dir.clone()));
        assert!(dir.entry(&dir.entries[0].key).is_some());
        assert!(matches!(
            restored.verify(&authority.public(), now.saturating_add(DIRECTORY_LIFETIME)),
            Err(DirectoryError::Expired(_))
        ));
        assert_eq!(
            restored.verify(&SecretKey::generate().public(), now),
            Err(DirectoryError::BadSignature)
        );
    }

    #[test]
    fn a_credential_signature_cannot_pass_as_a_directory() {
        let authority = SecretKey::generate();
        let now = UnixTime::from_secs(1_800_000_000);
        let body = postcard::to_allocvec(&directory(now)).expect("encode");
        let forged = SignedDirectory {
            signature: authority.sign(SigningDomain::Credential, &body),
            body,
        };
        assert_eq!(
            forged.verify(&authority.public(), now),
            Err(DirectoryError::BadSignature)
        );
    }
}
