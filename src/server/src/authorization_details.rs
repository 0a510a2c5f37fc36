//! RFC 9396 Rich Authorization Requests at the authorization server: the one type the demo bank
//! supports, a transfer modelled on RFC 9396's `payment_initiation` example (§2, figure 1; see
//! docs/authorization-details.md), how a client's request is checked (§5:
//! `invalid_authorization_details`), and the enrichment at consent (§7: the user picks the debtor
//! account).
//!
//! A request's detail, as the client sends it (JPY only, a positive whole amount, as a string or a
//! number):
//!
//! ```json
//! {"type": "payment_initiation",
//!  "instructedAmount": {"currency": "JPY", "amount": "5000"},
//!  "creditorName": "Hanako Yamada", "creditorAccount": {"accountId": "hanako-1"},
//!  "remittanceInformationUnstructured": "dinner"}
//! ```
//!
//! The debtor account is never the client's to choose: a `debtorAccount` in the request is refused;
//! the consent page makes the user choose one of their own accounts and [`enrich`] adds it.

use serde_json::{Map, Value};

/// The transfer type (RFC 9396 §2 `type`).
pub const PAYMENT_INITIATION: &str = "payment_initiation";

/// Every type this server supports (`authorization_details_types_supported`, §10).
pub const SUPPORTED_TYPES: &[&str] = &[PAYMENT_INITIATION];

/// At most this many details in one request, and this much JSON text.
pub const MAX_DETAILS: usize = 8;
pub const MAX_JSON_BYTES: usize = 8 * 1024;

/// The largest amount one transfer may carry (yen).
pub const MAX_AMOUNT_JPY: u64 = 1_000_000_000;

/// Longest names and remittance texts (ISO 20022 `Max140Text`).
const MAX_TEXT: usize = 140;
const MAX_ACCOUNT_ID: usize = 64;

/// Why a request's `authorization_details` is refused; the text is the `error_description` of an
/// `invalid_authorization_details` error (RFC 9396 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDetails(pub String);

impl std::fmt::Display for InvalidDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(msg: impl Into<String>) -> InvalidDetails {
    InvalidDetails(msg.into())
}

/// Checks the `authorization_details` parameter (JSON text, from PAR's form or a request object's
/// claim as text) for a client allowed `allowed` types, and returns the details in canonical form
/// (amount as a decimal string). An empty array is refused: leave the parameter out instead.
pub fn parse_request(json_text: &str, allowed: &[String]) -> Result<Vec<Value>, InvalidDetails> {
    if json_text.len() > MAX_JSON_BYTES {
        return Err(invalid(format!("longer than {MAX_JSON_BYTES} bytes")));
    }
    let value: Value = serde_json::from_str(json_text).map_err(|_| invalid("not a JSON array of objects"))?;
    check_request(&value, allowed)
}

/// Like [`parse_request`] for a value already parsed (a request object's claim, RFC 9396 §3 with
/// RFC 9101).
pub fn check_request(value: &Value, allowed: &[String]) -> Result<Vec<Value>, InvalidDetails> {
    let Value::Array(items) = value else {
        return Err(invalid("authorization_details must be a JSON array"));
    };
    if items.is_empty() {
        return Err(invalid("authorization_details is empty"));
    }
    if items.len() > MAX_DETAILS {
        return Err(invalid(format!("more than {MAX_DETAILS} authorization details")));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| check_detail(item, allowed).map_err(|e| invalid(format!("[{i}]: {}", e.0))))
        .collect()
}

fn check_detail(item: &Value, allowed: &[String]) -> Result<Value, InvalidDetails> {
    let Value::Object(fields) = item else {
        return Err(invalid("not a JSON object"));
    };
    let Some(detail_type) = fields.get("type").and_then(Value::as_str) else {
        return Err(invalid("type is missing or not a string"));
    };
    if !SUPPORTED_TYPES.contains(&detail_type) {
        return Err(invalid(format!("unknown type {:?}", clip(detail_type))));
    }
    if !allowed.iter().any(|t| t == detail_type) {
        return Err(invalid(format!(
            "type {detail_type:?} is not allowed for this client (authorization_details_types)"
        )));
    }
    check_transfer(fields)
}

/// The `payment_initiation` fields: every one named, nothing else.
fn check_transfer(fields: &Map<String, Value>) -> Result<Value, InvalidDetails> {
    const KNOWN: &[&str] = &[
        "type",
        "instructedAmount",
        "creditorName",
        "creditorAccount",
        "remittanceInformationUnstructured",
    ];
    if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(if unknown == "debtorAccount" {
            invalid("debtorAccount is chosen by the user at consent, not by the client")
        } else {
            invalid(format!("unknown field {:?}", clip(unknown)))
        });
    }
    let amount = object(fields, "instructedAmount", &["currency", "amount"])?;
    match amount.get("currency").and_then(Value::as_str) {
        Some("JPY") => {}
        Some(other) => {
            return Err(invalid(format!(
                "currency {:?} is not supported (JPY only)",
                clip(other)
            )))
        }
        None => return Err(invalid("instructedAmount.currency is missing or not a string")),
    }
    let yen = jpy_amount(amount.get("amount"))?;
    let creditor_name = text(fields, "creditorName", true)?;
    let account = object(fields, "creditorAccount", &["accountId"])?;
    let account_id = account_id(account.get("accountId"), "creditorAccount.accountId")?;
    let remittance = text(fields, "remittanceInformationUnstructured", false)?;
    let mut out = Map::new();
    out.insert("type".into(), PAYMENT_INITIATION.into());
    out.insert(
        "instructedAmount".into(),
        serde_json::json!({"currency": "JPY", "amount": yen.to_string()}),
    );
    out.insert("creditorName".into(), creditor_name.into());
    out.insert(
        "creditorAccount".into(),
        serde_json::json!({"accountId": account_id}),
    );
    if !remittance.is_empty() {
        out.insert("remittanceInformationUnstructured".into(), remittance.into());
    }
    Ok(Value::Object(out))
}

/// A positive whole number of yen, as a JSON integer or a string of digits (no sign, no decimals:
/// the yen has no minor unit).
fn jpy_amount(v: Option<&Value>) -> Result<u64, InvalidDetails> {
    let digits = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(Value::Number(_)) => {
            return Err(invalid("instructedAmount.amount must be a whole number of yen"))
        }
        _ => return Err(invalid("instructedAmount.amount is missing")),
    };
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "instructedAmount.amount must be a positive whole number of yen",
        ));
    }
    match digits.parse::<u64>() {
        Ok(0) | Err(_) => Err(invalid(
            "instructedAmount.amount must be a positive whole number of yen",
        )),
        Ok(n) if n > MAX_AMOUNT_JPY => Err(invalid(format!(
            "instructedAmount.amount is over {MAX_AMOUNT_JPY}"
        ))),
        Ok(n) => Ok(n),
    }
}

fn object<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
    known: &[&str],
) -> Result<&'a Map<String, Value>, InvalidDetails> {
    let Some(Value::Object(o)) = fields.get(name) else {
        return Err(invalid(format!("{name} is missing or not an object")));
    };
    if let Some(unknown) = o.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(invalid(format!("unknown field {name}.{}", clip(unknown))));
    }
    Ok(o)
}

fn text(fields: &Map<String, Value>, name: &str, required: bool) -> Result<String, InvalidDetails> {
    match fields.get(name) {
        None if !required => Ok(String::new()),
        Some(Value::String(s))
            if !s.trim().is_empty() && s.chars().count() <= MAX_TEXT && !s.chars().any(char::is_control) =>
        {
            Ok(s.trim().to_string())
        }
        _ => Err(invalid(format!(
            "{name} must be text of 1 to {MAX_TEXT} characters"
        ))),
    }
}

fn account_id(v: Option<&Value>, name: &str) -> Result<String, InvalidDetails> {
    match v.and_then(Value::as_str) {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_ACCOUNT_ID
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(id.to_string())
        }
        _ => Err(invalid(format!(
            "{name} must be an account id (letters, digits, - and _)"
        ))),
    }
}

/// At most 40 characters of attacker-chosen text in an error description.
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The details as granted: each transfer gets the debtor account the user chose (RFC 9396 §7: the
/// AS may enrich what it grants). `debtor` must be one of the user's accounts (the caller checks).
pub fn enrich(details: &[Value], debtor: &str) -> Vec<Value> {
    details
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if d.get("type").and_then(Value::as_str) == Some(PAYMENT_INITIATION) {
                if let Value::Object(fields) = &mut d {
                    fields.insert("debtorAccount".into(), serde_json::json!({"accountId": debtor}));
                }
            }
            d
        })
        .collect()
}

/// Whether any detail asks for a transfer (then the consent page asks for a debtor account).
pub fn needs_debtor(details: &[Value]) -> bool {
    details
        .iter()
        .any(|d| d.get("type").and_then(Value::as_str) == Some(PAYMENT_INITIATION))
}

/// One transfer as a person reads it on the consent and connected-apps pages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TransferSummary {
    /// `5,000`
    pub amount: String,
    pub currency: String,
    pub creditor_name: String,
    pub creditor_account: String,
    pub remittance: String,
    /// Set once granted.
    pub debtor_account: Option<String>,
}

/// The transfers among `details`, for display (details of other types are not shown here).
pub fn summaries(details: &[Value]) -> Vec<TransferSummary> {
    details
        .iter()
        .filter(|d| d.get("type").and_then(Value::as_str) == Some(PAYMENT_INITIATION))
        .map(|d| {
            let s = |p: &str| d.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
            TransferSummary {
                amount: group_thousands(&s("/instructedAmount/amount")),
                currency: s("/instructedAmount/currency"),
                creditor_name: s("/creditorName"),
                creditor_account: s("/creditorAccount/accountId"),
                remittance: s("/remittanceInformationUnstructured"),
                debtor_account: d
                    .pointer("/debtorAccount/accountId")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            }
        })
        .collect()
}

/// `5000` → `5,000`.
fn group_thousands(digits: &str) -> String {
    let n = digits.len();
    let mut out = String::with_capacity(n + n / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (n - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allowed() -> Vec<String> {
        vec![PAYMENT_INITIATION.to_string()]
    }

    fn transfer() -> Value {
        json!({"type": "payment_initiation",
               "instructedAmount": {"currency": "JPY", "amount": "5000"},
               "creditorName": "Hanako Yamada", "creditorAccount": {"accountId": "hanako-1"},
               "remittanceInformationUnstructured": "dinner"})
    }

    #[test]
    fn a_transfer_is_accepted_in_canonical_form() {
        let mut numeric = transfer();
        numeric["instructedAmount"]["amount"] = json!(5000);
        for t in [transfer(), numeric] {
            let got = check_request(&json!([t]), &allowed());
            assert_eq!(got, Ok(vec![transfer()]));
        }
        let text = json!([transfer()]).to_string();
        assert_eq!(parse_request(&text, &allowed()), Ok(vec![transfer()]));
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let with = |f: &dyn Fn(&mut Value)| {
            let mut t = transfer();
            f(&mut t);
            check_request(&json!([t]), &allowed())
                .err()
                .map(|e| e.0)
                .unwrap_or_default()
        };
        let cases: Vec<(String, &str)> = vec![
            (
                with(&|t| t["type"] = json!("account_information")),
                "unknown type",
            ),
            (with(&|t| t["amount"] = json!(1)), "unknown field \"amount\""),
            (
                with(&|t| t["debtorAccount"] = json!({"accountId": "taro-1"})),
                "debtorAccount is chosen by the user",
            ),
            (
                with(&|t| t["instructedAmount"]["amount"] = json!("0")),
                "positive whole number",
            ),
            (
                with(&|t| t["instructedAmount"]["amount"] = json!("-5")),
                "positive whole number",
            ),
            (
                with(&|t| t["instructedAmount"]["amount"] = json!("50.5")),
                "positive whole number",
            ),
            (
                with(&|t| t["instructedAmount"]["amount"] = json!(50.5)),
                "whole number",
            ),
            (
                with(&|t| t["instructedAmount"]["amount"] = json!(-5)),
                "positive whole number",
            ),
            (
                with(&|t| t["instructedAmount"]["amount"] = json!("1e3")),
                "positive whole number",
            ),
            (
                with(&|t| t["instructedAmount"]["amount"] = json!("1000000001")),
                "is over",
            ),
            (
                with(&|t| t["instructedAmount"]["currency"] = json!("USD")),
                "JPY only",
            ),
            (
                with(&|t| t["instructedAmount"]["fee"] = json!("1")),
                "unknown field instructedAmount.fee",
            ),
            (
                with(&|t| {
                    t.as_object_mut().map(|o| o.remove("creditorAccount"));
                }),
                "creditorAccount is missing",
            ),
            (
                with(&|t| {
                    t.as_object_mut().map(|o| o.remove("creditorName"));
                }),
                "creditorName must be text",
            ),
            (
                with(&|t| t["creditorName"] = json!("a\u{0007}b")),
                "creditorName must be text",
            ),
            (
                with(&|t| t["creditorAccount"]["accountId"] = json!("../x")),
                "account id",
            ),
        ];
        for (got, want) in cases {
            assert!(got.contains(want), "{got:?} should say {want:?}");
        }
        let not_allowed = check_request(&json!([transfer()]), &[])
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(
            not_allowed.contains("not allowed for this client"),
            "{not_allowed}"
        );
        for bad in ["{}", "[]", "\"x\"", "[1]", "not json"] {
            assert!(parse_request(bad, &allowed()).is_err(), "{bad}");
        }
        let many = json!(vec![transfer(); MAX_DETAILS + 1]).to_string();
        assert!(parse_request(&many, &allowed()).is_err());
        assert!(parse_request(&" ".repeat(MAX_JSON_BYTES + 1), &allowed()).is_err());
    }

    #[test]
    fn enrich_and_summarise() {
        let granted = enrich(&[transfer()], "taro-1");
        assert_eq!(granted[0]["debtorAccount"], json!({"accountId": "taro-1"}));
        assert!(needs_debtor(&granted));
        let s = summaries(&granted);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].amount, "5,000");
        assert_eq!(s[0].currency, "JPY");
        assert_eq!(s[0].creditor_name, "Hanako Yamada");
        assert_eq!(s[0].creditor_account, "hanako-1");
        assert_eq!(s[0].debtor_account.as_deref(), Some("taro-1"));
        assert_eq!(group_thousands("1234567"), "1,234,567");
        assert_eq!(group_thousands("100"), "100");
    }
}
