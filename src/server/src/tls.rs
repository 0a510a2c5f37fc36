//! TLS for fapi-as, by rustls: the browser-facing listener asks for no certificate; the mTLS listener
//! (RFC 8705 mtls_endpoint_aliases) requires one and accepts any issuer, self-signed included, as
//! FAPI allows: the handshake still proves the client holds the certificate's key, and what the
//! certificate is worth is decided by client authentication and token binding, not by a CA.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// The client certificate of the connection a request came on (DER), if any. As an axum extractor
/// it never refuses: a request from the browser-facing listener has none.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<Arc<Vec<u8>>>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerCertificate {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<PeerCertificate>()
            .cloned()
            .unwrap_or_default())
    }
}

/// Accepts any client certificate whose handshake signature verifies.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
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
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn load(cert: &Path, key: &Path) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate", cert.display());
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?,
    ))
    .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?
    .ok_or_else(|| anyhow::anyhow!("{}: no private key", key.display()))?;
    Ok((certs, key))
}

/// The two server configurations: (browser-facing, mTLS).
pub fn configs(cert: &Path, key: &Path) -> anyhow::Result<(Arc<ServerConfig>, Arc<ServerConfig>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (certs, key) = load(cert, key)?;
    let mut plain = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key.clone_key())?;
    plain.alpn_protocols = vec![b"http/1.1".to_vec()];
    let verifier = Arc::new(AnyClientCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut mtls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    mtls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(plain), Arc::new(mtls)))
}

/// Makes sure one process-wide crypto provider is installed (rustls needs it for some helpers).
pub fn install_provider() {
    let _ = CryptoProvider::install_default(rustls::crypto::ring::default_provider());
}
