//! The table `_fb_idempotency`: claims, answers, look-ups, renewals, releases and pruning,
//! each done the way it is cheapest on its database.
//!
//! PostgreSQL (any number of replicas): a row's primary key is its id and every statement
//! finds rows by it; that unique index is what lets exactly one replica win a key.
//!
//! SQLite (one process owns the file): the table has no index on `id`. Ids are hashes, so an
//! index on them takes every claim at a random place, and on SQLite each commit writes every
//! page it touched to the WAL (and a checkpoint writes it again): measured, that random insert
//! was most of what a key cost a create, and the index soon outgrows any page cache. Rows are
//! appended in `seq` order instead, and this process keeps `id → seq` of every row in memory
//! ([`Rows`]: loaded at start, updated with every change it commits), so a claim is an
//! append and finding a row is a primary-key read. The map cannot go stale: nothing but this
//! process writes the database, and every change to the table goes through here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::retention_cutoff;
use super::{IdHash, Key, LEASE, PRUNE_BATCH, PRUNE_MAX_BATCHES, STORE_BATCH, Stored, delta};
use crate::db::{ColType, Db, FirstWrite, Param, Values};
use crate::error::Error;

/// The right to store a request's answer and, once its write committed the claim, to renew
/// or give the claim up.
#[derive(Clone, Debug)]
pub struct Ticket {
    id: String,
    num: u128,
    /// Random per request: a completion or release by a request whose claim was taken over
    /// matches no row.
    owner: i64,
}

impl Ticket {
    /// A ticket for one run of a request with `key`.
    pub fn new(key: &Key) -> Ticket {
        Ticket {
            id: key.id.clone(),
            num: key.num,
            owner: rand::random(),
        }
    }
}

/// What is known about a key before its request runs.
#[derive(Debug)]
pub enum Claim {
    /// Nobody holds it (never used, past retention, or its holder died): run the request.
    Free,
    /// The first request's answer.
    Replay(Stored),
    /// The first request is still running.
    InFlight,
    /// The key was used for a different request.
    Reused,
}

/// An answer to store: it fills the row the request's claim made, or makes one when its
/// request wrote nothing.
#[derive(Clone, Debug)]
pub struct Completion {
    ticket: Ticket,
    fingerprint: String,
    at: DateTime<Utc>,
    status: u16,
    sealed: String,
}

impl Completion {
    /// The answer of the request holding `ticket`, sealed under `key`.
    pub fn new(
        key: &Key,
        ticket: &Ticket,
        fingerprint: &str,
        at: DateTime<Utc>,
        stored: &Stored,
    ) -> Result<Completion, Error> {
        Ok(Completion {
            ticket: ticket.clone(),
            fingerprint: fingerprint.to_owned(),
            at,
            status: stored.status,
            sealed: key.seal(stored)?,
        })
    }

    pub(super) fn num(&self) -> u128 {
        self.ticket.num
    }
}

/// SQLite: the `seq` of every row, by id (see the module doc). 25 bytes a key in a hash table
/// kept 7/16 to 7/8 full, 30–60 bytes in all: measured, a server holding 500,000 keys starts in
/// 0.35–0.6 s with 40 MiB more anonymous memory than an empty one.
#[derive(Default)]
struct Rows(Mutex<HashMap<u128, i64, IdHash>>);

impl Rows {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u128, i64, IdHash>> {
        // Each change is one insert or remove: a panic cannot leave it half-done.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: u128) -> Option<i64> {
        self.map().get(&id).copied()
    }

    fn set(&self, id: u128, seq: i64) {
        self.map().insert(id, seq);
    }

    /// Forgets `id` if it still names row `seq`.
    fn forget(&self, id: u128, seq: i64) {
        let mut map = self.map();
        if map.get(&id) == Some(&seq) {
            map.remove(&id);
        }
    }

    fn len(&self) -> usize {
        self.map().len()
    }
}

/// An id as stored (32 hex digits) as the map's key.
fn parse_id(id: &str) -> Option<u128> {
    u128::from_str_radix(id, 16).ok()
}

/// Rows read per statement when the map is loaded.
const LOAD_PAGE: i64 = 10_000;
/// Most keys the map is sized for up front (more still fit; it then grows as it must).
const MAX_RESERVE: i64 = 10_000_000;

/// PostgreSQL: takes the key: a new row, or one whose claim was abandoned (same request,
/// lease over: its process died) or that is past retention (pruning has not reached it).
const PG_CLAIM: &str = "INSERT INTO _fb_idempotency (id, fingerprint, owner, created_at, lease_until) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, owner = excluded.owner, \
     created_at = excluded.created_at, lease_until = excluded.lease_until, status = NULL, \
     response = NULL \
     WHERE (_fb_idempotency.status IS NULL AND _fb_idempotency.lease_until < $4 \
     AND _fb_idempotency.fingerprint = excluded.fingerprint) \
     OR _fb_idempotency.created_at < $6";

/// SQLite: a key with no row takes a new one, at the end.
const SQLITE_CLAIM_NEW: &str = "INSERT INTO _fb_idempotency \
     (id, fingerprint, owner, created_at, lease_until) VALUES ($1, $2, $3, $4, $5) RETURNING seq";

/// SQLite: a key with row `$7` takes it over when [`PG_CLAIM`] would, moving it to the end (a
/// new `seq`), so that `seq` order stays creation order for [`Table::prune`].
const SQLITE_CLAIM_TAKE: &str = "UPDATE _fb_idempotency \
     SET seq = (SELECT max(seq) + 1 FROM _fb_idempotency), fingerprint = $2, owner = $3, \
     created_at = $4, lease_until = $5, status = NULL, response = NULL \
     WHERE seq = $7 AND id = $1 \
     AND ((status IS NULL AND lease_until < $4 AND fingerprint = $2) OR created_at < $6) \
     RETURNING seq";

/// Where idempotency rows live, on either database (see the module doc).
#[derive(Clone)]
pub struct Table {
    db: Db,
    /// SQLite only.
    rows: Option<Arc<Rows>>,
}

impl Table {
    /// The table of `db`; on SQLite this reads every row's id and `seq` into memory.
    pub async fn open(db: Db) -> Result<Table, Error> {
        if db.dialect() == ferrobase_expr::Dialect::Postgres {
            return Ok(Table { db, rows: None });
        }
        let rows = Rows::default();
        // Sized once for the span of `seq` (at least the number of rows; O(log n) to read),
        // instead of growing by doubling and leaving the smaller tables behind.
        let span = db
            .write(|mut c| {
                Box::pin(async move {
                    c.fetch_one(
                        "SELECT max(seq) - min(seq) + 1 FROM _fb_idempotency",
                        &[],
                        &[ColType::Int],
                    )
                    .await
                })
            })
            .await?
            .and_then(|r| r.first().and_then(Param::as_i64))
            .unwrap_or(0);
        rows.map()
            .reserve(usize::try_from(span.clamp(0, MAX_RESERVE)).unwrap_or(0));
        let mut after = 0i64;
        loop {
            // Through the write connection (nothing else writes yet at start): readers map the
            // file, so a scan of this table (mostly stored answers) would leave all of it in
            // the process's resident set as mapped pages; the writer reads into its 4 MiB cache.
            let page = db
                .write(move |mut c| {
                    Box::pin(async move {
                        c.fetch(
                            "SELECT seq, id FROM _fb_idempotency WHERE seq > $1 ORDER BY seq LIMIT $2",
                            &[Param::Int(after), Param::Int(LOAD_PAGE)],
                            &[ColType::Int, ColType::Text],
                        )
                        .await
                    })
                })
                .await?;
            let full = page.len() as i64 == LOAD_PAGE;
            let mut map = rows.map();
            for row in page {
                let seq = row.first().and_then(Param::as_i64).unwrap_or(0);
                after = after.max(seq);
                if let Some(id) = row.get(1).and_then(Param::as_str).and_then(parse_id) {
                    map.insert(id, seq);
                }
            }
            drop(map);
            if !full {
                break;
            }
        }
        Ok(Table {
            db,
            rows: Some(Arc::new(rows)),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Keys known on SQLite (tests, metrics); 0 on PostgreSQL.
    pub fn known(&self) -> usize {
        self.rows.as_ref().map_or(0, |r| r.len())
    }

    /// The claim of a request holding `ticket`, made at `now`, as the statement that rides
    /// with its first write ([`FirstWrite`]): the claim commits with the request's effect, or
    /// not at all. Of any number of requests racing for one key on any number of replicas,
    /// exactly one claims it (on PostgreSQL the primary key decides; on SQLite the one process
    /// lets only one request with a key run at a time, `super::Idempotency::begin`); the
    /// others' writes are rolled back.
    pub fn claim_statement(
        &self,
        ticket: &Ticket,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Arc<FirstWrite> {
        let mut params = vec![
            Param::Text(ticket.id.clone()),
            Param::Text(fingerprint.to_owned()),
            Param::Int(ticket.owner),
            Param::Time(now),
            Param::Time(now + delta(LEASE)),
        ];
        let Some(rows) = &self.rows else {
            params.push(Param::Time(retention_cutoff(now)));
            return FirstWrite::new(PG_CLAIM, params);
        };
        let (num, on_commit_rows) = (ticket.num, rows.clone());
        let on_commit = Box::new(move |seq| on_commit_rows.set(num, seq));
        match rows.get(ticket.num) {
            None => FirstWrite::returning(SQLITE_CLAIM_NEW, params, on_commit),
            Some(seq) => {
                params.push(Param::Time(retention_cutoff(now)));
                params.push(Param::Int(seq));
                FirstWrite::returning(SQLITE_CLAIM_TAKE, params, on_commit)
            }
        }
    }

    /// Claims a key in a transaction of its own, with no effect beside it: `false` when it
    /// is held. What a request's first write does with [`Table::claim_statement`]; for tests
    /// and tools that need a claim in a given state.
    pub async fn claim_alone(
        &self,
        ticket: &Ticket,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let claim = self.claim_statement(ticket, fingerprint, now);
        let scoped = claim.clone();
        let done = claim
            .scope(self.db.write(|_| Box::pin(async { Ok::<_, Error>(()) })))
            .await;
        match done {
            Ok(()) => Ok(true),
            Err(_) if scoped.state() == crate::db::FirstWriteState::Refused => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// What the table says about `key` for a request with `fingerprint`, at `now`.
    pub async fn lookup(
        &self,
        key: &Key,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, Error> {
        const COLS: [ColType; 5] = [
            ColType::Text,
            ColType::Int,
            ColType::Text,
            ColType::Time,
            ColType::Time,
        ];
        let id = key.id.clone();
        let (sql, params) = match &self.rows {
            None => (
                "SELECT fingerprint, status, response, created_at, lease_until \
                 FROM _fb_idempotency WHERE id = $1",
                vec![Param::Text(id)],
            ),
            Some(rows) => match rows.get(key.num) {
                None => return Ok(Claim::Free),
                Some(seq) => (
                    "SELECT fingerprint, status, response, created_at, lease_until \
                     FROM _fb_idempotency WHERE seq = $2 AND id = $1",
                    vec![Param::Text(id), Param::Int(seq)],
                ),
            },
        };
        let row = self
            .db
            .read_by_key(move |mut c| {
                Box::pin(async move { c.fetch_one(sql, &params, &COLS).await })
            })
            .await?;
        match row {
            None => Ok(Claim::Free),
            Some(row) => judge(row, key, fingerprint, now),
        }
    }

    /// Extends a committed claim's lease; `false` when the claim is no longer this ticket's.
    pub async fn renew(&self, ticket: &Ticket, now: DateTime<Utc>) -> Result<bool, Error> {
        let until = Param::Time(now + delta(LEASE));
        let (sql, params) = match self.row_of(ticket) {
            Where::Id(id) => (
                "UPDATE _fb_idempotency SET lease_until = $3 \
                 WHERE id = $1 AND owner = $2 AND status IS NULL",
                vec![id, Param::Int(ticket.owner), until],
            ),
            Where::Seq(seq) => (
                "UPDATE _fb_idempotency SET lease_until = $3 \
                 WHERE seq = $1 AND owner = $2 AND status IS NULL",
                vec![Param::Int(seq), Param::Int(ticket.owner), until],
            ),
            Where::Nowhere => return Ok(false),
        };
        let n = self
            .db
            .write_one(move |mut c| Box::pin(async move { c.execute(sql, &params).await }))
            .await?;
        Ok(n == 1)
    }

    /// Gives a committed claim up (its answer is not [`super::storable`]), so a retry runs
    /// the request again.
    pub async fn release(&self, ticket: &Ticket) -> Result<(), Error> {
        let (sql, params, seq) = match self.row_of(ticket) {
            Where::Id(id) => (
                "DELETE FROM _fb_idempotency WHERE id = $1 AND owner = $2 AND status IS NULL",
                vec![id, Param::Int(ticket.owner)],
                None,
            ),
            Where::Seq(seq) => (
                "DELETE FROM _fb_idempotency WHERE seq = $1 AND owner = $2 AND status IS NULL",
                vec![Param::Int(seq), Param::Int(ticket.owner)],
                Some(seq),
            ),
            Where::Nowhere => return Ok(()),
        };
        let n = self
            .db
            .write_one(move |mut c| Box::pin(async move { c.execute(sql, &params).await }))
            .await?;
        if let (Some(rows), Some(seq), 1) = (&self.rows, seq, n) {
            rows.forget(ticket.num, seq);
        }
        Ok(())
    }

    fn row_of(&self, ticket: &Ticket) -> Where {
        match &self.rows {
            None => Where::Id(Param::Text(ticket.id.clone())),
            Some(rows) => rows.get(ticket.num).map_or(Where::Nowhere, Where::Seq),
        }
    }

    /// Stores answers, [`STORE_BATCH`] to a commit: each fills its ticket's claim, or makes a
    /// row when its request wrote nothing (and so claimed nothing), taking over what a claim
    /// may take over. The number stored; one whose claim another request took over meanwhile
    /// is not (its answer went to its own client only).
    pub async fn store(&self, completions: Vec<Completion>) -> Result<u64, Error> {
        let mut total = 0;
        let mut rest = completions;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(STORE_BATCH));
            let chunk = std::mem::replace(&mut rest, tail);
            total += match &self.rows {
                None => self.store_pg(chunk).await?,
                Some(rows) => self.store_sqlite(rows, chunk).await?,
            };
        }
        Ok(total)
    }

    /// One multi-row upsert.
    async fn store_pg(&self, chunk: Vec<Completion>) -> Result<u64, Error> {
        let mut sql = String::from(
            "INSERT INTO _fb_idempotency \
             (id, fingerprint, owner, created_at, lease_until, status, response) VALUES ",
        );
        let mut params = Vec::with_capacity(chunk.len() * 6 + 1);
        let cutoff = chunk.len() * 6 + 1;
        // The oldest answer of the batch decides what counts as past retention.
        let oldest = chunk.iter().map(|c| c.at).min().unwrap_or_else(Utc::now);
        for (i, c) in chunk.into_iter().enumerate() {
            let n = i * 6;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 4,
                n + 5,
                n + 6
            ));
            params.extend([
                Param::Text(c.ticket.id),
                Param::Text(c.fingerprint),
                Param::Int(c.ticket.owner),
                Param::Time(c.at),
                Param::Int(i64::from(c.status)),
                Param::Text(c.sealed),
            ]);
        }
        sql.push_str(&format!(
            " ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, \
             owner = excluded.owner, created_at = excluded.created_at, \
             lease_until = excluded.lease_until, status = excluded.status, \
             response = excluded.response \
             WHERE (_fb_idempotency.owner = excluded.owner AND _fb_idempotency.status IS NULL) \
             OR (_fb_idempotency.status IS NULL AND _fb_idempotency.lease_until < excluded.created_at \
             AND _fb_idempotency.fingerprint = excluded.fingerprint) \
             OR _fb_idempotency.created_at < ${cutoff}"
        ));
        params.push(Param::Time(retention_cutoff(oldest)));
        Ok(self
            .db
            .write_one(move |mut c| Box::pin(async move { c.execute(&sql, &params).await }))
            .await?)
    }

    /// One transaction of one statement per answer: the claim's row filled in place, or (a
    /// request that wrote nothing) a row made or taken over, as the map says.
    async fn store_sqlite(&self, rows: &Arc<Rows>, chunk: Vec<Completion>) -> Result<u64, Error> {
        let steps: Vec<(Completion, Option<i64>)> = chunk
            .into_iter()
            .map(|c| {
                let seq = rows.get(c.ticket.num);
                (c, seq)
            })
            .collect();
        let placed = self
            .db
            .write(move |mut conn| {
                Box::pin(async move {
                    let mut placed = Vec::with_capacity(steps.len());
                    for (c, seq) in steps {
                        let num = c.ticket.num;
                        placed.push((num, store_one(&mut conn, c, seq).await?));
                    }
                    Ok::<_, Error>(placed)
                })
            })
            .await?;
        let mut stored = 0;
        for (num, outcome) in placed {
            match outcome {
                Stored1::Filled => stored += 1,
                Stored1::Placed(seq) => {
                    rows.set(num, seq);
                    stored += 1;
                }
                Stored1::Lost => {}
            }
        }
        Ok(stored)
    }

    /// Deletes rows created before `before`, [`PRUNE_BATCH`] per statement with a pause
    /// between statements (writers queued meanwhile go first); the number deleted. Stops
    /// after a bounded number of batches: the next run (a minute later) continues.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<u64, Error> {
        let mut total = 0;
        for _ in 0..PRUNE_MAX_BATCHES {
            let n = match &self.rows {
                None => {
                    self.db
                        .write_one(move |mut c| {
                            Box::pin(async move {
                                c.execute(
                                    "DELETE FROM _fb_idempotency WHERE id IN (SELECT id FROM _fb_idempotency \
                                     WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
                                    &[Param::Time(before), Param::Int(PRUNE_BATCH)],
                                )
                                .await
                            })
                        })
                        .await?
                }
                // The oldest rows by `seq` (creation order): no index on `created_at` needed.
                // A batch that deletes nothing reached rows inside retention.
                Some(rows) => {
                    let gone = self
                        .db
                        .write_one(move |mut c| {
                            Box::pin(async move {
                                c.fetch(
                                    "DELETE FROM _fb_idempotency WHERE seq IN (SELECT seq FROM \
                                     _fb_idempotency ORDER BY seq LIMIT $2) AND created_at < $1 \
                                     RETURNING seq, id",
                                    &[Param::Time(before), Param::Int(PRUNE_BATCH)],
                                    &[ColType::Int, ColType::Text],
                                )
                                .await
                            })
                        })
                        .await?;
                    for row in &gone {
                        let seq = row.first().and_then(Param::as_i64);
                        let id = row.get(1).and_then(Param::as_str).and_then(parse_id);
                        if let (Some(seq), Some(id)) = (seq, id) {
                            rows.forget(id, seq);
                        }
                    }
                    gone.len() as u64
                }
            };
            total += n;
            let done = match &self.rows {
                None => n < PRUNE_BATCH as u64,
                Some(_) => n == 0,
            };
            if done {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(total)
    }
}

/// Where a ticket's row is.
enum Where {
    /// PostgreSQL: by id.
    Id(Param),
    /// SQLite: this `seq`.
    Seq(i64),
    /// SQLite: the key has no row.
    Nowhere,
}

/// What storing one answer on SQLite did.
enum Stored1 {
    /// Filled the claim's own row.
    Filled,
    /// Made a row, or took one over, at this `seq`.
    Placed(i64),
    /// The claim was taken over by another request: not stored.
    Lost,
}

async fn store_one(
    conn: &mut crate::db::Conn<'_>,
    c: Completion,
    seq: Option<i64>,
) -> Result<Stored1, Error> {
    let status = i64::from(c.status);
    // $1 … $6 of a row made or taken over (built only when this is no claim's own row).
    let row = |sealed: String| {
        vec![
            Param::Text(c.ticket.id.clone()),
            Param::Text(c.fingerprint.clone()),
            Param::Int(c.ticket.owner),
            Param::Time(c.at),
            Param::Int(status),
            Param::Text(sealed),
        ]
    };
    let Some(seq) = seq else {
        let rows = conn
            .fetch(
                "INSERT INTO _fb_idempotency \
                 (id, fingerprint, owner, created_at, lease_until, status, response) \
                 VALUES ($1, $2, $3, $4, $4, $5, $6) RETURNING seq",
                &row(c.sealed.clone()),
                &[ColType::Int],
            )
            .await?;
        return Ok(returned(&rows).map_or(Stored1::Lost, Stored1::Placed));
    };
    // The common case: the claim this request's write made is filled in place.
    let mut fill = [
        Param::Int(status),
        Param::Text(c.sealed.clone()),
        Param::Int(seq),
        Param::Int(c.ticket.owner),
    ];
    let filled = conn
        .execute(
            "UPDATE _fb_idempotency SET status = $1, response = $2 \
             WHERE seq = $3 AND owner = $4 AND status IS NULL",
            &fill,
        )
        .await?;
    if filled == 1 {
        return Ok(Stored1::Filled);
    }
    // Not this request's claim: a row its request (which wrote nothing) may take over.
    let sealed = match std::mem::replace(&mut fill[1], Param::Null) {
        Param::Text(s) => s,
        _ => c.sealed.clone(),
    };
    let mut row = row(sealed);
    row.extend([Param::Time(retention_cutoff(c.at)), Param::Int(seq)]);
    let rows = conn
        .fetch(
            "UPDATE _fb_idempotency \
             SET seq = (SELECT max(seq) + 1 FROM _fb_idempotency), fingerprint = $2, owner = $3, \
             created_at = $4, lease_until = $4, status = $5, response = $6 \
             WHERE seq = $8 AND id = $1 \
             AND ((status IS NULL AND lease_until < $4 AND fingerprint = $2) OR created_at < $7) \
             RETURNING seq",
            &row,
            &[ColType::Int],
        )
        .await?;
    Ok(returned(&rows).map_or(Stored1::Lost, Stored1::Placed))
}

fn returned(rows: &[Values]) -> Option<i64> {
    rows.first().and_then(|r| r.first()).and_then(Param::as_i64)
}

/// What a row (`fingerprint, status, response, created_at, lease_until`) says to a request.
fn judge(row: Values, key: &Key, fingerprint: &str, now: DateTime<Utc>) -> Result<Claim, Error> {
    let mut row = row.into_iter();
    let stored_fp = row.next().and_then(Param::into_string).unwrap_or_default();
    let status = row.next().and_then(|p| p.as_i64());
    let response = row.next().and_then(Param::into_string);
    let time = |p: Option<Param>| match p {
        Some(Param::Time(t)) => Some(t),
        _ => None,
    };
    let created_at = time(row.next());
    let lease_until = time(row.next());
    if created_at.is_some_and(|t| t < retention_cutoff(now)) {
        return Ok(Claim::Free);
    }
    if stored_fp != fingerprint {
        return Ok(Claim::Reused);
    }
    Ok(match (status, response) {
        (Some(status), Some(sealed)) => {
            let status = u16::try_from(status)
                .map_err(|_| Error::internal("a stored idempotent status is out of range"))?;
            Claim::Replay(key.open(status, &sealed)?)
        }
        _ if lease_until.is_some_and(|t| t < now) => Claim::Free,
        _ => Claim::InFlight,
    })
}
