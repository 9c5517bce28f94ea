//! List queries: the caller's rule and filter compiled into one parameterized WHERE, keyset
//! (cursor) paging on the requested sort, optional counts, field selection and one level of
//! expand — each expanded collection held to its own view rule.

use std::collections::HashMap;

use base64::Engine;
use ferrobase_schema::FieldType;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Actor, expr_sql, row_to_record};
use crate::access::{Access, Op, access};
use crate::catalog::{Catalog, CollectionInfo};
use crate::db::{ColType, Conn, Param};
use crate::error::{Code, Error};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;
const MAX_SORT_KEYS: usize = 8;
const MAX_EXPAND: usize = 10;

/// The raw query string of a list request. Every value is parsed here so a bad one names its
/// parameter (`bad_request`) instead of failing generically.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A filter in the expression language, e.g. `published = true && title ~ 'rust'`.
    pub filter: Option<String>,
    /// Comma-separated fields, `-` for descending (default `created_at`, then `id`).
    #[param(example = "-created_at")]
    pub sort: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page (same `sort`).
    pub cursor: Option<String>,
    /// Comma-separated fields to return (`id` is always included).
    pub fields: Option<String>,
    /// Comma-separated relation fields to inline under `expand`.
    pub expand: Option<String>,
    /// `true` adds `total` (matching records in all pages).
    #[param(value_type = Option<bool>)]
    pub count: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct ListPage {
    pub items: Vec<Map<String, Value>>,
    pub next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

fn bad(param: &str, message: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("Invalid `{param}`: {message}")).with("parameter", param)
}

struct SortKey {
    column: String,
    col: ColType,
    desc: bool,
}

fn parse_sort(info: &CollectionInfo, sort: Option<&str>) -> Result<Vec<SortKey>, Error> {
    let spec = sort.unwrap_or("created_at");
    let mut keys: Vec<SortKey> = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let (desc, name) = match part.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, part.strip_prefix('+').unwrap_or(part)),
        };
        let col = info
            .column(name)
            .ok_or_else(|| bad("sort", format!("`{}` is not a field", truncate(name))))?;
        if col.col == ColType::Json {
            return Err(bad("sort", format!("`{name}` cannot be sorted")));
        }
        if keys.iter().any(|k| k.column == name) {
            return Err(bad("sort", format!("`{name}` appears twice")));
        }
        keys.push(SortKey {
            column: name.to_owned(),
            col: col.col,
            desc,
        });
        if keys.len() > MAX_SORT_KEYS {
            return Err(bad("sort", format!("at most {MAX_SORT_KEYS} fields")));
        }
    }
    // `id` breaks ties, so the order (and so the cursor) is total.
    if !keys.iter().any(|k| k.column == "id") {
        keys.push(SortKey {
            column: "id".into(),
            col: ColType::Text,
            desc: false,
        });
    }
    Ok(keys)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A cursor value (as shown in a record) back to a typed parameter.
fn cursor_param(v: &Value, col: ColType) -> Option<Param> {
    if v.is_null() {
        return Some(Param::Null);
    }
    Some(match col {
        ColType::Text => Param::Text(v.as_str().filter(|s| !s.contains('\0'))?.to_owned()),
        ColType::Int => Param::Int(v.as_i64()?),
        ColType::Float => Param::Float(v.as_f64()?),
        ColType::Bool => Param::Bool(v.as_bool()?),
        ColType::Time => Param::Time(ferrobase_expr::parse_date(v.as_str()?)?),
        ColType::Json => return None,
    })
}

fn encode_cursor(sort_spec: &str, values: Vec<Value>) -> String {
    let raw = json!({"s": sort_spec, "v": values}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str, sort_spec: &str, keys: &[SortKey]) -> Result<Vec<Param>, Error> {
    let invalid = || bad("cursor", "not a cursor returned by this list");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.as_bytes())
        .map_err(|_| invalid())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| invalid())?;
    if v.get("s").and_then(Value::as_str) != Some(sort_spec) {
        return Err(bad("cursor", "it was made for another sort order"));
    }
    let values = v.get("v").and_then(Value::as_array).ok_or_else(invalid)?;
    if values.len() != keys.len() {
        return Err(invalid());
    }
    values
        .iter()
        .zip(keys)
        .map(|(v, k)| cursor_param(v, k.col).ok_or_else(invalid))
        .collect()
}

/// `(k1, k2, …) > (v1, v2, …)` in the sort's own directions, NULLs first ascending and last
/// descending (the same on both dialects).
fn after_cursor(keys: &[SortKey], values: Vec<Param>, params: &mut Vec<Param>) -> String {
    let mut ors = Vec::new();
    let mut eqs: Vec<String> = Vec::new();
    for (k, v) in keys.iter().zip(values) {
        let col = format!("\"{}\"", k.column);
        let (after, eq) = if v == Param::Null {
            let after = if k.desc {
                "FALSE".to_owned()
            } else {
                format!("{col} IS NOT NULL")
            };
            (after, format!("{col} IS NULL"))
        } else {
            params.push(v);
            let p = params.len();
            let after = if k.desc {
                format!("({col} < ${p} OR {col} IS NULL)")
            } else {
                format!("{col} > ${p}")
            };
            (after, format!("{col} = ${p}"))
        };
        let mut term = eqs.clone();
        term.push(after);
        ors.push(format!("({})", term.join(" AND ")));
        eqs.push(eq);
    }
    format!("({})", ors.join(" OR "))
}

fn parse_limit(limit: Option<&str>) -> Result<usize, Error> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(bad(
                "limit",
                format!("must be a whole number from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

fn parse_bool(param: &str, v: Option<&str>) -> Result<bool, Error> {
    match v {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(bad(param, "must be true or false")),
    }
}

/// Lists records of `info` visible to `actor`.
pub async fn list_in(
    c: &mut Conn<'_>,
    catalog: &Catalog,
    info: &CollectionInfo,
    actor: &Actor,
    q: &ListQuery,
) -> Result<ListPage, Error> {
    let limit = parse_limit(q.limit.as_deref())?;
    let count = parse_bool("count", q.count.as_deref())?;
    let keys = parse_sort(info, q.sort.as_deref())?;
    let sort_spec = q.sort.clone().unwrap_or_default();
    let fields = parse_fields(info, q.fields.as_deref())?;
    let expand = parse_expand(info, q.expand.as_deref())?;
    let dialect = c.dialect();
    let mut params = Vec::new();
    let mut conds = conditions(info, actor, q.filter.as_deref(), dialect, &mut params)?;
    let total = if count {
        let row = c
            .fetch_one(&count_sql(info, &conds), &params, &[ColType::Int])
            .await?;
        Some(
            row.and_then(|r| r.first().and_then(Param::as_i64))
                .unwrap_or(0),
        )
    } else {
        None
    };
    if let Some(cursor) = q.cursor.as_deref() {
        let values = decode_cursor(cursor, &sort_spec, &keys)?;
        conds.push(after_cursor(&keys, values, &mut params));
    }
    let mut sql = format!("SELECT {} FROM \"{}\"", info.select_list, info.table);
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    let order = keys
        .iter()
        .map(|k| {
            if k.desc {
                format!("\"{}\" DESC NULLS LAST", k.column)
            } else {
                format!("\"{}\" ASC NULLS FIRST", k.column)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    sql.push_str(&format!(" ORDER BY {order} LIMIT {}", limit + 1));
    let mut rows = c.fetch(&sql, &params, &info.col_types).await?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let mut items: Vec<Map<String, Value>> =
        rows.into_iter().map(|r| row_to_record(info, r)).collect();
    let next_cursor = match (has_more, items.last()) {
        (true, Some(last)) => Some(encode_cursor(
            &sort_spec,
            keys.iter()
                .map(|k| last.get(&k.column).cloned().unwrap_or(Value::Null))
                .collect(),
        )),
        _ => None,
    };
    decorate(
        c,
        catalog,
        info,
        actor,
        &mut items,
        fields.as_deref(),
        &expand,
    )
    .await?;
    Ok(ListPage {
        items,
        next_cursor,
        total,
    })
}

/// The WHERE conditions every list shares: the caller's list rule, then the filter.
fn conditions(
    info: &CollectionInfo,
    actor: &Actor,
    filter: Option<&str>,
    dialect: ferrobase_expr::Dialect,
    params: &mut Vec<Param>,
) -> Result<Vec<String>, Error> {
    let ctx = actor.ctx(None);
    let mut conds = Vec::new();
    if let Access::Rule(rule) = access(
        &actor.principal,
        info.rules.list.as_ref(),
        Op::List,
        info.name(),
    )? {
        conds.push(expr_sql(rule, info, &ctx, dialect, params)?);
    }
    if let Some(filter) = filter.filter(|f| !f.trim().is_empty()) {
        let expr = ferrobase_expr::parse(filter).map_err(filter_error)?;
        ferrobase_expr::check(&expr, &info.def.scope(None)).map_err(filter_error)?;
        conds.push(expr_sql(&expr, info, &ctx, dialect, params)?);
    }
    Ok(conds)
}

/// `total` for `count=true`: a bare `SELECT count(*) FROM t WHERE <rule and filter>` (no
/// order, no columns, no cursor, no joins), so both dialects can answer it from an index on
/// the rule's or filter's leading fields (a covering index scan) instead of the table. It
/// still visits every matching index entry: exact counts cost time linear in the matches.
fn count_sql(info: &CollectionInfo, conds: &[String]) -> String {
    let mut sql = format!("SELECT count(*) FROM \"{}\"", info.table);
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql
}

/// The statement and parameters `count=true` runs for `actor` listing `info` with `filter`
/// (for query-plan checks).
pub fn count_query(
    info: &CollectionInfo,
    actor: &Actor,
    filter: Option<&str>,
    dialect: ferrobase_expr::Dialect,
) -> Result<(String, Vec<Param>), Error> {
    let mut params = Vec::new();
    let conds = conditions(info, actor, filter, dialect, &mut params)?;
    Ok((count_sql(info, &conds), params))
}

fn filter_error(e: ferrobase_expr::ExprError) -> Error {
    Error::new(Code::InvalidFilter, e.message).with("position", e.position)
}

/// `fields=id,title` → the names to keep (`id` always), validated.
pub fn parse_fields(
    info: &CollectionInfo,
    fields: Option<&str>,
) -> Result<Option<Vec<String>>, Error> {
    let Some(spec) = fields.filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let mut out = vec!["id".to_owned()];
    for name in spec.split(',').map(str::trim) {
        if name == "expand" {
            out.push(name.to_owned());
            continue;
        }
        if info.column(name).is_none() {
            return Err(bad(
                "fields",
                format!("`{}` is not a field", truncate(name)),
            ));
        }
        if !out.iter().any(|x| x == name) {
            out.push(name.to_owned());
        }
    }
    Ok(Some(out))
}

/// `expand=author,tags` → relation fields and their target collections, validated.
pub fn parse_expand(
    info: &CollectionInfo,
    expand: Option<&str>,
) -> Result<Vec<(String, String, bool)>, Error> {
    let Some(spec) = expand.filter(|s| !s.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(String, String, bool)> = Vec::new();
    for name in spec.split(',').map(str::trim) {
        match info.def.fields.get(name).map(|f| &f.ty) {
            Some(FieldType::Relation {
                collection,
                multiple,
            }) => {
                if !out.iter().any(|(n, _, _)| n == name) {
                    out.push((name.to_owned(), collection.clone(), *multiple));
                }
            }
            Some(_) => return Err(bad("expand", format!("`{name}` is not a relation"))),
            None => {
                return Err(bad(
                    "expand",
                    format!("`{}` is not a field", truncate(name)),
                ));
            }
        }
    }
    if out.len() > MAX_EXPAND {
        return Err(bad("expand", format!("at most {MAX_EXPAND} relations")));
    }
    Ok(out)
}

/// Applies expand (one level, each target's view rule) and field selection to `items`.
pub async fn decorate(
    c: &mut Conn<'_>,
    catalog: &Catalog,
    _info: &CollectionInfo,
    actor: &Actor,
    items: &mut [Map<String, Value>],
    fields: Option<&[String]>,
    expand: &[(String, String, bool)],
) -> Result<(), Error> {
    for (field, target_name, multiple) in expand {
        let mut ids: Vec<String> = Vec::new();
        for item in items.iter() {
            match item.get(field) {
                Some(Value::String(s)) => ids.push(s.clone()),
                Some(Value::Array(a)) => {
                    ids.extend(a.iter().filter_map(|v| v.as_str().map(str::to_owned)))
                }
                _ => {}
            }
        }
        ids.sort();
        ids.dedup();
        let found = match catalog.get(target_name) {
            Some(target) => fetch_viewable(c, &target, actor, &ids).await?,
            None => HashMap::new(),
        };
        for item in items.iter_mut() {
            let value = match item.get(field) {
                Some(Value::String(s)) => found
                    .get(s)
                    .cloned()
                    .map(Value::Object)
                    .unwrap_or(Value::Null),
                Some(Value::Array(a)) if *multiple => Value::Array(
                    a.iter()
                        .filter_map(|v| {
                            v.as_str()
                                .and_then(|s| found.get(s))
                                .cloned()
                                .map(Value::Object)
                        })
                        .collect(),
                ),
                _ => Value::Null,
            };
            let exp = item
                .entry("expand")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = exp {
                m.insert(field.clone(), value);
            }
        }
    }
    if let Some(fields) = fields {
        for item in items.iter_mut() {
            item.retain(|k, _| fields.iter().any(|f| f == k));
        }
    }
    Ok(())
}

/// Records of `target` among `ids` that `actor` may view, by id.
async fn fetch_viewable(
    c: &mut Conn<'_>,
    target: &CollectionInfo,
    actor: &Actor,
    ids: &[String],
) -> Result<HashMap<String, Map<String, Value>>, Error> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let rule = match access(
        &actor.principal,
        target.rules.view.as_ref(),
        Op::View,
        target.name(),
    ) {
        Ok(r) => r,
        Err(_) => return Ok(out),
    };
    for chunk in ids.chunks(500) {
        let mut params: Vec<Param> = chunk.iter().map(|s| Param::Text(s.clone())).collect();
        let placeholders = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!(
            "SELECT {} FROM \"{}\" WHERE \"id\" IN ({placeholders})",
            target.select_list, target.table
        );
        if let Access::Rule(rule) = rule {
            let cond = expr_sql(rule, target, &actor.ctx(None), c.dialect(), &mut params)?;
            sql.push_str(" AND ");
            sql.push_str(&cond);
        }
        for row in c.fetch(&sql, &params, &target.col_types).await? {
            let rec = row_to_record(target, row);
            if let Some(Value::String(id)) = rec.get("id") {
                out.insert(id.clone(), rec);
            }
        }
    }
    Ok(out)
}
