//! Policies in their YAML authoring form: `fapi_core::yaml::load` (the loader with positions, behind
//! the `yaml` feature: fapictl and the policy studio), then `Policy::from_value`, as fapictl does.
//!
//! Beyond "no panic": every problem path is looked up in the source map; a policy read from YAML reads
//! the same from the JSON text of the loaded value (YAML and JSON give one policy); its compiled
//! form round-trips stably.
#![no_main]

use fapi_core::policy::{Policy, Severity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (value, map) = match fapi_core::yaml::load(text) {
        Ok(v) => v,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if let Some(p) = e.position {
                assert!(p.line >= 1 && p.column >= 1, "position {p:?}");
            }
            return;
        }
    };
    let json = value.to_string();
    match Policy::from_value(value) {
        Err(problems) => {
            assert!(problems.iter().any(|p| p.severity == Severity::Error));
            for p in &problems {
                let _ = map.position(&p.path);
            }
            assert!(Policy::from_json(&json).is_err(), "YAML refused, its JSON accepted");
        }
        Ok((policy, warnings)) => {
            for p in &warnings {
                let _ = map.position(&p.path);
            }
            let compiled = policy.compiled_json();
            let via_json = match Policy::from_json(&json) {
                Ok((p, _)) => p,
                Err(problems) => panic!("YAML accepted, its JSON refused: {problems:?}"),
            };
            assert_eq!(via_json.compiled_json(), compiled, "YAML and JSON give different policies");
            let again = match Policy::from_json(&compiled) {
                Ok((p, _)) => p,
                Err(problems) => panic!("compiled policy does not read again: {problems:?}\n{compiled}"),
            };
            assert_eq!(again.compiled_json(), compiled, "compile round trip is not stable");
        }
    }
});
