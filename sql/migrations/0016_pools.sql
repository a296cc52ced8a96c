-- 0016: GPU pools. Each pool's workers claim only its task types, which may be globs.
--
-- A pools file (POOLS_FILE) names each pool's task_types: names or glob patterns ("wan_*",
-- "*"). The reactor gives a pool's pods those patterns (WORKER_TASK_TYPES) and the claim
-- now matches them as globs: * any run of characters, ? exactly one, everything else
-- literal (the _ of travel_orchestrator stays a _), the whole type, case-sensitive. A
-- plain name matches exactly as before. workers.pool says which pool a worker was
-- spawned for (NULL: the default pool, or a worker from before pools); the views that
-- list workers show it in a last column.
--
-- The claim's rule becomes truly inlined: gpu_reactor.claimable() held a subquery (the
-- dependency check), and PostgreSQL inlines no SQL function that does, so it ran once
-- per Queued row the claim looked at. The rule now lives in gpu_reactor.claimable_like()
-- without one (the dependency check is gpu_reactor.dependencies_met(), called only for a
-- task with dependencies), and the claim converts its globs once per call.
-- Every step is idempotent: an interrupted migrate runs this file again.

SELECT gpu_reactor.add_shared_column('public.workers', 'pool', 'text');

-- Said on the column too, unless the app has described a column of that name itself.
DO $$
BEGIN
    IF col_description('public.workers'::regclass,
                       (SELECT attnum FROM pg_attribute
                        WHERE attrelid = 'public.workers'::regclass AND attname = 'pool'
                          AND NOT attisdropped)) IS NULL THEN
        COMMENT ON COLUMN public.workers.pool IS
            'gpu-reactor: the GPU pool the worker was spawned for; NULL: the default pool';
    END IF;
END
$$;

-- Whether every task of p_ids is Complete (none: true). A dependency that is missing,
-- Failed or Cancelled never will be; the reactor reports tasks waiting for one as blocked.
-- Not inlined (it reads tasks), so the rule below calls it only for a task that has
-- dependencies.
CREATE OR REPLACE FUNCTION gpu_reactor.dependencies_met(p_ids uuid[])
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT NOT EXISTS (
        SELECT 1
        FROM unnest(p_ids) AS d(id)
        LEFT JOIN public.tasks dep ON dep.id = d.id
        WHERE dep.status IS DISTINCT FROM 'Complete')
$$;

-- Task type patterns (a GPU pool's task_types, a worker's WORKER_TASK_TYPES) as LIKE
-- patterns: a name, or a glob where * is any run of characters (none included) and ? is
-- exactly one; every other character is literal - the _ of travel_orchestrator, a % or a
-- \ too - and the whole type must match, case-sensitive. reactor/domain/globs.py and
-- worker/globs.py say the same in Python (tests/db/test_globs_sql.py holds them equal).
-- E'' literals: the body means the same whatever standard_conforming_strings says.
CREATE OR REPLACE FUNCTION gpu_reactor.like_patterns(p_globs text[])
RETURNS text[]
LANGUAGE sql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$
    SELECT ARRAY(
        SELECT replace(replace(replace(replace(replace(
                   g, E'\\', E'\\\\'), '%', E'\\%'), '_', E'\\_'), '*', '%'), '?', '_')
        FROM unnest(p_globs) WITH ORDINALITY AS u(g, n)
        ORDER BY n)
$$;

-- The one rule for "a worker could take this task now", which the claim applies and the
-- reactor counts as demand (sql/queries.sql): Queued, due (retry_at), every dependency
-- Complete, of a task type one of the LIKE patterns p_patterns matches (NULL: any type;
-- a task without a type matches none).
-- Inlined into its callers, so the planner sees through it - which is why it holds no
-- subquery (PostgreSQL inlines none that does) and names p_patterns once: a caller passes
-- (SELECT gpu_reactor.like_patterns(...)), which its plan then converts once (an
-- InitPlan), not once per task.
CREATE OR REPLACE FUNCTION gpu_reactor.claimable_like(p_task public.tasks, p_patterns text[])
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT p_task.status = 'Queued'
       AND (p_task.retry_at IS NULL OR p_task.retry_at <= now())
       AND p_task.task_type LIKE ANY (coalesce(p_patterns, '{%}'))
       AND (p_task.dependant_on IS NULL
            OR gpu_reactor.dependencies_met(gpu_reactor.dependencies(p_task.dependant_on)))
$$;

-- The same rule for task type globs (NULL: any type), for an application's own queries
-- and for operators. Where the globs are a constant its plan converts them once; where
-- they are a parameter (as in a function's body), claimable_like with a subquery does.
CREATE OR REPLACE FUNCTION gpu_reactor.claimable(p_task public.tasks, p_task_types text[])
RETURNS boolean
LANGUAGE sql
STABLE
AS $$ SELECT gpu_reactor.claimable_like(p_task, gpu_reactor.like_patterns(p_task_types)) $$;

-- Claim one task for an active worker: highest priority, then oldest, among those
-- gpu_reactor.claimable() admits for its task types (globs; NULL: any), their LIKE
-- patterns made once per claim. One statement with FOR UPDATE SKIP LOCKED, so concurrent
-- claimers never wait on or double-claim a row. A worker that is not 'active'
-- (spawning, draining, error, terminated or unknown) or is draining gets nothing.
-- The worker's row is read FOR SHARE: a drain (status -> terminating, draining_since)
-- committing while the claim runs is waited for and then seen, and a drain arriving
-- during the claim waits for it. Otherwise the reactor could mark the worker draining,
-- see it hold no task and end its pod while a claim that had read 'active' commits a
-- task to it.
CREATE OR REPLACE FUNCTION gpu_reactor.func_claim_available_task(
    p_worker_id text, p_task_types text[] DEFAULT NULL)
RETURNS TABLE (id uuid, task_type text, params jsonb, attempts integer, max_attempts integer)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET request.jwt.claim.role = 'service_role'
AS $$
    WITH claimer AS (
        SELECT w.id
        FROM public.workers w
        WHERE w.id = p_worker_id AND w.status = 'active' AND w.draining_since IS NULL
          AND (w.token_hash IS NULL OR w.token_hash = gpu_reactor.session_token_hash())
        FOR SHARE
    ), candidate AS (
        SELECT t.id
        FROM public.tasks t
        WHERE t.status = 'Queued'
          AND gpu_reactor.claimable_like(t, (SELECT gpu_reactor.like_patterns(p_task_types)))
          AND EXISTS (SELECT 1 FROM claimer)
        ORDER BY t.priority DESC, t.created_at
        LIMIT 1
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE public.tasks t
    SET status = 'In Progress',
        worker_id = p_worker_id,
        generation_started_at = now(),
        generation_processed_at = NULL,
        attempts = t.attempts + 1,
        retry_at = NULL,
        updated_at = now()
    FROM candidate
    WHERE t.id = candidate.id
    RETURNING t.id, t.task_type, t.params, t.attempts, t.max_attempts;
$$;

-- The views that list workers: pool appended (CREATE OR REPLACE VIEW may only append).
CREATE OR REPLACE VIEW gpu_reactor.active_workers_health AS
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
        WHEN t.generation_started_at < now() - make_interval(secs => s.task_stuck_timeout_sec)
             AND NOT t.task_type LIKE ANY (s.stuck_task_exempt_types) THEN 'stuck_task'
        WHEN w.status = 'terminating' OR w.draining_since IS NOT NULL THEN 'draining'
        WHEN t.id IS NOT NULL THEN 'busy'
        ELSE 'idle'
    END AS health,
    w.pool
FROM public.workers w
CROSS JOIN gpu_reactor.settings s
LEFT JOIN LATERAL (
    SELECT id, task_type, generation_started_at
    FROM public.tasks
    WHERE status = 'In Progress' AND worker_id = w.id
    ORDER BY generation_started_at
    LIMIT 1
) t ON true
WHERE w.status IN ('spawning', 'active', 'terminating');

CREATE OR REPLACE VIEW gpu_reactor.worker_performance AS
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
        AS cost_usd,
    w.pool
FROM public.workers w
LEFT JOIN public.tasks t ON t.worker_id = w.id
GROUP BY w.id;

-- PUBLIC may execute a new function until told otherwise: ours are closed, then
-- like_patterns, a pure helper of the claim rule like dependencies(), is opened again.
REVOKE ALL ON FUNCTION gpu_reactor.dependencies_met(uuid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION gpu_reactor.like_patterns(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION gpu_reactor.claimable_like(public.tasks, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gpu_reactor.like_patterns(text[]) TO PUBLIC;
