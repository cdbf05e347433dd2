-- Fewer pages written per append (each page of a commit is a WAL frame, most of an
-- append's cost): the log and the stream rows are keyed by their primary keys WITHOUT
-- ROWID, so a row and its key are one B-tree instead of two.
--
-- An event id is unique within its stream (appends never wrote a repeat): the insert of
-- an append's events refuses one the stream holds, so an append needs no look-up of its
-- ids before it writes; only a refused insert looks them up, to answer a repeat.
CREATE TABLE events_0006 (
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
) WITHOUT ROWID;
INSERT INTO events_0006 (hub, position, stream_id, version, event_id, type, data, metadata,
    bucket, recorded_at)
SELECT hub, position, stream_id, version, event_id, type, data, metadata, bucket, recorded_at
FROM events;
DROP TABLE events;
ALTER TABLE events_0006 RENAME TO events;
CREATE UNIQUE INDEX events_stream_version ON events (hub, stream_id, version);
CREATE UNIQUE INDEX events_stream_event_id ON events (hub, stream_id, event_id);
CREATE INDEX events_type ON events (hub, type, position);
CREATE INDEX events_stream_position ON events (hub, stream_id, position);

CREATE TABLE event_streams_0006 (
    hub        TEXT NOT NULL,
    stream_id  TEXT NOT NULL,
    version    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    first_version INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (hub, stream_id)
) WITHOUT ROWID;
INSERT INTO event_streams_0006 (hub, stream_id, version, deleted, first_version)
SELECT hub, stream_id, version, deleted, first_version FROM event_streams;
DROP TABLE event_streams;
ALTER TABLE event_streams_0006 RENAME TO event_streams;
