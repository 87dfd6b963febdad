//! The GraphQL `JSON` scalar: JSON stored by the node (a vote's choice, a proposal's strategy and
//! actions, an event's payload) out, signed typed data in, converted node by node. Going through serde instead
//! (`async_graphql::Json`) leaks serde_json's internal number type
//! (`{"$serde_json::private::Number": "1"}`) whenever a crate in the tree turns on serde_json's
//! `arbitrary_precision`, as one of ours does.

use async_graphql::{InputValueError, InputValueResult, Name, Number, Scalar, ScalarType, Value};

/// The `JSON` scalar: any JSON value, in and out.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonValue(pub serde_json::Value);

#[Scalar(name = "JSON")]
impl ScalarType for JsonValue {
    fn parse(value: Value) -> InputValueResult<Self> {
        value
            .into_json()
            .map(JsonValue)
            .map_err(|e| InputValueError::custom(format!("not JSON: {e}")))
    }

    fn to_value(&self) -> Value {
        graphql_value(&self.0)
    }
}

/// `v` as a GraphQL value: numbers stay numbers, whatever serde_json's features.
pub fn graphql_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Number(number(n)),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::List(items.iter().map(graphql_value).collect()),
        serde_json::Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (Name::new(k), graphql_value(v)))
                .collect(),
        ),
    }
}

/// The same number in async-graphql's type (a serde_json number too, rebuilt from its value so
/// that no internal representation crosses over).
fn number(n: &serde_json::Number) -> Number {
    if let Some(u) = n.as_u64() {
        Number::from(u)
    } else if let Some(i) = n.as_i64() {
        Number::from(i)
    } else {
        n.as_f64()
            .and_then(Number::from_f64)
            .unwrap_or_else(|| Number::from(0u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_numbers() {
        let v = serde_json::json!({"choice": [[0, 70], [1, 30]], "block": 18_000_000u64, "x": -1, "ok": true, "s": "1"});
        let out = graphql_value(&v).into_json().unwrap();
        assert_eq!(out, v);
        assert!(!out.to_string().contains("serde_json"));
    }
}
