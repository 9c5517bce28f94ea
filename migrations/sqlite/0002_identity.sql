-- Identity (SQLite): the built-in users collection, sessions, tokens, API keys, signing keys,
-- the durable job queue (outbox) and the tamper-evident audit log.
CREATE TABLE c_users (
    id             TEXT PRIMARY KEY,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    version        INTEGER NOT NULL DEFAULT 1,
    email          TEXT UNIQUE,
    email_verified INTEGER NOT NULL DEFAULT 0,
    name           TEXT,
    avatar         TEXT,
    is_anonymous   INTEGER NOT NULL DEFAULT 0,
    password_hash  TEXT,
    disabled       INTEGER NOT NULL DEFAULT 0,
    role           TEXT NOT NULL DEFAULT 'user'
);
CREATE INDEX s_users_created ON c_users (created_at, id);

CREATE TABLE _fb_sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT,
    ip           TEXT,
    user_agent   TEXT
);
CREATE INDEX _fb_sessions_user ON _fb_sessions (user_id);

-- Every refresh token ever issued, as a hash; a spent one presented again revokes its session.
CREATE TABLE _fb_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    spent_at   TEXT
);
CREATE INDEX _fb_refresh_tokens_session ON _fb_refresh_tokens (session_id);

-- Single-use emailed tokens (verification, password reset), as hashes.
CREATE TABLE _fb_email_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    email      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);

CREATE TABLE _fb_signing_keys (
    kid        TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    retired_at TEXT
);

CREATE TABLE _fb_api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT,
    expires_at TEXT,
    revoked_at TEXT
);

CREATE TABLE _fb_jobs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    status     TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    run_at     TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX _fb_jobs_due ON _fb_jobs (status, run_at);

CREATE TABLE _fb_audit (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    at          TEXT NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT,
    actor_email TEXT,
    action      TEXT NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    ip          TEXT,
    user_agent  TEXT,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX _fb_audit_action ON _fb_audit (action, seq);
CREATE INDEX _fb_audit_actor ON _fb_audit (actor_id, seq);
CREATE INDEX _fb_audit_target ON _fb_audit (target_type, target_id, seq);
