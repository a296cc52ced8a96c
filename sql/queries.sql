-- Queries the reactor runs, by name. Loaded by reactor/db/queries.py.

-- name: queue_counts
SELECT
    (SELECT count(*) FROM tasks WHERE status = 'Queued') AS queued,
    (SELECT count(*) FROM tasks WHERE status = 'In Progress') AS in_progress,
    (SELECT min(created_at) FROM tasks WHERE status = 'Queued') AS oldest_queued_at,
    now() AS db_now;
