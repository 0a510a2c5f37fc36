//! `fapictl keys new`: a signing key as a private JWK (mode 0600) and its public JWK set.

use crate::util;
use anyhow::{bail, Context as _, Result};
use fapi_core::alg::Algorithm;
use fapi_core::sign::SigningKey;
use std::io::Write as _;
use std::path::Path;

pub fn new(alg: Algorithm, kid: Option<String>, out: &Path, force: bool) -> Result<()> {
    let to_stdout = out == Path::new("-");
    if let Some(k) = &kid {
        if k.is_empty() {
            bail!("--kid: an empty kid cannot select a key");
        }
        if !to_stdout && !util::is_safe_file_name(k) {
            bail!(
                "--kid {k:?}: the kid names the files, so it may use only letters, digits, '.', '_' and '-' (and not start with '.')"
            );
        }
    }
    let key = SigningKey::generate(alg, kid).map_err(|e| anyhow::anyhow!("{alg} key generation: {e}"))?;
    let private = serde_json::to_string_pretty(key.private_jwk())?;
    let public = serde_json::to_string_pretty(&serde_json::json!({ "keys": [key.public_jwk()] }))?;
    if to_stdout {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{private}")?;
        writeln!(stdout, "{public}")?;
        return Ok(());
    }
    let kid = key.kid();
    util::ensure_dir(out)?;
    let private_path = out.join(format!("{kid}.jwk.json"));
    let public_path = out.join(format!("{kid}.jwks.json"));
    if !force {
        for p in [&private_path, &public_path] {
            if p.exists() {
                bail!("{}: already exists (use --force to overwrite)", p.display());
            }
        }
    }
    util::write_file(&private_path, format!("{private}\n").as_bytes(), true, force).context("private key")?;
    util::write_file(&public_path, format!("{public}\n").as_bytes(), false, force)
        .context("public key set")?;
    println!("kid: {kid}");
    println!("alg: {alg}");
    println!(
        "private key: {} (mode 0600: keep it secret, never in a policy)",
        private_path.display()
    );
    println!(
        "public key set: {} (for a policy's jwks.file or token inspect --jwks)",
        public_path.display()
    );
    Ok(())
}
