//! Ed25519 identity keys: the login server's authority key, each device's identity key and
//! each supernode's key.
//!
//! Keys travel as raw bytes on the wire and as one line of unpadded base64url in text
//! (command lines, config files, logs). Every signature is made over a domain-separation
//! label followed by the message, so a signature made for one purpose (a credential) can
//! never be replayed as another (a directory entry).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// A key or signature in text form could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    #[error("not unpadded base64url: {0}")]
    Base64(String),
    #[error("expected {expected} bytes, got {actual}")]
    Length { expected: usize, actual: usize },
    #[error("not a valid Ed25519 public key")]
    NotOnCurve,
    #[error("weak (small-order) or non-canonical Ed25519 public key")]
    Weak,
}

/// A signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
pub struct BadSignature;

/// Purposes a key signs for. The label is prepended to every signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningDomain {
    /// A login credential, signed by the authority.
    Credential,
    /// A supernode directory, signed by the authority.
    Directory,
    /// A revocation list, signed by the authority.
    Revocations,
    /// End-to-end session key agreement between two devices.
    PeerHandshake,
    /// Anything a device signs about itself (presence, key proofs).
    DeviceStatement,
}

impl SigningDomain {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Credential => b"peerphone/v1/credential\0",
            Self::Directory => b"peerphone/v1/directory\0",
            Self::Revocations => b"peerphone/v1/revocations\0",
            Self::PeerHandshake => b"peerphone/v1/peer-handshake\0",
            Self::DeviceStatement => b"peerphone/v1/device-statement\0",
        }
    }
}

fn decode_fixed<const N: usize>(s: &str) -> Result<[u8; N], KeyParseError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(s.trim())
        .map_err(|e| KeyParseError::Base64(e.to_string()))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| KeyParseError::Length {
        expected: N,
        actual: bytes.len(),
    })
}

/// An Ed25519 public key. Once constructed it is a canonically encoded curve point that is
/// not of small order: for a small-order key a forged signature verifies on any message, so
/// such keys would prove nothing in TLS or in signatures.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "[u8; 32]", into = "[u8; 32]")]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyParseError> {
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyParseError::NotOnCurve)?;
        if key.is_weak() || key.to_edwards().compress().to_bytes() != bytes {
            return Err(KeyParseError::Weak);
        }
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Verifies `signature` over `message` in `domain`, rejecting weak keys and
    /// malleable signatures.
    pub fn verify(
        &self,
        domain: SigningDomain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), BadSignature> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| BadSignature)?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        let mut signed = Vec::with_capacity(domain.label().len() + message.len());
        signed.extend_from_slice(domain.label());
        signed.extend_from_slice(message);
        key.verify_strict(&signed, &signature)
            .map_err(|_| BadSignature)
    }

    /// The X25519 form of this key (the birational map to Montgomery form), so a device's
    /// single identity key also serves for Diffie-Hellman (sealed envelopes).
    pub fn to_x25519(&self) -> x25519_dalek::PublicKey {
        let point = VerifyingKey::from_bytes(&self.0)
            .expect("invariant: PublicKey is validated on construction")
            .to_montgomery();
        x25519_dalek::PublicKey::from(point.to_bytes())
    }

    /// A short, stable fingerprint for people to compare (first 8 bytes, base64url).
    pub fn fingerprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0[..8])
    }
}

impl TryFrom<[u8; 32]> for PublicKey {
    type Error = KeyParseError;
    fn try_from(bytes: [u8; 32]) -> Result<Self, Self::Error> {
        Self::from_bytes(bytes)
    }
}

impl From<PublicKey> for [u8; 32] {
    fn from(key: PublicKey) -> Self {
        key.0
    }
}

impl FromStr for PublicKey {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(decode_fixed::<32>(s)?)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "serde_bytes")] pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", URL_SAFE_NO_PAD.encode(&self.0[..6]))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl FromStr for Signature {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(decode_fixed::<64>(s)?))
    }
}

/// A secret Ed25519 key: a device's identity, a supernode's key or the login server's
/// authority key. The secret bytes are wiped from memory on drop and never printed.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the operating system's CSPRNG (through `rand::rng()`).
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand::rng()))
    }

    /// A key from a caller-supplied RNG, for deterministic tests and simulations.
    pub fn generate_with<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(bytes))
    }

    /// The 32 secret bytes, for storing in a key file (mode 0600).
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The secret key as PKCS#8 DER, for building TLS certificates from it.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let doc = self
            .0
            .to_pkcs8_der()
            .expect("invariant: PKCS#8 encoding of an in-memory Ed25519 key cannot fail");
        Zeroizing::new(doc.as_bytes().to_vec())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The X25519 secret matching [`PublicKey::to_x25519`] (the Ed25519 scalar, as in
    /// libsodium's `crypto_sign_ed25519_sk_to_curve25519`).
    pub fn to_x25519(&self) -> x25519_dalek::StaticSecret {
        let scalar = Zeroizing::new(self.0.to_scalar_bytes());
        x25519_dalek::StaticSecret::from(*scalar)
    }

    pub fn sign(&self, domain: SigningDomain, message: &[u8]) -> Signature {
        let mut signed = Vec::with_capacity(domain.label().len() + message.len());
        signed.extend_from_slice(domain.label());
        signed.extend_from_slice(message);
        Signature(self.0.sign(&signed).to_bytes())
    }

    /// Reads a key file's contents: one line of base64url (as written by [`Self::to_text`]).
    ///
    /// Errors never quote the text: it is secret.
    pub fn from_text(text: &str) -> Result<Self, KeyParseError> {
        let bytes = Zeroizing::new(decode_fixed::<32>(text).map_err(|e| match e {
            KeyParseError::Base64(_) => KeyParseError::Base64("invalid character".into()),
            other => other,
        })?);
        Ok(Self::from_bytes(&bytes))
    }

    /// The key file's contents: one line of base64url.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = URL_SAFE_NO_PAD.encode(*self.to_bytes());
        text.push('\n');
        Zeroizing::new(text)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public().fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_round_trip_as_one_line_of_base64url() {
        let key = SecretKey::generate().public();
        let text = key.to_string();
        assert_eq!(text.len(), 43);
        assert!(!text.contains('=') && !text.contains('+') && !text.contains('/'));
        assert_eq!(text.parse::<PublicKey>(), Ok(key));
    }

    #[test]
    fn malformed_key_text_is_refused() {
        assert!(matches!(
            "not base64!".parse::<PublicKey>(),
            Err(KeyParseError::Base64(_))
        ));
        assert!(matches!(
            "AAAA".parse::<PublicKey>(),
            Err(KeyParseError::Length {
                expected: 32,
                actual: 3
            })
        ));
    }

    #[test]
    fn small_order_and_non_canonical_keys_are_refused() {
        // The identity point: any signature with R = [s]B verifies for it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(identity), Err(KeyParseError::Weak));
        // A non-canonical encoding of the identity (y = p + 1).
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert!(PublicKey::from_bytes(non_canonical).is_err());
        assert!(PublicKey::from_bytes(*SecretKey::generate().public().as_bytes()).is_ok());
    }

    #[test]
    fn secret_key_parse_errors_do_not_quote_the_secret() {
        let err = SecretKey::from_text("abc$defghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP")
            .expect_err("invalid");
        assert!(!err.to_string().contains('$'), "{err}");
    }

    #[test]
    fn signatures_are_bound_to_their_domain_and_message() {
        let secret = SecretKey::generate();
        let public = secret.public();
        let sig = secret.sign(SigningDomain::Credential, b"hello");
        assert_eq!(
            public.verify(SigningDomain::Credential, b"hello", &sig),
            Ok(())
        );
        assert_eq!(
            public.verify(SigningDomain::Directory, b"hello", &sig),
            Err(BadSignature)
        );
        assert_eq!(
            public.verify(SigningDomain::Credential, b"hellO", &sig),
            Err(BadSignature)
        );
        let other = SecretKey::generate().public();
        assert_eq!(
            other.verify(SigningDomain::Credential, b"hello", &sig),
            Err(BadSignature)
        );
    }

    #[test]
    fn secret_keys_survive_their_text_form_and_never_print_secrets() {
        let secret = SecretKey::generate();
        let restored = SecretKey::from_text(&secret.to_text()).expect("parse");
        assert_eq!(restored.public(), secret.public());
        let debug = format!("{secret:?}");
        let secret_text = secret.to_text();
        assert!(!debug.contains(secret_text.trim()));
    }

    #[test]
    fn pkcs8_export_is_der() {
        let der = SecretKey::generate().to_pkcs8_der();
        assert_eq!(der[0], 0x30, "a DER SEQUENCE");
    }
}
