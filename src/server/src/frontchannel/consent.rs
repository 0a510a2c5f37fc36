//! `POST /consent`: the person approves or denies the client's request; approval creates the grant and
//! a single-use code (at most 60 s, FAPI 2.0 §5.3.2.1) and answers the client ([`super::authorize`]).
//!
//! A request with transfers (RFC 9396 `payment_initiation` details) is approved only with a
//! `debtor_account` that is one of the signed-in user's own accounts: without one, or with another,
//! the consent page comes back (400) with the error, the flow stays open and nothing is granted.
//! The grant stores the details enriched with that account (RFC 9396 §7,
//! [`crate::authorization_details::enrich`]); the token endpoint reads them from there.

use super::authorize::{
    achieved_level, finish_flow, redirect_error, request_level, response_location, too_old, Flow,
};
use super::html;
use super::pages::Msg;
use super::posted::Posted;
use super::see_other;
use super::signin::{consent_page, field, ConsentView};
use crate::app::{Shared, ACR_PASSWORD};
use crate::authorization_details::{enrich, needs_debtor};
use crate::error::{PageError, PageResult};
use crate::model::{CodeRecord, CODE};
use crate::store::Grant;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
/// `POST /consent`: Approve or Deny.
pub async fn consent(State(s): State<Shared>, posted: Posted) -> PageResult<Response> {
    let Posted {
        key,
        mut sess,
        flow,
        lang,
        form,
    } = posted;
    let Flow::Authorize(peeked, client) = flow else {
        return Ok(see_other("/apps", &[]));
    };
    let t = s.clock.now();
    let (Some(user_id), Some(auth_time)) = (sess.user_id.clone(), sess.auth_time) else {
        return Ok(see_other("/login", &[]));
    };
    if achieved_level(&sess.amr) < Some(request_level(&peeked)) || too_old(Some(auth_time), peeked.max_age, t)
    {
        return Ok(see_other("/login", &[]));
    }
    let approve = match field(&form, "decision", 16) {
        Some("approve") => true,
        Some("deny") => false,
        _ => return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::BadRequest)),
    };
    // RFC 9396 §7: the user chooses the account each transfer is paid from, among their own.
    let asked = peeked.authorization_details.clone().unwrap_or_default();
    let debtor = if approve && needs_debtor(&asked) {
        let chosen = field(&form, "debtor_account", 64);
        let accounts = s.store.accounts_of(&user_id).await?;
        match chosen {
            Some(id) if accounts.iter().any(|a| a.account_id == id) => Some(id.to_string()),
            _ => {
                s.metrics.count("consent", "debtor_refused");
                let msg = if chosen.is_none() {
                    Msg::DebtorAccountMissing
                } else {
                    Msg::DebtorAccountNotYours
                };
                let Some(user) = s.store.user(&user_id).await? else {
                    return Ok(see_other("/login", &[]));
                };
                let page = consent_page(
                    &s,
                    lang,
                    &ConsentView {
                        csrf: &sess.csrf,
                        client: &client,
                        request: &peeked,
                        user: &user,
                        notice: None,
                        error: Some(&msg.text(lang)),
                        chosen: None,
                    },
                )
                .await?;
                return Ok(html(StatusCode::BAD_REQUEST, page, &[]));
            }
        }
    } else {
        None
    };
    // Drawn before the flow is answered or anything stored (src/random.rs).
    let (grant_id, code) = (s.random.token(16)?, s.random.token(32)?);
    // One answer per authorization request, atomic across instances.
    let Some(p) = finish_flow(&s, &key, &mut sess).await? else {
        return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::RequestExpired));
    };
    if !approve {
        s.metrics.count("consent", "deny");
        return redirect_error(&s, &client, &p, "access_denied", "the user denied the request");
    }
    let grant = Grant {
        grant_id,
        client_id: p.client_id.clone(),
        user_id: user_id.clone(),
        scope: p.scope.clone(),
        created_at: t,
        last_used_at: t,
        revoked: false,
    };
    match (&p.authorization_details, &debtor) {
        (Some(asked), Some(debtor)) => {
            s.store
                .put_grant_with_details(&grant, &enrich(asked, debtor))
                .await?
        }
        // Details without a transfer: none exist yet (SUPPORTED_TYPES), stored as asked.
        (Some(asked), None) if !needs_debtor(asked) => s.store.put_grant_with_details(&grant, asked).await?,
        (Some(_), None) => {
            // The request changed between the check above and the answer: never grant a transfer
            // without its debtor account.
            return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::BadRequest));
        }
        (None, _) => s.store.put_grant(&grant).await?,
    }
    let record = CodeRecord {
        client_id: p.client_id.clone(),
        user_id,
        redirect_uri: p.redirect_uri.clone(),
        scope: p.scope.clone(),
        nonce: p.nonce.clone(),
        code_challenge: p.code_challenge.clone(),
        dpop_jkt: p.dpop_jkt.clone(),
        acr: sess.acr.clone().unwrap_or_else(|| ACR_PASSWORD.into()),
        amr: sess.amr.clone(),
        auth_time,
        grant_id: grant.grant_id.clone(),
        state: p.state.clone(),
    };
    let lifetime = s.config.tokens.code_lifetime.clamp(1, 60) as i64;
    s.store
        .put_item(CODE, &fapi_core::b64::sha256_b64(&code), &record, t + lifetime)
        .await?;
    s.metrics.count("consent", "approve");
    tracing::info!(client_id = %p.client_id, grant_id = %grant.grant_id, "consent given, code issued");
    let loc = response_location(
        &s.config.issuer,
        &s.keys.get().current,
        &client,
        &p,
        &[("code", &code)],
        t,
    )?;
    Ok(see_other(&loc, &[]))
}
