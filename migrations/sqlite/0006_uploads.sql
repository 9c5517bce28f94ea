-- Resumable uploads (tus 1.0): one row per upload; the bytes are stored as parts (one object
-- per PATCH, named by its starting offset) under `<prefix>_uploads/<id>/` until a record write
-- attaches the finished upload (see server/src/files/uploads.rs).
CREATE TABLE _fb_uploads (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    length       INTEGER NOT NULL,
    upload_offset INTEGER NOT NULL DEFAULT 0,
    filename     TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX _fb_uploads_expires ON _fb_uploads (expires_at);
