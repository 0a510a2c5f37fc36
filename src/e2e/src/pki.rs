//! A throw-away test PKI (ECDSA P-256, rcgen on ring), written as PEM files for Envoy and kept as DER
//! for the client:
//! - a CA that signs the server certificate (the client trusts it) and that Envoy lists as its
//!   `trusted_ca`, which Envoy needs before it enforces `require_client_certificate`;
//! - the server certificate for `127.0.0.1` and `localhost`;
//! - self-signed client certificates (RFC 8705 §2.2), which Envoy accepts under `ACCEPT_UNTRUSTED`:
//!   the token binding (`cnf.x5t#S256`), not the chain, is what counts.

use crate::{Context as _, Result};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};

/// A certificate with its key: PEM files on disk, DER in memory.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub cert_der: Vec<u8>,
    key_pkcs8_der: Vec<u8>,
}

impl Identity {
    pub fn cert(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert_der.clone())
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8_der.clone()))
    }

    /// RFC 8705 §3.1 `x5t#S256`: base64url SHA-256 of the DER certificate.
    pub fn x5t_s256(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.cert_der);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// What Envoy reports as `connection.sha256_peer_certificate_digest`: lowercase hex.
    pub fn sha256_hex(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.cert_der);
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Loads PEM files made elsewhere (for example by `fapictl certs new`); the key must be PKCS#8.
    pub fn from_pem_files(name: &str, cert_pem: &Path, key_pem: &Path) -> Result<Self> {
        use rustls::pki_types::pem::PemObject;
        let cert = CertificateDer::from_pem_file(cert_pem).ctx(format!("reading {}", cert_pem.display()))?;
        let key = PrivatePkcs8KeyDer::from_pem_file(key_pem).ctx(format!("reading {}", key_pem.display()))?;
        Ok(Identity {
            name: name.to_string(),
            cert_pem: cert_pem.to_path_buf(),
            key_pem: key_pem.to_path_buf(),
            cert_der: cert.to_vec(),
            key_pkcs8_der: key.secret_pkcs8_der().to_vec(),
        })
    }
}

/// The generated PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (PEM): Envoy's `trusted_ca` and the client's trust anchor.
    pub ca_pem: PathBuf,
    pub ca_der: Vec<u8>,
    pub server: Identity,
    /// Self-signed client certificates, in the order of the names given.
    pub clients: Vec<Identity>,
}

impl TestPki {
    /// Writes `ca.pem`, `server.pem`/`server.key.pem` and `<client>.pem`/`<client>.key.pem` into `dir`.
    pub fn generate(dir: &Path, clients: &[&str]) -> Result<Self> {
        let now = time::OffsetDateTime::now_utc();
        let validity = |p: &mut CertificateParams| {
            p.not_before = now - time::Duration::hours(1);
            p.not_after = now + time::Duration::days(2);
        };

        let ca_key = KeyPair::generate().ctx("CA key")?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).ctx("CA params")?;
        ca.distinguished_name.push(DnType::CommonName, "fapi-e2e test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut ca);
        let ca_cert = ca.self_signed(&ca_key).ctx("CA certificate")?;
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).ctx("writing ca.pem")?;
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().ctx("server key")?;
        let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .ctx("server params")?;
        sp.distinguished_name.push(DnType::CommonName, "fapi-e2e envoy");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut sp);
        let server_cert = sp.signed_by(&server_key, &issuer).ctx("server certificate")?;
        let server = write_identity(
            dir,
            "server",
            server_cert.pem(),
            server_cert.der().to_vec(),
            &server_key,
        )?;

        let mut out = Vec::new();
        for name in clients {
            let key = KeyPair::generate().ctx("client key")?;
            let mut cp = CertificateParams::new(Vec::<String>::new()).ctx("client params")?;
            cp.distinguished_name
                .push(DnType::CommonName, format!("fapi-e2e client {name}"));
            cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            validity(&mut cp);
            let cert = cp.self_signed(&key).ctx("client certificate")?;
            out.push(write_identity(dir, name, cert.pem(), cert.der().to_vec(), &key)?);
        }
        Ok(TestPki {
            ca_pem,
            ca_der: ca_cert.der().to_vec(),
            server,
            clients: out,
        })
    }

    /// The client identity named `name`.
    pub fn client(&self, name: &str) -> Option<&Identity> {
        self.clients.iter().find(|c| c.name == name)
    }
}

fn write_identity(
    dir: &Path,
    name: &str,
    cert_pem: String,
    cert_der: Vec<u8>,
    key: &KeyPair,
) -> Result<Identity> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key.pem"));
    std::fs::write(&cert_path, cert_pem).ctx(format!("writing {}", cert_path.display()))?;
    std::fs::write(&key_path, key.serialize_pem()).ctx(format!("writing {}", key_path.display()))?;
    restrict(&key_path);
    Ok(Identity {
        name: name.to_string(),
        cert_pem: cert_path,
        key_pem: key_path,
        cert_der,
        key_pkcs8_der: key.serialize_der(),
    })
}

fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
