-- The host's tables (taskloom/storage/postgres_host.py): durable queues, schedules,
-- API keys and secrets. "{schema}" is replaced by the store's quoted schema name.

-- A leased message's visible_at is moved to its lease expiry (a visibility timeout),
-- so "visible_at <= now" alone finds every message free to lease, and a message whose
-- holder died becomes visible again by itself.
CREATE TABLE IF NOT EXISTS {schema}.queue_messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hub           text COLLATE "C" NOT NULL,
    queue         text COLLATE "C" NOT NULL,
    body          text NOT NULL,
    visible_at    timestamptz NOT NULL,
    inserted_at   timestamptz NOT NULL,
    dequeue_count integer NOT NULL DEFAULT 0,
    lease_token   bigint NOT NULL DEFAULT 0,
    -- NULL while no delivery holds the message (new, retried, or poisoned).
    lease_owner   text,
    -- The last delivery's error (queue_fail), kept on retry and in the poison queue.
    error         text
);

-- queue_lease: visible messages of some queues, oldest first.
CREATE INDEX IF NOT EXISTS queue_messages_visible_idx
    ON {schema}.queue_messages (hub, queue, visible_at, id);

CREATE TABLE IF NOT EXISTS {schema}.schedules (
    hub       text COLLATE "C" NOT NULL,
    name      text COLLATE "C" NOT NULL,
    spec      text NOT NULL,
    next_tick timestamptz NOT NULL,
    paused    boolean NOT NULL DEFAULT false,
    last_tick timestamptz,
    PRIMARY KEY (hub, name)
);

-- Only SHA-256 hashes of keys are stored.
CREATE TABLE IF NOT EXISTS {schema}.api_keys (
    hub        text COLLATE "C" NOT NULL,
    id         text COLLATE "C" NOT NULL,
    name       text NOT NULL,
    role       text NOT NULL,
    key_hash   text NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    PRIMARY KEY (hub, id),
    UNIQUE (hub, key_hash)
);

CREATE TABLE IF NOT EXISTS {schema}.secrets (
    hub   text COLLATE "C" NOT NULL,
    name  text COLLATE "C" NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (hub, name)
);
