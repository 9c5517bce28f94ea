-- The change log is written by triggers, in the same statement as the record write: no write
-- can skip it, and it costs no extra round trip. Collections get the same three triggers when
-- they are created (see server/src/schemas.rs).
CREATE TRIGGER IF NOT EXISTS "c_users_ins" AFTER INSERT ON c_users BEGIN
    INSERT INTO _fb_changes (collection, record_id, op, at) VALUES ('users', NEW.id, 'create', NEW.updated_at);
END;
CREATE TRIGGER IF NOT EXISTS "c_users_upd" AFTER UPDATE ON c_users BEGIN
    INSERT INTO _fb_changes (collection, record_id, op, at) VALUES ('users', NEW.id, 'update', NEW.updated_at);
END;
CREATE TRIGGER IF NOT EXISTS "c_users_del" AFTER DELETE ON c_users BEGIN
    INSERT INTO _fb_changes (collection, record_id, op, at) VALUES ('users', OLD.id, 'delete', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
