-- taskloom schema for SQLite. Every table carries the task hub, so one file can hold
-- several hubs. Times are INTEGER microseconds since the Unix epoch (UTC): exact,
-- ordered, and cheap to compare in range filters.

CREATE TABLE instances (
    hub                TEXT    NOT NULL,
    instance_id        TEXT    NOT NULL,
    execution_id       TEXT    NOT NULL,
    name               TEXT    NOT NULL,
    version            TEXT,
    status             TEXT    NOT NULL,
    input              TEXT,
    output             TEXT,
    custom_status      TEXT,
    failure            TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    completed_at       INTEGER,
    parent_instance_id TEXT,
    scheduled_start_at INTEGER,
    history_len        INTEGER NOT NULL DEFAULT 0,
    lease_owner        TEXT,
    -- 0 means "never leased in this incarnation": leases take tokens from
    -- taskloom_counters, which start at 1, so a fresh row matches no held token.
    lease_token        INTEGER NOT NULL DEFAULT 0,
    lease_expires      INTEGER,
    PRIMARY KEY (hub, instance_id)
);

CREATE INDEX instances_by_created ON instances (hub, created_at, instance_id);
CREATE INDEX instances_by_status ON instances (hub, status);
CREATE INDEX instances_by_lease ON instances (hub, lease_expires);

CREATE TABLE history (
    hub         TEXT    NOT NULL,
    instance_id TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    PRIMARY KEY (hub, instance_id, seq)
) WITHOUT ROWID;

-- AUTOINCREMENT so ids are never reused: episode commits name consumed messages by id.
CREATE TABLE messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    hub          TEXT    NOT NULL,
    instance_id  TEXT    NOT NULL,
    execution_id TEXT,
    visible_at   INTEGER NOT NULL,
    event        TEXT    NOT NULL
);

CREATE INDEX messages_by_visible ON messages (hub, visible_at);
CREATE INDEX messages_by_instance ON messages (hub, instance_id, id);

-- A leased work item's visible_at is moved to its lease expiry (a visibility timeout),
-- so "visible_at <= now" alone finds every item that is free to lease.
-- AUTOINCREMENT so a (id, lease_token) pair can never name a later item.
CREATE TABLE work_items (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    hub           TEXT    NOT NULL,
    instance_id   TEXT    NOT NULL,
    execution_id  TEXT    NOT NULL,
    task_id       INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    input         TEXT,
    visible_at    INTEGER NOT NULL,
    lease_owner   TEXT,
    lease_token   INTEGER NOT NULL DEFAULT 0,
    lease_expires INTEGER,
    attempt       INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX work_items_by_visible ON work_items (hub, visible_at, id);
CREATE INDEX work_items_by_instance ON work_items (hub, instance_id);

-- Database-wide counters. Episode lease tokens come from here rather than from the
-- instance row, so a purged and re-created instance can never reissue a token that a
-- worker of its previous incarnation still holds.
CREATE TABLE taskloom_counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);

INSERT INTO taskloom_counters (name, value) VALUES ('lease_token', 0);
