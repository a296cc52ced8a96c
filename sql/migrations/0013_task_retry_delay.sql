-- 0013: a task its processor failed waits before the next attempt.
-- Until now a failed task went straight back to Queued, and the worker that had just
-- failed it - idle again that very moment - usually claimed it again at once: an out-of-
-- memory GPU, a model download that timed out or a busy upstream got no time to clear,
-- and max_attempts could be spent within a second. Now func_mark_task_failed sets
-- retry_at = now() + delay * 2^(attempt - 1) (at most an hour), and the claim passes over
-- a Queued task until its retry_at. The delay is gpu_reactor_settings.
-- task_retry_delay_sec, which the reactor keeps at its TASK_RETRY_DELAY_SEC; 0 (the
-- default here, until a reactor has written it) requeues at once as before.
-- Requeues that are not the task's fault - a dead or restarted worker, a stuck task taken
-- back - stay immediate; every claim clears retry_at.
-- A waiting task is still Queued, but the reactor counts it as demand only once it is
-- due (it wakes at the earliest retry_at), so a long delay does not keep a GPU idling for
-- it; workers find a due task by their poll.

ALTER TABLE tasks ADD COLUMN IF NOT EXISTS retry_at timestamptz;
ALTER TABLE gpu_reactor_settings
    ADD COLUMN IF NOT EXISTS task_retry_delay_sec integer NOT NULL DEFAULT 0
    CHECK (task_retry_delay_sec >= 0);

-- The reactor's count of waiting tasks and its next wake-up read only this (few rows).
CREATE INDEX IF NOT EXISTS tasks_retry_wait_idx ON tasks (retry_at)
    WHERE status = 'Queued' AND retry_at IS NOT NULL;

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
          AND (w.token_hash IS NULL OR w.token_hash = gpu_reactor_session_token_hash())
        FOR SHARE
    ), candidate AS (
        SELECT t.id
        FROM tasks t
        WHERE t.status = 'Queued'
          AND (t.retry_at IS NULL OR t.retry_at <= now())
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
        retry_at = NULL,
        updated_at = now()
    FROM candidate
    WHERE t.id = candidate.id
    RETURNING t.id, t.task_type, t.params, t.attempts, t.max_attempts;
$$;

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
            retry_at = CASE
                WHEN attempts < max_attempts AND s.task_retry_delay_sec > 0
                THEN now() + make_interval(secs => least(
                         s.task_retry_delay_sec * power(2, least(greatest(attempts, 1) - 1, 12)),
                         3600))
                END,
            error_message = left(p_error_message, 4000),
            generation_processed_at = now(),
            updated_at = now()
        FROM (SELECT coalesce(max(task_retry_delay_sec), 0) AS task_retry_delay_sec
              FROM gpu_reactor_settings) s
        WHERE id = p_task_id
          AND status = 'In Progress'
          AND worker_id = p_worker_id
          AND (p_attempt IS NULL OR attempts = p_attempt)
          AND gpu_reactor_may_act_as(p_worker_id)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM failed);
$$;
