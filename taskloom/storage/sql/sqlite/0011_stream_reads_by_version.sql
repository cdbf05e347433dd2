-- A stream's events are read by (hub, stream_id, version) alone: within a stream,
-- positions rise with versions, so the topics' reads of a stream after a position go by
-- version (storage/sqlite_events.py, _STREAM_AFTER). Their (hub, stream_id, position)
-- index is redundant, and one index fewer is one page fewer written per append.
DROP INDEX IF EXISTS events_stream_position;
