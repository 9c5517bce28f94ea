//! # ferrobase-expr: the filter and access-rule language
//!
//! One small language is used both by `?filter=` on list queries and by collection access
//! rules. An expression is
//!
//! 1. [`parse`]d into an AST ([`Expr`]),
//! 2. [`check`]ed against the collection's fields (a [`Scope`]),
//! 3. compiled by [`to_sql`] into a **parameterized** SQL boolean for SQLite or PostgreSQL
//!    (values are always bound as [`SqlParam`]s, never spliced into the SQL text), and
//! 4. evaluated in memory by [`eval`] against a JSON record (realtime delivery).
//!
//! The SQL and the evaluator are built from the same typing decisions (see `plan.rs`) and are
//! tested against each other on both databases, so a realtime subscriber sees exactly the
//! records a list query would return.
//!
//! See `README.md` in this crate for the language reference and exact semantics.

mod ast;
mod eval;
mod lexer;
mod plan;
mod sql;

pub use ast::Expr;

/// The SQL dialect to compile for (and, for [`eval`], which database's `lower()` to mirror).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The type of a value as the language sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// Also email/url/select/relation (single)/file (single).
    Text,
    /// REAL / DOUBLE PRECISION.
    Number,
    /// BIGINT.
    Integer,
    /// SQLite INTEGER 0/1, PostgreSQL BOOLEAN.
    Bool,
    /// SQLite TEXT in [`sqlite_time`] format, PostgreSQL TIMESTAMPTZ.
    Date,
    /// JSON array of strings: SQLite TEXT, PostgreSQL JSONB.
    TextList,
    /// json and geo fields: only `= null` / `!= null` are allowed.
    Json,
}

/// How a field is reached from SQL and what it holds.
#[derive(Clone, Debug)]
pub struct FieldRef {
    pub ty: ValueType,
    /// SQL expression for the column, already quoted, e.g. `"title"` or `t."title"`
    pub column: String,
}

/// Resolves field names (including system fields such as `id`, `created_at`) for a collection.
pub trait Scope {
    fn field(&self, name: &str) -> Option<FieldRef>;
}

/// The caller, as seen by `@auth.*`.
#[derive(Clone, Debug, Default)]
pub struct AuthContext {
    /// `""` when anonymous.
    pub id: String,
    pub email: String,
    pub role: String,
    pub verified: bool,
    pub tenant: String,
}

/// Request-dependent values an expression may reference.
pub struct Context<'a> {
    pub auth: &'a AuthContext,
    /// The request body of a create/update, for `@data.<field>` (None outside writes → @data.x is null)
    pub data: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// A value bound to a `$N` placeholder produced by [`to_sql`].
///
/// Binding advice for callers: `Null` as `Option<String>::None` (the PostgreSQL SQL casts every
/// placeholder to its intended type, so a text-typed NULL is fine); `Time` as
/// [`sqlite_time`] text on SQLite and `DateTime<Utc>` on PostgreSQL.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlParam {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Time(chrono::DateTime<chrono::Utc>),
}

/// A parse, type or compile error with the 0-based character offset of the problem, so API
/// clients can point at it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (at position {position})")]
pub struct ExprError {
    /// 0-based CHARACTER offset in the source
    pub position: usize,
    pub message: String,
}

/// Parses an expression. Enforces the limits (≤ 4096 characters, nesting ≤ 64, lists ≤ 500
/// items, ≤ 200 conditions) so hostile input yields an error rather than a stack overflow.
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    ast::parse(src)
}

/// Checks every field exists in scope and operand types are compatible; literal dates parse.
pub fn check(expr: &Expr, scope: &dyn Scope) -> Result<(), ExprError> {
    plan::check(&expr.root, scope)
}

/// Appends bound values to `params` and returns an SQL boolean expression using `$N` placeholders,
/// where N = index in `params` (1-based), so callers can put their own params before and after.
///
/// The result is always two-valued (never NULL), so `NOT (...)` around it is safe.
pub fn to_sql(
    expr: &Expr,
    scope: &dyn Scope,
    ctx: &Context,
    dialect: Dialect,
    params: &mut Vec<SqlParam>,
) -> Result<String, ExprError> {
    sql::to_sql(&expr.root, scope, ctx, dialect, params)
}

/// Evaluates against a record as the API returns it (JSON object: dates as RFC 3339 strings, lists as arrays).
///
/// `dialect` selects which database's case folding `~` mirrors, so the result equals what
/// [`to_sql`] would select on that database.
pub fn eval(
    expr: &Expr,
    record: &serde_json::Map<String, serde_json::Value>,
    scope: &dyn Scope,
    ctx: &Context,
    dialect: Dialect,
) -> Result<bool, ExprError> {
    eval::eval(&expr.root, record, scope, ctx, dialect)
}

/// Formats a timestamp the way SQLite stores dates: fixed width, UTC, microseconds: "2026-11-27T14:40:12.123456Z".
/// (Fixed width makes text order = time order.) Also used by the server when binding SqlParam::Time on SQLite.
pub fn sqlite_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // Written digit by digit: every record read formats two or three of these, and chrono's
    // `format` re-parses its pattern on each call (it showed in the view profile).
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    }
    let mut out = [0u8; 27];
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.unsigned_abs());
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    // A leap second shows as :60, as chrono prints it.
    let nanos = t.nanosecond();
    put(17, 2, t.second() + nanos / 1_000_000_000);
    put(20, 6, (nanos % 1_000_000_000) / 1_000);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out[19] = b'.';
    out[26] = b'Z';
    out.iter().map(|&b| b as char).collect()
}

/// Parses a date literal/value: RFC 3339, "YYYY-MM-DD HH:MM:SS(.frac)?Z?" and "YYYY-MM-DD" (midnight UTC).
///
/// The result is truncated to microseconds, the precision both databases store.
/// Only years 0001–9999 are accepted, so that [`sqlite_time`] stays fixed width (text order
/// = time order) and PostgreSQL can store every accepted value.
pub fn parse_date(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let b = s.as_bytes();
    if b.len() < 10 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    let t = if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        d.with_timezone(&Utc)
    } else if b.len() == 10 {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()?
            .and_hms_opt(0, 0, 0)?
            .and_utc()
    } else {
        let body = s.strip_suffix('Z').unwrap_or(s);
        let body = body.replacen('T', " ", 1);
        NaiveDateTime::parse_from_str(&body, "%Y-%m-%d %H:%M:%S%.f")
            .ok()?
            .and_utc()
    };
    use chrono::Datelike;
    if !(1..=9999).contains(&t.year()) {
        return None;
    }
    Some(truncate_micros(t))
}

/// Both databases store microseconds; truncating every time value up front means SQL and
/// [`eval`] compare exactly the same instants.
pub(crate) fn truncate_micros(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::Timelike;
    let micros = t.nanosecond() / 1_000 * 1_000;
    t.with_nanosecond(micros).unwrap_or(t)
}

#[cfg(test)]
mod tests;
