//! The HTTP API: routes, the caller taken from the plugin's claim headers, JSON bodies and errors.
//!
//! The service sits behind Envoy and the fapi-guard plugin, which validated the access token and
//! forwarded its claims as `x-fapi-*` headers (policy `settings.forward`). This service never sees or
//! parses a token: a request without `x-fapi-subject` did not come through the plugin and gets 401.
//! Scopes are checked again here (defence in depth), mirroring policies/open-banking-jp.yaml.

use crate::store::{
    Account, Initiator, Store, Transaction, Transfer, TransferError, TransferOutcome, TransferRequest,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The FAPI interaction id: echoed on every response and logged, a UUID v4 when the request has none
/// (FAPI 1.0 Part 1 §6.2.1, applied by Part 2 §6.2.1; for FAPI 2.0, the Implementation Advice).
pub const INTERACTION_ID: HeaderName = HeaderName::from_static("x-fapi-interaction-id");
pub const SUBJECT: HeaderName = HeaderName::from_static("x-fapi-subject");
pub const CLIENT_ID: HeaderName = HeaderName::from_static("x-fapi-client-id");
pub const SCOPE: HeaderName = HeaderName::from_static("x-fapi-scope");
pub const ACR: HeaderName = HeaderName::from_static("x-fapi-acr");
pub const BINDING: HeaderName = HeaderName::from_static("x-fapi-binding");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set (`true`) on a POST /transfers answer that replays an earlier result.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Transactions returned when `limit` is not given, and the most that may be asked for.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
/// Longest accepted Idempotency-Key, reference and interaction id.
const MAX_KEY_LEN: usize = 255;
const MAX_REFERENCE_CHARS: usize = 140;
const MAX_INTERACTION_ID_LEN: usize = 128;

pub struct AppState {
    pub store: Store,
}

/// An error answer: `{"error": code, "error_description": text}` with a stable code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            description: description.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "storage error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        )
    }

    fn account_not_found(field: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "account_not_found",
            format!("{field}: no such account"),
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "error_description": self.description})),
        )
            .into_response()
    }
}

/// The caller, from the plugin's claim headers.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `x-fapi-subject`: the user id (`sub`).
    pub subject: String,
    /// `x-fapi-client-id`, empty when absent.
    pub client_id: String,
    /// `x-fapi-scope`, split on spaces.
    pub scopes: Vec<String>,
    pub acr: Option<String>,
    pub binding: Option<String>,
}

impl Caller {
    fn require_any_scope(&self, scopes: &[&str]) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| scopes.contains(&s.as_str())) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this request needs the scope {}", scopes.join(" or ")),
            ))
        }
    }
}

/// The single value of a claim header: `None` when absent; an error when repeated or not text
/// (the plugin sets each once, so either means the request did not come from it unaltered).
fn claim(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_claim_header",
            format!("{name} appears more than once"),
        ));
    }
    let text = first.to_str().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_claim_header",
            format!("{name} is not visible ASCII"),
        )
    })?;
    Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let h = &parts.headers;
        let subject = claim(h, &SUBJECT)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_subject",
                "no x-fapi-subject: requests must come through the fapi-guard gateway",
            )
        })?;
        Ok(Caller {
            subject,
            client_id: claim(h, &CLIENT_ID)?.unwrap_or_default(),
            scopes: claim(h, &SCOPE)?
                .unwrap_or_default()
                .split_ascii_whitespace()
                .map(str::to_string)
                .collect(),
            acr: claim(h, &ACR)?,
            binding: claim(h, &BINDING)?,
        })
    }
}

/// The interaction id of this request (set by [`interaction_id`] for the handlers).
#[derive(Debug, Clone)]
pub struct InteractionId(pub String);

fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    // SystemRandom only fails when the OS has no randomness at all; an all-zero id is still unique
    // enough to correlate one request in the logs.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Middleware: the request's `x-fapi-interaction-id` (or a new UUID when missing, repeated, empty
/// or longer than 128 bytes) goes to the handlers and back on the response, errors included.
pub async fn interaction_id(mut req: Request, next: Next) -> Response {
    let mut given = req.headers().get_all(&INTERACTION_ID).iter();
    let id = match (given.next(), given.next()) {
        (Some(v), None) if !v.is_empty() && v.len() <= MAX_INTERACTION_ID_LEN => v.clone(),
        _ => HeaderValue::from_str(&uuid_v4()).unwrap_or(HeaderValue::from_static("unknown")),
    };
    let text = String::from_utf8_lossy(id.as_bytes()).into_owned();
    // The path only: a query string could carry what must not be logged (a misplaced token).
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    req.extensions_mut().insert(InteractionId(text.clone()));
    let mut resp = next.run(req).await;
    tracing::info!(%method, %path, status = resp.status().as_u16(), interaction_id = %text, "request");
    resp.headers_mut().insert(INTERACTION_ID, id);
    resp
}

/// The router (all routes, the interaction id middleware, JSON 404/405).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/accounts", get(list_accounts))
        .route("/accounts/{account_id}", get(account_detail))
        .route("/accounts/{account_id}/balances", get(balances))
        .route("/accounts/{account_id}/transactions", get(transactions))
        .route("/transfers", post(create_transfer))
        .route("/transfers/{transfer_id}", get(transfer_status))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::from_fn(interaction_id))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this resource",
    )
}

/// GET /health: anonymous liveness (死活監視), checks that the database answers.
async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(json!({"status": "ok"})))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds as RFC 3339 in Japan Standard Time, e.g. `2026-03-27T10:00:00+09:00`.
pub fn jst(unix: i64) -> String {
    let t = unix + 9 * 3600;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Days to civil date: H. Hinnant, "chrono-Compatible Low-Level Date Algorithms".
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+09:00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn account_json(a: &Account) -> Value {
    json!({
        "account_id": a.account_id,
        "account_type": a.account_type,
        "account_name": a.name,
        "currency": a.currency,
    })
}

fn transaction_json(t: &Transaction) -> Value {
    json!({
        "transaction_id": t.transaction_id,
        "booked_at": jst(t.booked_at),
        "type": if t.amount < 0 { "debit" } else { "credit" },
        "amount": t.amount.abs(),
        "balance_after": t.balance_after,
        "description": t.description,
        "counterparty_account": t.counterparty_account,
        "transfer_id": t.transfer_id,
    })
}

fn transfer_json(t: &Transfer) -> Value {
    json!({
        "transfer_id": t.transfer_id,
        "status": t.status,
        "from_account": t.from_account,
        "to_account": t.to_account,
        "amount": t.amount,
        "currency": t.currency,
        "reference": t.reference,
        "client_id": t.client_id,
        "created_at": jst(t.created_at),
    })
}

/// The subject's own account, else 404 `account_not_found`: another user's account is answered
/// exactly like one that does not exist, so account ids cannot be probed.
async fn own_account(state: &AppState, caller: &Caller, id: &str) -> Result<Account, ApiError> {
    state
        .store
        .account(id)
        .await?
        .filter(|a| a.user_id == caller.subject)
        .ok_or_else(|| ApiError::account_not_found("account_id"))
}

/// GET /accounts (口座一覧).
async fn list_accounts(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_any_scope(&["accounts"])?;
    let accounts = state.store.accounts_of(&caller.subject).await?;
    Ok(Json(json!({
        "accounts": accounts.iter().map(account_json).collect::<Vec<_>>(),
    })))
}

/// GET /accounts/{account_id} (口座情報).
async fn account_detail(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_any_scope(&["accounts"])?;
    let a = own_account(&state, &caller, &id).await?;
    Ok(Json(account_json(&a)))
}

/// GET /accounts/{account_id}/balances (残高照会).
async fn balances(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_any_scope(&["accounts"])?;
    let a = own_account(&state, &caller, &id).await?;
    Ok(Json(json!({
        "account_id": a.account_id,
        "currency": a.currency,
        "balance": a.balance,
        "available_balance": a.balance,
        "as_of": jst(now()),
    })))
}

#[derive(Deserialize)]
struct TransactionsQuery {
    limit: Option<String>,
}

/// GET /accounts/{account_id}/transactions?limit=N (入出金明細), newest first.
async fn transactions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<TransactionsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_any_scope(&["accounts"])?;
    let bad_limit = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("limit must be an integer from 1 to {MAX_LIMIT}"),
        )
    };
    let limit = match query.map_err(|_| bad_limit())?.0.limit {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(bad_limit)?,
    };
    let a = own_account(&state, &caller, &id).await?;
    let list = state.store.transactions(&a.account_id, limit).await?;
    Ok(Json(json!({
        "account_id": a.account_id,
        "currency": a.currency,
        "transactions": list.iter().map(transaction_json).collect::<Vec<_>>(),
    })))
}

/// The POST /transfers body as sent; unknown fields are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    from_account: String,
    to_account: String,
    amount: i64,
    /// ISO 4217 code; optional, and only `JPY` (the only currency of this bank's accounts). A client
    /// whose token carries an RFC 9396 `payment_initiation` detail sends the detail's
    /// `instructedAmount.currency` here so the plugin can compare it.
    /// Absent is JPY; `null` is refused like any other non-string.
    #[serde(default, deserialize_with = "present_string")]
    currency: Option<String>,
    #[serde(default)]
    reference: String,
}

/// A field that, when present, must be a string (`null` included in what is refused).
fn present_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// The one currency POST /transfers accepts.
const TRANSFER_CURRENCY: &str = "JPY";

fn bad_request(code: &'static str, description: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, description)
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return Err(bad_request(
            "idempotency_key_missing",
            "exactly one Idempotency-Key header is required",
        ));
    };
    let key = v.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        ));
    }
    Ok(key.to_string())
}

fn parse_transfer(body: &[u8]) -> Result<TransferRequest, ApiError> {
    let b: TransferBody =
        serde_json::from_slice(body).map_err(|e| bad_request("invalid_request", format!("body: {e}")))?;
    if b.amount <= 0 {
        return Err(bad_request(
            "invalid_amount",
            "amount must be a positive integer number of yen",
        ));
    }
    if let Some(c) = b.currency.as_deref().filter(|c| *c != TRANSFER_CURRENCY) {
        return Err(bad_request(
            "unsupported_currency",
            format!(
                "currency {:?} is not supported: transfers are in {TRANSFER_CURRENCY} only",
                c.chars().take(8).collect::<String>()
            ),
        ));
    }
    if b.from_account.is_empty() || b.to_account.is_empty() {
        return Err(bad_request(
            "invalid_request",
            "from_account and to_account are required",
        ));
    }
    if b.reference.chars().count() > MAX_REFERENCE_CHARS || b.reference.chars().any(char::is_control) {
        return Err(bad_request(
            "invalid_request",
            format!("reference: at most {MAX_REFERENCE_CHARS} characters, no control characters"),
        ));
    }
    Ok(TransferRequest {
        from_account: b.from_account,
        to_account: b.to_account,
        amount: b.amount,
        reference: b.reference,
    })
}

/// POST /transfers (振込依頼): needs scope `payments` (checked again here) and an Idempotency-Key.
async fn create_transfer(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Extension(InteractionId(interaction_id)): Extension<InteractionId>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require_any_scope(&["payments"])?;
    let key = idempotency_key(&headers)?;
    let request = parse_transfer(&body)?;
    let who = Initiator {
        user_id: caller.subject.clone(),
        client_id: caller.client_id.clone(),
        acr: caller.acr.clone(),
        binding: caller.binding.clone(),
        interaction_id,
    };
    let outcome = state
        .store
        .transfer(&who, &key, &request, now())
        .await
        .map_err(|e| match e {
            TransferError::KeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            ),
            TransferError::FromNotFound => ApiError::account_not_found("from_account"),
            TransferError::ToNotFound => ApiError::account_not_found("to_account"),
            TransferError::SameAccount => {
                bad_request("same_account", "from_account and to_account must differ")
            }
            TransferError::CurrencyMismatch => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "currency_mismatch",
                "the accounts hold different currencies",
            ),
            TransferError::InsufficientFunds { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "insufficient_funds",
                "the balance of from_account does not cover the amount",
            ),
            TransferError::Db(e) => ApiError::internal(e),
        })?;
    let (t, replayed) = match outcome {
        TransferOutcome::Created(t) => (t, false),
        TransferOutcome::Replayed(t) => (t, true),
    };
    if !replayed {
        tracing::info!(
            transfer_id = %t.transfer_id, user = %t.user_id, client = %t.client_id,
            from = %t.from_account, to = %t.to_account, amount = t.amount,
            interaction_id = %who.interaction_id, "transfer completed"
        );
    }
    let location = HeaderValue::from_str(&format!("/transfers/{}", t.transfer_id))
        .unwrap_or(HeaderValue::from_static("/transfers"));
    let mut resp = (StatusCode::CREATED, Json(transfer_json(&t))).into_response();
    resp.headers_mut().insert(axum::http::header::LOCATION, location);
    if replayed {
        resp.headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// GET /transfers/{transfer_id} (振込状況照会): scope `payments` or `accounts`; only the transfer's
/// initiator sees it (another user's transfer is 404, like an unknown one).
async fn transfer_status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_any_scope(&["payments", "accounts"])?;
    let t = state
        .store
        .transfer_by_id(&id)
        .await?
        .filter(|t| t.user_id == caller.subject)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "transfer_not_found", "no such transfer"))?;
    Ok(Json(transfer_json(&t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jst_formats_in_japan_time() {
        assert_eq!(jst(0), "1970-01-01T09:00:00+09:00");
        assert_eq!(jst(1_774_573_200), "2026-03-27T10:00:00+09:00");
        assert_eq!(jst(951_782_400), "2000-02-29T09:00:00+09:00");
        assert_eq!(jst(1_767_193_199), "2025-12-31T23:59:59+09:00");
        assert_eq!(jst(1_767_193_200), "2026-01-01T00:00:00+09:00");
    }

    #[test]
    fn uuid_is_version_4() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }
}
