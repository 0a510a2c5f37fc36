//! `POST /consent`: the person approves or denies the client's request; approval creates the grant and
//! a single-use code (at most 60 s, FAPI 2.0 §5.3.2.1) and answers the client ([`super::authorize`]).

use super::authorize::{
    achieved_level, finish_flow, redirect_error, required_level, response_location, too_old, Flow,
};
use super::pages::Msg;
use super::posted::Posted;
use super::see_other;
use super::signin::field;
use crate::app::{Shared, ACR_PASSWORD};
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
    if achieved_level(&sess.amr) < Some(required_level(peeked.acr_values.as_deref()))
        || too_old(Some(auth_time), peeked.max_age, t)
    {
        return Ok(see_other("/login", &[]));
    }
    let approve = match field(&form, "decision", 16) {
        Some("approve") => true,
        Some("deny") => false,
        _ => return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::BadRequest)),
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
    s.store.put_grant(&grant).await?;
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
