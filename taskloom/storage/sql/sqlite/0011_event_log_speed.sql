-- A stream's events are read by (hub, stream_id, version) alone: within a stream,
-- positions rise with versions, so the topics' reads of a stream after a position go by
-- version (storage/sqlite_events.py, _STREAM_AFTER). Their (hub, stream_id, position)
-- index is redundant, and one index fewer is one page fewer written per append.
DROP INDEX IF EXISTS events_stream_position;

-- From here, appends no longer write event_log_head: the last position assigned is the
-- larger of the log's highest and the head row's, which only purges and truncations
-- raise (to the log's highest, before they delete). A row written before this version
-- holds a position once assigned, so it remains a valid floor.
