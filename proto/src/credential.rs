//! Login credentials: the statement "this device key belongs to this user until then",
//! signed by the login server's authority key.
//!
//! Anyone who holds the authority public key (the trust anchor) verifies a credential
//! offline; supernodes and peers never ask the login server. A credential is carried as its
//! exact signed bytes, so verification never depends on re-encoding.

use crate::keys::{PublicKey, SecretKey, Signature, SigningDomain};
use crate::names::{DisplayName, UserName};
use crate::time::UnixTime;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a credential is valid by default.
pub const DEFAULT_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Clocks disagree; a credential issued this far in the future is still accepted.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The claims of a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Unique per issued credential; revocations name serials.
    pub serial: u64,
    pub user: UserName,
    pub display_name: DisplayName,
    /// The device's identity key: the key its TLS and end-to-end sessions prove.
    pub device_key: PublicKey,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("credential is malformed")]
    Malformed,
    #[error("credential is not signed by the trusted login server")]
    BadSignature,
    #[error("credential expired at {0}")]
    Expired(UnixTime),
    #[error("credential is not valid before {0}")]
    NotYetValid(UnixTime),
    #[error("credential has been revoked")]
    Revoked,
    #[error("credential names another device key than the one the peer proved")]
    WrongKey {
        expected_user: UserName,
        expected_key: PublicKey,
    },
}

/// A credential as issued: the encoded claims and the authority's signature over them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCredential {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    signature: Signature,
}

impl std::fmt::Debug for SignedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.claims_unverified() {
            Ok(c) => write!(f, "SignedCredential(serial {}, {})", c.serial, c.user),
            Err(_) => f.write_str("SignedCredential(malformed)"),
        }
    }
}

/// The most bytes a credential body may take; anything longer is refused before decoding.
pub const MAX_CREDENTIAL_BODY: usize = 512;

impl SignedCredential {
    /// Signs `claims` with the authority key.
    pub fn issue(claims: &Credential, authority: &SecretKey) -> Self {
        let body = postcard::to_allocvec(claims)
            .expect("invariant: encoding a Credential into a Vec cannot fail");
        let signature = authority.sign(SigningDomain::Credential, &body);
        Self { body, signature }
    }

    /// Verifies the signature against the trust anchor and the validity window at `now`.
    /// Revocation is checked separately ([`crate::credential::RevocationList`]) because only
    /// online parties can know of it.
    pub fn verify(
        &self,
        authority: &PublicKey,
        now: UnixTime,
    ) -> Result<Credential, CredentialError> {
        if self.body.len() > MAX_CREDENTIAL_BODY {
            return Err(CredentialError::Malformed);
        }
        authority
            .verify(SigningDomain::Credential, &self.body, &self.signature)
            .map_err(|_| CredentialError::BadSignature)?;
        let claims = self.claims_unverified()?;
        if now >= claims.expires_at {
            return Err(CredentialError::Expired(claims.expires_at));
        }
        if claims.issued_at > now.saturating_add(MAX_CLOCK_SKEW) {
            return Err(CredentialError::NotYetValid(claims.issued_at));
        }
        Ok(claims)
    }

    /// Verifies as [`Self::verify`] and also that the credential names `device_key`, the key
    /// the peer proved in its TLS handshake.
    pub fn verify_for_key(
        &self,
        authority: &PublicKey,
        now: UnixTime,
        device_key: &PublicKey,
    ) -> Result<Credential, CredentialError> {
        let claims = self.verify(authority, now)?;
        if &claims.device_key != device_key {
            return Err(CredentialError::WrongKey {
                expected_user: claims.user,
                expected_key: claims.device_key,
            });
        }
        Ok(claims)
    }

    /// Decodes the claims without checking the signature: for display only.
    pub fn claims_unverified(&self) -> Result<Credential, CredentialError> {
        if self.body.len() > MAX_CREDENTIAL_BODY {
            return Err(CredentialError::Malformed);
        }
        postcard::from_bytes(&self.body).map_err(|_| CredentialError::Malformed)
    }

    /// The encoded form, for storing in a profile.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("invariant: encoding into a Vec cannot fail")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CredentialError> {
        postcard::from_bytes(bytes).map_err(|_| CredentialError::Malformed)
    }
}

/// Credentials that were revoked before their expiry (password change, device removal),
/// signed by the authority so supernodes can pass it on without being trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// Strictly increasing; a holder keeps the newest list it has seen.
    pub version: u64,
    pub issued_at: UnixTime,
    /// Revoked credential serials with their expiry; entries are dropped once expired.
    pub revoked: Vec<(u64, UnixTime)>,
}

impl RevocationList {
    pub fn is_revoked(&self, serial: u64) -> bool {
        self.revoked.iter().any(|(s, _)| *s == serial)
    }
}

/// A revocation list with the authority's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRevocationList {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    signature: Signature,
}

/// Revocation lists larger than this are refused (it bounds memory on every supernode).
pub const MAX_REVOCATION_LIST_BYTES: usize = 1 << 20;

impl SignedRevocationList {
    pub fn issue(list: &RevocationList, authority: &SecretKey) -> Self {
        let body = postcard::to_allocvec(list)
            .expect("invariant: encoding a RevocationList into a Vec cannot fail");
        let signature = authority.sign(SigningDomain::Revocations, &body);
        Self { body, signature }
    }

    pub fn verify(&self, authority: &PublicKey) -> Result<RevocationList, CredentialError> {
        if self.body.len() > MAX_REVOCATION_LIST_BYTES {
            return Err(CredentialError::Malformed);
        }
        authority
            .verify(SigningDomain::Revocations, &self.body, &self.signature)
            .map_err(|_| CredentialError::BadSignature)?;
        postcard::from_bytes(&self.body).map_err(|_| CredentialError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(device: &SecretKey, issued_at: UnixTime) -> Credential {
        Credential {
            serial: 7,
            user: UserName::new("alice").expect("valid"),
            display_name: DisplayName::new("Alice").expect("valid"),
            device_key: device.public(),
            issued_at,
            expires_at: issued_at.saturating_add(DEFAULT_CREDENTIAL_LIFETIME),
        }
    }

    #[test]
    fn a_credential_verifies_offline_with_the_anchor() {
        let authority = SecretKey::generate();
        let device = SecretKey::generate();
        let now = UnixTime::from_secs(1_800_000_000);
        let signed = SignedCredential::issue(&claims(&device, now), &authority);
        let restored = SignedCredential::from_bytes(&signed.to_bytes()).expect("decode");
        let verified = restored
            .verify_for_key(&authority.public(), now, &device.public())
            .expect("valid");
        assert_eq!(verified.user.as_str(), "alice");
    }

    #[test]
    fn expired_credentials_are_refused() {
        let authority = SecretKey::generate();
        let device = SecretKey::generate();
        let now = UnixTime::from_secs(1_800_000_000);
        let signed = SignedCredential::issue(&claims(&device, now), &authority);
        let later = now.saturating_add(DEFAULT_CREDENTIAL_LIFETIME);
        assert!(matches!(
            signed.verify(&authority.public(), later),
            Err(CredentialError::Expired(_))
        ));
        let early = UnixTime::from_secs(now.as_secs() - 3600);
        assert!(matches!(
            signed.verify(&authority.public(), early),
            Err(CredentialError::NotYetValid(_))
        ));
    }

    #[test]
    fn tampered_credentials_are_refused() {
        let authority = SecretKey::generate();
        let device = SecretKey::generate();
        let now = UnixTime::from_secs(1_800_000_000);
        let signed = SignedCredential::issue(&claims(&device, now), &authority);
        let mut bytes = signed.to_bytes();
        // Flip every byte in turn: each copy must fail to decode or fail to verify.
        for i in 0..bytes.len() {
            bytes[i] ^= 0x01;
            if let Ok(tampered) = SignedCredential::from_bytes(&bytes) {
                assert!(
                    tampered.verify(&authority.public(), now).is_err(),
                    "byte {i}"
                );
            }
            bytes[i] ^= 0x01;
        }
        let impostor = SecretKey::generate();
        let forged = SignedCredential::issue(&claims(&device, now), &impostor);
        assert_eq!(
            forged.verify(&authority.public(), now),
            Err(CredentialError::BadSignature)
        );
    }

    #[test]
    fn a_credential_for_another_key_is_refused() {
        let authority = SecretKey::generate();
        let device = SecretKey::generate();
        let now = UnixTime::from_secs(1_800_000_000);
        let signed = SignedCredential::issue(&claims(&device, now), &authority);
        let other = SecretKey::generate().public();
        assert!(matches!(
            signed.verify_for_key(&authority.public(), now, &other),
            Err(CredentialError::WrongKey { .. })
        ));
    }

    #[test]
    fn revocation_lists_are_signed() {
        let authority = SecretKey::generate();
        let list = RevocationList {
            version: 3,
            issued_at: UnixTime::from_secs(10),
            revoked: vec![(7, UnixTime::from_secs(100))],
        };
        let signed = SignedRevocationList::issue(&list, &authority);
        let verified = signed.verify(&authority.public()).expect("valid");
        assert!(verified.is_revoked(7));
        assert!(!verified.is_revoked(8));
        assert!(signed.verify(&SecretKey::generate().public()).is_err());
    }
}
