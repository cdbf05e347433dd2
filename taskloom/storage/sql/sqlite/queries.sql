-- Named queries of the SQLite backend, loaded by taskloom/storage/sqlite.py.
-- Each starts with a "-- name: NAME" line. Times are INTEGER microseconds since the epoch.

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS taskloom_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL
)

-- name: record_migration
INSERT INTO taskloom_migrations (version, name, applied_at)
VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))

-- name: insert_message
-- A message for an instance that does not exist is dropped, as Durable Functions drops
-- events sent to unknown instances: kept, it could never be consumed.
INSERT INTO messages (hub, instance_id, execution_id, visible_at, event, dedup_key)
SELECT :hub, :instance_id, :execution_id, :visible_at, :event, :dedup_key
WHERE EXISTS (SELECT 1 FROM instances WHERE hub = :hub AND instance_id = :instance_id)
ON CONFLICT (hub, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING

-- name: insert_work_item
INSERT INTO work_items
    (hub, instance_id, execution_id, task_id, name, input, visible_at, attempt, trace_parent,
     scheduled_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: insert_leased_work_item
-- Eager dispatch: the item starts leased (token 1) by the worker that scheduled it.
INSERT INTO work_items
    (hub, instance_id, execution_id, task_id, name, input, visible_at, attempt, trace_parent,
     scheduled_at, lease_owner, lease_token, lease_expires)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) RETURNING id

-- name: next_lease_tokens
UPDATE taskloom_counters SET value = value + ? WHERE name = 'lease_token' RETURNING value

-- name: episode_candidates
-- Messages whose instance has no row are never leased: they only arise when an event
-- races with a purge (or is sent to an id never created), and delivering them to a
-- later instance of the same id would be wrong; create_instance deletes them.
-- Fairness: the instance whose oldest visible message waited longest goes first.
SELECT m.instance_id FROM messages AS m
JOIN instances AS i ON i.hub = m.hub AND i.instance_id = m.instance_id
WHERE m.hub = ? AND m.visible_at <= ? AND (i.lease_expires IS NULL OR i.lease_expires <= ?)
-- Versions (a VersionFilter): only one version, if given; none of the excluded (a JSON
-- list). Entities (ids '@name@key') have no version and are run by every worker.
  AND (substr(i.instance_id, 1, 1) = '@' OR ((? IS NULL OR COALESCE(i.version, '') = ?)
       AND COALESCE(i.version, '') NOT IN (SELECT value FROM json_each(?))))
-- Names (a JSON list, NULL for all): orchestration names, and '@name' for entities.
  AND (? IS NULL OR (CASE WHEN substr(i.instance_id, 1, 1) = '@' THEN '@' || i.name
       ELSE i.name END) IN (SELECT value FROM json_each(?)))
GROUP BY m.instance_id
ORDER BY MIN(m.visible_at), MIN(m.id)
LIMIT ?

-- name: version_admitted
-- Those of a JSON list of instance ids whose version a VersionFilter admits and whose
-- name a list of names admits (eager leases; see episode_candidates).
SELECT i.instance_id FROM instances AS i
WHERE i.hub = ? AND i.instance_id IN (SELECT value FROM json_each(?))
  AND (substr(i.instance_id, 1, 1) = '@' OR ((? IS NULL OR COALESCE(i.version, '') = ?)
       AND COALESCE(i.version, '') NOT IN (SELECT value FROM json_each(?))))
  AND (? IS NULL OR (CASE WHEN substr(i.instance_id, 1, 1) = '@' THEN '@' || i.name
       ELSE i.name END) IN (SELECT value FROM json_each(?)))

-- name: insert_history
INSERT INTO history (hub, instance_id, seq, event) VALUES (?, ?, ?, ?)

-- name: abandon
UPDATE instances SET lease_owner = NULL, lease_expires = NULL
WHERE hub = ? AND instance_id = ? AND lease_token = ?

-- name: activity_candidates
-- A leased work item's visible_at is its lease expiry, so this finds every free item.
-- Names: a JSON list of activity names, NULL for all.
SELECT id FROM work_items WHERE hub = ? AND visible_at <= ?
  AND (? IS NULL OR name IN (SELECT value FROM json_each(?)))
ORDER BY visible_at, id LIMIT ?

-- name: complete_activity
DELETE FROM work_items WHERE hub = ? AND id = ? AND lease_token = ?

-- name: renew_episode
UPDATE instances SET lease_expires = ?
WHERE hub = ? AND instance_id = ? AND lease_token = ? AND lease_expires IS NOT NULL

-- name: renew_activity
UPDATE work_items SET lease_expires = ?, visible_at = ?
WHERE hub = ? AND id = ? AND lease_token = ?

-- name: next_wakeup
-- Only messages of existing instances count (see episode_candidates).
SELECT MIN(t) FROM (
    SELECT MIN(m.visible_at) AS t FROM messages AS m
    JOIN instances AS i ON i.hub = m.hub AND i.instance_id = m.instance_id
    WHERE m.hub = :hub AND m.visible_at > :now
    UNION ALL
    SELECT MIN(visible_at) FROM work_items WHERE hub = :hub AND visible_at > :now
    UNION ALL
    SELECT MIN(lease_expires) FROM instances WHERE hub = :hub AND lease_expires > :now
)

-- name: has_runnable
SELECT EXISTS (
    SELECT 1 FROM messages AS m
    JOIN instances AS i ON i.hub = m.hub AND i.instance_id = m.instance_id
    WHERE m.hub = :hub AND m.visible_at <= :now
      AND (i.lease_expires IS NULL OR i.lease_expires <= :now)
      AND (:episode_names IS NULL OR (CASE WHEN substr(i.instance_id, 1, 1) = '@'
           THEN '@' || i.name ELSE i.name END) IN (SELECT value FROM json_each(:episode_names)))
) OR EXISTS (
    SELECT 1 FROM work_items WHERE hub = :hub AND visible_at <= :now
      AND (:activity_names IS NULL OR name IN (SELECT value FROM json_each(:activity_names)))
)
