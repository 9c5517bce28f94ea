//! Applied schema versions: the current collections, planning a desired set against them, and
//! applying it — DDL and the new version row in one transaction, so an apply is all or nothing
//! and re-applying the same set is a no-op.

use std::collections::BTreeMap;

use chrono::Utc;
use ferrobase_schema::{Change, Collection};
use serde::Serialize;

use crate::catalog::{Catalog, CatalogHandle, CollectionInfo};
use crate::db::{ColType, Conn, Db, DbError, Param};
use crate::error::{Code, Error};

/// Serialises concurrent applies across PostgreSQL replicas.
const PG_APPLY_LOCK: i64 = 0x6662_5f73_6368;

/// Loads the latest applied version (version 0 and no collections on a fresh database).
pub async fn load(db: &Db) -> Result<Catalog, Error> {
    let (version, collections) = db
        .read(|mut c| Box::pin(async move { latest(&mut c).await }))
        .await?;
    Ok(Catalog::new(version, collections))
}

async fn latest(c: &mut Conn<'_>) -> Result<(i64, Vec<Collection>), Error> {
    let row = c
        .fetch_one(
            "SELECT version, collections FROM _fb_schema_versions ORDER BY version DESC LIMIT 1",
            &[],
            &[ColType::Int, ColType::Json],
        )
        .await?;
    match row {
        None => Ok((0, Vec::new())),
        Some(mut r) => {
            let json = std::mem::replace(&mut r[1], Param::Null);
            let version = r[0].as_i64().unwrap_or(0);
            let collections: Vec<Collection> = match json {
                Param::Json(v) => serde_json::from_value(v).map_err(Error::internal)?,
                _ => return Err(Error::internal("schema version row without collections")),
            };
            Ok((version, collections))
        }
    }
}

/// A schema errors list → `validation_failed` keyed by `collection.field`.
pub fn schema_errors(errors: Vec<ferrobase_schema::SchemaError>) -> Error {
    let mut map = BTreeMap::new();
    for e in errors {
        let key = match (&e.collection, &e.field) {
            (Some(c), Some(f)) => format!("{c}.{f}"),
            (Some(c), None) => c.clone(),
            _ => e.file.clone().unwrap_or_else(|| "schema".into()),
        };
        map.entry(key)
            .and_modify(|m: &mut String| {
                m.push_str("; ");
                m.push_str(&e.message);
            })
            .or_insert(e.message);
    }
    let mut err = Error::validation(map);
    err.detail = format!("The schema is invalid: {}", err.detail);
    err
}

/// The triggers that append every write of a collection to the change log, in the same
/// statement (safe to run on every apply). Names are validated identifiers.
///
/// Updates and deletes also log the record as it was (`old`), so realtime and sync can tell who
/// could see it before. On SQLite that JSON is spelled out per column, so the update and delete
/// triggers are rebuilt on every apply (the columns may have changed); PostgreSQL's shared
/// trigger function takes `to_jsonb(OLD)` and needs nothing per collection.
fn change_triggers(dialect: ferrobase_expr::Dialect, info: &CollectionInfo) -> Vec<String> {
    let name = info.name();
    match dialect {
        ferrobase_expr::Dialect::Sqlite => {
            let (new, old) = (sqlite_row_json(info, "NEW"), sqlite_row_json(info, "OLD"));
            vec![
                format!("DROP TRIGGER IF EXISTS \"c_{name}_ins\""),
                format!(
                    "CREATE TRIGGER \"c_{name}_ins\" AFTER INSERT ON \"c_{name}\" BEGIN INSERT INTO _fb_changes (collection, record_id, op, at, record) VALUES ('{name}', NEW.\"id\", 'create', NEW.\"updated_at\", {new}); END"
                ),
                format!("DROP TRIGGER IF EXISTS \"c_{name}_upd\""),
                format!(
                    "CREATE TRIGGER \"c_{name}_upd\" AFTER UPDATE ON \"c_{name}\" BEGIN INSERT INTO _fb_changes (collection, record_id, op, at, record, old) VALUES ('{name}', NEW.\"id\", 'update', NEW.\"updated_at\", {new}, {old}); END"
                ),
                format!("DROP TRIGGER IF EXISTS \"c_{name}_del\""),
                format!(
                    "CREATE TRIGGER \"c_{name}_del\" AFTER DELETE ON \"c_{name}\" BEGIN INSERT INTO _fb_changes (collection, record_id, op, at, old) VALUES ('{name}', OLD.\"id\", 'delete', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), {old}); END"
                ),
            ]
        }
        ferrobase_expr::Dialect::Postgres => vec![format!(
            "CREATE OR REPLACE TRIGGER \"c_{name}_changes\" AFTER INSERT OR UPDATE OR DELETE ON \"c_{name}\" FOR EACH ROW EXECUTE FUNCTION _fb_log_change('{name}')"
        )],
    }
}

/// `NEW` or `OLD` as a JSON object of the collection's API columns (SQLite). `json_object`
/// takes at most 127 arguments, so wide collections are built in chunks merged with
/// `json_patch` (which drops null members: readers treat a missing member as null).
fn sqlite_row_json(info: &CollectionInfo, row: &str) -> String {
    let pairs: Vec<String> = info
        .columns
        .iter()
        .map(|c| match c.col {
            ColType::Json => format!("'{0}', json({row}.\"{0}\")", c.name),
            _ => format!("'{0}', {row}.\"{0}\"", c.name),
        })
        .collect();
    pairs
        .chunks(50)
        .map(|chunk| format!("json_object({})", chunk.join(", ")))
        .reduce(|a, b| format!("json_patch({a}, {b})"))
        .unwrap_or_else(|| "NULL".into())
}

/// Collections whose view rule changes (or that go away) in moving from `current` to
/// `desired`: their realtime subscribers and sync clients must start over, because records
/// may have become visible or hidden without any change of their own.
fn rule_resets(current: &[Collection], desired: &[Collection]) -> Vec<String> {
    let (before, after) = (
        Catalog::new(0, current.to_vec()),
        Catalog::new(0, desired.to_vec()),
    );
    let mut names: Vec<String> = before.names();
    names.sort();
    names
        .into_iter()
        .filter(|n| match (before.get(n), after.get(n)) {
            (Some(b), Some(a)) => b.def.rules.view != a.def.rules.view,
            _ => true,
        })
        .collect()
}

fn validate(desired: &[Collection]) -> Result<(), Error> {
    ferrobase_schema::validate(desired).map_err(schema_errors)
}

/// The built-in `users` table always exists: planning and DDL see an (empty) `users`
/// collection on both sides unless one is declared, so a declared `users` only adds columns
/// and removing it never drops the table.
fn with_users(collections: &[Collection]) -> Vec<Collection> {
    let mut out = collections.to_vec();
    if !out.iter().any(|c| c.name == "users") {
        let mut users = Collection::new("users");
        users.rules = ferrobase_schema::Rules::default();
        out.push(users);
    }
    out
}

/// `push.toml`'s categories are well-formed (422 naming the category otherwise).
pub fn check_push(push: &ferrobase_schema::PushProject) -> Result<(), Error> {
    let errs = ferrobase_schema::validate_push(push);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(schema_errors(errs))
    }
}

/// The changes `desired` would make to the current schema.
pub fn plan(current: &Catalog, desired: &[Collection]) -> Result<Vec<Change>, Error> {
    validate(desired)?;
    Ok(ferrobase_schema::plan(
        &with_users(&current.collections),
        &with_users(desired),
    ))
}

#[derive(Debug, Serialize)]
pub struct ApplyOutcome {
    pub version: i64,
    pub applied: bool,
    pub changes: Vec<Change>,
}

/// Applies `desired`. Destructive changes are refused unless allowed. The plan is computed
/// again inside the transaction against the latest version, so concurrent applies cannot
/// interleave.
pub async fn apply(
    db: &Db,
    catalog: &CatalogHandle,
    desired: Vec<Collection>,
    push: Option<ferrobase_schema::PushProject>,
    allow_destructive: bool,
    applied_by: Option<String>,
    audit_as: Option<(crate::audit::Origin, crate::audit::Actor)>,
) -> Result<ApplyOutcome, Error> {
    validate(&desired)?;
    if let Some(p) = &push {
        check_push(p)?;
    }
    let dialect = db.dialect();
    let outcome = db
        .write(move |mut c| {
            Box::pin(async move {
                if c.dialect() == ferrobase_expr::Dialect::Postgres {
                    c.execute("SELECT pg_advisory_xact_lock($1)", &[Param::Int(PG_APPLY_LOCK)])
                        .await?;
                }
                let (version, current) = latest(&mut c).await?;
                let mut changes = ferrobase_schema::plan(&with_users(&current), &with_users(&desired));
                // Categories ride in the same transaction and version as the collections.
                if let Some(p) = &push {
                    let applied = crate::push::prefs::categories(&mut c).await?;
                    let category_changes = ferrobase_schema::plan_push(&applied, &p.categories);
                    if !category_changes.is_empty() {
                        crate::push::prefs::replace_categories(&mut c, &p.categories).await?;
                        changes.extend(category_changes);
                    }
                }
                if changes.is_empty() {
                    return Ok((version, false, changes, current));
                }
                let destructive: Vec<&str> = changes
                    .iter()
                    .filter(|ch| ch.destructive)
                    .map(|ch| ch.description.as_str())
                    .collect();
                if !destructive.is_empty() && !allow_destructive {
                    return Err(Error::new(
                        Code::DestructiveChange,
                        format!(
                            "Refusing destructive changes without allow_destructive: {}",
                            destructive.join("; ")
                        ),
                    )
                    .with("changes", serde_json::to_value(&changes).unwrap_or_default()));
                }
                // SQLite refuses to drop a column a trigger names: the triggers that log `old`
                // go first and are rebuilt below from the new columns.
                if dialect == ferrobase_expr::Dialect::Sqlite {
                    for name in Catalog::new(0, current.clone()).names() {
                        c.execute_script(&format!(
                            "DROP TRIGGER IF EXISTS \"c_{name}_ins\"; DROP TRIGGER IF EXISTS \"c_{name}_upd\"; DROP TRIGGER IF EXISTS \"c_{name}_del\""
                        ))
                        .await?;
                    }
                }
                for stmt in ferrobase_schema::ddl(dialect, &with_users(&current), &with_users(&desired)) {
                    c.execute_script(&stmt).await.map_err(|e: DbError| {
                        Error::new(Code::Conflict, format!("The database refused the change: {e}"))
                    })?;
                }
                let compiled = Catalog::new(0, desired.clone());
                for name in compiled.names() {
                    if let Some(info) = compiled.get(&name) {
                        for stmt in change_triggers(dialect, &info) {
                            c.execute_script(&stmt).await?;
                        }
                    }
                }
                for name in rule_resets(&current, &desired) {
                    crate::changes::mark_reset(&mut c, &name).await?;
                }
                let next = version + 1;
                c.execute(
                    "INSERT INTO _fb_schema_versions (version, applied_at, applied_by, collections, changes) VALUES ($1, $2, $3, $4, $5)",
                    &[
                        Param::Int(next),
                        Param::Time(Utc::now()),
                        applied_by.into(),
                        Param::Json(serde_json::to_value(&desired).map_err(Error::internal)?),
                        Param::Json(serde_json::to_value(&changes).map_err(Error::internal)?),
                    ],
                )
                .await?;
                if let Some((origin, actor)) = audit_as {
                    crate::audit::record(
                        &mut c,
                        &origin,
                        crate::audit::Entry {
                            actor,
                            action: "admin.schema.apply",
                            target: Some(("schema", next.to_string())),
                            details: serde_json::json!({"changes": changes.len()}),
                        },
                    )
                    .await?;
                }
                Ok((next, true, changes, desired))
            })
        })
        .await?;
    let (version, applied, changes, collections) = outcome;
    if applied || catalog.current().version != version {
        catalog.replace(Catalog::new(version, collections));
    }
    Ok(ApplyOutcome {
        version,
        applied,
        changes,
    })
}

#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    pub version: i64,
    pub applied_at: String,
    pub applied_by: Option<String>,
    pub changes: serde_json::Value,
}

/// Every applied version, newest first.
pub async fn history(db: &Db) -> Result<Vec<HistoryEntry>, Error> {
    db.read(|mut c| {
        Box::pin(async move {
            let rows = c
                .fetch(
                    "SELECT version, applied_at, applied_by, changes FROM _fb_schema_versions ORDER BY version DESC",
                    &[],
                    &[ColType::Int, ColType::Time, ColType::Text, ColType::Json],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    let mut it = r.into_iter();
                    HistoryEntry {
                        version: it.next().and_then(|p| p.as_i64()).unwrap_or(0),
                        applied_at: it
                            .next()
                            .and_then(|p| p.as_time())
                            .map(|t| ferrobase_expr::sqlite_time(&t))
                            .unwrap_or_default(),
                        applied_by: it.next().and_then(Param::into_string),
                        changes: match it.next() {
                            Some(Param::Json(v)) => v,
                            _ => serde_json::Value::Null,
                        },
                    }
                })
                .collect())
        })
    })
    .await
}

/// Re-reads the latest version when another replica applied one.
pub async fn refresh_if_changed(db: &Db, catalog: &CatalogHandle) -> Result<(), Error> {
    let version = db
        .read(|mut c| {
            Box::pin(async move {
                let r = c
                    .fetch_one(
                        "SELECT COALESCE(MAX(version), 0) FROM _fb_schema_versions",
                        &[],
                        &[ColType::Int],
                    )
                    .await?;
                Ok::<_, Error>(
                    r.and_then(|r| r.first().and_then(Param::as_i64))
                        .unwrap_or(0),
                )
            })
        })
        .await?;
    if version != catalog.current().version {
        catalog.replace(load(db).await?);
    }
    Ok(())
}
