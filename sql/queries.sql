-- Queries the reactor runs, by name. Loaded by reactor/db/queries.py.
-- Every one touches only Queued / In Progress tasks and live workers (partial indexes).

-- name: queue_counts
-- One pass over the Queued index gives the count and the oldest (it is ordered by
-- priority first, so min(created_at) reads it all anyway); tasks still waiting out a
-- retry delay and when the next of them is due come from their own small index.
-- Of the due Queued tasks, those no worker of this fleet could claim now, by why (the
-- claim's rule, gpu_reactor.claimable(), the other way round; each task in one group):
-- of a task type the fleet does not run ($1, names or globs; NULL: it runs all, and
-- nothing is read; the globs become LIKE patterns once, in an InitPlan);
-- waiting for a dependency that is Failed, Cancelled or missing, which will never be
-- Complete; waiting for one that is Queued or In Progress. Only tasks with dependencies
-- are read for those two, through their own index. What is left is the demand.
SELECT q.queued, q.oldest_queued_at, w.waiting, w.next_retry_at,
       o.other_types, b.blocked_for_good, b.blocked_waiting,
       (SELECT count(*) FROM public.tasks WHERE status = 'In Progress') AS in_progress,
       now() AS db_now
FROM (SELECT count(*) AS queued, min(created_at) AS oldest_queued_at
      FROM public.tasks WHERE status = 'Queued') AS q,
     (SELECT count(*) AS waiting, min(retry_at) AS next_retry_at
      FROM public.tasks WHERE status = 'Queued' AND retry_at > now()) AS w,
     (SELECT count(*) AS other_types
      FROM public.tasks t
      WHERE $1::text[] IS NOT NULL AND t.status = 'Queued'
        AND (t.retry_at IS NULL OR t.retry_at <= now())
        AND NOT t.task_type LIKE ANY ((SELECT gpu_reactor.like_patterns($1::text[]))::text[])
     ) AS o,
     (SELECT count(*) FILTER (WHERE x.dead) AS blocked_for_good,
             count(*) FILTER (WHERE NOT x.dead AND x.unfinished) AS blocked_waiting
      -- One look at each task's dependencies answers both (no dependency: neither).
      FROM public.tasks t,
           LATERAL (SELECT bool_or(dep.status IS NULL OR dep.status IN ('Failed', 'Cancelled'))
                               AS dead,
                           bool_or(dep.status IS DISTINCT FROM 'Complete') AS unfinished
                    FROM unnest(gpu_reactor.dependencies(t.dependant_on)) d(id)
                    LEFT JOIN public.tasks dep ON dep.id = d.id) AS x
      WHERE t.status = 'Queued' AND t.dependant_on IS NOT NULL
        AND (t.retry_at IS NULL OR t.retry_at <= now())
        AND t.task_type LIKE ANY (coalesce((SELECT gpu_reactor.like_patterns($1::text[])),
                                           '{%}'))
     ) AS b;

-- name: ready_by_type
-- Per task type, the Queued tasks a worker of any type could claim now (the claim's rule,
-- gpu_reactor.claimable()): what the reactor shares out among its pools, in the
-- snapshot's transaction. One pass over the Queued rows (their index, then the rows for
-- their type); a task's dependencies are read only when it has some.
SELECT t.task_type, count(*) AS ready
FROM public.tasks t
WHERE t.status = 'Queued' AND gpu_reactor.claimable(t, NULL)
GROUP BY t.task_type;

-- name: live_workers
-- The drain mark is draining_since, gpu-reactor's own column: a worker that has one is
-- draining whatever its status says (the seed's heartbeat writes 'active' on every
-- beat). A row the reactor has retired (terminated_at) stays retired though a late beat
-- rewrites its status. A worker that wrote 'crashed' or 'error' itself is not live: its
-- tasks are orphans (requeued) and its pod, no longer explained by a live row, is ended
-- by the next sweep.
SELECT id, pod_id,
       CASE WHEN draining_since IS NOT NULL AND status IN ('spawning', 'active')
            THEN 'terminating' ELSE status END AS status,
       managed, gpu_type, cost_per_hr::float8 AS cost_per_hr,
       created_at, activated_at, last_heartbeat, draining_since, last_task_finished_at,
       (metadata ->> 'drained_at')::timestamptz AS drained_at, pool
FROM public.workers
WHERE status IN ('spawning', 'active', 'terminating') AND terminated_at IS NULL;

-- name: running_tasks
SELECT id, worker_id, attempts, generation_started_at, task_type
FROM public.tasks
WHERE status = 'In Progress';

-- name: arm_doorbell
SELECT gpu_reactor.arm();

-- name: sync_settings
INSERT INTO gpu_reactor.settings AS s
    (id, heartbeat_timeout_sec, task_stuck_timeout_sec, spawning_timeout_sec,
     task_retry_delay_sec, stuck_task_exempt_types, updated_at)
VALUES (true, $1, $2, $3, $4, $5, now())
ON CONFLICT (id) DO UPDATE
SET heartbeat_timeout_sec = excluded.heartbeat_timeout_sec,
    task_stuck_timeout_sec = excluded.task_stuck_timeout_sec,
    spawning_timeout_sec = excluded.spawning_timeout_sec,
    task_retry_delay_sec = excluded.task_retry_delay_sec,
    stuck_task_exempt_types = excluded.stuck_task_exempt_types,
    updated_at = now()
WHERE (s.heartbeat_timeout_sec, s.task_stuck_timeout_sec, s.spawning_timeout_sec,
       s.task_retry_delay_sec, s.stuck_task_exempt_types)
      IS DISTINCT FROM (excluded.heartbeat_timeout_sec, excluded.task_stuck_timeout_sec,
                        excluded.spawning_timeout_sec, excluded.task_retry_delay_sec,
                        excluded.stuck_task_exempt_types);

-- name: insert_spawn_intent
-- $5: the worker's pool (NULL: the default pool, as before pools).
INSERT INTO public.workers
    (id, status, managed, cost_per_hr, gpu_type, metadata, token_hash, pool)
VALUES ($1, 'spawning', true, $2, NULL, jsonb_build_object('spawn_reason', $3::text), $4,
        $5::text);

-- name: record_pod
UPDATE public.workers
SET pod_id = $2, gpu_type = coalesce($3, gpu_type), cost_per_hr = $4
WHERE id = $1;

-- name: attach_pod
UPDATE public.workers SET pod_id = $2 WHERE id = $1 AND pod_id IS NULL;

-- name: mark_drain
UPDATE public.workers
SET status = 'terminating', draining_since = now(), drain_reason = $2
WHERE id = $1 AND status IN ('spawning', 'active') AND draining_since IS NULL;

-- name: retire_worker
UPDATE public.workers
SET status = $2, terminated_at = now(),
    error_reason = CASE WHEN $2 = 'error' THEN $3 ELSE error_reason END,
    drain_reason = coalesce(drain_reason, $3)
WHERE id = $1 AND status IN ('spawning', 'active', 'terminating');

-- name: reset_orphaned_tasks
SELECT task_id, new_status FROM gpu_reactor.func_reset_orphaned_tasks($1::text[]);

-- name: requeue_task
SELECT gpu_reactor.func_requeue_task($1, $2, $3, $4);

-- name: load_spawn_breaker
-- The start-failure breaker a previous leader left for this fleet (0014); no row: none.
SELECT start_failures, last_start_failure_at, paused_until, pause_reason
FROM gpu_reactor.spawn_breaker
WHERE fleet = $1;

-- name: save_spawn_breaker
INSERT INTO gpu_reactor.spawn_breaker
    (fleet, start_failures, last_start_failure_at, paused_until, pause_reason, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (fleet) DO UPDATE
SET start_failures = excluded.start_failures,
    last_start_failure_at = excluded.last_start_failure_at,
    paused_until = excluded.paused_until,
    pause_reason = excluded.pause_reason,
    updated_at = now();

-- name: leader_try_lock
SELECT pg_try_advisory_lock($1);

-- name: leader_unlock
SELECT pg_advisory_unlock($1);

-- Operator surface (reactor/observe.py, reactor/manual.py, reactor/checks.py, reactor/http).
-- Read-mostly; the only writes are `tasks create` and what the Executor already does.

-- name: ops_ping
SELECT 1;

-- name: ops_server_info
SELECT current_setting('server_version') AS server_version, current_database() AS database,
       current_user AS login, inet_server_port() AS port, pg_backend_pid() AS backend_pid;

-- name: ops_backend_pid
SELECT pg_backend_pid();

-- name: ops_leader_holder
SELECT l.pid, a.application_name, a.client_addr::text AS client_addr, a.backend_start
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 1;

-- name: ops_worker
SELECT id, pod_id, status, managed, gpu_type, cost_per_hr::float8 AS cost_per_hr,
       created_at, last_heartbeat, terminated_at, drain_reason, error_reason, pool
FROM public.workers
WHERE id = $1;

-- name: ops_workers_health
SELECT worker_id, pod_id, status, gpu_type, cost_per_hr::float8 AS cost_per_hr, managed,
       created_at, last_heartbeat, heartbeat_age_sec::float8 AS heartbeat_age_sec,
       current_task_id::text AS current_task_id, current_task_type,
       current_task_age_sec::float8 AS current_task_age_sec, health, pool
FROM gpu_reactor.active_workers_health
ORDER BY created_at;

-- name: ops_workers_ended
SELECT id AS worker_id, pod_id, status, gpu_type, cost_per_hr::float8 AS cost_per_hr, managed,
       created_at, last_heartbeat, terminated_at,
       coalesce(error_reason, drain_reason) AS reason, pool
FROM public.workers
WHERE status IN ('terminated', 'error')
ORDER BY terminated_at DESC NULLS LAST
LIMIT $1;

-- name: ops_worker_events
-- What the fleet went through lately, rebuilt from the workers table: spawns, drains and
-- ends with their recorded reasons (a reactor keeps the full list in memory: /status).
SELECT at, kind, outcome, reason, worker_id, pod_id FROM (
    SELECT created_at AS at, 'spawn' AS kind, 'ok' AS outcome,
           coalesce(metadata ->> 'spawn_reason', '') AS reason, id AS worker_id, pod_id
    FROM public.workers WHERE created_at > now() - make_interval(secs => $1)
    UNION ALL
    SELECT draining_since, 'drain', 'ok', coalesce(drain_reason, ''), id, pod_id
    FROM public.workers WHERE draining_since > now() - make_interval(secs => $1)
    UNION ALL
    SELECT terminated_at, 'retire', status, coalesce(error_reason, drain_reason, ''), id, pod_id
    FROM public.workers WHERE terminated_at > now() - make_interval(secs => $1)
) events
ORDER BY at DESC
LIMIT $2;

-- name: ops_orchestrator_status
-- The dashboard's overview, every few seconds. The view's all-time finished counts read
-- every finished task (~200 ms at 1M rows); unreferenced view columns are not computed,
-- and finished tasks are counted over the last hour through gpu_reactor_tasks_updated_idx instead.
SELECT o.queued_tasks, o.in_progress_tasks, f.completed_last_hour, f.failed_last_hour,
       f.cancelled_last_hour, o.oldest_queued_age_sec::float8 AS oldest_queued_age_sec,
       o.spawning_workers, o.active_workers, o.terminating_workers, o.error_workers,
       o.stale_workers, o.stuck_tasks, o.observed_at
FROM gpu_reactor.orchestrator_status o,
     (SELECT count(*) FILTER (WHERE status = 'Complete') AS completed_last_hour,
             count(*) FILTER (WHERE status = 'Failed') AS failed_last_hour,
             count(*) FILTER (WHERE status = 'Cancelled') AS cancelled_last_hour
      FROM public.tasks WHERE updated_at > now() - interval '1 hour') f;

-- name: ops_fleet_cost
SELECT hourly_burn_usd::float8 AS hourly_burn_usd, live_workers,
       spent_today_usd::float8 AS spent_today_usd
FROM gpu_reactor.fleet_cost;

-- name: ops_recent_tasks
SELECT id::text AS id, task_type, status::text AS status, worker_id, attempts, max_attempts,
       created_at, updated_at, processing_sec::float8 AS processing_sec,
       left(error_message, 200) AS error_message
FROM gpu_reactor.recent_task_activity
LIMIT $1;

-- name: ops_create_tasks
INSERT INTO public.tasks (task_type, params, priority)
SELECT $1, $2::jsonb, $3
FROM generate_series(1, $4)
RETURNING id::text AS id;

-- name: ops_list_tasks
SELECT id::text AS id, task_type, status::text AS status, priority, attempts, max_attempts,
       worker_id, created_at, updated_at, generation_started_at, retry_at,
       left(error_message, 200) AS error_message
FROM public.tasks
WHERE $1::text IS NULL OR status = $1::text::task_status
ORDER BY updated_at DESC  -- gpu_reactor_tasks_updated_idx: no sort of a table that only grows
LIMIT $2;

-- name: ops_notify
SELECT pg_notify($1, $2);

-- name: drain_sender
-- Whether the session that sent a NOTIFY drain is a pod's (gpu_worker) login; no row
-- when that session has already ended.
-- Membership is followed through pg_auth_members, not pg_has_role: that one says a
-- superuser is a member of every role.
SELECT EXISTS (
    WITH RECURSIVE member_of(oid) AS (
        SELECT a.usesysid
        UNION
        SELECT m.roleid FROM pg_auth_members m JOIN member_of r ON m.member = r.oid)
    SELECT 1 FROM member_of WHERE oid = 'gpu_worker'::regrole) AS is_worker
FROM pg_stat_activity a
WHERE a.pid = $1;

-- name: close_to_app_roles
-- Run by every `gpu-reactor migrate`, after the migrations. Supabase gives `anon` and
-- `authenticated` - the roles of an app's public anon key and of its signed-in users,
-- which reach the database over PostgREST - privileges by default on what is created in
-- the schemas it manages; should any reach gpu_reactor's objects, anyone with the app's
-- public key could rewrite gpu_reactor.settings or call gpu_reactor.drain. Every grant
-- those roles hold on gpu_reactor's tables, sequences, views and functions is taken back
-- (what PUBLIC may use - the doorbell's one boolean - stays); the app's own objects and
-- default privileges are left as they are. Nothing happens where those roles do not exist.
DO $$
DECLARE
    app_role text;
    target text;
BEGIN
    FOR app_role IN SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        FOR target IN
            SELECT format('%s %s', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                          c.oid::regclass)
            FROM pg_class c
            WHERE c.relnamespace = 'gpu_reactor'::regnamespace
              AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
            UNION ALL
            SELECT format('FUNCTION %s', p.oid::regprocedure)
            FROM pg_proc p
            WHERE p.pronamespace = 'gpu_reactor'::regnamespace
        LOOP
            EXECUTE format('REVOKE ALL ON %s FROM %I', target, app_role);
        END LOOP;
    END LOOP;
END
$$;

-- name: console_totals
-- Web console (reactor/http/console*.py): this and the three console_* queries below,
-- read-only. console_totals runs at most every few seconds and only while a console page
-- is open, however many are open; the others run once per drill-down page view. Task
-- params are never selected.
-- Tasks finished in the last hour (through gpu_reactor_tasks_updated_idx) and today's spend.
SELECT f.complete, f.failed, f.cancelled, c.spent_today_usd::float8 AS spent_today_usd
FROM (SELECT count(*) FILTER (WHERE status = 'Complete') AS complete,
             count(*) FILTER (WHERE status = 'Failed') AS failed,
             count(*) FILTER (WHERE status = 'Cancelled') AS cancelled
      FROM public.tasks WHERE updated_at > now() - interval '1 hour') f,
     gpu_reactor.fleet_cost c;

-- name: console_worker
SELECT id, pod_id, status, managed, gpu_type, cost_per_hr::float8 AS cost_per_hr,
       created_at, activated_at, last_heartbeat, draining_since, drain_reason,
       (metadata ->> 'drained_at')::timestamptz AS drained_at, terminated_at, error_reason,
       metadata ->> 'spawn_reason' AS spawn_reason, last_task_finished_at, pool,
       now() AS db_now
FROM public.workers
WHERE id = $1;

-- name: console_worker_tasks
-- The tasks a worker holds or last held: every one was updated after the worker was
-- created ($2), which bounds the scan through gpu_reactor_tasks_updated_idx.
SELECT id::text AS id, task_type, status::text AS status, attempts, max_attempts,
       created_at, updated_at, generation_started_at, generation_processed_at,
       left(error_message, 300) AS error_message
FROM public.tasks
WHERE worker_id = $1 AND updated_at >= $2
ORDER BY updated_at DESC
LIMIT $3;

-- name: console_task
SELECT id::text AS id, task_type, status::text AS status, priority, attempts, max_attempts,
       worker_id, created_at, updated_at, generation_started_at, generation_processed_at,
       retry_at, left(error_message, 4000) AS error_message, now() AS db_now
FROM public.tasks
WHERE id = $1::uuid;

-- name: ops_shared_tables
-- What `gpu-reactor check` reads of the tables gpu-reactor shares with an app
-- (reactor/ops/checks_shared.py): the workers status CHECK, instance_type, row level
-- security against the reactor's login, the seed's timing trigger and whether
-- gpu-reactor's task-writing functions carry the service-role claim that passes it, and
-- the seed's count function. Every name through to_regclass: absent is NULL, no error.
WITH shared AS (
    SELECT c.oid, c.relname::text AS relname, c.relrowsecurity, c.relforcerowsecurity,
           pg_has_role(current_user, c.relowner, 'USAGE') AS owned
    FROM pg_class c
    WHERE c.oid IN (to_regclass('public.tasks'), to_regclass('public.workers'))
)
SELECT current_user AS login,
       (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
           AS bypasses_rls,
       (SELECT pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = to_regclass('public.workers') AND conname = 'workers_status_check')
           AS status_check,
       coalesce((SELECT attnotnull AND NOT atthasdef FROM pg_attribute
                 WHERE attrelid = to_regclass('public.workers') AND attname = 'instance_type'
                   AND NOT attisdropped), false) AS instance_type_blocks,
       coalesce((SELECT array_agg(relname ORDER BY relname) FROM shared
                 WHERE relrowsecurity AND (relforcerowsecurity OR NOT owned)), '{}')
           AS rls_in_the_way,
       EXISTS (SELECT 1 FROM pg_trigger
               WHERE tgrelid = to_regclass('public.tasks') AND NOT tgisinternal
                 AND tgname LIKE 'prevent_timing_manipulation%') AS timing_trigger,
       coalesce((SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
                 WHERE p.pronamespace = to_regnamespace('gpu_reactor')
                   AND p.proname IN ('func_claim_available_task', 'func_mark_task_complete',
                                     'func_mark_task_failed', 'func_requeue_task',
                                     'func_reset_orphaned_tasks')
                   AND 'request.jwt.claim.role=service_role' = ANY (p.proconfig)), '{}')
           AS writers_with_claim,
       EXISTS (SELECT 1 FROM pg_proc
               WHERE pronamespace = 'public'::regnamespace
                 AND proname = 'count_eligible_tasks_service_role') AS count_function;

-- name: recent_arrivals
-- The break-even rule's arrival rate (SCALE_DOWN_POLICY=break-even): the tasks of the
-- fleet's types ($2, names or globs; NULL: all) inserted in the last $1 seconds, and the oldest of them.
-- Read through the index on updated_at, which is never older than created_at (its
-- default is the insert's now(), and gpu_reactor_touch_updated_at sets it on every
-- update): only rows touched within the window are visited, the most recently touched
-- first and at most $3 of them, so a mass update costs a bounded read (the count is then
-- a lower bound, which keeps fewer idle workers, never more).
SELECT (count(*) FILTER (WHERE created_at > now() - make_interval(secs => $1::float8)))::int
           AS arrivals,
       min(created_at) FILTER (WHERE created_at > now() - make_interval(secs => $1::float8))
           AS arrivals_since
FROM (SELECT created_at
      FROM public.tasks
      WHERE updated_at > now() - make_interval(secs => $1::float8)
        AND ($2::text[] IS NULL
             OR task_type LIKE ANY ((SELECT gpu_reactor.like_patterns($2::text[]))::text[]))
      ORDER BY updated_at DESC
      LIMIT $3) AS touched;
