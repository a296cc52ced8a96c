-- 0011: operator drains that a pod cannot forge.
-- PostgreSQL lets every login NOTIFY any channel, so a pod's gpu_worker credentials could
-- send '{"event":"drain",...}' as well as an operator. The reactor therefore honours a
-- NOTIFY drain only from a session it can still see and whose role is not gpu_worker
-- (reactor/service.py). This function is the path that needs no such check, and works
-- from scripts (psql -c) whose session is gone before the reactor could look:
--   SELECT gpu_reactor_drain('gpu-reactor-1a2b3c4d');
-- It returns the worker's status afterwards ('terminating'), or NULL for an unknown id.
-- EXECUTE is revoked from PUBLIC: the schema's owner may call it, and may grant it to
-- an operators' role; never to gpu_worker.
CREATE OR REPLACE FUNCTION gpu_reactor_drain(p_worker_id text,
                                             p_reason text DEFAULT 'requested by operator (SQL)')
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_status text;
BEGIN
    UPDATE workers
    SET status = 'terminating', draining_since = now(),
        drain_reason = left(coalesce(p_reason, 'requested by operator (SQL)'), 500)
    WHERE id = p_worker_id AND status IN ('spawning', 'active')
    RETURNING status INTO v_status;
    IF NOT FOUND THEN
        SELECT status INTO v_status FROM workers WHERE id = p_worker_id;
    END IF;
    RETURN v_status;
END
$$;

REVOKE ALL ON FUNCTION gpu_reactor_drain(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION gpu_reactor_drain(text, text) FROM gpu_worker;
