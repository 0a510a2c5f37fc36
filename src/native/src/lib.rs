//! fapi-guard as a native Envoy dynamic module (work in progress).
