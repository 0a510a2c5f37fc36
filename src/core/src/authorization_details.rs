//! Payment-bound tokens at the resource server: the request body must be what the user consented to
//! in the token's RFC 9396 `authorization_details` (§9.1 carries them in a JWT access token).
//!
//! A rule names one authorization details `type` and binds fields of the request's JSON body (JSON
//! pointers, RFC 6901) to fields of a detail of that type. The request is admitted when one detail of
//! the type matches every binding; with `once`, each detail admits one request (a [`ReplayStore`]
//! keyed by the token's `jti` and the detail's position remembers it until the token expires).
//!
//! RFC 9396 §9 leaves it to the resource server to enforce what the authorization details grant;
//! FISC item 38 asks that an account is used only for the API connection its holder knows of.
//!
//! What this module does not check: the token's signature, binding and scope (the guard does that
//! first), and whether the detail is well-formed for its type (the authorization server validated it
//! when the client asked; here a missing field simply does not match).
//!
//! Values compare as JSON values, except that a number and a decimal string compare by their
//! decimal value (`5000`, `"5000"` and `"5000.0"` are the same amount: RFC 9396's
//! `payment_initiation` example writes amounts as strings, bank APIs often as numbers).

use crate::dpop::{Recorded, ReplayStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The largest body a rule may ask to buffer (1 MiB); a policy asking more does not load.
pub const MAX_BODY_LIMIT: usize = 1 << 20;

/// How far ahead (seconds) the plugin's shared store remembers a `once` use at least: a token whose
/// lifetime plus the issuer's `leeway_past` is longer may be refused (store full) rather than
/// remembered too briefly. The policy linter warns about issuers that allow such tokens.
pub const ONCE_HORIZON: u64 = 3600;

/// What a rule requires of the token's `authorization_details` and the request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailsRequirement {
    /// The authorization details `type` (RFC 9396 §2) a detail must have.
    #[serde(rename = "type")]
    pub detail_type: String,
    /// Body field (JSON pointer into the request body) → detail field (JSON pointer into the
    /// authorization detail). Every pair must hold.
    #[serde(default)]
    pub bind: BTreeMap<String, String>,
    /// Each detail admits one request.
    #[serde(default)]
    pub once: bool,
    /// The largest body read, in bytes (default 16 KiB); a larger one is refused (413). A mesh may
    /// deliver it as `4096.0`: whole numbers only.
    #[serde(
        default = "default_max_body",
        deserialize_with = "crate::policy::whole_number::exact"
    )]
    pub max_body: usize,
}

fn default_max_body() -> usize {
    16 * 1024
}

impl DetailsRequirement {
    /// The requirement's own problems, as (field, message), for the policy linter.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.detail_type.trim().is_empty() {
            out.push(("type".into(), "must name an authorization details type".into()));
        }
        if self.max_body == 0 || self.max_body > MAX_BODY_LIMIT {
            out.push((
                "max_body".into(),
                format!("must be between 1 and {MAX_BODY_LIMIT} bytes"),
            ));
        }
        if self.bind.is_empty() && !self.once {
            out.push((
                "bind".into(),
                "binds no body field and is not `once`: it would admit any body".into(),
            ));
        }
        for (body, detail) in &self.bind {
            for (side, pointer) in [("body", body), ("detail", detail)] {
                if !is_json_pointer(pointer) {
                    out.push((
                        format!("bind.{body}"),
                        format!("{side} field {pointer:?} is not a JSON pointer (RFC 6901: \"/a/b\")"),
                    ));
                }
            }
        }
        out
    }

    /// Whether the rule needs the request body (it binds body fields).
    pub fn needs_body(&self) -> bool {
        !self.bind.is_empty()
    }
}

/// Why a request is refused under a [`DetailsRequirement`]. Each maps to a [`crate::Denial`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailsRefusal {
    /// The token carries no `authorization_details` detail of the required type.
    NoDetail,
    /// The body is larger than the rule's `max_body`.
    BodyTooLarge,
    /// The body is not a JSON object.
    BodyNotJson,
    /// No detail of the type matches the body; `field` is the first body field that differed in the
    /// detail that came closest.
    Mismatch { field: String },
    /// The matching detail already admitted its one request (`once`).
    AlreadyUsed,
    /// The store of used details is full of live entries: refused rather than forgotten.
    StoreFull,
}

impl From<DetailsRefusal> for crate::denial::Denial {
    fn from(r: DetailsRefusal) -> Self {
        use crate::denial::Denial;
        match r {
            DetailsRefusal::NoDetail => Denial::AuthorizationDetailsMissing,
            DetailsRefusal::BodyTooLarge => Denial::BodyTooLarge,
            DetailsRefusal::BodyNotJson => Denial::BodyNotJson,
            DetailsRefusal::Mismatch { field } => Denial::AuthorizationDetailsMismatch(field),
            DetailsRefusal::AlreadyUsed => Denial::AuthorizationDetailsUsed,
            DetailsRefusal::StoreFull => Denial::AuthorizationDetailsStoreFull,
        }
    }
}

/// One binding compared: what the body holds and what the user consented to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldComparison {
    pub body_field: String,
    pub body_value: Option<Value>,
    pub detail_field: String,
    pub detail_value: Option<Value>,
    pub matches: bool,
}

/// How one detail of the required type compares with the body, field by field (for refusals and
/// for the policy studio).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetailComparison {
    /// Position in the token's `authorization_details` array.
    pub index: usize,
    pub fields: Vec<FieldComparison>,
}

impl DetailComparison {
    pub fn matches(&self) -> bool {
        self.fields.iter().all(|f| f.matches)
    }
}

/// The detail that admitted the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// Position in the token's `authorization_details` array.
    pub index: usize,
}

/// Compares the body with every detail of the required type. `details` is the token's
/// `authorization_details` claim (absent: no details); `body` the request body as received.
pub fn compare(
    rule: &DetailsRequirement,
    details: Option<&Value>,
    body: &[u8],
) -> Result<Vec<DetailComparison>, DetailsRefusal> {
    let of_type: Vec<(usize, &Value)> = details
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .enumerate()
                .filter(|(_, d)| d.get("type").and_then(Value::as_str) == Some(&rule.detail_type))
                .collect()
        })
        .unwrap_or_default();
    if of_type.is_empty() {
        return Err(DetailsRefusal::NoDetail);
    }
    if body.len() > rule.max_body {
        return Err(DetailsRefusal::BodyTooLarge);
    }
    let body: Value = if rule.needs_body() {
        match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Err(DetailsRefusal::BodyNotJson),
        }
    } else {
        Value::Null
    };
    Ok(of_type
        .into_iter()
        .map(|(index, detail)| DetailComparison {
            index,
            fields: rule
                .bind
                .iter()
                .map(|(body_field, detail_field)| {
                    let body_value = body.pointer(body_field).cloned();
                    let detail_value = detail.pointer(detail_field).cloned();
                    let matches = match (&body_value, &detail_value) {
                        (Some(b), Some(d)) => same_value(b, d),
                        _ => false,
                    };
                    FieldComparison {
                        body_field: body_field.clone(),
                        body_value,
                        detail_field: detail_field.clone(),
                        detail_value,
                        matches,
                    }
                })
                .collect(),
        })
        .collect())
}

/// Admits the request when a detail of the required type matches the body, and, for `once`, when
/// that detail has not admitted a request before. `jti` and `exp` are the token's: the use is
/// remembered until `exp` plus `leeway` (the longest the token can still be accepted).
pub fn admit(
    rule: &DetailsRequirement,
    details: Option<&Value>,
    body: &[u8],
    once: Option<OnceContext<'_>>,
) -> Result<Admitted, DetailsRefusal> {
    let compared = compare(rule, details, body)?;
    let Some(hit) = compared.iter().find(|c| c.matches()) else {
        // The detail with the most matching fields names the field that broke it.
        let closest = compared
            .iter()
            .max_by_key(|c| c.fields.iter().filter(|f| f.matches).count());
        let field = closest
            .and_then(|c| c.fields.iter().find(|f| !f.matches))
            .map(|f| f.body_field.clone())
            .unwrap_or_default();
        return Err(DetailsRefusal::Mismatch { field });
    };
    if rule.once {
        let Some(ctx) = once else {
            // `once` without a jti or a store cannot be enforced: refuse rather than admit twice.
            return Err(DetailsRefusal::StoreFull);
        };
        let key = once_key(ctx.jti, &rule.detail_type, hit.index);
        match ctx
            .store
            .record_use(ctx.client, &key, ctx.remember_until, ctx.now)
        {
            Recorded::Fresh => {}
            Recorded::Replayed => return Err(DetailsRefusal::AlreadyUsed),
            Recorded::Full => return Err(DetailsRefusal::StoreFull),
        }
    }
    Ok(Admitted { index: hit.index })
}

/// What `once` needs: the token's `jti`, the client (one client may hold only its share of the
/// store), how long to remember, the time, and the shared store.
pub struct OnceContext<'a> {
    pub jti: &'a str,
    pub client: &'a str,
    pub remember_until: i64,
    pub now: i64,
    pub store: &'a mut dyn ReplayStore,
}

/// The store key of one detail of one token: SHA-256 over a label, the `jti`, the type and the
/// position, each length-prefixed so no two inputs collide.
pub fn once_key(jti: &str, detail_type: &str, index: usize) -> [u8; 32] {
    let mut input = Vec::with_capacity(32 + jti.len() + detail_type.len());
    input.extend_from_slice(b"fapi-guard authorization_details once\0");
    for part in [jti.as_bytes(), detail_type.as_bytes()] {
        input.extend_from_slice(&(part.len() as u64).to_be_bytes());
        input.extend_from_slice(part);
    }
    input.extend_from_slice(&(index as u64).to_be_bytes());
    crate::b64::sha256(&input)
}

/// RFC 6901: empty (the whole document) or `/`-separated reference tokens with `~0`/`~1` escapes.
fn is_json_pointer(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    if !p.starts_with('/') {
        return false;
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}

/// JSON equality, except that numbers and decimal strings compare by decimal value.
fn same_value(a: &Value, b: &Value) -> bool {
    match (decimal(a), decimal(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A number or a plain decimal string (`-?digits(.digits)?`) in canonical form: no sign on zero,
/// no leading zeros, no trailing fractional zeros. Exponents and other notations are not amounts.
fn decimal(v: &Value) -> Option<String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || (digits.contains('.') && frac.is_empty()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let zero = int == "0" && frac.is_empty();
    let mut out = String::new();
    if negative && !zero {
        out.push('-');
    }
    out.push_str(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::MemoryReplayStore;
    use serde_json::json;

    fn rule(once: bool) -> DetailsRequirement {
        DetailsRequirement {
            detail_type: "payment_initiation".into(),
            bind: [
                ("/amount", "/instructedAmount/amount"),
                ("/to_account", "/creditorAccount/accountId"),
                ("/from_account", "/debtorAccount/accountId"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            once,
            max_body: 1024,
        }
    }

    fn details() -> Value {
        json!([
            {"type": "account_information", "actions": ["read"]},
            {"type": "payment_initiation",
             "instructedAmount": {"currency": "JPY", "amount": "5000"},
             "creditorName": "Hanako", "creditorAccount": {"accountId": "hanako-1"},
             "debtorAccount": {"accountId": "taro-1"}}
        ])
    }

    fn body(amount: Value, to: &str, from: &str) -> Vec<u8> {
        json!({"amount": amount, "to_account": to, "from_account": from, "reference": "x"})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn the_consented_transfer_is_admitted() {
        let d = details();
        let got = admit(
            &rule(false),
            Some(&d),
            &body(json!(5000), "hanako-1", "taro-1"),
            None,
        );
        assert_eq!(got, Ok(Admitted { index: 1 }));
    }

    #[test]
    fn each_bound_field_must_match() {
        let d = details();
        let cases = [
            (body(json!(500000), "hanako-1", "taro-1"), "/amount"),
            (body(json!(5000), "mallory-1", "taro-1"), "/to_account"),
            (body(json!(5000), "hanako-1", "taro-2"), "/from_account"),
            (body(json!("5000x"), "hanako-1", "taro-1"), "/amount"),
        ];
        for (b, field) in cases {
            assert_eq!(
                admit(&rule(false), Some(&d), &b, None),
                Err(DetailsRefusal::Mismatch { field: field.into() }),
                "{}",
                String::from_utf8_lossy(&b)
            );
        }
        // A field missing from the body does not match either.
        let no_from = json!({"amount": 5000, "to_account": "hanako-1"}).to_string();
        assert_eq!(
            admit(&rule(false), Some(&d), no_from.as_bytes(), None),
            Err(DetailsRefusal::Mismatch {
                field: "/from_account".into()
            })
        );
    }

    #[test]
    fn no_detail_of_the_type_bad_bodies_and_size() {
        let b = body(json!(5000), "hanako-1", "taro-1");
        assert_eq!(admit(&rule(false), None, &b, None), Err(DetailsRefusal::NoDetail));
        let other = json!([{"type": "account_information"}]);
        assert_eq!(
            admit(&rule(false), Some(&other), &b, None),
            Err(DetailsRefusal::NoDetail)
        );
        let not_array = json!({"type": "payment_initiation"});
        assert_eq!(
            admit(&rule(false), Some(&not_array), &b, None),
            Err(DetailsRefusal::NoDetail)
        );
        let d = details();
        for bad in [&b"not json"[..], b"[1,2]", b"\"5000\"", b"{\"amount\": 5000", b""] {
            assert_eq!(
                admit(&rule(false), Some(&d), bad, None),
                Err(DetailsRefusal::BodyNotJson)
            );
        }
        let mut small = rule(false);
        small.max_body = b.len() - 1;
        assert_eq!(
            admit(&small, Some(&d), &b, None),
            Err(DetailsRefusal::BodyTooLarge)
        );
        small.max_body = b.len();
        assert!(admit(&small, Some(&d), &b, None).is_ok());
    }

    #[test]
    fn once_admits_one_request_per_detail() {
        let d = details();
        let b = body(json!("5000.00"), "hanako-1", "taro-1");
        let mut store = MemoryReplayStore::new(16);
        let mut try_once = |jti: &str, now: i64| {
            admit(
                &rule(true),
                Some(&d),
                &b,
                Some(OnceContext {
                    jti,
                    client: "c",
                    remember_until: 1_000,
                    now,
                    store: &mut store,
                }),
            )
        };
        assert_eq!(try_once("jti-1", 10), Ok(Admitted { index: 1 }));
        assert_eq!(try_once("jti-1", 11), Err(DetailsRefusal::AlreadyUsed));
        // Another token's detail is its own consent.
        assert_eq!(try_once("jti-2", 12), Ok(Admitted { index: 1 }));
        // `once` without a store is refused, never admitted twice.
        assert_eq!(
            admit(&rule(true), Some(&d), &b, None),
            Err(DetailsRefusal::StoreFull)
        );
        // A full store refuses.
        let mut full = MemoryReplayStore::new(0);
        let ctx = OnceContext {
            jti: "jti-3",
            client: "c",
            remember_until: 1_000,
            now: 1,
            store: &mut full,
        };
        assert_eq!(
            admit(&rule(true), Some(&d), &b, Some(ctx)),
            Err(DetailsRefusal::StoreFull)
        );
    }

    #[test]
    fn a_mismatch_never_consumes_the_consent() {
        let d = details();
        let mut store = MemoryReplayStore::new(16);
        let wrong = body(json!(500000), "hanako-1", "taro-1");
        let ctx = OnceContext {
            jti: "j",
            client: "c",
            remember_until: 100,
            now: 1,
            store: &mut store,
        };
        assert!(matches!(
            admit(&rule(true), Some(&d), &wrong, Some(ctx)),
            Err(DetailsRefusal::Mismatch { .. })
        ));
        let right = body(json!(5000), "hanako-1", "taro-1");
        let ctx = OnceContext {
            jti: "j",
            client: "c",
            remember_until: 100,
            now: 2,
            store: &mut store,
        };
        assert!(admit(&rule(true), Some(&d), &right, Some(ctx)).is_ok());
    }

    #[test]
    fn decimals_compare_by_value_only() {
        let same = [
            ("5000", json!(5000)),
            ("5000.0", json!(5000)),
            ("05000", json!("5000")),
            ("0.50", json!("0.5")),
            ("-0", json!(0)),
        ];
        for (s, v) in same {
            assert!(same_value(&json!(s), &v), "{s} vs {v}");
        }
        let differ = [
            ("5000", json!(5001)),
            ("5e3", json!(5000)),
            ("5000.", json!(5000)),
            (".5", json!("0.5")),
            ("", json!(0)),
            ("+5", json!(5)),
        ];
        for (s, v) in differ {
            assert!(!same_value(&json!(s), &v), "{s} vs {v}");
        }
        // Non-numbers compare as JSON.
        assert!(same_value(&json!("hanako-1"), &json!("hanako-1")));
        assert!(!same_value(&json!(true), &json!("true")));
    }

    #[test]
    fn once_keys_do_not_collide() {
        assert_ne!(once_key("ab", "c", 0), once_key("a", "bc", 0));
        assert_ne!(once_key("a", "b", 0), once_key("a", "b", 1));
        assert_eq!(once_key("a", "b", 1), once_key("a", "b", 1));
    }

    #[test]
    fn lint_problems() {
        assert!(rule(true).problems().is_empty());
        let mut r = rule(false);
        r.bind.insert("amount".into(), "/x~2".into());
        r.max_body = 0;
        let fields: Vec<String> = r.problems().into_iter().map(|(f, _)| f).collect();
        assert!(fields.contains(&"max_body".to_string()), "{fields:?}");
        assert_eq!(
            fields.iter().filter(|f| *f == "bind.amount").count(),
            2,
            "{fields:?}"
        );
        let empty = DetailsRequirement {
            bind: BTreeMap::new(),
            once: false,
            ..rule(false)
        };
        assert_eq!(empty.problems()[0].0, "bind");
    }
}
