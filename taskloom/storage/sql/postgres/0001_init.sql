-- taskloom PostgreSQL schema, version 1.
--
-- "{schema}" is replaced by the store's (quoted) schema name before this runs. Every
-- table carries a "hub" column so several task hubs share one schema; every key starts
-- with it. Ids use COLLATE "C" so ordering (and keyset paging) is byte-wise, the same as
-- on SQLite, and so that prefix LIKE queries can use the primary key index.

CREATE TABLE IF NOT EXISTS {schema}.instances (
    hub                text COLLATE "C" NOT NULL,
    instance_id        text COLLATE "C" NOT NULL,
    execution_id       text NOT NULL,
    name               text NOT NULL,
    version            text,
    status             text NOT NULL,
    input              text,
    output             text,
    custom_status      text,
    failure            text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    completed_at       timestamptz,
    parent_instance_id text COLLATE "C",
    scheduled_start_at timestamptz,
    history_len        integer NOT NULL DEFAULT 0,
    -- The episode lease. lease_token only ever grows (it survives replacement of a
    -- terminal instance), so a stale worker can never match it again.
    lease_owner        text,
    lease_expires_at   timestamptz,
    lease_token        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (hub, instance_id)
);

-- query_instances: keyset paging by (created_at, instance_id), optionally by status.
CREATE INDEX IF NOT EXISTS instances_created_idx
    ON {schema}.instances (hub, created_at, instance_id);
CREATE INDEX IF NOT EXISTS instances_status_created_idx
    ON {schema}.instances (hub, status, created_at, instance_id);
-- query by parent (recursive terminate / purge of sub-orchestrations).
CREATE INDEX IF NOT EXISTS instances_parent_idx
    ON {schema}.instances (hub, parent_instance_id) WHERE parent_instance_id IS NOT NULL;
-- next_wakeup: live episode leases.
CREATE INDEX IF NOT EXISTS instances_lease_idx
    ON {schema}.instances (hub, lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS {schema}.history (
    hub         text COLLATE "C" NOT NULL,
    instance_id text COLLATE "C" NOT NULL,
    seq         integer NOT NULL,
    event       text NOT NULL,
    PRIMARY KEY (hub, instance_id, seq)
);

CREATE TABLE IF NOT EXISTS {schema}.messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hub          text COLLATE "C" NOT NULL,
    instance_id  text COLLATE "C" NOT NULL,
    execution_id text,
    visible_at   timestamptz NOT NULL,
    event        text NOT NULL
);

-- lease_episodes / has_runnable / next_wakeup: messages by visibility time.
CREATE INDEX IF NOT EXISTS messages_visible_idx
    ON {schema}.messages (hub, visible_at, instance_id);
-- loading an instance's inbox, deleting consumed messages, purge.
CREATE INDEX IF NOT EXISTS messages_instance_idx
    ON {schema}.messages (hub, instance_id, id);

CREATE TABLE IF NOT EXISTS {schema}.work_items (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hub              text COLLATE "C" NOT NULL,
    instance_id      text COLLATE "C" NOT NULL,
    execution_id     text NOT NULL,
    task_id          integer NOT NULL,
    name             text NOT NULL,
    input            text,
    visible_at       timestamptz NOT NULL,
    -- ready_at is when the item may next be leased: visible_at at first, then the
    -- expiry of the current lease. Leasing is then one range scan of one index that
    -- never walks over items someone else holds.
    ready_at         timestamptz NOT NULL,
    lease_owner      text,
    lease_expires_at timestamptz,
    lease_token      bigint NOT NULL DEFAULT 0,
    attempt          integer NOT NULL DEFAULT 0
);

-- lease_activities / has_runnable / next_wakeup.
CREATE INDEX IF NOT EXISTS work_items_ready_idx
    ON {schema}.work_items (hub, ready_at, id);
-- create_instance (replace) and purge delete an instance's work items.
CREATE INDEX IF NOT EXISTS work_items_instance_idx
    ON {schema}.work_items (hub, instance_id);
