//! The server's form parser: axum's `Form<Vec<(String, String)>>` extractor over a request body
//! (what every back-channel handler and the sign-in pages receive), then fapi-as's
//! `backchannel::support::params` (RFC 6749 §3.1: each parameter at most once, bounded in number and
//! length).
//!
//! Beyond "no panic": a refusal is `400 invalid_request`; accepted parameters respect the bounds and
//! agree with an independent urlencoded decoding; written back with the server's own `form_encode`,
//! they parse to the same map (round trip).
#![no_main]

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{header, Request, StatusCode};
use axum::Form;
use fapi_as::backchannel::support::{params, FormBody};
use fapi_as::frontchannel::form_encode;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Polls a future that needs no I/O (the body is in memory) to completion.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn parse(body: Vec<u8>) -> Result<HashMap<String, String>, fapi_as::error::OAuthError> {
    let request = Request::builder()
        .method("POST")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request");
    let form: FormBody = ready(Form::<Vec<(String, String)>>::from_request(request, &()));
    params(form)
}

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    match parse(data.to_vec()) {
        Err(e) => {
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.error, "invalid_request");
        }
        Ok(map) => {
            assert!(map.len() <= 32);
            for (k, v) in &map {
                assert!(k.len() <= 64 && v.len() <= 16 * 1024);
            }
            let independent: Vec<(String, String)> =
                serde_urlencoded::from_bytes(data).expect("the server accepted it");
            assert_eq!(independent.len(), map.len(), "a duplicate got through");
            for (k, v) in &independent {
                assert_eq!(map.get(k), Some(v));
            }
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let written: Vec<String> = keys
                .iter()
                .map(|k| format!("{}={}", form_encode(k), form_encode(&map[*k])))
                .collect();
            let again = parse(written.join("&").into_bytes()).expect("written form parses");
            assert_eq!(again, map, "form round trip");
        }
    }
});
