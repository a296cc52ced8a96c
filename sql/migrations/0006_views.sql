-- 0006: views for operators (psql, Grafana's Postgres source, the dashboard).
-- Thresholds come from gpu_reactor_settings, which the reactor keeps in step with its
-- own settings, so the views and the reactor agree on what "stale" and "stuck" mean.

-- A seed system may already have views of these names with other columns, which
-- CREATE OR REPLACE VIEW cannot change. Views hold no data: any of these names that is
-- not ours (a 'gpu-reactor:' comment, end of this file) is replaced. No CASCADE: a view
-- something else depends on stops the migration with PostgreSQL's own message.
DO $$
DECLARE
    v regclass;
BEGIN
    FOR v IN
        SELECT c.oid::regclass
        FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace
          AND c.relname IN ('orchestrator_status', 'active_workers_health',
                            'recent_task_activity', 'worker_performance', 'fleet_cost')
          AND c.relkind IN ('v', 'm')
          AND coalesce(obj_description(c.oid, 'pg_class'), '') NOT LIKE 'gpu-reactor:%'
    LOOP
        RAISE NOTICE 'gpu-reactor: replacing the earlier view %', v;
        EXECUTE format('DROP %s %s',
                       CASE WHEN (SELECT relkind FROM pg_class WHERE oid = v) = 'm'
                            THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, v);
    END LOOP;
END
$$;

CREATE OR REPLACE VIEW orchestrator_status AS
SELECT
    (SELECT count(*) FROM tasks WHERE status = 'Queued')        AS queued_tasks,
    (SELECT count(*) FROM tasks WHERE status = 'In Progress')   AS in_progress_tasks,
    (SELECT count(*) FROM tasks WHERE status = 'Complete')      AS completed_tasks,
    (SELECT count(*) FROM tasks WHERE status = 'Failed')        AS failed_tasks,
    (SELECT count(*) FROM tasks WHERE status = 'Cancelled')     AS cancelled_tasks,
    (SELECT extract(epoch FROM now() - min(created_at))
       FROM tasks WHERE status = 'Queued')                      AS oldest_queued_age_sec,
    (SELECT count(*) FROM workers WHERE status = 'spawning')    AS spawning_workers,
    (SELECT count(*) FROM workers WHERE status = 'active')      AS active_workers,
    (SELECT count(*) FROM workers WHERE status = 'terminating') AS terminating_workers,
    (SELECT count(*) FROM workers WHERE status = 'error')       AS error_workers,
    -- Like the reactor: a worker that never beat is judged by when it became active or,
    -- failing that, was created (active_workers_health says the same).
    (SELECT count(*) FROM workers w, gpu_reactor_settings s
       WHERE w.status IN ('active', 'terminating')
         AND coalesce(w.last_heartbeat, w.activated_at, w.created_at)
             < now() - make_interval(secs => s.heartbeat_timeout_sec))
                                                                AS stale_workers,
    (SELECT count(*) FROM tasks t, gpu_reactor_settings s
       WHERE t.status = 'In Progress'
         AND t.generation_started_at < now() - make_interval(secs => s.task_stuck_timeout_sec))
                                                                AS stuck_tasks,
    now()                                                       AS observed_at;

CREATE OR REPLACE VIEW active_workers_health AS
SELECT
    w.id AS worker_id,
    w.pod_id,
    w.status,
    w.gpu_type,
    w.cost_per_hr,
    w.managed,
    w.created_at,
    w.last_heartbeat,
    extract(epoch FROM now() - w.last_heartbeat) AS heartbeat_age_sec,
    t.id AS current_task_id,
    t.task_type AS current_task_type,
    extract(epoch FROM now() - t.generation_started_at) AS current_task_age_sec,
    CASE
        WHEN w.status = 'spawning'
             AND w.created_at < now() - make_interval(secs => s.spawning_timeout_sec) THEN 'spawn_overdue'
        WHEN w.status = 'spawning' THEN 'starting'
        WHEN coalesce(w.last_heartbeat, w.activated_at, w.created_at)
             < now() - make_interval(secs => s.heartbeat_timeout_sec) THEN 'stale'
        WHEN t.generation_started_at < now() - make_interval(secs => s.task_stuck_timeout_sec) THEN 'stuck_task'
        WHEN w.status = 'terminating' THEN 'draining'
        WHEN t.id IS NOT NULL THEN 'busy'
        ELSE 'idle'
    END AS health
FROM workers w
CROSS JOIN gpu_reactor_settings s
LEFT JOIN LATERAL (
    SELECT id, task_type, generation_started_at
    FROM tasks
    WHERE status = 'In Progress' AND worker_id = w.id
    ORDER BY generation_started_at
    LIMIT 1
) t ON true
WHERE w.status IN ('spawning', 'active', 'terminating');

CREATE OR REPLACE VIEW recent_task_activity AS
SELECT id, task_type, status, worker_id, attempts, max_attempts, created_at, updated_at,
       generation_started_at, generation_processed_at,
       extract(epoch FROM generation_processed_at - generation_started_at) AS processing_sec,
       error_message
FROM tasks
WHERE updated_at > now() - interval '1 hour'
ORDER BY updated_at DESC
LIMIT 200;

CREATE OR REPLACE VIEW worker_performance AS
SELECT
    w.id AS worker_id,
    w.status,
    w.gpu_type,
    w.cost_per_hr,
    w.created_at,
    w.terminated_at,
    extract(epoch FROM coalesce(w.terminated_at, now()) - w.created_at) AS lifetime_sec,
    count(t.id) FILTER (WHERE t.status = 'Complete') AS tasks_completed,
    count(t.id) FILTER (WHERE t.status = 'Failed') AS tasks_failed,
    avg(extract(epoch FROM t.generation_processed_at - t.generation_started_at))
        FILTER (WHERE t.status = 'Complete') AS avg_processing_sec,
    round(w.cost_per_hr * extract(epoch FROM coalesce(w.terminated_at, now()) - w.created_at) / 3600.0, 4)
        AS cost_usd
FROM workers w
LEFT JOIN tasks t ON t.worker_id = w.id
GROUP BY w.id;

-- Hourly burn of the live fleet and what it has spent since midnight (UTC).
CREATE OR REPLACE VIEW fleet_cost AS
SELECT
    coalesce(sum(cost_per_hr) FILTER (WHERE status IN ('spawning', 'active', 'terminating')), 0)
        AS hourly_burn_usd,
    count(*) FILTER (WHERE status IN ('spawning', 'active', 'terminating')) AS live_workers,
    round(coalesce(sum(
        cost_per_hr * extract(epoch FROM
            least(coalesce(terminated_at, now()), now())
            - greatest(created_at, date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
        ) / 3600.0
    ) FILTER (WHERE coalesce(terminated_at, now()) > date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), 0), 4)
        AS spent_today_usd
FROM workers;

COMMENT ON VIEW orchestrator_status IS 'gpu-reactor: task counts by status, fleet counts, stale workers, stuck tasks';
COMMENT ON VIEW active_workers_health IS 'gpu-reactor: one row per live worker with its current task and health';
COMMENT ON VIEW recent_task_activity IS 'gpu-reactor: tasks changed in the last hour (at most 200)';
COMMENT ON VIEW worker_performance IS 'gpu-reactor: tasks completed and failed, processing time and cost per worker';
COMMENT ON VIEW fleet_cost IS 'gpu-reactor: hourly burn of the live fleet and spend since midnight UTC';
