-- The live worker registry (taskloom/storage/sqlite_workers.py): one row per running
-- worker, upserted at every heartbeat and deleted on a clean stop. A killed worker's row
-- lapses at expires_at; list_workers ignores and deletes it. Times are INTEGER
-- microseconds since the Unix epoch (UTC); the name lists are JSON arrays of strings.
CREATE TABLE workers (
    hub            TEXT    NOT NULL,
    worker_id      TEXT    NOT NULL,
    host           TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    version        TEXT,
    orchestrations TEXT    NOT NULL,
    activities     TEXT    NOT NULL,
    entities       TEXT    NOT NULL,
    slots          INTEGER NOT NULL,
    busy           INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    PRIMARY KEY (hub, worker_id)
) WITHOUT ROWID;
