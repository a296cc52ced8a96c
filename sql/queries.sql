-- Queries the reactor runs, by name. Loaded by reactor/db/queries.py.
-- Every one touches only Queued / In Progress tasks and live workers (partial indexes).

-- name: queue_counts
SELECT
    (SELECT count(*) FROM tasks WHERE status = 'Queued') AS queued,
    (SELECT count(*) FROM tasks WHERE status = 'In Progress') AS in_progress,
    (SELECT min(created_at) FROM tasks WHERE status = 'Queued') AS oldest_queued_at,
    now() AS db_now;

-- name: live_workers
SELECT id, pod_id, status, managed, gpu_type, cost_per_hr::float8 AS cost_per_hr,
       created_at, activated_at, last_heartbeat, draining_since, last_task_finished_at,
       (metadata ->> 'drained_at')::timestamptz AS drained_at
FROM workers
WHERE status IN ('spawning', 'active', 'terminating');

-- name: running_tasks
SELECT id, worker_id, attempts, generation_started_at
FROM tasks
WHERE status = 'In Progress';

-- name: arm_doorbell
SELECT gpu_reactor_arm();

-- name: sync_settings
INSERT INTO gpu_reactor_settings AS s
    (id, heartbeat_timeout_sec, task_stuck_timeout_sec, spawning_timeout_sec, updated_at)
VALUES (true, $1, $2, $3, now())
ON CONFLICT (id) DO UPDATE
SET heartbeat_timeout_sec = excluded.heartbeat_timeout_sec,
    task_stuck_timeout_sec = excluded.task_stuck_timeout_sec,
    spawning_timeout_sec = excluded.spawning_timeout_sec,
    updated_at = now()
WHERE (s.heartbeat_timeout_sec, s.task_stuck_timeout_sec, s.spawning_timeout_sec)
      IS DISTINCT FROM (excluded.heartbeat_timeout_sec, excluded.task_stuck_timeout_sec,
                        excluded.spawning_timeout_sec);

-- name: insert_spawn_intent
INSERT INTO workers (id, status, managed, cost_per_hr, gpu_type, metadata)
VALUES ($1, 'spawning', true, $2, NULL, jsonb_build_object('spawn_reason', $3::text));

-- name: record_pod
UPDATE workers
SET pod_id = $2, gpu_type = coalesce($3, gpu_type), cost_per_hr = $4
WHERE id = $1;

-- name: attach_pod
UPDATE workers SET pod_id = $2 WHERE id = $1 AND pod_id IS NULL;

-- name: mark_drain
UPDATE workers
SET status = 'terminating', draining_since = now(), drain_reason = $2
WHERE id = $1 AND status IN ('spawning', 'active');

-- name: retire_worker
UPDATE workers
SET status = $2, terminated_at = now(),
    error_reason = CASE WHEN $2 = 'error' THEN $3 ELSE error_reason END,
    drain_reason = coalesce(drain_reason, $3)
WHERE id = $1 AND status IN ('spawning', 'active', 'terminating');

-- name: reset_orphaned_tasks
SELECT task_id, new_status FROM func_reset_orphaned_tasks($1::text[]);

-- name: requeue_task
SELECT func_requeue_task($1, $2, $3, $4);

-- name: leader_try_lock
SELECT pg_try_advisory_lock($1);

-- name: leader_unlock
SELECT pg_advisory_unlock($1);
