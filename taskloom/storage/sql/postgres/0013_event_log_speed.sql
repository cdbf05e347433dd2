-- A stream's events are read by (hub, stream_id, version) alone: within a stream,
-- positions rise with versions, so the topics' reads of a stream after a position go by
-- version (storage/events_base.py, STREAM_AFTER). Their (hub, stream_id, position) index
-- is redundant, and one index fewer is less work for every append.
DROP INDEX IF EXISTS {schema}.events_stream_position;

-- event_append (0005) again, with statements whose plans do not depend on the planner's
-- idea of the tables' sizes. plpgsql keeps a generic plan per statement for the life of
-- the connection; with no statistics (a new database, or autovacuum off), "hub = $1"
-- looks selective, so the old statements scanned every stream row and every event of the
-- hub and hashed them against the call's few: on a log of 51,000 events the id check took
-- 22 ms of a 35 ms call for 640 events, and grew with the log. Now each stream row is
-- locked by its key, each event id is one index probe, and the update goes by ctid.
-- And p_check: false skips the look-up of the event ids, for a caller that commits the
-- call alone (autocommit): an id already in its stream then makes the insert fail on the
-- (hub, stream_id, event_id) index, which undoes the whole call, and the caller takes the
-- Python path as for {1}. Everything else is as in 0005 (read its comments).
--
-- The migration runner ends a statement at a line ending in ";" (storage/migrations.py),
-- so in the body below every ";" that ends a line is followed by "--".
DROP FUNCTION IF EXISTS {schema}.event_append(text, timestamptz[], text[], bigint[],
    integer[], integer[], integer[], integer[], text[], text[], text[], text[]);
CREATE OR REPLACE FUNCTION {schema}.event_append(
    p_hub text,
    p_recorded timestamptz[],
    p_streams text[],
    p_expected bigint[],
    p_counts integer[],
    p_buckets integer[],
    p_ev_append integer[],
    p_ev_offset integer[],
    p_ids text[],
    p_types text[],
    p_data text[],
    p_meta text[],
    p_check boolean DEFAULT true
) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_appends integer := cardinality(p_streams); --
    v_total integer := cardinality(p_ids); --
    v_sorted text[]; --
    v_created text[]; --
    v_rows tid[]; --
    v_version bigint[]; --
    v_deleted boolean[]; --
    v_first bigint[]; --
    v_base bigint[]; --
    v_result bigint[] := '{0}'; --
    v_head bigint; --
    v_current bigint; --
    v_expected bigint; --
    v_done integer := 0; --
    i integer; --
    k integer; --
BEGIN
    SELECT array_agg(s ORDER BY s) INTO v_sorted
    FROM (SELECT DISTINCT s COLLATE "C" AS s FROM unnest(p_streams) AS u(s)) AS d; --

    WITH created AS (
        INSERT INTO {schema}.event_streams (hub, stream_id, version)
        SELECT p_hub, s, 0 FROM unnest(v_sorted) AS u(s)
        ON CONFLICT (hub, stream_id) DO NOTHING
        RETURNING stream_id
    )
    SELECT coalesce(array_agg(stream_id), '{}') INTO v_created FROM created; --

    -- One row at a time in stream-id order (a lateral subquery with a lock is run once
    -- per stream, never flattened into a join); its ctid, for the update below.
    SELECT array_agg(l.version ORDER BY u.k), array_agg(l.deleted ORDER BY u.k),
           array_agg(l.ctid ORDER BY u.k)
    INTO v_version, v_deleted, v_rows
    FROM unnest(v_sorted) WITH ORDINALITY AS u(s, k)
    CROSS JOIN LATERAL (
        SELECT st.version, st.deleted, st.ctid FROM {schema}.event_streams AS st
        WHERE st.hub = p_hub AND st.stream_id = u.s FOR UPDATE
    ) AS l; --
    IF coalesce(cardinality(v_version), 0) < cardinality(v_sorted) THEN
        -- A purge deleted a row between our insert and our lock: the Python path retries.
        DELETE FROM {schema}.event_streams WHERE hub = p_hub AND stream_id = ANY (v_created); --
        RETURN '{1}'; --
    END IF; --

    -- One probe of the (hub, stream_id, event_id) index per event (LIMIT keeps the
    -- subquery apart), whatever the planner believes of the table's size.
    IF p_check AND EXISTS (
        SELECT 1 FROM unnest(p_ev_append, p_ids) AS x(a, id)
        CROSS JOIN LATERAL (
            SELECT 1 FROM {schema}.events AS e
            WHERE e.hub = p_hub AND e.stream_id = p_streams[x.a] AND e.event_id = x.id LIMIT 1
        ) AS f
    ) THEN
        DELETE FROM {schema}.event_streams WHERE hub = p_hub AND stream_id = ANY (v_created); --
        RETURN '{1}'; --
    END IF; --

    v_first := array_fill(NULL::bigint, ARRAY[cardinality(v_sorted)]); --
    v_base := array_fill(NULL::bigint, ARRAY[v_appends]); --
    FOR i IN 1 .. v_appends LOOP
        k := array_position(v_sorted, p_streams[i]); --
        v_current := CASE WHEN v_deleted[k] THEN 0 ELSE v_version[k] END; --
        v_expected := p_expected[i]; --
        IF NOT (v_expected = -1 OR v_expected = v_current
                OR (v_expected = -2 AND v_current = 0)
                OR (v_expected = -3 AND v_current > 0)) THEN
            DELETE FROM {schema}.event_streams
            WHERE hub = p_hub AND stream_id = ANY (v_created); --
            RETURN ARRAY[2, i, v_current]; --
        END IF; --
        v_base[i] := v_version[k]; --
        IF v_deleted[k] THEN
            v_first[k] := v_version[k] + 1; --
            v_deleted[k] := false; --
        END IF; --
        v_version[k] := v_version[k] + p_counts[i]; --
    END LOOP; --

    -- Each locked row by its ctid (it cannot move while we hold its lock): a TID scan.
    FOR k IN 1 .. cardinality(v_rows) LOOP
        UPDATE {schema}.event_streams
        SET version = v_version[k], deleted = false,
            first_version = coalesce(v_first[k], first_version)
        WHERE ctid = v_rows[k]; --
    END LOOP; --

    -- The head row last: from here to COMMIT, every other append of the hub waits.
    INSERT INTO {schema}.event_log_head AS h (hub, position) VALUES (p_hub, v_total)
    ON CONFLICT (hub) DO UPDATE SET position = h.position + excluded.position
    RETURNING h.position INTO v_head; --

    INSERT INTO {schema}.events (hub, position, stream_id, version, event_id, type, data,
                                 metadata, bucket, recorded_at)
    SELECT p_hub, v_head - v_total + x.n, p_streams[x.a], v_base[x.a] + x.o, x.id, x.type,
           x.data, x.meta, p_buckets[x.a], p_recorded[x.a]
    FROM unnest(p_ev_append, p_ev_offset, p_ids, p_types, p_data, p_meta)
         WITH ORDINALITY AS x(a, o, id, type, data, meta, n); --

    FOR i IN 1 .. v_appends LOOP
        v_done := v_done + p_counts[i]; --
        v_result := v_result || ARRAY[v_base[i] + p_counts[i], v_head - v_total + v_done]; --
    END LOOP; --
    RETURN v_result; --
END
$fn$;

-- The next events after a position, of each partition (p_parts[k] of p_count, after
-- p_after[k]; p_count 1: the whole log), up to p_limit each, for consumers. A function so
-- that it can turn bitmap scans off: with no statistics "hub = $1" looks selective, and
-- the planner read every event after the position and sorted them for the first
-- p_limit (4.7 ms for 200 events 12,000 behind, growing with the lag) instead of walking
-- the primary key in order and stopping at p_limit.
CREATE OR REPLACE FUNCTION {schema}.event_read(
    p_hub text,
    p_parts integer[],
    p_after bigint[],
    p_count integer,
    p_limit integer
) RETURNS TABLE (
    part integer,
    "position" bigint,
    stream_id text,
    version bigint,
    event_id text,
    type text,
    data text,
    metadata text,
    recorded_at timestamptz
)
LANGUAGE plpgsql STABLE
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $fn$
BEGIN
    RETURN QUERY
    SELECT p.k, e.position, e.stream_id::text, e.version, e.event_id::text, e.type::text,
           e.data, e.metadata, e.recorded_at
    FROM unnest(p_parts, p_after) AS p(k, a)
    CROSS JOIN LATERAL (
        SELECT x.position, x.stream_id, x.version, x.event_id, x.type, x.data, x.metadata,
               x.recorded_at
        FROM {schema}.events AS x
        WHERE x.hub = p_hub AND x.position > p.a AND (p_count <= 1 OR x.bucket % p_count = p.k)
        ORDER BY x.position LIMIT p_limit
    ) AS e
    ORDER BY p.k, e.position; --
END
$fn$;

-- The next events of some types after a position (read_all with types), up to p_limit:
-- the first p_limit of each type by the (hub, type, position) index, in order, then the
-- first p_limit of those. Bitmap scans off for the reason above (the planner had read
-- every event of the types after the position and sorted them).
CREATE OR REPLACE FUNCTION {schema}.event_read_types(
    p_hub text,
    p_types text[],
    p_after bigint,
    p_limit integer
) RETURNS TABLE (
    "position" bigint,
    stream_id text,
    version bigint,
    event_id text,
    type text,
    data text,
    metadata text,
    recorded_at timestamptz
)
LANGUAGE plpgsql STABLE
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $fn$
BEGIN
    RETURN QUERY
    SELECT e.position, e.stream_id::text, e.version, e.event_id::text, e.type::text, e.data,
           e.metadata, e.recorded_at
    FROM (SELECT DISTINCT u.t FROM unnest(p_types) AS u(t)) AS t
    CROSS JOIN LATERAL (
        SELECT x.position, x.stream_id, x.version, x.event_id, x.type, x.data, x.metadata,
               x.recorded_at
        FROM {schema}.events AS x
        WHERE x.hub = p_hub AND x.type = t.t AND x.position > p_after
        ORDER BY x.position LIMIT p_limit
    ) AS e
    ORDER BY e.position LIMIT p_limit; --
END
$fn$;
