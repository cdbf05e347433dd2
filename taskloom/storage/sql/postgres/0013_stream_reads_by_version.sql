-- A stream's events are read by (hub, stream_id, version) alone: within a stream,
-- positions rise with versions, so the topics' reads of a stream after a position go by
-- version (storage/events_base.py, STREAM_AFTER). Their (hub, stream_id, position) index
-- is redundant, and one index fewer is less work for every append.
DROP INDEX IF EXISTS {schema}.events_stream_position;
