//! The SQL compiler and the in-memory evaluator must agree: for random well-typed
//! expressions over random rows, `SELECT id FROM t WHERE <to_sql>` returns exactly the ids for
//! which `eval` is true — on SQLite and on PostgreSQL. Also checks that injection attempts are
//! either rejected or bound as plain values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use ferrobase_expr::*;
use serde_json::{Map, Value, json};
use sqlx::{Database, Postgres};
use std::collections::BTreeSet;

// ---------------------------------------------------------------- deterministic RNG

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

// ---------------------------------------------------------------- schema

const TEXT_FIELDS: [&str; 3] = ["id", "title", "body"];
const NUM_FIELDS: [&str; 2] = ["num", "cnt"];
const DATE_FIELDS: [&str; 2] = ["at", "at2"];

struct TableScope;
impl Scope for TableScope {
    fn field(&self, name: &str) -> Option<FieldRef> {
        let ty = match name {
            "id" | "title" | "body" => ValueType::Text,
            "num" => ValueType::Number,
            "cnt" => ValueType::Integer,
            "flag" => ValueType::Bool,
            "at" | "at2" => ValueType::Date,
            "tags" => ValueType::TextList,
            "meta" => ValueType::Json,
            _ => return None,
        };
        Some(FieldRef {
            ty,
            column: format!("t.\"{name}\""),
        })
    }
}

const PIECES: [&str; 27] = [
    "a", "A", "b", "B", "%", "_", "é", "É", "ß", "ü", "Ü", "Σ", "σ", "ж", "Ж", "x y", "abc", "ABC",
    "Ab", "'", "\\", "", "İ", "i", "ΑΣ ", "ǅ", "ﬃ",
];
const TAGS: [&str; 6] = ["a", "A", "b", "x%", "_", "é"];

fn rand_text(r: &mut Rng) -> String {
    let n = r.below(4);
    (0..n).map(|_| *r.pick(&PIECES)).collect()
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 15, 12, 0, 0).unwrap()
}

fn rand_time(r: &mut Rng) -> DateTime<Utc> {
    // Within ±3 days of the base, on whole-day/hour boundaries sometimes so literals hit exactly.
    let t = base_time() + Duration::hours(r.below(145) as i64 - 72);
    if r.chance(50) {
        t + Duration::microseconds(r.below(10_000_000) as i64)
    } else {
        t
    }
}

#[derive(Clone, Debug)]
struct Row {
    id: String,
    title: Option<String>,
    body: Option<String>,
    num: Option<f64>,
    cnt: Option<i64>,
    flag: Option<bool>,
    at: Option<DateTime<Utc>>,
    at2: Option<DateTime<Utc>>,
    tags: Option<Vec<String>>,
    meta: Option<String>,
}

fn opt<T>(r: &mut Rng, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
    if r.chance(20) { None } else { Some(f(r)) }
}

fn rand_row(r: &mut Rng, i: usize) -> Row {
    Row {
        id: format!("r{i:03}{}", r.pick(&["", "a", "B", "é"])),
        title: opt(r, rand_text),
        body: opt(r, rand_text),
        num: opt(r, |r| {
            *r.pick(&[-2.5, 0.0, 1.0, 1.5, 2.0, 3.0, 100.25, -0.5])
        }),
        cnt: opt(r, |r| r.below(12) as i64 - 3),
        flag: opt(r, |r| r.chance(50)),
        at: opt(r, rand_time),
        at2: opt(r, rand_time),
        tags: opt(r, |r| {
            let n = r.below(4);
            (0..n).map(|_| r.pick(&TAGS).to_string()).collect()
        }),
        meta: opt(r, |r| {
            if r.chance(50) {
                "{\"k\": 1}".to_string()
            } else {
                "[1, 2]".to_string()
            }
        }),
    }
}

fn record(row: &Row) -> Map<String, Value> {
    let v = json!({
        "id": row.id,
        "title": row.title,
        "body": row.body,
        "num": row.num,
        "cnt": row.cnt,
        "flag": row.flag,
        "at": row.at.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        "at2": row.at2.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, false)),
        "tags": row.tags,
        "meta": row.meta.as_ref().map(|m| serde_json::from_str::<Value>(m).unwrap()),
    });
    v.as_object().unwrap().clone()
}

// ---------------------------------------------------------------- expression generator

fn quote(s: &str) -> String {
    let mut out = String::from(if s.len().is_multiple_of(2) { "'" } else { "\"" });
    let q = out.clone();
    for c in s.chars() {
        if c == '\'' || c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out + &q
}

fn text_operand(r: &mut Rng) -> String {
    match r.below(10) {
        0..=4 => quote(&rand_text(r)),
        5 | 6 => r.pick(&TEXT_FIELDS).to_string(),
        7 => "@auth.id".into(),
        8 => "@auth.email".into(),
        _ => "@data.title".into(),
    }
}

fn num_operand(r: &mut Rng) -> String {
    match r.below(8) {
        0..=3 => r
            .pick(&[
                "0", "1", "-3", "2", "1.5", "2.0", "-2.5", "100.25", "3e0", "1e2", "-0.5", "8",
            ])
            .to_string(),
        4 | 5 => r.pick(&NUM_FIELDS).to_string(),
        6 => "@data.cnt".into(),
        _ => "@data.num".into(),
    }
}

fn date_literal(r: &mut Rng) -> String {
    let t = rand_time(r);
    let s = match r.below(4) {
        0 => t.format("%Y-%m-%d").to_string(),
        1 => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        2 => t.to_rfc3339_opts(SecondsFormat::Micros, true),
        _ => t
            .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600).unwrap())
            .to_rfc3339_opts(SecondsFormat::Nanos, false),
    };
    quote(&s)
}

fn date_operand(r: &mut Rng) -> String {
    match r.below(7) {
        0..=2 => date_literal(r),
        3 | 4 => r.pick(&DATE_FIELDS).to_string(),
        5 => "@now".into(),
        _ => "@data.at".into(),
    }
}

fn bool_operand(r: &mut Rng) -> String {
    r.pick(&["flag", "true", "false", "@auth.verified", "@data.flag"])
        .to_string()
}

const ORD_OPS: [&str; 6] = ["=", "!=", "<", "<=", ">", ">="];
const TEXT_OPS: [&str; 8] = ["=", "!=", "<", "<=", ">", ">=", "~", "!~"];

fn maybe_swap(r: &mut Rng, a: String, op: &str, b: String) -> String {
    if r.chance(25) {
        format!("{b} {op} {a}")
    } else {
        format!("{a} {op} {b}")
    }
}

fn leaf(r: &mut Rng) -> String {
    match r.below(14) {
        0..=2 => {
            let a = text_operand(r);
            let op = *r.pick(&TEXT_OPS);
            {
                let b = text_operand(r);
                maybe_swap(r, a, op, b)
            }
        }
        3 | 4 => {
            let a = num_operand(r);
            let op = *r.pick(&ORD_OPS);
            {
                let b = num_operand(r);
                maybe_swap(r, a, op, b)
            }
        }
        5 | 6 => {
            let a = date_operand(r);
            let op = *r.pick(&ORD_OPS);
            {
                let b = date_operand(r);
                maybe_swap(r, a, op, b)
            }
        }
        7 => match r.below(3) {
            0 => bool_operand(r),
            1 => format!("!{}", bool_operand(r)),
            _ => {
                let a = bool_operand(r);
                let op = *r.pick(&["=", "!="]);
                {
                    let b = bool_operand(r);
                    maybe_swap(r, a, op, b)
                }
            }
        },
        8 => {
            let op = *r.pick(&["~", "!~"]);
            let item = if r.chance(80) {
                quote(r.pick::<&str>(&TAGS))
            } else {
                r.pick(&["@data.title", "title", "id"]).to_string()
            };
            format!("tags {op} {item}")
        }
        9 => {
            let f = *r.pick(&[
                "id",
                "title",
                "body",
                "num",
                "cnt",
                "flag",
                "at",
                "at2",
                "tags",
                "meta",
                "@data.title",
                "@data.cnt",
            ]);
            let op = *r.pick(&["=", "!="]);
            maybe_swap(r, f.to_string(), op, "null".to_string())
        }
        10 => {
            let n = r.below(4);
            let items: Vec<String> = (0..n)
                .map(|_| {
                    if r.chance(15) {
                        "null".into()
                    } else {
                        quote(&rand_text(r))
                    }
                })
                .collect();
            format!("{} in [{}]", r.pick(&TEXT_FIELDS), items.join(", "))
        }
        11 => {
            let n = r.below(4);
            let items: Vec<String> = (0..n)
                .map(|_| {
                    r.pick(&["1", "-3", "1.5", "2", "null", "100.25", "0"])
                        .to_string()
                })
                .collect();
            format!("{} in [{}]", r.pick(&NUM_FIELDS), items.join(", "))
        }
        12 => {
            let n = r.below(3);
            let items: Vec<String> = (0..n).map(|_| date_literal(r)).collect();
            format!("{} in [{}]", r.pick(&DATE_FIELDS), items.join(", "))
        }
        _ => {
            let items = ["true", "false", "null"];
            let n = r.below(3);
            let items: Vec<&str> = (0..n).map(|_| *r.pick(&items)).collect();
            format!("flag in [{}]", items.join(", "))
        }
    }
}

fn expr(r: &mut Rng, depth: usize) -> String {
    if depth == 0 || r.chance(35) {
        return leaf(r);
    }
    match r.below(4) {
        0 => format!("{} && {}", expr(r, depth - 1), expr(r, depth - 1)),
        1 => format!("({} || {})", expr(r, depth - 1), expr(r, depth - 1)),
        2 => format!("!({})", expr(r, depth - 1)),
        _ => format!("{} || {}", expr(r, depth - 1), expr(r, depth - 1)),
    }
}

/// An expression source with the caller and request body it is evaluated for.
type Case = (String, AuthContext, Option<Map<String, Value>>);

struct Fixture {
    rows: Vec<Row>,
    cases: Vec<Case>,
}

fn fixture(seed: u64, nrows: usize, ncases: usize) -> Fixture {
    let mut r = Rng(seed);
    let rows: Vec<Row> = (0..nrows).map(|i| rand_row(&mut r, i)).collect();
    let cases = (0..ncases)
        .map(|_| {
            let src = expr(&mut r, 3);
            let auth = AuthContext {
                id: if r.chance(50) {
                    rand_text(&mut r)
                } else {
                    String::new()
                },
                email: rand_text(&mut r),
                role: "user".into(),
                verified: r.chance(50),
                tenant: String::new(),
            };
            let data = if r.chance(30) {
                None
            } else {
                let mut m = Map::new();
                if r.chance(80) {
                    m.insert("title".into(), json!(rand_text(&mut r)));
                }
                if r.chance(80) {
                    m.insert("cnt".into(), json!(r.below(12) as i64 - 3));
                }
                if r.chance(80) {
                    m.insert("num".into(), json!(*r.pick(&[1.5, 0.0, -2.5, 3.0])));
                }
                if r.chance(80) {
                    m.insert("flag".into(), json!(r.chance(50)));
                }
                if r.chance(80) {
                    m.insert(
                        "at".into(),
                        json!(rand_time(&mut r).to_rfc3339_opts(SecondsFormat::Millis, true)),
                    );
                } else {
                    m.insert("at".into(), Value::Null);
                }
                Some(m)
            };
            (src, auth, data)
        })
        .collect();
    Fixture { rows, cases }
}

fn now() -> DateTime<Utc> {
    base_time() + Duration::microseconds(1_234_567)
}

// ---------------------------------------------------------------- database plumbing

type Q<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments>;

/// A SQLite value of a parameter: booleans as integers, times as the server's text form.
fn sqlite_value(p: &SqlParam) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match p {
        SqlParam::Null => V::Null,
        SqlParam::Bool(b) => V::Integer(i64::from(*b)),
        SqlParam::Int(i) => V::Integer(*i),
        SqlParam::Float(f) => V::Real(*f),
        SqlParam::Text(s) => V::Text(s.clone()),
        SqlParam::Time(t) => V::Text(sqlite_time(t)),
    }
}

/// One in-memory SQLite connection shared by a test's queries.
type SqlitePool = std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>;

fn bind_pg<'a>(q: Q<'a, Postgres>, p: &SqlParam) -> Q<'a, Postgres> {
    match p {
        SqlParam::Null => q.bind(None::<String>),
        SqlParam::Bool(b) => q.bind(*b),
        SqlParam::Int(i) => q.bind(*i),
        SqlParam::Float(f) => q.bind(*f),
        SqlParam::Text(s) => q.bind(s.clone()),
        SqlParam::Time(t) => q.bind(*t),
    }
}

async fn sqlite_pool() -> SqlitePool {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id TEXT PRIMARY KEY, title TEXT, body TEXT, num REAL, cnt INTEGER, \
         flag INTEGER, at TEXT, at2 TEXT, tags TEXT, meta TEXT)",
    )
    .unwrap();
    std::sync::Arc::new(std::sync::Mutex::new(conn))
}

async fn insert_sqlite(pool: &SqlitePool, rows: &[Row]) {
    let conn = pool.lock().unwrap();
    for row in rows {
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rusqlite::params![
                row.id,
                row.title,
                row.body,
                row.num,
                row.cnt,
                row.flag,
                row.at.as_ref().map(sqlite_time),
                row.at2.as_ref().map(sqlite_time),
                row.tags.as_ref().map(|t| serde_json::to_string(t).unwrap()),
                row.meta,
            ],
        )
        .unwrap();
    }
}

async fn insert_pg(pool: &sqlx::PgPool, rows: &[Row]) {
    for row in rows {
        sqlx::query(
            "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CAST($9 AS jsonb), \
             CAST($10 AS jsonb))",
        )
        .bind(&row.id)
        .bind(&row.title)
        .bind(&row.body)
        .bind(row.num)
        .bind(row.cnt)
        .bind(row.flag)
        .bind(row.at)
        .bind(row.at2)
        .bind(row.tags.as_ref().map(|t| serde_json::to_string(t).unwrap()))
        .bind(&row.meta)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// Connects to the test PostgreSQL and creates a private schema; `None` means "skip".
async fn pg_pool() -> Option<(sqlx::PgPool, String)> {
    let url = std::env::var("FERROBASE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let require = std::env::var("FERROBASE_REQUIRE_PG").as_deref() == Ok("1");
    let pool = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(&url)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            assert!(
                !require,
                "PostgreSQL required but not reachable at {url}: {e}"
            );
            // Written straight to stderr (not eprintln!) so the test harness does not capture it.
            let msg = format!("\n*** SKIPPED: PostgreSQL not reachable at {url}: {e} ***\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
            return None;
        }
    };
    // Tests of this file run in parallel threads of one process, so pid and clock alone
    // can collide (CI saw two schemas named in the same microsecond); a counter cannot.
    static NEXT_SCHEMA: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let schema = format!(
        "expr_test_{}_{}_{}",
        std::process::id(),
        Utc::now().timestamp_micros(),
        NEXT_SCHEMA.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    // One connection only, so the search_path sticks for every query of this test.
    sqlx::query(sqlx::AssertSqlSafe(format!("SET search_path TO {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE t (id TEXT COLLATE \"C\" PRIMARY KEY, title TEXT COLLATE \"C\", \
         body TEXT COLLATE \"C\", num DOUBLE PRECISION, cnt BIGINT, flag BOOLEAN, \
         at TIMESTAMPTZ, at2 TIMESTAMPTZ, tags JSONB, meta JSONB)",
    )
    .execute(&pool)
    .await
    .unwrap();
    Some((pool, schema))
}

async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(pool)
        .await
        .unwrap();
}

async fn select_sqlite(pool: &SqlitePool, sql: &str, params: &[SqlParam]) -> Vec<String> {
    let full = format!("SELECT t.id FROM t WHERE {sql} ORDER BY t.id");
    let conn = pool.lock().unwrap();
    let mut stmt = conn
        .prepare(&full)
        .unwrap_or_else(|e| panic!("sqlite failed on {sql}: {e}"));
    // Placeholders are `$n` (as on PostgreSQL): bind each by the number in its name.
    for i in 1..=stmt.parameter_count() {
        let n: usize = match stmt.parameter_name(i) {
            Some(name) => name[1..].parse().unwrap(),
            None => i,
        };
        stmt.raw_bind_parameter(i, sqlite_value(&params[n - 1]))
            .unwrap();
    }
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows
        .next()
        .unwrap_or_else(|e| panic!("sqlite failed on {sql}: {e}"))
    {
        out.push(r.get::<_, String>(0).unwrap());
    }
    out
}

async fn select_pg(pool: &sqlx::PgPool, sql: &str, params: &[SqlParam]) -> Vec<String> {
    let full = format!("SELECT t.id FROM t WHERE {sql} ORDER BY t.id");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(full));
    for p in params {
        q = bind_pg(q, p);
    }
    let rows = q
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("postgres failed on {sql}: {e}"));
    rows.iter()
        .map(|r| sqlx::Row::get::<String, _>(r, 0))
        .collect()
}

fn expected(f: &Fixture, e: &Expr, ctx: &Context, d: Dialect) -> Vec<String> {
    let ids: BTreeSet<String> = f
        .rows
        .iter()
        .filter(|row| eval(e, &record(row), &TableScope, ctx, d).unwrap())
        .map(|row| row.id.clone())
        .collect();
    ids.into_iter().collect()
}

/// Runs every case against one database. `select` gets SQL and params and returns ids.
async fn agree<F, Fut>(f: &Fixture, d: Dialect, mut select: F)
where
    F: FnMut(String, Vec<SqlParam>) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let mut nonempty = 0;
    let mut not_all = 0;
    for (src, auth, data) in &f.cases {
        let e = parse(src).unwrap_or_else(|err| panic!("{src}: {err}"));
        check(&e, &TableScope).unwrap_or_else(|err| panic!("{src}: {err}"));
        let ctx = Context {
            auth,
            data: data.as_ref(),
            now: now(),
        };
        // The caller's own leading param must be respected by the numbering.
        let mut params = vec![SqlParam::Text("sentinel".into())];
        let sql = to_sql(&e, &TableScope, &ctx, d, &mut params).unwrap();
        let sql = format!("($1 = 'sentinel') AND {sql}");
        let got = select(sql.clone(), params).await;
        let want = expected(f, &e, &ctx, d);
        assert_eq!(
            got, want,
            "{d:?} disagrees on {src}\nSQL: {sql}\nauth: {auth:?}\ndata: {data:?}"
        );
        nonempty += usize::from(!want.is_empty());
        not_all += usize::from(want.len() < f.rows.len());
    }
    // Guard against a generator that only produces trivially true/false expressions.
    assert!(
        nonempty > f.cases.len() / 5,
        "too few matching cases: {nonempty}"
    );
    assert!(
        not_all > f.cases.len() / 5,
        "too few filtering cases: {not_all}"
    );
}

/// Fixed so failures reproduce; override with FERROBASE_EXPR_SEED to explore other cases.
fn seed() -> u64 {
    std::env::var("FERROBASE_EXPR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_F00D_1234_5678)
}

#[tokio::test]
async fn sqlite_agrees_with_eval() {
    let f = fixture(seed(), 60, 400);
    let pool = sqlite_pool().await;
    insert_sqlite(&pool, &f.rows).await;
    agree(&f, Dialect::Sqlite, |sql, params| {
        let pool = pool.clone();
        async move { select_sqlite(&pool, &sql, &params).await }
    })
    .await;
}

#[tokio::test]
async fn postgres_agrees_with_eval() {
    let Some((pool, schema)) = pg_pool().await else {
        return;
    };
    let f = fixture(seed(), 60, 400);
    insert_pg(&pool, &f.rows).await;
    let result = tokio::spawn({
        let pool = pool.clone();
        async move {
            agree(&f, Dialect::Postgres, |sql, params| {
                let pool = pool.clone();
                async move { select_pg(&pool, &sql, &params).await }
            })
            .await;
        }
    })
    .await;
    drop_schema(&pool, &schema).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

// ---------------------------------------------------------------- injection

const INJECTIONS: [&str; 4] = [
    "'; DROP TABLE t; --",
    "\" OR 1=1 --",
    "') OR ('1'='1",
    "x\\'; DELETE FROM t; --",
];

/// Every injection attempt either fails to parse/check or compiles to SQL containing no
/// trace of the payload (it is bound as a value).
fn injection_sources() -> Vec<String> {
    let mut out = Vec::new();
    for inj in INJECTIONS {
        // As a field name.
        out.push(format!("{inj} = 1"));
        out.push(format!("title = 'a' || {inj}"));
        out.push(format!("@data.{inj} = 1"));
        // As a value, properly quoted in the language.
        out.push(format!("title = {}", quote(inj)));
        out.push(format!("title ~ {}", quote(inj)));
        out.push(format!("tags ~ {}", quote(inj)));
        out.push(format!("title in [{}, 'a']", quote(inj)));
        // As raw text spliced into a filter by a careless client.
        out.push(format!("title = '{inj}'"));
        out.push(format!("title = \"{inj}\""));
    }
    out
}

#[tokio::test]
async fn injection_attempts_are_rejected_or_bound() {
    let f = fixture(7, 20, 0);
    let sqlite = sqlite_pool().await;
    insert_sqlite(&sqlite, &f.rows).await;
    let pg = pg_pool().await;
    if let Some((pool, _)) = &pg {
        insert_pg(pool, &f.rows).await;
    }
    let auth = AuthContext {
        id: "'; DROP TABLE t; --".into(),
        ..Default::default()
    };
    let data = json!({"title": "\" OR 1=1 --"})
        .as_object()
        .unwrap()
        .clone();
    let ctx = Context {
        auth: &auth,
        data: Some(&data),
        now: now(),
    };
    let mut sources = injection_sources();
    sources.push("title = @auth.id || title = @data.title".into());
    let mut bound = 0;
    for src in &sources {
        let Ok(e) = parse(src) else { continue };
        if check(&e, &TableScope).is_err() {
            continue;
        }
        bound += 1;
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            let mut params = Vec::new();
            let sql = to_sql(&e, &TableScope, &ctx, d, &mut params).unwrap();
            for word in ["DROP", "DELETE", "1=1", "--"] {
                assert!(!sql.contains(word), "{src} leaked into SQL: {sql}");
            }
            let want = expected(&f, &e, &ctx, d);
            let got = match (d, &pg) {
                (Dialect::Sqlite, _) => select_sqlite(&sqlite, &sql, &params).await,
                (Dialect::Postgres, Some((pool, _))) => select_pg(pool, &sql, &params).await,
                (Dialect::Postgres, None) => continue,
            };
            assert_eq!(got, want, "{src}");
        }
    }
    assert!(
        bound >= INJECTIONS.len() * 4,
        "quoted payloads must be accepted as values"
    );
    // The table and its rows are intact.
    let all: Vec<String> = f
        .rows
        .iter()
        .map(|r| r.id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(select_sqlite(&sqlite, "TRUE", &[]).await, all);
    if let Some((pool, schema)) = &pg {
        assert_eq!(select_pg(pool, "TRUE", &[]).await, all);
        drop_schema(pool, schema).await;
    }
}
