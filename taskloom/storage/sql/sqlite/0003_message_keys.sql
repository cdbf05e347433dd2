-- Client messages (external events, terminate, suspend, ...) carry a key chosen by the
-- client, so the same message enqueued twice is delivered once.
ALTER TABLE messages ADD COLUMN dedup_key TEXT;
CREATE UNIQUE INDEX messages_dedup ON messages (hub, dedup_key) WHERE dedup_key IS NOT NULL;
