-- 0010: a cheaper doorbell check on the application's insert path.
--
-- The protocol of 0005_triggers.sql is unchanged: the bell is edge-triggered, armed by
-- gpu_reactor_arm(), rung at most once per arming by gpu_reactor_ring() with SKIP LOCKED,
-- and the same events reach the same channel. Only the trigger functions that ring it
-- change, and only in what they cost when nobody waits, which is almost every insert.
--
-- Before, every INSERT statement called gpu_reactor_ring() from the trigger function,
-- and both functions carry SECURITY DEFINER with SET search_path: two function calls,
-- two search_path switches (each saved, set and restored, and on PostgreSQL 16 each
-- one recomputes the namespace path) and one read of the bell, just to learn that it
-- is not armed. Now the trigger function reads the bell itself, in the same statement
-- that rings it when armed: the nested call, its search_path switch and its second
-- read happen only on an armed bell. The trigger function stays SECURITY DEFINER with
-- its search_path pinned, so the inserting role still needs no privilege on the bell.
--
-- Measured (instructions per single-row INSERT transaction, callgrind, PostgreSQL 16.2;
-- no trigger = 197k): the 0005 check added 63k, this one adds 36k. Of those, 11k are
-- any statement-level plpgsql trigger (an empty one costs that), 14k the read of the
-- bell (any SPI query from plpgsql), and 9k the search_path switch of SECURITY DEFINER
-- ... SET search_path. Dropping the SET clause (every name schema-qualified instead)
-- would save those 9k, but every SECURITY DEFINER function keeps its search_path
-- pinned (tests/db/test_roles.py); see bench/README-section.md for what that is worth.

CREATE OR REPLACE FUNCTION gpu_reactor_on_tasks_inserted()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- the inserting role needs no privilege on the doorbell
SET search_path FROM CURRENT
AS $$
BEGIN
    -- One read of the one-row bell; gpu_reactor_ring (which takes the row with SKIP
    -- LOCKED, disarms and notifies) is called only when it is armed.
    PERFORM gpu_reactor_ring('task_queued') FROM gpu_reactor_doorbell WHERE armed;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gpu_reactor_on_task_requeued()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- the updating role needs no privilege on the doorbell
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM gpu_reactor_ring('task_queued') FROM gpu_reactor_doorbell WHERE armed;
    RETURN NULL;
END
$$;
