-- The event log (see storage/events_base.py): streams, the hub's log, consumers, views.

-- The last position ever assigned per hub: positions are never reused, even when the
-- events at the tail are purged.
CREATE TABLE event_log_head (
    hub      TEXT NOT NULL PRIMARY KEY,
    position INTEGER NOT NULL
);

-- One row per stream: its last version (kept across a soft delete, so a recreated stream
-- goes on numbering) and whether it is deleted.
CREATE TABLE event_streams (
    hub        TEXT NOT NULL,
    stream_id  TEXT NOT NULL,
    version    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    -- Events below this version read as absent (soft delete and truncation).
    first_version INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (hub, stream_id)
);

CREATE TABLE events (
    hub         TEXT NOT NULL,
    position    INTEGER NOT NULL,
    stream_id   TEXT NOT NULL,
    version     INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    metadata    TEXT,
    bucket      INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (hub, position)
);
CREATE UNIQUE INDEX events_stream_version ON events (hub, stream_id, version);
CREATE INDEX events_stream_id ON events (hub, stream_id, event_id);
CREATE INDEX events_type ON events (hub, type, position);

-- A consumer's partitions: checkpoint, lease and the failure being retried.
CREATE TABLE event_consumers (
    hub             TEXT NOT NULL,
    consumer        TEXT NOT NULL,
    partition       INTEGER NOT NULL,
    partitions      INTEGER NOT NULL,
    position        INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_expires   INTEGER,
    lease_token     INTEGER NOT NULL DEFAULT 0,
    failed_position INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (hub, consumer, partition)
);

CREATE TABLE event_parked (
    hub       TEXT NOT NULL,
    consumer  TEXT NOT NULL,
    position  INTEGER NOT NULL,
    stream_id TEXT NOT NULL,
    version   INTEGER NOT NULL,
    event_id  TEXT NOT NULL,
    type      TEXT NOT NULL,
    error     TEXT NOT NULL,
    attempts  INTEGER NOT NULL,
    parked_at INTEGER NOT NULL,
    PRIMARY KEY (hub, consumer, position)
);

-- Read-model documents of projections; "view" is the physical name "<projection>#<gen>".
CREATE TABLE event_views (
    hub  TEXT NOT NULL,
    view TEXT NOT NULL,
    key  TEXT NOT NULL,
    doc  TEXT NOT NULL,
    PRIMARY KEY (hub, view, key)
);

-- The live generation of each projection's view.
CREATE TABLE event_view_meta (
    hub        TEXT NOT NULL,
    name       TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (hub, name)
);
