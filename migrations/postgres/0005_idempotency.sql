-- Idempotency keys (PostgreSQL): one row per (caller, Idempotency-Key), see
-- server/src/idempotency.rs. `id` is a hash of the caller's scope and the key (the key itself
-- is not stored); `response` is the stored answer, encrypted with a key derived from the
-- client's Idempotency-Key, so the table never holds a readable copy of a token or API key a
-- response carried. While the first request runs, `status` is NULL and `lease_until` bounds
-- how long its claim blocks a retry; `owner` tells the claim's holder from a retry that took
-- an abandoned claim over. The claim is this table's primary key, so replicas sharing the
-- database agree on who runs a request.
CREATE TABLE _fb_idempotency (
    id          TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    owner       BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    status      BIGINT,
    response    TEXT
);
-- Pruning takes the oldest rows in small batches.
CREATE INDEX _fb_idempotency_created ON _fb_idempotency (created_at);
