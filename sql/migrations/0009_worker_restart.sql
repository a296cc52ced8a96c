-- 0009: a worker that (re)starts under an id holds nothing yet. If its previous life
-- claimed a task and died (or the claim's answer was lost), that task would otherwise
-- sit In Progress under an id that heartbeats again, until TASK_STUCK_TIMEOUT_SEC.
-- One WORKER_ID is one process, so at start-up the worker hands such tasks back, the
-- lost attempt counted. Returns how many tasks it released.

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
        RETURNING 1
    )
    SELECT count(*)::integer FROM released;
$$;

COMMENT ON FUNCTION func_release_worker_tasks(text) IS
    'gpu-reactor: a starting worker hands back tasks its previous life held';
REVOKE ALL ON FUNCTION func_release_worker_tasks(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION func_release_worker_tasks(text) TO gpu_worker;
