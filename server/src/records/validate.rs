//! Checks a request body against a collection's fields and turns it into column values.
//!
//! Unknown fields and writes to system fields are errors, not silently ignored, so typos in a
//! client surface at once. Every message is collected (not just the first) so a form can show
//! all of its problems together.

use std::collections::BTreeMap;

use ferrobase_schema::FieldType;
use serde_json::{Map, Value};

use crate::catalog::{CollectionInfo, SYSTEM_FIELDS};
use crate::db::Param;
use crate::error::Error;

/// Longest text accepted in any field that declares no `max`, in characters.
pub const DEFAULT_TEXT_MAX: usize = 100_000;
/// Most items in a multi-valued field.
pub const MAX_LIST_ITEMS: usize = 1_000;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Update,
}

/// Relation ids to verify against their target collection.
pub struct RelationRef {
    pub field: String,
    pub collection: String,
    pub ids: Vec<String>,
}

pub struct Validated {
    /// Column → value, only for fields present (or defaulted on create).
    pub values: Vec<(String, Param)>,
    pub relations: Vec<RelationRef>,
}

/// Validates `body` (without `id`, which the caller handles) for `mode`.
pub fn validate(
    info: &CollectionInfo,
    body: &Map<String, Value>,
    mode: Mode,
) -> Result<Validated, Error> {
    let mut errors = BTreeMap::new();
    for key in body.keys() {
        if key == "id" && mode == Mode::Create {
            continue;
        }
        if SYSTEM_FIELDS.contains(&key.as_str()) || info.readonly.iter().any(|r| r == key) {
            errors.insert(
                key.clone(),
                "is set by the server and cannot be written".to_owned(),
            );
        } else if !info.def.fields.contains_key(key) {
            errors.insert(key.clone(), format!("is not a field of `{}`", info.name()));
        }
    }
    let mut values = Vec::new();
    let mut relations = Vec::new();
    for (name, field) in &info.def.fields {
        let given = body.get(name);
        let value = match (given, mode) {
            (Some(v), _) => Some(v.clone()),
            (None, Mode::Create) => field.default.clone(),
            (None, Mode::Update) => None,
        };
        let Some(value) = value else {
            if mode == Mode::Create && field.required {
                errors.insert(name.clone(), "is required".to_owned());
            }
            continue;
        };
        if nul_path(&value).is_some() {
            // PostgreSQL text and jsonb cannot hold U+0000: refused on both dialects alike.
            errors.insert(name.clone(), NUL_MESSAGE.to_owned());
            continue;
        }
        if value.is_null() {
            if field.required {
                errors.insert(name.clone(), "is required".to_owned());
            } else {
                values.push((
                    name.clone(),
                    Param::NullOf(crate::catalog::col_type(&field.ty)),
                ));
            }
            continue;
        }
        match convert(info, name, &field.ty, &value) {
            Ok((param, ids)) => {
                if field.required && is_empty(&param) {
                    errors.insert(name.clone(), "is required".to_owned());
                    continue;
                }
                if let (FieldType::Relation { collection, .. }, Some(ids)) = (&field.ty, ids) {
                    relations.push(RelationRef {
                        field: name.clone(),
                        collection: collection.clone(),
                        ids,
                    });
                }
                values.push((name.clone(), param));
            }
            Err(msg) => {
                errors.insert(name.clone(), msg);
            }
        }
    }
    if errors.is_empty() {
        Ok(Validated { values, relations })
    } else {
        Err(Error::validation(errors))
    }
}

/// What a field holding U+0000 is told (PostgreSQL text and jsonb cannot store it).
pub const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// The path (`email`, `data.name`, `collections[0].rules.list`; empty for the value itself)
/// of the first string in `value`, a value or an object key, that holds U+0000.
pub fn nul_path(value: &Value) -> Option<String> {
    // The path is built on the way back from a hit (innermost part first), so a value
    // without U+0000 — every ordinary request — is walked without allocating.
    fn find(v: &Value) -> Option<Vec<String>> {
        match v {
            Value::String(s) => s.contains('\0').then(Vec::new),
            Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| {
                let mut path = find(x)?;
                path.push(format!("[{i}]"));
                Some(path)
            }),
            Value::Object(m) => m.iter().find_map(|(k, x)| {
                let mut path = if k.contains('\0') {
                    Vec::new()
                } else {
                    find(x)?
                };
                path.push(k.chars().filter(|c| *c != '\0').take(64).collect());
                Some(path)
            }),
            _ => None,
        }
    }
    let path = find(value)?;
    let mut name = String::new();
    for part in path.iter().rev() {
        if !name.is_empty() && !part.starts_with('[') {
            name.push('.');
        }
        name.push_str(part);
    }
    Some(name)
}

fn is_empty(p: &Param) -> bool {
    match p {
        Param::Text(s) => s.is_empty(),
        Param::Json(Value::Array(a)) => a.is_empty(),
        Param::Null => true,
        _ => false,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn want(what: &str, v: &Value) -> String {
    format!("must be {what}, not {}", type_name(v))
}

/// One value → its column value, plus relation ids to check.
fn convert(
    info: &CollectionInfo,
    name: &str,
    ty: &FieldType,
    v: &Value,
) -> Result<(Param, Option<Vec<String>>), String> {
    match ty {
        FieldType::Text { min, max, .. } => {
            let s = v.as_str().ok_or_else(|| want("text", v))?;
            let n = s.chars().count();
            if let Some(min) = min
                && n < *min as usize
            {
                return Err(format!("must be at least {min} characters"));
            }
            let limit = max.map(|m| m as usize).unwrap_or(DEFAULT_TEXT_MAX);
            if n > limit {
                return Err(format!("must be at most {limit} characters"));
            }
            if let Some(re) = info.patterns.get(name)
                && !re.is_match(s)
            {
                return Err("does not match the required pattern".to_owned());
            }
            Ok((Param::Text(s.to_owned()), None))
        }
        FieldType::Number { min, max } => {
            let f = v.as_f64().ok_or_else(|| want("a number", v))?;
            if !f.is_finite() {
                return Err("must be a finite number".to_owned());
            }
            if let Some(min) = min
                && f < *min
            {
                return Err(format!("must be at least {min}"));
            }
            if let Some(max) = max
                && f > *max
            {
                return Err(format!("must be at most {max}"));
            }
            Ok((Param::Float(f), None))
        }
        FieldType::Integer { min, max } => {
            let i = v.as_i64().ok_or_else(|| match v {
                Value::Number(_) => "must be a whole number within 64-bit range".to_owned(),
                _ => want("a whole number", v),
            })?;
            if let Some(min) = min
                && i < *min
            {
                return Err(format!("must be at least {min}"));
            }
            if let Some(max) = max
                && i > *max
            {
                return Err(format!("must be at most {max}"));
            }
            Ok((Param::Int(i), None))
        }
        FieldType::Bool => v
            .as_bool()
            .map(|b| (Param::Bool(b), None))
            .ok_or_else(|| want("true or false", v)),
        FieldType::Date => {
            let s = v.as_str().ok_or_else(|| want("a date string", v))?;
            ferrobase_expr::parse_date(s)
                .map(|t| (Param::Time(t), None))
                .ok_or_else(|| "must be an RFC 3339 date such as 2026-01-31T12:00:00Z".to_owned())
        }
        FieldType::Email => {
            let s = v.as_str().ok_or_else(|| want("an email address", v))?;
            if s.is_empty() || crate::admin::valid_email(s) {
                Ok((Param::Text(s.to_owned()), None))
            } else {
                Err("must be a valid email address".to_owned())
            }
        }
        FieldType::Url => {
            let s = v.as_str().ok_or_else(|| want("a URL", v))?;
            let ok = s.is_empty()
                || ((s.starts_with("https://") || s.starts_with("http://"))
                    && s.len() <= 2048
                    && s.len() > 8
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control()));
            if ok {
                Ok((Param::Text(s.to_owned()), None))
            } else {
                Err("must be an http(s) URL".to_owned())
            }
        }
        FieldType::Select { values, multiple } => {
            let check = |s: &str| -> Result<(), String> {
                if values.iter().any(|x| x == s) {
                    Ok(())
                } else {
                    Err(format!("must be one of: {}", values.join(", ")))
                }
            };
            if *multiple {
                let items = string_list(v)?;
                for s in &items {
                    check(s)?;
                }
                Ok((Param::Json(Value::from(items)), None))
            } else {
                let s = v
                    .as_str()
                    .ok_or_else(|| want("one of the allowed values", v))?;
                check(s)?;
                Ok((Param::Text(s.to_owned()), None))
            }
        }
        FieldType::Json => Ok((Param::Json(v.clone()), None)),
        FieldType::Relation { multiple, .. } => {
            let ids = if *multiple {
                string_list(v)?
            } else {
                vec![v.as_str().ok_or_else(|| want("a record id", v))?.to_owned()]
            };
            for id in &ids {
                if uuid::Uuid::parse_str(id).is_err() {
                    return Err(format!("`{}` is not a record id", truncate(id)));
                }
            }
            let param = if *multiple {
                Param::Json(Value::from(ids.clone()))
            } else {
                Param::Text(ids[0].clone())
            };
            Ok((param, Some(ids)))
        }
        FieldType::File {
            multiple,
            max_files,
            ..
        } => {
            // Until the files capability lands, a file field holds stored file names.
            if *multiple {
                let items = string_list(v)?;
                if let Some(m) = max_files
                    && items.len() > *m as usize
                {
                    return Err(format!("must have at most {m} files"));
                }
                Ok((Param::Json(Value::from(items)), None))
            } else {
                let s = v.as_str().ok_or_else(|| want("a file name", v))?;
                if s.chars().count() > 255 {
                    return Err("must be at most 255 characters".to_owned());
                }
                Ok((Param::Text(s.to_owned()), None))
            }
        }
        FieldType::Geo => {
            let obj = v
                .as_object()
                .ok_or_else(|| want("an object {lat, lon}", v))?;
            let lat = obj.get("lat").and_then(Value::as_f64);
            let lon = obj.get("lon").and_then(Value::as_f64);
            match (lat, lon) {
                (Some(lat), Some(lon))
                    if obj.len() == 2
                        && (-90.0..=90.0).contains(&lat)
                        && (-180.0..=180.0).contains(&lon) =>
                {
                    Ok((
                        Param::Json(serde_json::json!({"lat": lat, "lon": lon})),
                        None,
                    ))
                }
                _ => Err("must be {\"lat\": -90..90, \"lon\": -180..180}".to_owned()),
            }
        }
    }
}

fn string_list(v: &Value) -> Result<Vec<String>, String> {
    let arr = v.as_array().ok_or_else(|| want("a list", v))?;
    if arr.len() > MAX_LIST_ITEMS {
        return Err(format!("must have at most {MAX_LIST_ITEMS} items"));
    }
    let mut out: Vec<String> = Vec::with_capacity(arr.len());
    for item in arr {
        let s = item
            .as_str()
            .ok_or_else(|| "must be a list of strings".to_owned())?;
        if s.chars().count() > 1_000 {
            return Err("has an item longer than 1000 characters".to_owned());
        }
        if !out.iter().any(|x| x == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}
