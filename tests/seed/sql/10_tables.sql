-- The seed's tables as Reigh's migrations leave them, trimmed to what its task queue,
-- its workers and their callers use. Each part names the migration it comes from.
-- tasks.dependant_on is a single uuid here (every database before
-- 20260121000000_support_multiple_dependencies.sql); 40_dependencies_array.sql turns it
-- into uuid[] the way that migration does.

-- 20250100000000_create_base_schema.sql
CREATE TYPE task_status AS ENUM ('Queued', 'In Progress', 'Complete', 'Failed', 'Cancelled');

-- 20250100000000_create_base_schema.sql; credits from 20250113000000_add_credits_system.sql,
-- numeric since 20250115000003_support_fractional_costs.sql.
CREATE TABLE users (
    id uuid PRIMARY KEY NOT NULL,
    name text,
    email text,
    api_keys jsonb,
    settings jsonb,
    credits numeric(10, 3) NOT NULL DEFAULT 0
);

-- 20250100000000_create_base_schema.sql
CREATE TABLE projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    aspect_ratio text,
    created_at timestamptz DEFAULT now() NOT NULL,
    settings jsonb
);

-- 20250100000000_create_base_schema.sql, then:
--   worker_id: 20250131000100_optimize_claim_next_task.sql (plain text: it ran before
--     20250705000001_create_workers_table.sql, whose ADD COLUMN IF NOT EXISTS ...
--     REFERENCES workers was therefore skipped, so there is no foreign key);
--   attempts, error_message, result_data: 20250202000000_add_missing_columns.sql;
--   generation_started_at: 20250712000001_add_generation_started_at.sql;
--   generation_created: 20250713000001_add_generation_created_column.sql.
CREATE TABLE tasks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    task_type text NOT NULL,
    params jsonb NOT NULL,
    status task_status DEFAULT 'Queued' NOT NULL,
    dependant_on uuid,
    output_location text,
    created_at timestamptz DEFAULT now() NOT NULL,
    updated_at timestamptz,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    generation_processed_at timestamptz,
    worker_id text,
    attempts int NOT NULL DEFAULT 0,
    error_message text,
    result_data jsonb DEFAULT '{}'::jsonb,
    generation_started_at timestamptz,
    generation_created boolean DEFAULT false NOT NULL
);
CREATE INDEX idx_status_created ON tasks USING btree (status, created_at);
CREATE INDEX idx_dependant_on ON tasks USING btree (dependant_on);
CREATE INDEX idx_project_status ON tasks USING btree (project_id, status);
CREATE INDEX idx_tasks_worker_id ON tasks (worker_id);

-- 20250203200000_create_task_types_with_run_type.sql; billing_type, unit_cost from
-- 20250203210000_add_billing_types_to_task_types.sql.
CREATE TABLE task_types (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE,
    run_type text NOT NULL DEFAULT 'gpu',
    category text NOT NULL,
    display_name text NOT NULL,
    description text,
    base_cost_per_second decimal(10, 6) NOT NULL,
    cost_factors jsonb DEFAULT '{}',
    is_active boolean DEFAULT true,
    created_at timestamptz DEFAULT now() NOT NULL,
    updated_at timestamptz DEFAULT now() NOT NULL,
    billing_type text NOT NULL DEFAULT 'per_second',
    unit_cost decimal(10, 6) DEFAULT NULL,
    CONSTRAINT check_run_type CHECK (run_type IN ('gpu', 'api'))
);

-- 20250705000001_create_workers_table.sql. The unnamed CHECK is named
-- workers_status_check by PostgreSQL. current_model: 20251222000000_add_worker_model_
-- affinity.sql; last_heartbeat nullable, default NULL:
-- 20260121210000_make_worker_heartbeat_nullable.sql.
CREATE TABLE workers (
    id text PRIMARY KEY,
    instance_type text NOT NULL,
    created_at timestamptz DEFAULT now() NOT NULL,
    last_heartbeat timestamptz DEFAULT NULL,
    status text DEFAULT 'active' NOT NULL CHECK (status IN ('active', 'inactive', 'terminated')),
    metadata jsonb DEFAULT '{}',
    current_model text
);
CREATE INDEX idx_workers_status ON workers (status);
CREATE INDEX idx_workers_last_heartbeat ON workers (last_heartbeat);

-- 20250115100000_create_system_logs.sql (func_worker_heartbeat_with_logs writes here).
CREATE TABLE system_logs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    timestamp timestamptz NOT NULL DEFAULT now(),
    source_type text NOT NULL,
    source_id text NOT NULL,
    log_level text NOT NULL,
    message text NOT NULL,
    task_id uuid,
    worker_id text,
    cycle_number int,
    metadata jsonb DEFAULT '{}'::jsonb,
    CONSTRAINT valid_log_level CHECK (log_level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')),
    CONSTRAINT valid_source_type CHECK (source_type IN ('orchestrator_gpu', 'orchestrator_api', 'worker'))
);

-- Row level security --------------------------------------------------------------------
-- users: 20250113000001_add_users_table_rls.sql
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users can view their own record" ON users FOR SELECT USING (auth.uid() = id);
CREATE POLICY "Service role can do everything on users" ON users
    FOR ALL TO service_role USING (true) WITH CHECK (true);

-- tasks: 20250113000003_protect_timing_fields.sql, plus the claiming policies of
-- 20250910220009_remove_claim_function_security_definer_and_fix_rls.sql.
ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users can view their own tasks" ON tasks FOR SELECT
    USING (auth.uid() = (SELECT p.user_id FROM projects p WHERE p.id = tasks.project_id));
CREATE POLICY "Users can create tasks" ON tasks FOR INSERT
    WITH CHECK (auth.uid() = (SELECT p.user_id FROM projects p WHERE p.id = tasks.project_id));
CREATE POLICY "Users can update their own tasks (no timing)" ON tasks FOR UPDATE
    USING (auth.uid() = (SELECT p.user_id FROM projects p WHERE p.id = tasks.project_id));
CREATE POLICY "Service role can manage all tasks" ON tasks
    FOR ALL TO service_role USING (true) WITH CHECK (true);
CREATE POLICY "Allow task claiming for queued tasks" ON tasks FOR UPDATE TO authenticated
    USING (status = 'Queued'::task_status)
    WITH CHECK (status IN ('Queued'::task_status, 'In Progress'::task_status));
CREATE POLICY "Allow viewing queued tasks for claiming" ON tasks FOR SELECT TO authenticated
    USING (status = 'Queued'::task_status OR status = 'In Progress'::task_status);

-- workers: 20250705000001_create_workers_table.sql
ALTER TABLE workers ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Service role can manage workers" ON workers
    FOR ALL USING (auth.role() = 'service_role');
CREATE POLICY "Authenticated users can view workers" ON workers
    FOR SELECT USING (auth.role() = 'authenticated');

-- system_logs: 20260121200000_restrict_system_logs_to_service_role.sql
ALTER TABLE system_logs ENABLE ROW LEVEL SECURITY;

-- The timing trigger ---------------------------------------------------------------------
-- 20250113000003_protect_timing_fields.sql, as re-created without SECURITY DEFINER by
-- 20250910220011_remove_all_remaining_security_definers.sql. Any UPDATE that changes
-- generation_started_at or generation_processed_at raises unless the request carries the
-- service role's claims or the session's application_name is claim_task/complete_task.
CREATE FUNCTION prevent_timing_manipulation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF auth.role() = 'service_role' THEN
        RETURN NEW;
    END IF;
    IF current_setting('application_name', true) IN ('claim_task', 'complete_task') THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND (
        OLD.generation_started_at IS DISTINCT FROM NEW.generation_started_at OR
        OLD.generation_processed_at IS DISTINCT FROM NEW.generation_processed_at
    ) THEN
        RAISE EXCEPTION 'Timing fields can only be modified by system functions';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER prevent_timing_manipulation_trigger
    BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION prevent_timing_manipulation();
