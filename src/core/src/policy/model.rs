//! The policy document security teams write (YAML) and the plugin loads (compiled JSON): one schema,
//! documented in docs/policy.md. Unknown fields are errors everywhere.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The format tag a compiled policy carries.
pub const COMPILED_FORMAT: &str = "fapi-guard.policy/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Schema version; only 1 exists.
    #[serde(deserialize_with = "crate::policy::whole_number::exact")]
    pub version: u32,
    /// Set by `fapictl policy compile`; authors leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub settings: Settings,
    pub issuers: Vec<IssuerSpec>,
    #[serde(default)]
    pub defaults: Requirements,
    pub rules: Vec<RuleSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<TestCase>,
}

/// Plugin-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The origin clients use (`https://api.bank.example`), for DPoP `htu` when Envoy sits behind a
    /// load balancer that changes scheme, host or port. Default: the request's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_origin: Option<String>,
    /// Where the client certificate comes from: the TLS connection (default) or, only behind a trusted
    /// front proxy, its `x-forwarded-client-cert` header.
    #[serde(default)]
    pub client_certificate: CertificateSource,
    /// Claims forwarded to the upstream as headers; incoming headers of these names are removed first.
    #[serde(default = "default_forward")]
    pub forward: BTreeMap<String, String>,
    /// Remove Authorization and DPoP before the upstream.
    #[serde(default)]
    pub strip_credentials: bool,
    /// Verified tokens remembered per worker.
    #[serde(
        default = "default_token_cache",
        deserialize_with = "crate::policy::whole_number::exact"
    )]
    pub token_cache_size: usize,
    /// DPoP `jti` values remembered.
    #[serde(
        default = "default_replay_store",
        deserialize_with = "crate::policy::whole_number::exact"
    )]
    pub replay_store_size: usize,
    /// Lifetime of server-issued DPoP nonces, seconds.
    #[serde(
        default = "default_nonce_lifetime",
        deserialize_with = "crate::policy::whole_number::exact"
    )]
    pub dpop_nonce_lifetime: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_feed: Option<RevocationFeed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection: Option<Introspection>,
}

/// The same defaults as a `settings:` section with no fields (a derived `Default` would give zero
/// sizes and no forwarded claims when the section is left out).
impl Default for Settings {
    fn default() -> Self {
        Settings {
            external_origin: None,
            client_certificate: CertificateSource::default(),
            forward: default_forward(),
            strip_credentials: false,
            token_cache_size: default_token_cache(),
            replay_store_size: default_replay_store(),
            dpop_nonce_lifetime: default_nonce_lifetime(),
            revocation_feed: None,
            introspection: None,
        }
    }
}

fn default_forward() -> BTreeMap<String, String> {
    [
        ("sub", "x-fapi-subject"),
        ("client_id", "x-fapi-client-id"),
        ("scope", "x-fapi-scope"),
        ("acr", "x-fapi-acr"),
        ("binding", "x-fapi-binding"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
fn default_token_cache() -> usize {
    10_000
}
fn default_replay_store() -> usize {
    100_000
}
fn default_nonce_lifetime() -> u64 {
    300
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateSource {
    #[default]
    Connection,
    /// Trust `x-forwarded-client-cert` (the front proxy is named trusted by choosing this).
    XForwardedClientCert,
}

/// The authorization server's revocation feed, polled through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationFeed {
    pub cluster: String,
    pub path: String,
    /// `:authority` for the feed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Seconds between polls (default 5).
    #[serde(
        default = "default_feed_interval",
        deserialize_with = "crate::policy::whole_number::exact"
    )]
    pub interval: u64,
    /// Bearer credential for the feed, if it needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}
fn default_feed_interval() -> u64 {
    5
}

/// RFC 7662 introspection, for routes whose revocation mode is `introspection`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Introspection {
    pub cluster: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Credential for the introspection endpoint (`Authorization` header value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    /// Seconds an answer is reused (default 5).
    #[serde(
        default = "default_feed_interval",
        deserialize_with = "crate::policy::whole_number::exact"
    )]
    pub cache_seconds: u64,
}

/// A trusted token issuer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Allowed algorithms; default PS256, ES256, EdDSA. RS256 may be added; none and HS* never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    pub jwks: JwksSource,
    #[serde(default)]
    pub require_typ: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::policy::whole_number::optional"
    )]
    pub leeway_past: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::policy::whole_number::optional"
    )]
    pub leeway_future: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::policy::whole_number::optional"
    )]
    pub max_lifetime: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_claims: Option<Vec<String>>,
}

/// Where an issuer's keys come from: inline `keys`, a `file` (inlined by `fapictl policy compile`), or a
/// `uri` fetched through an Envoy `cluster`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Seconds between refreshes of a fetched set (default 300).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::policy::whole_number::optional"
    )]
    pub refresh: Option<u64>,
    /// Seconds the last good set is used after fetches start failing (default 3600); then fail closed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::policy::whole_number::optional"
    )]
    pub max_stale: Option<u64>,
}

/// A route rule: the first rule whose `match` fits the request decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    #[serde(rename = "match")]
    pub matches: MatchSpec,
    /// Admit without any token (health checks, public metadata). Exclusive with `require`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    #[serde(default)]
    pub require: Requirements,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Host names (exact, or `*.example` for one label); any host when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Methods; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Exact path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Path prefix, on segment boundaries (`/accounts` matches `/accounts` and `/accounts/1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Path template: `{name}` stands for one non-empty segment (`/accounts/{id}/balances`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// What a matched request's token must satisfy. In `defaults`, every field is a default for rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<ScopeRequirement>,
    /// mtls, dpop, either (default) or bearer-allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_constraint: Option<crate::binding::SenderConstraint>,
    /// Accepted `acr` values (RFC 9470 `acr_values` in the challenge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<Vec<String>>,
    /// Maximum seconds since `auth_time` (RFC 9470 `max_age`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::policy::whole_number::optional"
    )]
    pub max_auth_age: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Vec<ClaimCondition>>,
    /// none (default), feed or introspection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop: Option<crate::dpop::DpopRules>,
    /// The request body must be what the token's RFC 9396 `authorization_details` grant (rules
    /// only, not `defaults`: it makes the plugin read the body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<crate::authorization_details::DetailsRequirement>,
}

/// `scopes: [a, b]` (all of them) or `scopes: {all_of: [...], any_of: [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScopeRequirement {
    AllOf(Vec<String>),
    Detailed(ScopeSets),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all_of: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any_of: Vec<String>,
}

impl ScopeRequirement {
    pub fn sets(&self) -> ScopeSets {
        match self {
            ScopeRequirement::AllOf(all) => ScopeSets {
                all_of: all.clone(),
                any_of: Vec::new(),
            },
            ScopeRequirement::Detailed(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationMode {
    #[default]
    None,
    Feed,
    Introspection,
}

/// A condition on a claim: exactly one of the operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimCondition {
    /// Claim name; a dotted path reaches into objects (`authorization_details.type` is not supported:
    /// arrays are matched with `contains`).
    pub claim: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// The claim is an array (or space-separated string) containing this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// A policy test: a request and a token in, a decision out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    pub request: TestRequest,
    /// Omit for a request without any token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TestToken>,
    pub expect: TestExpect,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    #[serde(default = "default_method")]
    pub method: String,
    /// Absolute URL as the client sent it.
    pub url: String,
    /// Authorization scheme: Bearer or DPoP; default DPoP for DPoP-bound tokens, else Bearer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The client certificate: `bound` (the one the token names), `other`, or `none` (default: `bound`
    /// for mTLS-bound tokens, else `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// The DPoP proof key: `bound`, `other`, or `none` (default: `bound` under the DPoP scheme).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<String>,
    /// The token's `jti` was revoked through the feed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    /// The request body, for rules with `authorization_details`: a string is sent as written (a
    /// body that is not JSON), any other value as its JSON. Absent: no body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The same request was admitted once before with this token (a second use of a `once`
    /// authorization detail).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
}

impl TestRequest {
    /// The body bytes the test sends.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        self.body.as_ref().map(|b| match b {
            Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        })
    }
}

fn default_method() -> String {
    "GET".to_string()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestToken {
    /// mtls, dpop or none: how the token is bound (default mtls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
    /// `scope` as a space-separated string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Seconds since the user authenticated (sets `auth_time`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::policy::whole_number::optional"
    )]
    pub auth_age: Option<i64>,
    /// Seconds until `exp` (default 300; negative for an expired token).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::policy::whole_number::optional"
    )]
    pub expires_in: Option<i64>,
    /// The RFC 9396 `authorization_details` the user consented to (the claim of RFC 9396 §9.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Value>,
    /// Any other claims, overriding the generated ones (iss, aud, sub, client_id, ...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub claims: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestExpect {
    #[serde(deserialize_with = "crate::policy::whole_number::exact")]
    pub status: u16,
    /// OAuth error code, for denials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Reason code (see docs/policy.md), for denials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The rule that must have matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}
