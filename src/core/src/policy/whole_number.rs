//! Whole numbers in the policy as meshes deliver them. Istio's `WasmPlugin.pluginConfig` and Envoy
//! Gateway's wasm `config` are a `google.protobuf.Struct`, whose only number type is a double
//! (protobuf `struct.proto`, `Value.number_value`); the agent that turns it into the plugin's JSON may
//! write `5` as `5.0`. A count or a number of seconds given as a float with no fractional part is
//! therefore accepted; any other float (`5.5`), a negative number for an unsigned field, or one out of
//! the field's range is refused with the field's path (serde_path_to_error adds it).
//!
//! Used as `#[serde(deserialize_with = "whole_number::exact")]` (or `whole_number::optional` on an
//! `Option`); serialization is unchanged, so `fapictl policy compile` still writes plain integers.

use serde::de::{self, Deserializer, Unexpected, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// The largest float every integer up to which is exact (2^53): beyond it a float no longer names one
/// whole number, so it is refused rather than rounded.
const EXACT_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0;

struct WholeVisitor<T>(PhantomData<T>);

impl<T: TryFrom<i128>> WholeVisitor<T> {
    fn fit<E: de::Error>(&self, n: i128, shown: Unexpected<'_>) -> Result<T, E> {
        T::try_from(n).map_err(|_| E::invalid_value(shown, self))
    }
}

impl<'de, T: TryFrom<i128>> Visitor<'de> for WholeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "a whole number in the range of {} (a float such as 5.0 is accepted, 5.5 is not)",
            std::any::type_name::<T>()
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.fit(i128::from(v), Unexpected::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.fit(i128::from(v), Unexpected::Signed(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        if !v.is_finite() || v.fract() != 0.0 || v.abs() > EXACT_FLOAT_LIMIT {
            return Err(E::invalid_value(Unexpected::Float(v), &self));
        }
        // Exact: `v` is whole and within ±2^53, so the cast neither rounds nor saturates.
        #[allow(clippy::cast_possible_truncation)]
        let n = v as i128;
        self.fit(n, Unexpected::Float(v))
    }
}

/// A whole number, also when written as an integral float.
pub fn exact<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    deserializer.deserialize_any(WholeVisitor(PhantomData))
}

/// An optional whole number (absent or `null` is `None`).
pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    struct Some_<T>(T);
    impl<'de, T: TryFrom<i128>> serde::Deserialize<'de> for Some_<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            exact(d).map(Some_)
        }
    }
    let value: Option<Some_<T>> = serde::Deserialize::deserialize(deserializer)?;
    Ok(value.map(|Some_(v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[serde(deserialize_with = "exact")]
        count: usize,
        #[serde(default, deserialize_with = "optional")]
        seconds: Option<u64>,
        #[serde(deserialize_with = "exact")]
        small: u16,
    }

    fn read(v: serde_json::Value) -> Result<Sample, String> {
        serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn integers_and_integral_floats_are_the_same_number() -> Result<(), String> {
        let a = read(json!({"count": 5, "seconds": 300, "small": 200}))?;
        let b = read(json!({"count": 5.0, "seconds": 300.0, "small": 200.0}))?;
        assert_eq!((a.count, a.seconds, a.small), (5, Some(300), 200));
        assert_eq!((b.count, b.seconds, b.small), (5, Some(300), 200));
        let c = read(json!({"count": 0.0, "small": 1, "seconds": null}))?;
        assert_eq!((c.count, c.seconds), (0, None));
        Ok(())
    }

    #[test]
    fn fractions_negatives_and_out_of_range_are_refused_naming_the_field() -> Result<(), String> {
        let cases = [
            (
                json!({"count": 5.5, "small": 1}),
                "count: invalid value: floating point `5.5`",
            ),
            (
                json!({"count": 1, "seconds": 0.25, "small": 1}),
                "seconds: invalid value: floating point `0.25`",
            ),
            (
                json!({"count": -1.0, "small": 1}),
                "count: invalid value: floating point `-1.0`",
            ),
            (
                json!({"count": -3, "small": 1}),
                "count: invalid value: integer `-3`",
            ),
            (
                json!({"count": 1, "small": 70000.0}),
                "small: invalid value: floating point `70000.0`",
            ),
            (
                json!({"count": 1e300, "small": 1}),
                "count: invalid value: floating point `1e+300`",
            ),
            (
                json!({"count": "5", "small": 1}),
                "count: invalid type: string \"5\"",
            ),
        ];
        for (input, want) in cases {
            match read(input.clone()) {
                Ok(s) => return Err(format!("{input} was accepted as {s:?}")),
                Err(e) if e.starts_with(want) && e.contains("expected a whole number") => {}
                Err(e) => return Err(format!("{input}: got {e:?}, want {want:?}")),
            }
        }
        Ok(())
    }
}
