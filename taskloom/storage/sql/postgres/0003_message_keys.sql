-- Client messages (external events, terminate, suspend, ...) carry a key chosen by the
-- client, so a call retried after its COMMIT was lost inserts nothing the second time.
ALTER TABLE {schema}.messages ADD COLUMN IF NOT EXISTS dedup_key text;
CREATE UNIQUE INDEX IF NOT EXISTS messages_dedup_idx
    ON {schema}.messages (hub, dedup_key) WHERE dedup_key IS NOT NULL;
