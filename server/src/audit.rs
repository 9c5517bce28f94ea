//! The audit log: append-only, written in the same transaction as the action it records, and
//! hash-chained — each entry carries the hash of the previous one, so editing or deleting a
//! row breaks the chain and `ferrobase audit verify` finds where.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::access::Principal;
use crate::db::{ColType, Conn, Db, Param};
use crate::error::Error;

/// Serialises audit appends across PostgreSQL replicas so the chain never forks.
const PG_AUDIT_LOCK: i64 = 0x6662_5f61_7564;
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Actor {
    pub fn of(p: &Principal) -> Self {
        match p {
            Principal::Anonymous => Actor {
                kind: "anonymous".into(),
                id: None,
                email: None,
            },
            Principal::Admin { id, email, .. } => Actor {
                kind: "admin".into(),
                id: Some(id.clone()),
                email: Some(email.clone()),
            },
            Principal::User { id, email, .. } => Actor {
                kind: "user".into(),
                id: Some(id.clone()),
                email: (!email.is_empty()).then(|| email.clone()),
            },
            Principal::ApiKey { id, .. } => Actor {
                kind: "api_key".into(),
                id: Some(id.clone()),
                email: None,
            },
        }
    }
    pub fn user(id: &str, email: Option<&str>) -> Self {
        Actor {
            kind: "user".into(),
            id: Some(id.to_owned()),
            email: email.map(str::to_owned),
        }
    }
    pub fn system() -> Self {
        Actor {
            kind: "system".into(),
            id: None,
            email: None,
        }
    }
}

/// Where a request came from.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// One event to record.
pub struct Entry {
    pub actor: Actor,
    pub action: &'static str,
    pub target: Option<(&'static str, String)>,
    pub details: Value,
}

/// JSON with object keys sorted at every level: PostgreSQL's JSONB reorders keys, so the hash
/// must not depend on order.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
fn entry_hash(
    prev: &str,
    id: &str,
    at: &DateTime<Utc>,
    actor: &Actor,
    action: &str,
    target_type: Option<&str>,
    target_id: Option<&str>,
    origin: &Origin,
    details: &Value,
) -> String {
    let body = json!({
        "id": id,
        "at": ferrobase_expr::sqlite_time(at),
        "actor_type": actor.kind,
        "actor_id": actor.id,
        "actor_email": actor.email,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "ip": origin.ip,
        "user_agent": origin.user_agent,
        "details": details,
    });
    let digest = Sha256::digest(format!("{prev}\n{}", canonical(&body)).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends one entry inside the caller's transaction.
pub async fn record(c: &mut Conn<'_>, origin: &Origin, e: Entry) -> Result<(), Error> {
    if c.dialect() == ferrobase_expr::Dialect::Postgres {
        c.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[Param::Int(PG_AUDIT_LOCK)],
        )
        .await?;
    }
    let prev = c
        .fetch_one(
            "SELECT hash FROM _fb_audit ORDER BY seq DESC LIMIT 1",
            &[],
            &[ColType::Text],
        )
        .await?
        .and_then(|r| r.into_iter().next().and_then(Param::into_string))
        .unwrap_or_else(|| GENESIS.to_owned());
    let id = uuid::Uuid::now_v7().to_string();
    // Microsecond precision, as both databases store it, so the hash can be recomputed.
    let at = ferrobase_expr::parse_date(&ferrobase_expr::sqlite_time(&Utc::now()))
        .unwrap_or_else(Utc::now);
    let (tt, tid) = match &e.target {
        Some((t, i)) => (Some(*t), Some(i.as_str())),
        None => (None, None),
    };
    let details = match e.details {
        Value::Null => Value::Object(Map::new()),
        d => d,
    };
    let hash = entry_hash(
        &prev, &id, &at, &e.actor, e.action, tt, tid, origin, &details,
    );
    c.execute(
        "INSERT INTO _fb_audit (id, at, actor_type, actor_id, actor_email, action, target_type, target_id, ip, user_agent, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            Param::Text(id),
            Param::Time(at),
            Param::Text(e.actor.kind.clone()),
            e.actor.id.clone().into(),
            e.actor.email.clone().into(),
            Param::Text(e.action.to_owned()),
            tt.map(str::to_owned).into(),
            tid.map(str::to_owned).into(),
            origin.ip.clone().into(),
            origin.user_agent.clone().into(),
            Param::Json(details),
            Param::Text(prev),
            Param::Text(hash),
        ],
    )
    .await?;
    Ok(())
}

/// Records one entry in its own transaction (events with no other write, e.g. a failed login).
pub async fn record_alone(db: &Db, origin: &Origin, e: Entry) -> Result<(), Error> {
    let origin = origin.clone();
    db.write(move |mut c| Box::pin(async move { record(&mut c, &origin, e).await }))
        .await
}

const COLS: &str = "seq, id, at, actor_type, actor_id, actor_email, action, target_type, target_id, ip, user_agent, details, prev_hash, hash";
const TYPES: [ColType; 14] = [
    ColType::Int,
    ColType::Text,
    ColType::Time,
    ColType::Text,
    ColType::Text,
    ColType::Text,
    ColType::Text,
    ColType::Text,
    ColType::Text,
    ColType::Text,
    ColType::Text,
    ColType::Json,
    ColType::Text,
    ColType::Text,
];

/// A stored entry as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Stored {
    #[serde(skip)]
    pub seq: i64,
    pub id: String,
    pub at: String,
    pub actor: Actor,
    pub action: String,
    pub target: Option<Value>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: Value,
    pub hash: String,
    pub prev_hash: String,
    #[serde(skip)]
    at_time: Option<DateTime<Utc>>,
}

fn from_row(r: Vec<Param>) -> Option<Stored> {
    let mut it = r.into_iter();
    let seq = it.next()?.as_i64()?;
    let id = it.next()?.into_string()?;
    let at_time = it.next()?.as_time();
    let kind = it.next()?.into_string()?;
    let actor_id = it.next()?.into_string();
    let actor_email = it.next()?.into_string();
    let action = it.next()?.into_string()?;
    let target_type = it.next()?.into_string();
    let target_id = it.next()?.into_string();
    let ip = it.next()?.into_string();
    let user_agent = it.next()?.into_string();
    let details = match it.next()? {
        Param::Json(v) => v,
        _ => Value::Null,
    };
    let prev_hash = it.next()?.into_string()?;
    let hash = it.next()?.into_string()?;
    Some(Stored {
        seq,
        id,
        at: at_time
            .map(|t| ferrobase_expr::sqlite_time(&t))
            .unwrap_or_default(),
        actor: Actor {
            kind,
            id: actor_id,
            email: actor_email,
        },
        action,
        target: match (target_type, target_id) {
            (Some(t), Some(i)) => Some(json!({"type": t, "id": i})),
            _ => None,
        },
        ip,
        user_agent,
        details,
        hash,
        prev_hash,
        at_time,
    })
}

/// Filters of `GET /v1/admin/audit`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Query {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Entries matching `q`, newest first, and the cursor of the next page.
pub async fn query(db: &Db, q: Query) -> Result<(Vec<Stored>, Option<String>), Error> {
    let bad = |p: &str, m: &str| {
        Error::bad_request(format!("Invalid `{p}`: {m}")).with("parameter", p.to_owned())
    };
    let limit: i64 = match q.limit.as_deref() {
        None => 50,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| bad("limit", "1 to 500"))?,
    };
    let mut conds = Vec::new();
    let mut params = Vec::new();
    if let Some(a) = q.actor.filter(|s| !s.is_empty()) {
        params.push(Param::Text(a));
        let n = params.len();
        conds.push(format!("(actor_id = ${n} OR actor_email = ${n})"));
    }
    if let Some(a) = q.action.filter(|s| !s.is_empty()) {
        params.push(Param::Text(a));
        conds.push(format!("action = ${}", params.len()));
    }
    if let Some(t) = q.target.filter(|s| !s.is_empty()) {
        let (tt, tid) = t
            .split_once(':')
            .ok_or_else(|| bad("target", "use <type>:<id>"))?;
        params.push(Param::Text(tt.to_owned()));
        params.push(Param::Text(tid.to_owned()));
        conds.push(format!(
            "target_type = ${} AND target_id = ${}",
            params.len() - 1,
            params.len()
        ));
    }
    for (name, value, op) in [("since", q.since, ">="), ("until", q.until, "<")] {
        if let Some(v) = value.filter(|s| !s.is_empty()) {
            let t = ferrobase_expr::parse_date(&v).ok_or_else(|| bad(name, "an RFC 3339 date"))?;
            params.push(Param::Time(t));
            conds.push(format!("at {op} ${}", params.len()));
        }
    }
    if let Some(c) = q.cursor.filter(|s| !s.is_empty()) {
        let seq: i64 = c
            .parse()
            .map_err(|_| bad("cursor", "not a cursor from this list"))?;
        params.push(Param::Int(seq));
        conds.push(format!("seq < ${}", params.len()));
    }
    let mut sql = format!("SELECT {COLS} FROM _fb_audit");
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", limit + 1));
    let rows = db
        .read(move |mut c| {
            Box::pin(async move { c.fetch(&sql, &params, &TYPES).await.map_err(Error::from) })
        })
        .await?;
    let mut items: Vec<Stored> = rows.into_iter().filter_map(from_row).collect();
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next = if more {
        items.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    Ok((items, next))
}

/// Why the chain does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("audit entry #{seq} ({id}) was altered: its hash does not match its contents")]
    Altered { seq: i64, id: String },
    #[error(
        "audit entry #{seq} ({id}) does not follow the previous entry: an entry before it was removed or altered"
    )]
    Broken { seq: i64, id: String },
    #[error(transparent)]
    Other(#[from] Error),
}

/// Walks the whole chain; the number of entries verified.
pub async fn verify(db: &Db) -> Result<u64, VerifyError> {
    verify_head(db).await.map(|(n, _)| n)
}

/// Walks the whole chain: the number of entries verified and the hash of the newest one.
/// Removing the newest entries leaves a valid (shorter) chain; recording the head hash
/// elsewhere (a ticket, another system) is what detects that.
pub async fn verify_head(db: &Db) -> Result<(u64, String), VerifyError> {
    let mut prev = GENESIS.to_owned();
    let mut after: i64 = 0;
    let mut count = 0u64;
    loop {
        let rows = db
            .read(move |mut c| {
                Box::pin(async move {
                    c.fetch(
                        &format!(
                            "SELECT {COLS} FROM _fb_audit WHERE seq > $1 ORDER BY seq LIMIT 1000"
                        ),
                        &[Param::Int(after)],
                        &TYPES,
                    )
                    .await
                    .map_err(Error::from)
                })
            })
            .await?;
        if rows.is_empty() {
            return Ok((count, prev));
        }
        for row in rows {
            let e = from_row(row).ok_or_else(|| Error::internal("malformed audit row"))?;
            if e.prev_hash != prev {
                return Err(VerifyError::Broken {
                    seq: e.seq,
                    id: e.id,
                });
            }
            let (tt, tid) = match &e.target {
                Some(t) => (
                    t["type"].as_str().map(str::to_owned),
                    t["id"].as_str().map(str::to_owned),
                ),
                None => (None, None),
            };
            let origin = Origin {
                ip: e.ip.clone(),
                user_agent: e.user_agent.clone(),
            };
            let at = e.at_time.unwrap_or_default();
            let h = entry_hash(
                &e.prev_hash,
                &e.id,
                &at,
                &e.actor,
                &e.action,
                tt.as_deref(),
                tid.as_deref(),
                &origin,
                &e.details,
            );
            if h != e.hash {
                return Err(VerifyError::Altered {
                    seq: e.seq,
                    id: e.id,
                });
            }
            prev = e.hash;
            after = e.seq;
            count += 1;
        }
    }
}
