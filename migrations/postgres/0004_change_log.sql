-- What realtime and delta sync need from the change log.
--
-- Commit order. A BIGSERIAL is taken when a row is inserted, not when its transaction commits,
-- so two concurrent writers can commit out of order: a reader that saw change 8 and not yet 7
-- would skip 7 forever. So the serial becomes a private `id`, and `seq` (what clients see as
-- SSE ids and sync cursors) is assigned after commit by a sequencer: one transaction at a time
-- (an advisory lock, across replicas) numbers the committed, unnumbered rows in `id` order.
-- Readers only read numbered rows, and each sequencer run commits numbers above every earlier
-- one, so `seq > cursor` never misses a row. See server/src/changes/mod.rs.
ALTER TABLE _fb_changes RENAME COLUMN seq TO id;
ALTER TABLE _fb_changes ADD COLUMN seq BIGINT;
-- The record as the change left it, and as it was before (see the SQLite migration for why).
ALTER TABLE _fb_changes ADD COLUMN record JSONB;
ALTER TABLE _fb_changes ADD COLUMN old JSONB;
UPDATE _fb_changes SET seq = id;
DROP INDEX IF EXISTS _fb_changes_collection;
CREATE UNIQUE INDEX _fb_changes_seq ON _fb_changes (seq);
CREATE INDEX _fb_changes_collection ON _fb_changes (collection, seq);
CREATE INDEX _fb_changes_pending ON _fb_changes (id) WHERE seq IS NULL;

-- Small counters of the server itself. `changes_seq`: the last sequence number assigned;
-- `changes_pruned`: every change at or below it has been removed by retention.
CREATE TABLE _fb_state (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO _fb_state (key, value) VALUES
    ('changes_pruned', 0),
    ('changes_seq', (SELECT COALESCE(MAX(id), 0) FROM _fb_changes));

-- Every change wakes the sequencer of each replica (LISTEN fb_changes). A notification is sent
-- at commit, and identical ones of one transaction are folded into one.
CREATE OR REPLACE FUNCTION _fb_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO _fb_changes (collection, record_id, op, at, old)
        VALUES (TG_ARGV[0], OLD.id, 'delete', clock_timestamp(), to_jsonb(OLD) - 'password_hash');
        PERFORM pg_notify('fb_changes', '');
        RETURN OLD;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO _fb_changes (collection, record_id, op, at, record)
        VALUES (TG_ARGV[0], NEW.id, 'create', NEW.updated_at, to_jsonb(NEW) - 'password_hash');
    ELSE
        INSERT INTO _fb_changes (collection, record_id, op, at, record, old)
        VALUES (TG_ARGV[0], NEW.id, 'update', NEW.updated_at, to_jsonb(NEW) - 'password_hash', to_jsonb(OLD) - 'password_hash');
    END IF;
    PERFORM pg_notify('fb_changes', '');
    RETURN NEW;
END
$$;
