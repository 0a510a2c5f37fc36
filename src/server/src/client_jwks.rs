//! Client keys by reference: a client's `jwks_uri` (RFC 7591 §2), as ecosystem directories publish
//! them, fetched over HTTPS and cached. Only hosts the operator lists in
//! `registration.jwks_uri_hosts` are ever fetched (no server-side request to anywhere a registration
//! names), only over `https` with certificates checked against `registration.jwks_uri_ca_file` (the
//! system bundle by default), with no redirects, a 5 s deadline and a 64 KiB limit. A key set is used
//! for 5 minutes, then fetched again; a key ID the set does not hold makes it fetched again at once, at
//! most every 30 s per URI (`registration.jwks_uri_min_refetch`; so a client's key rotation works,
//! and unknown `kid`s cannot make us hammer the host). When a fetch fails the last good set stays in use for up to 24 hours.

use crate::clock::Clock;
use crate::config::Registration;
use crate::store::ClientMetadata;
use fapi_core::jwks::Jwks;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FRESH_FOR: Duration = Duration::from_secs(300);
const REFETCH_AFTER: u64 = 30;
const STALE_LIMIT: Duration = Duration::from_secs(86_400);
const DEADLINE: Duration = Duration::from_secs(5);
const MAX_BODY: usize = 64 * 1024;
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

struct Cached {
    /// The last key set fetched, and when (none while every fetch so far failed).
    /// Times are the server clock's milliseconds (src/clock.rs), so tests move them.
    jwks: Option<(Value, i64)>,
    attempted: i64,
}

pub struct ClientJwks {
    hosts: Vec<String>,
    /// At most one fetch per URI in this time (`registration.jwks_uri_min_refetch`, default 30 s).
    refetch_after: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    cache: Mutex<HashMap<String, Cached>>,
    clock: Clock,
}

/// An `https://host[:port]/path` URI, split.
struct Target {
    host: String,
    port: u16,
    /// `host` or `host:port` as written (the Host header and the allow-list entry).
    authority: String,
    path_and_query: String,
}

fn parse(uri: &str) -> Result<Target, String> {
    let rest = uri
        .strip_prefix("https://")
        .ok_or("jwks_uri must be an https URL")?;
    if rest.contains('#') {
        return Err("jwks_uri must not have a fragment".into());
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("jwks_uri must name a host (and no user information)".into());
    }
    let authority = authority.to_ascii_lowercase();
    // `host`, `host:port`, `[v6]` or `[v6]:port`.
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !authority.ends_with(']') => (
            h.to_string(),
            p.parse::<u16>().map_err(|_| "jwks_uri has a bad port")?,
        ),
        _ => (authority.clone(), 443),
    };
    let path_and_query = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Ok(Target {
        host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        port,
        authority,
        path_and_query,
    })
}

impl ClientJwks {
    pub fn new(cfg: &Registration, clock: Clock) -> anyhow::Result<Self> {
        let hosts: Vec<String> = cfg
            .jwks_uri_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let tls = if hosts.is_empty() {
            None
        } else {
            let path = cfg
                .jwks_uri_ca_file
                .clone()
                .unwrap_or_else(|| SYSTEM_BUNDLE.into());
            let pem = std::fs::read(&path)
                .map_err(|e| anyhow::anyhow!("registration.jwks_uri_ca_file {}: {e}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                // A bundle may hold certificates rustls cannot use as roots; the rest still count.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                anyhow::bail!(
                    "registration.jwks_uri_ca_file {}: no CA certificates",
                    path.display()
                );
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(Arc::new(config))
        };
        Ok(ClientJwks {
            hosts,
            refetch_after: Duration::from_secs(cfg.jwks_uri_min_refetch.unwrap_or(REFETCH_AFTER)),
            tls,
            cache: Mutex::new(HashMap::new()),
            clock,
        })
    }

    /// Why this `jwks_uri` cannot be registered, if it cannot.
    pub fn check(&self, uri: &str) -> Result<(), String> {
        let t = parse(uri)?;
        if !self.hosts.iter().any(|h| *h == t.authority || *h == t.host) {
            return Err(format!(
                "jwks_uri host {} is not one this server fetches keys from (registration.jwks_uri_hosts); register the keys inline (jwks)",
                t.authority
            ));
        }
        Ok(())
    }

    /// Gives a client registered with `jwks_uri` its key set in `jwks` (in memory: the registration
    /// is not changed). `refetch`: a key was missing, fetch again unless that was done in the last
    /// 30 s. A client with inline keys is left as it is.
    pub async fn resolve(&self, client: &mut ClientMetadata, refetch: bool) -> Result<(), String> {
        let Some(uri) = client.jwks_uri.clone() else {
            return Ok(());
        };
        if client.jwks.is_some() && !refetch {
            return Ok(());
        }
        client.jwks = Some(self.keys(&uri, refetch).await?);
        Ok(())
    }

    async fn keys(&self, uri: &str, refetch: bool) -> Result<Value, String> {
        let now = self.clock.now_ms();
        let since = |at: i64| Duration::from_millis(u64::try_from(now.saturating_sub(at)).unwrap_or(0));
        let (usable, due) = {
            let cache = self.cache.lock().map_err(|_| "key cache unavailable")?;
            match cache.get(uri) {
                Some(c) => {
                    let age = c.jwks.as_ref().map(|(_, at)| since(*at));
                    let usable = c
                        .jwks
                        .as_ref()
                        .filter(|_| age.is_some_and(|a| a < STALE_LIMIT))
                        .map(|(v, _)| v.clone());
                    let fresh = age.is_some_and(|a| a < FRESH_FOR);
                    let may_fetch = since(c.attempted) >= self.refetch_after;
                    (usable, may_fetch && (refetch || !fresh))
                }
                None => (None, true),
            }
        };
        if !due {
            return usable
                .ok_or_else(|| "the client's jwks_uri could not be fetched (tried moments ago)".into());
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache
                .entry(uri.to_string())
                .and_modify(|c| c.attempted = now)
                .or_insert(Cached {
                    jwks: None,
                    attempted: now,
                });
        }
        match self.fetch(uri).await {
            Ok(jwks) => {
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(
                        uri.to_string(),
                        Cached {
                            jwks: Some((jwks.clone(), now)),
                            attempted: now,
                        },
                    );
                }
                Ok(jwks)
            }
            Err(e) => {
                tracing::warn!(jwks_uri = %uri, error = %e, "client jwks_uri fetch failed");
                usable.ok_or(e)
            }
        }
    }

    async fn fetch(&self, uri: &str) -> Result<Value, String> {
        self.check(uri)?;
        let tls = self.tls.clone().ok_or("no jwks_uri hosts are configured")?;
        let t = parse(uri)?;
        let work = async {
            let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let name = rustls::pki_types::ServerName::try_from(t.host.clone())
                .map_err(|_| "jwks_uri host is not a valid server name".to_string())?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = hyper::Request::get(t.path_and_query.as_str())
                .header(hyper::header::HOST, t.authority.as_str())
                .header(
                    hyper::header::ACCEPT,
                    "application/jwk-set+json, application/json",
                )
                .body(Empty::<Bytes>::new())
                .map_err(|e| format!("request: {e}"))?;
            let resp = sender.send_request(req).await.map_err(|e| format!("HTTP: {e}"))?;
            if resp.status() != hyper::StatusCode::OK {
                return Err(format!("status {}", resp.status().as_u16()));
            }
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok::<_, String>(body)
        };
        let body = tokio::time::timeout(DEADLINE, work)
            .await
            .map_err(|_| "timed out".to_string())??;
        let jwks: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        // The same rules as inline keys: public keys only, usable ones, at least one.
        let parsed = Jwks::from_value(&jwks).map_err(|e| format!("not a usable JWK Set: {e:?}"))?;
        if parsed.keys.is_empty() {
            return Err("the JWK Set holds no usable key".into());
        }
        Ok(jwks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hosts(hosts: &[&str]) -> ClientJwks {
        ClientJwks {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            refetch_after: Duration::from_secs(30),
            tls: None,
            cache: Mutex::new(HashMap::new()),
            clock: Clock::manual(0),
        }
    }

    #[test]
    fn only_https_uris_on_listed_hosts() {
        let c = with_hosts(&["keystore.directory.example", "localhost:8443"]);
        assert!(c
            .check("https://keystore.directory.example/tpp/123/jwks.json")
            .is_ok());
        assert!(c.check("https://KEYSTORE.directory.example/x").is_ok());
        assert!(
            c.check("https://keystore.directory.example:443/x").is_ok(),
            "host entry allows any port"
        );
        assert!(c.check("https://localhost:8443/jwks").is_ok());
        assert!(
            c.check("https://localhost:9443/jwks").is_err(),
            "host:port entry is exact"
        );
        for bad in [
            "http://keystore.directory.example/jwks",
            "https://other.example/jwks",
            "https://user@keystore.directory.example/jwks",
            "https://keystore.directory.example/jwks#k",
            "https://keystore.directory.example.evil.example/jwks",
            "https://:443/jwks",
            "keystore.directory.example/jwks",
        ] {
            assert!(c.check(bad).is_err(), "{bad}");
        }
        assert!(with_hosts(&[])
            .check("https://keystore.directory.example/jwks")
            .is_err());
    }

    #[test]
    fn uri_parts() {
        let parts = |u: &str| parse(u).map(|t| (t.host, t.port, t.authority, t.path_and_query));
        assert_eq!(
            parts("https://Host.example:8443/a/b?c=1"),
            Ok((
                "host.example".into(),
                8443,
                "host.example:8443".into(),
                "/a/b?c=1".into()
            ))
        );
        assert_eq!(
            parts("https://host.example"),
            Ok(("host.example".into(), 443, "host.example".into(), "/".into()))
        );
        assert!(parse("https://host.example:99999/").is_err());
        assert_eq!(
            parse("https://[::1]:8443/k").map(|t| (t.host, t.port)),
            Ok(("::1".into(), 8443))
        );
        assert_eq!(
            parse("https://[::1]/k").map(|t| (t.host, t.port)),
            Ok(("::1".into(), 443))
        );
    }
}
