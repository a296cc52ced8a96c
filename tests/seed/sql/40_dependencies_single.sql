-- A database from before 20260121000000_support_multiple_dependencies.sql:
-- tasks.dependant_on is one uuid, and a task is ready when that one task is Complete.
-- (Load this or 40_dependencies_array.sql, not both.)

-- 20251222000001_add_same_model_only_param.sql: what the claim-next-task edge function
-- calls for a service-role key (supabase/functions/claim-next-task/index.ts passes all
-- four arguments by name). Ready = Queued, its dependency Complete, owner with credits,
-- cloud processing allowed, fewer than 5 of the owner's non-orchestrator tasks In
-- Progress, and the task type's run_type when one is asked for. No row lock: two
-- concurrent claims may pick the same task, and the second's UPDATE then waits and
-- claims it again (the seed's behaviour).
CREATE FUNCTION claim_next_task_service_role(p_worker_id text,
                                             p_include_active boolean DEFAULT FALSE,
                                             p_run_type text DEFAULT NULL,
                                             p_same_model_only boolean DEFAULT FALSE)
RETURNS TABLE (task_id uuid, params jsonb, task_type text, project_id uuid, user_id uuid)
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    v_task_id uuid;
    v_params jsonb;
    v_task_type text;
    v_project_id uuid;
    v_user_id uuid;
    v_worker_model text;
BEGIN
    SELECT current_model INTO v_worker_model FROM workers
    WHERE id = p_worker_id AND status = 'active';

    WITH eligible_users AS (
        SELECT u.id AS user_id
        FROM users u
        LEFT JOIN projects p ON p.user_id = u.id
        LEFT JOIN tasks in_progress_tasks ON in_progress_tasks.project_id = p.id
            AND in_progress_tasks.status = 'In Progress'::task_status
            AND COALESCE(in_progress_tasks.task_type, '') NOT ILIKE '%orchestrator%'
        WHERE u.credits > 0
          AND COALESCE((u.settings -> 'ui' -> 'generationMethods' ->> 'inCloud')::boolean, true) = true
        GROUP BY u.id, u.credits, u.settings
        HAVING COUNT(in_progress_tasks.id) < 5
    ),
    ready_tasks AS (
        SELECT t.id, t.params, t.task_type, t.project_id, t.created_at, p.user_id,
               ROW_NUMBER() OVER (
                   ORDER BY CASE WHEN v_worker_model IS NOT NULL
                                      AND get_task_model(t.params) = v_worker_model
                                 THEN 0 ELSE 1 END,
                            t.created_at ASC) AS rn
        FROM tasks t
        JOIN projects p ON t.project_id = p.id
        LEFT JOIN tasks dep ON t.dependant_on = dep.id
        WHERE t.status = 'Queued'::task_status
          AND (t.dependant_on IS NULL OR dep.status = 'Complete'::task_status)
          AND EXISTS (SELECT 1 FROM eligible_users eu WHERE eu.user_id = p.user_id)
          AND (p_run_type IS NULL OR get_task_run_type(t.task_type) = p_run_type)
          AND (NOT p_same_model_only OR v_worker_model IS NULL
               OR get_task_model(t.params) = v_worker_model)
    )
    UPDATE tasks
    SET status = CASE WHEN status = 'Queued'::task_status THEN 'In Progress'::task_status ELSE status END,
        worker_id = CASE WHEN status = 'Queued'::task_status THEN p_worker_id ELSE worker_id END,
        updated_at = CASE WHEN status = 'Queued'::task_status THEN NOW() ELSE updated_at END,
        generation_started_at = CASE WHEN status = 'Queued'::task_status THEN NOW()
                                     ELSE generation_started_at END
    FROM ready_tasks rt
    WHERE tasks.id = rt.id
      AND rt.rn = 1
      AND (NOT p_include_active OR tasks.status = 'Queued'::task_status)
    RETURNING tasks.id, tasks.params, tasks.task_type, tasks.project_id, rt.user_id
    INTO v_task_id, v_params, v_task_type, v_project_id, v_user_id;

    IF v_task_id IS NOT NULL THEN
        task_id := v_task_id;
        params := v_params;
        task_type := v_task_type;
        project_id := v_project_id;
        user_id := v_user_id;
        RETURN NEXT;
    END IF;
    RETURN;
END;
$$;

-- 20250913000000_fix_count_function_final.sql: what the seed orchestrator scales on
-- (task-counts edge function; the orchestrator reads count(p_include_active => true,
-- p_run_type => 'gpu')). Per user with credits and cloud allowed and under the limit of
-- 5: ready Queued tasks of the run type, plus (with p_include_active) the
-- non-orchestrator In Progress ones, capped at 5.
CREATE FUNCTION count_eligible_tasks_service_role(p_include_active boolean DEFAULT FALSE,
                                                  p_run_type text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_total_capacity integer := 0;
BEGIN
    WITH per_user_capacity AS (
        SELECT u.id AS user_id,
               COUNT(CASE WHEN t.status = 'In Progress'
                               AND COALESCE(t.task_type, '') NOT ILIKE '%orchestrator%'
                          THEN 1 END) AS in_progress_count,
               COUNT(CASE WHEN t.status = 'Queued'
                               AND (t.dependant_on IS NULL OR dep.status = 'Complete')
                               AND (p_run_type IS NULL OR get_task_run_type(t.task_type) = p_run_type)
                          THEN 1 END) AS ready_queued_count
        FROM users u
        LEFT JOIN projects p ON p.user_id = u.id
        LEFT JOIN tasks t ON t.project_id = p.id
        LEFT JOIN tasks dep ON dep.id = t.dependant_on
        WHERE u.credits > 0
          AND COALESCE((u.settings -> 'ui' -> 'generationMethods' ->> 'inCloud')::boolean, true) = true
        GROUP BY u.id, u.credits, u.settings
        HAVING COALESCE(COUNT(CASE WHEN t.status = 'In Progress'
                                        AND COALESCE(t.task_type, '') NOT ILIKE '%orchestrator%'
                                   THEN 1 END), 0) < 5
    )
    SELECT COALESCE(SUM(CASE WHEN p_include_active
                             THEN LEAST(5, in_progress_count + ready_queued_count)
                             ELSE GREATEST(0, LEAST(5 - in_progress_count, ready_queued_count))
                        END), 0)
    INTO v_total_capacity
    FROM per_user_capacity;
    RETURN v_total_capacity;
END;
$$;
