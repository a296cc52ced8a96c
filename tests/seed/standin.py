"""A stand-in for a Headless-Wan2GP worker that uses only the seed system's own calls.

The real worker (peteromallet/Headless-Wan2GP) talks to Supabase over HTTP; every call
ends as SQL run by PostgREST under the service-role key's claims. The stand-in runs that
SQL itself, inside ``as_service_role`` (SET LOCAL ROLE service_role and the JWT claims),
so the seed's RLS and its timing trigger see what they see in production:

- claim: the ``claim-next-task`` edge function, which calls
  ``claim_next_task_service_role`` with all four arguments by name (the worker sends
  ``run_type: "gpu"``; same_model_only is false);
- heartbeat: ``heartbeat_guardian.py``, which calls ``func_worker_heartbeat_with_logs``
  every 20 s with ``status_param => 'active'`` and, once the worker process is gone,
  ``status_param => 'crashed'``. Like the guardian it never raises on a failed beat:
  the error is kept in ``beat_errors``;
- complete: the UPDATE of the ``complete_task`` edge function (status Complete,
  output_location, generation_processed_at, only while In Progress), then its check
  that marks a travel orchestrator Complete once all its segments are;
- fail: the ``update-task-status`` edge function with status Failed (the worker puts the
  error text in output_location), then its cascade to the orchestrator and siblings.

Left out: the worker's recovery of its own In Progress task and its task-counts gate
before claiming, the upload of outputs, generations, billing and system logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tests.seed.fixture import as_service_role

HEARTBEAT_INTERVAL_SEC = 20.0  # heartbeat_guardian.py
RUN_TYPE = "gpu"  # source/db_operations.py, get_oldest_queued_task_supabase

CLAIM = """
SELECT task_id, params, task_type, project_id
FROM claim_next_task_service_role(p_worker_id => $1, p_include_active => false,
                                  p_run_type => $2, p_same_model_only => false)
"""

BEAT = """
SELECT func_worker_heartbeat_with_logs(
    worker_id_param => $1, vram_total_mb_param => $2, vram_used_mb_param => $3,
    logs_param => $4::jsonb, status_param => $5)
"""

# complete_task/index.ts, step 12.
COMPLETE = """
UPDATE tasks
SET status = 'Complete', output_location = $2, generation_processed_at = now()
WHERE id = $1 AND status = 'In Progress'
RETURNING task_type, params
"""

# complete_task/orchestrator.ts, checkOrchestratorCompletion for travel_segment: once
# every expected segment of the run is Complete, the orchestrator is Complete, timed
# from its earliest segment's start (an independent-segments travel run has no
# output_location of its own).
COMPLETE_ORCHESTRATOR = """
WITH orchestrator AS (
    SELECT id, coalesce((params -> 'orchestrator_details' ->> 'num_new_segments_to_generate')::int,
                        (params ->> 'num_new_segments_to_generate')::int) AS expected
    FROM tasks WHERE id = $1::uuid AND status IN ('Queued', 'In Progress')
), segments AS (
    SELECT count(*) AS found,
           count(*) FILTER (WHERE status = 'Complete') AS complete,
           min(generation_started_at) AS earliest_start
    FROM tasks
    WHERE task_type = 'travel_segment' AND params ->> 'orchestrator_task_id_ref' = $1::uuid::text
)
UPDATE tasks t
SET status = 'Complete',
    generation_started_at = coalesce(s.earliest_start, now()),
    generation_processed_at = now()
FROM orchestrator o, segments s
WHERE t.id = o.id AND s.complete = s.found AND (o.expected IS NULL OR s.found = o.expected)
RETURNING t.id
"""

# update-task-status/index.ts: refuse to overwrite Complete or Cancelled, then update.
FAIL = """
UPDATE tasks
SET status = 'Failed', updated_at = now(), output_location = $2
WHERE id = $1 AND status NOT IN ('Complete', 'Cancelled')
RETURNING params
"""

# update-task-status/index.ts, handleCascadingTaskFailure: a failed child fails its
# orchestrator and every unfinished sibling; a failed orchestrator fails its children.
CASCADE_FAILURE = """
UPDATE tasks
SET status = 'Failed', updated_at = now(),
    error_message = 'Cascaded failed from related task ' || $1::uuid::text
WHERE id <> $1::uuid
  AND status NOT IN ('Failed', 'Cancelled', 'Complete')
  AND (id = $2::uuid OR params ->> 'orchestrator_task_id_ref' = $2::uuid::text
       OR params -> 'orchestrator_details' ->> 'orchestrator_task_id' = $2::uuid::text)
RETURNING id
"""


@dataclass(frozen=True)
class ClaimedTask:
    """What claim-next-task answers: task_id, params, task_type, project_id."""

    id: uuid.UUID
    task_type: str
    params: dict[str, Any]
    project_id: uuid.UUID


def _orchestrator_of(task_id: uuid.UUID, params: dict[str, Any]) -> str | None:
    """The orchestrator a task belongs to, by the paths update-task-status reads."""
    details = params.get("orchestrator_details") or {}
    ref = params.get("orchestrator_task_id_ref") or details.get("orchestrator_task_id")
    if ref is None and params.get("orchestrator_details") is not None:
        return str(task_id)
    return str(ref) if ref is not None else None


@dataclass
class HeadlessWorker:
    """One stand-in worker: ``conn`` for its tasks, ``beat_conn`` for its guardian."""

    worker_id: str
    conn: asyncpg.Connection
    beat_conn: asyncpg.Connection
    heartbeat_interval: float = HEARTBEAT_INTERVAL_SEC
    vram_total_mb: int = 24564
    beats: int = 0
    beat_errors: list[asyncpg.PostgresError] = field(default_factory=list)
    _beaten: asyncio.Condition = field(default_factory=asyncio.Condition)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _guardian: asyncio.Task[None] | None = None

    async def claim(self) -> ClaimedTask | None:
        async with as_service_role(self.conn) as conn:
            row = await conn.fetchrow(CLAIM, self.worker_id, RUN_TYPE)
        if row is None:
            return None
        return ClaimedTask(
            id=row["task_id"],
            task_type=row["task_type"],
            params=json.loads(row["params"]),
            project_id=row["project_id"],
        )

    async def complete(self, task_id: uuid.UUID, output_location: str) -> bool:
        """Complete an In Progress task; False when it was not In Progress."""
        async with as_service_role(self.conn) as conn:
            row = await conn.fetchrow(COMPLETE, task_id, output_location)
            if row is None:
                return False
            orchestrator = json.loads(row["params"]).get("orchestrator_task_id_ref")
            if row["task_type"] == "travel_segment" and orchestrator is not None:
                await conn.fetch(COMPLETE_ORCHESTRATOR, uuid.UUID(orchestrator))
        return True

    async def fail(self, task_id: uuid.UUID, error_message: str) -> list[uuid.UUID]:
        """Fail a task as the worker does; return the related tasks failed with it.
        Raises LookupError when the task was already Complete or Cancelled."""
        async with as_service_role(self.conn) as conn:
            row = await conn.fetchrow(FAIL, task_id, error_message)
            if row is None:
                raise LookupError(f"task {task_id} is Complete or Cancelled")
            orchestrator = _orchestrator_of(task_id, json.loads(row["params"]))
            if orchestrator is None:
                return []
            cascaded = await conn.fetch(CASCADE_FAILURE, task_id, uuid.UUID(orchestrator))
        return [r["id"] for r in cascaded]

    async def beat(self, status: str = "active", vram_used_mb: int = 0) -> dict[str, Any]:
        """One heartbeat with no logs; raises what the database raises."""
        async with as_service_role(self.beat_conn) as conn:
            answer = await conn.fetchval(
                BEAT, self.worker_id, self.vram_total_mb, vram_used_mb, "[]", status
            )
        return json.loads(answer)  # type: ignore[no-any-return]

    async def _guarded_beat(self, status: str) -> None:
        try:
            await self.beat(status)
        except asyncpg.PostgresError as e:
            self.beat_errors.append(e)
        async with self._beaten:
            self.beats += 1
            self._beaten.notify_all()

    async def _guard(self) -> None:
        while not self._stop.is_set():
            await self._guarded_beat("active")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.heartbeat_interval)
        await self._guarded_beat("crashed")

    def start_heartbeat(self) -> None:
        self._guardian = asyncio.create_task(self._guard(), name=f"guardian:{self.worker_id}")

    async def wait_for_beats(self, count: int) -> None:
        async with self._beaten:
            await self._beaten.wait_for(lambda: self.beats >= count)

    async def kill(self) -> None:
        """The pod is killed with its guardian (SIGKILL, a pod gone): no last beat."""
        if self._guardian is None:
            return
        self._guardian.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._guardian
        self._guardian = None

    async def stop_heartbeat(self) -> None:
        """The worker process is gone: the guardian sends its last beat and exits."""
        if self._guardian is None:
            return
        self._stop.set()
        await self._guardian
        self._guardian = None


@asynccontextmanager
async def headless_worker(
    dsn: str, worker_id: str, *, heartbeat_interval: float = HEARTBEAT_INTERVAL_SEC
) -> AsyncIterator[HeadlessWorker]:
    """A stand-in worker on its own two connections; its guardian is stopped on exit."""
    conn = await asyncpg.connect(dsn)
    beat_conn = await asyncpg.connect(dsn)
    worker = HeadlessWorker(worker_id, conn, beat_conn, heartbeat_interval=heartbeat_interval)
    try:
        yield worker
    finally:
        await worker.stop_heartbeat()
        await asyncio.gather(conn.close(), beat_conn.close())
