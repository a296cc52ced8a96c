-- 0008: what the reactor needs to decide without scanning finished tasks.

-- When a worker was told to drain (the drain limit counts from here) and why it ended.
ALTER TABLE workers ADD COLUMN IF NOT EXISTS draining_since timestamptz;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS drain_reason text;
-- When the worker last let go of a task: idle time for scale-down counts from here,
-- so deciding never touches the (ever-growing) finished rows of tasks.
ALTER TABLE workers ADD COLUMN IF NOT EXISTS last_task_finished_at timestamptz;

CREATE OR REPLACE FUNCTION gpu_reactor_on_task_released()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
BEGIN
    UPDATE workers SET last_task_finished_at = now() WHERE id = OLD.worker_id;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS gpu_reactor_task_released ON tasks;
CREATE TRIGGER gpu_reactor_task_released
    AFTER UPDATE OF status ON tasks
    FOR EACH ROW
    WHEN (OLD.status = 'In Progress' AND NEW.status IS DISTINCT FROM 'In Progress'
          AND OLD.worker_id IS NOT NULL)
    EXECUTE FUNCTION gpu_reactor_on_task_released();
