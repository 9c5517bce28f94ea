//! Reading a collection file: TOML syntax tree → JSON-shaped document + line map.
//!
//! We walk toml's spanned syntax tree (`DeTable`) ourselves instead of deriving
//! `Deserialize` so that (a) every error — not just the first — gets a line, and (b) the
//! declaration order of fields is kept (keys are ordered by their source position, which
//! works whatever map type toml was built with).

use std::collections::HashMap;

use serde_json::{Map, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::build::{Loc, build_collection_partial};
use crate::check::check_collection;
use crate::error::SchemaError;
use crate::model::Collection;

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A parsed TOML document: its JSON form and the line of every key path.
pub(crate) struct Located {
    pub value: Value,
    pub lines: HashMap<String, usize>,
}

/// Parses TOML text into a [`Located`] document. On a syntax error returns the message
/// and the line where it happened.
pub(crate) fn parse_located(text: &str) -> Result<Located, (Option<usize>, String)> {
    let root = DeTable::parse(text).map_err(|e| {
        (
            e.span().map(|s| line_of(text, s.start)),
            e.message().trim().to_owned(),
        )
    })?;
    let mut lines = HashMap::new();
    let mut path = Vec::new();
    let value = table_to_json(text, root.get_ref(), &mut path, &mut lines)
        .map_err(|(line, msg)| (Some(line), msg))?;
    Ok(Located { value, lines })
}

type ConvResult = Result<Value, (usize, String)>;

fn table_to_json(
    text: &str,
    table: &DeTable<'_>,
    path: &mut Vec<String>,
    lines: &mut HashMap<String, usize>,
) -> ConvResult {
    let mut entries: Vec<(&Spanned<std::borrow::Cow<'_, str>>, &Spanned<DeValue<'_>>)> =
        table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut map = Map::new();
    for (k, v) in entries {
        path.push(k.get_ref().to_string());
        let key_line = line_of(text, k.span().start);
        lines.insert(path.join("."), key_line);
        let converted = value_to_json(text, v, path, lines)?;
        path.pop();
        map.insert(k.get_ref().to_string(), converted);
    }
    Ok(Value::Object(map))
}

fn value_to_json(
    text: &str,
    v: &Spanned<DeValue<'_>>,
    path: &mut Vec<String>,
    lines: &mut HashMap<String, usize>,
) -> ConvResult {
    let line = line_of(text, v.span().start);
    Ok(match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => {
            let n = i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                .map_err(|_| (line, format!("integer {i} is out of range")))?;
            Value::from(n)
        }
        DeValue::Float(f) => {
            let x: f64 = f
                .as_str()
                .replace('_', "")
                .parse()
                .map_err(|_| (line, format!("invalid float {f}")))?;
            let n = serde_json::Number::from_f64(x)
                .ok_or_else(|| (line, format!("{f} is not a finite number")))?;
            Value::Number(n)
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                lines.insert(path.join("."), line_of(text, item.span().start));
                out.push(value_to_json(text, item, path, lines)?);
                path.pop();
            }
            Value::Array(out)
        }
        DeValue::Table(t) => table_to_json(text, t, path, lines)?,
    })
}

/// The file stem of a label like `collections/posts.toml` (`posts`); labels without a
/// `.toml` name (e.g. `<request>`) have none.
fn stem(label: &str) -> Option<&str> {
    let file = label.rsplit(['/', '\\']).next()?;
    file.strip_suffix(".toml").filter(|s| !s.is_empty())
}

/// Parses and checks one collection file. `file_label` is used in error messages
/// (`collections/posts.toml`) and, when it ends in `.toml`, fixes the collection name:
/// `name` must equal the file stem (and may be omitted, in which case the stem is used).
///
/// Everything that can be checked within one file is checked here (types, options,
/// identifiers, rules against this collection's fields); cross-collection checks
/// (relation targets, duplicate names) are [`crate::validate`]'s job.
pub fn parse_collection(file_label: &str, toml_text: &str) -> Result<Collection, Vec<SchemaError>> {
    parse_for_project(file_label, toml_text).map(|(c, _)| c)
}

/// Parses a collection file and keeps its line map (for `load_project`).
pub(crate) fn parse_for_project(
    file_label: &str,
    toml_text: &str,
) -> Result<(Collection, HashMap<String, usize>), Vec<SchemaError>> {
    let stem = stem(file_label);
    let located = parse_located(toml_text).map_err(|(line, msg)| {
        vec![SchemaError {
            file: Some(file_label.to_owned()),
            line,
            collection: stem.map(str::to_owned),
            field: None,
            message: format!("invalid TOML: {msg}"),
        }]
    })?;
    let loc = Loc {
        file: Some(file_label),
        lines: Some(&located.lines),
    };
    let (c, mut errs) = build_collection_partial(&located.value, &loc, stem);
    let Some(c) = c else { return Err(errs) };
    // With build errors, some fields are missing from `c`: skip the checks that would then
    // report them again as "unknown field" in rules and indexes.
    let complete = errs.is_empty();
    errs.extend(check_collection(&c, &loc, complete));
    if errs.is_empty() {
        Ok((c, located.lines))
    } else {
        Err(errs)
    }
}
