-- An event id is unique within its stream (appends never write one twice: a repeat is an
-- idempotent retry). Declaring it lets the planner know the lookup of (stream, id) finds
-- at most one row: event_append's generic plan otherwise chose the (stream, position)
-- index of topics and scanned a whole stream for every id (330 ms for 100 ids on a
-- topic of 24,000 events, 0.25 ms with this index).
CREATE UNIQUE INDEX IF NOT EXISTS events_stream_event ON {schema}.events (hub, stream_id, event_id);
DROP INDEX IF EXISTS {schema}.events_stream_id;
