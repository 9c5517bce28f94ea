-- Push notifications (server/src/push/): the device registry, per-user preferences, the
-- categories a project declares (push.toml), and push jobs with one delivery row per
-- job x device. The delivery's primary key is what makes a fan-out resumable after a crash
-- without sending twice: a page of deliveries and the send job that covers it commit together.
CREATE TABLE _fb_devices (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL,
    platform           TEXT NOT NULL,
    token              TEXT NOT NULL UNIQUE,
    app_version        TEXT,
    locale             TEXT,
    timezone           TEXT,
    topics             TEXT NOT NULL DEFAULT '[]',
    active             INTEGER NOT NULL DEFAULT 1,
    deactivated_reason TEXT,
    deactivated_at     TEXT,
    last_seen_at       TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE INDEX _fb_devices_user ON _fb_devices (user_id, id);
-- Topic membership, for fan-out by topic without scanning every device.
CREATE TABLE _fb_device_topics (
    topic     TEXT NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (topic, device_id)
);
CREATE INDEX _fb_device_topics_device ON _fb_device_topics (device_id);
CREATE TABLE _fb_push_categories (
    name        TEXT PRIMARY KEY,
    default_on  INTEGER NOT NULL,
    description TEXT
);
-- A user's choice for a category; no row = the category's default.
CREATE TABLE _fb_push_prefs (
    user_id  TEXT NOT NULL,
    category TEXT NOT NULL,
    enabled  INTEGER NOT NULL,
    PRIMARY KEY (user_id, category)
);
-- Quiet hours as minutes after local midnight; start > end wraps past midnight.
CREATE TABLE _fb_push_quiet (
    user_id   TEXT PRIMARY KEY,
    start_min INTEGER NOT NULL,
    end_min   INTEGER NOT NULL
);
CREATE TABLE _fb_push_jobs (
    id            TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    request       TEXT NOT NULL,
    created_by    TEXT,
    created_at    TEXT NOT NULL,
    send_at       TEXT NOT NULL,
    fanout_cursor TEXT,
    fanout_done   INTEGER NOT NULL DEFAULT 0,
    finished_at   TEXT
);
CREATE INDEX _fb_push_jobs_created ON _fb_push_jobs (created_at);
CREATE TABLE _fb_push_deliveries (
    job_id      TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    platform    TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    provider_id TEXT,
    error       TEXT,
    not_before  TEXT,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (job_id, device_id)
);
