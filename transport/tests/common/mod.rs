//! Shared fixtures: a framed echo server and raw TLS configurations that misbehave.
#![allow(dead_code)]

use proto::SecretKey;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use transport::{Conn, FrameIoError, FrameLimits, Incoming};

/// An upper bound for anything that should happen promptly on loopback.
pub const PROMPTLY: Duration = Duration::from_secs(20);

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("loopback address")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Answer once with the text.
    Echo(String),
    /// Answer `count` times, then end the stream.
    Repeat { text: String, count: u32 },
    /// Answer with the peer key the server saw.
    WhoAmI,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Echo(String),
    Key(proto::PublicKey),
}

/// What the echo server observed, for assertions.
#[derive(Debug)]
pub enum ServerEvent {
    Connected(proto::PublicKey),
    HandshakeFailed(String),
    StreamFailed(FrameIoError),
}

/// Serves framed echo requests on every connection `next` yields; reports what happened.
pub fn serve<F, Fut>(limits: FrameLimits, mut next: F) -> mpsc::Receiver<ServerEvent>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<Incoming>> + Send,
{
    let (events, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(incoming) = next().await {
            let events = events.clone();
            tokio::spawn(async move {
                match incoming.complete().await {
                    Ok(conn) => {
                        let _ = events.send(ServerEvent::Connected(conn.peer_key())).await;
                        serve_conn(conn, limits, events).await;
                    }
                    Err(e) => {
                        let _ = events
                            .send(ServerEvent::HandshakeFailed(e.to_string()))
                            .await;
                    }
                }
            });
        }
    });
    rx
}

async fn serve_conn(conn: Conn, limits: FrameLimits, events: mpsc::Sender<ServerEvent>) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let events = events.clone();
        let peer = conn.peer_key();
        tokio::spawn(async move {
            loop {
                match transport::read_frame_with::<_, Request>(&mut recv, limits).await {
                    Ok(None) => break,
                    Ok(Some(Request::Echo(text))) => {
                        if transport::write_frame(&mut send, &Response::Echo(text))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Ok(Some(Request::Repeat { text, count })) => {
                        for i in 0..count {
                            let reply = Response::Echo(format!("{text} {i}"));
                            if transport::write_frame(&mut send, &reply).await.is_err() {
                                break;
                            }
                        }
                        break;
                    }
                    Ok(Some(Request::WhoAmI)) => {
                        if transport::write_frame(&mut send, &Response::Key(peer))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = events.send(ServerEvent::StreamFailed(e)).await;
                        break;
                    }
                }
            }
            let _ = send.shutdown().await;
        });
    }
}

/// Waits for the next event the echo server reports, within [`PROMPTLY`].
pub async fn next_event(events: &mut mpsc::Receiver<ServerEvent>) -> ServerEvent {
    tokio::time::timeout(PROMPTLY, events.recv())
        .await
        .expect("server reported nothing in time")
        .expect("server stopped")
}

/// Accepts any server raw public key but still checks the handshake signature: a client
/// that does not care who the server is, for building misbehaving clients.
#[derive(Debug)]
pub struct AnyServer;

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &rustls::pki_types::SubjectPublicKeyInfoDer::from(cert.as_ref()),
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

fn tls13_client() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
}

/// A client that presents no key at all.
pub fn client_without_key() -> rustls::ClientConfig {
    let mut config = tls13_client()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth();
    config.alpn_protocols = vec![transport::ALPN.to_vec()];
    config
}

/// Signs with an ECDSA key while claiming the Ed25519 scheme, so a peer's key check (not
/// its scheme negotiation) is what must refuse it.
#[derive(Debug)]
struct ClaimsEd25519(Arc<dyn rustls::sign::SigningKey>);

impl rustls::sign::SigningKey for ClaimsEd25519 {
    fn choose_scheme(
        &self,
        _offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        let inner = self
            .0
            .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])?;
        Some(Box::new(ClaimsEd25519Signer(inner)))
    }
    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ED25519
    }
}

#[derive(Debug)]
struct ClaimsEd25519Signer(Box<dyn rustls::sign::Signer>);

impl rustls::sign::Signer for ClaimsEd25519Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.0.sign(message)
    }
    fn scheme(&self) -> rustls::SignatureScheme {
        rustls::SignatureScheme::ED25519
    }
}

/// An ECDSA P-256 key as a rustls raw-public-key identity, posing as Ed25519.
pub fn ecdsa_identity() -> Arc<rustls::sign::CertifiedKey> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(pair.serialize_der().into());
    let signer = rustls::crypto::ring::sign::any_supported_type(&der).expect("signer");
    let spki = signer.public_key().expect("spki").as_ref().to_vec();
    Arc::new(rustls::sign::CertifiedKey::new(
        vec![spki.into()],
        Arc::new(ClaimsEd25519(signer)),
    ))
}

/// Accepts any client raw public key (checking only the handshake signature).
#[derive(Debug)]
pub struct AnyClient;

impl rustls::server::danger::ClientCertVerifier for AnyClient {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::client::danger::ServerCertVerifier::verify_tls13_signature(
            &AnyServer, message, cert, dss,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::client::danger::ServerCertVerifier::supported_verify_schemes(&AnyServer)
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// A client that presents an ECDSA raw public key.
pub fn client_with_ecdsa_key() -> rustls::ClientConfig {
    let mut config = tls13_client()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(ecdsa_identity()),
        ));
    config.alpn_protocols = vec![transport::ALPN.to_vec()];
    config
}

/// A server that presents an ECDSA raw public key and accepts any client key.
pub fn server_with_ecdsa_key() -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3 is supported")
    .with_client_cert_verifier(Arc::new(AnyClient))
    .with_cert_resolver(Arc::new(
        rustls::server::AlwaysResolvesServerRawPublicKeys::new(ecdsa_identity()),
    ));
    config.alpn_protocols = vec![transport::ALPN.to_vec()];
    config
}

/// A fresh identity key.
pub fn key() -> SecretKey {
    SecretKey::generate()
}

/// Presents `victim`'s public key while holding only some other Ed25519 key.
pub fn impostor_identity(victim: proto::PublicKey) -> Arc<rustls::sign::CertifiedKey> {
    let own = SecretKey::generate();
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(own.to_pkcs8_der().to_vec());
    let signer = rustls::crypto::ring::sign::any_eddsa_type(&der).expect("signer");
    let spki = transport::tls::ed25519_spki(&victim);
    Arc::new(rustls::sign::CertifiedKey::new(vec![spki.into()], signer))
}

/// A client claiming `victim`'s key.
pub fn impostor_client(victim: proto::PublicKey) -> rustls::ClientConfig {
    let mut config = tls13_client()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(impostor_identity(victim)),
        ));
    config.alpn_protocols = vec![transport::ALPN.to_vec()];
    config
}

/// A server claiming `victim`'s key.
pub fn impostor_server(victim: proto::PublicKey) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3 is supported")
    .with_client_cert_verifier(Arc::new(AnyClient))
    .with_cert_resolver(Arc::new(
        rustls::server::AlwaysResolvesServerRawPublicKeys::new(impostor_identity(victim)),
    ));
    config.alpn_protocols = vec![transport::ALPN.to_vec()];
    config
}
