-- 0004: the functions GPU workers call. They are SECURITY DEFINER so the least-privilege
-- gpu_worker role (0007) can run them without any table privilege, and each pins its
-- search_path so a caller cannot redirect the names inside: migrate runs every file with
-- search_path = <this schema>, pg_temp, which SET search_path FROM CURRENT captures
-- (pg_temp last, or a caller's temporary table named workers would win).

-- A seed system may already have functions of these names with other arguments or
-- return types: CREATE OR REPLACE cannot change a return type, and an overload with other
-- arguments makes calls ambiguous. Ours carry a 'gpu-reactor:' comment (end of this
-- file); any other function of these names is replaced. DROP without CASCADE, so one
-- that something else depends on stops the migration with PostgreSQL's own message.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
        FROM pg_proc p
        WHERE p.pronamespace = current_schema()::regnamespace
          AND p.proname IN ('func_claim_available_task', 'func_mark_task_complete',
                            'func_mark_task_failed', 'func_update_worker_heartbeat',
                            'func_reset_orphaned_tasks', 'func_requeue_task',
                            'func_report_worker_drained')
          AND coalesce(obj_description(p.oid, 'pg_proc'), '') NOT LIKE 'gpu-reactor:%'
    LOOP
        RAISE NOTICE 'gpu-reactor: replacing the earlier function %', f;
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$$;

-- Claim one Queued task for an active worker: highest priority, then oldest.
-- One statement with FOR UPDATE SKIP LOCKED, so concurrent claimers never wait on or
-- double-claim a row. A worker that is not 'active' (spawning, draining, error,
-- terminated or unknown) gets nothing.
-- The worker's row is read FOR SHARE: a drain (status -> terminating) committing while
-- the claim runs is waited for and then seen, and a drain arriving during the claim
-- waits for it. Otherwise the reactor could mark the worker terminating, see it hold no
-- task and end its pod while a claim that had read 'active' commits a task to it.
CREATE OR REPLACE FUNCTION func_claim_available_task(p_worker_id text, p_task_types text[] DEFAULT NULL)
RETURNS TABLE (id uuid, task_type text, params jsonb, attempts integer, max_attempts integer)
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    WITH claimer AS (
        SELECT w.id
        FROM workers w
        WHERE w.id = p_worker_id AND w.status = 'active'
        FOR SHARE
    ), candidate AS (
        SELECT t.id
        FROM tasks t
        WHERE t.status = 'Queued'
          AND (p_task_types IS NULL OR t.task_type = ANY (p_task_types))
          AND EXISTS (SELECT 1 FROM claimer)
        ORDER BY t.priority DESC, t.created_at
        LIMIT 1
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE tasks t
    SET status = 'In Progress',
        worker_id = p_worker_id,
        generation_started_at = now(),
        generation_processed_at = NULL,
        attempts = t.attempts + 1,
        updated_at = now()
    FROM candidate
    WHERE t.id = candidate.id
    RETURNING t.id, t.task_type, t.params, t.attempts, t.max_attempts;
$$;

-- Fenced completion: changes the task only while it is In Progress and held by this
-- worker (and, when given, still on the same attempt). Returns whether it did.
CREATE OR REPLACE FUNCTION func_mark_task_complete(
    p_task_id uuid, p_result_data jsonb, p_worker_id text, p_attempt integer DEFAULT NULL)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    WITH done AS (
        UPDATE tasks
        SET status = 'Complete',
            result_data = p_result_data,
            error_message = NULL,
            generation_processed_at = now(),
            updated_at = now()
        WHERE id = p_task_id
          AND status = 'In Progress'
          AND worker_id = p_worker_id
          AND (p_attempt IS NULL OR attempts = p_attempt)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM done);
$$;

-- Fenced failure: back to Queued while attempts remain, else Failed. Returns whether
-- it changed the task.
CREATE OR REPLACE FUNCTION func_mark_task_failed(
    p_task_id uuid, p_error_message text, p_worker_id text, p_attempt integer DEFAULT NULL)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    WITH failed AS (
        UPDATE tasks
        SET status = CASE WHEN attempts < max_attempts THEN 'Queued'::task_status
                          ELSE 'Failed'::task_status END,
            worker_id = CASE WHEN attempts < max_attempts THEN NULL ELSE worker_id END,
            error_message = left(p_error_message, 4000),
            generation_processed_at = now(),
            updated_at = now()
        WHERE id = p_task_id
          AND status = 'In Progress'
          AND worker_id = p_worker_id
          AND (p_attempt IS NULL OR attempts = p_attempt)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM failed);
$$;

-- Heartbeat: records liveness, merges metadata, promotes spawning -> active on the
-- first beat and returns the worker's status, so a worker learns from its own beat
-- that it is 'terminating'. An unknown id registers itself as an unmanaged worker
-- (it has no pod of ours; the reactor counts it but never terminates a pod for it).
-- Only a status change writes the status column, so a plain beat never notifies.
CREATE OR REPLACE FUNCTION func_update_worker_heartbeat(p_worker_id text, p_metadata jsonb DEFAULT '{}'::jsonb)
RETURNS text
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    INSERT INTO workers AS w (id, status, managed, last_heartbeat, activated_at, metadata)
    VALUES (p_worker_id, 'active', false, now(), now(), coalesce(p_metadata, '{}'::jsonb))
    ON CONFLICT (id) DO UPDATE
    SET last_heartbeat = now(),
        metadata = w.metadata || coalesce(excluded.metadata, '{}'::jsonb),
        status = CASE WHEN w.status = 'spawning' THEN 'active' ELSE w.status END,
        activated_at = CASE WHEN w.status = 'spawning' THEN now() ELSE w.activated_at END
    RETURNING w.status;
$$;

-- Requeue the In Progress tasks of lost workers, counting the attempt that was lost.
-- Past max_attempts a task is Failed with a message that says why. Returns one row per
-- task touched with its new status. Reactor-only: the gpu_worker role cannot call it.
CREATE OR REPLACE FUNCTION func_reset_orphaned_tasks(p_worker_ids text[])
RETURNS TABLE (task_id uuid, new_status task_status)
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    UPDATE tasks t
    SET status = CASE WHEN t.attempts < t.max_attempts THEN 'Queued'::task_status
                      ELSE 'Failed'::task_status END,
        error_message = CASE WHEN t.attempts < t.max_attempts
                             THEN 'worker ' || t.worker_id || ' was lost during attempt ' || t.attempts
                             ELSE 'worker ' || t.worker_id || ' was lost during attempt ' || t.attempts
                                  || ' of ' || t.max_attempts || '; no attempts left' END,
        worker_id = CASE WHEN t.attempts < t.max_attempts THEN NULL ELSE t.worker_id END,
        generation_processed_at = now(),
        updated_at = now()
    WHERE t.status = 'In Progress'
      AND t.worker_id = ANY (p_worker_ids)
    RETURNING t.id, t.status;
$$;

-- Requeue one stuck task, fenced by its holder and attempt, counting the attempt.
-- Returns the task's new status, or NULL when the task had already moved on.
-- Reactor-only.
CREATE OR REPLACE FUNCTION func_requeue_task(
    p_task_id uuid, p_worker_id text, p_attempt integer, p_reason text)
RETURNS task_status
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    UPDATE tasks t
    SET status = CASE WHEN t.attempts < t.max_attempts THEN 'Queued'::task_status
                      ELSE 'Failed'::task_status END,
        error_message = p_reason || CASE WHEN t.attempts < t.max_attempts THEN ''
                                         ELSE '; no attempts left' END,
        worker_id = CASE WHEN t.attempts < t.max_attempts THEN NULL ELSE t.worker_id END,
        generation_processed_at = now(),
        updated_at = now()
    WHERE t.id = p_task_id
      AND t.status = 'In Progress'
      AND t.worker_id = p_worker_id
      AND t.attempts = p_attempt
    RETURNING t.status;
$$;

-- A draining worker that has finished its last task says so on its way out; the
-- reactor then terminates its pod at once instead of waiting for the drain limit.
CREATE OR REPLACE FUNCTION func_report_worker_drained(p_worker_id text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    UPDATE workers
    SET metadata = metadata || jsonb_build_object('drained_at', now())
    WHERE id = p_worker_id AND status IN ('active', 'terminating', 'spawning');
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('gpu_reactor',
        json_build_object('event', 'worker_drained', 'worker_id', p_worker_id)::text);
    RETURN true;
END
$$;

-- Keep updated_at honest for writers that do not set it.
CREATE OR REPLACE FUNCTION gpu_reactor_touch_updated_at()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS tasks_touch_updated_at ON tasks;
CREATE TRIGGER tasks_touch_updated_at
    BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION gpu_reactor_touch_updated_at();

COMMENT ON FUNCTION func_claim_available_task(text, text[]) IS
    'gpu-reactor: claim one Queued task (highest priority, then oldest) for an active worker';
COMMENT ON FUNCTION func_mark_task_complete(uuid, jsonb, text, integer) IS
    'gpu-reactor: fenced completion; true when the task changed';
COMMENT ON FUNCTION func_mark_task_failed(uuid, text, text, integer) IS
    'gpu-reactor: fenced failure, back to Queued while attempts remain; true when the task changed';
COMMENT ON FUNCTION func_update_worker_heartbeat(text, jsonb) IS
    'gpu-reactor: liveness, metadata merge, spawning -> active; returns the worker status';
COMMENT ON FUNCTION func_reset_orphaned_tasks(text[]) IS
    'gpu-reactor: requeue (or fail) the In Progress tasks of lost workers (reactor only)';
COMMENT ON FUNCTION func_requeue_task(uuid, text, integer, text) IS
    'gpu-reactor: requeue one stuck task, fenced by holder and attempt (reactor only)';
COMMENT ON FUNCTION func_report_worker_drained(text) IS
    'gpu-reactor: a draining worker has finished its last task';
