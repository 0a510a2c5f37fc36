//! Storage behind one interface for SQLite (default, a file, no set-up) and PostgreSQL (several
//! server instances behind a load balancer): the same SQL on both, through sqlx's Any driver.
//!
//! Short-lived items (PAR requests, codes, login sessions) and remembered `jti` values expire and are
//! swept. Single use is enforced by the database (a conditional UPDATE), so it holds across instances.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// PostgreSQL (else SQLite): the few places where the same SQL would behave differently.
    postgres: bool,
}

/// The advisory lock key that serializes schema creation across instances starting at once.
const SCHEMA_LOCK: i64 = 0x6661_7069_6173; // "fapias"

/// Lost compare-and-swap races after which an attempt is refused (fail closed).
pub const THROTTLE_TRIES: usize = 64;

/// Seconds a throttle row with failures is kept after its last attempt (30 days).
pub const THROTTLE_KEEP: i64 = 30 * 86_400;

/// One sign-in throttle counter (frontchannel/limits.rs gives the meaning of each key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    /// Attempts counted (in the window, or consecutive: the rule decides).
    pub failures: i64,
    /// When the window of `failures` began.
    pub window_start: i64,
    /// No attempt is accepted before this time (a delay).
    pub next_at: i64,
    /// A successful sign-in was seen here; remembered until then.
    pub known_until: i64,
}

/// The outcome of taking a single-use item.
#[derive(Debug, PartialEq)]
pub enum Taken<T> {
    /// First use.
    Fresh(T),
    /// Used before: the caller may revoke what the first use produced (RFC 6749 §4.1.2).
    Reused(T),
    /// Unknown or expired.
    Missing,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS clients (client_id TEXT PRIMARY KEY, metadata TEXT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL, password_hash TEXT NOT NULL, totp_secret TEXT)",
    "CREATE TABLE IF NOT EXISTS accounts (account_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL, currency TEXT NOT NULL, balance BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS items (kind TEXT NOT NULL, item_key TEXT NOT NULL, value TEXT NOT NULL, expires_at BIGINT NOT NULL, used BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (kind, item_key))",
    "CREATE TABLE IF NOT EXISTS seen_jti (kind TEXT NOT NULL, jti TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (kind, jti))",
    "CREATE TABLE IF NOT EXISTS grants (grant_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, user_id TEXT NOT NULL, scope TEXT NOT NULL, created_at BIGINT NOT NULL, last_used_at BIGINT NOT NULL, revoked BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS refresh_tokens (token_hash TEXT PRIMARY KEY, grant_id TEXT NOT NULL, client_id TEXT NOT NULL, data TEXT NOT NULL, expires_at BIGINT NOT NULL, revoked BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS access_tokens (jti TEXT PRIMARY KEY, grant_id TEXT, client_id TEXT NOT NULL, data TEXT NOT NULL, exp BIGINT NOT NULL, revoked_at_ms BIGINT)",
    "CREATE INDEX IF NOT EXISTS access_tokens_revoked ON access_tokens (revoked_at_ms)",
    "CREATE INDEX IF NOT EXISTS access_tokens_grant ON access_tokens (grant_id)",
    // Sign-in throttling (frontchannel/limits.rs); replaces login_failures (hard account locks).
    "DROP TABLE IF EXISTS login_failures",
    "CREATE TABLE IF NOT EXISTS signin_throttle (throttle_key TEXT PRIMARY KEY, failures BIGINT NOT NULL, window_start BIGINT NOT NULL, next_at BIGINT NOT NULL, known_until BIGINT NOT NULL, seq BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS passkeys (credential_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, public_key TEXT NOT NULL, sign_count BIGINT NOT NULL)",
];

/// Columns added to tables of [`SCHEMA`] after their first release: (table, column, type). Added to
/// databases created before them at start-up ([`add_columns`]); new databases get them the same way.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    // RFC 9396 §7: the authorization details granted at consent, enriched (JSON array; NULL: none).
    ("grants", "authorization_details", "TEXT"),
];

/// Adds the [`ADDED_COLUMNS`] a database lacks. PostgreSQL has `ADD COLUMN IF NOT EXISTS`; SQLite
/// does not, so its table info is asked first (within the schema transaction either way).
async fn add_columns(tx: &mut sqlx::Transaction<'_, sqlx::Any>, postgres: bool) -> Result<(), sqlx::Error> {
    for (table, column, kind) in ADDED_COLUMNS {
        if postgres {
            sqlx::query(&format!(
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}"
            ))
            .execute(&mut **tx)
            .await?;
            continue;
        }
        let present: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = '{column}'"
        ))
        .fetch_one(&mut **tx)
        .await?
        .get(0);
        if present == 0 {
            sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// A registered client: its id and its metadata (RFC 7591 §2 names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientMetadata {
    pub client_id: String,
    #[serde(default)]
    pub client_name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// private_key_jwt, tls_client_auth or self_signed_tls_client_auth (no secrets for FAPI clients).
    pub token_endpoint_auth_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// RFC 8705 §2.1.2: the subject DN a tls_client_auth certificate must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_subject_dn: Option<String>,
    /// mtls or dpop: how this client's tokens are bound.
    #[serde(default = "default_binding")]
    pub token_binding: String,
    /// Scopes the client may ask for (space-separated).
    #[serde(default)]
    pub scope: String,
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<String>,
    /// Signed request objects (RFC 9101) required at PAR.
    #[serde(default)]
    pub require_signed_request_object: bool,
    /// fapi2 (default), fapi2-message-signing or fapi1-advanced.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// JARM (response_mode=jwt) signing alg, if the client uses JARM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_signed_response_alg: Option<String>,
    /// JWE for id_tokens (OIDC Core §10.2: `ECDH-ES` with `A256GCM` or `A128GCM`), to a key of the
    /// client's jwks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_encrypted_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_encrypted_response_enc: Option<String>,
    /// JWE for JARM responses (JARM §2.3 and §3: signed, then encrypted), to a key of the client's jwks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_encrypted_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_encrypted_response_enc: Option<String>,
    /// RFC 9396 §10: the `authorization_details` types this client may ask for (none: it may not
    /// send `authorization_details`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_details_types: Vec<String>,
}

fn default_binding() -> String {
    "mtls".into()
}
fn default_grant_types() -> Vec<String> {
    vec!["authorization_code".into(), "refresh_token".into()]
}
fn default_profile() -> String {
    "fapi2".into()
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub totp_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub account_id: String,
    pub user_id: String,
    pub name: String,
    pub currency: String,
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grant {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub revoked: bool,
}

/// A revoked access token, as the revocation feed lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevokedToken {
    pub jti: String,
    pub exp: i64,
    pub revoked_at_ms: i64,
}

impl Store {
    /// Connects (creating a SQLite file when needed) and creates the schema.
    pub async fn connect(url: &str) -> Result<Store, sqlx::Error> {
        sqlx::any::install_default_drivers();
        // SQLite serializes writers: one connection avoids "database is locked" under load.
        let max = if url.starts_with("sqlite:") { 1 } else { 16 };
        let pool = AnyPoolOptions::new().max_connections(max).connect(url).await?;
        if url.starts_with("sqlite:") {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
            // WAL with synchronous=NORMAL: commits are atomic and the file never corrupts; a power
            // loss may drop the last commits (a remembered jti could be forgotten within its short
            // lifetime). FULL costs an fsync per commit: about 3x fewer tokens per second
            // (docs/performance.md). Several instances, or stricter durability: use PostgreSQL.
            sqlx::query("PRAGMA synchronous = NORMAL").execute(&pool).await?;
        }
        let postgres = !url.starts_with("sqlite:");
        // One transaction; on PostgreSQL under an advisory lock: `CREATE TABLE IF NOT EXISTS` run by
        // two instances at once fails in one of them (a unique violation in pg_type / pg_class).
        let mut tx = pool.begin().await?;
        if postgres {
            sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                .bind(SCHEMA_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&mut *tx).await?;
        }
        add_columns(&mut tx, postgres).await?;
        tx.commit().await?;
        Ok(Store { pool, postgres })
    }

    // ---- clients

    pub async fn put_client(&self, c: &ClientMetadata, now: i64) -> Result<(), sqlx::Error> {
        let json = serde_json::to_string(c).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        // An upsert: with DELETE then INSERT, another instance could miss the client in between, and
        // two concurrent puts would fail on the primary key.
        sqlx::query("INSERT INTO clients (client_id, metadata, created_at) VALUES ($1, $2, $3) ON CONFLICT (client_id) DO UPDATE SET metadata = excluded.metadata")
            .bind(&c.client_id)
            .bind(json)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn client(&self, client_id: &str) -> Result<Option<ClientMetadata>, sqlx::Error> {
        let row = sqlx::query("SELECT metadata FROM clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| serde_json::from_str(&r.get::<String, _>(0)).ok()))
    }

    pub async fn clients(&self) -> Result<Vec<ClientMetadata>, sqlx::Error> {
        let rows = sqlx::query("SELECT metadata FROM clients ORDER BY client_id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(&r.get::<String, _>(0)).ok())
            .collect())
    }

    /// Removes a client and revokes everything issued to it (RFC 7592 §2.3: its grants, refresh
    /// tokens and live access tokens, which then appear on the revocation feed at `now_ms`), in one
    /// transaction. `false` when there was no such client (nothing is changed).
    pub async fn delete_client(&self, client_id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("DELETE FROM clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("UPDATE grants SET revoked = 1 WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE access_tokens SET revoked_at_ms = $1 WHERE client_id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---- users and their demo accounts

    pub async fn put_user(&self, u: &User) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO users (user_id, username, display_name, password_hash, totp_secret) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET username = excluded.username, display_name = excluded.display_name, \
             password_hash = excluded.password_hash, totp_secret = excluded.totp_secret",
        )
            .bind(&u.user_id)
            .bind(&u.username)
            .bind(&u.display_name)
            .bind(&u.password_hash)
            .bind(&u.totp_secret)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn user_of(r: &AnyRow) -> User {
        User {
            user_id: r.get(0),
            username: r.get(1),
            display_name: r.get(2),
            password_hash: r.get(3),
            totp_secret: r.get(4),
        }
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, sqlx::Error> {
        let row = sqlx::query("SELECT user_id, username, display_name, password_hash, totp_secret FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Self::user_of))
    }

    /// Replaces a user's password hash if it is still `old` (a re-hash after sign-in must not undo
    /// a password change made meanwhile); `false` when it was not.
    pub async fn replace_password_hash(
        &self,
        user_id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, sqlx::Error> {
        let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2 AND password_hash = $3")
            .bind(new)
            .bind(user_id)
            .bind(old)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn user(&self, user_id: &str) -> Result<Option<User>, sqlx::Error> {
        let row = sqlx::query("SELECT user_id, username, display_name, password_hash, totp_secret FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Self::user_of))
    }

    pub async fn put_account(&self, a: &Account) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO accounts (account_id, user_id, name, currency, balance) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (account_id) DO UPDATE SET user_id = excluded.user_id, name = excluded.name, \
             currency = excluded.currency, balance = excluded.balance",
        )
            .bind(&a.account_id)
            .bind(&a.user_id)
            .bind(&a.name)
            .bind(&a.currency)
            .bind(a.balance)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn accounts_of(&self, user_id: &str) -> Result<Vec<Account>, sqlx::Error> {
        let rows = sqlx::query("SELECT account_id, user_id, name, currency, balance FROM accounts WHERE user_id = $1 ORDER BY account_id")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Account {
                account_id: r.get(0),
                user_id: r.get(1),
                name: r.get(2),
                currency: r.get(3),
                balance: r.get(4),
            })
            .collect())
    }

    // ---- single-use and short-lived items (PAR requests, codes, login sessions)

    pub async fn put_item<T: Serialize>(
        &self,
        kind: &str,
        key: &str,
        value: &T,
        expires_at: i64,
    ) -> Result<(), sqlx::Error> {
        let json = serde_json::to_string(value).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        sqlx::query("INSERT INTO items (kind, item_key, value, expires_at, used) VALUES ($1, $2, $3, $4, 0)")
            .bind(kind)
            .bind(key)
            .bind(json)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Reads an unexpired item without using it up.
    pub async fn item<T: DeserializeOwned>(
        &self,
        kind: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<T>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT value FROM items WHERE kind = $1 AND item_key = $2 AND expires_at > $3 AND used = 0",
        )
        .bind(kind)
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|r| serde_json::from_str(&r.get::<String, _>(0)).ok()))
    }

    /// Replaces an unexpired item's value (e.g. a login session gaining a second factor).
    pub async fn update_item<T: Serialize>(
        &self,
        kind: &str,
        key: &str,
        value: &T,
    ) -> Result<(), sqlx::Error> {
        let json = serde_json::to_string(value).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        sqlx::query("UPDATE items SET value = $1 WHERE kind = $2 AND item_key = $3")
            .bind(json)
            .bind(kind)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Uses an item up, atomically (a concurrent second use, on any instance, sees `Reused`).
    pub async fn take_item<T: DeserializeOwned>(
        &self,
        kind: &str,
        key: &str,
        now: i64,
    ) -> Result<Taken<T>, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE items SET used = 1 WHERE kind = $1 AND item_key = $2 AND used = 0 AND expires_at > $3",
        )
        .bind(kind)
        .bind(key)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let row = sqlx::query("SELECT value, used, expires_at FROM items WHERE kind = $1 AND item_key = $2")
            .bind(kind)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(Taken::Missing) };
        let Ok(value) = serde_json::from_str::<T>(&row.get::<String, _>(0)) else {
            return Ok(Taken::Missing);
        };
        Ok(if updated == 1 {
            Taken::Fresh(value)
        } else if row.get::<i64, _>(1) == 1 {
            Taken::Reused(value)
        } else {
            Taken::Missing
        })
    }

    pub async fn delete_item(&self, kind: &str, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM items WHERE kind = $1 AND item_key = $2")
            .bind(kind)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Remembers a `jti` (client assertions, DPoP proofs) until `expires_at`; `false` when it was
    /// already seen: a replay.
    pub async fn remember_jti(&self, kind: &str, jti: &str, expires_at: i64) -> Result<bool, sqlx::Error> {
        let r = sqlx::query(
            "INSERT INTO seen_jti (kind, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(kind)
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    // ---- grants, refresh and access tokens

    pub async fn put_grant(&self, g: &Grant) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO grants (grant_id, client_id, user_id, scope, created_at, last_used_at, revoked) VALUES ($1, $2, $3, $4, $5, $6, 0)")
            .bind(&g.grant_id)
            .bind(&g.client_id)
            .bind(&g.user_id)
            .bind(&g.scope)
            .bind(g.created_at)
            .bind(g.last_used_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn grant_of(r: &AnyRow) -> Grant {
        Grant {
            grant_id: r.get(0),
            client_id: r.get(1),
            user_id: r.get(2),
            scope: r.get(3),
            created_at: r.get(4),
            last_used_at: r.get(5),
            revoked: r.get::<i64, _>(6) != 0,
        }
    }

    pub async fn grant(&self, grant_id: &str) -> Result<Option<Grant>, sqlx::Error> {
        let row = sqlx::query("SELECT grant_id, client_id, user_id, scope, created_at, last_used_at, revoked FROM grants WHERE grant_id = $1")
            .bind(grant_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Self::grant_of))
    }

    /// Stores a grant with the authorization details granted (RFC 9396 §7), in one statement: the
    /// details are never missing from a stored grant that has them.
    pub async fn put_grant_with_details(
        &self,
        g: &Grant,
        details: &[serde_json::Value],
    ) -> Result<(), sqlx::Error> {
        let json = serde_json::to_string(details).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        sqlx::query("INSERT INTO grants (grant_id, client_id, user_id, scope, created_at, last_used_at, revoked, authorization_details) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)")
            .bind(&g.grant_id)
            .bind(&g.client_id)
            .bind(&g.user_id)
            .bind(&g.scope)
            .bind(g.created_at)
            .bind(g.last_used_at)
            .bind(json)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The authorization details granted with a grant (RFC 9396 §7); `None` when it has none (or
    /// there is no such grant). Stored text that does not parse is an error, never "no details".
    pub async fn grant_details(&self, grant_id: &str) -> Result<Option<Vec<serde_json::Value>>, sqlx::Error> {
        let row = sqlx::query("SELECT authorization_details FROM grants WHERE grant_id = $1")
            .bind(grant_id)
            .fetch_optional(&self.pool)
            .await?;
        match row.and_then(|r| r.get::<Option<String>, _>(0)) {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| sqlx::Error::Protocol(format!("grant authorization_details: {e}"))),
        }
    }

    /// The user's live grants (the "connected apps" page).
    pub async fn grants_of_user(&self, user_id: &str) -> Result<Vec<Grant>, sqlx::Error> {
        let rows = sqlx::query("SELECT grant_id, client_id, user_id, scope, created_at, last_used_at, revoked FROM grants WHERE user_id = $1 AND revoked = 0 ORDER BY created_at")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(Self::grant_of).collect())
    }

    pub async fn touch_grant(&self, grant_id: &str, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE grants SET last_used_at = $1 WHERE grant_id = $2")
            .bind(now)
            .bind(grant_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes a grant with its refresh tokens and every access token issued under it; the access
    /// tokens then appear on the revocation feed.
    pub async fn revoke_grant(&self, grant_id: &str, now_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE grants SET revoked = 1 WHERE grant_id = $1")
            .bind(grant_id)
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE grant_id = $1")
            .bind(grant_id)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "UPDATE access_tokens SET revoked_at_ms = $1 WHERE grant_id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(grant_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn put_refresh<T: Serialize>(
        &self,
        token_hash: &str,
        grant_id: &str,
        client_id: &str,
        data: &T,
        expires_at: i64,
    ) -> Result<(), sqlx::Error> {
        let json = serde_json::to_string(data).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        sqlx::query("INSERT INTO refresh_tokens (token_hash, grant_id, client_id, data, expires_at, revoked) VALUES ($1, $2, $3, $4, $5, 0)")
            .bind(token_hash)
            .bind(grant_id)
            .bind(client_id)
            .bind(json)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A live refresh token: (grant_id, client_id, data).
    pub async fn refresh<T: DeserializeOwned>(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(String, String, T)>, sqlx::Error> {
        let row = sqlx::query("SELECT grant_id, client_id, data FROM refresh_tokens WHERE token_hash = $1 AND revoked = 0 AND expires_at > $2")
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| {
            let data = serde_json::from_str(&r.get::<String, _>(2)).ok()?;
            Some((r.get(0), r.get(1), data))
        }))
    }

    pub async fn revoke_refresh(&self, token_hash: &str) -> Result<bool, sqlx::Error> {
        let r = sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records an issued access token (for revocation, introspection and the feed).
    pub async fn record_access_token<T: Serialize>(
        &self,
        jti: &str,
        grant_id: Option<&str>,
        client_id: &str,
        data: &T,
        exp: i64,
    ) -> Result<(), sqlx::Error> {
        let json = serde_json::to_string(data).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        sqlx::query("INSERT INTO access_tokens (jti, grant_id, client_id, data, exp, revoked_at_ms) VALUES ($1, $2, $3, $4, $5, NULL)")
            .bind(jti)
            .bind(grant_id)
            .bind(client_id)
            .bind(json)
            .bind(exp)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// (client_id, data, exp, revoked) of an issued access token.
    pub async fn access_token<T: DeserializeOwned>(
        &self,
        jti: &str,
    ) -> Result<Option<(String, T, i64, bool)>, sqlx::Error> {
        let row = sqlx::query("SELECT client_id, data, exp, revoked_at_ms FROM access_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| {
            let data = serde_json::from_str(&r.get::<String, _>(1)).ok()?;
            Some((r.get(0), data, r.get(2), r.get::<Option<i64>, _>(3).is_some()))
        }))
    }

    pub async fn revoke_access_token(&self, jti: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
        let r = sqlx::query(
            "UPDATE access_tokens SET revoked_at_ms = $1 WHERE jti = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(jti)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Revocations after the cursor `(revoked_at_ms, jti)`, oldest first, of tokens not yet expired.
    /// Ties on the millisecond are ordered by `jti` in byte order on both backends: PostgreSQL's
    /// default collation may be linguistic (`en_US`: 'a' < 'B'), SQLite's is bytes ('B' < 'a'), and a
    /// feed reader may switch between instances on different databases only if the order is one.
    pub async fn revocations_since(
        &self,
        after_ms: i64,
        after_jti: &str,
        now: i64,
        limit: i64,
    ) -> Result<Vec<RevokedToken>, sqlx::Error> {
        let sql = if self.postgres {
            "SELECT jti, exp, revoked_at_ms FROM access_tokens WHERE revoked_at_ms IS NOT NULL AND exp > $1 \
             AND (revoked_at_ms > $2 OR (revoked_at_ms = $2 AND jti COLLATE \"C\" > $3)) ORDER BY revoked_at_ms, jti COLLATE \"C\" LIMIT $4"
        } else {
            "SELECT jti, exp, revoked_at_ms FROM access_tokens WHERE revoked_at_ms IS NOT NULL AND exp > $1 \
             AND (revoked_at_ms > $2 OR (revoked_at_ms = $2 AND jti > $3)) ORDER BY revoked_at_ms, jti LIMIT $4"
        };
        let rows = sqlx::query(sql)
            .bind(now)
            .bind(after_ms)
            .bind(after_jti)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| RevokedToken {
                jti: r.get(0),
                exp: r.get(1),
                revoked_at_ms: r.get(2),
            })
            .collect())
    }

    // ---- sign-in throttling (FISC item 41; the rules are in frontchannel/limits.rs)

    /// The throttle row of `key` (an account, an account at an address, or an address).
    pub async fn throttle(&self, key: &str) -> Result<Option<Throttle>, sqlx::Error> {
        Ok(self.throttle_row(key).await?.map(|(t, _)| t))
    }

    async fn throttle_row(&self, key: &str) -> Result<Option<(Throttle, i64)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT failures, window_start, next_at, known_until, seq FROM signin_throttle WHERE throttle_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            (
                Throttle {
                    failures: r.get(0),
                    window_start: r.get(1),
                    next_at: r.get(2),
                    known_until: r.get(3),
                },
                r.get::<i64, _>(4),
            )
        }))
    }

    /// Counts an attempt under `key` before it is checked, atomically: `rule` gets the current row
    /// (`None`: none yet) and returns the row with this attempt counted, or `Err(until)` to refuse it
    /// (nothing is written then). The new row is written only if the row is still the one `rule` saw
    /// (a compare-and-swap on a sequence number, or an insert that fails if another got there first),
    /// else it is read again and `rule` asked again: concurrent attempts, on one instance or several,
    /// are each counted once and each judged on the count of those before it. Refused (`Err`) after
    /// [`THROTTLE_TRIES`] lost races: fail closed.
    pub async fn throttle_admit(
        &self,
        key: &str,
        rule: impl Fn(Option<&Throttle>) -> Result<Throttle, i64>,
    ) -> Result<Result<Throttle, i64>, sqlx::Error> {
        for _ in 0..THROTTLE_TRIES {
            let current = self.throttle_row(key).await?;
            let next = match rule(current.as_ref().map(|(t, _)| t)) {
                Ok(next) => next,
                Err(until) => return Ok(Err(until)),
            };
            let written = match current {
                None => sqlx::query(
                    "INSERT INTO signin_throttle (throttle_key, failures, window_start, next_at, known_until, seq) \
                     VALUES ($1, $2, $3, $4, $5, 1) ON CONFLICT DO NOTHING",
                )
                .bind(key)
                .bind(next.failures)
                .bind(next.window_start)
                .bind(next.next_at)
                .bind(next.known_until)
                .execute(&self.pool)
                .await?
                .rows_affected(),
                Some((_, seq)) => sqlx::query(
                    "UPDATE signin_throttle SET failures = $1, window_start = $2, next_at = $3, known_until = $4, \
                     seq = seq + 1 WHERE throttle_key = $5 AND seq = $6",
                )
                .bind(next.failures)
                .bind(next.window_start)
                .bind(next.next_at)
                .bind(next.known_until)
                .bind(key)
                .bind(seq)
                .execute(&self.pool)
                .await?
                .rows_affected(),
            };
            if written == 1 {
                return Ok(Ok(next));
            }
        }
        Ok(Err(i64::MAX))
    }

    /// Takes back one counted attempt (it was refused by a later limit, or it succeeded and the key
    /// counts failures only).
    pub async fn throttle_refund(&self, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE signin_throttle SET failures = failures - 1, seq = seq + 1 WHERE throttle_key = $1 AND failures > 0",
        )
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// After a successful sign-in: the key's failures are forgotten and it is remembered as known
    /// until `known_until` (0: not remembered, the row is deleted).
    pub async fn throttle_succeeded(&self, key: &str, known_until: i64) -> Result<(), sqlx::Error> {
        if known_until <= 0 {
            sqlx::query("DELETE FROM signin_throttle WHERE throttle_key = $1")
                .bind(key)
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO signin_throttle (throttle_key, failures, window_start, next_at, known_until, seq) \
             VALUES ($1, 0, 0, 0, $2, 1) ON CONFLICT (throttle_key) DO UPDATE SET failures = 0, next_at = 0, \
             known_until = excluded.known_until, seq = signin_throttle.seq + 1",
        )
        .bind(key)
        .bind(known_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes what has expired.
    pub async fn sweep(&self, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM items WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM seen_jti WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM access_tokens WHERE exp <= $1")
            .bind(now - 3600)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        // Throttle rows with no failure left and no known address to remember, or untouched for
        // THROTTLE_KEEP (an unknown username guessed once a month ago need not be kept).
        sqlx::query(
            "DELETE FROM signin_throttle WHERE known_until <= $1 AND (failures = 0 OR (next_at <= $2 AND window_start <= $2))",
        )
        .bind(now)
        .bind(now - THROTTLE_KEEP)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- passkeys (WebAuthn credentials, src/webauthn.rs)

    /// Stores a newly registered passkey; `false` when the credential ID is already registered (to
    /// anyone): WebAuthn §7.1 step 22 says to refuse that registration.
    pub async fn put_passkey(&self, c: &crate::webauthn::StoredCredential) -> Result<bool, sqlx::Error> {
        let r = sqlx::query("INSERT INTO passkeys (credential_id, user_id, public_key, sign_count) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(&c.credential_id)
            .bind(&c.user_id)
            .bind(&c.public_key_jwk)
            .bind(c.sign_count)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    fn passkey_of(r: &AnyRow) -> crate::webauthn::StoredCredential {
        crate::webauthn::StoredCredential {
            credential_id: r.get(0),
            user_id: r.get(1),
            public_key_jwk: r.get(2),
            sign_count: r.get(3),
        }
    }

    /// The passkey with this credential ID (base64url), whoever owns it.
    pub async fn passkey(
        &self,
        credential_id: &str,
    ) -> Result<Option<crate::webauthn::StoredCredential>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT credential_id, user_id, public_key, sign_count FROM passkeys WHERE credential_id = $1",
        )
        .bind(credential_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(Self::passkey_of))
    }

    pub async fn passkeys_of_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<crate::webauthn::StoredCredential>, sqlx::Error> {
        let rows = sqlx::query("SELECT credential_id, user_id, public_key, sign_count FROM passkeys WHERE user_id = $1 ORDER BY credential_id")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(Self::passkey_of).collect())
    }

    /// Removes one of the user's passkeys (a lost or replaced authenticator); `false` when this user has
    /// no passkey with that credential ID (another user's is never touched).
    pub async fn delete_passkey(&self, user_id: &str, credential_id: &str) -> Result<bool, sqlx::Error> {
        let r = sqlx::query("DELETE FROM passkeys WHERE credential_id = $1 AND user_id = $2")
            .bind(credential_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Stores the signature counter of a verified assertion, only if the stored one is still `stored`
    /// and the rule of WebAuthn §6.1.1 holds (`new` greater, or both 0): `false` when another
    /// sign-in with this credential got there first (the caller then refuses this one).
    pub async fn update_sign_count(
        &self,
        credential_id: &str,
        stored: i64,
        new: i64,
    ) -> Result<bool, sqlx::Error> {
        if !crate::webauthn::sign_count_acceptable(stored, new) {
            return Ok(false);
        }
        let r =
            sqlx::query("UPDATE passkeys SET sign_count = $1 WHERE credential_id = $2 AND sign_count = $3")
                .bind(new)
                .bind(credential_id)
                .bind(stored)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }
}
