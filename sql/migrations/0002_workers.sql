-- 0002: the fleet. One row per worker; the id is also the pod's name at the provider.
-- Status lifecycle: spawning -> active -> terminating -> terminated, or -> error.

CREATE TABLE IF NOT EXISTS workers (
    id text PRIMARY KEY
);

ALTER TABLE workers ADD COLUMN IF NOT EXISTS pod_id text;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'spawning';
ALTER TABLE workers ADD COLUMN IF NOT EXISTS gpu_type text;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS cost_per_hr numeric(10, 4) NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS last_heartbeat timestamptz;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE workers ADD COLUMN IF NOT EXISTS activated_at timestamptz;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS terminated_at timestamptz;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS error_reason text;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS metadata jsonb NOT NULL DEFAULT '{}'::jsonb;
-- Not in the seed: a worker that registered itself by heartbeat has no pod of ours.
ALTER TABLE workers ADD COLUMN IF NOT EXISTS managed boolean NOT NULL DEFAULT true;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'workers_status_check'
                   AND conrelid = 'workers'::regclass) THEN
        ALTER TABLE workers ADD CONSTRAINT workers_status_check
            CHECK (status IN ('spawning', 'active', 'terminating', 'error', 'terminated'));
    END IF;
END
$$;

-- Live workers are few; finished ones accumulate forever.
CREATE INDEX IF NOT EXISTS workers_live_idx ON workers (status)
    WHERE status IN ('spawning', 'active', 'terminating');

-- Thresholds the operator views use; the reactor writes its settings here at start.
CREATE TABLE IF NOT EXISTS gpu_reactor_settings (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    heartbeat_timeout_sec integer NOT NULL DEFAULT 600,
    task_stuck_timeout_sec integer NOT NULL DEFAULT 3600,
    spawning_timeout_sec integer NOT NULL DEFAULT 900,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO gpu_reactor_settings (id) VALUES (true) ON CONFLICT DO NOTHING;

-- The doorbell: see 0005_triggers.sql.
CREATE TABLE IF NOT EXISTS gpu_reactor_doorbell (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    armed boolean NOT NULL DEFAULT true,
    armed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO gpu_reactor_doorbell (id) VALUES (true) ON CONFLICT DO NOTHING;
