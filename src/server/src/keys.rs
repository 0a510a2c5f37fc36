//! The server's signing keys with rotation: `current` signs; `next` is published ahead of its turn so
//! resource servers already hold it; `retired` keys are still published so tokens they signed verify
//! until they expire. /jwks serves all of them, each with kid and alg.
//!
//! The server verifies the tokens it signed (introspection, revocation, UserInfo) with
//! [`VerifyingKeys`]: the public side of these keys parsed and prepared once by fapi-core, held in the
//! server state and replaced whole when the keys are loaded again. A running server loads them again
//! on SIGHUP (`fapi-as rotate-keys`, then `kill -HUP`): both sets are swapped together, verifying
//! first, so a token the new key signs always verifies.

use fapi_core::alg::Algorithm;
use fapi_core::jwks::Jwks;
use fapi_core::sign::SigningKey;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

pub struct Keys {
    pub current: SigningKey,
    pub next: Option<SigningKey>,
    pub retired: Vec<SigningKey>,
}

fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let jwk: Value = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    SigningKey::from_jwk(&jwk).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn write_key(path: &Path, key: &SigningKey) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(key.private_jwk())?;
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

pub fn parse_alg(name: &str) -> anyhow::Result<Algorithm> {
    match name {
        "ES256" => Ok(Algorithm::ES256),
        "PS256" => Ok(Algorithm::PS256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => anyhow::bail!("signing algorithm {other} is not allowed (ES256, PS256 or EdDSA)"),
    }
}

impl Keys {
    /// Loads the key folder, creating a current key when there is none.
    pub fn load_or_create(dir: &Path, alg: &str) -> anyhow::Result<Keys> {
        std::fs::create_dir_all(dir.join("retired"))
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        let current_path = dir.join("current.jwk.json");
        let current = if current_path.exists() {
            read_key(&current_path)?
        } else {
            let key = SigningKey::generate(parse_alg(alg)?, None).map_err(|e| anyhow::anyhow!("{e}"))?;
            write_key(&current_path, &key)?;
            key
        };
        let next_path = dir.join("next.jwk.json");
        let next = if next_path.exists() {
            Some(read_key(&next_path)?)
        } else {
            None
        };
        let mut retired = Vec::new();
        for entry in std::fs::read_dir(dir.join("retired"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                retired.push(read_key(&path)?);
            }
        }
        Ok(Keys {
            current,
            next,
            retired,
        })
    }

    /// Rotation: next becomes current (a new next is made), current retires.
    pub fn rotate(dir: &Path, alg: &str) -> anyhow::Result<()> {
        let keys = Keys::load_or_create(dir, alg)?;
        let new_next = SigningKey::generate(parse_alg(alg)?, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let promoted = match keys.next {
            Some(n) => n,
            None => SigningKey::generate(parse_alg(alg)?, None).map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        write_key(
            &dir.join("retired")
                .join(format!("{}.jwk.json", keys.current.kid())),
            &keys.current,
        )?;
        write_key(&dir.join("current.jwk.json"), &promoted)?;
        write_key(&dir.join("next.jwk.json"), &new_next)?;
        Ok(())
    }

    /// The public JWKS: current, next and retired keys.
    pub fn jwks(&self) -> Value {
        let mut keys = vec![self.current.public_jwk().clone()];
        keys.extend(self.next.iter().map(|k| k.public_jwk().clone()));
        keys.extend(self.retired.iter().map(|k| k.public_jwk().clone()));
        json!({ "keys": keys })
    }
}

/// The signing keys in use, replaced whole when the key folder is loaded again
/// ([`crate::app::AppState::reload_keys`]); a request keeps the keys it started with.
pub struct SigningKeys(RwLock<Arc<Keys>>);

impl SigningKeys {
    pub fn new(keys: Keys) -> Self {
        SigningKeys(RwLock::new(Arc::new(keys)))
    }

    /// The keys in use now.
    pub fn get(&self) -> Arc<Keys> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn replace(&self, keys: Keys) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }
}

/// The server's public keys as fapi-core verifies with them: parsed and prepared once
/// ([`Jwks::prepared`]), never rebuilt per request. Replaced whole by [`VerifyingKeys::replace`] when
/// the keys are loaded again (after a rotation); a request keeps the set it started with.
pub struct VerifyingKeys {
    set: RwLock<Arc<Jwks>>,
}

impl VerifyingKeys {
    pub fn new(keys: &Keys) -> anyhow::Result<Self> {
        Ok(VerifyingKeys {
            set: RwLock::new(Arc::new(prepare(keys)?)),
        })
    }

    /// The current set.
    pub fn current(&self) -> Arc<Jwks> {
        self.set.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Swaps in the public keys of `keys` (current, next and retired), e.g. after [`Keys::rotate`].
    pub fn replace(&self, keys: &Keys) -> anyhow::Result<()> {
        let set = Arc::new(prepare(keys)?);
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = set;
        Ok(())
    }
}

fn prepare(keys: &Keys) -> anyhow::Result<Jwks> {
    let set = Jwks::from_value(&keys.jwks()).map_err(|e| anyhow::anyhow!("the server's keys: {e}"))?;
    if let Some(skipped) = set.skipped.first() {
        anyhow::bail!(
            "the server's key {} cannot verify: {}",
            skipped.kid.as_deref().unwrap_or("without kid"),
            skipped.error
        );
    }
    Ok(set.prepared())
}
