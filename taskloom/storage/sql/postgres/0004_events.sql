-- The event log (see storage/events_base.py): streams, the hub's log, consumers, views.

-- The last position ever assigned per hub. An append updates this row first and keeps it
-- locked until it commits, so positions are handed out in commit order (a reader can
-- never see p + 1 before p) and are never reused, even when the tail is purged.
CREATE TABLE IF NOT EXISTS {schema}.event_log_head (
    hub      text COLLATE "C" NOT NULL PRIMARY KEY,
    position bigint NOT NULL
);

-- One row per stream: its last version (kept across a soft delete, so a recreated stream
-- goes on numbering) and whether it is deleted.
CREATE TABLE IF NOT EXISTS {schema}.event_streams (
    hub           text COLLATE "C" NOT NULL,
    stream_id     text COLLATE "C" NOT NULL,
    version       bigint NOT NULL,
    deleted       boolean NOT NULL DEFAULT false,
    -- Events below this version read as absent (soft delete and truncation).
    first_version bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (hub, stream_id)
);

CREATE TABLE IF NOT EXISTS {schema}.events (
    hub         text COLLATE "C" NOT NULL,
    position    bigint NOT NULL,
    stream_id   text COLLATE "C" NOT NULL,
    version     bigint NOT NULL,
    event_id    text COLLATE "C" NOT NULL,
    type        text COLLATE "C" NOT NULL,
    data        text NOT NULL,
    metadata    text,
    bucket      integer NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (hub, position)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_stream_version
    ON {schema}.events (hub, stream_id, version);
CREATE INDEX IF NOT EXISTS events_stream_id ON {schema}.events (hub, stream_id, event_id);
CREATE INDEX IF NOT EXISTS events_type ON {schema}.events (hub, type, position);

-- A consumer's partitions: checkpoint, lease and the failure being retried.
CREATE TABLE IF NOT EXISTS {schema}.event_consumers (
    hub             text COLLATE "C" NOT NULL,
    consumer        text COLLATE "C" NOT NULL,
    partition       integer NOT NULL,
    partitions      integer NOT NULL,
    position        bigint NOT NULL,
    lease_owner     text,
    lease_expires   timestamptz,
    lease_token     bigint NOT NULL DEFAULT 0,
    failed_position bigint,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (hub, consumer, partition)
);

CREATE TABLE IF NOT EXISTS {schema}.event_parked (
    hub       text COLLATE "C" NOT NULL,
    consumer  text COLLATE "C" NOT NULL,
    position  bigint NOT NULL,
    stream_id text COLLATE "C" NOT NULL,
    version   bigint NOT NULL,
    event_id  text NOT NULL,
    type      text NOT NULL,
    error     text NOT NULL,
    attempts  integer NOT NULL,
    parked_at timestamptz NOT NULL,
    PRIMARY KEY (hub, consumer, position)
);

-- Read-model documents of projections; "view" is the physical name "<projection>#<gen>".
-- jsonb, so range filters compare numbers as numbers and declared fields can be indexed.
CREATE TABLE IF NOT EXISTS {schema}.event_views (
    hub  text COLLATE "C" NOT NULL,
    view text COLLATE "C" NOT NULL,
    key  text COLLATE "C" NOT NULL,
    doc  jsonb NOT NULL,
    PRIMARY KEY (hub, view, key)
);

-- The live generation of each projection's view.
CREATE TABLE IF NOT EXISTS {schema}.event_view_meta (
    hub        text COLLATE "C" NOT NULL,
    name       text COLLATE "C" NOT NULL,
    generation integer NOT NULL,
    PRIMARY KEY (hub, name)
);
