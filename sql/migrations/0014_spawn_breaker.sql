-- 0014: the start-failure breaker outlives its leader.
-- From the third worker in a row whose pod never sent a first heartbeat (a broken image,
-- a wrong WORKER_DATABASE_URL), the reactor pauses spawning, then sends one probe pod at a
-- time until a worker starts (reactor/domain/spawn_gate.py). The count lived in the
-- leader's memory, so a new leader paid for three more pods that could not start before
-- it paused. The leader now writes it here whenever it changes and a new leader reads it
-- when its term begins. One row per fleet (REACTOR_FLEET); no row is a count of 0.
-- The pause it set is kept too: a new leader honours it instead of sending a pod at once.
-- Pauses after the provider's answers (402, 429, no capacity) are not kept: a new leader
-- learns them again from one create, which costs nothing.

CREATE TABLE IF NOT EXISTS gpu_reactor_spawn_breaker (
    fleet text PRIMARY KEY,
    start_failures integer NOT NULL DEFAULT 0 CHECK (start_failures >= 0),
    last_start_failure_at timestamptz,
    paused_until timestamptz,
    pause_reason text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The reactor's own bookkeeping: nothing for a pod's login.
REVOKE ALL ON gpu_reactor_spawn_breaker FROM gpu_worker;
