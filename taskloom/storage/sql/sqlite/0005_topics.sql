-- CloudEvents topics (see storage/topics_base.py): subscriptions, delivery rows, dead letters.

CREATE TABLE topic_subscriptions (
    hub        TEXT NOT NULL,
    name       TEXT NOT NULL,
    topic      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (hub, name)
);

-- One row per (subscription, event) still to deliver; due_at is also the lease's expiry.
CREATE TABLE topic_deliveries (
    hub             TEXT NOT NULL,
    subscription    TEXT NOT NULL,
    position        INTEGER NOT NULL,
    topic           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    due_at          INTEGER NOT NULL,
    published_at    INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_token     INTEGER NOT NULL DEFAULT 0,
    last_outcome    TEXT,
    last_attempt_at INTEGER,
    PRIMARY KEY (hub, subscription, position)
);
CREATE INDEX topic_deliveries_due ON topic_deliveries (hub, subscription, due_at);

CREATE TABLE topic_dead_letters (
    hub              TEXT NOT NULL,
    subscription     TEXT NOT NULL,
    position         INTEGER NOT NULL,
    topic            TEXT NOT NULL,
    reason           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    last_outcome     TEXT NOT NULL,
    published_at     INTEGER NOT NULL,
    last_attempt_at  INTEGER NOT NULL,
    dead_lettered_at INTEGER NOT NULL,
    PRIMARY KEY (hub, subscription, position)
);
CREATE INDEX topic_dead_letters_topic ON topic_dead_letters (hub, topic, dead_lettered_at);

-- A topic's fan-out consumers read one stream by position.
CREATE INDEX events_stream_position ON events (hub, stream_id, position);
