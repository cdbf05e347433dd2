-- Large payloads (storage/large.py): values above the store's payload_threshold, stored
-- once per instance, zlib-compressed, and referred to from history, message, work item
-- and instance rows by "@taskloom-payload:<digest>". Purging an instance deletes them.
CREATE TABLE payloads (
    hub         TEXT    NOT NULL,
    instance_id TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    data        BLOB    NOT NULL,
    PRIMARY KEY (hub, instance_id, id)
) WITHOUT ROWID;

CREATE INDEX payloads_by_id ON payloads (hub, id);
