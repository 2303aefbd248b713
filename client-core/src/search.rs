//! Checking search results: a hit is only as good as its credential.

use proto::supernode::SearchHit;
use proto::{Credential, CredentialError, PublicKey, UnixTime};

/// Why a search hit's credential cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HitError {
    /// The hit carries no credential (an account the login server knows, never seen online
    /// recently): show it, but there is no key to call.
    #[error("no credential")]
    NoCredential,
    /// The credential does not verify against the trust anchor.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The credential is valid but for another user: a supernode tried to substitute a key.
    #[error("credential belongs to another user")]
    WrongUser,
}

impl HitError {
    /// True when the hit can only come from a supernode substituting a key: a credential the
    /// authority never signed, or a real one of another user under this user's name. An
    /// expired or not-yet-valid credential is only stale (a cached answer), and no
    /// credential is an account never seen online.
    pub fn is_forgery(&self) -> bool {
        matches!(
            self,
            Self::WrongUser
                | Self::Credential(CredentialError::BadSignature | CredentialError::Malformed)
        )
    }
}

/// Verifies a hit's credential against the trust anchor and checks that it names the hit's
/// user. Returns the verified claims: use their `device_key` and `display_name`, never the
/// hit's unverified fields, for anything that matters.
pub fn verify_hit(
    hit: &SearchHit,
    authority: &PublicKey,
    now: UnixTime,
) -> Result<Credential, HitError> {
    let credential = hit.credential.as_ref().ok_or(HitError::NoCredential)?;
    let claims = credential.verify(authority, now)?;
    if claims.user != hit.user {
        return Err(HitError::WrongUser);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::supernode::Presence;
    use proto::{DisplayName, SecretKey, SignedCredential, UserName};

    fn credential(authority: &SecretKey, user: &str) -> SignedCredential {
        SignedCredential::issue(
            &Credential {
                serial: 1,
                user: UserName::new(user).expect("valid"),
                display_name: DisplayName::new("X").expect("valid"),
                device_key: SecretKey::generate().public(),
                issued_at: UnixTime::from_secs(1000),
                expires_at: UnixTime::from_secs(2000),
            },
            authority,
        )
    }

    #[test]
    fn a_supernode_cannot_substitute_a_key() {
        let authority = SecretKey::generate();
        let now = UnixTime::from_secs(1500);
        let mut hit = SearchHit {
            user: UserName::new("alice").expect("valid"),
            display_name: DisplayName::new("Alice").expect("valid"),
            credential: Some(credential(&authority, "alice")),
            home: None,
            presence: Presence::offline(),
            last_seen: None,
        };
        assert!(verify_hit(&hit, &authority.public(), now).is_ok());
        hit.credential = Some(credential(&authority, "mallory"));
        assert_eq!(
            verify_hit(&hit, &authority.public(), now),
            Err(HitError::WrongUser)
        );
        hit.credential = Some(credential(&SecretKey::generate(), "alice"));
        assert_eq!(
            verify_hit(&hit, &authority.public(), now),
            Err(HitError::Credential(CredentialError::BadSignature))
        );
        assert!(
            verify_hit(&hit, &authority.public(), now)
                .expect_err("forged")
                .is_forgery()
        );
        hit.credential = Some(credential(&authority, "alice"));
        let stale = verify_hit(&hit, &authority.public(), UnixTime::from_secs(2500));
        assert!(!stale.expect_err("expired").is_forgery());
        hit.credential = None;
        assert!(!HitError::NoCredential.is_forgery());
        assert_eq!(
            verify_hit(&hit, &authority.public(), now),
            Err(HitError::NoCredential)
        );
    }
}
