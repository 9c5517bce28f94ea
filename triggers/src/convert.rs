//! JSON ↔ Rhai values.
//!
//! JSON → Rhai: objects become object maps, arrays arrays, integers that fit `i64` integers,
//! other numbers floats, strings strings, booleans booleans, `null` the unit `()`.
//!
//! Rhai → JSON is the inverse; in addition a `char` becomes a one-character string. Anything
//! else (function pointers, blobs, ranges, timestamps, the `ctx` handles, non-finite floats)
//! has no JSON form and is an error naming the path of the value (`record.tags[2]`).
//! Object keys come back sorted: Rhai maps are ordered by key.

use rhai::{Array, Dynamic, Map as RhaiMap};
use serde_json::{Map, Number, Value};

/// A value with no JSON form, at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson {
    pub path: String,
    pub type_name: String,
}

impl std::fmt::Display for NotJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is a {}, which has no JSON form",
            self.path, self.type_name
        )
    }
}

/// Converts a JSON value to a Rhai value.
pub fn to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            // u64 above i64::MAX and floats.
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Object(map) => Dynamic::from_map(map_to_rhai(map)),
    }
}

/// Converts a JSON object to a Rhai object map.
pub fn map_to_rhai(map: &Map<String, Value>) -> RhaiMap {
    map.iter()
        .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
        .collect()
}

/// Converts a Rhai value to JSON; `path` names the value in the error.
pub fn to_json(value: &Dynamic, path: &str) -> Result<Value, NotJson> {
    if value.is_shared() {
        // A variable captured by a closure: convert its current value.
        return to_json(&value.flatten_clone(), path);
    }
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Value::Number(i.into()));
    }
    if let Ok(f) = value.as_float() {
        return Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| NotJson {
                path: path.to_string(),
                type_name: format!("non-finite float ({f})"),
            });
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if value.is_string() {
        return Ok(Value::String(value.to_string()));
    }
    if value.is_array() {
        return match value.read_lock::<Array>() {
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| to_json(v, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            None => Err(not_json(value, path)),
        };
    }
    if value.is_map() {
        return match value.read_lock::<RhaiMap>() {
            Some(map) => map_to_json(&map, path).map(Value::Object),
            None => Err(not_json(value, path)),
        };
    }
    Err(not_json(value, path))
}

/// Converts a Rhai object map to a JSON object; `path` names the map in errors.
pub fn map_to_json(map: &RhaiMap, path: &str) -> Result<Map<String, Value>, NotJson> {
    map.iter()
        .map(|(k, v)| Ok((k.to_string(), to_json(v, &field_path(path, k))?)))
        .collect()
}

fn field_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{key:?}]")
    }
}

fn not_json(value: &Dynamic, path: &str) -> NotJson {
    NotJson {
        path: path.to_string(),
        type_name: value.type_name().to_string(),
    }
}
