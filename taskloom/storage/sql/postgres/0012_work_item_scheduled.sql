-- Metrics (docs/observability.md): when an activity was scheduled, for its
-- schedule-to-start lag and the age of the oldest waiting activity.
ALTER TABLE {schema}.work_items ADD COLUMN IF NOT EXISTS scheduled_at timestamptz;
