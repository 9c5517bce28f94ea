//! Records: create, view, update, delete, list and batch over one collection's table.
//!
//! Layout:
//! - `validate`: request bodies → column values.
//! - `list`: filtered, sorted, cursor-paged queries with counts, field selection and expand.
//! - this file: single-record operations. Each write is a plain function over an open
//!   connection (`*_in`), so a single request and a batch run exactly the same code. Each
//!   does at most one write statement; the change log row is appended by the table's trigger
//!   in that same statement (see `schemas`).

pub mod list;
pub mod validate;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferrobase_expr::{AuthContext, Context, SqlParam};
use serde_json::{Map, Value};

use crate::access::{Access, Op, Principal, access};
use crate::catalog::{Catalog, CollectionInfo};
use crate::db::{ColType, Conn, Param, Values};
use crate::error::{Code, Error};
use validate::{Mode, RelationRef};

/// Who writes, and when: shared by every operation of one request (or batch).
#[derive(Clone)]
pub struct Actor {
    pub principal: Principal,
    pub auth: AuthContext,
    pub now: DateTime<Utc>,
}

impl Actor {
    pub fn new(principal: Principal) -> Self {
        let auth = principal.auth_context();
        Actor {
            principal,
            auth,
            now: Utc::now(),
        }
    }
    fn ctx<'a>(&'a self, data: Option<&'a Map<String, Value>>) -> Context<'a> {
        Context {
            auth: &self.auth,
            data,
            now: self.now,
        }
    }
}

/// A database value as the API shows it.
pub fn to_json(p: Param) -> Value {
    match p {
        Param::Null | Param::NullOf(_) => Value::Null,
        Param::Bool(b) => Value::Bool(b),
        Param::Int(i) => Value::from(i),
        Param::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Param::Text(s) => Value::String(s),
        Param::Time(t) => Value::String(ferrobase_expr::sqlite_time(&t)),
        Param::Json(v) => v,
    }
}

/// A row (in `select_list` order) → the record object.
pub fn row_to_record(info: &CollectionInfo, row: Values) -> Map<String, Value> {
    let mut out = Map::with_capacity(row.len());
    for (col, value) in info.columns.iter().zip(row) {
        out.insert(col.name.clone(), to_json(value));
    }
    out
}

/// Appends `sql` of an expression (rule or filter) to `params`, mapping expression errors.
pub fn expr_sql(
    expr: &ferrobase_expr::Expr,
    info: &CollectionInfo,
    ctx: &Context<'_>,
    dialect: ferrobase_expr::Dialect,
    params: &mut Vec<Param>,
) -> Result<String, Error> {
    let mut sp: Vec<SqlParam> = Vec::new();
    // Placeholders are numbered after the caller's params.
    sp.resize(params.len(), SqlParam::Null);
    let sql = ferrobase_expr::to_sql(expr, &info.def.scope(None), ctx, dialect, &mut sp).map_err(
        |e| Error::new(Code::InvalidFilter, e.message.clone()).with("position", e.position),
    )?;
    params.extend(sp.into_iter().skip(params.len()).map(Param::from));
    Ok(sql)
}

fn not_found(info: &CollectionInfo, id: &str) -> Error {
    Error::not_found(format!(
        "No record `{}` in `{}`.",
        id.chars().take(64).collect::<String>(),
        info.name()
    ))
}

/// Fetches one record if `actor` may view it (404 otherwise: existence is not revealed).
pub async fn view_in(
    c: &mut Conn<'_>,
    info: &CollectionInfo,
    actor: &Actor,
    id: &str,
) -> Result<Map<String, Value>, Error> {
    let mut params = vec![Param::Text(id.to_owned())];
    let mut sql = format!(
        "SELECT {} FROM \"{}\" WHERE \"id\" = $1",
        info.select_list, info.table
    );
    match access(
        &actor.principal,
        info.rules.view.as_ref(),
        Op::View,
        info.name(),
    )? {
        Access::Bypass => {}
        Access::Rule(rule) => {
            let cond = expr_sql(rule, info, &actor.ctx(None), c.dialect(), &mut params)?;
            sql.push_str(" AND ");
            sql.push_str(&cond);
        }
    }
    let row = c.fetch_one(&sql, &params, &info.col_types).await?;
    row.map(|r| row_to_record(info, r))
        .ok_or_else(|| not_found(info, id))
}

/// The ids among `ids` of `target` that `actor` may view.
async fn viewable_ids(
    c: &mut Conn<'_>,
    target: &CollectionInfo,
    actor: &Actor,
    ids: &[String],
) -> Result<Vec<String>, Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut params: Vec<Param> = ids.iter().map(|s| Param::Text(s.clone())).collect();
    let placeholders = (1..=ids.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!(
        "SELECT \"id\" FROM \"{}\" WHERE \"id\" IN ({placeholders})",
        target.table
    );
    // A key that may write any record may also point at any record: existence is enough.
    let rule = if actor.principal.has_scope("records:write") {
        Access::Bypass
    } else {
        match access(
            &actor.principal,
            target.rules.view.as_ref(),
            Op::View,
            target.name(),
        ) {
            Ok(a) => a,
            // A relation to a collection the writer may not view at all: nothing is viewable.
            Err(_) => return Ok(Vec::new()),
        }
    };
    if let Access::Rule(rule) = rule {
        let cond = expr_sql(rule, target, &actor.ctx(None), c.dialect(), &mut params)?;
        sql.push_str(" AND ");
        sql.push_str(&cond);
    }
    let rows = c.fetch(&sql, &params, &[ColType::Text]).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().and_then(Param::into_string))
        .collect())
}

/// Every relation must point to an existing record the writer may view.
async fn check_relations(
    c: &mut Conn<'_>,
    catalog: &Catalog,
    actor: &Actor,
    relations: &[RelationRef],
) -> Result<(), Error> {
    let mut errors = std::collections::BTreeMap::new();
    for r in relations {
        let Some(target) = catalog.get(&r.collection) else {
            errors.insert(
                r.field.clone(),
                format!("collection `{}` does not exist", r.collection),
            );
            continue;
        };
        let found = viewable_ids(c, &target, actor, &r.ids).await?;
        if let Some(missing) = r.ids.iter().find(|id| !found.contains(id)) {
            errors.insert(
                r.field.clone(),
                format!("no record `{missing}` in `{}`", r.collection),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::validation(errors))
    }
}

/// A unique-index violation → 409 naming the fields, else the database error.
fn map_write_error(info: &CollectionInfo, e: crate::db::DbError) -> Error {
    match e.unique_violation_fields() {
        Some(fields) if fields == ["id"] => Error::conflict(format!(
            "A record with this id already exists in `{}`.",
            info.name()
        ))
        .with("errors", serde_json::json!({"id": "already exists"})),
        Some(fields) if fields.is_empty() => Error::conflict(format!(
            "A unique value of `{}` is already taken.",
            info.name()
        )),
        Some(fields) => {
            let errors: Map<String, Value> = fields
                .iter()
                .map(|f| (f.clone(), Value::from("must be unique")))
                .collect();
            Error::conflict(format!(
                "The value of {} must be unique.",
                fields.join(", ")
            ))
            .with("errors", Value::Object(errors))
        }
        None => e.into(),
    }
}

/// Creates a record. `body` may carry a client-chosen UUID `id`.
/// `uploads`: files this request uploaded for the new record, by field (the only file names
/// its file fields may hold).
pub async fn create_in(
    c: &mut Conn<'_>,
    catalog: &Catalog,
    info: &CollectionInfo,
    actor: &Actor,
    body: &Map<String, Value>,
    uploads: &[(String, Vec<String>)],
) -> Result<Map<String, Value>, Error> {
    let merged = with_uploads(info, body, None, uploads)?;
    let body = &merged;
    let uploaded: Vec<String> = uploads.iter().flat_map(|(_, n)| n.clone()).collect();
    if info.name() == "users" {
        return Err(Error::forbidden(
            "Users are created by signing up (POST /v1/auth/signup).",
        ));
    }
    let rule = access(
        &actor.principal,
        info.rules.create.as_ref(),
        Op::Create,
        info.name(),
    )?;
    let id = match body.get("id") {
        None => uuid::Uuid::now_v7().to_string(),
        Some(Value::String(s)) => match uuid::Uuid::parse_str(s) {
            Ok(u) => u.hyphenated().to_string(),
            Err(_) => return Err(Error::field("id", "must be a UUID (v7 recommended)")),
        },
        Some(_) => return Err(Error::field("id", "must be a UUID string")),
    };
    let checked = validate::validate(info, body, Mode::Create)?;
    file_changes(info, None, &checked.values, &uploaded)?;
    if let Access::Rule(rule) = rule {
        // The create rule sees the record as it would be stored.
        let mut candidate = Map::new();
        candidate.insert("id".into(), Value::String(id.clone()));
        let now = Value::String(ferrobase_expr::sqlite_time(&actor.now));
        candidate.insert("created_at".into(), now.clone());
        candidate.insert("updated_at".into(), now);
        candidate.insert("version".into(), Value::from(1));
        for (k, v) in &checked.values {
            candidate.insert(k.clone(), to_json(v.clone()));
        }
        let allowed = ferrobase_expr::eval(
            rule,
            &candidate,
            &info.def.scope(None),
            &actor.ctx(Some(body)),
            c.dialect(),
        )
        .map_err(|e| Error::internal(format!("create rule of {}: {e}", info.name())))?;
        if !allowed {
            return Err(actor
                .principal
                .denied(&format!("create this record in `{}`", info.name())));
        }
    }
    check_relations(c, catalog, actor, &checked.relations).await?;
    let mut cols = vec![
        "\"id\"".to_owned(),
        "\"created_at\"".into(),
        "\"updated_at\"".into(),
        "\"version\"".into(),
    ];
    let mut params = vec![
        Param::Text(id.clone()),
        Param::Time(actor.now),
        Param::Time(actor.now),
        Param::Int(1),
    ];
    for (name, value) in checked.values {
        cols.push(format!("\"{name}\""));
        params.push(value);
    }
    let placeholders = (1..=params.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO \"{}\" ({}) VALUES ({placeholders}) RETURNING {}",
        info.table,
        cols.join(", "),
        info.select_list
    );
    let row = c
        .fetch_one(&sql, &params, &info.col_types)
        .await
        .map_err(|e| map_write_error(info, e))?
        .ok_or_else(|| Error::internal("INSERT returned no row"))?;
    Ok(row_to_record(info, row))
}

/// Loads the target of an update/delete with the view check and the operation's rule result.
async fn load_for_write(
    c: &mut Conn<'_>,
    info: &CollectionInfo,
    actor: &Actor,
    id: &str,
    op: Op,
    body: Option<&Map<String, Value>>,
) -> Result<Map<String, Value>, Error> {
    let op_rule = match op {
        Op::Update => info.rules.update.as_ref(),
        _ => info.rules.delete.as_ref(),
    };
    let verb = if op == Op::Update { "update" } else { "delete" };
    let mut params = vec![Param::Text(id.to_owned())];
    let ctx = actor.ctx(body);
    let (allowed_sql, view_cond) = match access(&actor.principal, op_rule, op, info.name()) {
        Ok(Access::Bypass) => ("TRUE".to_owned(), None),
        Ok(Access::Rule(rule)) => {
            let allowed = expr_sql(rule, info, &ctx, c.dialect(), &mut params)?;
            let view = match access(
                &actor.principal,
                info.rules.view.as_ref(),
                Op::View,
                info.name(),
            ) {
                Ok(Access::Rule(v)) => Some(expr_sql(v, info, &ctx, c.dialect(), &mut params)?),
                Ok(Access::Bypass) => None,
                // Cannot view: the record is as good as absent for this caller.
                Err(_) => Some("FALSE".to_owned()),
            };
            (allowed, view)
        }
        Err(e) => {
            // Locked: say so only about records the caller can see.
            let visible = view_in(c, info, actor, id).await;
            return Err(match visible {
                Ok(_) => e,
                Err(not_visible) => not_visible,
            });
        }
    };
    let mut sql = format!(
        "SELECT {}, {allowed_sql} FROM \"{}\" WHERE \"id\" = $1",
        info.select_list, info.table
    );
    if let Some(v) = view_cond {
        sql.push_str(" AND ");
        sql.push_str(&v);
    }
    let mut types = info.col_types.clone();
    types.push(ColType::Bool);
    let mut row = c
        .fetch_one(&sql, &params, &types)
        .await?
        .ok_or_else(|| not_found(info, id))?;
    let allowed = matches!(row.pop(), Some(Param::Bool(true)));
    if !allowed {
        return Err(actor
            .principal
            .denied(&format!("{verb} this record of `{}`", info.name())));
    }
    Ok(row_to_record(info, row))
}

/// Whether `actor` may update record `id` (404 when hidden, 401/403 when not allowed), checked
/// before a file upload streams anything.
pub async fn check_update(
    c: &mut Conn<'_>,
    info: &CollectionInfo,
    actor: &Actor,
    id: &str,
) -> Result<(), Error> {
    load_for_write(c, info, actor, id, Op::Update, None)
        .await
        .map(|_| ())
}

/// Updates some fields of a record. `if_match` is the version the client last saw.
/// `uploads` as for [`create_in`]: a single file field takes the new file, a multiple one
/// appends it (to the body's list when the body sets the field, else to the record's). File
/// names the update drops are collected (deleted from storage) after it commits.
#[allow(clippy::too_many_arguments)]
pub async fn update_in(
    c: &mut Conn<'_>,
    catalog: &Catalog,
    info: &CollectionInfo,
    actor: &Actor,
    id: &str,
    body: &Map<String, Value>,
    if_match: Option<i64>,
    uploads: &[(String, Vec<String>)],
) -> Result<Map<String, Value>, Error> {
    let current = load_for_write(c, info, actor, id, Op::Update, Some(body)).await?;
    let merged = with_uploads(info, body, Some(&current), uploads)?;
    let body = &merged;
    let uploaded: Vec<String> = uploads.iter().flat_map(|(_, n)| n.clone()).collect();
    // An invalid body is refused (422) before a stale version (412): retrying with a fresh
    // version would not help it.
    let checked = validate::validate(info, body, Mode::Update)?;
    let dropped = file_changes(info, Some(&current), &checked.values, &uploaded)?;
    let expected = enforced_version(info, if_match);
    if let Some(expected) = expected
        && current.get("version").and_then(Value::as_i64) != Some(expected)
    {
        return Err(version_mismatch(current));
    }
    check_relations(c, catalog, actor, &checked.relations).await?;
    let mut sets = vec![
        "\"updated_at\" = $2".to_owned(),
        "\"version\" = \"version\" + 1".into(),
    ];
    let mut params = vec![Param::Text(id.to_owned()), Param::Time(actor.now)];
    for (name, value) in checked.values {
        params.push(value);
        sets.push(format!("\"{name}\" = ${}", params.len()));
    }
    // The version is checked by the UPDATE itself too: on PostgreSQL (no transaction around a
    // single write) another write may land between the read above and this statement.
    let mut filter = String::new();
    if let Some(expected) = expected {
        params.push(Param::Int(expected));
        filter = format!(" AND \"version\" = ${}", params.len());
    }
    let sql = format!(
        "UPDATE \"{}\" SET {} WHERE \"id\" = $1{filter} RETURNING {}",
        info.table,
        sets.join(", "),
        info.select_list
    );
    let row = c
        .fetch_one(&sql, &params, &info.col_types)
        .await
        .map_err(|e| map_write_error(info, e))?;
    match row {
        Some(row) => {
            crate::files::collect_later(c, info.name(), id, &dropped, std::time::Duration::ZERO)
                .await?;
            Ok(row_to_record(info, row))
        }
        None => Err(lost_race(c, info, actor, id).await),
    }
}

/// The body with this request's uploaded files put into their fields.
fn with_uploads(
    info: &CollectionInfo,
    body: &Map<String, Value>,
    current: Option<&Map<String, Value>>,
    uploads: &[(String, Vec<String>)],
) -> Result<Map<String, Value>, Error> {
    let mut out = body.clone();
    for (field, names) in uploads {
        let multiple = matches!(
            info.column(field).and_then(|c| c.field.as_ref()),
            Some(ferrobase_schema::FieldType::File { multiple: true, .. })
        );
        if multiple {
            let mut list = match body.get(field) {
                Some(v) => crate::files::names_in(Some(v)),
                None => crate::files::names_in(current.and_then(|c| c.get(field))),
            };
            list.extend(names.iter().cloned());
            out.insert(field.clone(), Value::from(list));
        } else {
            match names.as_slice() {
                [one] => {
                    out.insert(field.clone(), Value::String(one.clone()));
                }
                _ => return Err(Error::field(field, "takes one file")),
            }
        }
    }
    Ok(out)
}

/// Checks the file names a write puts into file fields: each must be one the record holds
/// already or one this request uploaded (a client cannot point a record at files it did not
/// upload, nor leave a dangling name). Returns the names the write drops.
fn file_changes(
    info: &CollectionInfo,
    current: Option<&Map<String, Value>>,
    values: &[(String, Param)],
    uploaded: &[String],
) -> Result<Vec<String>, Error> {
    let mut dropped = Vec::new();
    for field in crate::files::file_fields(info) {
        let Some((_, value)) = values.iter().find(|(n, _)| n == field) else {
            continue;
        };
        let had = crate::files::names_in(current.and_then(|c| c.get(field)));
        let now = crate::files::names_in(Some(&to_json(value.clone())));
        if let Some(unknown) = now
            .iter()
            .find(|n| !had.contains(n) && !uploaded.contains(n))
        {
            return Err(Error::field(
                field,
                format!(
                    "`{}` is not a file of this record; upload files with a multipart request or PUT …/files/{field}",
                    unknown.chars().take(80).collect::<String>()
                ),
            ));
        }
        dropped.extend(had.into_iter().filter(|n| !now.contains(n)));
    }
    Ok(dropped)
}

/// The version an `If-Match` holds a write to, unless the collection lets the last write win.
fn enforced_version(info: &CollectionInfo, if_match: Option<i64>) -> Option<i64> {
    if_match.filter(|_| info.def.conflict != ferrobase_schema::ConflictPolicy::LastWriteWins)
}

fn version_mismatch(current: Map<String, Value>) -> Error {
    Error::new(
        Code::VersionMismatch,
        "The record changed since you read it; merge with `current` and retry.",
    )
    .with("current", Value::Object(current))
}

/// Why a write conditioned on a version found no row although the record was there a moment
/// before: changed (412 with the record as it is now) or deleted (404).
async fn lost_race(c: &mut Conn<'_>, info: &CollectionInfo, actor: &Actor, id: &str) -> Error {
    match view_in(c, info, actor, id).await {
        Ok(current) => version_mismatch(current),
        Err(e) => e,
    }
}

/// Deletes a record. With `if_match` (the version the client last saw) a record changed since
/// is kept and the caller gets 412 with it: an offline client's stale delete must not destroy
/// newer data.
pub async fn delete_in(
    c: &mut Conn<'_>,
    info: &CollectionInfo,
    actor: &Actor,
    id: &str,
    if_match: Option<i64>,
) -> Result<(), Error> {
    let current = load_for_write(c, info, actor, id, Op::Delete, None).await?;
    let mut params = vec![Param::Text(id.to_owned())];
    let mut sql = format!("DELETE FROM \"{}\" WHERE \"id\" = $1", info.table);
    if let Some(expected) = enforced_version(info, if_match) {
        if current.get("version").and_then(Value::as_i64) != Some(expected) {
            return Err(version_mismatch(current));
        }
        params.push(Param::Int(expected));
        sql.push_str(" AND \"version\" = $2");
    }
    if c.execute(&sql, &params).await? == 0 {
        return Err(lost_race(c, info, actor, id).await);
    }
    let files: Vec<String> = crate::files::file_fields(info)
        .into_iter()
        .flat_map(|f| crate::files::names_in(current.get(f)))
        .collect();
    crate::files::collect_later(c, info.name(), id, &files, std::time::Duration::ZERO).await?;
    Ok(())
}

/// Looks up a collection by name (404 when unknown).
pub fn collection(catalog: &Catalog, name: &str) -> Result<Arc<CollectionInfo>, Error> {
    catalog.get(name).ok_or_else(|| {
        Error::not_found(format!(
            "No collection `{}`.",
            name.chars().take(64).collect::<String>()
        ))
    })
}
