-- System tables (PostgreSQL). Append-only: never edit a migration that has shipped.
CREATE TABLE _fb_schema_versions (
    version     BIGINT PRIMARY KEY,
    applied_at  TIMESTAMPTZ NOT NULL,
    applied_by  TEXT,
    collections JSONB NOT NULL,
    changes     JSONB NOT NULL
);

CREATE TABLE _fb_admins (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE _fb_admin_tokens (
    token_hash TEXT PRIMARY KEY,
    admin_id   TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX _fb_admin_tokens_admin ON _fb_admin_tokens (admin_id);

-- The durable change log: every committed record write appends here in the same transaction.
-- Realtime, delta sync and fan-out between replicas read it.
CREATE TABLE _fb_changes (
    seq        BIGSERIAL PRIMARY KEY,
    collection TEXT NOT NULL,
    record_id  TEXT NOT NULL,
    op         TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX _fb_changes_collection ON _fb_changes (collection, seq);
