//! Building the model from a generic document tree (a `serde_json::Value`).
//!
//! Both entry points feed this one builder: `parse_collection` converts the TOML syntax
//! tree (keeping a path → line map for error locations), and the serde `Deserialize`
//! impls pass JSON straight in. One builder means TOML and the admin API accept and
//! reject exactly the same things.

use std::collections::{BTreeMap, HashMap};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::error::SchemaError;
use crate::model::{Collection, ConflictPolicy, Field, FieldType, Index, Rules};
use crate::size::parse_size;

/// Where the document came from: a file label and the line of each key path
/// (`"fields.title.max"`). Empty for JSON, which has no useful line numbers.
pub(crate) struct Loc<'a> {
    pub file: Option<&'a str>,
    pub lines: Option<&'a HashMap<String, usize>>,
}

impl Loc<'_> {
    pub const NONE: Loc<'static> = Loc {
        file: None,
        lines: None,
    };

    /// The line of the deepest known prefix of `path` (an error about `fields.x.max`
    /// points at `max` when known, else at the field's line).
    pub fn line(&self, path: &[&str]) -> Option<usize> {
        let lines = self.lines?;
        (1..=path.len())
            .rev()
            .find_map(|n| lines.get(&path[..n].join(".")).copied())
    }

    pub fn err(
        &self,
        path: &[&str],
        collection: Option<&str>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> SchemaError {
        SchemaError {
            file: self.file.map(str::to_owned),
            line: self.line(path),
            collection: collection.map(str::to_owned),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

const COLLECTION_KEYS: [&str; 6] = ["name", "conflict", "fields", "rules", "indexes", "triggers"];
const COMMON_FIELD_KEYS: [&str; 4] = ["type", "required", "default", "renamed_from"];
pub(crate) const FIELD_TYPES: [&str; 12] = [
    "text", "number", "integer", "bool", "date", "email", "url", "select", "json", "relation",
    "file", "geo",
];

/// Keys a field of type `ty` accepts besides the common ones.
fn type_keys(ty: &str) -> &'static [&'static str] {
    match ty {
        "text" => &["min", "max", "pattern"],
        "number" | "integer" => &["min", "max"],
        "select" => &["values", "multiple"],
        "relation" => &["collection", "multiple"],
        "file" => &["multiple", "max_files", "max_size", "mime"],
        _ => &[],
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

/// Builds a collection. `stem` is the file stem, which `name` must equal (and which
/// stands in for a missing `name`).
pub(crate) fn build_collection(
    doc: &Value,
    loc: &Loc<'_>,
    stem: Option<&str>,
) -> Result<Collection, Vec<SchemaError>> {
    match build_collection_partial(doc, loc, stem) {
        (Some(c), errs) if errs.is_empty() => Ok(c),
        (_, errs) => Err(errs),
    }
}

/// Like [`build_collection`] but also returns what could be built despite errors (fields
/// that failed are left out), so the caller can still run the other checks and report
/// every mistake in one pass. `None` when the document is not a table at all.
pub(crate) fn build_collection_partial(
    doc: &Value,
    loc: &Loc<'_>,
    stem: Option<&str>,
) -> (Option<Collection>, Vec<SchemaError>) {
    let Some(obj) = doc.as_object() else {
        let e = loc.err(
            &[],
            stem,
            None,
            format!("a collection must be a table, found {}", type_name(doc)),
        );
        return (None, vec![e]);
    };
    let mut errs = Vec::new();

    let name = match obj.get("name") {
        Some(Value::String(n)) => {
            if let Some(stem) = stem.filter(|s| *s != n) {
                errs.push(loc.err(
                    &["name"],
                    Some(n),
                    None,
                    format!("name \"{n}\" must match the file name \"{stem}\""),
                ));
            }
            n.clone()
        }
        Some(other) => {
            errs.push(loc.err(
                &["name"],
                stem,
                None,
                format!("name must be a string, found {}", type_name(other)),
            ));
            stem.unwrap_or_default().to_owned()
        }
        None => match stem {
            Some(s) => s.to_owned(),
            None => {
                errs.push(loc.err(&[], None, None, "missing key `name`"));
                String::new()
            }
        },
    };
    let cname = (!name.is_empty()).then_some(name.as_str());
    let at = |path: &[&str], field: Option<&str>, msg: String| loc.err(path, cname, field, msg);

    for key in obj.keys() {
        if !COLLECTION_KEYS.contains(&key.as_str()) {
            errs.push(at(
                &[key],
                None,
                format!(
                    "unknown key `{key}` (expected one of: {})",
                    COLLECTION_KEYS.join(", ")
                ),
            ));
        }
    }

    let mut c = Collection::new(name.clone());

    match obj.get("conflict") {
        None => {}
        Some(Value::String(s)) if s == "reject" => c.conflict = ConflictPolicy::Reject,
        Some(Value::String(s)) if s == "last_write_wins" => {
            c.conflict = ConflictPolicy::LastWriteWins
        }
        Some(other) => errs.push(at(
            &["conflict"],
            None,
            format!("conflict must be \"reject\" or \"last_write_wins\", found {other}"),
        )),
    }

    match obj.get("fields") {
        None => {}
        Some(Value::Object(fields)) => {
            let mut out = IndexMap::new();
            for (fname, fv) in fields {
                match build_field(fname, fv, loc, cname) {
                    Ok(f) => {
                        out.insert(fname.clone(), f);
                    }
                    Err(e) => errs.extend(e),
                }
            }
            c.fields = out;
        }
        Some(other) => errs.push(at(
            &["fields"],
            None,
            format!("fields must be a table, found {}", type_name(other)),
        )),
    }

    match obj.get("rules") {
        None => {}
        Some(Value::Object(rules)) => {
            let mut r = Rules::default();
            for (k, v) in rules {
                let Some(slot) = r.slot(k) else {
                    errs.push(at(
                        &["rules", k],
                        None,
                        format!(
                            "unknown rule `{k}` (expected one of: {})",
                            Rules::NAMES.join(", ")
                        ),
                    ));
                    continue;
                };
                match v {
                    Value::String(s) => *slot = Some(s.clone()),
                    other => errs.push(at(
                        &["rules", k],
                        None,
                        format!("rule `{k}` must be a string, found {}", type_name(other)),
                    )),
                }
            }
            c.rules = r;
        }
        Some(other) => errs.push(at(
            &["rules"],
            None,
            format!("rules must be a table, found {}", type_name(other)),
        )),
    }

    match obj.get("indexes") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let idx = i.to_string();
                match build_index(item) {
                    Ok(ix) => c.indexes.push(ix),
                    Err((key, msg)) => {
                        let path: Vec<&str> = match &key {
                            Some(k) => vec!["indexes", &idx, k],
                            None => vec!["indexes", &idx],
                        };
                        errs.push(at(&path, None, format!("index #{}: {msg}", i + 1)));
                    }
                }
            }
        }
        Some(other) => errs.push(at(
            &["indexes"],
            None,
            format!(
                "indexes must be an array of tables ([[indexes]]), found {}",
                type_name(other)
            ),
        )),
    }

    match obj.get("triggers") {
        None => {}
        Some(Value::Object(t)) => {
            let mut out = BTreeMap::new();
            for (k, v) in t {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    other => errs.push(at(
                        &["triggers", k],
                        None,
                        format!(
                            "trigger `{k}` must be a string like \"triggers/{name}.rhai#{k}\", found {}",
                            type_name(other)
                        ),
                    )),
                }
            }
            c.triggers = out;
        }
        Some(other) => errs.push(at(
            &["triggers"],
            None,
            format!("triggers must be a table, found {}", type_name(other)),
        )),
    }

    (Some(c), errs)
}

/// One `[[indexes]]` entry. On error: the offending key (if any) and a message.
fn build_index(item: &Value) -> Result<Index, (Option<String>, String)> {
    let Some(obj) = item.as_object() else {
        return Err((None, format!("must be a table, found {}", type_name(item))));
    };
    for k in obj.keys() {
        if k != "fields" && k != "unique" {
            return Err((
                Some(k.clone()),
                format!("unknown key `{k}` (expected fields, unique)"),
            ));
        }
    }
    let fields = match obj.get("fields") {
        None => return Err((None, "missing key `fields`".into())),
        Some(v) => string_list(v).ok_or_else(|| {
            (
                Some("fields".to_owned()),
                "fields must be an array of field names".to_owned(),
            )
        })?,
    };
    let unique = match obj.get("unique") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err((
                Some("unique".into()),
                format!("unique must be a boolean, found {}", type_name(other)),
            ));
        }
    };
    Ok(Index { fields, unique })
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_owned))
        .collect()
}

/// Builds one field from its flat table form.
pub(crate) fn build_field(
    name: &str,
    v: &Value,
    loc: &Loc<'_>,
    collection: Option<&str>,
) -> Result<Field, Vec<SchemaError>> {
    let base = ["fields", name];
    let at = |key: Option<&str>, msg: String| {
        let path: Vec<&str> = match key {
            Some(k) => vec!["fields", name, k],
            None => base.to_vec(),
        };
        loc.err(&path, collection, Some(name), msg)
    };
    let Some(obj) = v.as_object() else {
        return Err(vec![at(
            None,
            format!(
                "a field must be a table like {{ type = \"text\" }}, found {}",
                type_name(v)
            ),
        )]);
    };
    let ty = match obj.get("type") {
        None => return Err(vec![at(None, "missing key `type`".into())]),
        Some(Value::String(t)) if FIELD_TYPES.contains(&t.as_str()) => t.as_str(),
        Some(Value::String(t)) => {
            return Err(vec![at(
                Some("type"),
                format!(
                    "unknown type \"{t}\" (expected one of: {})",
                    FIELD_TYPES.join(", ")
                ),
            )]);
        }
        Some(other) => {
            return Err(vec![at(
                Some("type"),
                format!("type must be a string, found {}", type_name(other)),
            )]);
        }
    };

    let mut errs = Vec::new();
    let allowed = type_keys(ty);
    for key in obj.keys() {
        let k = key.as_str();
        if COMMON_FIELD_KEYS.contains(&k) || allowed.contains(&k) {
            continue;
        }
        let owners: Vec<&str> = FIELD_TYPES
            .iter()
            .copied()
            .filter(|t| type_keys(t).contains(&k))
            .collect();
        let msg = if owners.is_empty() {
            let mut valid: Vec<&str> = COMMON_FIELD_KEYS.to_vec();
            valid.extend_from_slice(allowed);
            format!(
                "unknown key `{k}` (a {ty} field accepts: {})",
                valid.join(", ")
            )
        } else {
            format!(
                "key `{k}` is not valid for a {ty} field (it belongs to: {})",
                owners.join(", ")
            )
        };
        errs.push(at(Some(k), msg));
    }

    let mut g = Getter {
        obj,
        errs: &mut errs,
        at: &at,
    };
    let required = g.bool("required").unwrap_or(false);
    let renamed_from = g.string("renamed_from");
    let default = obj.get("default").filter(|d| !d.is_null()).cloned();
    let field_type = match ty {
        "text" => FieldType::Text {
            min: g.u32("min"),
            max: g.u32("max"),
            pattern: g.string("pattern"),
        },
        "number" => FieldType::Number {
            min: g.f64("min"),
            max: g.f64("max"),
        },
        "integer" => FieldType::Integer {
            min: g.i64("min"),
            max: g.i64("max"),
        },
        "bool" => FieldType::Bool,
        "date" => FieldType::Date,
        "email" => FieldType::Email,
        "url" => FieldType::Url,
        "select" => {
            let values = g.string_list("values");
            if !obj.contains_key("values") {
                g.errs.push(at(
                    None,
                    "a select field needs `values = [\"a\", \"b\"]`".into(),
                ));
            }
            FieldType::Select {
                values: values.unwrap_or_default(),
                multiple: g.bool("multiple").unwrap_or(false),
            }
        }
        "json" => FieldType::Json,
        "relation" => {
            let collection = g.string("collection");
            if !obj.contains_key("collection") {
                g.errs.push(at(
                    None,
                    "a relation field needs `collection = \"<target>\"`".into(),
                ));
            }
            FieldType::Relation {
                collection: collection.unwrap_or_default(),
                multiple: g.bool("multiple").unwrap_or(false),
            }
        }
        "file" => FieldType::File {
            multiple: g.bool("multiple").unwrap_or(false),
            max_files: g.u32("max_files"),
            max_size: g.size("max_size"),
            mime: g.string_list("mime").unwrap_or_default(),
        },
        _ => FieldType::Geo,
    };
    if errs.is_empty() {
        Ok(Field {
            ty: field_type,
            required,
            default,
            renamed_from,
        })
    } else {
        Err(errs)
    }
}

/// Typed reads of optional keys; a present key of the wrong type records an error.
struct Getter<'a, 'e, F: Fn(Option<&str>, String) -> SchemaError> {
    obj: &'a Map<String, Value>,
    errs: &'e mut Vec<SchemaError>,
    at: &'a F,
}

impl<F: Fn(Option<&str>, String) -> SchemaError> Getter<'_, '_, F> {
    fn read<T>(&mut self, key: &str, what: &str, conv: impl Fn(&Value) -> Option<T>) -> Option<T> {
        let v = self.obj.get(key)?;
        let out = conv(v);
        if out.is_none() {
            self.errs.push((self.at)(
                Some(key),
                format!("{key} must be {what}, found {}", describe(v)),
            ));
        }
        out
    }
    fn bool(&mut self, key: &str) -> Option<bool> {
        self.read(key, "a boolean", Value::as_bool)
    }
    fn string(&mut self, key: &str) -> Option<String> {
        self.read(key, "a string", |v| v.as_str().map(str::to_owned))
    }
    fn string_list(&mut self, key: &str) -> Option<Vec<String>> {
        self.read(key, "an array of strings", string_list)
    }
    fn u32(&mut self, key: &str) -> Option<u32> {
        self.read(key, "a non-negative integer", |v| {
            v.as_u64().and_then(|n| u32::try_from(n).ok())
        })
    }
    fn i64(&mut self, key: &str) -> Option<i64> {
        self.read(key, "an integer", Value::as_i64)
    }
    fn f64(&mut self, key: &str) -> Option<f64> {
        self.read(key, "a number", Value::as_f64)
    }
    fn size(&mut self, key: &str) -> Option<u64> {
        let v = self.obj.get(key)?;
        let parsed = match v {
            Value::String(s) => parse_size(s),
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| format!("{key} must be a non-negative number of bytes, found {n}")),
            other => Err(format!(
                "{key} must be a size like \"5MB\" or a number of bytes, found {}",
                describe(other)
            )),
        };
        match parsed {
            Ok(n) => Some(n),
            Err(msg) => {
                self.errs.push((self.at)(Some(key), msg));
                None
            }
        }
    }
}

/// A short rendering of a wrong value for messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => type_name(v).to_owned(),
        other => format!("{} {other}", type_name(other)),
    }
}
