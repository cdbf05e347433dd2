-- The live worker registry (taskloom/storage/postgres_workers.py): one row per running
-- worker, upserted at every heartbeat and deleted on a clean stop. A killed worker's row
-- lapses at expires_at; list_workers ignores and deletes it. "{schema}" is replaced by
-- the store's quoted schema name.
CREATE TABLE IF NOT EXISTS {schema}.workers (
    hub            text COLLATE "C" NOT NULL,
    worker_id      text COLLATE "C" NOT NULL,
    host           text NOT NULL,
    pid            integer NOT NULL,
    kind           text NOT NULL,
    version        text,
    orchestrations text[] NOT NULL,
    activities     text[] NOT NULL,
    entities       text[] NOT NULL,
    slots          integer NOT NULL,
    busy           integer NOT NULL,
    started_at     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    PRIMARY KEY (hub, worker_id)
);
