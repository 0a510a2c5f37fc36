//! Storage behind one interface for SQLite (default, a file, no set-up) and PostgreSQL (several
//! server instances behind a load balancer): the same SQL on both, through sqlx's Any driver.
//!
//! Short-lived items (PAR requests, codes, login sessions) and remembered `jti` values expire and are
//! swept. Single use is enforced by the database (a conditional UPDATE), so it holds across instances.

use crate::webauthn::StoredCredential;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Row};

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
        .try_get(0)?;
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

// ---- the shapes every query below is made of

/// A statement with its arguments bound.
type Query<'q> = sqlx::query::Query<'q, Any, AnyArguments<'q>>;

/// `sql!("... $1 ... $2"; a, b)`: the statement with `a` bound to `$1`, `b` to `$2` and so on. The same
/// placeholders serve both backends (sqlx binds `$N` by its number on SQLite too).
macro_rules! sql {
    ($sql:expr $(; $($arg:expr),+ $(,)?)?) => {
        sqlx::query($sql)$($(.bind($arg))+)?
    };
}

/// A value as the JSON text of a `metadata`, `value` or `data` column.
fn to_json<T: Serialize>(value: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// The JSON text in `column` read as a `T`; `None` when it is not one (read as another type, or
/// written by another version): the caller treats the row as absent.
fn from_json<T: DeserializeOwned>(r: &AnyRow, column: &str) -> Result<Option<T>, sqlx::Error> {
    Ok(serde_json::from_str(&r.try_get::<String, _>(column)?).ok())
}

// Rows are read by column name: a column left out of a SELECT, or of another type, is an error (never
// a panic, never a value in the wrong field).

/// The columns [`user_of`] reads.
const USER_COLUMNS: &str = "user_id, username, display_name, password_hash, totp_secret";

fn user_of(r: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        user_id: r.try_get("user_id")?,
        username: r.try_get("username")?,
        display_name: r.try_get("display_name")?,
        password_hash: r.try_get("password_hash")?,
        totp_secret: r.try_get("totp_secret")?,
    })
}

fn account_of(r: &AnyRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        account_id: r.try_get("account_id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        currency: r.try_get("currency")?,
        balance: r.try_get("balance")?,
    })
}

/// The columns [`grant_of`] reads.
const GRANT_COLUMNS: &str = "grant_id, client_id, user_id, scope, created_at, last_used_at, revoked";

fn grant_of(r: &AnyRow) -> Result<Grant, sqlx::Error> {
    Ok(Grant {
        grant_id: r.try_get("grant_id")?,
        client_id: r.try_get("client_id")?,
        user_id: r.try_get("user_id")?,
        scope: r.try_get("scope")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked: r.try_get::<i64, _>("revoked")? != 0,
    })
}

fn revoked_token_of(r: &AnyRow) -> Result<RevokedToken, sqlx::Error> {
    Ok(RevokedToken {
        jti: r.try_get("jti")?,
        exp: r.try_get("exp")?,
        revoked_at_ms: r.try_get("revoked_at_ms")?,
    })
}

/// A throttle row and its sequence number (the compare-and-swap of [`Store::throttle_admit`]).
fn throttle_of(r: &AnyRow) -> Result<(Throttle, i64), sqlx::Error> {
    let throttle = Throttle {
        failures: r.try_get("failures")?,
        window_start: r.try_get("window_start")?,
        next_at: r.try_get("next_at")?,
        known_until: r.try_get("known_until")?,
    };
    Ok((throttle, r.try_get("seq")?))
}

/// The columns [`passkey_of`] reads.
const PASSKEY_COLUMNS: &str = "credential_id, user_id, public_key, sign_count";

fn passkey_of(r: &AnyRow) -> Result<StoredCredential, sqlx::Error> {
    Ok(StoredCredential {
        credential_id: r.try_get("credential_id")?,
        user_id: r.try_get("user_id")?,
        public_key_jwk: r.try_get("public_key")?,
        sign_count: r.try_get("sign_count")?,
    })
}

/// Whose grants and tokens a revocation takes: a client's (RFC 7592 §2.3) or one grant's.
#[derive(Clone, Copy)]
enum IssuedTo {
    Client,
    Grant,
}

/// Revokes the grants, refresh tokens and live access tokens issued to `id` (the access tokens then
/// appear on the revocation feed at `now_ms`; ones revoked before keep their time).
async fn revoke_issued(
    conn: &mut AnyConnection,
    to: IssuedTo,
    id: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    // The column all three tables name the owner by.
    let column = match to {
        IssuedTo::Client => "client_id",
        IssuedTo::Grant => "grant_id",
    };
    sql!(&format!("UPDATE grants SET revoked = 1 WHERE {column} = $1"); id)
        .execute(&mut *conn)
        .await?;
    sql!(&format!("UPDATE refresh_tokens SET revoked = 1 WHERE {column} = $1"); id)
        .execute(&mut *conn)
        .await?;
    let access =
        format!("UPDATE access_tokens SET revoked_at_ms = $1 WHERE {column} = $2 AND revoked_at_ms IS NULL");
    sql!(&access; now_ms, id).execute(&mut *conn).await?;
    Ok(())
}

impl Store {
    /// Runs a statement.
    async fn run(&self, q: Query<'_>) -> Result<(), sqlx::Error> {
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// Runs a statement that touches at most one row (by its key, or a compare-and-swap on it);
    /// whether it inserted, changed or deleted that row.
    async fn changed(&self, q: Query<'_>) -> Result<bool, sqlx::Error> {
        Ok(q.execute(&self.pool).await?.rows_affected() > 0)
    }

    /// The row the query finds, if any, read by `map`.
    async fn fetch_optional<T>(
        &self,
        q: Query<'_>,
        map: impl FnOnce(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Option<T>, sqlx::Error> {
        q.fetch_optional(&self.pool).await?.as_ref().map(map).transpose()
    }

    /// Every row the query finds, in its order, each read by `map`.
    async fn fetch_all<T>(
        &self,
        q: Query<'_>,
        map: impl FnMut(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, sqlx::Error> {
        q.fetch_all(&self.pool).await?.iter().map(map).collect()
    }

    /// `column` compared and ordered byte by byte on both backends: SQLite's default collation is
    /// binary ('B' < 'a'), PostgreSQL's may be linguistic (`en_US`: 'a' < 'B').
    fn in_byte_order(&self, column: &str) -> String {
        if self.postgres {
            format!("{column} COLLATE \"C\"")
        } else {
            column.to_owned()
        }
    }

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
            sql!("SELECT 1 FROM pg_advisory_xact_lock($1)"; SCHEMA_LOCK)
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
        // An upsert: with DELETE then INSERT, another instance could miss the client in between, and
        // two concurrent puts would fail on the primary key.
        self.run(sql!(
            "INSERT INTO clients (client_id, metadata, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id) DO UPDATE SET metadata = excluded.metadata";
            &c.client_id, to_json(c)?, now
        ))
        .await
    }

    /// A registered client; `None` also when its stored metadata no longer parses.
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientMetadata>, sqlx::Error> {
        let q = sql!("SELECT metadata FROM clients WHERE client_id = $1"; client_id);
        Ok(self
            .fetch_optional(q, |r| from_json(r, "metadata"))
            .await?
            .flatten())
    }

    /// Every registered client whose metadata parses, by client_id.
    pub async fn clients(&self) -> Result<Vec<ClientMetadata>, sqlx::Error> {
        let q = sql!("SELECT metadata FROM clients ORDER BY client_id");
        Ok(self
            .fetch_all(q, |r| from_json(r, "metadata"))
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Removes a client and revokes everything issued to it (RFC 7592 §2.3: its grants, refresh
    /// tokens and live access tokens, which then appear on the revocation feed at `now_ms`), in one
    /// transaction. `false` when there was no such client (nothing is changed).
    pub async fn delete_client(&self, client_id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let deleted = sql!("DELETE FROM clients WHERE client_id = $1"; client_id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        revoke_issued(&mut tx, IssuedTo::Client, client_id, now_ms).await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---- users and their demo accounts

    pub async fn put_user(&self, u: &User) -> Result<(), sqlx::Error> {
        self.run(sql!(
            "INSERT INTO users (user_id, username, display_name, password_hash, totp_secret) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET username = excluded.username, display_name = excluded.display_name, \
             password_hash = excluded.password_hash, totp_secret = excluded.totp_secret";
            &u.user_id, &u.username, &u.display_name, &u.password_hash, &u.totp_secret
        ))
        .await
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, sqlx::Error> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        self.fetch_optional(sql!(&sql; username), user_of).await
    }

    /// Replaces a user's password hash if it is still `old` (a re-hash after sign-in must not undo
    /// a password change made meanwhile); `false` when it was not.
    pub async fn replace_password_hash(
        &self,
        user_id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, sqlx::Error> {
        self.changed(sql!(
            "UPDATE users SET password_hash = $1 WHERE user_id = $2 AND password_hash = $3";
            new, user_id, old
        ))
        .await
    }

    pub async fn user(&self, user_id: &str) -> Result<Option<User>, sqlx::Error> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = $1");
        self.fetch_optional(sql!(&sql; user_id), user_of).await
    }

    pub async fn put_account(&self, a: &Account) -> Result<(), sqlx::Error> {
        self.run(sql!(
            "INSERT INTO accounts (account_id, user_id, name, currency, balance) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (account_id) DO UPDATE SET user_id = excluded.user_id, name = excluded.name, \
             currency = excluded.currency, balance = excluded.balance";
            &a.account_id, &a.user_id, &a.name, &a.currency, a.balance
        ))
        .await
    }

    pub async fn accounts_of(&self, user_id: &str) -> Result<Vec<Account>, sqlx::Error> {
        let q = sql!(
            "SELECT account_id, user_id, name, currency, balance FROM accounts WHERE user_id = $1 ORDER BY account_id";
            user_id
        );
        self.fetch_all(q, account_of).await
    }

    // ---- single-use and short-lived items (PAR requests, codes, login sessions)

    pub async fn put_item<T: Serialize>(
        &self,
        kind: &str,
        key: &str,
        value: &T,
        expires_at: i64,
    ) -> Result<(), sqlx::Error> {
        self.run(sql!(
            "INSERT INTO items (kind, item_key, value, expires_at, used) VALUES ($1, $2, $3, $4, 0)";
            kind, key, to_json(value)?, expires_at
        ))
        .await
    }

    /// Reads an unexpired item without using it up.
    pub async fn item<T: DeserializeOwned>(
        &self,
        kind: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<T>, sqlx::Error> {
        let q = sql!(
            "SELECT value FROM items WHERE kind = $1 AND item_key = $2 AND expires_at > $3 AND used = 0";
            kind, key, now
        );
        Ok(self.fetch_optional(q, |r| from_json(r, "value")).await?.flatten())
    }

    /// Replaces an item's value (e.g. a login session gaining a second factor); an unknown key stays
    /// unknown.
    pub async fn update_item<T: Serialize>(
        &self,
        kind: &str,
        key: &str,
        value: &T,
    ) -> Result<(), sqlx::Error> {
        self.run(
            sql!("UPDATE items SET value = $1 WHERE kind = $2 AND item_key = $3"; to_json(value)?, kind, key),
        )
        .await
    }

    /// Uses an item up, atomically (a concurrent second use, on any instance, sees `Reused`).
    pub async fn take_item<T: DeserializeOwned>(
        &self,
        kind: &str,
        key: &str,
        now: i64,
    ) -> Result<Taken<T>, sqlx::Error> {
        let first_use = self
            .changed(sql!(
                "UPDATE items SET used = 1 WHERE kind = $1 AND item_key = $2 AND used = 0 AND expires_at > $3";
                kind, key, now
            ))
            .await?;
        let q = sql!("SELECT value, used FROM items WHERE kind = $1 AND item_key = $2"; kind, key);
        let row = self
            .fetch_optional(q, |r| {
                Ok((from_json::<T>(r, "value")?, r.try_get::<i64, _>("used")? == 1))
            })
            .await?;
        Ok(match row {
            Some((Some(value), _)) if first_use => Taken::Fresh(value),
            Some((Some(value), true)) => Taken::Reused(value),
            _ => Taken::Missing,
        })
    }

    pub async fn delete_item(&self, kind: &str, key: &str) -> Result<(), sqlx::Error> {
        self.run(sql!("DELETE FROM items WHERE kind = $1 AND item_key = $2"; kind, key))
            .await
    }

    /// Remembers a `jti` (client assertions, DPoP proofs) until `expires_at`; `false` when it was
    /// already seen: a replay.
    pub async fn remember_jti(&self, kind: &str, jti: &str, expires_at: i64) -> Result<bool, sqlx::Error> {
        self.changed(sql!(
            "INSERT INTO seen_jti (kind, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
            kind, jti, expires_at
        ))
        .await
    }

    // ---- grants, refresh and access tokens

    pub async fn put_grant(&self, g: &Grant) -> Result<(), sqlx::Error> {
        self.run(sql!(
            "INSERT INTO grants (grant_id, client_id, user_id, scope, created_at, last_used_at, revoked) VALUES ($1, $2, $3, $4, $5, $6, 0)";
            &g.grant_id, &g.client_id, &g.user_id, &g.scope, g.created_at, g.last_used_at
        ))
        .await
    }

    pub async fn grant(&self, grant_id: &str) -> Result<Option<Grant>, sqlx::Error> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE grant_id = $1");
        self.fetch_optional(sql!(&sql; grant_id), grant_of).await
    }

    /// Stores a grant with the authorization details granted (RFC 9396 §7), in one statement: the
    /// details are never missing from a stored grant that has them.
    pub async fn put_grant_with_details(
        &self,
        g: &Grant,
        details: &[serde_json::Value],
    ) -> Result<(), sqlx::Error> {
        self.run(sql!(
            "INSERT INTO grants (grant_id, client_id, user_id, scope, created_at, last_used_at, revoked, authorization_details) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)";
            &g.grant_id, &g.client_id, &g.user_id, &g.scope, g.created_at, g.last_used_at, to_json(&details)?
        ))
        .await
    }

    /// The authorization details granted with a grant (RFC 9396 §7); `None` when it has none (or
    /// there is no such grant). Stored text that does not parse is an error, never "no details".
    pub async fn grant_details(&self, grant_id: &str) -> Result<Option<Vec<serde_json::Value>>, sqlx::Error> {
        let q = sql!("SELECT authorization_details FROM grants WHERE grant_id = $1"; grant_id);
        let text = self
            .fetch_optional(q, |r| r.try_get::<Option<String>, _>("authorization_details"))
            .await?
            .flatten();
        text.map(|t| serde_json::from_str(&t).map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .transpose()
    }

    /// The user's live grants (the "connected apps" page).
    pub async fn grants_of_user(&self, user_id: &str) -> Result<Vec<Grant>, sqlx::Error> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE user_id = $1 AND revoked = 0 ORDER BY created_at"
        );
        self.fetch_all(sql!(&sql; user_id), grant_of).await
    }

    pub async fn touch_grant(&self, grant_id: &str, now: i64) -> Result<(), sqlx::Error> {
        self.run(sql!("UPDATE grants SET last_used_at = $1 WHERE grant_id = $2"; now, grant_id))
            .await
    }

    /// Revokes a grant with its refresh tokens and every access token issued under it, in one
    /// transaction; the access tokens then appear on the revocation feed at `now_ms`.
    pub async fn revoke_grant(&self, grant_id: &str, now_ms: i64) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        revoke_issued(&mut tx, IssuedTo::Grant, grant_id, now_ms).await?;
        tx.commit().await
    }

    pub async fn put_refresh<T: Serialize>(
        &self,
        token_hash: &str,
        grant_id: &str,
        client_id: &str,
        data: &T,
        expires_at: i64,
    ) -> Result<(), sqlx::Error> {
        self.run(sql!(
            "INSERT INTO refresh_tokens (token_hash, grant_id, client_id, data, expires_at, revoked) VALUES ($1, $2, $3, $4, $5, 0)";
            token_hash, grant_id, client_id, to_json(data)?, expires_at
        ))
        .await
    }

    /// A live refresh token: (grant_id, client_id, data).
    pub async fn refresh<T: DeserializeOwned>(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(String, String, T)>, sqlx::Error> {
        let q = sql!(
            "SELECT grant_id, client_id, data FROM refresh_tokens WHERE token_hash = $1 AND revoked = 0 AND expires_at > $2";
            token_hash, now
        );
        let found = self
            .fetch_optional(q, |r| {
                let (grant_id, client_id) = (r.try_get("grant_id")?, r.try_get("client_id")?);
                Ok(from_json(r, "data")?.map(|data| (grant_id, client_id, data)))
            })
            .await?;
        Ok(found.flatten())
    }

    pub async fn revoke_refresh(&self, token_hash: &str) -> Result<bool, sqlx::Error> {
        self.changed(sql!("UPDATE refresh_tokens SET revoked = 1 WHERE token_hash = $1"; token_hash))
            .await
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
        self.run(sql!(
            "INSERT INTO access_tokens (jti, grant_id, client_id, data, exp, revoked_at_ms) VALUES ($1, $2, $3, $4, $5, NULL)";
            jti, grant_id, client_id, to_json(data)?, exp
        ))
        .await
    }

    /// (client_id, data, exp, revoked) of an issued access token.
    pub async fn access_token<T: DeserializeOwned>(
        &self,
        jti: &str,
    ) -> Result<Option<(String, T, i64, bool)>, sqlx::Error> {
        let q = sql!("SELECT client_id, data, exp, revoked_at_ms FROM access_tokens WHERE jti = $1"; jti);
        let found = self
            .fetch_optional(q, |r| {
                let (client_id, exp) = (r.try_get("client_id")?, r.try_get("exp")?);
                let revoked = r.try_get::<Option<i64>, _>("revoked_at_ms")?.is_some();
                Ok(from_json(r, "data")?.map(|data| (client_id, data, exp, revoked)))
            })
            .await?;
        Ok(found.flatten())
    }

    pub async fn revoke_access_token(&self, jti: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
        self.changed(sql!(
            "UPDATE access_tokens SET revoked_at_ms = $1 WHERE jti = $2 AND revoked_at_ms IS NULL";
            now_ms, jti
        ))
        .await
    }

    /// Revocations after the cursor `(revoked_at_ms, jti)`, oldest first, of tokens not yet expired.
    /// Ties on the millisecond are ordered by `jti` in byte order on both backends: a feed reader may
    /// switch between instances on different databases only if the order is one.
    pub async fn revocations_since(
        &self,
        after_ms: i64,
        after_jti: &str,
        now: i64,
        limit: i64,
    ) -> Result<Vec<RevokedToken>, sqlx::Error> {
        let jti = self.in_byte_order("jti");
        let sql = format!(
            "SELECT jti, exp, revoked_at_ms FROM access_tokens WHERE revoked_at_ms IS NOT NULL AND exp > $1 \
             AND (revoked_at_ms > $2 OR (revoked_at_ms = $2 AND {jti} > $3)) ORDER BY revoked_at_ms, {jti} LIMIT $4"
        );
        self.fetch_all(sql!(&sql; now, after_ms, after_jti, limit), revoked_token_of)
            .await
    }

    // ---- sign-in throttling (FISC item 41; the rules are in frontchannel/limits.rs)

    /// The throttle row of `key` (an account, an account at an address, or an address).
    pub async fn throttle(&self, key: &str) -> Result<Option<Throttle>, sqlx::Error> {
        Ok(self.throttle_row(key).await?.map(|(t, _)| t))
    }

    async fn throttle_row(&self, key: &str) -> Result<Option<(Throttle, i64)>, sqlx::Error> {
        let q = sql!(
            "SELECT failures, window_start, next_at, known_until, seq FROM signin_throttle WHERE throttle_key = $1";
            key
        );
        self.fetch_optional(q, throttle_of).await
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
            let write = match current {
                None => sql!(
                    "INSERT INTO signin_throttle (throttle_key, failures, window_start, next_at, known_until, seq) \
                     VALUES ($1, $2, $3, $4, $5, 1) ON CONFLICT DO NOTHING";
                    key, next.failures, next.window_start, next.next_at, next.known_until
                ),
                Some((_, seq)) => sql!(
                    "UPDATE signin_throttle SET failures = $1, window_start = $2, next_at = $3, known_until = $4, \
                     seq = seq + 1 WHERE throttle_key = $5 AND seq = $6";
                    next.failures, next.window_start, next.next_at, next.known_until, key, seq
                ),
            };
            if self.changed(write).await? {
                return Ok(Ok(next));
            }
        }
        Ok(Err(i64::MAX))
    }

    /// Takes back one counted attempt (it was refused by a later limit, or it succeeded and the key
    /// counts failures only).
    pub async fn throttle_refund(&self, key: &str) -> Result<(), sqlx::Error> {
        self.run(sql!(
            "UPDATE signin_throttle SET failures = failures - 1, seq = seq + 1 WHERE throttle_key = $1 AND failures > 0";
            key
        ))
        .await
    }

    /// After a successful sign-in: the key's failures are forgotten and it is remembered as known
    /// until `known_until` (0: not remembered, the row is deleted).
    pub async fn throttle_succeeded(&self, key: &str, known_until: i64) -> Result<(), sqlx::Error> {
        if known_until <= 0 {
            return self
                .run(sql!("DELETE FROM signin_throttle WHERE throttle_key = $1"; key))
                .await;
        }
        self.run(sql!(
            "INSERT INTO signin_throttle (throttle_key, failures, window_start, next_at, known_until, seq) \
             VALUES ($1, 0, 0, 0, $2, 1) ON CONFLICT (throttle_key) DO UPDATE SET failures = 0, next_at = 0, \
             known_until = excluded.known_until, seq = signin_throttle.seq + 1";
            key, known_until
        ))
        .await
    }

    /// Deletes what has expired.
    pub async fn sweep(&self, now: i64) -> Result<(), sqlx::Error> {
        self.run(sql!("DELETE FROM items WHERE expires_at <= $1"; now))
            .await?;
        self.run(sql!("DELETE FROM seen_jti WHERE expires_at <= $1"; now))
            .await?;
        // Access tokens stay an hour past `exp`.
        self.run(sql!("DELETE FROM access_tokens WHERE exp <= $1"; now - 3600))
            .await?;
        self.run(sql!("DELETE FROM refresh_tokens WHERE expires_at <= $1"; now))
            .await?;
        // Throttle rows with no failure left and no known address to remember, or untouched for
        // THROTTLE_KEEP (an unknown username guessed once a month ago need not be kept).
        self.run(sql!(
            "DELETE FROM signin_throttle WHERE known_until <= $1 AND (failures = 0 OR (next_at <= $2 AND window_start <= $2))";
            now, now - THROTTLE_KEEP
        ))
        .await
    }

    // ---- passkeys (WebAuthn credentials, src/webauthn.rs)

    /// Stores a newly registered passkey; `false` when the credential ID is already registered (to
    /// anyone): WebAuthn §7.1 step 22 says to refuse that registration.
    pub async fn put_passkey(&self, c: &StoredCredential) -> Result<bool, sqlx::Error> {
        self.changed(sql!(
            "INSERT INTO passkeys (credential_id, user_id, public_key, sign_count) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
            &c.credential_id, &c.user_id, &c.public_key_jwk, c.sign_count
        ))
        .await
    }

    /// The passkey with this credential ID (base64url), whoever owns it.
    pub async fn passkey(&self, credential_id: &str) -> Result<Option<StoredCredential>, sqlx::Error> {
        let sql = format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1");
        self.fetch_optional(sql!(&sql; credential_id), passkey_of).await
    }

    pub async fn passkeys_of_user(&self, user_id: &str) -> Result<Vec<StoredCredential>, sqlx::Error> {
        let sql = format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY credential_id");
        self.fetch_all(sql!(&sql; user_id), passkey_of).await
    }

    /// Removes one of the user's passkeys (a lost or replaced authenticator); `false` when this user has
    /// no passkey with that credential ID (another user's is never touched).
    pub async fn delete_passkey(&self, user_id: &str, credential_id: &str) -> Result<bool, sqlx::Error> {
        self.changed(
            sql!("DELETE FROM passkeys WHERE credential_id = $1 AND user_id = $2"; credential_id, user_id),
        )
        .await
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
        self.changed(sql!(
            "UPDATE passkeys SET sign_count = $1 WHERE credential_id = $2 AND sign_count = $3";
            new, credential_id, stored
        ))
        .await
    }
}
