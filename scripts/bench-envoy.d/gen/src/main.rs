//! Test material for scripts/bench-envoy (benchmark only, throwaway keys).
//!
//! `bench-envoy-gen setup OUT CERT_SHA256_HEX`
//!   writes OUT/jwks.json (public keys, ES256 + PS256 + EdDSA), OUT/token-{ES256,PS256,EdDSA}
//!   (RFC 8705 certificate-bound tokens, `cnf."x5t#S256"` = that certificate digest), OUT/token-dpop
//!   (ES256 token bound to a DPoP key, RFC 9449 `cnf.jkt`) and OUT/dpop-key.json (that key, private).
//! `bench-envoy-gen proofs OUT COUNT HTM HTU`
//!   writes OUT/proofs.txt: COUNT DPoP proofs, one a line, each with its own `jti`, `iat` = now and
//!   `ath` of OUT/token-dpop.
//!
//! Nothing secret is printed: only file names and counts.

use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::sign::{random_id, SigningKey};
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub const ISSUER: &str = "https://as.bank.example";
pub const AUDIENCE: &str = "https://api.bank.example";
/// Token lifetime: longer than a whole benchmark, within the bench policy's max_lifetime.
const LIFETIME: i64 = 3600;

fn now() -> Result<i64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64)
}

fn hex32(s: &str) -> Result<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return Err("the certificate digest must be 64 hex characters".into());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

fn claims(now: i64, cnf: Value) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "bench-user",
        "client_id": "bench-client",
        "scope": "openid accounts",
        "iat": now,
        "exp": now + LIFETIME,
        "jti": random_id(),
        "cnf": cnf,
    })
}

fn setup(out: &Path, cert_hex: &str) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let now = now()?;
    let x5t = b64::encode(hex32(cert_hex)?);
    let mut keys = Vec::new();
    for (alg, name) in [
        (Algorithm::ES256, "ES256"),
        (Algorithm::PS256, "PS256"),
        (Algorithm::EdDSA, "EdDSA"),
    ] {
        let key = SigningKey::generate(alg, Some(format!("bench-{}", name.to_lowercase())))?;
        let token = key.sign_jwt(Some("at+jwt"), &claims(now, json!({"x5t#S256": x5t})))?;
        std::fs::write(out.join(format!("token-{name}")), token)?;
        let mut public = key.public_jwk().clone();
        public["use"] = json!("sig");
        keys.push(public);
        if alg == Algorithm::ES256 {
            let dpop = SigningKey::generate(Algorithm::ES256, None)?;
            let token = key.sign_jwt(Some("at+jwt"), &claims(now, json!({"jkt": dpop.thumbprint()})))?;
            std::fs::write(out.join("token-dpop"), token)?;
            std::fs::write(out.join("dpop-key.json"), dpop.private_jwk().to_string())?;
        }
    }
    std::fs::write(out.join("jwks.json"), json!({ "keys": keys }).to_string())?;
    eprintln!("bench-envoy-gen: keys and tokens written to {}", out.display());
    Ok(())
}

fn proofs(out: &Path, count: usize, htm: &str, htu: &str) -> Result<()> {
    let jwk: Value = serde_json::from_slice(&std::fs::read(out.join("dpop-key.json"))?)?;
    let key = SigningKey::from_jwk(&jwk)?;
    let token = std::fs::read_to_string(out.join("token-dpop"))?;
    let iat = now()?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(out.join("proofs.txt"))?);
    for _ in 0..count {
        let proof = key.dpop_proof(htm, htu, Some(token.trim()), iat, &random_id(), None)?;
        writeln!(file, "{proof}")?;
    }
    file.flush()?;
    eprintln!("bench-envoy-gen: {count} DPoP proofs (iat {iat}) written");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [_, "setup", out, cert] => setup(Path::new(out), cert),
        [_, "proofs", out, count, htm, htu] => proofs(Path::new(out), count.parse()?, htm, htu),
        _ => Err("usage: bench-envoy-gen setup OUT CERT_SHA256_HEX | proofs OUT COUNT HTM HTU".into()),
    }
}
