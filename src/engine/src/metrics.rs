//! The stats both shells publish, by name (`fapi_guard.<name>`): decisions by outcome and reason,
//! token cache hits and misses, key-set fetches and revocation-feed polls. The per-request counters
//! are batched and handed to the host on the one-second tick ([`Metrics::flush`]); refusals and
//! background events go out at once (they are rare and operators watch them).

use crate::host::Host;

/// Every refusal reason fapi-core gives (`Denial::reason`), plus `internal_error` (a shell that
/// could not run the engine). Shells that must define their counters up front (the native module)
/// define `denied.<reason>` for each; a reason missing here is still counted under `denied`.
pub const DENIAL_REASONS: &[&str] = &[
    "acr_not_accepted",
    "algorithm_not_allowed",
    "ambiguous_key",
    "audience_mismatch",
    "authorization_details_mismatch",
    "authorization_details_missing",
    "authorization_details_store_full",
    "authorization_details_used",
    "auth_time_too_old",
    "bearer_not_allowed",
    "body_not_json",
    "body_too_large",
    "binding_mismatch",
    "binding_not_allowed",
    "certificate_missing",
    "claim_condition_failed",
    "claim_malformed",
    "claim_missing",
    "client_not_allowed",
    "dpop_alg",
    "dpop_ath",
    "dpop_claim_missing",
    "dpop_htm",
    "dpop_htu",
    "dpop_iat",
    "dpop_jwk",
    "dpop_key_mismatch",
    "dpop_malformed",
    "dpop_multiple_headers",
    "dpop_nonce_invalid",
    "dpop_nonce_required",
    "dpop_private_jwk",
    "dpop_proof_missing",
    "dpop_replay",
    "dpop_replay_store_full",
    "dpop_signature",
    "dpop_token_as_bearer",
    "dpop_typ",
    "insufficient_scope",
    "insufficient_user_authentication",
    "internal_error",
    "jwks_unavailable",
    "key_in_header",
    "key_unusable",
    "malformed_authorization",
    "malformed_token",
    "missing_token",
    "multiple_authorization_headers",
    "no_matching_rule",
    "revocation_status_unknown",
    "signature_invalid",
    "subject_mismatch",
    "token_expired",
    "token_in_query",
    "token_inactive",
    "token_issued_in_future",
    "token_lifetime_too_long",
    "token_not_yet_valid",
    "token_revoked",
    "token_too_old",
    "typ_not_allowed",
    "unknown_critical_header",
    "unknown_issuer",
    "unknown_kid",
];

/// Counters that are not refusals: the batched per-request ones and the background events.
pub const EVENT_COUNTERS: &[&str] = &[
    "allowed",
    "token_cache.hit",
    "token_cache.miss",
    "denied",
    "jwks.fetched",
    "jwks.fetch_failed",
    "revocation_feed.ok",
    "revocation_feed.failed",
];

/// Every counter name (without the `fapi_guard.` prefix) the engine may report.
pub fn all_counters() -> Vec<String> {
    EVENT_COUNTERS
        .iter()
        .map(|n| n.to_string())
        .chain(DENIAL_REASONS.iter().map(|r| format!("denied.{r}")))
        .collect()
}

#[derive(Default)]
pub struct Metrics {
    /// `allowed`, `token_cache.hit`, `token_cache.miss`, counted since the last flush.
    pending: [u64; 3],
    flushed_once: bool,
}

const BATCHED: [&str; 3] = ["allowed", "token_cache.hit", "token_cache.miss"];

impl Metrics {
    /// Adds what was counted since the last flush (and, the first time, defines the batched counters
    /// so they show as 0 before the first request).
    pub fn flush<H: Host + ?Sized>(&mut self, host: &mut H) {
        for (i, name) in BATCHED.iter().enumerate() {
            let n = std::mem::take(&mut self.pending[i]);
            if n > 0 || !self.flushed_once {
                host.counter(name, n);
            }
        }
        self.flushed_once = true;
    }

    /// `allowed` (batched), or `denied.<reason>` plus `denied` (at once).
    pub fn decision<H: Host + ?Sized>(&mut self, host: &mut H, reason: &str) {
        if reason == "allowed" {
            self.pending[0] += 1;
        } else {
            host.counter("denied", 1);
            host.counter(&format!("denied.{reason}"), 1);
        }
    }

    /// Batched: a cache hit or miss per token request.
    pub fn cache(&mut self, hit: bool) {
        self.pending[if hit { 1 } else { 2 }] += 1;
    }

    /// Counted since the last flush (tests).
    pub fn pending(&self, name: &str) -> u64 {
        BATCHED
            .iter()
            .position(|n| *n == name)
            .map_or(0, |i| self.pending[i])
    }
}
