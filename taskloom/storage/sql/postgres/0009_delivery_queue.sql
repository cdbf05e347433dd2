-- Topic deliveries are a queue: rows are inserted, leased (updated) and deleted at the
-- rate events are delivered. Three changes keep the lease query from walking dead rows:
-- 1. The lease scans the primary key (subscription, position) and filters due_at, so the
--    update a lease makes touches no indexed column and stays a HOT update (no new index
--    entry); the index on due_at goes;
-- 2. fillfactor leaves room on each page for those updates;
-- 3. autovacuum runs after a thousand dead rows, not after a fifth of the table.
DROP INDEX IF EXISTS {schema}.topic_deliveries_due;
ALTER TABLE {schema}.topic_deliveries SET (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
