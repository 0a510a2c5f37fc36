//! Key rotation without a restart: `fapi-as rotate-keys` writes the key folder, SIGHUP makes the
//! running server load it (issue 10: the prepared key set is swapped on rotation). The real binary
//! over real TLS: /jwks publishes the new current key first and keeps the retired one, and a folder
//! that does not load leaves the server serving the keys it had.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_e2e::client::Req;
use fapi_e2e::fapi_as::{AsOptions, AuthServer};
use fapi_e2e::pki::TestPki;
use fapi_e2e::util::{wait_until, ScratchDir};
use std::time::Duration;

fn kids(srv: &AuthServer) -> Result<Vec<String>, String> {
    let r = srv
        .client()
        .map_err(|e| e.to_string())?
        .send(&Req::get("/jwks"))
        .map_err(|e| e.to_string())?;
    let v = r.json().map_err(|e| e.to_string())?;
    Ok(v["keys"]
        .as_array()
        .map(|ks| {
            ks.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

#[test]
fn sighup_loads_the_rotated_key_folder() {
    let dir = ScratchDir::new("key-reload").unwrap();
    let pki = TestPki::generate(dir.path(), &[]).unwrap();
    let mut srv = AuthServer::configure(dir.path(), &pki, &AsOptions::default()).unwrap();
    srv.start(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let before = kids(&srv).unwrap();
    assert_eq!(before.len(), 1, "{before:?}");
    let old = before[0].clone();

    srv.rotate_keys().unwrap();
    // Not yet loaded: the running server still publishes what it started with.
    assert_eq!(kids(&srv).unwrap(), before);
    srv.reload_keys().unwrap();
    let after = wait_until(Duration::from_secs(10), "/jwks after SIGHUP", || {
        match kids(&srv) {
            Ok(k) if k.len() == 3 => Ok(Some(k)),
            Ok(k) => Err(format!("{k:?}")),
            Err(e) => Err(e),
        }
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", srv.log()));
    assert_ne!(
        after[0], old,
        "the promoted key is the current one (listed first): {after:?}"
    );
    assert!(
        after.contains(&old),
        "the retired key is still published: {after:?}"
    );

    // A key folder that does not load: the server keeps its keys and says so in its log.
    std::fs::write(dir.path().join("keys/current.jwk.json"), "not a key").unwrap();
    srv.reload_keys().unwrap();
    wait_until(Duration::from_secs(10), "the reload error in the log", || {
        if srv.log().contains("keys unchanged") {
            Ok(Some(()))
        } else {
            Err("no log line yet".to_string())
        }
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", srv.log()));
    assert_eq!(kids(&srv).unwrap(), after);
    let _ = srv.stop();
}
