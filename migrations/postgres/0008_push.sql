-- Push notifications (server/src/push/): the device registry, per-user preferences, the
-- categories a project declares (push.toml), and push jobs with one delivery row per
-- job x device. The delivery's primary key is what makes a fan-out resumable after a crash
-- without sending twice: a page of deliveries and the send job that covers it commit together.
CREATE TABLE _fb_devices (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    user_id            TEXT COLLATE "C" NOT NULL,
    platform           TEXT NOT NULL,
    token              TEXT NOT NULL UNIQUE,
    app_version        TEXT,
    locale             TEXT,
    timezone           TEXT,
    topics             JSONB NOT NULL DEFAULT '[]',
    active             BOOLEAN NOT NULL DEFAULT TRUE,
    deactivated_reason TEXT,
    deactivated_at     TIMESTAMPTZ,
    last_seen_at       TIMESTAMPTZ NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX _fb_devices_user ON _fb_devices (user_id, id);
-- Topic membership, for fan-out by topic without scanning every device.
CREATE TABLE _fb_device_topics (
    topic     TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (topic, device_id)
);
CREATE INDEX _fb_device_topics_device ON _fb_device_topics (device_id);
CREATE TABLE _fb_push_categories (
    name        TEXT COLLATE "C" PRIMARY KEY,
    default_on  BOOLEAN NOT NULL,
    description TEXT
);
-- A user's choice for a category; no row = the category's default.
CREATE TABLE _fb_push_prefs (
    user_id  TEXT COLLATE "C" NOT NULL,
    category TEXT NOT NULL,
    enabled  BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, category)
);
-- Quiet hours as minutes after local midnight; start > end wraps past midnight.
CREATE TABLE _fb_push_quiet (
    user_id   TEXT COLLATE "C" PRIMARY KEY,
    start_min BIGINT NOT NULL,
    end_min   BIGINT NOT NULL
);
CREATE TABLE _fb_push_jobs (
    id            TEXT COLLATE "C" PRIMARY KEY,
    status        TEXT NOT NULL,
    request       JSONB NOT NULL,
    created_by    TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    send_at       TIMESTAMPTZ NOT NULL,
    fanout_cursor TEXT,
    fanout_done   BOOLEAN NOT NULL DEFAULT FALSE,
    finished_at   TIMESTAMPTZ
);
CREATE INDEX _fb_push_jobs_created ON _fb_push_jobs (created_at);
CREATE TABLE _fb_push_deliveries (
    job_id      TEXT COLLATE "C" NOT NULL,
    device_id   TEXT COLLATE "C" NOT NULL,
    platform    TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    provider_id TEXT,
    error       TEXT,
    not_before  TIMESTAMPTZ,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, device_id)
);
