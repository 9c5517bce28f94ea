//! Writing a collection back as TOML (`ferrobase pull`), in the documented shape:
//! one inline table per field, so a pulled file reads like a hand-written one and
//! round-trips through `parse_collection` unchanged.

use std::fmt::Write as _;

use serde_json::Value;

use crate::check::is_identifier;
use crate::model::Collection;

/// A TOML basic string (escapes per the TOML spec).
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { k.to_owned() } else { toml_string(k) }
}

/// An inline TOML value. `null` cannot occur: validation rejects it in defaults.
fn toml_value(v: &Value) -> String {
    match v {
        Value::Null => "\"\"".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => toml_string(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) if map.is_empty() => "{}".to_owned(),
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), toml_value(v)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
    }
}

/// Renders a collection as a readable TOML file that `parse_collection` reads back to
/// an equal [`Collection`].
pub fn collection_to_toml(c: &Collection) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "name = {}", toml_string(&c.name));
    let _ = writeln!(out, "conflict = {}", toml_string(c.conflict.as_str()));

    out.push_str("\n[fields]\n");
    for (name, f) in &c.fields {
        let parts: Vec<String> = f
            .entries()
            .iter()
            .map(|(k, v)| format!("{k} = {}", toml_value(v)))
            .collect();
        let key = if is_identifier(name) {
            name.clone()
        } else {
            toml_key(name)
        };
        let _ = writeln!(out, "{key} = {{ {} }}", parts.join(", "));
    }

    if !c.rules.is_empty() {
        out.push_str("\n[rules]                         # absent = locked; \"true\" = public\n");
        for (name, rule) in c.rules.iter() {
            if let Some(r) = rule {
                let _ = writeln!(out, "{name} = {}", toml_string(r));
            }
        }
    }

    for ix in &c.indexes {
        out.push_str("\n[[indexes]]\n");
        let _ = writeln!(
            out,
            "fields = {}",
            toml_value(&Value::from(ix.fields.clone()))
        );
        if ix.unique {
            out.push_str("unique = true\n");
        }
    }

    if !c.triggers.is_empty() {
        out.push_str("\n[triggers]\n");
        for (k, v) in &c.triggers {
            let _ = writeln!(out, "{} = {}", toml_key(k), toml_string(v));
        }
    }
    out
}
