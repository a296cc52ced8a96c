-- 0007: least privilege. The credentials baked into a GPU pod belong to a role that can
-- call the worker functions and nothing else: no table, no view, no reactor function.
-- Create a login for pods with:  CREATE ROLE pod_login LOGIN PASSWORD '...' IN ROLE gpu_worker;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gpu_worker') THEN
        CREATE ROLE gpu_worker NOLOGIN;
    END IF;
END
$$;

-- PostgreSQL lets PUBLIC execute every new function; take that back from all of ours.
REVOKE ALL ON FUNCTION func_claim_available_task(text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION func_mark_task_complete(uuid, jsonb, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION func_mark_task_failed(uuid, text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION func_update_worker_heartbeat(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION func_report_worker_drained(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION func_reset_orphaned_tasks(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION func_requeue_task(uuid, text, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION gpu_reactor_arm() FROM PUBLIC;
REVOKE ALL ON FUNCTION gpu_reactor_ring(text) FROM PUBLIC;

REVOKE ALL ON tasks, workers, gpu_reactor_settings, gpu_reactor_doorbell FROM gpu_worker;
REVOKE ALL ON orchestrator_status, active_workers_health, recent_task_activity,
              worker_performance, fleet_cost FROM gpu_worker;

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO gpu_worker', current_schema());
END
$$;
GRANT EXECUTE ON FUNCTION func_claim_available_task(text, text[]) TO gpu_worker;
GRANT EXECUTE ON FUNCTION func_mark_task_complete(uuid, jsonb, text, integer) TO gpu_worker;
GRANT EXECUTE ON FUNCTION func_mark_task_failed(uuid, text, text, integer) TO gpu_worker;
GRANT EXECUTE ON FUNCTION func_update_worker_heartbeat(text, jsonb) TO gpu_worker;
GRANT EXECUTE ON FUNCTION func_report_worker_drained(text) TO gpu_worker;
GRANT EXECUTE ON FUNCTION gpu_reactor_arm() TO gpu_worker;
