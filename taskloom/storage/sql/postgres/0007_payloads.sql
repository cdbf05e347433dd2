-- Large payloads (storage/large.py): values above the store's payload_threshold, stored
-- once per instance, zlib-compressed, and referred to from history, message, work item
-- and instance rows by "@taskloom-payload:<digest>". Purging an instance deletes them.
-- STORAGE EXTERNAL: the data is compressed already, so TOAST should not try again.
CREATE TABLE IF NOT EXISTS {schema}.payloads (
    hub         text COLLATE "C" NOT NULL,
    instance_id text COLLATE "C" NOT NULL,
    id          text COLLATE "C" NOT NULL,
    size        bigint NOT NULL,
    data        bytea NOT NULL,
    PRIMARY KEY (hub, instance_id, id)
);
ALTER TABLE {schema}.payloads ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX IF NOT EXISTS payloads_id_idx ON {schema}.payloads (hub, id);
