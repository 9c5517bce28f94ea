-- Identity (PostgreSQL): the built-in users collection, sessions, tokens, API keys, signing keys,
-- the durable job queue (outbox) and the tamper-evident audit log.
CREATE TABLE c_users (
    id             TEXT COLLATE "C" PRIMARY KEY,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    version        BIGINT NOT NULL DEFAULT 1,
    email          TEXT COLLATE "C" UNIQUE,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    name           TEXT COLLATE "C",
    avatar         TEXT COLLATE "C",
    is_anonymous   BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash  TEXT,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    role           TEXT NOT NULL DEFAULT 'user'
);
CREATE INDEX s_users_created ON c_users (created_at, id);

CREATE TABLE _fb_sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    ip           TEXT,
    user_agent   TEXT
);
CREATE INDEX _fb_sessions_user ON _fb_sessions (user_id);

-- Every refresh token ever issued, as a hash; a spent one presented again revokes its session.
CREATE TABLE _fb_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    spent_at   TIMESTAMPTZ
);
CREATE INDEX _fb_refresh_tokens_session ON _fb_refresh_tokens (session_id);

-- Single-use emailed tokens (verification, password reset), as hashes.
CREATE TABLE _fb_email_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    email      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);

CREATE TABLE _fb_signing_keys (
    kid        TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    retired_at TIMESTAMPTZ
);

CREATE TABLE _fb_api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    scopes     JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT,
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);

CREATE TABLE _fb_jobs (
    id         BIGSERIAL PRIMARY KEY,
    kind       TEXT NOT NULL,
    payload    JSONB NOT NULL,
    status     TEXT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    run_at     TIMESTAMPTZ NOT NULL,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX _fb_jobs_due ON _fb_jobs (status, run_at);

CREATE TABLE _fb_audit (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    at          TIMESTAMPTZ NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT,
    actor_email TEXT,
    action      TEXT NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    ip          TEXT,
    user_agent  TEXT,
    details     JSONB NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX _fb_audit_action ON _fb_audit (action, seq);
CREATE INDEX _fb_audit_actor ON _fb_audit (actor_id, seq);
CREATE INDEX _fb_audit_target ON _fb_audit (target_type, target_id, seq);
