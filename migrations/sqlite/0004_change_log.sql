-- What realtime and delta sync need from the change log (JSON objects of a record's API
-- columns, written by the collections' triggers, see server/src/schemas.rs):
-- - `record`: the record as this change left it (creates and updates), so a realtime event
--   shows the state it announces, in commit order, without reading the table again;
-- - `old`: the record before an update or delete, so a subscriber's view rule can be tested
--   against the state it may have seen: a delete, or an update that hides a record, reaches
--   only those who could see it before (nobody else learns even its id).
ALTER TABLE _fb_changes ADD COLUMN record TEXT;
ALTER TABLE _fb_changes ADD COLUMN old TEXT;

-- Small counters of the server itself. `changes_pruned`: every change with a sequence number
-- at or below it has been removed by retention, so a cursor below it has a gap (reset).
CREATE TABLE _fb_state (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO _fb_state (key, value) VALUES ('changes_pruned', 0);

DROP TRIGGER IF EXISTS "c_users_ins";
CREATE TRIGGER "c_users_ins" AFTER INSERT ON c_users BEGIN
    INSERT INTO _fb_changes (collection, record_id, op, at, record) VALUES ('users', NEW.id, 'create', NEW.updated_at,
        json_object('id', NEW.id, 'created_at', NEW.created_at, 'updated_at', NEW.updated_at, 'version', NEW.version,
            'email', NEW.email, 'email_verified', NEW.email_verified, 'name', NEW.name, 'avatar', NEW.avatar,
            'is_anonymous', NEW.is_anonymous));
END;
DROP TRIGGER IF EXISTS "c_users_upd";
CREATE TRIGGER "c_users_upd" AFTER UPDATE ON c_users BEGIN
    INSERT INTO _fb_changes (collection, record_id, op, at, record, old) VALUES ('users', NEW.id, 'update', NEW.updated_at,
        json_object('id', NEW.id, 'created_at', NEW.created_at, 'updated_at', NEW.updated_at, 'version', NEW.version,
            'email', NEW.email, 'email_verified', NEW.email_verified, 'name', NEW.name, 'avatar', NEW.avatar,
            'is_anonymous', NEW.is_anonymous),
        json_object('id', OLD.id, 'created_at', OLD.created_at, 'updated_at', OLD.updated_at, 'version', OLD.version,
            'email', OLD.email, 'email_verified', OLD.email_verified, 'name', OLD.name, 'avatar', OLD.avatar,
            'is_anonymous', OLD.is_anonymous));
END;
DROP TRIGGER IF EXISTS "c_users_del";
CREATE TRIGGER "c_users_del" AFTER DELETE ON c_users BEGIN
    INSERT INTO _fb_changes (collection, record_id, op, at, old) VALUES ('users', OLD.id, 'delete', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        json_object('id', OLD.id, 'created_at', OLD.created_at, 'updated_at', OLD.updated_at, 'version', OLD.version,
            'email', OLD.email, 'email_verified', OLD.email_verified, 'name', OLD.name, 'avatar', OLD.avatar,
            'is_anonymous', OLD.is_anonymous));
END;
