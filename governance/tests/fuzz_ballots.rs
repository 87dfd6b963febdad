//! Fuzz targets for signed ballots as GraphQL receives them (issue 16, item 8): EIP-712 typed
//! data mutated field by field, and arbitrary signature strings. `verify_vote` and
//! `verify_proposal` must answer a typed `BallotError` for anything but a correct ballot, never
//! panic. A few hundred cases under `cargo test`; `scripts/fuzz` runs them far longer.

use chrono::{TimeZone, Utc};
use meridian_governance::tally::Choice;
use meridian_governance::{verify_proposal, verify_vote, Domain, TimeWindow, VoteMessage};
use proptest::prelude::*;
use serde_json::{json, Value};

const VOTER: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

fn vote_typed() -> Value {
    VoteMessage {
        proposal: "p-1".into(),
        choice: Choice::One(0),
        voter: VOTER.into(),
        sequence: 1,
        timestamp: 1_800_000_000,
    }
    .typed_data(&Domain::meridian(31337))
}

/// Values a field could be given by a careless or hostile client.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::from),
        "0x[0-9a-f]{0,80}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(json!([{ "name": "x", "type": "uint999" }])),
        Just(json!("340282366920938463463374607431768211456")),
    ]
}

/// The valid vote's typed data with one value replaced somewhere inside it.
fn mutated(base: Value) -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just("domain"),
            Just("message"),
            Just("types"),
            Just("primaryType")
        ],
        "[a-zA-Z]{0,12}",
        json_value(),
    )
        .prop_map(move |(part, field, value)| {
            let mut v = base.clone();
            match v.get_mut(part) {
                Some(Value::Object(o)) if !field.is_empty() => {
                    // An existing field when the name matches one, else a new one.
                    let key = o
                        .keys()
                        .find(|k| {
                            k.to_ascii_lowercase()
                                .starts_with(&field.to_ascii_lowercase())
                        })
                        .cloned()
                        .unwrap_or(field);
                    o.insert(key, value);
                }
                Some(slot) => *slot = value,
                None => {}
            }
            v
        })
}

fn signature() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,20}", "(0x)?[0-9a-fA-F]{0,140}", "0x[0-9a-f]{130}"]
}

proptest! {
    #[test]
    fn any_vote_is_verified_or_refused_with_a_reason(
        typed in mutated(vote_typed()),
        sig in signature(),
    ) {
        let now = Utc.timestamp_opt(1_800_000_000, 0).single().expect("time");
        if let Err(e) = verify_vote(&typed, &sig, &Domain::meridian(31337), now, TimeWindow::default()) {
            prop_assert!(!e.to_string().is_empty());
            prop_assert!(!e.code().is_empty());
        }
    }

    #[test]
    fn any_proposal_is_verified_or_refused_with_a_reason(
        typed in mutated(vote_typed()),
        sig in signature(),
    ) {
        let now = Utc.timestamp_opt(1_800_000_000, 0).single().expect("time");
        if let Err(e) = verify_proposal(&typed, &sig, &Domain::meridian(31337), now, TimeWindow::default()) {
            prop_assert!(!e.code().is_empty());
        }
    }
}
