//! The change log `_fb_changes`: every committed record write, in commit order. Realtime
//! streams and delta sync read it; nothing else writes it but the tables' triggers (in the
//! same statement as the write, so no write can skip it) and [`mark_reset`].
//!
//! Each row has a sequence number `seq` that is the public cursor (SSE `id:`, sync `cursor`):
//! - On SQLite the single writer assigns it (`AUTOINCREMENT`), so it is commit order already.
//! - On PostgreSQL concurrent transactions commit out of order, so the trigger leaves `seq`
//!   empty and [`sequence`] numbers committed rows afterwards, one run at a time across
//!   replicas (see migrations/postgres/0004_change_log.sql). Readers only read numbered rows.
//!
//! Retention ([`prune`]) removes a prefix of the log and raises the `changes_pruned` watermark:
//! a cursor below it has lost changes and must start over.

use std::time::Duration;

use chrono::Utc;
use ferrobase_expr::Dialect;
use serde_json::{Map, Value};

use crate::catalog::CollectionInfo;
use crate::db::{ColType, Conn, Db, Param};
use crate::error::Error;

/// Serialises sequencer runs across PostgreSQL replicas.
const PG_SEQUENCER_LOCK: i64 = 0x6662_5f73_6571;
/// Rows numbered per sequencer transaction.
const SEQUENCE_BATCH: i64 = 5000;
/// Rows removed per retention transaction (short, so writers never wait long).
const PRUNE_BATCH: i64 = 1000;
/// The channel the change trigger notifies (PostgreSQL).
pub const PG_CHANGES_CHANNEL: &str = "fb_changes";
/// The channel the sequencer notifies after numbering rows (PostgreSQL).
pub const PG_SEQUENCED_CHANNEL: &str = "fb_seq";

/// What happened to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
    /// Not a record change: the collection's view rule changed (or the collection went away),
    /// so what a client may see changed without any record changing. Readers start over.
    Reset,
}

impl ChangeOp {
    fn parse(s: &str) -> ChangeOp {
        match s {
            "create" => ChangeOp::Create,
            "update" => ChangeOp::Update,
            "delete" => ChangeOp::Delete,
            _ => ChangeOp::Reset,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Create => "create",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
            ChangeOp::Reset => "reset",
        }
    }
}

/// One row of the change log.
#[derive(Clone, Debug)]
pub struct Change {
    pub seq: i64,
    pub collection: String,
    pub record_id: String,
    pub op: ChangeOp,
    /// The record as this change left it (creates and updates), as the database logged it
    /// (see [`logged_record`]).
    pub record: Option<Value>,
    /// The record before an update or delete, likewise.
    pub old: Option<Value>,
}

/// Changes after `after`, oldest first, at most `limit`; only of `collections` when given.
pub async fn read_after(
    c: &mut Conn<'_>,
    after: i64,
    collections: Option<&[String]>,
    limit: i64,
) -> Result<Vec<Change>, Error> {
    let mut params = vec![Param::Int(after), Param::Int(limit)];
    let filter = match collections {
        None => String::new(),
        Some([one]) => {
            params.push(Param::Text(one.clone()));
            " AND collection = $3".to_owned()
        }
        Some(many) => {
            let marks: Vec<String> = (0..many.len()).map(|i| format!("${}", i + 3)).collect();
            params.extend(many.iter().map(|n| Param::Text(n.clone())));
            format!(" AND collection IN ({})", marks.join(", "))
        }
    };
    let sql = format!(
        "SELECT seq, collection, record_id, op, record, old FROM _fb_changes WHERE seq > $1{filter} ORDER BY seq LIMIT $2"
    );
    let rows = c
        .fetch(
            &sql,
            &params,
            &[
                ColType::Int,
                ColType::Text,
                ColType::Text,
                ColType::Text,
                ColType::Json,
                ColType::Json,
            ],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            let seq = it.next().and_then(|p| p.as_i64()).unwrap_or(0);
            let collection = it.next().and_then(Param::into_string).unwrap_or_default();
            let record_id = it.next().and_then(Param::into_string).unwrap_or_default();
            let op = ChangeOp::parse(
                it.next()
                    .and_then(|p| p.into_string())
                    .as_deref()
                    .unwrap_or(""),
            );
            let mut json = || match it.next() {
                Some(Param::Json(Value::Null)) | None => None,
                Some(Param::Json(v)) => Some(v),
                Some(_) => None,
            };
            let (record, old) = (json(), json());
            Change {
                seq,
                collection,
                record_id,
                op,
                record,
                old,
            }
        })
        .collect())
}

/// The log's position: the highest sequence number assigned so far (0 on a fresh database),
/// and the retention watermark (every change at or below it is gone).
pub async fn position(c: &mut Conn<'_>) -> Result<(i64, i64), Error> {
    let row = c
        .fetch_one(
            "SELECT COALESCE((SELECT MAX(seq) FROM _fb_changes), 0), (SELECT value FROM _fb_state WHERE key = 'changes_pruned')",
            &[],
            &[ColType::Int, ColType::Int],
        )
        .await?;
    let (max, pruned) = row
        .map(|r| {
            (
                r.first().and_then(Param::as_i64).unwrap_or(0),
                r.get(1).and_then(Param::as_i64).unwrap_or(0),
            )
        })
        .unwrap_or((0, 0));
    Ok((max.max(pruned), pruned))
}

/// Whether `collection` has any change after `after`.
pub async fn any_after(c: &mut Conn<'_>, collection: &str, after: i64) -> Result<bool, Error> {
    let row = c
        .fetch_one(
            "SELECT seq FROM _fb_changes WHERE collection = $1 AND seq > $2 ORDER BY seq LIMIT 1",
            &[Param::Text(collection.to_owned()), Param::Int(after)],
            &[ColType::Int],
        )
        .await?;
    Ok(row.is_some())
}

/// Logs that `collection`'s visibility changed as a whole (its view rule was changed, or it
/// was removed), in the caller's transaction.
pub async fn mark_reset(c: &mut Conn<'_>, collection: &str) -> Result<(), Error> {
    c.execute(
        "INSERT INTO _fb_changes (collection, record_id, op, at) VALUES ($1, '', 'reset', $2)",
        &[Param::Text(collection.to_owned()), Param::Time(Utc::now())],
    )
    .await?;
    if c.dialect() == Dialect::Postgres {
        c.execute("SELECT pg_notify('fb_changes', '')", &[]).await?;
    }
    Ok(())
}

/// PostgreSQL: numbers the committed, unnumbered changes in insertion order (at most one run
/// at a time across replicas) and notifies [`PG_SEQUENCED_CHANNEL`]. Returns how many rows it
/// numbered; 0 on SQLite, whose writer numbers rows itself.
pub async fn sequence(db: &Db) -> Result<u64, Error> {
    if db.dialect() != Dialect::Postgres {
        return Ok(0);
    }
    let mut total = 0;
    loop {
        let n = db
            .write(|mut c| {
                Box::pin(async move {
                    c.execute(
                        "SELECT pg_advisory_xact_lock($1)",
                        &[Param::Int(PG_SEQUENCER_LOCK)],
                    )
                    .await?;
                    let n = c
                        .execute(
                            "UPDATE _fb_changes c SET seq = s.base + p.rn \
                             FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM _fb_changes WHERE seq IS NULL ORDER BY id LIMIT $1) p, \
                                  (SELECT value AS base FROM _fb_state WHERE key = 'changes_seq') s \
                             WHERE c.id = p.id",
                            &[Param::Int(SEQUENCE_BATCH)],
                        )
                        .await?;
                    if n > 0 {
                        c.execute(
                            "UPDATE _fb_state SET value = value + $1 WHERE key = 'changes_seq'",
                            &[Param::Int(i64::try_from(n).unwrap_or(i64::MAX))],
                        )
                        .await?;
                        c.execute("SELECT pg_notify('fb_seq', '')", &[]).await?;
                    }
                    Ok::<_, Error>(n)
                })
            })
            .await?;
        total += n;
        if n < SEQUENCE_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// PostgreSQL: whether committed changes wait for a number (a cheap look at a partial index).
pub async fn pending(db: &Db) -> Result<bool, Error> {
    if db.dialect() != Dialect::Postgres {
        return Ok(false);
    }
    db.read(|mut c| {
        Box::pin(async move {
            let row = c
                .fetch_one(
                    "SELECT id FROM _fb_changes WHERE seq IS NULL LIMIT 1",
                    &[],
                    &[ColType::Int],
                )
                .await?;
            Ok::<_, Error>(row.is_some())
        })
    })
    .await
}

/// Removes changes older than `retention` from the front of the log, in short transactions,
/// and raises the watermark. Returns how many rows went.
pub async fn prune(db: &Db, retention: Duration) -> Result<u64, Error> {
    let cutoff =
        Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut total = 0;
    loop {
        let removed = db
            .write(move |mut c| {
                Box::pin(async move {
                    // The oldest rows in log order, and whether each is past retention: only
                    // a prefix goes, so the watermark stays exact.
                    let rows = c
                        .fetch(
                            "SELECT seq, CAST(CASE WHEN at < $1 THEN 1 ELSE 0 END AS BIGINT) FROM _fb_changes WHERE seq IS NOT NULL ORDER BY seq LIMIT $2",
                            &[Param::Time(cutoff), Param::Int(PRUNE_BATCH)],
                            &[ColType::Int, ColType::Int],
                        )
                        .await?;
                    let upto = rows
                        .iter()
                        .take_while(|r| r.get(1).and_then(Param::as_i64) == Some(1))
                        .filter_map(|r| r.first().and_then(Param::as_i64))
                        .last();
                    let Some(upto) = upto else {
                        return Ok::<_, Error>(0);
                    };
                    let n = c
                        .execute(
                            "DELETE FROM _fb_changes WHERE seq <= $1",
                            &[Param::Int(upto)],
                        )
                        .await?;
                    c.execute(
                        "UPDATE _fb_state SET value = $1 WHERE key = 'changes_pruned' AND value < $1",
                        &[Param::Int(upto)],
                    )
                    .await?;
                    Ok(n)
                })
            })
            .await?;
        total += removed;
        if removed < PRUNE_BATCH as u64 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// A logged `record`/`old` value as the API shows records, so rules evaluate it the way they evaluate
/// a fresh row: SQLite booleans are 0/1 and PostgreSQL's `to_jsonb` writes timestamps with an
/// offset; columns the log lacks are null.
pub fn logged_record(info: &CollectionInfo, old: &Value) -> Map<String, Value> {
    let obj = old.as_object();
    let mut out = Map::with_capacity(info.columns.len());
    for col in &info.columns {
        let v = obj
            .and_then(|o| o.get(&col.name))
            .cloned()
            .unwrap_or(Value::Null);
        let v = match (col.col, v) {
            (ColType::Bool, Value::Number(n)) => Value::Bool(n.as_i64().unwrap_or(0) != 0),
            (ColType::Time, Value::String(s)) => match ferrobase_expr::parse_date(&s) {
                Some(t) => Value::String(ferrobase_expr::sqlite_time(&t)),
                None => Value::String(s),
            },
            (_, v) => v,
        };
        out.insert(col.name.clone(), v);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::catalog::Catalog;
    use ferrobase_schema::{Collection, Field, FieldType};
    use serde_json::json;

    #[test]
    fn logged_record_normalises_database_spellings() {
        let mut c = Collection::new("posts");
        c.fields.insert("done".into(), Field::new(FieldType::Bool));
        c.fields.insert("due".into(), Field::new(FieldType::Date));
        let catalog = Catalog::new(1, vec![c]);
        let info = catalog.get("posts").unwrap();
        let sqlite = logged_record(
            &info,
            &json!({"id": "a", "done": 1, "due": "2026-12-02T10:00:00.000000Z"}),
        );
        assert_eq!(sqlite["done"], json!(true));
        assert_eq!(sqlite["due"], json!("2026-12-02T10:00:00.000000Z"));
        assert_eq!(sqlite["version"], Value::Null);
        let pg = logged_record(
            &info,
            &json!({"id": "a", "done": false, "due": "2026-12-02T10:00:00.5+00:00"}),
        );
        assert_eq!(pg["done"], json!(false));
        assert_eq!(pg["due"], json!("2026-12-02T10:00:00.500000Z"));
    }
}
