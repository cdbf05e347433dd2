-- An append in one round trip (storage/postgres_events_sql.py calls it). The function
-- does what the Python path in that module does (which stays for the rare cases: an event
-- id already in its stream, repeats inside one call, empty appends), in the same order:
--
-- 1. Lock the streams' rows in stream-id order ("C" collation, as the column), inserting
--    a version-0 row for each new stream first, so concurrent appends never deadlock.
-- 2. If any of the events' ids is already in its stream, write nothing and return {1}:
--    the caller decides, in Python, between an idempotent repeat and a refusal (also
--    when a concurrent purge removed a stream row between its insert and its lock).
-- 3. Check each append's expected version against the stream as the earlier appends of
--    this call leave it; on a mismatch write nothing and return {2, append, current}.
-- 4. Update the stream rows, then take the positions from the hub's head row (the last
--    lock, held until COMMIT: positions in commit order), then insert the events.
--
-- Returns {0, version_1, position_1, version_2, position_2, ...}: each append's last
-- event. Per append: p_expected is a version (>= 0), -1 any, -2 no stream, -3 stream
-- exists; p_recorded its events' recorded_at (the appends of several callers may share
-- one call, see AppendGroup).
-- Per event: p_ev_append is its append (1-based), p_ev_offset its place in it (1-based).
--
-- The migration runner ends a statement at a line ending in ";" (storage/migrations.py),
-- so in the body below every ";" that ends a line is followed by "--".
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
    p_meta text[]
) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_appends integer := cardinality(p_streams); --
    v_total integer := cardinality(p_ids); --
    v_sorted text[]; --
    v_created text[]; --
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

    SELECT array_agg(l.version ORDER BY l.stream_id), array_agg(l.deleted ORDER BY l.stream_id)
    INTO v_version, v_deleted
    FROM (
        SELECT stream_id, version, deleted FROM {schema}.event_streams
        WHERE hub = p_hub AND stream_id = ANY (v_sorted)
        ORDER BY stream_id FOR UPDATE
    ) AS l; --
    IF coalesce(cardinality(v_version), 0) < cardinality(v_sorted) THEN
        -- A purge deleted a row between our insert and our lock: the Python path retries.
        DELETE FROM {schema}.event_streams WHERE hub = p_hub AND stream_id = ANY (v_created); --
        RETURN '{1}'; --
    END IF; --

    IF EXISTS (
        SELECT 1 FROM unnest(p_ev_append, p_ids) AS x(a, id)
        WHERE EXISTS (
            SELECT 1 FROM {schema}.events AS e
            WHERE e.hub = p_hub AND e.stream_id = p_streams[x.a] AND e.event_id = x.id
        )
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

    UPDATE {schema}.event_streams AS st
    SET version = u.version, deleted = false, first_version = coalesce(u.first, st.first_version)
    FROM unnest(v_sorted, v_version, v_first) AS u(stream_id, version, first)
    WHERE st.hub = p_hub AND st.stream_id = u.stream_id; --

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
