-- The change log is written by a trigger, in the same statement as the record write: no write
-- can skip it, and it costs no extra round trip. Collections get the same trigger when they
-- are created (see server/src/schemas.rs).
CREATE OR REPLACE FUNCTION _fb_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO _fb_changes (collection, record_id, op, at) VALUES (TG_ARGV[0], OLD.id, 'delete', clock_timestamp());
        RETURN OLD;
    END IF;
    INSERT INTO _fb_changes (collection, record_id, op, at)
    VALUES (TG_ARGV[0], NEW.id, CASE WHEN TG_OP = 'INSERT' THEN 'create' ELSE 'update' END, NEW.updated_at);
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER c_users_changes AFTER INSERT OR UPDATE OR DELETE ON c_users
    FOR EACH ROW EXECUTE FUNCTION _fb_log_change('users');
