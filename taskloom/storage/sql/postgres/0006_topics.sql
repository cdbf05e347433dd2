-- CloudEvents topics (see storage/topics_base.py): subscriptions, delivery rows, dead letters.

CREATE TABLE IF NOT EXISTS {schema}.topic_subscriptions (
    hub        text COLLATE "C" NOT NULL,
    name       text COLLATE "C" NOT NULL,
    topic      text COLLATE "C" NOT NULL,
    kind       text NOT NULL,
    spec       text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (hub, name)
);

-- One row per (subscription, event) still to deliver; due_at is also the lease's expiry.
CREATE TABLE IF NOT EXISTS {schema}.topic_deliveries (
    hub             text COLLATE "C" NOT NULL,
    subscription    text COLLATE "C" NOT NULL,
    position        bigint NOT NULL,
    topic           text COLLATE "C" NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    due_at          timestamptz NOT NULL,
    published_at    timestamptz NOT NULL,
    lease_owner     text,
    lease_token     bigint NOT NULL DEFAULT 0,
    last_outcome    text,
    last_attempt_at timestamptz,
    PRIMARY KEY (hub, subscription, position)
);
CREATE INDEX IF NOT EXISTS topic_deliveries_due
    ON {schema}.topic_deliveries (hub, subscription, due_at);

CREATE TABLE IF NOT EXISTS {schema}.topic_dead_letters (
    hub              text COLLATE "C" NOT NULL,
    subscription     text COLLATE "C" NOT NULL,
    position         bigint NOT NULL,
    topic            text COLLATE "C" NOT NULL,
    reason           text NOT NULL,
    attempts         integer NOT NULL,
    last_outcome     text NOT NULL,
    published_at     timestamptz NOT NULL,
    last_attempt_at  timestamptz NOT NULL,
    dead_lettered_at timestamptz NOT NULL,
    PRIMARY KEY (hub, subscription, position)
);
CREATE INDEX IF NOT EXISTS topic_dead_letters_topic
    ON {schema}.topic_dead_letters (hub, topic, dead_lettered_at);

-- A topic's fan-out consumers read one stream by position.
CREATE INDEX IF NOT EXISTS events_stream_position ON {schema}.events (hub, stream_id, position);
