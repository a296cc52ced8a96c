-- The seed's monitoring views. orchestrator_status and active_workers_health as
-- re-created by 20250724000002_complete_enum_casting_fixes.sql; recent_task_activity
-- and worker_performance from 20250202000002_create_monitoring_views_existing.sql.
-- (task_queue_analysis of that file is left out: nothing of gpu-reactor touches it.)

CREATE VIEW orchestrator_status AS
SELECT
    COUNT(CASE WHEN t.status = 'Queued'::task_status THEN 1 END) AS queued_tasks,
    COUNT(CASE WHEN t.status = 'In Progress'::task_status THEN 1 END) AS running_tasks,
    COUNT(CASE WHEN t.status = 'Complete'::task_status THEN 1 END) AS completed_tasks,
    COUNT(CASE WHEN t.status = 'Failed'::task_status THEN 1 END) AS error_tasks,
    COUNT(CASE WHEN t.status = 'Failed'::task_status THEN 1 END) AS failed_tasks,
    (SELECT COUNT(*) FROM workers WHERE status = 'inactive') AS inactive_workers,
    (SELECT COUNT(*) FROM workers WHERE status = 'active') AS active_workers,
    (SELECT COUNT(*) FROM workers WHERE status = 'terminated') AS terminated_workers,
    (SELECT COUNT(*) FROM workers WHERE instance_type = 'external' AND status = 'active') AS external_workers,
    (SELECT COUNT(*) FROM workers WHERE status IN ('active', 'external')
                                   AND last_heartbeat < NOW() - INTERVAL '5 minutes') AS stale_workers,
    (SELECT COUNT(*) FROM tasks WHERE status = 'In Progress'::task_status
                                 AND generation_started_at < NOW() - INTERVAL '10 minutes') AS stuck_tasks,
    NOW() AS snapshot_time
FROM tasks t;

CREATE VIEW active_workers_health AS
SELECT
    w.id,
    w.instance_type,
    w.status,
    w.created_at,
    w.last_heartbeat,
    CASE WHEN w.last_heartbeat IS NOT NULL THEN EXTRACT(EPOCH FROM (NOW() - w.last_heartbeat)) END
        AS heartbeat_age_seconds,
    (w.metadata ->> 'vram_total_mb')::int AS vram_total_mb,
    (w.metadata ->> 'vram_used_mb')::int AS vram_used_mb,
    CASE WHEN (w.metadata ->> 'vram_total_mb')::int > 0
         THEN ROUND(((w.metadata ->> 'vram_used_mb')::numeric * 100.0)
                    / (w.metadata ->> 'vram_total_mb')::numeric, 1) END AS vram_usage_percent,
    t.id AS current_task_id,
    t.status::text AS current_task_status,
    t.task_type AS current_task_type,
    CASE WHEN t.generation_started_at IS NOT NULL
         THEN EXTRACT(EPOCH FROM (NOW() - t.generation_started_at)) END AS task_runtime_seconds,
    CASE
        WHEN w.last_heartbeat < NOW() - INTERVAL '5 minutes' THEN 'STALE_HEARTBEAT'
        WHEN t.generation_started_at < NOW() - INTERVAL '10 minutes'
             AND t.status = 'In Progress'::task_status THEN 'STUCK_TASK'
        WHEN w.status IN ('active', 'external') AND w.last_heartbeat IS NULL THEN 'NO_HEARTBEAT'
        WHEN w.status = 'inactive' THEN 'INACTIVE'
        WHEN w.status = 'terminated' THEN 'TERMINATED'
        ELSE 'HEALTHY'
    END AS health_status
FROM workers w
LEFT JOIN tasks t ON t.worker_id = w.id AND t.status = 'In Progress'::task_status
WHERE w.status IN ('inactive', 'active', 'terminated')
ORDER BY w.created_at DESC;

CREATE VIEW recent_task_activity AS
SELECT
    t.id,
    t.status,
    t.task_type,
    COALESCE(t.attempts, 0) AS attempts,
    t.worker_id,
    t.created_at,
    t.generation_started_at,
    t.generation_processed_at,
    t.updated_at,
    t.error_message,
    CASE
        WHEN t.generation_processed_at IS NOT NULL AND t.generation_started_at IS NOT NULL
            THEN EXTRACT(EPOCH FROM (t.generation_processed_at - t.generation_started_at))
        WHEN t.generation_started_at IS NOT NULL AND t.status = 'In Progress'
            THEN EXTRACT(EPOCH FROM (NOW() - t.generation_started_at))
    END AS processing_duration_seconds,
    w.instance_type AS worker_instance_type,
    w.status AS worker_status
FROM tasks t
LEFT JOIN workers w ON w.id = t.worker_id
WHERE t.created_at > NOW() - INTERVAL '24 hours'
ORDER BY t.created_at DESC
LIMIT 100;

CREATE VIEW worker_performance AS
SELECT
    w.id AS worker_id,
    w.instance_type,
    w.status,
    w.created_at AS worker_created_at,
    w.last_heartbeat,
    COUNT(t.id) AS total_tasks_processed,
    COUNT(CASE WHEN t.status = 'Complete' THEN 1 END) AS completed_tasks,
    COUNT(CASE WHEN t.status = 'Failed' THEN 1 END) AS error_tasks,
    COUNT(CASE WHEN t.status = 'Failed' THEN 1 END) AS failed_tasks,
    COUNT(CASE WHEN t.status = 'In Progress' THEN 1 END) AS current_running_tasks,
    CASE WHEN COUNT(t.id) > 0
         THEN ROUND((COUNT(CASE WHEN t.status = 'Complete' THEN 1 END)::numeric
                     / COUNT(t.id)::numeric) * 100, 1) END AS success_rate_percent,
    AVG(CASE WHEN t.status = 'Complete' AND t.generation_started_at IS NOT NULL
                  AND t.generation_processed_at IS NOT NULL
             THEN EXTRACT(EPOCH FROM (t.generation_processed_at - t.generation_started_at)) END)
        AS avg_processing_time_seconds,
    CASE WHEN w.status IN ('active', 'external')
         THEN EXTRACT(EPOCH FROM (NOW() - w.created_at)) / 3600.0 END AS uptime_hours
FROM workers w
LEFT JOIN tasks t ON t.worker_id = w.id
WHERE w.created_at > NOW() - INTERVAL '7 days'
GROUP BY w.id, w.instance_type, w.status, w.created_at, w.last_heartbeat
ORDER BY w.created_at DESC;
