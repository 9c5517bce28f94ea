-- Idempotency keys on SQLite without an index on `id` (see server/src/idempotency/table.rs):
-- an index on a hash takes every claim at a random place, and each commit then writes that
-- page to the WAL; rows are appended in `seq` order instead, the server keeps `id → seq` in
-- memory, and pruning goes by `seq` (creation order), so `created_at` needs no index either.
CREATE TABLE _fb_idempotency_seq (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    owner       INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    lease_until TEXT NOT NULL,
    status      INTEGER,
    response    TEXT
);
INSERT INTO _fb_idempotency_seq (id, fingerprint, owner, created_at, lease_until, status, response)
    SELECT id, fingerprint, owner, created_at, lease_until, status, response
    FROM _fb_idempotency ORDER BY created_at;
DROP TABLE _fb_idempotency;
ALTER TABLE _fb_idempotency_seq RENAME TO _fb_idempotency;
