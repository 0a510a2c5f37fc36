//! `fapictl certs new`: a test PKI for mTLS (RFC 8705): a CA, a server certificate, client certificates
//! signed by the CA and self-signed ones (RFC 8705 §2.2, which FAPI 2.0 allows). All ECDSA P-256.

use crate::util;
use anyhow::{bail, Context as _, Result};
use fapi_core::binding::CertThumbprint;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

pub struct CertsArgs {
    pub out: PathBuf,
    pub ca_name: String,
    pub server_dns: Vec<String>,
    pub server_ip: Vec<String>,
    pub clients: Vec<String>,
    pub self_signed_clients: Vec<String>,
    pub days: u32,
    pub force: bool,
}

pub fn new(args: CertsArgs) -> Result<()> {
    let mut names: Vec<&str> = Vec::new();
    for n in args.clients.iter().chain(&args.self_signed_clients) {
        if !util::is_safe_file_name(n) {
            bail!(
                "client name {n:?}: it names the files, so it may use only letters, digits, '.', '_' and '-' (and not start with '.')"
            );
        }
        if matches!(n.as_str(), "ca" | "ca.key" | "server" | "server.key") || n.ends_with(".key") {
            bail!("client name {n:?} would collide with the CA or server files");
        }
        if names.contains(&n.as_str()) {
            bail!("client name {n:?} is given twice");
        }
        names.push(n);
    }
    for ip in &args.server_ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            bail!("--server-ip {ip:?}: not an IP address");
        }
    }
    for dns in &args.server_dns {
        if dns.parse::<std::net::IpAddr>().is_ok() {
            bail!("--server-dns {dns:?}: an IP address; use --server-ip");
        }
    }
    let (dns, ips) = if args.server_dns.is_empty() && args.server_ip.is_empty() {
        (vec!["localhost".to_string()], vec!["127.0.0.1".to_string()])
    } else {
        (args.server_dns.clone(), args.server_ip.clone())
    };
    util::ensure_dir(&args.out)?;
    let w = Writer {
        dir: &args.out,
        force: args.force,
    };
    let mut files = vec!["ca", "server"];
    files.extend(names.iter().copied());
    if !args.force {
        for f in &files {
            for ext in ["pem", "key.pem"] {
                let p = args.out.join(format!("{f}.{ext}"));
                if p.exists() {
                    bail!("{}: already exists (use --force to overwrite)", p.display());
                }
            }
        }
    }

    let now = time::OffsetDateTime::now_utc();
    let validity = |p: &mut CertificateParams, days: u32| {
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(i64::from(days));
    };

    // The CA: may sign end-entity certificates only (path length 0).
    let ca_key = KeyPair::generate().context("CA key generation")?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, args.ca_name.as_str());
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, args.days.saturating_mul(2));
    let ca_cert = ca.self_signed(&ca_key).context("CA certificate")?;
    w.write("ca", &ca_cert.pem(), &ca_key)?;
    println!(
        "CA \"{}\": {} (key {})",
        args.ca_name,
        w.path("ca", "pem").display(),
        w.path("ca", "key.pem").display()
    );
    let issuer = Issuer::new(ca, ca_key);

    // The server: serverAuth, with the SANs asked for.
    let server_key = KeyPair::generate().context("server key generation")?;
    let sans: Vec<String> = dns.iter().chain(&ips).cloned().collect();
    let mut server = CertificateParams::new(sans.clone())
        .with_context(|| format!("server names {sans:?}: not valid DNS names or IP addresses"))?;
    server.distinguished_name = rcgen::DistinguishedName::new();
    server
        .distinguished_name
        .push(DnType::CommonName, sans.first().map_or("server", String::as_str));
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    validity(&mut server, args.days);
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .context("server certificate")?;
    w.write("server", &server_cert.pem(), &server_key)?;
    println!(
        "server: {} (key {}) for {}",
        w.path("server", "pem").display(),
        w.path("server", "key.pem").display(),
        sans.join(", ")
    );

    // Clients: clientAuth; signed by the CA, or self-signed.
    let clients = args
        .clients
        .iter()
        .map(|n| (n, true))
        .chain(args.self_signed_clients.iter().map(|n| (n, false)));
    for (name, by_ca) in clients {
        let key = KeyPair::generate().with_context(|| format!("client {name}: key generation"))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .with_context(|| format!("client {name}: parameters"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, args.days);
        let cert = if by_ca {
            params.use_authority_key_identifier_extension = true;
            params.signed_by(&key, &issuer)
        } else {
            params.self_signed(&key)
        }
        .with_context(|| format!("client {name}: certificate"))?;
        w.write(name, &cert.pem(), &key)?;
        let thumb = CertThumbprint::from_der(cert.der());
        println!(
            "client {name} ({}): {} (key {})",
            if by_ca { "signed by the CA" } else { "self-signed" },
            w.path(name, "pem").display(),
            w.path(name, "key.pem").display()
        );
        println!("  x5t#S256: {}", thumb.to_b64url());
        println!("  sha256 (Envoy digest): {}", util::hex(&thumb.0));
    }
    Ok(())
}

struct Writer<'a> {
    dir: &'a Path,
    force: bool,
}

impl Writer<'_> {
    fn path(&self, name: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{name}.{ext}"))
    }

    /// NAME.pem (certificate) and NAME.key.pem (PKCS#8 private key, mode 0600).
    fn write(&self, name: &str, cert_pem: &str, key: &KeyPair) -> Result<()> {
        util::write_file(
            &self.path(name, "key.pem"),
            key.serialize_pem().as_bytes(),
            true,
            self.force,
        )?;
        util::write_file(&self.path(name, "pem"), cert_pem.as_bytes(), false, self.force)
    }
}
