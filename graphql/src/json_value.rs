//! The GraphQL `JSON` scalar: JSON stored by the node (a vote's choice, a proposal's strategy and
//! actions, an event's payload) out, signed typed data in, converted node by node. Going through serde instead
//! (`async_graphql::Json`) leaks serde_json's internal number type
//! (`{"$serde_json::private::Number": "1"}`) whenever a crate in the tree turns on serde_json's
//! `arbitrary_precision`, as one of ours does.

use async_graphql::{InputValueError, InputValueResult, Name, Scalar, ScalarType, Value};

/// The `JSON` scalar: any JSON value, in and out.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonValue(pub serde_json::Value);

#[Scalar(name = "JSON")]
impl ScalarType for JsonValue {
    fn parse(value: Value) -> InputValueResult<Self> {
        // Through serde: a large number in the request's variables arrives as serde_json's
        // internal number object, which serde_json's own `Value` reads back as the number.
        async_graphql::from_value::<serde_json::Value>(value)
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
        // async-graphql's number is serde_json's: cloned, it stays exact (however large).
        serde_json::Value::Number(n) => Value::Number(n.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_numbers() {
        let mut v = serde_json::json!({"choice": [[0, 70], [1, 30]], "block": 18_000_000u64, "x": -1, "ok": true, "s": "1"});
        // A uint256 beyond u64 and f64, as typed data may carry it.
        v["big"] = serde_json::from_str(
            "115792089237316195423570985008687907853269984665640564039457584007913129639935",
        )
        .unwrap();
        let out = graphql_value(&v).into_json().unwrap();
        assert_eq!(out, v);
        assert!(!out.to_string().contains("serde_json"));
        assert!(out.to_string().contains(
            "115792089237316195423570985008687907853269984665640564039457584007913129639935"
        ));
        // And back in, as a scalar input: inline, and as the request's variables carry it.
        let back = <JsonValue as ScalarType>::parse(graphql_value(&v)).unwrap();
        assert_eq!(back.0, v);
        let req: async_graphql::Request = serde_json::from_value(serde_json::json!({
            "query": "{ x }",
            "variables": { "typedData": v.clone() },
        }))
        .unwrap();
        let vars = req.variables.into_value();
        let Value::Object(vars) = vars else {
            panic!("variables: {vars:?}")
        };
        let back = <JsonValue as ScalarType>::parse(vars["typedData"].clone()).unwrap();
        assert_eq!(back.0, v);
    }
}
