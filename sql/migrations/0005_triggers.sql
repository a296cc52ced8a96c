-- 0005: triggers that wake the reactor (and idle workers) on the gpu_reactor channel.
--
-- Why a doorbell and not a plain NOTIFY per insert: every transaction that calls
-- pg_notify takes a cluster-wide lock at commit to append to the notification queue,
-- which serialises committers. Measured on a 2-core machine, a row-level NOTIFY trigger
-- cut 8-client insert throughput from about 11.9k to 3.8k transactions/s. The tasks
-- table usually lives in the application's own database, so its inserts must not pay
-- that on every commit.
--
-- The doorbell is edge-triggered: a listener *arms* it (gpu_reactor_arm()) right before
-- it reads the state it is about to act on, then waits. The first task-queuing
-- statement after that disarms it and sends one notification; every other insert only
-- reads one boolean and sends nothing.
--
-- Ringing never waits and never fails the application's statement: the ringer takes the
-- doorbell row with SKIP LOCKED, so while one transaction is ringing (and may stay open
-- for as long as the application likes) the others skip it, its notification covering
-- them; under REPEATABLE READ / SERIALIZABLE a doorbell changed since the snapshot raises
-- a serialization failure, which is caught here, inside the bell.
--
-- What a wake-up can miss, and why that is acceptable: the bell is checked when the
-- INSERT statement runs, not at commit. A transaction whose insert ran before the arm
-- but which commits after the listener has read the state is not rung for; neither is
-- one whose ringing transaction was rolled back while another skipped the bell. The
-- next insert, the listener's deadlines and the sweep pick such rows up: NOTIFY is only
-- a hint, never the truth.
--
-- Low-volume events (a task leaving In Progress, a worker's status change, a drained
-- worker) notify directly with a small JSON payload.

CREATE OR REPLACE FUNCTION gpu_reactor_arm()
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    UPDATE gpu_reactor_doorbell SET armed = true, armed_at = now() WHERE NOT armed;
$$;

CREATE OR REPLACE FUNCTION gpu_reactor_ring(p_event text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    -- The common case when nobody waits: one plain read, no lock, no notification.
    IF NOT coalesce((SELECT armed FROM gpu_reactor_doorbell), false) THEN
        RETURN;
    END IF;
    BEGIN
        -- SKIP LOCKED: never wait for another ringer, which may be an application's
        -- long transaction; its notification covers this statement too.
        PERFORM 1 FROM gpu_reactor_doorbell WHERE armed FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE gpu_reactor_doorbell SET armed = false;
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

CREATE OR REPLACE FUNCTION gpu_reactor_on_tasks_inserted()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- the inserting role needs no privilege on the doorbell
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM gpu_reactor_ring('task_queued');
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gpu_reactor_on_task_requeued()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- the inserting role needs no privilege on the doorbell
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM gpu_reactor_ring('task_queued');
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gpu_reactor_on_task_finished()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- the inserting role needs no privilege on the doorbell
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM pg_notify('gpu_reactor', json_build_object(
        'event', 'task_finished', 'status', NEW.status, 'worker_id', OLD.worker_id)::text);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gpu_reactor_on_worker_status()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- the inserting role needs no privilege on the doorbell
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM pg_notify('gpu_reactor', json_build_object(
        'event', 'worker_status', 'worker_id', NEW.id, 'status', NEW.status)::text);
    RETURN NULL;
END
$$;

-- Statement level: a bulk insert of any size costs one doorbell check.
DROP TRIGGER IF EXISTS gpu_reactor_tasks_inserted ON tasks;
CREATE TRIGGER gpu_reactor_tasks_inserted
    AFTER INSERT ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION gpu_reactor_on_tasks_inserted();

-- An application (or a requeue) putting a task back to Queued.
DROP TRIGGER IF EXISTS gpu_reactor_task_requeued ON tasks;
CREATE TRIGGER gpu_reactor_task_requeued
    AFTER UPDATE OF status ON tasks
    FOR EACH ROW
    WHEN (NEW.status = 'Queued' AND OLD.status IS DISTINCT FROM 'Queued')
    EXECUTE FUNCTION gpu_reactor_on_task_requeued();

DROP TRIGGER IF EXISTS gpu_reactor_task_finished ON tasks;
CREATE TRIGGER gpu_reactor_task_finished
    AFTER UPDATE OF status ON tasks
    FOR EACH ROW
    WHEN (OLD.status = 'In Progress' AND NEW.status IS DISTINCT FROM 'In Progress')
    EXECUTE FUNCTION gpu_reactor_on_task_finished();

DROP TRIGGER IF EXISTS gpu_reactor_worker_inserted ON workers;
CREATE TRIGGER gpu_reactor_worker_inserted
    AFTER INSERT ON workers
    FOR EACH ROW EXECUTE FUNCTION gpu_reactor_on_worker_status();

-- A heartbeat writes last_heartbeat and metadata only; it never fires this.
DROP TRIGGER IF EXISTS gpu_reactor_worker_status ON workers;
CREATE TRIGGER gpu_reactor_worker_status
    AFTER UPDATE OF status ON workers
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION gpu_reactor_on_worker_status();
