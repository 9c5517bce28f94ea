//! DDL per dialect. The server runs the statements of one `ddl()` call in one transaction
//! (SQLite and PostgreSQL both have transactional DDL), so a failed migration leaves the
//! old schema intact.
//!
//! Statement order inside one collection matters:
//! 1. drop indexes that go away or touch a column about to be dropped/retyped
//!    (SQLite refuses to drop an indexed column);
//! 2. drop removed columns; 3. rename columns; 4. retype (drop + add) columns;
//! 5. add new columns; 6. create new and re-create temporarily dropped indexes.

use crate::diff::CollectionDiff;
use crate::fx::Dialect;
use crate::model::{Collection, Index, Storage};

fn q(ident: &str) -> String {
    // Identifiers are validated against ^[a-z][a-z0-9_]*$ before DDL is generated; the
    // doubling is defence in depth.
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn column_type(dialect: Dialect, storage: Storage) -> &'static str {
    match (dialect, storage) {
        (Dialect::Sqlite, Storage::Text) => "TEXT",
        (Dialect::Sqlite, Storage::Real) => "REAL",
        (Dialect::Sqlite, Storage::Integer) => "INTEGER",
        (Dialect::Sqlite, Storage::Bool) => "INTEGER",
        (Dialect::Sqlite, Storage::Date) => "TEXT",
        (Dialect::Sqlite, Storage::Json) => "TEXT",
        (Dialect::Postgres, Storage::Text) => "TEXT COLLATE \"C\"",
        (Dialect::Postgres, Storage::Real) => "DOUBLE PRECISION",
        (Dialect::Postgres, Storage::Integer) => "BIGINT",
        (Dialect::Postgres, Storage::Bool) => "BOOLEAN",
        (Dialect::Postgres, Storage::Date) => "TIMESTAMPTZ",
        (Dialect::Postgres, Storage::Json) => "JSONB",
    }
}

/// FNV-1a, 64 bit: tiny and stable across Rust versions (std's hasher is not), so an
/// index keeps its name forever.
fn fnv1a(data: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Deterministic index name, at most 63 characters: `i_<collection>_<hash>`. The hash
/// covers the collection, the fields and uniqueness (index names are per schema, not per
/// table, and the collection part may be truncated).
pub fn index_name(collection: &str, index: &Index) -> String {
    let key = format!(
        "{collection}\0{}\0{}",
        index.fields.join(","),
        if index.unique { "u" } else { "" }
    );
    let prefix: String = collection.chars().take(48).collect();
    format!("i_{prefix}_{:012x}", fnv1a(&key) & 0xffff_ffff_ffff)
}

/// Name of the implicit `(created_at, id)` index behind default list ordering.
fn system_index_name(collection: &str) -> String {
    let prefix: String = collection.chars().take(48).collect();
    format!(
        "s_{prefix}_{:012x}",
        fnv1a(&format!("{collection}\0created_at,id")) & 0xffff_ffff_ffff
    )
}

fn create_index(c: &Collection, ix: &Index) -> String {
    let mut cols: Vec<String> = ix.fields.iter().map(|f| q(f)).collect();
    // Lists always end their order with `id` (the tie-breaker of keyset paging): a non-unique
    // index that ends with `id` too can serve `WHERE owner = $1 ORDER BY created_at, id`
    // without a sort. Unique indexes keep their exact columns (adding `id` would make any
    // combination unique).
    if !ix.unique && !ix.fields.iter().any(|f| f == "id") {
        cols.push(q("id"));
    }
    format!(
        "CREATE {}INDEX {} ON {} ({})",
        if ix.unique { "UNIQUE " } else { "" },
        q(&index_name(&c.name, ix)),
        q(&c.table()),
        cols.join(", ")
    )
}

fn drop_index(c: &Collection, ix: &Index) -> String {
    format!("DROP INDEX {}", q(&index_name(&c.name, ix)))
}

/// `CREATE TABLE` for a collection, plus its system and declared indexes.
pub fn create_table_ddl(dialect: Dialect, c: &Collection) -> Vec<String> {
    let (id, ts, version) = match dialect {
        Dialect::Sqlite => ("TEXT PRIMARY KEY NOT NULL", "TEXT", "INTEGER"),
        Dialect::Postgres => ("TEXT COLLATE \"C\" PRIMARY KEY", "TIMESTAMPTZ", "BIGINT"),
    };
    let mut cols = vec![
        format!("{} {id}", q("id")),
        format!("{} {ts} NOT NULL", q("created_at")),
        format!("{} {ts} NOT NULL", q("updated_at")),
        format!("{} {version} NOT NULL DEFAULT 1", q("version")),
    ];
    for (name, f) in &c.fields {
        cols.push(format!(
            "{} {}",
            q(name),
            column_type(dialect, f.ty.storage())
        ));
    }
    let mut out = vec![format!(
        "CREATE TABLE {} ({})",
        q(&c.table()),
        cols.join(", ")
    )];
    out.push(format!(
        "CREATE INDEX {} ON {} ({}, {})",
        q(&system_index_name(&c.name)),
        q(&c.table()),
        q("created_at"),
        q("id")
    ));
    out.extend(c.indexes.iter().map(|ix| create_index(c, ix)));
    out
}

/// Statements that migrate the tables of `current` to `desired`, consistent with
/// [`crate::plan`]: dropped collections first, then new ones, then altered ones.
pub fn ddl(dialect: Dialect, current: &[Collection], desired: &[Collection]) -> Vec<String> {
    let mut out = Vec::new();
    for cur in current {
        if !desired.iter().any(|d| d.name == cur.name) {
            out.push(format!("DROP TABLE {}", q(&cur.table())));
        }
    }
    for des in desired {
        match current.iter().find(|c| c.name == des.name) {
            None => out.extend(create_table_ddl(dialect, des)),
            Some(cur) => alter(dialect, &CollectionDiff::new(cur, des), &mut out),
        }
    }
    out
}

fn alter(dialect: Dialect, d: &CollectionDiff<'_>, out: &mut Vec<String>) {
    let table = q(&d.des.table());
    // Retyped columns whose storage changes are dropped and re-added.
    let rebuilt: Vec<(&str, &str)> = d
        .retyped
        .iter()
        .copied()
        .filter(|(old, new)| d.storage_changes(old, new))
        .collect();
    // Indexes kept on both sides but touching a rebuilt column: drop, then re-create.
    let touched: Vec<&Index> = d
        .cur
        .indexes
        .iter()
        .filter(|ix| d.des.indexes.contains(ix))
        .filter(|ix| {
            ix.fields
                .iter()
                .any(|f| rebuilt.iter().any(|(old, _)| old == f))
        })
        .collect();

    for ix in d
        .dropped_indexes
        .iter()
        .copied()
        .chain(touched.iter().copied())
    {
        out.push(drop_index(d.cur, ix));
    }
    for f in &d.removed {
        out.push(format!("ALTER TABLE {table} DROP COLUMN {}", q(f)));
    }
    for (old, new) in &d.renames {
        out.push(format!(
            "ALTER TABLE {table} RENAME COLUMN {} TO {}",
            q(old),
            q(new)
        ));
    }
    for (_, new) in &rebuilt {
        if let Some(f) = d.des.fields.get(*new) {
            out.push(format!("ALTER TABLE {table} DROP COLUMN {}", q(new)));
            out.push(format!(
                "ALTER TABLE {table} ADD COLUMN {} {}",
                q(new),
                column_type(dialect, f.ty.storage())
            ));
        }
    }
    for name in &d.added {
        if let Some(f) = d.des.fields.get(*name) {
            out.push(format!(
                "ALTER TABLE {table} ADD COLUMN {} {}",
                q(name),
                column_type(dialect, f.ty.storage())
            ));
        }
    }
    for ix in d
        .added_indexes
        .iter()
        .copied()
        .chain(touched.iter().copied())
    {
        out.push(create_index(d.des, ix));
    }
}
