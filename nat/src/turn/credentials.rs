//! Time-limited TURN credentials in the "TURN REST API" style (coturn's `use-auth-secret`).
//!
//! The username is `"<expiry-unix-seconds>:<user>"` and the password is
//! `base64(HMAC-SHA1(shared_secret, username))`. Any server holding the shared secret checks
//! them without a database, so the same credentials work on the Peerphone relay and on a
//! coturn started with `--use-auth-secret --static-auth-secret=<secret>`.
//!
//! Does not: store users, revoke credentials before expiry, or read the clock (`now_unix` is
//! an input).

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle_eq::constant_time_eq;

/// Credentials handed to a TURN client; the shape of a WebRTC ICE server entry (minus `urls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// `"<expiry-unix-seconds>:<user>"`.
    pub username: String,
    /// `base64(HMAC-SHA1(shared_secret, username))`.
    pub password: String,
    /// Seconds from minting to expiry.
    pub ttl_s: u64,
}

/// A username that passed [`verify`] or [`check_username`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    /// The part after the first `:` (empty when the username is only a timestamp).
    pub user: String,
    /// When the credential stops being accepted.
    pub expires_unix: u64,
}

/// Why credentials are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The username does not start with a decimal expiry timestamp.
    #[error("username is not \"<expiry-unix>:<user>\"")]
    Malformed,
    /// The expiry timestamp lies in the past.
    #[error("credential expired at {expires_unix} (now {now_unix})")]
    Expired {
        /// Expiry from the username.
        expires_unix: u64,
        /// The time of the check.
        now_unix: u64,
    },
    /// The password is not the HMAC of the username under the shared secret.
    #[error("password does not match the username")]
    BadPassword,
}

/// Mints credentials for `user` valid for `ttl_s` seconds from `now_unix`.
pub fn mint(shared_secret: &[u8], user: &str, now_unix: u64, ttl_s: u64) -> TurnCredentials {
    let username = format!("{}:{user}", now_unix.saturating_add(ttl_s));
    let password = password_for(shared_secret, &username);
    TurnCredentials {
        username,
        password,
        ttl_s,
    }
}

/// The password a server holding `shared_secret` expects for `username`.
pub fn password_for(shared_secret: &[u8], username: &str) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(shared_secret)
        .expect("invariant: HMAC accepts keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Parses the username and checks its expiry; the password is checked elsewhere (through
/// MESSAGE-INTEGRITY, keyed with [`password_for`]).
pub fn check_username(username: &str, now_unix: u64) -> Result<VerifiedUser, CredentialError> {
    let (expiry, user) = username.split_once(':').unwrap_or((username, ""));
    if expiry.is_empty() || expiry.len() > 20 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CredentialError::Malformed);
    }
    let expires_unix: u64 = expiry.parse().map_err(|_| CredentialError::Malformed)?;
    if expires_unix < now_unix {
        return Err(CredentialError::Expired {
            expires_unix,
            now_unix,
        });
    }
    Ok(VerifiedUser {
        user: user.to_owned(),
        expires_unix,
    })
}

/// Checks a username/password pair against `shared_secret` at `now_unix`.
pub fn verify(
    shared_secret: &[u8],
    username: &str,
    password: &str,
    now_unix: u64,
) -> Result<VerifiedUser, CredentialError> {
    let verified = check_username(username, now_unix)?;
    let expected = password_for(shared_secret, username);
    if constant_time_eq(expected.as_bytes(), password.as_bytes()) {
        Ok(verified)
    } else {
        Err(CredentialError::BadPassword)
    }
}

mod subtle_eq {
    /// Compares without an early exit, so timing does not reveal the matching prefix.
    pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_credentials_verify_until_expiry() {
        let c = mint(b"s3cret", "alice", 1_000, 600);
        assert_eq!(c.username, "1600:alice");
        assert_eq!(c.ttl_s, 600);
        let ok = verify(b"s3cret", &c.username, &c.password, 1_600).expect("valid");
        assert_eq!(ok.user, "alice");
        assert_eq!(ok.expires_unix, 1_600);
        assert!(matches!(
            verify(b"s3cret", &c.username, &c.password, 1_601),
            Err(CredentialError::Expired { .. })
        ));
        assert_eq!(
            verify(b"other", &c.username, &c.password, 1_000),
            Err(CredentialError::BadPassword)
        );
        assert_eq!(
            verify(b"s3cret", "alice", "x", 1_000),
            Err(CredentialError::Malformed)
        );
    }

    #[test]
    fn password_matches_the_turn_rest_api_reference() {
        // HMAC-SHA1("secret", "1234567890:user") computed independently with
        // `printf %s 1234567890:user | openssl dgst -sha1 -hmac secret -binary | base64`.
        assert_eq!(
            password_for(b"secret", "1234567890:user"),
            REFERENCE_PASSWORD
        );
    }

    const REFERENCE_PASSWORD: &str = include_str!("testdata/rest_api_reference_password.txt");
}
