-- The seed's functions that do not depend on the dependant_on type, in the last version
-- its migrations leave, with the exact parameter names and result shapes its callers
-- (Supabase RPC passes arguments by name) rely on. Bodies keep the seed's behaviour,
-- quirks included; comments and debug output are dropped.

-- 20250912001000_enforce_eligibility_in_count_functions.sql (unknown types count as gpu).
CREATE FUNCTION get_task_run_type(p_task_type text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    run_type_result text;
BEGIN
    SELECT run_type INTO run_type_result FROM task_types
    WHERE name = p_task_type AND is_active = true;
    RETURN COALESCE(run_type_result, 'gpu');
END;
$$;

-- 20251222000000_add_worker_model_affinity.sql
CREATE FUNCTION get_task_model(p_params jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN COALESCE(p_params ->> 'model_name',
                    p_params -> 'orchestrator_details' ->> 'model_name',
                    p_params ->> 'model', NULL);
END;
$$;

-- 20250724000001_fix_edge_functions_enum_casting.sql. The seed's first claim function:
-- oldest Queued task, no dependency, credit or run_type rule.
CREATE FUNCTION func_claim_available_task(worker_id_param text)
RETURNS TABLE (id uuid, status text, attempts int, worker_id text,
               generation_started_at timestamptz, task_data jsonb, created_at timestamptz,
               task_type text)
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM workers w WHERE w.id = worker_id_param AND w.status = 'terminating') THEN
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE tasks
    SET status = 'In Progress'::task_status,
        worker_id = worker_id_param,
        generation_started_at = NOW()
    WHERE tasks.id = (
        SELECT t.id FROM tasks t
        WHERE t.status = 'Queued'::task_status AND (t.worker_id IS NULL OR t.worker_id = '')
        ORDER BY t.created_at ASC
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING tasks.id, tasks.status::text, COALESCE(tasks.attempts, 0), tasks.worker_id,
              tasks.generation_started_at, tasks.params AS task_data, tasks.created_at,
              tasks.task_type;
END;
$$;

-- 20250724000001_fix_edge_functions_enum_casting.sql
CREATE FUNCTION func_mark_task_complete(task_id_param uuid, result_data_param jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasks
    SET status = 'Complete'::task_status,
        generation_processed_at = NOW(),
        result_data = COALESCE(result_data_param, result_data),
        updated_at = NOW()
    WHERE id = task_id_param;
END;
$$;

-- 20250202000001_create_rpc_functions_existing.sql, never fixed: the CASE yields text
-- (and 'Error' is no task_status), so every call raises "column "status" is of type
-- task_status but expression is of type text". Kept as the seed has it.
CREATE FUNCTION func_mark_task_failed(task_id_param uuid, error_message_param text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasks
    SET attempts = COALESCE(attempts, 0) + 1,
        status = CASE WHEN COALESCE(attempts, 0) + 1 >= 3 THEN 'Failed' ELSE 'Error' END,
        generation_processed_at = NOW(),
        error_message = error_message_param,
        worker_id = NULL,
        updated_at = NOW()
    WHERE id = task_id_param;
END;
$$;

-- 20250724000001_fix_edge_functions_enum_casting.sql: the second overload, by other names.
CREATE FUNCTION func_mark_task_failed(p_task_id text, p_error_message text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    rows_updated integer;
    task_uuid uuid;
BEGIN
    BEGIN
        task_uuid := p_task_id::uuid;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'Invalid task_id format: %', p_task_id;
    END;
    UPDATE tasks
    SET status = 'Failed'::task_status,
        error_message = p_error_message,
        updated_at = CURRENT_TIMESTAMP,
        generation_processed_at = CURRENT_TIMESTAMP
    WHERE id = task_uuid;
    GET DIAGNOSTICS rows_updated = ROW_COUNT;
    RETURN rows_updated > 0;
END;
$$;

-- 20250724000001_fix_edge_functions_enum_casting.sql
CREATE FUNCTION func_update_task_status(p_task_id text, p_status text,
                                        p_table_name text DEFAULT 'tasks',
                                        p_output_location text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    rows_updated integer;
    task_uuid uuid;
BEGIN
    BEGIN
        task_uuid := p_task_id::uuid;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'Invalid task_id format: %', p_task_id;
    END;
    UPDATE tasks
    SET status = p_status::task_status,
        output_location = COALESCE(p_output_location, output_location),
        updated_at = CURRENT_TIMESTAMP,
        generation_processed_at = CASE WHEN p_status = 'Complete' THEN CURRENT_TIMESTAMP
                                       ELSE generation_processed_at END
    WHERE id = task_uuid;
    GET DIAGNOSTICS rows_updated = ROW_COUNT;
    RETURN rows_updated > 0;
END;
$$;

-- 20250202000001_create_rpc_functions_existing.sql
CREATE FUNCTION func_reset_orphaned_tasks(failed_worker_ids text[])
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    reset_count int;
BEGIN
    UPDATE tasks
    SET status = 'Queued', worker_id = NULL, generation_started_at = NULL, updated_at = NOW()
    WHERE worker_id = ANY (failed_worker_ids)
      AND status = 'In Progress'
      AND COALESCE(attempts, 0) < 3;
    GET DIAGNOSTICS reset_count = ROW_COUNT;
    RETURN reset_count;
END;
$$;

-- 20250724000002_complete_enum_casting_fixes.sql
CREATE FUNCTION func_get_tasks_by_status(status_filter text[])
RETURNS TABLE (id uuid, status text, attempts int, worker_id text, created_at timestamptz,
               generation_started_at timestamptz, generation_processed_at timestamptz,
               task_data jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    SELECT t.id, t.status::text, COALESCE(t.attempts, 0), t.worker_id, t.created_at,
           t.generation_started_at, t.generation_processed_at, t.params AS task_data
    FROM tasks t
    WHERE t.status::text = ANY (status_filter)
    ORDER BY t.created_at ASC;
END;
$$;

-- 20251018000001_fix_heartbeat_function_security.sql. The seed orchestrator's beat
-- (gpu_orchestrator/database.py, update_worker_heartbeat). An unknown id registers
-- itself as an 'external' worker.
CREATE FUNCTION func_update_worker_heartbeat(worker_id_param text,
                                             vram_total_mb_param int DEFAULT NULL,
                                             vram_used_mb_param int DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    current_metadata jsonb;
BEGIN
    SELECT COALESCE(metadata, '{}'::jsonb) INTO current_metadata FROM workers WHERE id = worker_id_param;
    IF vram_total_mb_param IS NOT NULL THEN
        current_metadata = current_metadata || jsonb_build_object(
            'vram_total_mb', vram_total_mb_param,
            'vram_used_mb', COALESCE(vram_used_mb_param, 0),
            'vram_timestamp', extract(epoch from NOW()));
    END IF;
    UPDATE workers SET last_heartbeat = NOW(), metadata = current_metadata WHERE id = worker_id_param;
    IF NOT FOUND THEN
        INSERT INTO workers (id, instance_type, status, last_heartbeat, metadata, created_at)
        VALUES (worker_id_param, 'external', 'active', NOW(), current_metadata, NOW());
    END IF;
END;
$$;

-- The worker's beat. 20251018000001_fix_heartbeat_function_security.sql made the
-- five-argument version; 20251019000001_add_status_param_to_heartbeat.sql added
-- status_param with CREATE OR REPLACE, which made a second overload instead of
-- replacing the first. Both exist in the seed, so a named call that leaves out
-- status_param is ambiguous; Headless-Wan2GP (heartbeat_guardian.py) always passes it:
-- 'active' every 20 s, 'crashed' once when the worker process is gone.
CREATE FUNCTION func_worker_heartbeat_with_logs(worker_id_param text,
                                                vram_total_mb_param int DEFAULT NULL,
                                                vram_used_mb_param int DEFAULT NULL,
                                                logs_param jsonb DEFAULT '[]'::jsonb,
                                                current_task_id_param uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    current_metadata jsonb;
    log_entry jsonb;
    inserted_count int := 0;
    error_count int := 0;
BEGIN
    SELECT COALESCE(metadata, '{}'::jsonb) INTO current_metadata FROM workers WHERE id = worker_id_param;
    IF vram_total_mb_param IS NOT NULL THEN
        current_metadata = current_metadata || jsonb_build_object(
            'vram_total_mb', vram_total_mb_param,
            'vram_used_mb', COALESCE(vram_used_mb_param, 0),
            'vram_timestamp', extract(epoch from NOW()));
    END IF;
    UPDATE workers SET last_heartbeat = NOW(), metadata = current_metadata WHERE id = worker_id_param;
    IF NOT FOUND THEN
        INSERT INTO workers (id, instance_type, status, last_heartbeat, metadata, created_at)
        VALUES (worker_id_param, 'external', 'active', NOW(), current_metadata, NOW());
    END IF;
    IF jsonb_array_length(logs_param) > 0 THEN
        FOR log_entry IN SELECT * FROM jsonb_array_elements(logs_param) LOOP
            BEGIN
                INSERT INTO system_logs (timestamp, source_type, source_id, log_level, message,
                                         task_id, worker_id, metadata)
                VALUES (COALESCE((log_entry ->> 'timestamp')::timestamptz, NOW()), 'worker',
                        worker_id_param, COALESCE(log_entry ->> 'level', 'INFO'),
                        log_entry ->> 'message',
                        COALESCE((log_entry ->> 'task_id')::uuid, current_task_id_param),
                        worker_id_param, COALESCE(log_entry -> 'metadata', '{}'::jsonb));
                inserted_count := inserted_count + 1;
            EXCEPTION WHEN OTHERS THEN
                error_count := error_count + 1;
            END;
        END LOOP;
    END IF;
    RETURN jsonb_build_object('success', true, 'heartbeat_updated', true,
                              'logs_inserted', inserted_count, 'log_errors', error_count);
END;
$$;

-- 20251019000001_add_status_param_to_heartbeat.sql: the same, and the row's status is
-- set to status_param on every beat. 'crashed' is not admitted by workers_status_check,
-- so the seed's own last beat of a crashed worker raises.
CREATE FUNCTION func_worker_heartbeat_with_logs(worker_id_param text,
                                                vram_total_mb_param int DEFAULT NULL,
                                                vram_used_mb_param int DEFAULT NULL,
                                                logs_param jsonb DEFAULT '[]'::jsonb,
                                                current_task_id_param uuid DEFAULT NULL,
                                                status_param text DEFAULT 'active')
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    current_metadata jsonb;
    log_entry jsonb;
    inserted_count int := 0;
    error_count int := 0;
BEGIN
    SELECT COALESCE(metadata, '{}'::jsonb) INTO current_metadata FROM workers WHERE id = worker_id_param;
    IF vram_total_mb_param IS NOT NULL THEN
        current_metadata = current_metadata || jsonb_build_object(
            'vram_total_mb', vram_total_mb_param,
            'vram_used_mb', COALESCE(vram_used_mb_param, 0),
            'vram_timestamp', extract(epoch from NOW()));
    END IF;
    UPDATE workers
    SET last_heartbeat = NOW(), metadata = current_metadata, status = status_param
    WHERE id = worker_id_param;
    IF NOT FOUND THEN
        INSERT INTO workers (id, instance_type, status, last_heartbeat, metadata, created_at)
        VALUES (worker_id_param, 'external', status_param, NOW(), current_metadata, NOW());
    END IF;
    IF jsonb_array_length(logs_param) > 0 THEN
        FOR log_entry IN SELECT * FROM jsonb_array_elements(logs_param) LOOP
            BEGIN
                INSERT INTO system_logs (timestamp, source_type, source_id, log_level, message,
                                         task_id, worker_id, metadata)
                VALUES (COALESCE((log_entry ->> 'timestamp')::timestamptz, NOW()), 'worker',
                        worker_id_param, COALESCE(log_entry ->> 'level', 'INFO'),
                        log_entry ->> 'message',
                        COALESCE((log_entry ->> 'task_id')::uuid, current_task_id_param),
                        worker_id_param, COALESCE(log_entry -> 'metadata', '{}'::jsonb));
                inserted_count := inserted_count + 1;
            EXCEPTION WHEN OTHERS THEN
                error_count := error_count + 1;
            END;
        END LOOP;
    END IF;
    RETURN jsonb_build_object('success', true, 'heartbeat_updated', true,
                              'logs_inserted', inserted_count, 'log_errors', error_count);
END;
$$;
