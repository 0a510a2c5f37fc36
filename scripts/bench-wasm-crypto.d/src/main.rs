//! Verification cost through fapi-core's public API: ES256 (ring, and the `p256-tables` fast path when
//! built with `--features fast`), PS256, EdDSA; table build time and size. Median of 21 batches, µs/op.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use fapi_core::alg::Algorithm;
use fapi_core::jwk::verify_with;
use fapi_core::jwks::Jwks;
use fapi_core::sign::SigningKey;
use serde_json::json;
use std::time::Instant;

fn bench(name: &str, per_batch: usize, mut f: impl FnMut() -> bool) {
    for _ in 0..50 {
        assert!(f(), "{name}: verification failed");
    }
    let mut per_op: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                assert!(std::hint::black_box(f()));
            }
            t.elapsed().as_secs_f64() * 1e6 / per_batch as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    println!("{name:<44} median {:>8.1} µs/op  (min {:>8.1})", per_op[10], per_op[0]);
}

fn time_us(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e6
}

fn set_of(key: &SigningKey) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": [key.public_jwk()] })).unwrap()
}

fn main() {
    let target = if cfg!(target_arch = "wasm32") { "wasm32 (V8)" } else { "native" };
    let fast = cfg!(feature = "fast");
    println!("== fapi-core verify, {target}, p256-tables {}", if fast { "ON" } else { "off" });
    let msg: Vec<u8> = (0..900u32).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789-_."[(i % 39) as usize]).collect();
    let es = SigningKey::generate(Algorithm::ES256, Some("es".into())).unwrap();
    let es2 = SigningKey::generate(Algorithm::ES256, Some("es2".into())).unwrap();
    let ps = SigningKey::generate(Algorithm::PS256, Some("ps".into())).unwrap();
    let ed = SigningKey::generate(Algorithm::EdDSA, Some("ed".into())).unwrap();

    // Key-set parsing (where the tables are built). The first one also builds the generator's table.
    let (es_doc, es2_doc) = (set_of(&es), set_of(&es2));
    let mut es_set = None;
    let first = time_us(|| es_set = Some(Jwks::parse(&es_doc).unwrap()));
    let mut next: Vec<f64> = (0..11).map(|_| time_us(|| drop(Jwks::parse(&es2_doc).unwrap()))).collect();
    next.sort_by(f64::total_cmp);
    println!("Jwks::parse, 1 P-256 key, first in process   {first:>8.0} µs (JIT compilation, generator table)");
    println!("Jwks::parse, 1 P-256 key, then (median of 11) {:>7.0} µs (max {:.0})", next[5], next[10]);
    let es_set = es_set.unwrap();
    let es_key = &es_set.keys[0];
    #[cfg(feature = "fast")]
    println!(
        "P-256 table per key: {} bytes (generator table, once per process: {} bytes)",
        es_key.es256_tables().unwrap().table_bytes(),
        fapi_core::p256_tables::generator_table().bytes()
    );

    let es_sig = es.sign(&msg).unwrap();
    let ps_sig = ps.sign(&msg).unwrap();
    let ed_sig = ed.sign(&msg).unwrap();
    let ps_key = fapi_core::jwk::PublicJwk::from_value(ps.public_jwk()).unwrap();
    let ed_key = fapi_core::jwk::PublicJwk::from_value(ed.public_jwk()).unwrap();
    bench("ES256 PublicJwk::verify (key from Jwks)", 20, || es_key.verify(Algorithm::ES256, &msg, &es_sig));
    bench("ES256 jwk::verify_with (ring)", 20, || {
        verify_with(&es_key.material, Algorithm::ES256, &msg, &es_sig)
    });
    bench("PS256 PublicJwk::verify (2048, ring)", 20, || ps_key.verify(Algorithm::PS256, &msg, &ps_sig));
    bench("EdDSA PublicJwk::verify (ring)", 20, || ed_key.verify(Algorithm::EdDSA, &msg, &ed_sig));

    #[cfg(feature = "fast")]
    windows(&es, &msg, &es_sig);
}

/// Other window sizes through the generic API: table build time and size per key, verify time.
#[cfg(feature = "fast")]
fn windows(es: &SigningKey, msg: &[u8], sig: &[u8]) {
    use fapi_core::p256_tables::{verify_prehashed, FixedBaseTable, G_WINDOW, Q_WINDOW};
    let jwk = es.public_jwk();
    let point: Vec<u8> = [&[4u8][..], &fapi_core::b64::decode(jwk["x"].as_str().unwrap()).unwrap(),
        &fapi_core::b64::decode(jwk["y"].as_str().unwrap()).unwrap()].concat();
    let q = fapi_core::p256_tables::parse_public_point(&point).unwrap();
    let g_hex: String = G_SEC1.split_whitespace().collect();
    let g_bytes: Vec<u8> = (0..65).map(|i| u8::from_str_radix(&g_hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    let g = fapi_core::p256_tables::parse_public_point(&g_bytes).unwrap();
    println!("-- window sizes (G table shared per process, Q table per key); chosen: G {G_WINDOW}, Q {Q_WINDOW}");
    macro_rules! combo {
        ($wg:literal, $wq:literal) => {{
            let gt = FixedBaseTable::<$wg>::new(&g);
            let mut qt = None;
            let build = time_us(|| qt = Some(FixedBaseTable::<$wq>::new(&q)));
            let qt = qt.unwrap();
            bench(
                &format!("  G W={} Q W={}: Q {:>4} KB, build {:>6.0} µs", $wg, $wq, qt.bytes() / 1024, build),
                20,
                || verify_prehashed(&gt, &qt, &fapi_core::b64::sha256(msg), sig),
            );
        }};
    }
    combo!(4, 4);
    combo!(6, 6);
    combo!(8, 8);
    combo!(8, 4);
    combo!(8, 5);
    combo!(8, 6);
    combo!(8, 7);
    combo!(10, 6);
}

/// The P-256 base point G, uncompressed SEC1 (FIPS 186-4 §D.1.2.3).
#[cfg(feature = "fast")]
const G_SEC1: &str = "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\
                      4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";
