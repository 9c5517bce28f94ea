//! System-table migrations, embedded in the binary and applied at start, one transaction each.
//! On PostgreSQL an advisory lock makes replicas that start together apply them once.

use chrono::Utc;

use super::{ColType, Conn, DbError, Param};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "system",
        sqlite: include_str!("../../../migrations/sqlite/0001_system.sql"),
        postgres: include_str!("../../../migrations/postgres/0001_system.sql"),
    },
    Migration {
        version: 2,
        name: "identity",
        sqlite: include_str!("../../../migrations/sqlite/0002_identity.sql"),
        postgres: include_str!("../../../migrations/postgres/0002_identity.sql"),
    },
    Migration {
        version: 3,
        name: "change_triggers",
        sqlite: include_str!("../../../migrations/sqlite/0003_change_triggers.sql"),
        postgres: include_str!("../../../migrations/postgres/0003_change_triggers.sql"),
    },
    Migration {
        version: 4,
        name: "change_log",
        sqlite: include_str!("../../../migrations/sqlite/0004_change_log.sql"),
        postgres: include_str!("../../../migrations/postgres/0004_change_log.sql"),
    },
    Migration {
        version: 5,
        name: "idempotency",
        sqlite: include_str!("../../../migrations/sqlite/0005_idempotency.sql"),
        postgres: include_str!("../../../migrations/postgres/0005_idempotency.sql"),
    },
    Migration {
        version: 6,
        name: "uploads",
        sqlite: include_str!("../../../migrations/sqlite/0006_uploads.sql"),
        postgres: include_str!("../../../migrations/postgres/0006_uploads.sql"),
    },
    Migration {
        version: 7,
        name: "idempotency_seq",
        sqlite: include_str!("../../../migrations/sqlite/0007_idempotency_seq.sql"),
        postgres: include_str!("../../../migrations/postgres/0007_idempotency_seq.sql"),
    },
    Migration {
        version: 8,
        name: "push",
        sqlite: include_str!("../../../migrations/sqlite/0008_push.sql"),
        postgres: include_str!("../../../migrations/postgres/0008_push.sql"),
    },
];

/// Any number: it only has to be the same for every replica.
const PG_LOCK_KEY: i64 = 0x6665_7272_6f62;

pub(super) async fn run(conn: &mut Conn<'_>) -> Result<(), DbError> {
    let pg = matches!(conn, Conn::Pg { .. });
    let table = if pg {
        "CREATE TABLE IF NOT EXISTS _fb_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    } else {
        "CREATE TABLE IF NOT EXISTS _fb_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    };
    conn.execute_script(table).await?;
    for m in MIGRATIONS {
        conn.execute_script("BEGIN").await?;
        let result = apply(conn, m, pg).await;
        match result {
            Ok(()) => conn.execute_script("COMMIT").await?,
            Err(e) => {
                let _ = conn.execute_script("ROLLBACK").await;
                return Err(e);
            }
        }
    }
    Ok(())
}

async fn apply(conn: &mut Conn<'_>, m: &Migration, pg: bool) -> Result<(), DbError> {
    if pg {
        conn.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[Param::Int(PG_LOCK_KEY)],
        )
        .await?;
    }
    let done = conn
        .fetch_one(
            "SELECT version FROM _fb_migrations WHERE version = $1",
            &[Param::Int(m.version)],
            &[ColType::Int],
        )
        .await?;
    if done.is_some() {
        return Ok(());
    }
    let sql = if pg { m.postgres } else { m.sqlite };
    conn.execute_script(sql)
        .await
        .map_err(|e| DbError::Migration {
            version: m.version,
            message: e.to_string(),
        })?;
    conn.execute(
        "INSERT INTO _fb_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        &[
            Param::Int(m.version),
            Param::Text(m.name.into()),
            Param::Time(Utc::now()),
        ],
    )
    .await?;
    Ok(())
}
