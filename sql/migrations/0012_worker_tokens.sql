-- 0012: a worker acts only under its own identity.
-- Every pod logs in with the same gpu_worker credentials, and worker ids are no secret
-- (they are pod names, and every login may LISTEN to gpu_reactor). So that one pod cannot
-- heartbeat, claim, complete or report drained in another's name - and keep a dead worker
-- looking alive - the reactor gives each pod a random WORKER_TOKEN and keeps only its
-- SHA-256 here; the worker sets it on each of its sessions:
--   SELECT set_config('gpu_reactor.worker_token', '<token>', false);
-- A worker row with a token_hash accepts the worker functions only from a session holding
-- that token. Rows without one (workers registered by their first heartbeat, rows from
-- before this migration) behave as before; a worker that registers itself with a token
-- set binds its row to that token.

ALTER TABLE workers ADD COLUMN IF NOT EXISTS token_hash bytea;

-- The session's token as stored: NULL when the session set none.
CREATE OR REPLACE FUNCTION gpu_reactor_session_token_hash()
RETURNS bytea
LANGUAGE sql
STABLE
SET search_path FROM CURRENT
AS $$
    SELECT sha256(convert_to(nullif(current_setting('gpu_reactor.worker_token', true), ''),
                             'UTF8'));
$$;
REVOKE ALL ON FUNCTION gpu_reactor_session_token_hash() FROM PUBLIC;

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

-- Whether this session may act as p_worker_id (no row: nothing to protect; the fenced
-- functions below find no task held by an unknown worker anyway).
CREATE OR REPLACE FUNCTION gpu_reactor_may_act_as(p_worker_id text)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    SELECT NOT EXISTS (
        SELECT 1 FROM workers w
        WHERE w.id = p_worker_id AND w.token_hash IS NOT NULL
          AND w.token_hash IS DISTINCT FROM gpu_reactor_session_token_hash());
$$;
REVOKE ALL ON FUNCTION gpu_reactor_may_act_as(text) FROM PUBLIC;

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
          AND gpu_reactor_may_act_as(p_worker_id)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM done);
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
            error_message = left(p_error_message, 4000),
            generation_processed_at = now(),
            updated_at = now()
        WHERE id = p_task_id
          AND status = 'In Progress'
          AND worker_id = p_worker_id
          AND (p_attempt IS NULL OR attempts = p_attempt)
          AND gpu_reactor_may_act_as(p_worker_id)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM failed);
$$;

-- A beat in another's name changes nothing and answers NULL.
CREATE OR REPLACE FUNCTION func_update_worker_heartbeat(p_worker_id text, p_metadata jsonb DEFAULT '{}'::jsonb)
RETURNS text
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    INSERT INTO workers AS w (id, status, managed, last_heartbeat, activated_at, metadata,
                              token_hash)
    VALUES (p_worker_id, 'active', false, now(), now(), coalesce(p_metadata, '{}'::jsonb),
            gpu_reactor_session_token_hash())
    ON CONFLICT (id) DO UPDATE
    SET last_heartbeat = now(),
        metadata = w.metadata || coalesce(excluded.metadata, '{}'::jsonb),
        status = CASE WHEN w.status = 'spawning' THEN 'active' ELSE w.status END,
        activated_at = CASE WHEN w.status = 'spawning' THEN now() ELSE w.activated_at END
    WHERE w.token_hash IS NULL OR w.token_hash = excluded.token_hash
    RETURNING w.status;
$$;

CREATE OR REPLACE FUNCTION func_report_worker_drained(p_worker_id text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    UPDATE workers
    SET metadata = metadata || jsonb_build_object('drained_at', now())
    WHERE id = p_worker_id AND status IN ('active', 'terminating', 'spawning')
      AND (token_hash IS NULL OR token_hash = gpu_reactor_session_token_hash());
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('gpu_reactor',
        json_build_object('event', 'worker_drained', 'worker_id', p_worker_id)::text);
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION func_release_worker_tasks(p_worker_id text)
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    WITH released AS (
        UPDATE tasks t
        SET status = CASE WHEN t.attempts < t.max_attempts THEN 'Queued'::task_status
                          ELSE 'Failed'::task_status END,
            error_message = 'worker ' || t.worker_id || ' restarted during attempt ' || t.attempts
                            || CASE WHEN t.attempts < t.max_attempts THEN ''
                                    ELSE ' of ' || t.max_attempts || '; no attempts left' END,
            worker_id = CASE WHEN t.attempts < t.max_attempts THEN NULL ELSE t.worker_id END,
            generation_processed_at = now(),
            updated_at = now()
        WHERE t.status = 'In Progress' AND t.worker_id = p_worker_id
          AND gpu_reactor_may_act_as(p_worker_id)
        RETURNING 1
    )
    SELECT count(*)::integer FROM released;
$$;
