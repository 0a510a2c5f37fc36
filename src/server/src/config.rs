//! fapi-as configuration: one TOML file, every value overridable by an environment variable
//! (`FAPI_AS_<SECTION>_<KEY>`, e.g. `FAPI_AS_DATABASE_URL`), defaults for a local demo.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The issuer identifier (RFC 8414): https URL of the browser-facing listener.
    pub issuer: String,
    /// Base URL of the mTLS listener (RFC 8705 §5 mtls_endpoint_aliases).
    pub mtls_base: String,
    #[serde(default)]
    pub listen: Listen,
    pub tls: Tls,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub tokens: Tokens,
    #[serde(default)]
    pub keys: Keys,
    #[serde(default)]
    pub feed: Feed,
    #[serde(default)]
    pub registration: Registration,
    #[serde(default)]
    pub login: Login,
    #[serde(default)]
    pub limits: Limits,
}

/// What one client can make a listener hold (src/serve.rs). Keep
/// `2 × max_connections + health_max_connections` well under the process's open-files limit
/// (`ulimit -n`, often 1024): the database, key files and `jwks_uri` fetches need descriptors too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections open at once on each TLS listener (browser-facing and mTLS, counted apart);
    /// a connection over the cap is closed when accepted. Default 400.
    pub max_connections: usize,
    /// Connections open at once on the plain-HTTP health listener, counted apart from the TLS
    /// listeners so health checks get through when those are full. Default 32.
    pub health_max_connections: usize,
    /// Seconds a client has to send a request's head (request line and headers); also how long
    /// an idle keep-alive connection waits for its next request. Default 10.
    pub header_read_timeout: u64,
    /// Seconds a client has to complete the TLS handshake. Default 10.
    pub tls_handshake_timeout: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 400,
            health_max_connections: 32,
            header_read_timeout: 10,
            tls_handshake_timeout: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Browser-facing TLS listener (authorization endpoint, login pages, discovery, JWKS).
    pub https: String,
    /// TLS listener that asks for a client certificate and accepts self-signed ones (PAR, token, ...).
    pub mtls: String,
    /// Plain HTTP: health only.
    pub http: String,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            https: "127.0.0.1:9443".into(),
            mtls: "127.0.0.1:9444".into(),
            http: "127.0.0.1:9080".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// `sqlite://PATH?mode=rwc` (default, no set-up) or `postgres://...` for several instances.
    pub url: String,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: "sqlite://fapi-as.db?mode=rwc".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tokens {
    /// Access token lifetime, seconds.
    pub access_token_lifetime: u64,
    /// Authorization code lifetime, seconds (FAPI 2.0 §5.3.2.1: at most 60).
    pub code_lifetime: u64,
    /// PAR request_uri lifetime, seconds (FAPI 2.0 §5.3.2.2: under 600).
    pub par_lifetime: u64,
    /// Refresh token lifetime, seconds.
    pub refresh_lifetime: u64,
    /// Audience of access tokens (the resource servers).
    pub audience: Vec<String>,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            access_token_lifetime: 300,
            code_lifetime: 60,
            par_lifetime: 60,
            refresh_lifetime: 86_400,
            audience: vec!["https://api.bank.example".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keys {
    /// Folder of signing keys (`current.jwk.json`, `next.jwk.json`, `retired/*.jwk.json`); created with
    /// an ES256 current key if empty.
    pub dir: PathBuf,
    /// Algorithm for new keys.
    pub alg: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            dir: "keys".into(),
            alg: "ES256".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    /// Bearer credential the Envoy plugin presents to read the revocation feed; none = feed open on
    /// the mTLS listener only.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Initial access token for dynamic client registration (RFC 7591 §3); none disables it.
    pub initial_access_token: Option<String>,
    /// Hosts (`host`, any port, or `host:port`) whose https `jwks_uri` a client may register, such as
    /// an ecosystem directory's key store (src/client_jwks.rs). None (the default): clients register
    /// their keys inline (`jwks`).
    #[serde(default)]
    pub jwks_uri_hosts: Vec<String>,
    /// CA certificates (PEM) trusted when fetching a `jwks_uri`; default: the system bundle.
    #[serde(default)]
    pub jwks_uri_ca_file: Option<PathBuf>,
    /// Seconds between two fetches of one `jwks_uri` for a key it did not hold (default 30).
    #[serde(default)]
    pub jwks_uri_min_refetch: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Login {
    /// Failed attempts on one account from one source address within `lockout` seconds before that
    /// account is locked for that address (only: the account stays open elsewhere); also the
    /// consecutive failures on an account, from anywhere, after which its attempts are slowed
    /// (frontchannel/limits.rs).
    pub max_failures: u32,
    /// Window and lock length of the per-(account, address) lock, seconds.
    pub lockout: u64,
    /// Failed attempts per source address per 10 minutes, on any accounts (password spraying);
    /// accounts already signed in from that address are not held back by it.
    pub max_failures_per_address: u32,
    /// The first delay on an account after `max_failures` consecutive failures, seconds; it doubles
    /// with each further failure up to `max_delay`.
    pub delay: u64,
    /// The longest delay between two attempts on one account, seconds.
    pub max_delay: u64,
    /// Consecutive failed attempts on one account, from all addresses together, after which its
    /// password and code sign-in stop until a success by another method or an operator's reset;
    /// NIST SP 800-63B §5.2.2: no more than 100 (a larger value is taken as 100).
    pub max_account_failures: u32,
    /// Password hashes computed at once (each on the blocking pool); default: the number of cores.
    pub password_hash_concurrency: usize,
    /// Reverse proxies whose `X-Forwarded-For` is believed (CIDRs such as `10.0.0.0/8` or exact
    /// addresses). From any other peer the header is ignored and the TCP peer address is the
    /// source address of the per-address limit. Default: none.
    pub trusted_proxies: Vec<IpNet>,
}

/// An IP network: `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7`, a /32 or /128).
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are taken as the IPv4 address they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl TryFrom<String> for IpNet {
    type Error = String;

    fn try_from(v: String) -> Result<Self, String> {
        v.parse()
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(v: &str) -> Result<Self, String> {
        let bad = || format!("\"{v}\" is not an IP address or CIDR");
        let (addr, prefix) = match v.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (v.trim(), None),
        };
        let addr = addr
            .parse::<std::net::IpAddr>()
            .map_err(|_| bad())?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }
}

impl IpNet {
    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl Default for Login {
    fn default() -> Self {
        Login {
            max_failures: 5,
            lockout: 900,
            max_failures_per_address: 50,
            delay: 1,
            max_delay: 60,
            max_account_failures: 100,
            password_hash_concurrency: crate::password::default_concurrency(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl Config {
    /// Reads the file, then applies `FAPI_AS_*` overrides.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut value: toml::Table =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        apply_env(&mut value, std::env::vars());
        let config: Config = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(config.relative_to(base))
    }

    fn relative_to(mut self, base: &Path) -> Self {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        fix(&mut self.keys.dir);
        if let Some(ca) = self.registration.jwks_uri_ca_file.as_mut() {
            fix(ca);
        }
        if let Some(rest) = self.database.url.strip_prefix("sqlite://") {
            if !rest.starts_with('/') && !rest.starts_with(':') {
                self.database.url = format!("sqlite://{}", base.join(rest).display());
            }
        }
        self
    }
}

/// `FAPI_AS_ISSUER=...` sets `issuer`; `FAPI_AS_DATABASE_URL=...` sets `database.url`. Values that
/// parse as TOML (numbers, booleans, arrays) are taken as such, others as strings.
fn apply_env(table: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) {
    for (name, value) in vars {
        let Some(key) = name.strip_prefix("FAPI_AS_") else {
            continue;
        };
        // FAPI_AS_CONFIG names the file itself (fapi-as --config), it is no setting.
        if key == "CONFIG" {
            continue;
        }
        let key = key.to_ascii_lowercase();
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let sections = [
            "listen",
            "tls",
            "database",
            "tokens",
            "keys",
            "feed",
            "registration",
            "login",
            "limits",
        ];
        match sections.iter().find(|s| key.starts_with(&format!("{s}_"))) {
            Some(section) => {
                let field = key[section.len() + 1..].to_string();
                let entry = table
                    .entry(section.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(t) = entry {
                    t.insert(field, parsed);
                }
            }
            None => {
                table.insert(key, parsed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_sections_and_top_level() {
        let mut t: toml::Table =
            toml::from_str("issuer = \"https://a\"\n[database]\nurl = \"sqlite://x\"").unwrap_or_default();
        apply_env(
            &mut t,
            vec![
                ("FAPI_AS_DATABASE_URL".to_string(), "postgres://db".to_string()),
                ("FAPI_AS_TOKENS_CODE_LIFETIME".to_string(), "30".to_string()),
                ("FAPI_AS_ISSUER".to_string(), "https://b".to_string()),
                ("FAPI_AS_CONFIG".to_string(), "/etc/fapi-as.toml".to_string()),
                ("OTHER".to_string(), "x".to_string()),
            ]
            .into_iter(),
        );
        assert_eq!(t["issuer"].as_str(), Some("https://b"));
        assert_eq!(t["database"]["url"].as_str(), Some("postgres://db"));
        assert_eq!(t["tokens"]["code_lifetime"].as_integer(), Some(30));
        assert!(
            t.get("config").is_none(),
            "FAPI_AS_CONFIG is the file, not a setting"
        );
    }

    #[test]
    fn partial_sections_keep_defaults() -> Result<(), String> {
        // An env override creates a section with one key: the other keys keep their defaults.
        let c: Config = toml::from_str(
            "issuer = \"https://a\"\nmtls_base = \"https://m\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n[tokens]\npar_lifetime = 5\n[login]\nlockout = 60",
        )
        .map_err(|e| e.to_string())?;
        assert_eq!(c.tokens.par_lifetime, 5);
        assert_eq!(c.tokens.code_lifetime, 60);
        assert_eq!(c.login.lockout, 60);
        assert_eq!(c.login.max_failures, 5);
        assert_eq!(
            (c.login.delay, c.login.max_delay, c.login.max_account_failures),
            (1, 60, 100)
        );
        assert!(c.login.password_hash_concurrency >= 1);
        assert!(c.login.trusted_proxies.is_empty());
        assert_eq!(c.limits.max_connections, 400);
        assert_eq!(c.limits.header_read_timeout, 10);
        Ok(())
    }

    #[test]
    fn trusted_proxies_are_networks() -> Result<(), String> {
        let c: Config = toml::from_str(
            "issuer = \"https://a\"\nmtls_base = \"https://m\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n[login]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]",
        )
        .map_err(|e| e.to_string())?;
        let ip = |s: &str| s.parse::<std::net::IpAddr>().map_err(|e| e.to_string());
        let nets = &c.login.trusted_proxies;
        assert!(nets[0].contains(ip("10.200.3.4")?));
        assert!(!nets[0].contains(ip("11.0.0.1")?));
        assert!(nets[0].contains(ip("::ffff:10.1.2.3")?), "IPv4-mapped");
        assert!(nets[1].contains(ip("192.0.2.7")?));
        assert!(!nets[1].contains(ip("192.0.2.8")?));
        assert!(nets[2].contains(ip("2001:db8:1::5")?));
        assert!(!nets[2].contains(ip("2001:db9::5")?));
        assert!(!nets[2].contains(ip("10.0.0.1")?));
        assert!("0.0.0.0/0".parse::<IpNet>()?.contains(ip("203.0.113.1")?));
        for bad in ["10.0.0.0/33", "host.example", "10.0.0.1/x", ""] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
        assert!(toml::from_str::<Config>(
            "issuer = \"https://a\"\nmtls_base = \"https://m\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n[login]\ntrusted_proxies = [\"nope\"]",
        )
        .is_err());
        Ok(())
    }
}
