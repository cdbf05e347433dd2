-- The host's tables (taskloom/storage/sqlite_host.py): durable queues, schedules,
-- API keys and secrets. Times are INTEGER microseconds since the Unix epoch (UTC).

-- A leased message's visible_at is moved to its lease expiry (a visibility timeout),
-- so "visible_at <= now" alone finds every message free to lease, and a message whose
-- holder died becomes visible again by itself.
-- AUTOINCREMENT so a (id, lease_token) pair can never name a later message.
CREATE TABLE queue_messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    hub           TEXT    NOT NULL,
    queue         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    visible_at    INTEGER NOT NULL,
    inserted_at   INTEGER NOT NULL,
    dequeue_count INTEGER NOT NULL DEFAULT 0,
    lease_token   INTEGER NOT NULL DEFAULT 0,
    -- NULL while no delivery holds the message (new, retried, or poisoned).
    lease_owner   TEXT,
    -- The last delivery's error (queue_fail), kept on retry and in the poison queue.
    error         TEXT
);

-- queue_lease: visible messages of some queues, oldest first.
CREATE INDEX queue_messages_by_visible ON queue_messages (hub, queue, visible_at, id);

CREATE TABLE schedules (
    hub       TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    spec      TEXT    NOT NULL,
    next_tick INTEGER NOT NULL,
    paused    INTEGER NOT NULL DEFAULT 0,
    last_tick INTEGER,
    PRIMARY KEY (hub, name)
) WITHOUT ROWID;

-- Only SHA-256 hashes of keys are stored.
CREATE TABLE api_keys (
    hub        TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    key_hash   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    PRIMARY KEY (hub, id),
    UNIQUE (hub, key_hash)
);

CREATE TABLE secrets (
    hub   TEXT NOT NULL,
    name  TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (hub, name)
) WITHOUT ROWID;
