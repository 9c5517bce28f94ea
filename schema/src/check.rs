//! Semantic validation: everything the builder cannot see from one key at a time.
//!
//! Identifiers end up quoted in SQL, so they are restricted to a safe alphabet here;
//! limits keep one bad project from producing thousands of columns or megabyte rules.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::build::Loc;
use crate::error::SchemaError;
use crate::fx;
use crate::model::{Collection, Field, FieldType, SYSTEM_FIELDS};

/// Limits (documented in the schema reference).
pub const MAX_FIELDS: usize = 200;
pub const MAX_INDEXES: usize = 32;
pub const MAX_COLLECTIONS: usize = 1000;
pub const MAX_RULE_LEN: usize = 4096;
/// `c_<name>` must fit PostgreSQL's 63-byte identifier limit (longer names are silently
/// truncated there, so two long names could map to one table).
pub const MAX_COLLECTION_NAME: usize = 61;

/// Field names that clash with system columns or API keywords.
pub const RESERVED_FIELDS: [&str; 6] = [
    "id",
    "created_at",
    "updated_at",
    "version",
    "expand",
    "collection",
];

/// Fields the server's built-in `users` collection already has; `users.toml` declares only
/// extra fields.
pub const BUILTIN_USER_FIELDS: [&str; 5] =
    ["email", "email_verified", "name", "avatar", "is_anonymous"];

/// Collections that exist on every server even when no file declares them.
pub const BUILTIN_COLLECTIONS: [&str; 1] = ["users"];

// Constant patterns, compiled once. `None` would mean a typo in a pattern; the checks then
// fail closed (reject), and the tests catch it — no panic path in library code.
static TRIGGER_KEY: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^(before|after)_[a-z][a-z0-9_]*$").ok());
static TRIGGER_TARGET: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.rhai#[A-Za-z_][A-Za-z0-9_]*$").ok()
});
static MIME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/([a-z0-9][a-z0-9!#$&^_.+-]*|\*)$").ok()
});

fn matches(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(s))
}

/// Whether `s` is a valid collection or field identifier: `^[a-z][a-z0-9_]{0,62}$`.
/// Identifiers are spliced (quoted) into DDL, so this alphabet is a safety boundary.
pub fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// Parses and type-checks a rule against a scope. The one place this crate calls the
/// expression language, so a change there touches one function.
pub fn check_rule(src: &str, scope: &dyn fx::Scope) -> Result<(), String> {
    let expr = fx::parse(src).map_err(|e| format!("{} (at position {})", e.message, e.position))?;
    fx::check(&expr, scope).map_err(|e| format!("{} (at position {})", e.message, e.position))
}

/// Checks one collection on its own (no references to other collections). With
/// `complete = false` (some fields failed to build) rules and index field lists are not
/// checked, since they may name the missing fields.
pub(crate) fn check_collection(c: &Collection, loc: &Loc<'_>, complete: bool) -> Vec<SchemaError> {
    let mut errs = Vec::new();
    let cn = Some(c.name.as_str());
    let mut push = |path: &[&str], field: Option<&str>, msg: String| {
        errs.push(loc.err(path, cn, field, msg));
    };

    if !is_identifier(&c.name) {
        push(
            &["name"],
            None,
            format!(
                "invalid collection name \"{}\": use lowercase letters, digits and _, starting with a letter",
                c.name
            ),
        );
    } else if c.name.len() > MAX_COLLECTION_NAME {
        push(
            &["name"],
            None,
            format!("collection name is longer than {MAX_COLLECTION_NAME} characters"),
        );
    }
    if c.fields.len() > MAX_FIELDS {
        push(
            &["fields"],
            None,
            format!("too many fields ({}; at most {MAX_FIELDS})", c.fields.len()),
        );
    }
    if c.indexes.len() > MAX_INDEXES {
        push(
            &["indexes"],
            None,
            format!(
                "too many indexes ({}; at most {MAX_INDEXES})",
                c.indexes.len()
            ),
        );
    }

    let mut renamed_sources: HashSet<&str> = HashSet::new();
    for (name, f) in &c.fields {
        let path = ["fields", name.as_str()];
        let fp = |k: &'static str| ["fields", name.as_str(), k];
        let fname = Some(name.as_str());
        if !is_identifier(name) {
            push(
                &path,
                fname,
                format!(
                    "invalid field name \"{name}\": use lowercase letters, digits and _, starting with a letter"
                ),
            );
        } else if RESERVED_FIELDS.contains(&name.as_str()) {
            push(
                &path,
                fname,
                format!(
                    "\"{name}\" is a reserved field name (reserved: {})",
                    RESERVED_FIELDS.join(", ")
                ),
            );
        } else if c.name == "users" && BUILTIN_USER_FIELDS.contains(&name.as_str()) {
            push(
                &path,
                fname,
                format!(
                    "\"{name}\" is a built-in field of users; users.toml declares only extra fields"
                ),
            );
        }
        for (key, msg) in check_field(f) {
            let p = fp(key);
            let p: &[&str] = if key.is_empty() { &path } else { &p };
            push(p, fname, msg);
        }
        if let Some(old) = &f.renamed_from {
            if !is_identifier(old) {
                push(
                    &fp("renamed_from"),
                    fname,
                    format!("renamed_from \"{old}\" is not a valid field name"),
                );
            } else if old == name {
                push(
                    &fp("renamed_from"),
                    fname,
                    "renamed_from names the field itself".into(),
                );
            } else if c.fields.contains_key(old) {
                push(
                    &fp("renamed_from"),
                    fname,
                    format!("renamed_from \"{old}\" names a field that is still declared"),
                );
            } else if !renamed_sources.insert(old) {
                push(
                    &fp("renamed_from"),
                    fname,
                    format!("two fields are renamed from \"{old}\""),
                );
            }
        }
    }

    for (rule_name, rule) in c.rules.iter() {
        let Some(src) = rule else { continue };
        let path = ["rules", rule_name];
        if src.trim().is_empty() {
            push(
                &path,
                None,
                format!(
                    "rule `{rule_name}` is empty: write \"true\" to make it public, or remove it to lock the operation"
                ),
            );
        } else if src.chars().count() > MAX_RULE_LEN {
            push(
                &path,
                None,
                format!("rule `{rule_name}` is longer than {MAX_RULE_LEN} characters"),
            );
        } else if complete && let Err(e) = check_rule(src, &c.scope(None)) {
            push(&path, None, format!("rule `{rule_name}`: {e}"));
        }
    }

    let mut seen_indexes = HashSet::new();
    for (i, ix) in c.indexes.iter().enumerate() {
        let n = i.to_string();
        let path = ["indexes", n.as_str(), "fields"];
        let label = format!("index #{}", i + 1);
        if ix.fields.is_empty() {
            push(&path, None, format!("{label}: fields must not be empty"));
        }
        let mut seen = HashSet::new();
        for f in &ix.fields {
            if !c.fields.contains_key(f) && !SYSTEM_FIELDS.contains(&f.as_str()) {
                if !complete {
                    continue;
                }
                push(&path, None, format!("{label}: unknown field \"{f}\""));
            } else if !seen.insert(f) {
                push(
                    &path,
                    None,
                    format!("{label}: field \"{f}\" is listed twice"),
                );
            }
        }
        if !seen_indexes.insert((&ix.fields, ix.unique)) {
            push(
                &["indexes", n.as_str()],
                None,
                format!("{label} is declared twice"),
            );
        }
    }

    for (k, v) in &c.triggers {
        let path = ["triggers", k.as_str()];
        if !matches(&TRIGGER_KEY, k) {
            push(
                &path,
                None,
                format!(
                    "unknown trigger `{k}` (expected before_<event> or after_<event>, e.g. before_create)"
                ),
            );
        }
        if !matches(&TRIGGER_TARGET, v) || v.split('/').any(|seg| seg == "..") {
            push(
                &path,
                None,
                format!(
                    "trigger `{k}` = \"{v}\" must look like \"triggers/{}.rhai#{k}\" (a relative .rhai file, then #function)",
                    c.name
                ),
            );
        }
    }
    errs
}

/// Checks a field's options and default. Returns `(key, message)`; an empty key means
/// the field as a whole.
fn check_field(f: &Field) -> Vec<(&'static str, String)> {
    let mut errs = Vec::new();
    match &f.ty {
        FieldType::Text { min, max, pattern } => {
            if let (Some(a), Some(b)) = (min, max)
                && b < a
            {
                errs.push(("max", format!("max ({b}) must not be less than min ({a})")));
            }
            if let Some(p) = pattern
                && let Err(e) = Regex::new(p)
            {
                errs.push(("pattern", format!("pattern does not compile: {e}")));
            }
        }
        FieldType::Number { min, max } => {
            for (k, v) in [("min", min), ("max", max)] {
                if let Some(x) = v
                    && !x.is_finite()
                {
                    errs.push((k, format!("{k} must be a finite number")));
                }
            }
            if let (Some(a), Some(b)) = (min, max)
                && b < a
            {
                errs.push(("max", format!("max ({b}) must not be less than min ({a})")));
            }
        }
        FieldType::Integer { min, max } => {
            if let (Some(a), Some(b)) = (min, max)
                && b < a
            {
                errs.push(("max", format!("max ({b}) must not be less than min ({a})")));
            }
        }
        FieldType::Select { values, .. } => {
            if values.is_empty() {
                errs.push(("values", "values must not be empty".to_owned()));
            }
            let mut seen = HashSet::new();
            for v in values {
                if v.is_empty() {
                    errs.push((
                        "values",
                        "values must not contain an empty string".to_owned(),
                    ));
                } else if !seen.insert(v) {
                    errs.push(("values", format!("value \"{v}\" is listed twice")));
                }
            }
        }
        FieldType::Relation { collection, .. } => {
            if !is_identifier(collection) {
                errs.push((
                    "collection",
                    format!("relation target \"{collection}\" is not a valid collection name"),
                ));
            }
        }
        FieldType::File {
            multiple,
            max_files,
            max_size,
            mime,
        } => {
            if *max_size == Some(0) {
                errs.push(("max_size", "max_size must be greater than 0".to_owned()));
            }
            match max_files {
                Some(0) => errs.push(("max_files", "max_files must be greater than 0".to_owned())),
                Some(_) if !multiple => errs.push((
                    "max_files",
                    "max_files needs multiple = true (a single file field holds one file)"
                        .to_owned(),
                )),
                _ => {}
            }
            for m in mime {
                if !matches(&MIME, m) {
                    errs.push((
                        "mime",
                        format!("\"{m}\" is not a MIME type like \"image/png\" or \"image/*\""),
                    ));
                }
            }
        }
        FieldType::Bool
        | FieldType::Date
        | FieldType::Email
        | FieldType::Url
        | FieldType::Json
        | FieldType::Geo => {}
    }
    if let Some(d) = &f.default
        && let Err(msg) = check_default(&f.ty, d)
    {
        errs.push(("default", msg));
    }
    errs
}

fn contains_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(contains_null),
        Value::Object(o) => o.values().any(contains_null),
        _ => false,
    }
}

/// Whether a default value fits the field type and its constraints.
fn check_default(ty: &FieldType, d: &Value) -> Result<(), String> {
    // TOML is the source of truth and has no null, so a default must be writable in TOML.
    if contains_null(d) {
        return Err("default must not contain null (TOML cannot express it)".to_owned());
    }
    let want = |what: &str| {
        Err(format!(
            "default must be {what} for a {} field, found {d}",
            ty.type_name()
        ))
    };
    match ty {
        FieldType::Text { min, max, pattern } => {
            let Some(s) = d.as_str() else {
                return want("a string");
            };
            let n = s.chars().count();
            if min.is_some_and(|m| n < m as usize) || max.is_some_and(|m| n > m as usize) {
                return Err(format!(
                    "default \"{s}\" violates the field's min/max length"
                ));
            }
            if let Some(p) = pattern
                && let Ok(re) = Regex::new(p)
                && !re.is_match(s)
            {
                return Err(format!("default \"{s}\" does not match pattern {p}"));
            }
            Ok(())
        }
        FieldType::Email => match d.as_str() {
            Some(s) if s.contains('@') => Ok(()),
            _ => want("an email address"),
        },
        FieldType::Url => match d.as_str() {
            Some(s) if s.starts_with("http://") || s.starts_with("https://") => Ok(()),
            _ => want("an http(s) URL"),
        },
        FieldType::Number { min, max } => {
            let Some(x) = d.as_f64() else {
                return want("a number");
            };
            if min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m) {
                return Err(format!("default {x} is outside min/max"));
            }
            Ok(())
        }
        FieldType::Integer { min, max } => {
            let Some(x) = d.as_i64() else {
                return want("an integer");
            };
            if min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m) {
                return Err(format!("default {x} is outside min/max"));
            }
            Ok(())
        }
        FieldType::Bool => {
            if d.is_boolean() {
                Ok(())
            } else {
                want("true or false")
            }
        }
        FieldType::Date => match d.as_str() {
            Some(s) if fx::parse_date(s).is_some() => Ok(()),
            _ => want("a date like \"2024-01-31\" or \"2024-01-31T12:00:00Z\""),
        },
        FieldType::Select { values, multiple } => {
            let picked: Vec<&str> = match (multiple, d) {
                (false, Value::String(s)) => vec![s.as_str()],
                (true, Value::Array(a)) => {
                    match a.iter().map(Value::as_str).collect::<Option<Vec<_>>>() {
                        Some(v) => v,
                        None => return want("an array of strings"),
                    }
                }
                (false, _) => return want("one of the values"),
                (true, _) => return want("an array of values"),
            };
            match picked.iter().find(|p| !values.iter().any(|v| v == *p)) {
                Some(p) => Err(format!("default \"{p}\" is not one of the select values")),
                None => Ok(()),
            }
        }
        FieldType::Relation { multiple, .. } => match (multiple, d) {
            (false, Value::String(_)) => Ok(()),
            (true, Value::Array(a)) if a.iter().all(Value::is_string) => Ok(()),
            (false, _) => want("a record id"),
            (true, _) => want("an array of record ids"),
        },
        FieldType::File { .. } => Err("file fields cannot have a default".to_owned()),
        FieldType::Json => Ok(()),
        FieldType::Geo => {
            let ok = d.as_object().is_some_and(|o| {
                o.len() == 2
                    && o.get("lat")
                        .and_then(Value::as_f64)
                        .is_some_and(|x| (-90.0..=90.0).contains(&x))
                    && o.get("lon")
                        .and_then(Value::as_f64)
                        .is_some_and(|x| (-180.0..=180.0).contains(&x))
            });
            if ok {
                Ok(())
            } else {
                want("a point { lat = <-90..90>, lon = <-180..180> }")
            }
        }
    }
}

/// Set-level checks across collections. `loc_of` locates each collection's definition.
pub(crate) fn check_set<'a>(
    collections: &'a [Collection],
    loc_of: &dyn Fn(&str) -> Loc<'a>,
) -> Vec<SchemaError> {
    let mut errs = Vec::new();
    if collections.len() > MAX_COLLECTIONS {
        errs.push(SchemaError::new(format!(
            "too many collections ({}; at most {MAX_COLLECTIONS})",
            collections.len()
        )));
    }
    let mut count: HashMap<&str, usize> = HashMap::new();
    for c in collections {
        *count.entry(c.name.as_str()).or_default() += 1;
    }
    let mut reported = HashSet::new();
    for c in collections {
        if count.get(c.name.as_str()).copied().unwrap_or(0) > 1 && reported.insert(c.name.as_str())
        {
            errs.push(loc_of(&c.name).err(
                &["name"],
                Some(&c.name),
                None,
                format!("collection \"{}\" is declared more than once", c.name),
            ));
        }
        for (fname, f) in &c.fields {
            if let FieldType::Relation { collection, .. } = &f.ty
                && !count.contains_key(collection.as_str())
                && !BUILTIN_COLLECTIONS.contains(&collection.as_str())
            {
                errs.push(loc_of(&c.name).err(
                    &["fields", fname, "collection"],
                    Some(&c.name),
                    Some(fname),
                    format!("relation to unknown collection \"{collection}\""),
                ));
            }
        }
    }
    errs
}

/// Validates a whole set of collections (what `apply` would install): every per-collection
/// check plus the cross-collection ones. Errors carry collection and field, and no file
/// or line (use `load_project` for located errors).
pub fn validate(collections: &[Collection]) -> Result<(), Vec<SchemaError>> {
    let mut errs: Vec<SchemaError> = collections
        .iter()
        .flat_map(|c| check_collection(c, &Loc::NONE, true))
        .collect();
    errs.extend(check_set(collections, &|_| Loc::NONE));
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_patterns() {
        assert!(is_identifier("a"));
        assert!(is_identifier("post_2"));
        assert!(is_identifier(&"a".repeat(63)));
        for bad in ["", "_a", "1a", "A", "a-b", "a b", "é", &"a".repeat(64)] {
            assert!(!is_identifier(bad), "{bad:?}");
        }
        assert!(matches(&TRIGGER_KEY, "before_create"));
        assert!(!matches(&TRIGGER_KEY, "on_create"));
        assert!(matches(
            &TRIGGER_TARGET,
            "triggers/posts.rhai#before_create"
        ));
        assert!(!matches(&TRIGGER_TARGET, "/abs.rhai#f"));
        assert!(matches(&MIME, "image/*"));
        assert!(matches(&MIME, "application/vnd.api+json"));
        assert!(!matches(&MIME, "image"));
    }
}
