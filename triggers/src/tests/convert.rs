//! JSON → Rhai → JSON is the identity (property test).

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::convert::{to_dynamic, to_json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        // Finite floats (JSON has no NaN or infinities).
        (-1e15f64..1e15).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(".{0,8}", json_value(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #[test]
    fn json_to_rhai_and_back_is_the_identity(value in json_object()) {
        let back = to_json(&to_dynamic(&value), "record").unwrap();
        prop_assert_eq!(back, value);
    }
}
