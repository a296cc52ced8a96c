-- gpu-reactor's schema: the whole current truth, read top to bottom.
--
-- A fresh `gpu-reactor migrate` runs this file (a database that an earlier release
-- migrated runs the numbered files of sql/migrations/ instead, and ends up the same:
-- tests/db/test_migrate.py proves it). Changing anything here means a new migration with
-- the same edit.
--
-- gpu-reactor is a guest in the application's database (as graphile-worker keeps to
-- graphile_worker). Everything it owns lives in the schema gpu_reactor. It shares only
-- two tables with the application, public.tasks and public.workers, created when absent;
-- on those it only adds nullable or defaulted columns, its own indexes (built
-- CONCURRENTLY, outside any transaction, so a live app is never blocked) and its own
-- triggers, all named gpu_reactor_*. It never replaces, drops or alters a function, view,
-- policy, trigger or constraint it did not create, with two named exceptions, each the
-- smallest change that keeps every existing row and every write of the app valid and
-- each recorded in gpu_reactor.shared_changes so `gpu-reactor uninstall` can undo it:
-- widening workers_status_check, and a default for a NOT NULL workers.instance_type.
--
-- Every name is schema-qualified, and every SECURITY DEFINER function pins
-- search_path = pg_catalog, pg_temp (pg_temp last: otherwise a caller's temporary table
-- named like one of ours would be found first).
--
-- A line `-- gpu-reactor: commit` commits and begins a new transaction; what follows the
-- line `-- gpu-reactor: outside a transaction` runs one statement at a time (CREATE
-- INDEX CONCURRENTLY cannot run in a transaction).

-- Before anything is made: what in the app's tables gpu-reactor cannot work with, said in
-- one line, so a migrate that cannot succeed changes nothing.
DO $$
DECLARE
    kind text := (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = to_regclass('public.tasks') AND attname = 'dependant_on'
                    AND NOT attisdropped);
    status_check text := (SELECT pg_get_constraintdef(oid) FROM pg_constraint
                          WHERE conrelid = to_regclass('public.workers')
                            AND conname = 'workers_status_check');
BEGIN
    IF kind NOT IN ('uuid', 'uuid[]') THEN
        RAISE EXCEPTION 'gpu-reactor: public.tasks.dependant_on is %, not uuid[] or uuid: '
                        'gpu-reactor cannot tell what a task waits for', kind;
    END IF;
    IF status_check !~ '^CHECK \(\(status = ANY \(ARRAY\[(''[^'']*''::text(, )?)+\]\)\)\)$' THEN
        RAISE EXCEPTION 'gpu-reactor: workers_status_check is "%", not a list of statuses: '
                        'widen it by hand to admit spawning, active, terminating, error, '
                        'terminated and crashed', status_check;
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS gpu_reactor;
COMMENT ON SCHEMA gpu_reactor IS 'gpu-reactor: the GPU fleet controller''s own objects';

-- What gpu-reactor changed outside its schema, and how to undo it (uninstall reads it
-- newest first). Rows are written only when the change is made, so an object that was
-- already there is never removed by an uninstall.
CREATE TABLE IF NOT EXISTS gpu_reactor.shared_changes (
    id bigserial PRIMARY KEY,
    object text NOT NULL,
    change text NOT NULL,
    undo text NOT NULL,
    made_at timestamptz NOT NULL DEFAULT now()
);

------------------------------------------------------------------------------------------
-- The shared tables
------------------------------------------------------------------------------------------

DO $$
BEGIN
    IF to_regtype('public.task_status') IS NULL THEN
        CREATE TYPE public.task_status AS ENUM
            ('Queued', 'In Progress', 'Complete', 'Failed', 'Cancelled');
        INSERT INTO gpu_reactor.shared_changes (object, change, undo)
        VALUES ('public.task_status', 'created', 'DROP TYPE public.task_status');
    END IF;
    IF to_regclass('public.tasks') IS NULL THEN
        CREATE TABLE public.tasks (id uuid PRIMARY KEY DEFAULT gen_random_uuid());
        INSERT INTO gpu_reactor.shared_changes (object, change, undo)
        VALUES ('public.tasks', 'created', 'DROP TABLE public.tasks');
    END IF;
    IF to_regclass('public.workers') IS NULL THEN
        CREATE TABLE public.workers (id text PRIMARY KEY);
        INSERT INTO gpu_reactor.shared_changes (object, change, undo)
        VALUES ('public.workers', 'created', 'DROP TABLE public.workers');
    END IF;
END
$$;

-- The task statuses gpu-reactor writes and counts. An app's own task_status may lack
-- some (an older seed database has no 'Cancelled'): they are added - which keeps every
-- row and every write of the app valid - and may be used only once this commits.
DO $$
DECLARE
    label text;
BEGIN
    FOREACH label IN ARRAY ARRAY['Queued', 'In Progress', 'Complete', 'Failed', 'Cancelled']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_enum
                       WHERE enumtypid = 'public.task_status'::regtype AND enumlabel = label)
        THEN
            RAISE NOTICE 'gpu-reactor: adding % to public.task_status', quote_literal(label);
            EXECUTE format('ALTER TYPE public.task_status ADD VALUE %L', label);
            INSERT INTO gpu_reactor.shared_changes (object, change, undo)
            VALUES ('public.task_status', 'added value ' || quote_literal(label),
                    '-- PostgreSQL cannot remove an enum value: '
                    || quote_literal(label) || ' stays in public.task_status');
        END IF;
    END LOOP;
END
$$;

-- gpu-reactor: commit

-- The columns gpu-reactor reads and writes. One that the table lacks is added (nullable
-- or with a constant default: no table rewrite) and recorded; one that exists is used as
-- it is, whatever its default. The seed app (banodoco/Reigh) has most of them.
CREATE OR REPLACE FUNCTION gpu_reactor.add_shared_column(
    p_table regclass, p_column text, p_definition text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = p_table AND attname = p_column AND NOT attisdropped) THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', p_table, p_column, p_definition);
    IF EXISTS (SELECT 1 FROM gpu_reactor.shared_changes
               WHERE object = p_table::text AND change = 'created') THEN
        RETURN;  -- dropping the table undoes this too
    END IF;
    INSERT INTO gpu_reactor.shared_changes (object, change, undo)
    VALUES (format('%s.%s', p_table, p_column), 'added ' || p_definition,
            format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', p_table, p_column));
END
$$;
COMMENT ON FUNCTION gpu_reactor.add_shared_column(regclass, text, text) IS
    'gpu-reactor: add a column gpu-reactor needs to a shared table, recording the undo';

SELECT gpu_reactor.add_shared_column('public.tasks', c.name, c.definition)
FROM (VALUES
    ('task_type', 'text NOT NULL DEFAULT ''default'''),
    ('params', 'jsonb NOT NULL DEFAULT ''{}''::jsonb'),
    ('status', 'public.task_status NOT NULL DEFAULT ''Queued'''),
    -- A task waits until every task listed here is Complete (uuid[]; the seed's older
    -- databases have a single uuid, which works the same: gpu_reactor.dependencies()).
    ('dependant_on', 'uuid[]'),
    ('priority', 'integer NOT NULL DEFAULT 0'),
    ('attempts', 'integer NOT NULL DEFAULT 0'),
    ('max_attempts', 'integer NOT NULL DEFAULT 3'),
    ('worker_id', 'text'),
    ('created_at', 'timestamptz NOT NULL DEFAULT now()'),
    ('updated_at', 'timestamptz NOT NULL DEFAULT now()'),
    ('generation_started_at', 'timestamptz'),
    ('generation_processed_at', 'timestamptz'),
    ('result_data', 'jsonb'),
    ('error_message', 'text'),
    -- A task its processor failed waits until then before the next attempt.
    ('retry_at', 'timestamptz'),
    -- Attempts lost with their worker (dead, restarted, stuck), counted by gpu-reactor
    -- itself: a worker whose claim does not count attempts (the seed's) still has its
    -- task fail after max_attempts losses, rather than kill worker after worker forever.
    ('lost_attempts', 'integer NOT NULL DEFAULT 0')
) AS c(name, definition);

-- Status lifecycle of a worker: spawning -> active -> terminating -> terminated, or error.
SELECT gpu_reactor.add_shared_column('public.workers', c.name, c.definition)
FROM (VALUES
    ('pod_id', 'text'),
    ('status', 'text NOT NULL DEFAULT ''spawning'''),
    ('gpu_type', 'text'),
    ('cost_per_hr', 'numeric(10, 4) NOT NULL DEFAULT 0'),
    ('last_heartbeat', 'timestamptz'),
    ('created_at', 'timestamptz NOT NULL DEFAULT now()'),
    ('activated_at', 'timestamptz'),
    ('terminated_at', 'timestamptz'),
    ('error_reason', 'text'),
    ('metadata', 'jsonb NOT NULL DEFAULT ''{}''::jsonb'),
    -- true only for workers gpu-reactor spawned (it inserts them so). A row anyone else
    -- wrote - a worker that registered by heartbeat, a seed orchestrator's worker - is
    -- adopted: counted, never given a pod to end.
    ('managed', 'boolean NOT NULL DEFAULT false'),
    -- The drain mark. It is gpu-reactor's own column, so a worker whose heartbeat
    -- rewrites status (the seed's writes 'active' on every beat) cannot undo a drain.
    ('draining_since', 'timestamptz'),
    ('drain_reason', 'text'),
    -- When the worker last let go of a task: idle time for scale-down counts from here,
    -- so deciding never touches the (ever-growing) finished rows of tasks.
    ('last_task_finished_at', 'timestamptz'),
    -- SHA-256 of the pod's WORKER_TOKEN (see gpu_reactor.session_token_hash()).
    ('token_hash', 'bytea'),
    -- The GPU pool (POOLS_FILE) the reactor spawned the worker for; NULL: the default
    -- pool, or a worker from before pools or one that registered itself.
    ('pool', 'text')
) AS c(name, definition);

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

-- The statuses gpu-reactor writes, and 'crashed', which the seed's worker writes when it
-- exits. An existing workers_status_check that admits fewer is widened to admit these
-- too (never narrowed): everything the app wrote stays valid. NOT VALID then VALIDATE,
-- so the check of existing rows holds no lock that blocks the app's reads and writes.
DO $$
DECLARE
    wanted text[] := ARRAY['spawning', 'active', 'terminating', 'error', 'terminated',
                           'crashed'];
    def text;
    admitted text[];
    missing text[];
BEGIN
    SELECT pg_get_constraintdef(oid) INTO def
    FROM pg_constraint
    WHERE conrelid = 'public.workers'::regclass AND conname = 'workers_status_check';
    IF def IS NULL THEN
        admitted := '{}';
    ELSIF def ~ '^CHECK \(\(status = ANY \(ARRAY\[(''[^'']*''::text(, )?)+\]\)\)\)$' THEN
        admitted := ARRAY(SELECT m[1] FROM regexp_matches(def, '''([^'']*)''', 'g') AS m);
    ELSE
        RAISE EXCEPTION 'gpu-reactor: workers_status_check is "%", not a list of statuses: '
                        'widen it by hand to admit %', def, wanted;
    END IF;
    missing := ARRAY(SELECT w FROM unnest(wanted) AS w WHERE w <> ALL (admitted));
    IF cardinality(missing) = 0 THEN
        RETURN;
    END IF;
    IF def IS NOT NULL THEN
        RAISE NOTICE 'gpu-reactor: widening public.workers.workers_status_check to admit %',
            missing;
        ALTER TABLE public.workers DROP CONSTRAINT workers_status_check;
    END IF;
    EXECUTE format('ALTER TABLE public.workers ADD CONSTRAINT workers_status_check'
                   ' CHECK (status IN (%s)) NOT VALID',
                   (SELECT string_agg(quote_literal(a), ', ') FROM unnest(admitted || missing) a));
    ALTER TABLE public.workers VALIDATE CONSTRAINT workers_status_check;
    INSERT INTO gpu_reactor.shared_changes (object, change, undo)
    VALUES ('public.workers.workers_status_check',
            CASE WHEN def IS NULL THEN 'added' ELSE 'widened from ' || def END,
            'ALTER TABLE public.workers DROP CONSTRAINT IF EXISTS workers_status_check'
            || CASE WHEN def IS NULL THEN ''
                    ELSE ', ADD CONSTRAINT workers_status_check ' || def || ' NOT VALID;'
                         -- Valid again unless rows gpu-reactor wrote are in its way.
                         || ' DO $v$ BEGIN ALTER TABLE public.workers VALIDATE CONSTRAINT'
                         || ' workers_status_check; EXCEPTION WHEN check_violation THEN'
                         || ' RAISE NOTICE ''gpu-reactor: workers_status_check stays NOT VALID:'
                         || ' rows with statuses it does not admit remain''; END $v$' END);
END
$$;

-- gpu-reactor inserts a worker before it knows the pod's machine; the seed's
-- workers.instance_type is NOT NULL without a default, so it gets one.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = 'public.workers'::regclass AND attname = 'instance_type'
                 AND attnotnull AND NOT atthasdef AND NOT attisdropped) THEN
        RAISE NOTICE 'gpu-reactor: giving public.workers.instance_type the default ''gpu-reactor''';
        ALTER TABLE public.workers ALTER COLUMN instance_type SET DEFAULT 'gpu-reactor';
        INSERT INTO gpu_reactor.shared_changes (object, change, undo)
        VALUES ('public.workers.instance_type', 'default ''gpu-reactor''',
                'ALTER TABLE public.workers ALTER COLUMN instance_type DROP DEFAULT');
    END IF;
END
$$;

------------------------------------------------------------------------------------------
-- gpu-reactor's own tables
------------------------------------------------------------------------------------------

-- What migrate applied (reactor/db/migrate.py): a fresh install records every migration
-- this file stands for; the checksum shows an applied file that was edited afterwards.
CREATE TABLE IF NOT EXISTS gpu_reactor.migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Thresholds the operator views use; the reactor writes its settings here at start.
CREATE TABLE IF NOT EXISTS gpu_reactor.settings (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    heartbeat_timeout_sec integer NOT NULL DEFAULT 600,
    task_stuck_timeout_sec integer NOT NULL DEFAULT 3600,
    spawning_timeout_sec integer NOT NULL DEFAULT 900,
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- The first retry of a task its processor failed waits this long, doubling per
    -- attempt (at most an hour); 0 requeues at once.
    task_retry_delay_sec integer NOT NULL DEFAULT 0 CHECK (task_retry_delay_sec >= 0),
    -- STUCK_TASK_EXEMPT_TYPES: task types (LIKE patterns) never stuck, as the seed's
    -- *_orchestrator parents that wait hours for their children.
    stuck_task_exempt_types text[] NOT NULL DEFAULT '{}'
);
INSERT INTO gpu_reactor.settings (id) VALUES (true) ON CONFLICT DO NOTHING;

-- The doorbell (below): one row, one boolean. Anyone may read it - the application's
-- inserting role's trigger reads it (see the doorbell, below) - and it tells nothing.
CREATE TABLE IF NOT EXISTS gpu_reactor.doorbell (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    armed boolean NOT NULL DEFAULT true,
    armed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO gpu_reactor.doorbell (id) VALUES (true) ON CONFLICT DO NOTHING;

-- The start-failure breaker outlives its leader. From the third worker in a row whose
-- pod never sent a first heartbeat (a broken image, a wrong WORKER_DATABASE_URL), the
-- reactor pauses spawning, then sends one probe pod at a time until a worker starts
-- (reactor/domain/spawn_gate.py). The leader writes the count here whenever it changes
-- and a new leader reads it when its term begins. One row per fleet (REACTOR_FLEET); no
-- row is a count of 0. Pauses after the provider's answers (402, 429, no capacity) are
-- not kept: a new leader learns them again from one create, which costs nothing.
CREATE TABLE IF NOT EXISTS gpu_reactor.spawn_breaker (
    fleet text PRIMARY KEY,
    start_failures integer NOT NULL DEFAULT 0 CHECK (start_failures >= 0),
    last_start_failure_at timestamptz,
    paused_until timestamptz,
    pause_reason text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

------------------------------------------------------------------------------------------
-- Who may act as a worker
------------------------------------------------------------------------------------------

-- Every pod logs in with the same gpu_worker credentials, and worker ids are no secret
-- (they are pod names, and every login may LISTEN to gpu_reactor). So that one pod cannot
-- heartbeat, claim, complete or report drained in another's name - and keep a dead worker
-- looking alive - the reactor gives each pod a random WORKER_TOKEN and keeps only its
-- SHA-256 in workers.token_hash; the worker sets it on each of its sessions:
--   SELECT set_config('gpu_reactor.worker_token', '<token>', false);
-- A worker row with a token_hash accepts the worker functions only from a session holding
-- that token. Rows without one (workers registered by their first heartbeat, adopted
-- rows) behave as before; a worker that registers itself with a token set binds its row.

-- The session's token as stored: NULL when the session set none.
CREATE OR REPLACE FUNCTION gpu_reactor.session_token_hash()
RETURNS bytea
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(convert_to(nullif(current_setting('gpu_reactor.worker_token', true), ''),
                             'UTF8'));
$$;

-- Whether this session may act as p_worker_id (no row: nothing to protect; the fenced
-- functions below find no task held by an unknown worker anyway).
CREATE OR REPLACE FUNCTION gpu_reactor.may_act_as(p_worker_id text)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NOT EXISTS (
        SELECT 1 FROM public.workers w
        WHERE w.id = p_worker_id AND w.token_hash IS NOT NULL
          AND w.token_hash IS DISTINCT FROM gpu_reactor.session_token_hash());
$$;

------------------------------------------------------------------------------------------
-- What a worker may claim
------------------------------------------------------------------------------------------

-- A task's dependencies as an array, whichever shape the column has: the seed's current
-- uuid[] or its older single uuid. Overload resolution picks one when a query is planned,
-- and both are inlined, so the rule below costs nothing for the shape.
CREATE OR REPLACE FUNCTION gpu_reactor.dependencies(p_dependant_on uuid[])
RETURNS uuid[]
LANGUAGE sql
IMMUTABLE
AS $$ SELECT coalesce(p_dependant_on, '{}'::uuid[]) $$;

CREATE OR REPLACE FUNCTION gpu_reactor.dependencies(p_dependant_on uuid)
RETURNS uuid[]
LANGUAGE sql
IMMUTABLE
AS $$ SELECT CASE WHEN p_dependant_on IS NULL THEN '{}'::uuid[] ELSE ARRAY[p_dependant_on] END $$;

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

------------------------------------------------------------------------------------------
-- The functions GPU workers call
------------------------------------------------------------------------------------------
-- SECURITY DEFINER, so the least-privilege gpu_worker role can run them without any table
-- privilege. The ones that write a task's timing columns run as Supabase's service role
-- runs a request (request.jwt.claim.role = service_role): an app may refuse other writers
-- of those columns, as the seed's prevent_timing_manipulation trigger does. Elsewhere the
-- setting is unused.

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

-- Fenced completion: changes the task only while it is In Progress and held by this
-- worker (and, when given, still on the same attempt). Returns whether it did.
CREATE OR REPLACE FUNCTION gpu_reactor.func_mark_task_complete(
    p_task_id uuid, p_result_data jsonb, p_worker_id text, p_attempt integer DEFAULT NULL)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET request.jwt.claim.role = 'service_role'
AS $$
    WITH done AS (
        UPDATE public.tasks
        SET status = 'Complete',
            result_data = p_result_data,
            error_message = NULL,
            generation_processed_at = now(),
            updated_at = now()
        WHERE id = p_task_id
          AND status = 'In Progress'
          AND worker_id = p_worker_id
          AND (p_attempt IS NULL OR attempts = p_attempt)
          AND gpu_reactor.may_act_as(p_worker_id)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM done);
$$;

-- Fenced failure: back to Queued while attempts remain, else Failed. A requeued task
-- waits gpu_reactor.settings.task_retry_delay_sec * 2^(attempt - 1) (at most an hour)
-- before it is claimable again, so an out-of-memory GPU or a busy upstream gets time to
-- clear. Returns whether it changed the task.
CREATE OR REPLACE FUNCTION gpu_reactor.func_mark_task_failed(
    p_task_id uuid, p_error_message text, p_worker_id text, p_attempt integer DEFAULT NULL)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET request.jwt.claim.role = 'service_role'
AS $$
    WITH failed AS (
        UPDATE public.tasks
        SET status = CASE WHEN attempts < max_attempts THEN 'Queued'::public.task_status
                          ELSE 'Failed'::public.task_status END,
            worker_id = CASE WHEN attempts < max_attempts THEN NULL ELSE worker_id END,
            retry_at = CASE
                WHEN attempts < max_attempts AND s.task_retry_delay_sec > 0
                THEN now() + make_interval(secs => least(
                         s.task_retry_delay_sec * power(2, least(greatest(attempts, 1) - 1, 12)),
                         3600))
                END,
            error_message = left(p_error_message, 4000),
            generation_processed_at = now(),
            updated_at = now()
        FROM (SELECT coalesce(max(task_retry_delay_sec), 0) AS task_retry_delay_sec
              FROM gpu_reactor.settings) s
        WHERE id = p_task_id
          AND status = 'In Progress'
          AND worker_id = p_worker_id
          AND (p_attempt IS NULL OR attempts = p_attempt)
          AND gpu_reactor.may_act_as(p_worker_id)
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM failed);
$$;

-- Heartbeat: records liveness, merges metadata, promotes spawning -> active on the first
-- beat and returns the worker's status - 'terminating' while it is draining, whatever
-- the status column says - so a worker learns from its own beat that it must drain. An
-- unknown id registers itself as an unmanaged worker (it has no pod of ours; the reactor
-- counts it but never ends a pod for it). Only a status change writes the status column,
-- so a plain beat never notifies. A beat in another's name changes nothing and answers
-- NULL.
CREATE OR REPLACE FUNCTION gpu_reactor.func_update_worker_heartbeat(
    p_worker_id text, p_metadata jsonb DEFAULT '{}'::jsonb)
RETURNS text
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.workers AS w (id, status, managed, last_heartbeat, activated_at,
                                     metadata, token_hash)
    VALUES (p_worker_id, 'active', false, now(), now(), coalesce(p_metadata, '{}'::jsonb),
            gpu_reactor.session_token_hash())
    ON CONFLICT (id) DO UPDATE
    SET last_heartbeat = now(),
        metadata = coalesce(w.metadata, '{}'::jsonb) || coalesce(excluded.metadata, '{}'::jsonb),
        status = CASE WHEN w.status = 'spawning' THEN 'active' ELSE w.status END,
        activated_at = CASE WHEN w.status = 'spawning' THEN now() ELSE w.activated_at END
    WHERE w.token_hash IS NULL OR w.token_hash = excluded.token_hash
    RETURNING CASE WHEN w.draining_since IS NOT NULL AND w.status = 'active'
                   THEN 'terminating' ELSE w.status END;
$$;

-- A draining worker that has finished its last task says so on its way out; the reactor
-- then ends its pod at once instead of waiting for the drain limit.
CREATE OR REPLACE FUNCTION gpu_reactor.func_report_worker_drained(p_worker_id text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.workers
    SET metadata = coalesce(metadata, '{}'::jsonb) || jsonb_build_object('drained_at', now())
    WHERE id = p_worker_id AND status IN ('active', 'terminating', 'spawning')
      AND (token_hash IS NULL OR token_hash = gpu_reactor.session_token_hash());
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('gpu_reactor',
        json_build_object('event', 'worker_drained', 'worker_id', p_worker_id)::text);
    RETURN true;
END
$$;

-- A worker that (re)starts under an id holds nothing yet. If its previous life claimed a
-- task and died (or the claim's answer was lost), that task would otherwise sit In
-- Progress under an id that heartbeats again, until TASK_STUCK_TIMEOUT_SEC. One WORKER_ID
-- is one process, so at start-up the worker hands such tasks back, the lost attempt
-- counted. Returns how many tasks it released.
CREATE OR REPLACE FUNCTION gpu_reactor.func_release_worker_tasks(p_worker_id text)
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET request.jwt.claim.role = 'service_role'
AS $$
    WITH released AS (
        UPDATE public.tasks t
        SET status = CASE WHEN t.attempts < t.max_attempts THEN 'Queued'::public.task_status
                          ELSE 'Failed'::public.task_status END,
            error_message = 'worker ' || t.worker_id || ' restarted during attempt ' || t.attempts
                            || CASE WHEN t.attempts < t.max_attempts THEN ''
                                    ELSE ' of ' || t.max_attempts || '; no attempts left' END,
            worker_id = CASE WHEN t.attempts < t.max_attempts THEN NULL ELSE t.worker_id END,
            generation_processed_at = now(),
            updated_at = now()
        WHERE t.status = 'In Progress' AND t.worker_id = p_worker_id
          AND gpu_reactor.may_act_as(p_worker_id)
        RETURNING 1
    )
    SELECT count(*)::integer FROM released;
$$;

------------------------------------------------------------------------------------------
-- The functions only the reactor calls
------------------------------------------------------------------------------------------

-- The attempt an In Progress task is on: gpu-worker's claim counts attempts; where a
-- worker's claim does not (the seed's), the attempts lost so far, plus this one.
CREATE OR REPLACE FUNCTION gpu_reactor.attempt_of(p_task public.tasks)
RETURNS integer
LANGUAGE sql
IMMUTABLE
AS $$ SELECT greatest(p_task.attempts, p_task.lost_attempts + 1) $$;

-- Requeue the In Progress tasks of lost workers, counting the attempt that was lost, the
-- seed's way: Queued, worker_id and generation_started_at cleared. Past max_attempts a
-- task is Failed with a message that says why. Returns one row per task touched with its
-- new status.
CREATE OR REPLACE FUNCTION gpu_reactor.func_reset_orphaned_tasks(p_worker_ids text[])
RETURNS TABLE (task_id uuid, new_status public.task_status)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET request.jwt.claim.role = 'service_role'
AS $$
    WITH lost AS (
        SELECT t.id, gpu_reactor.attempt_of(t) AS attempt,
               gpu_reactor.attempt_of(t) < t.max_attempts AS again
        FROM public.tasks t
        WHERE t.status = 'In Progress' AND t.worker_id = ANY (p_worker_ids)
        FOR UPDATE
    )
    UPDATE public.tasks t
    SET status = CASE WHEN l.again THEN 'Queued'::public.task_status
                      ELSE 'Failed'::public.task_status END,
        error_message = 'worker ' || t.worker_id || ' was lost during attempt ' || l.attempt
                        || CASE WHEN l.again THEN ''
                                ELSE ' of ' || t.max_attempts || '; no attempts left' END,
        worker_id = CASE WHEN l.again THEN NULL ELSE t.worker_id END,
        generation_started_at = CASE WHEN l.again THEN NULL ELSE t.generation_started_at END,
        lost_attempts = t.lost_attempts + 1,
        generation_processed_at = now(),
        updated_at = now()
    FROM lost l
    WHERE t.id = l.id
    RETURNING t.id, t.status;
$$;

-- Requeue one stuck task, fenced by its holder and attempt, counting the attempt.
-- Returns the task's new status, or NULL when the task had already moved on.
CREATE OR REPLACE FUNCTION gpu_reactor.func_requeue_task(
    p_task_id uuid, p_worker_id text, p_attempt integer, p_reason text)
RETURNS public.task_status
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET request.jwt.claim.role = 'service_role'
AS $$
    WITH stuck AS (
        SELECT t.id, gpu_reactor.attempt_of(t) < t.max_attempts AS again
        FROM public.tasks t
        WHERE t.id = p_task_id AND t.status = 'In Progress'
          AND t.worker_id = p_worker_id AND t.attempts = p_attempt
        FOR UPDATE
    )
    UPDATE public.tasks t
    SET status = CASE WHEN s.again THEN 'Queued'::public.task_status
                      ELSE 'Failed'::public.task_status END,
        error_message = p_reason || CASE WHEN s.again THEN '' ELSE '; no attempts left' END,
        worker_id = CASE WHEN s.again THEN NULL ELSE t.worker_id END,
        generation_started_at = CASE WHEN s.again THEN NULL ELSE t.generation_started_at END,
        lost_attempts = t.lost_attempts + 1,
        generation_processed_at = now(),
        updated_at = now()
    FROM stuck s
    WHERE t.id = s.id
    RETURNING t.status;
$$;

-- Operator drains that a pod cannot forge. PostgreSQL lets every login NOTIFY any
-- channel, so a pod's gpu_worker credentials could send '{"event":"drain",...}' as well
-- as an operator; the reactor honours a NOTIFY drain only from a session it can still
-- see and whose role is not gpu_worker (reactor/engine/drains.py). This function is the
-- path that needs no such check, and works from scripts whose session is gone before the
-- reactor could look:  SELECT gpu_reactor.drain('gpu-reactor-1a2b3c4d');
-- It returns the worker's status afterwards ('terminating'), or NULL for an unknown id.
-- EXECUTE is the schema owner's, who may grant it to an operators' role; never to
-- gpu_worker.
CREATE OR REPLACE FUNCTION gpu_reactor.drain(
    p_worker_id text, p_reason text DEFAULT 'requested by operator (SQL)')
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_status text;
BEGIN
    UPDATE public.workers
    SET status = 'terminating', draining_since = now(),
        drain_reason = left(coalesce(p_reason, 'requested by operator (SQL)'), 500)
    WHERE id = p_worker_id AND status IN ('spawning', 'active') AND draining_since IS NULL
    RETURNING status INTO v_status;
    IF NOT FOUND THEN
        -- Already draining (a worker's own beat may have written 'active' since): the
        -- drain and its limit stand as they were.
        SELECT CASE WHEN draining_since IS NOT NULL AND terminated_at IS NULL
                    THEN 'terminating' ELSE status END
        INTO v_status FROM public.workers WHERE id = p_worker_id;
    END IF;
    RETURN v_status;
END
$$;

------------------------------------------------------------------------------------------
-- The doorbell: waking the reactor without taxing the application's inserts
------------------------------------------------------------------------------------------
-- Why a doorbell and not a plain NOTIFY per insert: every transaction that calls
-- pg_notify takes a cluster-wide lock at commit to append to the notification queue,
-- which serialises committers. Measured on a 2-core machine, a row-level NOTIFY trigger
-- cut 8-client insert throughput from about 11.9k to 3.8k transactions/s. The tasks
-- table lives in the application's own database, so its inserts must not pay that.
--
-- The doorbell is edge-triggered: a listener *arms* it (gpu_reactor.arm()) right before
-- it reads the state it is about to act on, then waits. The first task-queuing statement
-- after that disarms it and sends one notification; every other insert only reads one
-- boolean and sends nothing.
--
-- What an insert pays when nobody waits, which is almost every insert: one call of a
-- SECURITY INVOKER plpgsql trigger function and its read of the one-row bell - no
-- SECURITY DEFINER search_path switch, no second call. Measured with callgrind
-- (bench/trigger_cost, instructions added to one single-row INSERT transaction of 216k):
-- this 24.5k; the same function SECURITY DEFINER with SET search_path (0010-0014) 34.2k;
-- a WHEN (bell_armed()) condition calling a plpgsql function instead, 32.9k (the
-- condition is compiled for every statement); an empty plpgsql trigger 10.3k. That is why
-- the bell is readable by anyone and gpu_reactor.ring() callable by anyone: the
-- inserting role reads and rings it itself. Neither gives a role anything it lacked:
-- every login may NOTIFY gpu_reactor anyway, and the bell holds one boolean.
--
-- Ringing never waits and never fails the application's statement: the ringer takes the
-- doorbell row with SKIP LOCKED, so while one transaction is ringing (and may stay open
-- for as long as the application likes) the others skip it, its notification covering
-- them; under REPEATABLE READ / SERIALIZABLE a doorbell changed since the snapshot raises
-- a serialization failure, which is caught here, inside the bell.
--
-- What a wake-up can miss, and why that is acceptable: the bell is checked when the
-- INSERT statement runs, not at commit. A transaction whose insert ran before the arm but
-- which commits after the listener has read the state is not rung for; neither is one
-- whose ringing transaction was rolled back while another skipped the bell. The next
-- insert, the listener's deadlines and the sweep pick such rows up: NOTIFY is only a
-- hint, never the truth.
--
-- Low-volume events (a task leaving In Progress, a worker's status change, a drained
-- worker) notify directly with a small JSON payload.

CREATE OR REPLACE FUNCTION gpu_reactor.arm()
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE gpu_reactor.doorbell SET armed = true, armed_at = now() WHERE NOT armed;
$$;

CREATE OR REPLACE FUNCTION gpu_reactor.ring(p_event text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    BEGIN
        -- SKIP LOCKED: never wait for another ringer, which may be an application's
        -- long transaction; its notification covers this statement too.
        PERFORM 1 FROM gpu_reactor.doorbell WHERE armed FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE gpu_reactor.doorbell SET armed = false;
            PERFORM pg_notify('gpu_reactor', json_build_object('event', p_event)::text);
        END IF;
    EXCEPTION WHEN serialization_failure OR lock_not_available THEN
        -- The bell changed since this transaction's snapshot (REPEATABLE READ or
        -- SERIALIZABLE): someone else rang or re-armed it. The application's own
        -- transaction must never fail because of the doorbell.
        NULL;
    END;
END
$$;

-- SECURITY INVOKER, every name qualified: it runs as the inserting role, which reads the
-- bell and, only when it is armed, calls gpu_reactor.ring (SECURITY DEFINER) to take it.
CREATE OR REPLACE FUNCTION gpu_reactor.on_tasks_queued()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM gpu_reactor.ring('task_queued') FROM gpu_reactor.doorbell WHERE armed;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gpu_reactor.on_task_finished()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('gpu_reactor', json_build_object(
        'event', 'task_finished', 'status', NEW.status, 'worker_id', OLD.worker_id)::text);
    RETURN NULL;
END
$$;

-- The worker's idle time counts from when it last let go of a task.
CREATE OR REPLACE FUNCTION gpu_reactor.on_task_released()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.workers SET last_task_finished_at = now() WHERE id = OLD.worker_id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gpu_reactor.on_worker_status()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('gpu_reactor', json_build_object(
        'event', 'worker_status', 'worker_id', NEW.id, 'status', NEW.status)::text);
    RETURN NULL;
END
$$;

-- Keep updated_at honest for writers that do not set it.
CREATE OR REPLACE FUNCTION gpu_reactor.touch_updated_at()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Triggers on the shared tables: all named gpu_reactor_*, all calling functions of this
-- schema. CREATE OR REPLACE TRIGGER only ever replaces a trigger of that name on that
-- table, and no application names its triggers gpu_reactor_*.

-- Statement level: a bulk insert of any size costs one check of the bell.
CREATE OR REPLACE TRIGGER gpu_reactor_tasks_inserted
    AFTER INSERT ON public.tasks
    FOR EACH STATEMENT
    EXECUTE FUNCTION gpu_reactor.on_tasks_queued();

-- An application (or a requeue) putting a task back to Queued.
CREATE OR REPLACE TRIGGER gpu_reactor_task_requeued
    AFTER UPDATE OF status ON public.tasks
    FOR EACH ROW
    WHEN (NEW.status = 'Queued' AND OLD.status IS DISTINCT FROM 'Queued')
    EXECUTE FUNCTION gpu_reactor.on_tasks_queued();

CREATE OR REPLACE TRIGGER gpu_reactor_task_finished
    AFTER UPDATE OF status ON public.tasks
    FOR EACH ROW
    WHEN (OLD.status = 'In Progress' AND NEW.status IS DISTINCT FROM 'In Progress')
    EXECUTE FUNCTION gpu_reactor.on_task_finished();

CREATE OR REPLACE TRIGGER gpu_reactor_task_released
    AFTER UPDATE OF status ON public.tasks
    FOR EACH ROW
    WHEN (OLD.status = 'In Progress' AND NEW.status IS DISTINCT FROM 'In Progress'
          AND OLD.worker_id IS NOT NULL)
    EXECUTE FUNCTION gpu_reactor.on_task_released();

CREATE OR REPLACE TRIGGER gpu_reactor_touch_updated_at
    BEFORE UPDATE ON public.tasks
    FOR EACH ROW EXECUTE FUNCTION gpu_reactor.touch_updated_at();

CREATE OR REPLACE TRIGGER gpu_reactor_worker_inserted
    AFTER INSERT ON public.workers
    FOR EACH ROW EXECUTE FUNCTION gpu_reactor.on_worker_status();

-- A heartbeat writes last_heartbeat and metadata only; it never fires this. A drain
-- writes draining_since with the status, so it does.
CREATE OR REPLACE TRIGGER gpu_reactor_worker_status
    AFTER UPDATE OF status, draining_since ON public.workers
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.draining_since IS DISTINCT FROM NEW.draining_since)
    EXECUTE FUNCTION gpu_reactor.on_worker_status();

------------------------------------------------------------------------------------------
-- Views for operators (psql, Grafana's Postgres source, the dashboard)
------------------------------------------------------------------------------------------
-- The seed's names, in gpu-reactor's schema: the app's own views in public are not
-- touched. Thresholds come from gpu_reactor.settings, which the reactor keeps in step
-- with its own settings, so the views and the reactor agree on "stale" and "stuck".

CREATE OR REPLACE VIEW gpu_reactor.orchestrator_status AS
SELECT
    (SELECT count(*) FROM public.tasks WHERE status = 'Queued')        AS queued_tasks,
    (SELECT count(*) FROM public.tasks WHERE status = 'In Progress')   AS in_progress_tasks,
    (SELECT count(*) FROM public.tasks WHERE status = 'Complete')      AS completed_tasks,
    (SELECT count(*) FROM public.tasks WHERE status = 'Failed')        AS failed_tasks,
    (SELECT count(*) FROM public.tasks WHERE status = 'Cancelled')     AS cancelled_tasks,
    (SELECT extract(epoch FROM now() - min(created_at))
       FROM public.tasks WHERE status = 'Queued')                      AS oldest_queued_age_sec,
    (SELECT count(*) FROM public.workers WHERE status = 'spawning')    AS spawning_workers,
    (SELECT count(*) FROM public.workers WHERE status = 'active')      AS active_workers,
    (SELECT count(*) FROM public.workers WHERE status = 'terminating') AS terminating_workers,
    (SELECT count(*) FROM public.workers WHERE status = 'error')       AS error_workers,
    -- Like the reactor: a worker that never beat is judged by when it became active or,
    -- failing that, was created (active_workers_health says the same).
    (SELECT count(*) FROM public.workers w, gpu_reactor.settings s
       WHERE w.status IN ('active', 'terminating')
         AND coalesce(w.last_heartbeat, w.activated_at, w.created_at)
             < now() - make_interval(secs => s.heartbeat_timeout_sec))
                                                                       AS stale_workers,
    (SELECT count(*) FROM public.tasks t, gpu_reactor.settings s
       WHERE t.status = 'In Progress'
         AND t.generation_started_at < now() - make_interval(secs => s.task_stuck_timeout_sec)
         AND NOT t.task_type LIKE ANY (s.stuck_task_exempt_types))
                                                                       AS stuck_tasks,
    now()                                                              AS observed_at;

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

CREATE OR REPLACE VIEW gpu_reactor.recent_task_activity AS
SELECT id, task_type, status, worker_id, attempts, max_attempts, created_at, updated_at,
       generation_started_at, generation_processed_at,
       extract(epoch FROM generation_processed_at - generation_started_at) AS processing_sec,
       error_message
FROM public.tasks
WHERE updated_at > now() - interval '1 hour'
ORDER BY updated_at DESC
LIMIT 200;

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

-- Hourly burn of the live fleet and what it has spent since midnight (UTC).
CREATE OR REPLACE VIEW gpu_reactor.fleet_cost AS
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
FROM public.workers;

COMMENT ON VIEW gpu_reactor.orchestrator_status IS
    'gpu-reactor: task counts by status, fleet counts, stale workers, stuck tasks';
COMMENT ON VIEW gpu_reactor.active_workers_health IS
    'gpu-reactor: one row per live worker with its current task and health';
COMMENT ON VIEW gpu_reactor.recent_task_activity IS
    'gpu-reactor: tasks changed in the last hour (at most 200)';
COMMENT ON VIEW gpu_reactor.worker_performance IS
    'gpu-reactor: tasks completed and failed, processing time and cost per worker';
COMMENT ON VIEW gpu_reactor.fleet_cost IS
    'gpu-reactor: hourly burn of the live fleet and spend since midnight UTC';

------------------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------------------
-- The credentials baked into a GPU pod belong to a role that can call the worker
-- functions and nothing else: no table, no view, no reactor function. Create a login for
-- pods with:  CREATE ROLE pod_login LOGIN PASSWORD '...' IN ROLE gpu_worker;
-- The role is cluster-wide, so it is created only when missing (and uninstall leaves it).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gpu_worker') THEN
        CREATE ROLE gpu_worker NOLOGIN;
    END IF;
END
$$;

-- PostgreSQL lets PUBLIC execute every new function; take that back from all of ours,
-- then give out exactly what each caller needs.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA gpu_reactor FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA gpu_reactor FROM PUBLIC;

-- Anyone who inserts or requeues tasks reads the bell and, when it is armed, rings it.
GRANT USAGE ON SCHEMA gpu_reactor TO PUBLIC;
GRANT SELECT ON gpu_reactor.doorbell TO PUBLIC;
GRANT EXECUTE ON FUNCTION gpu_reactor.on_tasks_queued() TO PUBLIC;
GRANT EXECUTE ON FUNCTION gpu_reactor.ring(text) TO PUBLIC;
-- Pure helpers of the claim rule, for the app's own queries.
GRANT EXECUTE ON FUNCTION gpu_reactor.dependencies(uuid[]) TO PUBLIC;
GRANT EXECUTE ON FUNCTION gpu_reactor.dependencies(uuid) TO PUBLIC;
GRANT EXECUTE ON FUNCTION gpu_reactor.like_patterns(text[]) TO PUBLIC;

GRANT EXECUTE ON FUNCTION gpu_reactor.func_claim_available_task(text, text[]) TO gpu_worker;
GRANT EXECUTE ON FUNCTION gpu_reactor.func_mark_task_complete(uuid, jsonb, text, integer)
    TO gpu_worker;
GRANT EXECUTE ON FUNCTION gpu_reactor.func_mark_task_failed(uuid, text, text, integer)
    TO gpu_worker;
GRANT EXECUTE ON FUNCTION gpu_reactor.func_update_worker_heartbeat(text, jsonb) TO gpu_worker;
GRANT EXECUTE ON FUNCTION gpu_reactor.func_report_worker_drained(text) TO gpu_worker;
GRANT EXECUTE ON FUNCTION gpu_reactor.func_release_worker_tasks(text) TO gpu_worker;
GRANT EXECUTE ON FUNCTION gpu_reactor.arm() TO gpu_worker;

COMMENT ON FUNCTION gpu_reactor.func_claim_available_task(text, text[]) IS
    'gpu-reactor: claim one claimable task (highest priority, then oldest) for an active worker';
COMMENT ON FUNCTION gpu_reactor.func_mark_task_complete(uuid, jsonb, text, integer) IS
    'gpu-reactor: fenced completion; true when the task changed';
COMMENT ON FUNCTION gpu_reactor.func_mark_task_failed(uuid, text, text, integer) IS
    'gpu-reactor: fenced failure, back to Queued while attempts remain; true when the task changed';
COMMENT ON FUNCTION gpu_reactor.func_update_worker_heartbeat(text, jsonb) IS
    'gpu-reactor: liveness, metadata merge, spawning -> active; returns the worker status';
COMMENT ON FUNCTION gpu_reactor.func_report_worker_drained(text) IS
    'gpu-reactor: a draining worker has finished its last task';
COMMENT ON FUNCTION gpu_reactor.func_release_worker_tasks(text) IS
    'gpu-reactor: a starting worker hands back tasks its previous life held';
COMMENT ON FUNCTION gpu_reactor.func_reset_orphaned_tasks(text[]) IS
    'gpu-reactor: requeue (or fail) the In Progress tasks of lost workers (reactor only)';
COMMENT ON FUNCTION gpu_reactor.func_requeue_task(uuid, text, integer, text) IS
    'gpu-reactor: requeue one stuck task, fenced by holder and attempt (reactor only)';
COMMENT ON FUNCTION gpu_reactor.drain(text, text) IS
    'gpu-reactor: drain a worker from SQL (operators only)';

-- gpu-reactor: outside a transaction

-- Partial indexes, built CONCURRENTLY: the tasks table may be the app's, large and busy.
-- Every hot-path query (claim, queue counts, the reactor's snapshot, requeues) touches only
-- Queued / In Progress rows, so these hold only those rows however many finished tasks the
-- table keeps. (migrate drops and rebuilds one that an interrupted build left invalid.)

-- Claim order: highest priority, then oldest.
CREATE INDEX CONCURRENTLY IF NOT EXISTS gpu_reactor_tasks_claim_idx
    ON public.tasks (priority DESC, created_at)
    WHERE status = 'Queued';

-- Who holds what, and for how long.
CREATE INDEX CONCURRENTLY IF NOT EXISTS gpu_reactor_tasks_held_idx
    ON public.tasks (worker_id, generation_started_at)
    WHERE status = 'In Progress';

-- Recent activity for operators (bounded by time in the views and queries).
CREATE INDEX CONCURRENTLY IF NOT EXISTS gpu_reactor_tasks_updated_idx
    ON public.tasks (updated_at);

-- The reactor's count of tasks waiting out a retry delay, and its next wake-up.
CREATE INDEX CONCURRENTLY IF NOT EXISTS gpu_reactor_tasks_retry_idx
    ON public.tasks (retry_at)
    WHERE status = 'Queued' AND retry_at IS NOT NULL;

-- Queued tasks that wait for others: the reactor counts the blocked ones (queue_counts)
-- without reading the rest of the queue.
CREATE INDEX CONCURRENTLY IF NOT EXISTS gpu_reactor_tasks_dependent_idx
    ON public.tasks (created_at)
    WHERE status = 'Queued' AND dependant_on IS NOT NULL;

-- Live workers are few; finished ones accumulate forever.
CREATE INDEX CONCURRENTLY IF NOT EXISTS gpu_reactor_workers_live_idx
    ON public.workers (status)
    WHERE status IN ('spawning', 'active', 'terminating');
