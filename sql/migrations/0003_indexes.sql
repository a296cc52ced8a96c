-- 0003: partial indexes. Every hot-path query (claim, queue counts, the reactor's
-- snapshot, requeues) touches only Queued / In Progress rows, so their indexes hold
-- only those rows however many finished tasks the table keeps.

-- Claim order: highest priority, then oldest.
CREATE INDEX IF NOT EXISTS tasks_queued_claim_idx
    ON tasks (priority DESC, created_at)
    WHERE status = 'Queued';

-- Who holds what, and for how long.
CREATE INDEX IF NOT EXISTS tasks_in_progress_worker_idx
    ON tasks (worker_id, generation_started_at)
    WHERE status = 'In Progress';

-- Recent activity for operators (bounded by time in the view).
CREATE INDEX IF NOT EXISTS tasks_updated_at_idx ON tasks (updated_at);
