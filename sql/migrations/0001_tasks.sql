-- 0001: the task queue.
-- Adopts a seed-style table in place: everything is created only when missing and
-- missing columns are added with defaults, so existing rows are kept untouched.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                   WHERE t.typname = 'task_status' AND n.nspname = current_schema()) THEN
        CREATE TYPE task_status AS ENUM ('Queued', 'In Progress', 'Complete', 'Failed', 'Cancelled');
    END IF;
END
$$;

-- A seed database may predate some values; new enum values become usable only after
-- this transaction commits, which is why the indexes that name them live in 0003.
ALTER TYPE task_status ADD VALUE IF NOT EXISTS 'Queued';
ALTER TYPE task_status ADD VALUE IF NOT EXISTS 'In Progress';
ALTER TYPE task_status ADD VALUE IF NOT EXISTS 'Complete';
ALTER TYPE task_status ADD VALUE IF NOT EXISTS 'Failed';
ALTER TYPE task_status ADD VALUE IF NOT EXISTS 'Cancelled';

CREATE TABLE IF NOT EXISTS tasks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid()
);

ALTER TABLE tasks ADD COLUMN IF NOT EXISTS task_type text NOT NULL DEFAULT 'default';
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS params jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS status task_status NOT NULL DEFAULT 'Queued';
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS priority integer NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS max_attempts integer NOT NULL DEFAULT 3;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS worker_id text;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS generation_started_at timestamptz;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS generation_processed_at timestamptz;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS result_data jsonb;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS error_message text;

-- The id default may be missing on an adopted table.
ALTER TABLE tasks ALTER COLUMN id SET DEFAULT gen_random_uuid();
