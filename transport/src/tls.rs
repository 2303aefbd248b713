//! TLS 1.3 bound to Peerphone identities.
//!
//! Every endpoint's TLS identity is its Ed25519 identity key, presented as an RFC 7250 raw
//! public key: the certificate message carries only the key's SubjectPublicKeyInfo. There is
//! no X.509, no certificate authority and no name checking; who a key belongs to is decided
//! by a [`PeerPolicy`] here (a pinned key) and by the application afterwards (a credential
//! or a signed directory entry naming the key).
//!
//! Raw public keys were chosen over rcgen self-signed certificates because the key is the
//! whole identity: certificates would add validity dates, names and an X.509 parser on the
//! attack surface, all of which would then have to be ignored.
//!
//! Both verifiers accept exactly one Ed25519 key, refuse chains, and check the TLS 1.3
//! `CertificateVerify` signature with rustls' own helper, so the peer proves it holds the
//! secret key. Client authentication is mandatory in both directions (mutual TLS), and
//! session resumption is off, so no connection skips the proof.

use proto::{PublicKey, SecretKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use std::sync::{Arc, Mutex};

/// The ALPN protocol every Peerphone connection negotiates.
pub const ALPN: &[u8] = b"peerphone/1";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) } followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Which peer keys a TLS handshake accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPolicy {
    /// Only this key: dialing the login server (whose TLS key is the authority key) or a
    /// supernode whose key comes from the signed directory.
    Key(PublicKey),
    /// Any Ed25519 key. The application must then check [`crate::Conn::peer_key`] against a
    /// credential or directory entry before serving any other request.
    AnyKey,
}

/// Why a peer's TLS identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("peer's TLS key is not an Ed25519 raw public key")]
    NotEd25519,
    #[error("peer sent a certificate chain; only a single raw public key is accepted")]
    Chain,
    #[error("peer proved key {actual}, expected {expected}")]
    WrongKey {
        expected: PublicKey,
        actual: PublicKey,
    },
}

/// Encodes `key` as an Ed25519 SubjectPublicKeyInfo.
pub fn ed25519_spki(key: &PublicKey) -> Vec<u8> {
    let mut der = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
    der.extend_from_slice(&ED25519_SPKI_PREFIX);
    der.extend_from_slice(key.as_bytes());
    der
}

/// Reads an Ed25519 key from a SubjectPublicKeyInfo; `None` for anything else.
pub fn key_from_spki(der: &[u8]) -> Option<PublicKey> {
    let rest = der.strip_prefix(&ED25519_SPKI_PREFIX)?;
    let bytes: [u8; 32] = rest.try_into().ok()?;
    PublicKey::from_bytes(bytes).ok()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Our own identity as rustls wants it: the raw public key and a signer for it.
fn certified_key(identity: &SecretKey) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let pkcs8 = identity.to_pkcs8_der();
    let signer =
        rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(pkcs8.as_slice()))?;
    let spki = CertificateDer::from(ed25519_spki(&identity.public()));
    Ok(Arc::new(CertifiedKey::new(vec![spki], signer)))
}

#[derive(Debug)]
struct PeerVerifier {
    policy: PeerPolicy,
    algorithms: WebPkiSupportedAlgorithms,
    /// The last refusal, so a dialer can report a typed error instead of a TLS alert.
    refusal: Arc<Mutex<Option<IdentityError>>>,
}

impl PeerVerifier {
    fn new(policy: PeerPolicy) -> Self {
        Self {
            policy,
            algorithms: provider().signature_verification_algorithms,
            refusal: Arc::new(Mutex::new(None)),
        }
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let outcome = if !intermediates.is_empty() {
            Err(IdentityError::Chain)
        } else {
            match key_from_spki(end_entity.as_ref()) {
                None => Err(IdentityError::NotEd25519),
                Some(actual) => match self.policy {
                    PeerPolicy::AnyKey => Ok(()),
                    PeerPolicy::Key(expected) if expected == actual => Ok(()),
                    PeerPolicy::Key(expected) => Err(IdentityError::WrongKey { expected, actual }),
                },
            }
        };
        outcome.map_err(|error| {
            if let Ok(mut slot) = self.refusal.lock() {
                *slot = Some(error.clone());
            }
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
        })
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // `check` already ran, but the signature must only ever be checked against an
        // Ed25519 key with the Ed25519 scheme.
        if dss.scheme != SignatureScheme::ED25519 || key_from_spki(cert.as_ref()).is_none() {
            return Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(cert.as_ref()),
            dss,
            &self.algorithms,
        )
    }
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Where a dial's verifier leaves the reason it refused the server, if it did.
#[derive(Debug, Clone)]
pub(crate) struct RefusalSlot(Arc<Mutex<Option<IdentityError>>>);

impl RefusalSlot {
    pub(crate) fn take(&self) -> Option<IdentityError> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// A rustls client configuration: TLS 1.3 only, ALPN `peerphone/1`, our identity key as the
/// client's raw public key, the server checked against `policy`.
pub fn client_config(
    identity: &SecretKey,
    policy: PeerPolicy,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    client_config_with_slot(identity, policy).map(|(config, _)| config)
}

pub(crate) fn client_config_with_slot(
    identity: &SecretKey,
    policy: PeerPolicy,
) -> Result<(Arc<rustls::ClientConfig>, RefusalSlot), rustls::Error> {
    let verifier = PeerVerifier::new(policy);
    let slot = RefusalSlot(verifier.refusal.clone());
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified_key(identity)?),
        ));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.enable_sni = false;
    // A resumed session skips the verifier; every connection proves its key afresh.
    config.resumption = rustls::client::Resumption::disabled();
    Ok((Arc::new(config), slot))
}

/// A rustls server configuration: TLS 1.3 only, ALPN `peerphone/1`, our identity key as the
/// server's raw public key, a client key demanded and checked against `policy`.
pub fn server_config(
    identity: &SecretKey,
    policy: PeerPolicy,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PeerVerifier::new(policy)))
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified_key(identity)?),
        ));
    config.alpn_protocols = vec![ALPN.to_vec()];
    // A resumed session skips the verifier; every connection proves its key afresh.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The key a peer proved in a completed handshake, from rustls' view of its certificates.
pub(crate) fn key_from_certificates(certs: &[CertificateDer<'_>]) -> Option<PublicKey> {
    match certs {
        [only] => key_from_spki(only.as_ref()),
        _ => None,
    }
}

/// The Ed25519 key the peer of a QUIC connection proved in its handshake.
pub fn peer_key(connection: &quinn::Connection) -> Option<PublicKey> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    key_from_certificates(&certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_key_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = key_from_spki(&bytes);
            let mut spki = ED25519_SPKI_PREFIX.to_vec();
            spki.extend_from_slice(&bytes);
            if let Some(key) = key_from_spki(&spki) {
                prop_assert_eq!(key.as_bytes().as_slice(), bytes.as_slice());
            }
        }
    }

    #[test]
    fn spki_round_trips_and_rejects_other_encodings() {
        let key = SecretKey::generate().public();
        let der = ed25519_spki(&key);
        assert_eq!(der.len(), 44);
        assert_eq!(key_from_spki(&der), Some(key));
        assert_eq!(key_from_spki(&der[..43]), None);
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(key_from_spki(&longer), None);
        let mut other_oid = der;
        other_oid[8] = 0x71; // Ed448
        assert_eq!(key_from_spki(&other_oid), None);
    }
}
