//! Delta sync: `GET /v1/collections/{c}/changes?since=`. An offline client keeps a cursor and
//! asks for what changed since; the answer is read from the change log and filtered by the
//! caller's view rule, with tombstones for records that went away or out of sight.
//!
//! A sync has two phases, both behind one opaque `cursor`:
//! - **Initial** (no `since`, or after a reset): the collection's table is paged by id under the
//!   view rule, tagged with the log position `S` taken at the start. Writes during the paging
//!   are not lost: they are in the log after `S`, which the next phase reads.
//! - **Incremental** (`since=<seq>`, the same numbers as SSE ids): log rows after the cursor;
//!   several changes of one record in a page collapse to its current state. If the log was
//!   pruned past the cursor, or the collection's view rule changed since, the answer restarts
//!   the initial phase with `"reset": true` (the client drops its copy and reloads).

use std::collections::HashMap;

use ferrobase_expr::Dialect;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::access::{Access, Op, access};
use crate::catalog::CollectionInfo;
use crate::changes::{self, ChangeOp};
use crate::db::{Conn, Db, Param};
use crate::error::Error;
use crate::records::{Actor, expr_sql, row_to_record};

pub const DEFAULT_LIMIT: usize = 500;
pub const MAX_LIMIT: usize = 5000;

/// Where a sync continues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Since {
    /// From the beginning (initial sync).
    Start,
    /// Nothing now; just the current cursor.
    Now,
    /// Log rows after this sequence number.
    Seq(i64),
    /// The initial phase, taken at log position `snapshot`, after record `after`.
    Initial { snapshot: i64, after: String },
}

impl Since {
    /// Parses `since` (absent, `now`, a sequence number, or a cursor this module made).
    pub fn parse(s: Option<&str>) -> Result<Since, Error> {
        let bad = || {
            Error::bad_request(
                "`since` must be a cursor from an earlier answer, a sequence number or `now`.",
            )
            .with("parameter", "since")
        };
        let Some(s) = s else {
            return Ok(Since::Start);
        };
        if s == "now" {
            return Ok(Since::Now);
        }
        if let Some(rest) = s.strip_prefix("i.") {
            let (snap, after) = rest.split_once('.').ok_or_else(bad)?;
            let snapshot: i64 = snap.parse().map_err(|_| bad())?;
            let id_ok = !after.is_empty()
                && after.len() <= 64
                && after
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if snapshot < 0 || !id_ok {
                return Err(bad());
            }
            return Ok(Since::Initial {
                snapshot,
                after: after.to_owned(),
            });
        }
        match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Since::Seq(n)),
            _ => Err(bad()),
        }
    }
}

/// One entry of a sync page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncChange {
    /// The change's sequence number (for initial-phase entries, the log position they were
    /// read at).
    pub seq: i64,
    /// `create`, `update` or `delete` (a tombstone: drop the local copy).
    pub op: &'static str,
    pub id: String,
    /// The record's current state; `null` for a tombstone.
    #[schema(value_type = Option<Object>)]
    pub record: Option<Map<String, Value>>,
}

/// `GET /v1/collections/{c}/changes` answers this.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncPage {
    pub changes: Vec<SyncChange>,
    /// Pass as `since` next time.
    pub cursor: String,
    /// More changes are waiting: ask again right away.
    pub has_more: bool,
    /// The client's copy is no longer valid (the log no longer reaches back to its cursor, or
    /// the view rule changed): drop it; this page starts a full reload.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}

/// One page of changes of `info` for `actor`.
pub async fn changes(
    db: &Db,
    info: std::sync::Arc<CollectionInfo>,
    actor: Actor,
    since: Since,
    limit: usize,
) -> Result<SyncPage, Error> {
    // Locked for this caller → 401/403 before anything is read.
    access(
        &actor.principal,
        info.rules.view.as_ref(),
        Op::View,
        info.name(),
    )?;
    // Read your writes on PostgreSQL: a change this client committed may not be numbered yet.
    if changes::pending(db).await? {
        changes::sequence(db).await?;
    }
    db.read(move |mut c| Box::pin(async move { page(&mut c, &info, &actor, since, limit).await }))
        .await
}

async fn page(
    c: &mut Conn<'_>,
    info: &CollectionInfo,
    actor: &Actor,
    since: Since,
    limit: usize,
) -> Result<SyncPage, Error> {
    let (head, pruned) = changes::position(c).await?;
    match since {
        Since::Now => Ok(SyncPage {
            changes: Vec::new(),
            cursor: head.to_string(),
            has_more: false,
            reset: false,
        }),
        Since::Start => initial(c, info, actor, head, "", limit, false).await,
        Since::Initial { snapshot, after } => {
            if snapshot < pruned || snapshot > head {
                return initial(c, info, actor, head, "", limit, true).await;
            }
            initial(c, info, actor, snapshot, &after, limit, false).await
        }
        Since::Seq(n) => {
            if n < pruned || n > head {
                return initial(c, info, actor, head, "", limit, true).await;
            }
            incremental(c, info, actor, n, head, limit).await
        }
    }
}

/// The view rule as SQL appended to `sql` (nothing when the caller sees everything).
fn rule_sql(
    c: &Conn<'_>,
    info: &CollectionInfo,
    actor: &Actor,
    sql: &mut String,
    params: &mut Vec<Param>,
) -> Result<(), Error> {
    if let Access::Rule(rule) = access(
        &actor.principal,
        info.rules.view.as_ref(),
        Op::View,
        info.name(),
    )? {
        let ctx = ferrobase_expr::Context {
            auth: &actor.auth,
            data: None,
            now: actor.now,
        };
        let cond = expr_sql(rule, info, &ctx, c.dialect(), params)?;
        sql.push_str(" AND ");
        sql.push_str(&cond);
    }
    Ok(())
}

async fn initial(
    c: &mut Conn<'_>,
    info: &CollectionInfo,
    actor: &Actor,
    snapshot: i64,
    after: &str,
    limit: usize,
    reset: bool,
) -> Result<SyncPage, Error> {
    let mut params = vec![Param::Text(after.to_owned())];
    let mut sql = format!(
        "SELECT {} FROM \"{}\" WHERE \"id\" > $1",
        info.select_list, info.table
    );
    rule_sql(c, info, actor, &mut sql, &mut params)?;
    sql.push_str(&format!(" ORDER BY \"id\" LIMIT {}", limit + 1));
    let mut rows = c.fetch(&sql, &params, &info.col_types).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let changes: Vec<SyncChange> = rows
        .into_iter()
        .map(|r| {
            let record = row_to_record(info, r);
            let id = record
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            SyncChange {
                seq: snapshot,
                op: "create",
                id,
                record: Some(record),
            }
        })
        .collect();
    if more {
        let last = changes.last().map(|ch| ch.id.clone()).unwrap_or_default();
        return Ok(SyncPage {
            changes,
            cursor: format!("i.{snapshot}.{last}"),
            has_more: true,
            reset,
        });
    }
    // The table is done; what changed meanwhile is in the log after the snapshot.
    let has_more = changes::any_after(c, info.name(), snapshot).await?;
    Ok(SyncPage {
        changes,
        cursor: snapshot.to_string(),
        has_more,
        reset,
    })
}

/// The log rows of one record within a page.
struct Group {
    last_seq: i64,
    last_op: ChangeOp,
    /// Whether the caller may have held the record before these changes.
    maybe_held: bool,
}

async fn incremental(
    c: &mut Conn<'_>,
    info: &CollectionInfo,
    actor: &Actor,
    since: i64,
    head: i64,
    limit: usize,
) -> Result<SyncPage, Error> {
    let name = [info.name().to_owned()];
    let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = changes::read_after(c, since, Some(&name), limit_i + 1).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    if rows.iter().any(|r| r.op == ChangeOp::Reset) {
        return initial(c, info, actor, head, "", limit, true).await;
    }
    let cursor = match rows.last() {
        Some(last) if more => last.seq,
        // Everything up to `head` was read: skip ahead so the next scan starts there.
        Some(last) => last.seq.max(head),
        None => since.max(head),
    };
    let dialect = c.dialect();
    let rule = access(
        &actor.principal,
        info.rules.view.as_ref(),
        Op::View,
        info.name(),
    )?;
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Group> = HashMap::new();
    for row in rows {
        let held_before = match row.op {
            ChangeOp::Update | ChangeOp::Delete => match &row.old {
                Some(old) => could_see(info, &rule, actor, dialect, old),
                // Logged before `old` existed: assume the client may hold it.
                None => true,
            },
            _ => false,
        };
        match groups.get_mut(&row.record_id) {
            Some(g) => {
                g.last_seq = row.seq;
                g.last_op = row.op;
                g.maybe_held |= held_before;
            }
            None => {
                order.push(row.record_id.clone());
                groups.insert(
                    row.record_id,
                    Group {
                        last_seq: row.seq,
                        last_op: row.op,
                        maybe_held: held_before,
                    },
                );
            }
        }
    }
    let mut current = visible_records(c, info, actor, &order).await?;
    let mut out: Vec<(i64, SyncChange)> = Vec::with_capacity(order.len());
    for id in order {
        let Some(g) = groups.remove(&id) else {
            continue;
        };
        match current.remove(&id) {
            Some(record) => out.push((
                g.last_seq,
                SyncChange {
                    seq: g.last_seq,
                    op: if g.last_op == ChangeOp::Create {
                        "create"
                    } else {
                        "update"
                    },
                    id,
                    record: Some(record),
                },
            )),
            // Gone or out of sight: a tombstone, but only to a client that may hold it.
            None if g.maybe_held => out.push((
                g.last_seq,
                SyncChange {
                    seq: g.last_seq,
                    op: "delete",
                    id,
                    record: None,
                },
            )),
            None => {}
        }
    }
    out.sort_by_key(|(seq, _)| *seq);
    Ok(SyncPage {
        changes: out.into_iter().map(|(_, ch)| ch).collect(),
        cursor: cursor.to_string(),
        has_more: more,
        reset: false,
    })
}

/// Whether `actor` could see a logged `old` state (an evaluation error counts as yes: a
/// needless tombstone is harmless, a missing one leaves stale data on the device).
pub fn could_see(
    info: &CollectionInfo,
    rule: &Access<'_>,
    actor: &Actor,
    dialect: Dialect,
    old: &Value,
) -> bool {
    match rule {
        Access::Bypass => true,
        Access::Rule(expr) => {
            let record = changes::logged_record(info, old);
            let ctx = ferrobase_expr::Context {
                auth: &actor.auth,
                data: None,
                now: actor.now,
            };
            ferrobase_expr::eval(expr, &record, &info.def.scope(None), &ctx, dialect)
                .unwrap_or(true)
        }
    }
}

/// The records among `ids` the caller may view now, by id.
async fn visible_records(
    c: &mut Conn<'_>,
    info: &CollectionInfo,
    actor: &Actor,
    ids: &[String],
) -> Result<HashMap<String, Map<String, Value>>, Error> {
    let mut out = HashMap::with_capacity(ids.len());
    // Bounded IN lists (SQLite allows 32k parameters; PostgreSQL 65k).
    for chunk in ids.chunks(500) {
        let mut params: Vec<Param> = chunk.iter().map(|s| Param::Text(s.clone())).collect();
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let mut sql = format!(
            "SELECT {} FROM \"{}\" WHERE \"id\" IN ({})",
            info.select_list,
            info.table,
            marks.join(", ")
        );
        rule_sql(c, info, actor, &mut sql, &mut params)?;
        for row in c.fetch(&sql, &params, &info.col_types).await? {
            let record = row_to_record(info, row);
            if let Some(id) = record.get("id").and_then(Value::as_str) {
                out.insert(id.to_owned(), record);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn since_forms() {
        assert_eq!(Since::parse(None).unwrap(), Since::Start);
        assert_eq!(Since::parse(Some("now")).unwrap(), Since::Now);
        assert_eq!(Since::parse(Some("42")).unwrap(), Since::Seq(42));
        assert_eq!(
            Since::parse(Some("i.7.0193-ab")).unwrap(),
            Since::Initial {
                snapshot: 7,
                after: "0193-ab".into()
            }
        );
        for bad in [
            "", "-1", "i.", "i.7", "i.7.", "i.x.a", "i.7.a'b", "1e3", "now2",
        ] {
            let e = Since::parse(Some(bad)).unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn since_never_panics(s in ".{0,80}") {
            let _ = Since::parse(Some(&s));
        }
    }
}
